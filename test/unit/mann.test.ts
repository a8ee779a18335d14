// MANN with LRUA memory (Santoro et al. 2016): LRUA's usage, least-used slots, write weights, memory,
// read weights and reads over three steps worked by hand; the image-sequence family (pure, labels
// shuffled per episode and shown one step late, N × M steps, area resampling by hand); one episode's
// gradient against central differences; shard sums, determinism, no leaks; presets and refusals.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runEpisodes } from "../../meta/algorithms/episodes.js";
import { evaluateSequences, mann, mannEpisode, stepLosses } from "../../meta/algorithms/mann.js";
import { findPreset } from "../../meta/algorithms/registry.js";
import { COSINE_EPS, leastUsedWeights, lruaInitial, lruaStep, mannNet, MEMORY_INIT, type LruaStep, type MannModel, type MannShape } from "../../meta/models/mann.js";
import { smallestMask } from "../../meta/ops.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun, type ResolvedRun } from "../../meta/run-config.js";
import { writeImage } from "../../meta/tasks/imageset.js";
import { areaResample, areaWeights, imageSequenceFamily, instanceIndex, type ImageSequenceFamily } from "../../meta/tasks/sequence.js";
import { omniglotSplits } from "../../meta/tasks/omniglot.js";
import type { Task } from "../../meta/tasks/types.js";
import { loadOmniglot } from "../../storage/datasets.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(useCpu);

const close = (a: ArrayLike<number>, b: readonly number[], tol: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};
const flat = (t: tf.Tensor) => Array.from(t.dataSync());

// ---- LRUA by hand --------------------------------------------------------------------------------

// 4 slots × 2, one head, γ = 0.5, from the wiped state: M_0 = 1e-6 everywhere, w^r_0 = w^u_0 = e_0.
// K(k, m) = k·m / √(‖k‖²‖m‖² + 1e-6); numbers to 8 places (float64), the test allows 2e-6 (float32).
// Step 1: k = (1, 0), a = (0.5, −0.5), σ(α) = 0.25.
//   w^lu_0: usages [1, 0, 0, 0], slots 1–3 tie at 0 → the lowest index, slot 1: [0, 1, 0, 0].
//   w^w_1 = 0.25·[1, 0, 0, 0] + 0.75·[0, 1, 0, 0] = [0.25, 0.75, 0, 0].
//   Row 1 (least used) zeroed, then + w^w a: M_1 = [(1e-6 + 0.125, 1e-6 − 0.125), (0.375, −0.375), (1e-6, 1e-6), (1e-6, 1e-6)].
//   K: row 0 0.125001/√(0.03125 + 1e-6) = 0.70710112; row 1 0.375/√(0.28125 + 1e-6) = 0.70710552;
//      rows 2, 3 1e-6/√(2e-12 + 1e-6) = 0.00100000.
//   w^r_1 = softmax(K) = [0.33476905, 0.33477052, 0.16523022, 0.16523022];
//   r_1 = Σ w^r M = (0.16738574, −0.16738441); w^u_1 = 0.5·e_0 + w^r_1 + w^w_1 = [1.08476905, 1.08477052, 0.16523022, 0.16523022].
// Step 2: k = (0, 1), a = (0, 0.5), σ(α) = 0.5.
//   w^lu_1: slots 2 and 3 tie (equal rows read equally) → slot 2. w^w_2 = 0.5 w^r_1 + 0.5 e_2 = [0.16738452, 0.16738526, 0.58261511, 0.08261511].
//   Row 2 zeroed; M_2 = M_1 + w^w a: second column += 0.5 w^w → [(0.125001, −0.04130674), (0.375, −0.29130737), (0, 0.29130755), (1e-6, 0.04130855)].
//   K = [−0.31375477, −0.61346769, 0.99999411, 0.99970711]; w^r_2 = [0.10893067, 0.08072100, 0.40523231, 0.40511603];
//   r_2 = (0.04388722, 0.10676780); w^u_2 = 0.5 w^u_1 + w^r_2 + w^w_2 = [0.81869972, 0.79049151, 1.07046253, 0.57034624].
// Step 3: k = (1, 1), a = (0.5, 0.5), σ(α) = 0.9.
//   w^lu_2: the smallest usage, slot 3. w^w_3 = 0.9 w^r_2 + 0.1 e_3 = [0.09803760, 0.07264890, 0.36470908, 0.46460442].
//   Row 3 zeroed; M_3 = [(0.17401980, 0.00771206), (0.41132445, −0.25498292), (0.18235454, 0.47366209), (0.23230221, 0.23230221)].
//   K = [0.73771358, 0.22843447, 0.91394267, 0.99999768]; w^r_3 = [0.24428760, 0.14679941, 0.29136457, 0.31754842];
//   r_3 = (0.22979192, 0.17622817); w^u_3 = [0.75167506, 0.61469406, 1.19130491, 1.06732597].
const HAND = [
  {
    key: [1, 0], add: [0.5, -0.5], gate: 0.25,
    leastUsed: [0, 1, 0, 0], write: [0.25, 0.75, 0, 0],
    memory: [0.125001, -0.124999, 0.375, -0.375, 1e-6, 1e-6, 1e-6, 1e-6],
    read: [0.33476905, 0.33477052, 0.16523022, 0.16523022], r: [0.16738574, -0.16738441],
    usage: [1.08476905, 1.08477052, 0.16523022, 0.16523022],
  },
  {
    key: [0, 1], add: [0, 0.5], gate: 0.5,
    leastUsed: [0, 0, 1, 0], write: [0.16738452, 0.16738526, 0.58261511, 0.08261511],
    memory: [0.125001, -0.04130674, 0.375, -0.29130737, 0, 0.29130755, 1e-6, 0.04130855],
    read: [0.10893067, 0.080721, 0.40523231, 0.40511603], r: [0.04388722, 0.1067678],
    usage: [0.81869972, 0.79049151, 1.07046253, 0.57034624],
  },
  {
    key: [1, 1], add: [0.5, 0.5], gate: 0.9,
    leastUsed: [0, 0, 0, 1], write: [0.0980376, 0.0726489, 0.36470908, 0.46460442],
    memory: [0.1740198, 0.00771206, 0.41132445, -0.25498292, 0.18235454, 0.47366209, 0.23230221, 0.23230221],
    read: [0.2442876, 0.14679941, 0.29136457, 0.31754842], r: [0.22979192, 0.17622817],
    usage: [0.75167506, 0.61469406, 1.19130491, 1.06732597],
  },
];

