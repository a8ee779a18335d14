// Siamese networks: the weighted-L1 pair logits, the pairs of an episode and their BCE worked by hand;
// one episode's gradient against finite differences (tiny Koch net); the one-shot rule; no leaks;
// bit-identical shards from one seed; Koch's net and the 105×105 Omniglot images it needs.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, runEpisodes } from "../../meta/algorithms/episodes.js";
import { ALPHA_KEY, BIAS_KEY, episodePairs, mostSimilarScores, pairLogits, pairLoss, siamese, siameseEpisode } from "../../meta/algorithms/siamese.js";
import { mlp } from "../../meta/models.js";
import { KOCH_MIN_SIDE, kochNet } from "../../meta/models/koch.js";
import { dispose, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import { omniglotSpec } from "../../meta/tasks/omniglot.js";
import type { Task } from "../../meta/tasks/types.js";
import { defaultOmniglotDir, loadOmniglot, loadPackedImageSet, unpackBits105 } from "../../storage/datasets.js";
import { dot, randomDirection, shifted, useCpu, values } from "../helpers/tf.js";

before(useCpu);

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) < tol, `${what}: ${a} vs ${b}`);

// A linear 2-d embedding set to the identity, so embeddings are the inputs; head α = (−1, −0.5),
// b = 1.5, so a pair's logit is s = 1.5 − |Δx| − 0.5|Δy|. 3-way 1-shot: supports s0 (0,0), s1 (2,0),
// s2 (0,2) of classes 0, 1, 2; queries q0 (0.5, 0) of class 0 and q1 (4, 0) of class 1.
//   q0: vs s0 1.5 − 0.5 = 1;  vs s1 1.5 − 1.5 = 0;  vs s2 1.5 − 0.5 − 1 = 0
//   q1: vs s0 1.5 − 4 = −2.5; vs s1 1.5 − 2 = −0.5; vs s2 1.5 − 4 − 1 = −3.5
// Pairs: all 2 × 3 query × support, targets [[1,0,0],[0,1,0]] (2 same, 4 different). Balanced
// weights: ½/2 = 0.25 per same pair, ½/4 = 0.125 per different pair; uniform: 1/6 each.
// BCE(σ(s), t) = log(1 + e^s) − t·s:
//   same:  (1, 1) log(1 + e⁻¹) = 0.31326169;  (−0.5, 1) log(1 + e^0.5) = 0.97407698
//   diff:  (0, 0) log 2 = 0.69314718 (twice); (−2.5, 0) 0.07888973; (−3.5, 0) 0.02975042
//   balanced = ½(mean same 0.64366934 + mean diff 0.37373363) = 0.50870148
//   uniform  = (sum 2.78227332) / 6 = 0.46371220
// One-shot: q0's best support is s0 (class 0), q1's is s1 (class 1): accuracy 1.
const handModel = () => mlp({ sizes: [2, 2] });
const handParams = (): Params => ({
  "dense0/kernel": tf.tensor2d([[1, 0], [0, 1]]),
  "dense0/bias": tf.tensor1d([0, 0]),
  [ALPHA_KEY]: tf.tensor1d([-1, -0.5]),
  [BIAS_KEY]: tf.tensor1d([1.5]),
});
const handTask: Task = {
  support: { x: Float32Array.from([0, 0, 2, 0, 0, 2]), xShape: [3, 2], y: Int32Array.from([0, 1, 2]) },
  query: { x: Float32Array.from([0.5, 0, 4, 0]), xShape: [2, 2], y: Int32Array.from([0, 1]) },
  seed: 1,
};

