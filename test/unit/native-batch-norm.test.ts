// Batch norm on tfjs-node's native backend (meta/batch-norm.ts): one task's batch norm runs as
// TensorFlow's FusedBatchNorm, and its gradient as FusedBatchNormGrad, whose own gradient is written
// out in meta/batch-norm.ts, so MAML's inner steps run it too.
// Each is checked against the textbook formula in plain tfjs ops on the same backend. These tests
// need the native backend (`npm run setup:native`, which .ci/run does); without it they are
// skipped, unless METATRAIN_REQUIRE_NATIVE=1 (set by .ci/run), when they fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { batchNorm, BN_EPS } from "../../meta/batch-norm.js";
import { Rng } from "../../meta/rng.js";
import { conv4, mlp } from "../../meta/models.js";
import { dispose } from "../../meta/params.js";
import type { Task } from "../../meta/tasks/types.js";
import { assertBatchedMatchesOneByOne } from "../helpers/learners.js";
import { nativeBackendOrSkip } from "../helpers/native.js";

const opts = await nativeBackendOrSkip();

/** The textbook batch norm over all axes but the last, in plain tfjs ops (autodiff through them). */
function textbook(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const { mean, variance } = tf.moments(x, axes, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, BN_EPS))), gamma), beta);
}

function random(shape: number[], seed: number, scale = 1, shift = 0): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => shift + scale * rng.normal()), shape);
}

/** Counts the native ops the backend runs by name while `f` runs. */
function countingNativeOps<T>(f: () => T): { result: T; calls: Map<string, number> } {
  const be = tf.backend() as unknown as { executeMultipleOutputs: (name: string, ...rest: unknown[]) => unknown };
  const original = be.executeMultipleOutputs;
  const calls = new Map<string, number>();
  be.executeMultipleOutputs = function (this: unknown, name: string, ...rest: unknown[]) {
    calls.set(name, (calls.get(name) ?? 0) + 1);
    return original.call(this, name, ...rest);
  };
  try {
    return { result: f(), calls };
  } finally {
    be.executeMultipleOutputs = original;
  }
}

/** |a − b| ≤ tol·(1 + |b|) everywhere. */
function close(a: tf.Tensor, b: tf.Tensor, tol: number, what: string): void {
  const x = a.dataSync();
  const y = b.dataSync();
  assert.deepEqual(a.shape, b.shape, `${what}: shapes`);
  x.forEach((v, i) => assert.ok(Math.abs(v - y[i]!) <= tol * (1 + Math.abs(y[i]!)), `${what}[${i}]: ${v} vs ${y[i]}`));
}

// Shapes: a Conv4 activation of one task (NHWC) and an MLP's hidden layer ([rows, features]).
const CASES: { name: string; shape: number[] }[] = [
  { name: "conv [20, 7, 7, 16]", shape: [20, 7, 7, 16] },
  { name: "dense [15, 24]", shape: [15, 24] },
];

test("forward: FusedBatchNorm gives the textbook values, and is what runs", opts(), () => {
  // Tolerance: the fused kernel sums in another order; values of size ~3 (x̂·γ + β with |x̂| ≲ 3)
  // agree to float32 rounding of the mean and variance, ~1e-6 relative, so 1e-5.
  for (const { name, shape } of CASES) {
    const C = shape[shape.length - 1]!;
    const x = random(shape, 1, 2, 0.5);
    const gamma = random([C], 2, 0.3, 1);
    const beta = random([C], 3);
    const before = tf.memory().numTensors;
    const { result: y, calls } = countingNativeOps(() => batchNorm(x, gamma, beta, shape.slice(0, -1).map((_, i) => i)));
    assert.equal(calls.get("FusedBatchNorm"), 1, `${name}: FusedBatchNorm ran`);
    assert.equal(tf.memory().numTensors, before + 1, `${name}: only y is left`);
    const want = textbook(x, gamma, beta);
    close(y, want, 1e-5, `${name} y`);
    tf.dispose([x, gamma, beta, y, want]);
  }
});