test("LRUA over three steps on a 4 × 2 memory with one head: usage, least-used slot, write and read weights, memory and reads, by hand", () => {
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    let s = lruaInitial(1, { memorySlots: 4, memoryWidth: 2, readHeads: 1 });
    close(s.memory.dataSync(), Array(8).fill(Math.fround(MEMORY_INIT)), 0, "M_0");
    assert.deepEqual(flat(s.readWeights), [1, 0, 0, 0]);
    assert.deepEqual(flat(s.usage), [1, 0, 0, 0]);
    HAND.forEach((h, i) => {
      const step: LruaStep = lruaStep(s, { key: tf.tensor3d([[h.key]]), add: tf.tensor3d([[h.add]]), gate: tf.tensor2d([[h.gate]]) }, { usageDecay: 0.5, leastUsed: "per-head" });
      const at = `step ${i + 1}`;
      assert.deepEqual(flat(step.leastUsed), h.leastUsed, `${at} w^lu`);
      close(step.writeWeights.dataSync(), h.write, 2e-6, `${at} w^w`);
      close(step.memory.dataSync(), h.memory, 2e-6, `${at} M`);
      close(step.readWeights.dataSync(), h.read, 2e-6, `${at} w^r`);
      close(step.reads.dataSync(), h.r, 2e-6, `${at} r`);
      close(step.usage.dataSync(), h.usage, 2e-6, `${at} w^u`);
      s = step;
    });
  });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(COSINE_EPS, 1e-6);
});