test("pair logits, the episode's pairs and weights, and the pair BCE, by hand", async () => {
  const model = handModel();
  const params = handParams();
  const e = episodeOf([handTask], model, "classification", false, 3);
  tf.tidy(() => {
    const s = pairLogits(model, params, e);
    assert.deepEqual(s.arraySync(), [[1, 0, 0], [-2.5, -0.5, -3.5]]);
    const balanced = episodePairs(e, true);
    assert.deepEqual(balanced.targets.arraySync(), [[1, 0, 0], [0, 1, 0]]);
    assert.deepEqual(balanced.weights.arraySync(), [[0.25, 0.125, 0.125], [0.125, 0.25, 0.125]]);
    const uniform = episodePairs(e, false);
    uniform.weights.dataSync().forEach((w) => close(w, 1 / 6, 1e-7, "uniform weight"));
    close(pairLoss(s, balanced).dataSync()[0]!, 0.50870148, 1e-6, "balanced loss");
    close(pairLoss(s, uniform).dataSync()[0]!, 0.4637122, 1e-6, "uniform loss");
  });
  disposeEpisode(e);
  const before = tf.memory().numTensors;
  const r = await runEpisodes(params, [handTask], { model, kind: "classification", batched: false, classes: 3 }, siameseEpisode(model, { balancePairs: true, weightDecay: 0 }));
  close(r.metrics[0]!.postLoss, 0.50870148, 1e-6, "reported loss");
  assert.equal(r.metrics[0]!.postAccuracy, 1);
  assert.equal(r.metrics[0]!.preLoss, r.metrics[0]!.postLoss, "nothing adapts");
  assert.deepEqual(Object.keys(r.sum), Object.keys(params), "a gradient for the embedding and the head");
  dispose(r.sum);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind by a shard");
  dispose(params);
});

test("one-shot rule: the class of the most similar support image, not the nearest class mean", () => {
  // 2-way 2-shot, supports of classes [0, 0, 1, 1]. Query A's logits [3, −5, 1, 1]: class 0's best
  // is 3, class 1's 1 → class 0 (the class means −1 and 1 would pick class 1). Query B's logits
  // [−2, 0.5, 0.75, −4]: best 0.5 vs 0.75 → class 1.
  tf.tidy(() => {
    const scores = mostSimilarScores(tf.tensor2d([[3, -5, 1, 1], [-2, 0.5, 0.75, -4]]), tf.tensor2d([[1, 0], [1, 0], [0, 1], [0, 1]]));
    assert.deepEqual(scores.arraySync(), [[3, 1], [0.5, 0.75]]);
    assert.deepEqual(Array.from(tf.argMax(scores, -1).dataSync()), [0, 1]);
  });
});

test("one episode's gradient matches central differences (tiny Koch net, 2-way 2-shot, L2 on)", async () => {
  // ε = 1e-3 on a loss near log 2: float32 rounding of the loss (~1e-7) is ~5e-5 in the quotient, so
  // 1e-4 absolute plus 1e-2 relative (the O(ε²) truncation is smaller). Conv biases at Koch's 0.5
  // keep most ReLUs off their kinks; the dense kernel ×10 spreads the sigmoid features, so pairs
  // differ and the derivatives (asserted ≥ 2e-3 somewhere) stand well above that floor.
  const model = kochNet({ inputShape: [KOCH_MIN_SIDE, KOCH_MIN_SIDE, 1], filters: 2, features: 6 });
  const rng = new Rng(5);
  const init = model.init(3);
  const theta: Params = { [ALPHA_KEY]: tf.tensor1d([-1, 0.5, -2, 1, -0.5, 2]), [BIAS_KEY]: tf.tensor1d([0.3]) };
  for (const k of Object.keys(init)) theta[k] = /^conv\d\/bias$/.test(k) ? tf.fill(init[k]!.shape, 0.5) : k === "dense/kernel" ? tf.mul(init[k]!, 10) : init[k]!.clone();
  dispose(init);
  const px = KOCH_MIN_SIDE * KOCH_MIN_SIDE;
  const set = (n: number) => ({ x: Float32Array.from({ length: n * px }, () => rng.next()), xShape: [n, KOCH_MIN_SIDE, KOCH_MIN_SIDE, 1], y: Int32Array.from({ length: n }, (_, i) => i % 2) });
  const t: Task = { support: set(4), query: set(4), seed: 1 };
  const wd = 0.01;
  // The objective restated: balanced pair BCE + λ Σ w² over the kernels and α.
  const loss = (p: Params) => {
    const e = episodeOf([t], model, "classification", false, 2);
    try {
      return tf.tidy(() => {
        const l2 = Object.keys(p).filter((k) => k.endsWith("/kernel") || k === ALPHA_KEY).reduce((a, k) => a + tf.sum(tf.square(p[k]!)).dataSync()[0]!, 0);
        return pairLoss(pairLogits(model, p, e), episodePairs(e, true)).dataSync()[0]! + wd * l2;
      });
    } finally {
      disposeEpisode(e);
    }
  };
  const g = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false, classes: 2 }, siameseEpisode(model, { balancePairs: true, weightDecay: wd }))).sum;
  const eps = 1e-3;
  let largest = 0;
  for (let d = 0; d < 5; d++) {
    const v = randomDirection(theta, 60 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (loss(plus) - loss(minus)) / (2 * eps);
    largest = Math.max(largest, Math.abs(fd));
    assert.ok(Math.abs(dot(g, v) - fd) < 1e-4 + 1e-2 * Math.abs(fd), `direction ${d}: ${dot(g, v)} vs ${fd}`);
    dispose(v, plus, minus);
  }
  assert.ok(largest > 2e-3, `derivatives ${largest} too small to test`);
  dispose(theta, g);
});