test("gradient: FusedBatchNormGrad gives the textbook gradient for x, γ and β", opts(), () => {
  // L = Σ y·w for a random w; the gradients are those of the formula in plain ops, to 1e-4
  // relative (the γ and β gradients are sums over all rows, of size ~10–100).
  for (const { name, shape } of CASES) {
    const C = shape[shape.length - 1]!;
    const axes = shape.slice(0, -1).map((_, i) => i);
    const x = random(shape, 4, 1.5, -0.2);
    const gamma = random([C], 5, 0.3, 1);
    const beta = random([C], 6);
    const w = random(shape, 7);
    const loss = (bn: (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(bn(a, g, b), w));
    const before = tf.memory().numTensors;
    const { result: got, calls } = countingNativeOps(() => tf.grads(loss((a, g, b) => batchNorm(a, g, b, axes)))([x, gamma, beta]));
    assert.equal(calls.get("FusedBatchNormGrad"), 1, `${name}: FusedBatchNormGrad ran`);
    assert.equal(tf.memory().numTensors, before + 3, `${name}: only the three gradients are left`);
    const want = tf.grads(loss(textbook))([x, gamma, beta]);
    ["x", "γ", "β"].forEach((what, i) => close(got[i]!, want[i]!, 1e-4, `${name} ∂L/∂${what}`));
    tf.dispose([x, gamma, beta, w, ...got, ...want]);
  }
});

type BatchNorm = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * A MAML-shaped meta-loss of (x, γ, β) through a batch norm `bn`: one SGD step (rate 0.1) on all
 * three with the inner loss ½·Σ (BN(x; γ, β)·w)² — nonlinear in BN's output, so its upstream
 * gradient BN·w² depends on all three — then Σ BN(x', γ', β')·w₂ at the stepped values.
 */
const mamlShaped = (w: tf.Tensor, w2: tf.Tensor) => (bn: BatchNorm) => (x0: tf.Tensor, g0: tf.Tensor, b0: tf.Tensor) => {
  const inner = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.mul(tf.sum(tf.square(tf.mul(bn(a, g, b), w))), 0.5);
  const [gx, gg, gb] = tf.grads(inner)([x0, g0, b0]);
  const step = (p: tf.Tensor, d: tf.Tensor) => tf.sub(p, tf.mul(d, 0.1));
  return tf.sum(tf.mul(bn(step(x0, gx!), step(g0, gg!), step(b0, gb!)), w2));
};

test("second order: MAML's meta-gradient through the native backward is the textbook one, for x, γ and β", opts(), () => {
  // mamlShaped's meta-loss differentiated w.r.t. the initial (x, γ, β) through the inner gradient:
  // every term of bnGradGrad is exercised. Against the same computation in plain ops, to 1e-4
  // relative (float32 sums of ~10² terms, two orders deep).
  for (const { name, shape } of CASES) {
    const C = shape[shape.length - 1]!;
    const axes = shape.slice(0, -1).map((_, i) => i);
    const x = random(shape, 8, 1.2, 0.3);
    const gamma = random([C], 9, 0.3, 1);
    const beta = random([C], 10);
    const w = random(shape, 11);
    const w2 = random(shape, 15);
    const meta = mamlShaped(w, w2);
    const before = tf.memory().numTensors;
    const { result: got, calls } = countingNativeOps(() => tf.grads(meta((a, g, b) => batchNorm(a, g, b, axes)))([x, gamma, beta]));
    // FusedBatchNormGrad, not the formula, at every order: the inner backward (taped), the outer
    // step's batch norm, bnGradGrad's D_a, and the inner forward's own gradient in the outer pass.
    assert.equal(calls.get("FusedBatchNormGrad"), 4, `${name}: native backward kernels`);
    assert.equal(tf.memory().numTensors, before + 3, `${name}: only the three meta-gradients are left`);
    const want = tf.grads(meta(textbook))([x, gamma, beta]);
    ["x", "γ", "β"].forEach((what, i) => close(got[i]!, want[i]!, 1e-4, `${name} meta-gradient ∂/∂${what}`));
    assert.ok(Math.max(...Array.from(got[1]!.dataSync(), Math.abs)) > 1e-3, `${name}: a non-trivial meta-gradient`);
    tf.dispose([x, gamma, beta, w, w2, ...got, ...want]);
  }
});

test("third order: the native backward's gradient is itself differentiable", opts(), () => {
  // h₁ = ∂L/∂(x, γ) for L = ½·Σ (BN·w)²; h₂ = ∂⟨h₁, v⟩/∂(x, γ); h₃ = ∂⟨h₂, v⟩/∂(x, γ): the
  // third derivative of L along v, through bnGradGrad's own gradient. Textbook to 1e-3 relative
  // (three float32 orders deep).
  const shape = [6, 3, 3, 4];
  const axes = [0, 1, 2];
  const x = random(shape, 16, 1.1, 0.2);
  const gamma = random([4], 17, 0.3, 1);
  const beta = random([4], 18);
  const w = random(shape, 19);
  const vx = random(shape, 20);
  const vg = random([4], 21);
  const third = (bn: (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor) => {
    const along = (f: (a: tf.Tensor, g: tf.Tensor) => tf.Scalar) => (a: tf.Tensor, g: tf.Tensor) => {
      const [da, dg] = tf.grads(f)([a, g]);
      return tf.add(tf.sum(tf.mul(da!, vx)), tf.sum(tf.mul(dg!, vg))) as tf.Scalar;
    };
    const loss = (a: tf.Tensor, g: tf.Tensor) => tf.mul(tf.sum(tf.square(tf.mul(bn(a, g, beta), w))), 0.5) as tf.Scalar;
    return tf.grads(along(along(loss)))([x, gamma]);
  };
  const got = third((a, g, b) => batchNorm(a, g, b, axes));
  const want = third(textbook);
  close(got[0]!, want[0]!, 1e-3, "third derivative ∂/∂x");
  close(got[1]!, want[1]!, 1e-3, "third derivative ∂/∂γ");
  assert.ok(Math.max(...Array.from(got[0]!.dataSync(), Math.abs)) > 1e-3, "a non-trivial third derivative");
  tf.dispose([x, gamma, beta, w, vx, vg, ...got, ...want]);
});

/** Task-batched batch norm in plain ops: each task's slice through `textbook`, stacked. */
function textbookPerTask(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const T = x.shape[0]!;
  const C = x.shape[x.rank - 1]!;
  const task = (p: tf.Tensor, t: number) => (p.rank === 1 ? p : tf.reshape(tf.slice(p, [t], [1]), [C]));
  return tf.stack(tf.unstack(x).map((xt, t) => textbook(xt, task(gamma, t), task(beta, t))));
}

// Task-batched shapes: the MLP's [T, rows, features] with per-task γ, β ([T, 1, F]) or shared ones
// ([F], sharedBody), and the batched Conv4's [T, n, H, W, C]; 32 rows a task and more go native,
// fewer (a support set of a few shots) keep the formula.
const BATCHED: { name: string; shape: number[]; paramShape: (T: number, C: number) => number[]; fused: number }[] = [
  { name: "dense [3, 40, 4], per-task γ", shape: [3, 40, 4], paramShape: (T, C) => [T, 1, C], fused: 1 },
  { name: "dense [3, 40, 4], shared γ", shape: [3, 40, 4], paramShape: (_T, C) => [C], fused: 1 },
  { name: "conv [2, 2, 4, 4, 5], per-task γ", shape: [2, 2, 4, 4, 5], paramShape: (T, C) => [T, 1, 1, 1, C], fused: 1 },
  { name: "dense [3, 6, 4] (few rows: the formula)", shape: [3, 6, 4], paramShape: (T, C) => [T, 1, C], fused: 0 },
];

test("task-batched: one FusedBatchNorm with the tasks beside the channels, per-task statistics, and MAML's meta-gradient through it", opts(), () => {
  // Forward to 1e-5 relative against each task's slice through the textbook formula (different
  // statistics per task: a shared one would fail at once); then the MAML-shaped meta-gradient of
  // the second-order test, for x, γ and β, to 1e-4.
  for (const { name, shape, paramShape, fused } of BATCHED) {
    const T = shape[0]!;
    const C = shape[shape.length - 1]!;
    const axes = shape.slice(1, -1).map((_, i) => i + 1);
    const x = tf.add(random(shape, 12, 1.3), tf.reshape(tf.range(0, T), [T, ...shape.slice(1).map(() => 1)])); // tasks' means differ
    const gamma = random(paramShape(T, C), 13, 0.2, 1);
    const beta = random(paramShape(T, C), 14);
    const { result: y, calls } = countingNativeOps(() => batchNorm(x, gamma, beta, axes));
    assert.equal(calls.get("FusedBatchNorm") ?? 0, fused, `${name}: FusedBatchNorm calls`);
    close(y, textbookPerTask(x, gamma, beta), 1e-5, `${name} y`);

    const w = random(shape, 22);
    const w2 = random(shape, 23);
    const meta = mamlShaped(w, w2);
    const got = tf.grads(meta((a, g, b) => batchNorm(a, g, b, axes)))([x, gamma, beta]);
    const want = tf.grads(meta(textbookPerTask))([x, gamma, beta]);
    ["x", "γ", "β"].forEach((what, i) => close(got[i]!, want[i]!, 1e-4, `${name} meta-gradient ∂/∂${what}`));
    tf.dispose([x, gamma, beta, y, w, w2, ...got, ...want]);
  }
});

test("learners on the native backend: task-batched shards give one task at a time's contributions", opts(), async () => {
  // The batched paths now run other kernels than one task at a time: the batched batch norm as
  // one FusedBatchNorm with the tasks beside the channels (Conv4's activations; the MLP's query
  // sets of 40 rows) or the formula (the MLP's support sets of 6), one task's as FusedBatchNorm.
  // Same math in other summation orders: second-order meta-gradients of O(1e-2…1) agree to
  // ~1e-6 relative (seen: ≤ 2.1e-6, Conv4 MAML); 1e-4·(1 + |x|) leaves ≥ 10× margin and is far
  // below a wrong or missing term. A rerun of the batched shard is bit-identical.
  const rng = new Rng(31);
  const task = (seed: number, hw: number, query: number): Task => {
    const set = (n: number) => ({ x: Float32Array.from({ length: n * hw * hw }, () => rng.next()), xShape: [n, hw, hw, 1], y: Int32Array.from({ length: n }, (_, i) => i % 3) });
    return { support: set(6), query: set(query), seed };
  };
  const models = [
    { name: "Conv4", model: conv4({ inputShape: [16, 16, 1], outputs: 3, filters: 4, taskBatched: true }), tasks: [1, 2, 3].map((s) => task(s, 16, 6)) },
    { name: "MLP", model: mlp({ sizes: [36, 12, 10, 3], batchNorm: true, inputShape: [6, 6, 1] }), tasks: [1, 2, 3].map((s) => task(s, 6, 40)) },
  ];
  for (const { name, model, tasks } of models) {
    const theta = model.init(5);
    for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
      await assertBatchedMatchesOneByOne(`${name} ${algorithm}`, { algorithm, model, theta, tasks, tol: 1e-4 });
    }
    dispose(theta);
  }
});