test("two heads write from the wiped state: per head to the 1st and 2nd least-used slots, shared to both; one row zeroed", () => {
  // Usage e_0: the least used are slots 1, 2 (ties to the lower index). Gates σ(α) = 0: pure
  // least-used writes, a = (0.5, 0) for head 0 and (0, 0.5) for head 1. Only slot 1 (the least used)
  // is zeroed before writing, as the reference sets one row to 0.
  // per-head: w^w = [e_1, e_2]: M row 1 = 0 + (0.5, 0), row 2 = 1e-6 + (0, 0.5); rows 0 and 3 stay 1e-6.
  // shared: w^w = [e_1 + e_2, e_1 + e_2]: rows 1 and 2 both get a_0 + a_1 = (0.5, 0.5) (row 2 on top of 1e-6).
  const e = Math.fround(1e-6);
  tf.tidy(() => {
    const s = lruaInitial(1, { memorySlots: 4, memoryWidth: 2, readHeads: 2 });
    const heads = { key: tf.tensor3d([[[1, 0], [0, 1]]]), add: tf.tensor3d([[[0.5, 0], [0, 0.5]]]), gate: tf.tensor2d([[0, 0]]) };
    const per = lruaStep(s, heads, { usageDecay: 0.99, leastUsed: "per-head" });
    assert.deepEqual(per.writeWeights.arraySync(), [[[0, 1, 0, 0], [0, 0, 1, 0]]]);
    close(per.memory.dataSync(), [e, e, 0.5, 0, e, 0.5 + e, e, e], 1e-7, "per-head M_1");
    const shared = lruaStep(s, heads, { usageDecay: 0.99, leastUsed: "shared" });
    assert.deepEqual(shared.writeWeights.arraySync(), [[[0, 1, 1, 0], [0, 1, 1, 0]]]);
    close(shared.memory.dataSync(), [e, e, 0.5, 0.5, 0.5 + e, 0.5 + e, e, e], 1e-7, "shared M_1");
    // w^u_1 = 0.99·e_0 + Σ_heads w^r_1 + Σ_heads w^w_1: the write part adds e_1 + e_2 per head.
    const reads = flat(tf.sum(per.readWeights, 1));
    close(per.usage.dataSync(), [0.99 + reads[0]!, 1 + reads[1]!, 1 + reads[2]!, reads[3]!], 1e-6, "per-head w^u_1");
  });
});

test("least-used slots: per head the i-th smallest usage (ties to the lower index), shared the n smallest; no gradient", () => {
  // usage [0.3, 0.1, 0.1, 0.7, 0.05]: ascending 0.05 (slot 4), 0.1 (slot 1), 0.1 (slot 2), 0.3 (slot 0), 0.7 (slot 3).
  // 3 heads per-head: head 0 → slot 4, head 1 → slot 1, head 2 → slot 2; shared: all three get {4, 1, 2};
  // the per-head rows sum to smallestMask(usage, 3) = [0, 1, 1, 0, 1].
  tf.tidy(() => {
    const u = tf.tensor2d([[0.3, 0.1, 0.1, 0.7, 0.05]]);
    assert.deepEqual(leastUsedWeights(u, 3, "per-head").arraySync(), [[[0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]]);
    assert.deepEqual(leastUsedWeights(u, 3, "shared").arraySync(), [[[0, 1, 1, 0, 1], [0, 1, 1, 0, 1], [0, 1, 1, 0, 1]]]);
    assert.deepEqual(flat(tf.sum(leastUsedWeights(u, 3, "per-head"), 1)), flat(smallestMask(u, 3)));
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(leastUsedWeights(x as tf.Tensor2D, 2, "per-head"), 2)) as tf.Scalar)(u);
    assert.deepEqual(flat(g), [0, 0, 0, 0, 0]);
  });
});

// ---- the sequence family -------------------------------------------------------------------------

