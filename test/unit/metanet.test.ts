// Meta Networks: the fast-weight read, one augmented layer, m and d on one coordinate and b's
// per-example support gradients worked by hand; one episode's gradient against central differences
// of the replayed function (the recorded gradients fed back as constants); bit-identical shards
// from one seed, a shard of two tasks equal to task 0 + task 1; no leaks; every preset resolves.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, runEpisodes, type Episode } from "../../meta/algorithms/episodes.js";
import type { LearnerSetup } from "../../meta/algorithms/learner.js";
import {
  attention,
  dKey,
  exampleFastWeights,
  exampleGradients,
  metaInformation,
  metanet,
  metanetEpisode,
  metanetLogits,
  metanetOf,
  mKey,
  readMemory,
  taskFastWeights,
  U_PREFIX,
  type MetanetOptions,
} from "../../meta/algorithms/metanet.js";
import { taskLoss } from "../../meta/losses.js";
import { metanetNet, metanetStack, type MetanetLayer } from "../../meta/models/metanet.js";
import { perExampleGrads } from "../../meta/ops.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task, TaskFamily } from "../../meta/tasks/types.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(useCpu);

const close = (got: ArrayLike<number>, want: readonly number[], tol: number, what: string) => {
  assert.equal(got.length, want.length, what);
  want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < tol, `${what}[${i}]: ${got[i]} vs ${w}`));
};

test("the fast-weight read and one augmented layer, by hand", () => {
  // Memory of three entries with keys r1 = (1,0), r2 = (0,1), r3 = (1,1) and 2×2 fast weights
  //   W*_1 = [[1, 0], [0, −1]], W*_2 = [[0, 2], [1, 0]], W*_3 = [[−1, 1], [1, 1]].
  // Query q1 with key (1,0): cos = [1, 0, 1/√2] (the 1e-6 under the root moves them by < 1e-6), so
  //   a1 = [e, 1, e^0.707107] / (e + 1 + e^0.707107) = [2.718282, 1, 2.028115] / 5.746397
  //      = [0.473041, 0.174022, 0.352937];
  //   W*(q1) = Σ a_i W*_i = [[0.473041 − 0.352937, 2·0.174022 + 0.352937], [0.174022 + 0.352937, −0.473041 + 0.352937]]
  //          = [[0.120104, 0.700981], [0.526959, −0.120104]].
  // Query q2 with key (0,2): cos = [0, 1, 1/√2] → a2 = [0.174022, 0.473041, 0.352937] and
  //   W*(q2) = [[−0.178915, 1.299019], [0.825978, 0.178915]].
  // The augmented hidden layer σ(hW) + σ(hW*) with slow W = [[1, −2], [0.5, 0.5]] (σ = ReLU):
  //   q1, h = (1, 2): hW = (2, −1), hW* = (1.174022, 0.460773) → (2 + 1.174022, 0 + 0.460773) = (3.174022, 0.460773);
  //   q2, h = (2, −1): hW = (1.5, −4.5), hW* = (−1.183807, 2.419123) → (1.5, 2.419123).
  tf.tidy(() => {
    const a = attention(tf.tensor2d([[1, 0], [0, 1], [1, 1]]), tf.tensor2d([[1, 0], [0, 2]]));
    close(a.dataSync(), [0.473041, 0.174022, 0.352937, 0.174022, 0.473041, 0.352937], 1e-6, "attention");
    const memory = { "dense0/kernel": tf.tensor3d([[[1, 0], [0, -1]], [[0, 2], [1, 0]], [[-1, 1], [1, 1]]]) };
    const read = readMemory(a, memory)["dense0/kernel"]!;
    assert.deepEqual(read.shape, [2, 2, 2]);
    close(read.dataSync(), [0.120104, 0.700981, 0.526959, -0.120104, -0.178915, 1.299019, 0.825978, 0.178915], 1e-6, "W*");
    // A stack of one hidden layer (2 → 2) and an identity output layer without fast weights shows the hidden layer's output.
    const stack = metanetStack({ inputShape: [2], outputs: 2, convLayers: 0, hidden: 2 });
    const p = { "dense0/kernel": tf.tensor2d([[1, -2], [0.5, 0.5]]), "dense1/kernel": tf.eye(2) };
    const out = stack.forward(p, "", tf.tensor2d([[1, 2], [2, -1]]), { weights: { "dense0/kernel": read }, perExample: true });
    close(out.dataSync(), [3.174022, 0.460773, 1.5, 2.419123], 1e-5, "augmented layer");
    // The same layer with one shared W* (task-level, as u's): row q1's W* for both inputs.
    const shared = stack.forward(p, "", tf.tensor2d([[1, 2]]), { weights: { "dense0/kernel": tf.tensor2d([[0.120104, 0.700981], [0.526959, -0.120104]]) }, perExample: false });
    close(shared.dataSync(), [3.174022, 0.460773], 1e-5, "shared fast weights");
  });
});

