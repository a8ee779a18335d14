// Batch norm on tfjs-node's native backend (meta/batch-norm.ts): one task's batch norm runs as
// TensorFlow's FusedBatchNorm, and its gradient as FusedBatchNormGrad, whose own gradient is written
// out in meta/batch-norm.ts, so MAML's inner steps run it too.
// Each is checked against the textbook formula in plain tfjs ops on the same backend. These tests
// need the native backend (`npm run setup:native`, which .ci/run does); without it they are
// skipped, unless METATRAIN_REQUIRE_NATIVE=1 (set by .ci/run), when they fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../../meta/backend.js";
import { batchNorm, BN_EPS } from "../../meta/batch-norm.js";
import { Rng } from "../../meta/rng.js";

// Decided before the tests are declared, so a missing backend shows as skipped with its reason.
let native: string | undefined;
try {
  await selectBackend("tfjs-node", {});
  native = tf.getBackend();
} catch (e) {
  if (process.env.METATRAIN_REQUIRE_NATIVE === "1") throw e;
}
const opts = () => ({ skip: native === "tensorflow" ? false : "the native backend is not installed (npm run setup:native)" });

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

test("second order: MAML's meta-gradient through the native backward is the textbook one, for x, γ and β", opts(), () => {
  // A MAML-shaped problem on every input: one SGD step on (x, γ, β) with the inner loss
  // ½·Σ (BN(x; γ, β)·w)² — nonlinear in BN's output, so the upstream gradient g = BN·w² depends on
  // all three and every term of bnGradGrad is exercised — then the outer loss Σ BN(x', γ', β')·w₂
  // differentiated w.r.t. the initial (x, γ, β) through the inner gradient. Against the same
  // computation in plain ops, to 1e-4 relative (float32 sums of ~10² terms, two orders deep).
  for (const { name, shape } of CASES) {
    const C = shape[shape.length - 1]!;
    const axes = shape.slice(0, -1).map((_, i) => i);
    const x = random(shape, 8, 1.2, 0.3);
    const gamma = random([C], 9, 0.3, 1);
    const beta = random([C], 10);
    const w = random(shape, 11);
    const w2 = random(shape, 15);
    const meta = (bn: (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor) => (x0: tf.Tensor, g0: tf.Tensor, b0: tf.Tensor) => {
      const inner = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.mul(tf.sum(tf.square(tf.mul(bn(a, g, b), w))), 0.5);
      const [gx, gg, gb] = tf.grads(inner)([x0, g0, b0]);
      const step = (p: tf.Tensor, d: tf.Tensor) => tf.sub(p, tf.mul(d, 0.1));
      return tf.sum(tf.mul(bn(step(x0, gx!), step(g0, gg!), step(b0, gb!)), w2));
    };
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

test("task-batched batch norm (per-task axes) keeps the formula: FusedBatchNorm normalises over all rows", opts(), () => {
  const x = random([3, 6, 4], 12);
  const gamma = random([3, 1, 4], 13, 0.2, 1);
  const beta = random([3, 1, 4], 14);
  const { result: y, calls } = countingNativeOps(() => batchNorm(x, gamma, beta, [1]));
  assert.equal(calls.get("FusedBatchNorm"), undefined);
  // Task 0's rows alone, through the textbook formula.
  const want = textbook(tf.reshape(tf.slice(x, [0, 0, 0], [1, 6, 4]), [6, 4]), tf.reshape(tf.slice(gamma, [0, 0, 0], [1, 1, 4]), [4]), tf.reshape(tf.slice(beta, [0, 0, 0], [1, 1, 4]), [4]));
  close(tf.reshape(tf.slice(y, [0, 0, 0], [1, 6, 4]), [6, 4]), want, 1e-5, "task 0");
});