test("conv4-embedding at 28×28: train episodes take trainWays/Shots/QueryShots, a shard and evaluation leak nothing, and one seed gives bit-identical shards", async () => {
  const cfg = parseRunConfig({ algorithm: "siamese", task: { family: "omniglot", ways: 5, shots: 1, queryShots: 3 }, model: { kind: "conv4-embedding", filters: 4 }, siamese: { trainWays: 4, trainShots: 2, trainQueryShots: 4 } });
  const run = resolveRun(cfg, { omniglot: (dir, resolution) => loadOmniglot(dir, resolution) });
  const tr = run.setup.train.task(1, "train", 0, 0);
  assert.deepEqual([tr.support.xShape[0], tr.query.xShape[0]], [8, 16], "8 × 16 = 128 pairs");
  const params = siamese.init(run.setup, 3);
  assert.deepEqual(params[ALPHA_KEY]!.shape, [run.setup.model.outputs], "one α per embedding feature");
  const runner = siamese.shardRunner(run.setup);
  const shard = async () => {
    const p = siamese.init(run.setup, 3);
    const r = await runner.runShard(p, [run.setup.train.task(7, "train", 2, 0), run.setup.train.task(7, "train", 2, 1)]);
    const out = { sum: values(r.sum), metrics: r.metrics };
    dispose(p, r.sum);
    return out;
  };
  const before = tf.memory().numTensors;
  const a = await shard();
  assert.equal(tf.memory().numTensors, before, "no tensors left behind by a shard");
  const b = await shard();
  assert.deepEqual(b, a, "bit-identical sums and metrics from the same seed");
  assert.ok(a.metrics.every((m) => Number.isFinite(m.postLoss)));
  const r = await siamese.evaluate(run.setup, params, { tasks: 4, steps: [0, 3], seed: 2 });
  assert.equal(tf.memory().numTensors, before, "no tensors left behind by evaluation");
  assert.equal(r.results[0]!.accuracy!.mean, r.results[1]!.accuracy!.mean, "no inner loop: every step count is the same");
  assert.ok(Number.isFinite(r.results[0]!.loss.mean));
  dispose(params);
});