/** A one-coordinate layer, so m and d can be followed by hand. */
const ONE: readonly MetanetLayer[] = [{ key: "dense0/kernel", kind: "dense", shape: [1, 1] }];

test("m and d on one coordinate, by hand (gradient preprocessing p = 7)", () => {
  // Preprocessing: g = 0.5 ≥ e^−7 → (ln 0.5 / 7, sign) = (−0.099021, 1); g = −1e-4 < e^−7 = 9.12e-4 →
  // (−1, e^7·g) = (−1, −0.109663); g = −0.02 → (ln 0.02 / 7, −1) = (−0.558860, −1).
  // m with H = 1: l0 kernel [1, −0.5], bias 1; l1 kernel 2, bias −0.2; out kernel 1.5, bias 0.05.
  //   g = 0.5: l0 = −0.099021 − 0.5 + 1 = 0.400979; l1 = 2·0.400979 − 0.2 = 0.601958; W* = 1.5·0.601958 + 0.05 = 0.952937.
  //   g = −1e-4: l0 = −1 + 0.054832 + 1 = 0.054832; l1 = 0.109663 − 0.2 < 0 → 0; W* = 0.05 (the bias alone).
  // d with H = 1, gates (i, f, o, g) from [x0, x1, h] · K + b, K rows [0.5, −0.5, 1, 1], [1, 0.5, −1, 0.5],
  // [0.2, 0.3, 0.4, −0.6], b = [0, 1, 0, 0]; out kernel 2, bias 0.1; steps g = 0.5 then g = −0.02, h = c = 0 at first:
  //   step 1: z = (0.950489, 1.549511, −1.099021, 0.400979) → c = σ(0.950489)·tanh(0.400979) = 0.274628,
  //           h = σ(−1.099021)·tanh(0.274628) = 0.066961;
  //   step 2: z = (−1.266038, 0.799519, 0.467924, −1.099037) → c = σ(0.799519)·0.274628 + σ(−1.266038)·tanh(−1.099037)
  //           = 0.013476, h = σ(0.467924)·tanh(0.013476) = 0.008286;
  //   Q* = 2·0.008286 + 0.1 = 0.116571.
  tf.tidy(() => {
    const p: Params = {
      [mKey("dense", "l0/kernel")]: tf.tensor2d([[1], [-0.5]]),
      [mKey("dense", "l0/bias")]: tf.tensor1d([1]),
      [mKey("dense", "l1/kernel")]: tf.tensor2d([[2]]),
      [mKey("dense", "l1/bias")]: tf.tensor1d([-0.2]),
      [mKey("dense", "out/kernel")]: tf.tensor2d([[1.5]]),
      [mKey("dense", "out/bias")]: tf.tensor1d([0.05]),
      [dKey("dense", "lstm/kernel")]: tf.tensor2d([[0.5, -0.5, 1, 1], [1, 0.5, -1, 0.5], [0.2, 0.3, 0.4, -0.6]]),
      [dKey("dense", "lstm/bias")]: tf.tensor1d([0, 1, 0, 0]),
      [dKey("dense", "out/kernel")]: tf.tensor2d([[2]]),
      [dKey("dense", "out/bias")]: tf.tensor1d([0.1]),
    };
    const w = exampleFastWeights(p, { "dense0/kernel": tf.tensor3d([[[0.5]], [[-1e-4]]]) }, ONE, 7)["dense0/kernel"]!;
    assert.deepEqual(w.shape, [2, 1, 1]);
    close(w.dataSync(), [0.952937, 0.05], 1e-6, "W*_i = m(∇_i)");
    const q = taskFastWeights(p, { "dense0/kernel": tf.tensor3d([[[0.5]], [[-0.02]]]) }, ONE, 7)["dense0/kernel"]!;
    assert.deepEqual(q.shape, [1, 1]);
    close(q.dataSync(), [0.116571], 1e-6, "Q* = d(∇_1, ∇_2)");
  });
});