test("area resampling by hand: 3×3 → 2×2 and the weights of 28 → 20", () => {
  // Output pixel 0 covers source [0, 1.5): weights 2/3 (pixel 0) and 1/3 (pixel 1); output 1: 1/3 (pixel 1), 2/3 (pixel 2).
  // Source 1…9 row-major: out(0,0) = (4·1 + 2·2 + 2·4 + 5)/9 = 21/9; out(0,1) = (2·2 + 4·3 + 5 + 2·6)/9 = 33/9;
  // out(1,0) = (2·4 + 5 + 4·7 + 2·8)/9 = 57/9; out(1,1) = (5 + 2·6 + 2·8 + 4·9)/9 = 69/9 (mean 5, as the source's).
  const w = areaWeights(3, 2);
  assert.deepEqual(w, [[[0, 2 / 3], [1, 1 / 3]], [[1, 1 / 3], [2, 2 / 3]]]);
  const out = new Float32Array(4);
  areaResample(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), 0, 3, w, out, 0);
  close(out, [21 / 9, 33 / 9, 57 / 9, 69 / 9], 1e-6, "3→2");
  // 28 → 20: output pixel o covers [1.4·o, 1.4·(o + 1)), two or three source pixels, weights summing to 1.
  for (const row of areaWeights(28, 20)) {
    assert.ok(row.length === 2 || row.length === 3);
    assert.ok(Math.abs(row.reduce((a, [, x]) => a + x, 0) - 1) < 1e-12);
  }
  assert.deepEqual(areaWeights(28, 20)[0], [[0, 20 / 28], [1, 8 / 28]]);
  assert.deepEqual(areaWeights(4, 4), [[[0, 1]], [[1, 1]], [[2, 1]], [[3, 1]]]);
});

test("instance index: the k-th presentation of each label", () => {
  assert.deepEqual(Array.from(instanceIndex([2, 0, 2, 2, 0, 1])), [1, 1, 2, 3, 2, 1]);
});

function omniglotSequences(o: { ways: number; instances: number; size: number }): ImageSequenceFamily {
  const { set, splits } = omniglotSplits(loadOmniglot(), "vinyals");
  return imageSequenceFamily(set, { name: "omniglot-sequence-vinyals", ...o, splits, rotations: true });
}

test("the family: pure, N × M steps, labels shown one step late, shuffled per episode, images as drawn", () => {
  const fam = omniglotSequences({ ways: 5, instances: 10, size: 20 });
  assert.equal(fam.kind, "sequence");
  assert.deepEqual(fam.inputShape, [405]);
  assert.equal(fam.outputs, 5);
  const t = fam.task(3, "train", 7, 2);
  // Pure: the same arguments give the same bytes, from this family or a fresh one.
  const again = omniglotSequences({ ways: 5, instances: 10, size: 20 }).task(3, "train", 7, 2);
  assert.deepEqual(Buffer.from(t.query.x.buffer), Buffer.from(again.query.x.buffer));
  assert.deepEqual(Array.from(t.query.y), Array.from(again.query.y));
  assert.equal(t.seed, again.seed);
  assert.notDeepEqual(Array.from(fam.task(3, "train", 7, 3).query.y), Array.from(t.query.y));
  assert.deepEqual(t.query.xShape, [50, 405]);
  assert.deepEqual(t.support.xShape, [0, 405]);
  const y = Array.from(t.query.y);
  // M instances of each of the N labels.
  for (let l = 0; l < 5; l++) assert.equal(y.filter((v) => v === l).length, 10, `label ${l}`);
  // Row t's last 5 features: the one-hot label of step t − 1, zeros at step 0.
  for (let s = 0; s < 50; s++) {
    const shown = Array.from(t.query.x.subarray(s * 405 + 400, (s + 1) * 405));
    assert.deepEqual(shown, s === 0 ? [0, 0, 0, 0, 0] : [0, 1, 2, 3, 4].map((l) => (l === y[s - 1] ? 1 : 0)), `step ${s}`);
  }
  // The pixels are the drawn image, rotated by its class's turn and area-resampled to 20×20.
  const d = fam.draw(3, "train", 7, 2);
  assert.deepEqual(d.steps.map((s) => s.label), y);
  const src = new Float32Array(28 * 28);
  const want = new Float32Array(400);
  for (const s of [0, 17, 49]) {
    writeImage(fam.set, d.steps[s]!.image, d.classes[d.steps[s]!.label]!.rotation, src, 0);
    areaResample(src, 0, 28, areaWeights(28, 20), want, 0);
    assert.deepEqual(Array.from(t.query.x.subarray(s * 405, s * 405 + 400)), Array.from(want));
    assert.ok(want.some((v) => v > 0.5), "ink survives the resampling");
  }
  // Each class's instances are distinct images of that class.
  for (let l = 0; l < 5; l++) {
    const imgs = d.steps.filter((s) => s.label === l).map((s) => s.image);
    const c = fam.set.classes[d.classes[l]!.classIndex]!;
    assert.equal(new Set(imgs).size, 10);
    assert.ok(imgs.every((i) => i >= c.firstImage && i < c.firstImage + c.imageCount));
  }
  // Labels are assigned afresh per episode: were they tied to the classes' order, label 0 would always
  // be the class of the lowest index; over 60 episodes a sorted assignment has chance 60/5! = 0.5 in expectation.
  let sorted = 0;
  let grouped = 0;
  for (let i = 0; i < 60; i++) {
    const e = fam.draw(1, "train", 0, i);
    const ids = e.classes.map((c) => c.classIndex * 4 + c.rotation);
    if (ids.every((v, j) => j === 0 || ids[j - 1]! < v)) sorted++;
    const ls = e.steps.map((s) => s.label);
    if (ls.every((v, j) => j === 0 || ls[j - 1]! <= v)) grouped++;
  }
  assert.ok(sorted <= 4, `${sorted} of 60 episodes had labels in class order`);
  assert.equal(grouped, 0, "the presentation order is shuffled");
  // At size 28 (no resampling) the pixels are exactly writeImage's.
  const full = omniglotSequences({ ways: 3, instances: 2, size: 28 });
  const ft = full.task(5, "test", 0, 0);
  const fd = full.draw(5, "test", 0, 0);
  writeImage(full.set, fd.steps[0]!.image, fd.classes[fd.steps[0]!.label]!.rotation, src, 0);
  assert.deepEqual(Array.from(ft.query.x.subarray(0, 784)), Array.from(src));
});