test("Koch's net: 6×6×(4·filters) before the dense layer at 105×105, sigmoid features, refused below 65×65", () => {
  assert.equal(KOCH_MIN_SIDE, 65, "10×10 → pool → 7×7 → pool → 4×4 → pool → 4×4 leaves 1×1 at 65");
  const model = kochNet({ inputShape: [105, 105, 1], filters: 2, features: 8 });
  const p = model.init(1);
  assert.deepEqual(Object.fromEntries(Object.entries(p).map(([k, t]) => [k, t.shape])), {
    "conv0/kernel": [10, 10, 1, 2], "conv0/bias": [2],
    "conv1/kernel": [7, 7, 2, 4], "conv1/bias": [4],
    "conv2/kernel": [4, 4, 4, 4], "conv2/bias": [4],
    "conv3/kernel": [4, 4, 4, 8], "conv3/bias": [8],
    "dense/kernel": [6 * 6 * 8, 8], "dense/bias": [8],
  });
  tf.tidy(() => {
    const f = model.forward(p, tf.randomUniform([3, 105, 105, 1], 0, 1, "float32", 1));
    assert.deepEqual(f.shape, [3, 8]);
    assert.ok(f.dataSync().every((v) => v > 0 && v < 1), "sigmoid features");
  });
  dispose(p);
  assert.throws(() => kochNet({ inputShape: [64, 64, 1] }), /smaller than 65×65/);
  assert.throws(() => parseRunConfig({ algorithm: "siamese", task: { family: "omniglot" }, model: { kind: "koch-siamese" } }), /koch-siamese needs inputs of at least 65×65.*set task.resolution: 105/);
  assert.equal(parseRunConfig({ algorithm: "siamese", task: { family: "omniglot", resolution: 105 }, model: { kind: "koch-siamese" } }).model.kind, "koch-siamese");
  assert.throws(() => parseRunConfig({ algorithm: "maml", task: { family: "omniglot", resolution: 105 }, model: { kind: "koch-siamese" } }), /maml needs a model with a classifier/);
});

test("105×105 Omniglot: bits unpacked MSB first, ink 255; the images area-average to the 28×28 file (README rule)", () => {
  // One image with ink at k = 0 (byte 0, bit 7: 0x80), k = 7 (byte 0, bit 0: 0x01) and (1, 0), k = 105
  // (byte 13, bit 7 − 1 = 6: 0x40).
  const bits = new Uint8Array(1379);
  bits[0] = 0x81;
  bits[13] = 0x40;
  const img = unpackBits105(bits, 1);
  assert.deepEqual([...img.keys()].filter((k) => img[k] !== 0), [0, 7, 105]);
  assert.equal(img[0], 255);

  const dir = defaultOmniglotDir();
  const big = loadPackedImageSet(dir, "evaluation", 105);
  const small = loadPackedImageSet(dir, "evaluation");
  assert.deepEqual([big.height, big.width, big.images.length], [105, 105, 13180 * 105 * 105]);
  assert.equal(loadPackedImageSet(dir, "evaluation", 105), big, "cached by path and resolution");
  assert.deepEqual(big.classes, small.classes);
  assert.equal(gunzipSync(readFileSync(join(dir, "evaluation.105x105.bits.gz"))).length, 13180 * 1379);
  // README: upsample the mask 4× to 420×420; S = ink sub-pixels of the 15×15 block of output pixel
  // (oy, ox); value = floor((17S + 7) / 15).
  for (const i of [0, 1, 19, 20, 4321, 13179]) {
    for (let oy = 0; oy < 28; oy++) {
      for (let ox = 0; ox < 28; ox++) {
        let s = 0;
        for (let y = 15 * oy; y < 15 * oy + 15; y++) for (let x = 15 * ox; x < 15 * ox + 15; x++) s += big.images[i * 11025 + (y >> 2) * 105 + (x >> 2)]! / 255;
        assert.equal(small.images[i * 784 + oy * 28 + ox], Math.floor((17 * s + 7) / 15), `image ${i} pixel (${oy}, ${ox})`);
      }
    }
  }
});

test("task.resolution: the family's input shape follows it, and a data port that ignores it is refused", () => {
  const o = omniglotSpec.schema.parse({ family: "omniglot", resolution: 105 }) as Parameters<typeof omniglotSpec.shape>[0];
  assert.deepEqual(omniglotSpec.shape(o).inputShape, [105, 105, 1]);
  assert.equal((omniglotSpec.schema.parse({ family: "omniglot" }) as { resolution: number }).resolution, 28);
  assert.throws(() => omniglotSpec.build(o, { omniglot: (dir) => loadOmniglot(dir) }), /task.resolution is 105, but the data port gave 28×28 images/);
});