/** A `classes`-way task of `shots` support and `queries` query examples per class on inputs of `shape`, labels in class order per shot. */
function task(seed: number, shape: number[], classes = 2, shots = 2, queries = 3): Task {
  const rng = new Rng(seed);
  const size = shape.reduce((a, b) => a * b, 1);
  const set = (k: number) => ({ x: Float32Array.from({ length: k * classes * size }, () => rng.normal()), xShape: [k * classes, ...shape], y: Int32Array.from({ length: k * classes }, (_, i) => i % classes) });
  return { support: set(shots), query: set(queries), seed };
}

test("b's per-example support gradients, by hand and against perExampleGrads", () => {
  // b = 2 → 2 (ReLU) → 2 with W0 = [[1, −2], [0.5, 0.5]], W1 = I; support x1 = (1, 2) of class 0, x2 = (0, 1) of class 1.
  //   x1: z = (2, −1), h = (2, 0), logits (2, 0), softmax (0.880797, 0.119203), δ = p − y = (−0.119203, 0.119203);
  //       ∂L/∂W1 = hᵀδ = [[−0.238406, 0.238406], [0, 0]]; ∂L/∂z = δ ⊙ [z > 0] = (−0.119203, 0);
  //       ∂L/∂W0 = x1ᵀ(∂L/∂z) = [[−0.119203, 0], [−0.238406, 0]].
  //   x2: z = (0.5, 0.5) = h = logits, softmax (0.5, 0.5), δ = (0.5, −0.5); ∂L/∂W1 = [[0.25, −0.25], [0.25, −0.25]];
  //       ∂L/∂W0 = x2ᵀδ = [[0, 0], [0.5, −0.5]].
  const model = metanetNet({ inputShape: [2], outputs: 2, convLayers: 0, hidden: 2 });
  const p = { "dense0/kernel": tf.tensor2d([[1, -2], [0.5, 0.5]]), "dense1/kernel": tf.eye(2) };
  const t: Task = { support: { x: Float32Array.from([1, 2, 0, 1]), xShape: [2, 2], y: Int32Array.from([0, 1]) }, query: { x: Float32Array.from([1, 1]), xShape: [1, 2], y: Int32Array.from([0]) }, seed: 0 };
  const e = episodeOf([t], model, "classification", false, 2);
  tf.tidy(() => {
    const { base, repr } = metaInformation(model.metanet, { fastLayers: "all", taskLevel: false, reprChunks: 5, gradientP: 7 }, p, e);
    assert.equal(repr, undefined, "no task-level gradients without taskLevel");
    assert.deepEqual(names(base), ["dense0/kernel", "dense1/kernel"]);
    close(base["dense0/kernel"]!.dataSync(), [-0.119203, 0, -0.238406, 0, 0, 0, 0.5, -0.5], 1e-6, "∇_i W0");
    close(base["dense1/kernel"]!.dataSync(), [-0.238406, 0.238406, 0, 0, 0.25, -0.25, 0.25, -0.25], 1e-6, "∇_i W1");
    const dense = metaInformation(model.metanet, { fastLayers: "dense", taskLevel: false, reprChunks: 5, gradientP: 7 }, p, e);
    assert.deepEqual(names(dense.base), ["dense0/kernel", "dense1/kernel"], "an MLP's layers are all dense");
  });
  disposeEpisode(e);
  dispose(p);
  // A conv stack: the single-example passes equal the rows of the Jacobian of one batched forward (no batch norm).
  const conv = metanetNet({ inputShape: [4, 4, 1], outputs: 2, convLayers: 2, filters: 2, hidden: 3 });
  const theta = conv.init(5);
  const ct = task(6, [4, 4, 1]);
  const ce = episodeOf([ct], conv, "classification", false, 2);
  tf.tidy(() => {
    const keys = names(theta);
    const mine = exampleGradients((q, i) => taskLoss("classification", conv.forward(q, tf.slice(ce.support.x, [i], [1])), tf.slice(ce.support.y, [i], [1])), theta, keys, 4);
    const perRow = (q: Params) => tf.neg(tf.sum(tf.mul(ce.support.y, tf.logSoftmax(conv.forward(q, ce.support.x))), -1)) as tf.Tensor1D;
    const ref = perExampleGrads(perRow, theta, keys, 4);
    for (const k of keys) {
      assert.deepEqual(mine[k]!.shape, [4, ...theta[k]!.shape]);
      close(mine[k]!.dataSync(), Array.from(ref[k]!.dataSync()), 1e-6, k);
    }
  });
  disposeEpisode(ce);
  dispose(theta);
});