// ---- a tiny network: gradient and shard sums ---------------------------------------------------

const TINY: MannShape = { inputs: 6, outputs: 2, controllerSize: 3, memory: true, memorySlots: 4, memoryWidth: 2, readHeads: 2, usageDecay: 0.95, leastUsed: "per-head" };

/** A random 2-class sequence task of `T` steps on 4 "pixels" plus the previous label, as the family lays it out. */
function randomSequence(seed: number, T = 6): Task {
  const rng = new Rng(seed);
  const y = Int32Array.from({ length: T }, () => rng.int(2));
  const x = new Float32Array(T * 6);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < 4; j++) x[t * 6 + j] = rng.uniform(0, 1);
    if (t > 0) x[t * 6 + 4 + y[t - 1]!] = 1;
  }
  return { support: { x: new Float32Array(0), xShape: [0, 6], y: new Int32Array(0) }, query: { x, xShape: [T, 6], y }, seed };
}

/** The mean step loss of one task, and the least-used indicators of every step (to check none flips). */
function lossAndMasks(model: MannModel, p: Params, t: Task): { loss: number; masks: number[] } {
  return tf.tidy(() => {
    const masks: number[] = [];
    const x = tf.tensor3d(t.query.x, [1, ...t.query.xShape] as [number, number, number]);
    const y = tf.cast(tf.oneHot(tf.tensor2d([Array.from(t.query.y)], undefined, "int32"), model.outputs), "float32") as tf.Tensor3D;
    const logits = model.sequences(p, x, model.shape.memory ? (_, s) => masks.push(...s.leastUsed.dataSync()) : undefined);
    return { loss: tf.mean(stepLosses(logits, y)).dataSync()[0]!, masks };
  });
}

/** One task's contribution through the learner's episode (unbatched). */
async function contribution(model: MannModel, p: Params, tasks: readonly Task[], batched: boolean) {
  return runEpisodes(p, tasks, { model, kind: "sequence", batched, classes: model.outputs }, mannEpisode(model));
}

