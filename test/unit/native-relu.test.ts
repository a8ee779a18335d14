// ReLU's backward on tfjs-node's native backend (meta/relu.ts): TensorFlow's ReluGrad as one
// kernel, with its own gradient written out, in place of the formula dy·cast(x > 0). Checked
// against that formula in plain ops on the same backend, at first order (bit for bit: ReluGrad
// computes gradients·cast(features > 0), the same float32 products) and through MAML's second
// order. These tests need the native backend (`npm run setup:native`, which .ci/run does); without
// it they are skipped, unless METATRAIN_REQUIRE_NATIVE=1 (set by .ci/run), when they fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { reluFormulaGradient } from "../../meta/relu.js";
import { Rng } from "../../meta/rng.js";
import { nativeBackendOrSkip } from "../helpers/native.js";

const opts = await nativeBackendOrSkip();

/** `f` with ReLU's gradient the formula (`true`) or the kernel of meta/relu.ts. */
function withGradient<T>(useFormula: boolean, f: () => T): T {
  if (useFormula) tf.registerGradient(reluFormulaGradient);
  else registerHigherOrderGradients();
  try {
    return f();
  } finally {
    registerHigherOrderGradients();
  }
}

/** Normal values, some set to exactly 0 and −0 (the kink, where both give a zero gradient). */
function inputs(shape: number[], seed: number): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, (_, i) => (i % 11 === 0 ? 0 : i % 13 === 0 ? -0 : rng.normal())), shape);
}

const SHAPES = [[5, 7, 7, 16], [3, 5, 24]];

test("first order: ReLU's backward on the native kernel is the formula's, bit for bit", opts(), async () => {
  for (const shape of SHAPES) {
    const x = inputs(shape, 1);
    const w = inputs(shape, 2);
    const grad = () => tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), w)))([x])[0]!;
    const ours = withGradient(false, grad);
    const theirs = withGradient(true, grad);
    // Same bytes: the sign of every zero included.
    assert.deepEqual(Buffer.from(ours.dataSync().buffer), Buffer.from(theirs.dataSync().buffer), `[${shape}]`);
    // One kernel, not Greater, Cast and Multiply.
    const kernels = (await tf.profile(() => withGradient(false, grad))).kernelNames;
    assert.ok(kernels.includes("MetatrainReluGrad"), `[${shape}] runs the kernel: ${kernels}`);
    assert.ok(!kernels.includes("Greater") && !kernels.includes("Cast"), `[${shape}] no formula ops: ${kernels}`);
    tf.dispose([x, w, ours, theirs]);
  }
});

test("second order: a gradient through ReLU's backward, in x and in the upstream gradient, is the formula's", opts(), () => {
  // f₁ = ⟨c₁, relu(x)²⟩ makes the upstream of ReLU's backward, 2c₁·relu(x), depend on x, so
  // f₂ = ⟨c₂, ∇f₁(x)⟩ differentiates that backward in its upstream (as MAML's outer gradient
  // does through each inner step): ∇f₂ = 2·c₁·c₂·[x > 0] (relu's second derivative is 0 away from
  // the kink). Both sides compute that product in a different order of float32 operations, so
  // they agree to rounding: values O(1), 1e-6 relative is > 10× it and far below a missing term.
  for (const shape of SHAPES) {
    const x = inputs(shape, 3);
    const c1 = inputs(shape, 4);
    const c2 = inputs(shape, 5);
    const f2 = () =>
      tf.grads((a: tf.Tensor) => {
        const g = tf.grads((b: tf.Tensor) => tf.sum(tf.mul(c1, tf.square(tf.relu(b)))))([a])[0]!;
        return tf.sum(tf.mul(c2, g));
      })([x])[0]!;
    const ours = withGradient(false, f2).dataSync();
    const theirs = withGradient(true, f2).dataSync();
    const [xs, a, b] = [x.dataSync(), c1.dataSync(), c2.dataSync()];
    ours.forEach((v, i) => {
      const expected = xs[i]! > 0 ? 2 * a[i]! * b[i]! : 0;
      assert.ok(Math.abs(v - theirs[i]!) <= 1e-6 * (1 + Math.abs(theirs[i]!)), `[${shape}][${i}]: ${v} vs formula ${theirs[i]}`);
      assert.ok(Math.abs(v - expected) <= 1e-5 * (1 + Math.abs(expected)), `[${shape}][${i}]: ${v} vs 2·c₁·c₂·[x > 0] = ${expected}`);
    });
    tf.dispose([x, c1, c2]);
  }
});

test("ReLU's backward through its upstream alone: ∂⟨g, dy·[x > 0]⟩/∂dy = g·[x > 0], and nothing leaks", opts(), () => {
  const x = inputs([4, 9], 6);
  const g = inputs([4, 9], 7);
  const before = tf.memory().numTensors;
  // d/d(dy) of ⟨g, ∂⟨dy, relu(x)⟩/∂x⟩: the kernel's gradient in dy is the kernel applied to g.
  const got = tf.tidy(() => tf.grads((dy: tf.Tensor) => tf.sum(tf.mul(g, tf.grads((a: tf.Tensor) => tf.sum(tf.mul(tf.relu(a), dy)))([x])[0]!)))([tf.onesLike(x)])[0]!);
  const [xs, gs, vs] = [x.dataSync(), g.dataSync(), got.dataSync()];
  // Exact: one float32 product by 1 or by 0 (which may be −0: equal as numbers).
  vs.forEach((v, i) => assert.ok(v === (xs[i]! > 0 ? gs[i]! : 0), `[${i}]: ${v} for x = ${xs[i]}, g = ${gs[i]}`));
  got.dispose();
  assert.equal(tf.memory().numTensors, before, "tensors left behind");
  tf.dispose([x, g]);
});