/** What init needs of a setup: the model and the options. */
const setupOf = (model: ReturnType<typeof metanetNet>, o: Partial<MetanetOptions>) => ({ model, hyper: metanet.options.parse(o) }) as unknown as LearnerSetup<MetanetOptions>;

for (const o of [{ fastLayers: "all", taskLevel: true }, { fastLayers: "dense", taskLevel: false }] as const) {
  test(`one episode's gradient matches central differences of the replayed function (${o.fastLayers} layers, taskLevel ${o.taskLevel})`, async () => {
    // Tiny nets: b and u = 1 conv (2 filters, 4×4 → 2×2 after the pool) → dense 3 → 2; m and d with H = 3; 2-way 2-shot
    // with 3 queries per class, u's gradients in 2 chunks of 2. The shard's gradient treats the support gradients as
    // constants, so it is compared with differences of the replayed L(θ) = Σ_queries CE(b(θ, W*(θ; ∇⁰)), y), where ∇⁰
    // (and u's chunk gradients) are recorded at the unperturbed θ and fed back.
    // The point: θ₀ + v₀ (a unit step in a random direction, ~0.05 per coordinate), with m's and d's output kernels
    // ×10. Not θ₀ itself: there m's and d's biases are exactly 0, so a coordinate whose first-layer units are all off
    // puts every second-layer pre-activation exactly on a ReLU kink (tfjs takes the one-sided derivative 0 there,
    // central differences average the two sides). The ×10 makes the memory entries differ enough that the read —
    // and through it u's keys and d's Q* — moves the loss measurably (at θ₀ their derivatives are ~1e-4).
    // Directions: per group of meta-parameters (b's W, u's Q, m's Z, d's G), two random unit directions over that
    // group and the group's normalised gradient (the largest directional derivative, |g_group|), so no group hides
    // behind another's larger gradient. Tolerance: L ≈ 4–7 is off by a few float32 ulp (ulp(4) = 4.8e-7), ~2e-6,
    // which central differences turn into ~1e-3 absolute at ε = 1e-3 (b, m: derivatives 0.003–50) and ~1e-4 at
    // ε = 1e-2 (u, d: derivatives 1e-3–0.2, small enough that the larger ε's O(ε²) truncation stays ≲ 1e-4); a ReLU
    // kink within ±ε is unlikely for these directions: |ĝ·v − fd| ≤ 2e-2·|fd| + 1e-3 (b, m) or + 2e-4 (u, d).
    const model = metanetNet({ inputShape: [4, 4, 1], outputs: 2, convLayers: 1, filters: 2, hidden: 3 });
    const s = setupOf(model, { ...o, metaHidden: 3, reprChunks: 2 });
    const stack = metanetOf(model);
    const theta0 = metanet.init(s, 4);
    const v0 = randomDirection(theta0, 7);
    const theta1 = shifted(theta0, v0, 1);
    const theta: Params = Object.fromEntries(names(theta1).map((k) => [k, /\/(m|d)\/(conv|dense)\/out\/kernel$/.test(k) ? tf.mul(theta1[k]!, 10) : theta1[k]!.clone()]));
    dispose(theta0, v0, theta1);
    assert.equal(names(theta).some((k) => k.startsWith(dKey("conv", ""))), o.fastLayers === "all" && o.taskLevel, "d for u's conv layers exactly with fast conv layers and taskLevel");
    assert.equal(names(theta).some((k) => k.startsWith(mKey("conv", ""))), o.fastLayers === "all", "m for conv layers exactly with fast conv layers");
    const t = task(9, [4, 4, 1]);
    const g = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false, classes: 2 }, metanetEpisode(stack, s.hyper))).sum;
    assert.deepEqual(names(g), names(theta));
    if (o.taskLevel) assert.equal(tf.tidy(() => tf.max(tf.abs(g[`${U_PREFIX}dense1/kernel`]!)).dataSync()[0]), 0, "u's head gets no gradient");
    const e: Episode = episodeOf([t], model, "classification", false, 2);
    const info = metaInformation(stack, s.hyper, theta, e);
    const replay = (p: Params) => tf.tidy(() => taskLoss("classification", metanetLogits(stack, s.hyper, p, e, info), e.query.y).dataSync()[0]! * 6);
    const groups = {
      b: { eps: 1e-3, abs: 1e-3, has: (k: string) => !k.startsWith("learner/") },
      u: { eps: 1e-2, abs: 2e-4, has: (k: string) => k.startsWith(U_PREFIX) },
      m: { eps: 1e-3, abs: 1e-3, has: (k: string) => k.startsWith("learner/metanet/m/") },
      d: { eps: 1e-2, abs: 2e-4, has: (k: string) => k.startsWith("learner/metanet/d/") },
    };
    for (const [group, { eps, abs, has }] of Object.entries(groups)) {
      const keys = names(theta).filter(has);
      assert.equal(keys.length > 0, group !== "d" || o.taskLevel, `group ${group}: d exactly with taskLevel`);
      if (keys.length === 0) continue;
      const only = (f: (k: string) => tf.Tensor) => Object.fromEntries(names(theta).map((k) => [k, tf.tidy(() => (has(k) ? f(k) : tf.zerosLike(theta[k]!)))]));
      const norm = Math.sqrt(keys.reduce((a, k) => a + tf.tidy(() => tf.sum(tf.square(g[k]!)).dataSync()[0]!), 0));
      assert.ok(norm > 1e-3, `${group}: a gradient to check (|g| = ${norm})`);
      const directions = [only((k) => tf.div(g[k]!, norm)), ...[0, 1].map((i) => {
        const r = randomDirection(theta, 40 + 2 * group.charCodeAt(0) + i);
        const v = only((k) => r[k]!.clone());
        dispose(r);
        return v;
      })];
      directions.forEach((v, i) => {
        const plus = shifted(theta, v, eps);
        const minus = shifted(theta, v, -eps);
        const fd = (replay(plus) - replay(minus)) / (2 * eps);
        const analytic = dot(g, v);
        assert.ok(Math.abs(analytic - fd) <= 2e-2 * Math.abs(fd) + abs, `${group}, ${i === 0 ? "gradient" : "random"} direction ${i}: ${analytic} vs ${fd}`);
        dispose(plus, minus, v);
      });
    }
    dispose(theta, g, info.base, info.repr);
    disposeEpisode(e);
  });
}