for (const memory of [true, false]) {
  test(`one episode's gradient matches central differences (${memory ? "MANN, 4 × 2 memory, 2 heads" : "LSTM without memory"}; 3 units, 6 steps)`, async () => {
    // ε = 1e-2 on a loss near ln 2 ≈ 0.69: float32 rounding of the loss (an ulp is 6e-8; a few over six
    // steps, ≲ 3e-7) gives ≲ 2·3e-7/(2ε) = 3e-5 of absolute error in the central difference, the
    // O(ε²/6 · f‴) truncation of the smooth tanh/sigmoid/softmax/√ paths ≲ 2e-5 more: |∇·v − fd| ≤
    // 5e-5 + 1e-3·|fd|, against derivatives of 1e-3 to 7e-3 here (measured: ≤ 7e-6 apart). Five random
    // unit directions over all parameters, and two over the memory heads' alone (key, add and gate
    // weights). The least-used indicator is piecewise constant: the test checks it is the same at θ and
    // θ ± εv for every step and head, so no difference crosses a flip (untouched slots tie exactly —
    // equal rows are read alike — and break ties by index at every θ). At ε = 3e-2 it does flip and
    // the differences are off by 10×: the check is needed.
    const model = mannNet({ ...TINY, memory });
    const theta = model.init(11);
    const t = randomSequence(4);
    const r = await contribution(model, theta, [t], false);
    const g = r.sum;
    assert.deepEqual(names(g), names(theta));
    const at = lossAndMasks(model, theta, t);
    assert.ok(Math.abs(r.metrics[0]!.postLoss - at.loss) < 1e-6, "the readout is the episode's mean step loss");
    const eps = 1e-2;
    for (let d = 0; d < (memory ? 7 : 5); d++) {
      const v = randomDirection(theta, 70 + d);
      // Directions 5 and 6: the heads' part of a unit direction, zero elsewhere.
      for (const k of names(v)) {
        if (d < 5 || k.startsWith("heads/")) continue;
        const all = v[k]!;
        v[k] = tf.zerosLike(all);
        all.dispose();
      }
      const plus = shifted(theta, v, eps);
      const minus = shifted(theta, v, -eps);
      const lp = lossAndMasks(model, plus, t);
      const lm = lossAndMasks(model, minus, t);
      assert.deepEqual(lp.masks, at.masks, `direction ${d}: the least-used slots flip at θ + εv`);
      assert.deepEqual(lm.masks, at.masks, `direction ${d}: the least-used slots flip at θ − εv`);
      const fd = (lp.loss - lm.loss) / (2 * eps);
      assert.ok(Math.abs(fd) > 5e-4, `direction ${d}: a derivative this small tests nothing (${fd})`);
      assert.ok(Math.abs(dot(g, v) - fd) <= 5e-5 + 1e-3 * Math.abs(fd), `direction ${d}: ${dot(g, v)} vs ${fd}`);
      dispose(v, plus, minus);
    }
    dispose(theta, g);
  });
}

test("episodes are independent: a batch of sequences gives each the outputs it gets alone (the memory is wiped per episode)", () => {
  const model = mannNet(TINY);
  const p = model.init(2);
  const [a, b] = [randomSequence(1), randomSequence(2)];
  tf.tidy(() => {
    const one = (t: Task) => model.sequences(p, tf.tensor3d(t.query.x, [1, 6, 6]));
    const both = model.sequences(p, tf.tensor3d([...a.query.x, ...b.query.x], [2, 6, 6]));
    close(both.dataSync(), [...one(a).dataSync(), ...one(b).dataSync()], 1e-6, "batched vs alone");
    close(one(a).dataSync(), flat(one(a)), 0, "a second run from the wiped state");
    // forward reads its rows as one sequence: the same as sequences on a batch of one.
    close(model.forward(p, tf.tensor2d(a.query.x, [6, 6])).dataSync(), flat(one(a)), 0, "forward");
  });
  dispose(p);
});

