// meta/ops.ts: stop-gradient, the gradient-free least-used mask, per-example gradients and the
// gradient preprocessing of learned optimizers, each against values worked out by hand.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { perExampleGrads, preprocessGradient, smallestMask, stopGradient } from "../../meta/ops.js";
import { useCpu } from "../helpers/tf.js";

const close = (a: ArrayLike<number>, b: readonly number[], tol = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
};

before(useCpu);

describe("stopGradient", () => {
  test("is x forward and a constant backward", () => {
    // f(x) = x² + stop(x)·x at x = 3: the value is 9 + 9 = 18; the gradient treats stop(x) as the
    // constant 3, so f' = 2x + 3 = 9 (without the stop it would be 4x = 12).
    const x = tf.scalar(3);
    const [v, g] = tf.tidy(() => {
      const f = (t: tf.Tensor) => tf.add(tf.square(t), tf.mul(stopGradient(t), t)) as tf.Scalar;
      return [f(x).dataSync()[0]!, tf.grad(f)(x).dataSync()[0]!];
    });
    assert.equal(v, 18);
    assert.equal(g, 9);
    x.dispose();
  });

  test("cuts a second-order path: the gradient of a stopped gradient is zero", () => {
    // h(x) = stop(d/dx x³)·x = 3x²·x with 3x² constant: h'(2) = 3·4 = 12 (not 9x² = 36).
    const x = tf.scalar(2);
    const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.mul(stopGradient(tf.grad((u: tf.Tensor) => tf.pow(u, 3))(t)), t) as tf.Scalar)(x).dataSync()[0]!);
    assert.equal(g, 12);
    x.dispose();
  });
});

describe("smallestMask", () => {
  test("marks the k smallest per row, lower index first on ties", () => {
    const x = tf.tensor2d([
      [0.5, 0.1, 0.9, 0.1],
      [3, 2, 1, 0],
    ]);
    const m2 = tf.tidy(() => Array.from(smallestMask(x, 2).dataSync()));
    // Row 0: the two 0.1s (indices 1 and 3); row 1: 1 and 0 (indices 2 and 3).
    assert.deepEqual(m2, [0, 1, 0, 1, 0, 0, 1, 1]);
    const m1 = tf.tidy(() => Array.from(smallestMask(x, 1).dataSync()));
    // Row 0 ties at 0.1 between indices 1 and 3: the lower index wins.
    assert.deepEqual(m1, [0, 1, 0, 0, 0, 0, 0, 1]);
    x.dispose();
  });

  test("passes no gradient (and does not trip over TopK's missing one)", () => {
    const x = tf.tensor1d([0.3, 0.2, 0.7]);
    const g = tf.tidy(() => Array.from(tf.grad((t: tf.Tensor) => tf.sum(tf.mul(smallestMask(t, 1), t)) as tf.Scalar)(x).dataSync()));
    // sum(mask · x) = x[1] with the mask a constant: gradient e_1.
    assert.deepEqual(g, [0, 1, 0]);
    x.dispose();
  });

  test("refuses k outside [1, n]", () => {
    const x = tf.zeros([2, 3]);
    assert.throws(() => smallestMask(x, 0), /k must be an integer in \[1, 3\]/);
    assert.throws(() => smallestMask(x, 4), /k must be an integer/);
    x.dispose();
  });
});

describe("perExampleGrads", () => {
  test("rows of the Jacobian of a batched forward", () => {
    // losses_i = (w·x_i − y_i)² for x = [[1, 2], [3, 0]], y = [1, 2], w = [1, 1]:
    // residuals r = [2, 1]; ∂losses_i/∂w = 2 r_i x_i = [4, 8] and [6, 0].
    const theta = { w: tf.tensor1d([1, 1]) };
    const x = tf.tensor2d([
      [1, 2],
      [3, 0],
    ]);
    const y = tf.tensor1d([1, 2]);
    const before = tf.memory().numTensors;
    const g = perExampleGrads((p) => tf.square(tf.sub(tf.squeeze(tf.matMul(x, tf.reshape(p.w!, [2, 1]))), y)) as tf.Tensor1D, theta, ["w"], 2);
    assert.deepEqual(g.w!.shape, [2, 2]);
    close(g.w!.dataSync(), [4, 8, 6, 0]);
    g.w!.dispose();
    assert.equal(tf.memory().numTensors, before, "no tensors left behind but the result");
    tf.dispose([theta.w, x, y]);
  });

  test("batch statistics are the batch's, not each example's alone", () => {
    // losses_i = (x_i − mean(x))·w with x = [1, 3]: mean 2, so losses = [−w, w] and the rows are
    // −1 and 1. Had each example been forwarded alone, its mean would be itself: rows 0 and 0.
    const theta = { w: tf.scalar(5) };
    const x = tf.tensor1d([1, 3]);
    const g = perExampleGrads((p) => tf.mul(tf.sub(x, tf.mean(x)), p.w!) as tf.Tensor1D, theta, ["w"], 2);
    close(g.w!.dataSync(), [-1, 1]);
    tf.dispose([g.w!, theta.w, x]);
  });
});

describe("preprocessGradient", () => {
  test("Andrychowicz et al.'s two coordinates, by hand", () => {
    // p = 10, e^−10 ≈ 4.54e−5. 1: (log 1 / 10, 1) = (0, 1). −e: (1/10, −1). 1e−6 < e^−10:
    // (−1, e^10 · 1e−6 = 0.0220265). 0: (−1, 0).
    const x = tf.tensor1d([1, -Math.E, 1e-6, 0]);
    const out = tf.tidy(() => preprocessGradient(x));
    assert.deepEqual(out.shape, [4, 2]);
    close(out.dataSync(), [0, 1, 0.1, -1, -1, Math.exp(10) * 1e-6, -1, 0], 1e-6);
    tf.dispose([x, out]);
  });

  test("is a stop-gradient", () => {
    const x = tf.tensor1d([0.5, -2]);
    const g = tf.tidy(() => Array.from(tf.grad((t: tf.Tensor) => tf.add(tf.sum(preprocessGradient(t)), tf.sum(t)) as tf.Scalar)(x).dataSync()));
    // Only the plain sum contributes: gradient 1 per entry.
    assert.deepEqual(g, [1, 1]);
    x.dispose();
  });
});