/** A family of the synthetic tasks above (what evaluation needs of one). */
const family = (shape: number[]): TaskFamily => ({ kind: "classification", name: "synthetic", inputShape: shape, outputs: 2, task: (seed, _split, it, i) => task(seed * 1000 + it * 100 + i, shape) });

test("the same seed gives bit-identical parameters and shards; a shard of two tasks is task 0 + task 1; no leaks over many episodes and evaluations", async () => {
  const model = metanetNet({ inputShape: [4, 4, 1], outputs: 2, convLayers: 1, filters: 2, hidden: 3 });
  const s = { ...setupOf(model, { metaHidden: 3, reprChunks: 2 }), test: family([4, 4, 1]) } as LearnerSetup<MetanetOptions>;
  const run = (params: Params, ts: readonly Task[]) => runEpisodes(params, ts, { model, kind: "classification", batched: false, classes: 2 }, metanetEpisode(metanetOf(model), s.hyper));
  const bytes = (p: Params) => names(p).map((k) => Array.from(p[k]!.dataSync()));
  const tasks = [task(1, [4, 4, 1]), task(2, [4, 4, 1])];
  const once = async () => {
    const params = metanet.init(s, 5);
    const shard = await run(params, tasks);
    const out = { params: bytes(params), sum: bytes(shard.sum), metrics: shard.metrics };
    dispose(params, shard.sum);
    return out;
  };
  const first = await once();
  assert.deepEqual(await once(), first);
  const params = metanet.init(s, 5);
  const [a, b] = [await run(params, [tasks[0]!]), await run(params, [tasks[1]!])];
  const folded = tf.tidy(() => Object.fromEntries(names(a.sum).map((k) => [k, tf.add(a.sum[k]!, b.sum[k]!)])));
  assert.deepEqual(bytes(folded), first.sum, "the shard sum is task 0 + task 1, in that order");
  assert.deepEqual([...a.metrics, ...b.metrics], first.metrics);
  dispose(a.sum, b.sum, folded);

  const before = tf.memory().numTensors;
  for (let i = 0; i < 6; i++) dispose((await run(params, tasks)).sum);
  assert.equal(tf.memory().numTensors, before, "shards leave nothing behind");
  for (let i = 0; i < 3; i++) {
    const r = await metanet.evaluate(s, params, { tasks: 4, steps: [0, 3], seed: i });
    assert.equal(r.results[0]!.accuracy!.mean, r.results[1]!.accuracy!.mean, "nothing adapts: every step count reads the same");
    assert.ok(Number.isFinite(r.results[0]!.loss.mean));
  }
  assert.equal(tf.memory().numTensors, before, "evaluation leaves nothing behind");
  dispose(params);
});