test("a shard's sum: task by task it is the left fold of each task's contribution, bit for bit; batched it agrees to rounding, and repeats bit for bit", async () => {
  const model = mannNet(TINY);
  const p = model.init(5);
  const tasks = [randomSequence(21), randomSequence(22), randomSequence(23)];
  const alone = await Promise.all(tasks.map((t) => contribution(model, p, [t], false)));
  const fold = tf.tidy(() => {
    const out: Params = {};
    for (const k of names(p)) out[k] = tf.add(tf.add(alone[0]!.sum[k]!, alone[1]!.sum[k]!), alone[2]!.sum[k]!);
    return out;
  });
  const unbatched = await contribution(model, p, tasks, false);
  for (const k of names(p)) assert.deepEqual(flat(unbatched.sum[k]!), flat(fold[k]!), k);
  assert.deepEqual(unbatched.metrics, alone.flatMap((r) => r.metrics));
  const batched = await contribution(model, p, tasks, true);
  const batched2 = await contribution(model, p, tasks, true);
  for (const k of names(p)) {
    const scale = Math.max(...flat(fold[k]!).map(Math.abs), 1e-3);
    close(batched.sum[k]!.dataSync(), flat(fold[k]!), 1e-5 * scale, k);
    assert.deepEqual(flat(batched2.sum[k]!), flat(batched.sum[k]!), `${k} repeats`);
  }
  batched.metrics.forEach((m, i) => assert.ok(Math.abs(m.postLoss - unbatched.metrics[i]!.postLoss) < 1e-6));
  dispose(p, fold, unbatched.sum, batched.sum, batched2.sum, ...alone.map((r) => r.sum));
});

test("evaluation: per-instance accuracy is the fraction of classes right at their k-th presentation", async () => {
  // A stand-in network that is right exactly from a class's 2nd presentation on (it is handed the
  // labels): logit 10 at its prediction, 0 elsewhere. 3 classes × 2 instances: accuracy 0 at instance
  // 1, 1 at instance 2, (6 − 3)/6 = 0.5 overall. Step loss where right: −log(e^10/(e^10 + 2)) =
  // log(1 + 2e^−10) = 9.0799e-5; where wrong (the true logit is one of the 0s): log(e^10 + 2) =
  // 10.0000908; the mean over the 6 steps (3 of each): 5.0000908.
  const fam = omniglotSequences({ ways: 3, instances: 2, size: 4 });
  const tasks = [0, 1, 2, 3].map((i) => fam.task(9, "test", 0, i));
  const fake = {
    name: "oracle-from-the-2nd-instance",
    sequences: () =>
      tf.tensor3d(
        tasks.map((t) => {
          const inst = instanceIndex(t.query.y);
          return Array.from(t.query.y).map((y, s) => [0, 1, 2].map((l) => (l === (inst[s]! >= 2 ? y : (y + 1) % 3) ? 10 : 0)));
        }),
      ),
  } as unknown as MannModel;
  const before = tf.memory().numTensors;
  const r = await evaluateSequences(fake, fam, {}, { tasks: 4, steps: [0, 3], seed: 9, batch: 4 });
  assert.equal(tf.memory().numTensors, before, "evaluation leaves nothing behind");
  assert.deepEqual(r.byInstance!.map((m) => [m.mean, m.n]), [[0, 4], [1, 4]]);
  assert.deepEqual(r.results.map((x) => x.steps), [0, 3]);
  for (const x of r.results) {
    assert.equal(x.accuracy!.mean, 0.5);
    assert.ok(Math.abs(x.loss.mean - 5.0000908) < 1e-5, `${x.loss.mean}`);
  }
});

// ---- the learner end to end --------------------------------------------------------------------

const runOf = (name: string, set: Record<string, unknown> = {}): ResolvedRun => {
  const p = findPreset(name)!;
  return resolveRun(parseRunConfig({ ...p.config, ...set }), { omniglot: (dir, res) => loadOmniglot(dir, res) });
};

test("presets parse and resolve; the tiny one is the cheapest (first); models and families are as the paper's", () => {
  assert.equal(mann.presets[0]!.name, "omniglot-3c-mann-tiny");
  const paper = runOf("omniglot-5c-mann");
  assert.equal(paper.setup.model.name, "mann-200-128x40-r4");
  assert.deepEqual((paper.setup.model as MannModel).shape, { inputs: 405, outputs: 5, controllerSize: 200, memory: true, memorySlots: 128, memoryWidth: 40, readHeads: 4, usageDecay: 0.99, leastUsed: "per-head" });
  assert.equal(paper.setup.test.kind, "sequence");
  assert.deepEqual(paper.setup.test.task(1, "test", 0, 0).query.xShape, [50, 405]);
  assert.equal(paper.setup.config.metaBatchSize, 16);
  const lstm = runOf("omniglot-5c-lstm");
  assert.equal(lstm.setup.model.name, "lstm-200");
  const p = lstm.learner.init(lstm.setup, 1);
  assert.deepEqual(names(p).sort(), ["controller/bias", "controller/kernel", "output/bias", "output/kernel"]);
  assert.deepEqual(p["controller/kernel"]!.shape, [405 + 200, 800]);
  dispose(p);
  const tiny = runOf("omniglot-3c-mann-tiny");
  assert.deepEqual(tiny.setup.test.inputShape, [10 * 10 + 3]);
});

test("the learner on the tiny preset: deterministic init and shards, many shards and evaluations leave no tensors", async () => {
  for (const batchTasks of [true, false]) {
    const run = runOf("omniglot-3c-mann-tiny", { batchTasks });
    const runner = run.learner.shardRunner(run.setup);
    assert.equal(runner.batched, batchTasks);
    const tasks = [0, 1].map((i) => run.setup.train.task(7, "train", 3, i));
    const once = async () => {
      const params = run.learner.init(run.setup, 5);
      const shard = await runner.runShard(params, tasks);
      const out = { params: names(params).map((k) => flat(params[k]!)), sum: names(shard.sum).map((k) => flat(shard.sum[k]!)), metrics: shard.metrics };
      dispose(params, shard.sum);
      return out;
    };
    const a = await once();
    assert.deepEqual(await once(), a, `batchTasks ${batchTasks}`);
    assert.ok(a.metrics.every((m) => m.preAccuracy !== undefined && m.preLoss === m.postLoss));
    const params = run.learner.init(run.setup, 5);
    const other = run.learner.init(run.setup, 6);
    assert.notDeepEqual(flat(other["controller/kernel"]!), flat(params["controller/kernel"]!));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 6; i++) dispose((await runner.runShard(params, [0, 1].map((j) => run.setup.train.task(7, "train", i, j)))).sum);
    for (let i = 0; i < 3; i++) {
      const r = await run.learner.evaluate(run.setup, params, { tasks: 5, steps: [0], seed: i, batch: 2 });
      assert.equal(r.byInstance!.length, 3);
      assert.equal(r.results[0]!.accuracy!.n, 5);
    }
    assert.equal(tf.memory().numTensors, before, "shards and evaluations leave nothing behind");
    // A throwing heartbeat (cancellation) surfaces after the tape, leaving nothing behind either.
    await assert.rejects(runner.runShard(params, tasks, { onInnerStep: () => { throw new Error("cancelled"); } }), /cancelled/);
    assert.equal(tf.memory().numTensors, before, "a cancelled shard leaves nothing behind");
    dispose(params, other);
  }
});

test("refusals: MAML on sequences, mann on classification, a classifier on sequences, too many heads", () => {
  const seq = { family: "omniglot-sequence" };
  assert.throws(() => parseRunConfig({ algorithm: "maml", task: seq, model: { kind: "mann" } }), /maml learns regression and classification tasks, not sequence \(omniglot-sequence\)/);
  assert.throws(() => parseRunConfig({ algorithm: "mann", task: { family: "omniglot" }, model: { kind: "conv4" } }), /mann learns sequence tasks, not classification \(omniglot\)/);
  assert.throws(() => parseRunConfig({ algorithm: "mann", task: { family: "omniglot" }, model: { kind: "mann" } }), /mann does not fit classification tasks \(omniglot\)/);
  assert.throws(() => parseRunConfig({ algorithm: "mann", task: seq }), /sinusoid-mlp does not fit sequence tasks \(omniglot-sequence\); use mann/);
  assert.throws(() => runOf("omniglot-3c-mann-tiny", { model: { kind: "mann", memorySlots: 2, readHeads: 4 } }), /4 read heads need at least as many memory slots/);
  assert.throws(() => runOf("omniglot-3c-mann-tiny", { task: { family: "omniglot-sequence", size: 40 } }), /size 40 is larger than the images \(28×28\)/);
});