test("presets parse and resolve on Omniglot; the first (the cheapest CI runs) is the small-net one; the model must be metanet", async () => {
  const { loadOmniglot } = await import("../../storage/datasets.js");
  const data = { omniglot: (dir: string) => loadOmniglot(dir) };
  const first = metanet.presets[0]!;
  assert.equal(first.name, "omniglot-5w1s-metanet-mlp");
  for (const p of metanet.presets) {
    const c = p.config as { task?: { family?: string }; model?: { kind?: string } };
    // cheapestPreset ranks sinusoid, then omniglot-mlp, then the rest in array order: none is either, so the first wins.
    assert.ok(c.task?.family !== "sinusoid" && c.model?.kind !== "omniglot-mlp", p.name);
    const run = resolveRun(parseRunConfig(p.config), data);
    assert.equal(run.learner, metanet);
    assert.ok(metanetOf(run.setup.model), p.name);
  }
  assert.deepEqual(
    metanet.presets.map((p) => p.name),
    ["omniglot-5w1s-metanet-mlp", "omniglot-5w1s-metanet", "omniglot-5w5s-metanet", "omniglot-20w1s-metanet"],
  );
  // One shard and a short evaluation of the cheap preset's shape on real data (a narrower hidden layer keeps it short).
  const cfg = parseRunConfig({ ...first.config, model: { kind: "metanet", convLayers: 0, hidden: 8 } });
  const run = resolveRun(cfg, data);
  const params = metanet.init(run.setup, 1);
  const before = tf.memory().numTensors;
  const shard = await metanet.shardRunner(run.setup).runShard(params, [run.setup.train.task(3, "train", 0, 0)]);
  assert.deepEqual(names(shard.sum), names(params));
  assert.ok(shard.metrics[0]!.postLoss > 0 && Number.isFinite(shard.metrics[0]!.postLoss));
  dispose(shard.sum);
  const r = await metanet.evaluate(run.setup, params, { tasks: 2, steps: [0], seed: 1 });
  assert.ok(Number.isFinite(r.results[0]!.accuracy!.mean));
  assert.equal(tf.memory().numTensors, before, "no leaks on real data");
  dispose(params);
  // Another model kind is refused at config parse, with the fix named (needs.modelKinds).
  assert.throws(() => parseRunConfig({ algorithm: "metanet", task: { family: "omniglot" }, model: { kind: "conv4", filters: 4 } }), /metanet needs a metanet model; conv4 is not one — set model.kind: metanet/);
});
