// Ops the model-based learners and the learned optimizer need that tfjs lacks: a stop-gradient, a
// gradient-free "k smallest" mask (TopK has no registered gradient), per-example gradients, and the
// gradient preprocessing of Andrychowicz et al. 2016 (appendix A) that learned optimizers read.
import * as tf from "@tensorflow/tfjs";
import { fromList, type Params } from "./params.js";

/**
 * x in the forward pass, a constant to every gradient taken through it (tfjs has no
 * tf.stopGradient). A tf.customGrad whose gradient is zero: its forward runs with the tape off, so
 * nothing before it is reached by the backward pass.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return stopGradientOp(x) as T;
}
const stopGradientOp = tf.customGrad(((x: tf.Tensor) => ({ value: tf.clone(x), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) })) as unknown as Parameters<typeof tf.customGrad>[0]);

/**
 * 1 at the `k` smallest entries of `x` along its last axis, 0 elsewhere, as float32 of x's shape —
 * Santoro et al.'s least-used indicator w^lu (the n smallest usages). Ties go to the lower index
 * (tf.topk's order), so exactly k ones per row. No gradient flows through it (the indicator is
 * piecewise constant; TopK's missing gradient is never reached).
 */
export function smallestMask(x: tf.Tensor, k: number): tf.Tensor {
  const n = x.shape[x.rank - 1]!;
  if (!Number.isInteger(k) || k < 1 || k > n) throw new Error(`smallestMask: k must be an integer in [1, ${n}], got ${k}`);
  const op = tf.customGrad(((xi: tf.Tensor) => {
    const { indices } = tf.topk(tf.neg(xi), k); // [..., k]: the smallest first, the lower index on ties
    const value = tf.cast(tf.sum(tf.oneHot(indices, n), -2), "float32"); // [..., n]
    return { value, gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x);
}

/**
 * Per-example gradients: entry k of the result is the gradient of losses(θ)[i] w.r.t. θ[k] for every
 * example i, stacked on a new leading axis ([n, ...shape of θ[k]]). `losses` maps the parameters to
 * the [n] vector of per-example losses of ONE batched forward, so batch statistics (batch norm) are
 * the batch's, as in the training loss; example i's gradient is the i-th row of the Jacobian.
 * Costs n backward passes (and n forwards): meant for support sets of a few dozen examples.
 */
export function perExampleGrads(losses: (p: Params) => tf.Tensor1D, theta: Params, keys: readonly string[], n: number): Params {
  const rows: tf.Tensor[][] = [];
  for (let i = 0; i < n; i++) {
    const g = tf.grads((...vals: tf.Tensor[]) => tf.squeeze(tf.slice(losses({ ...theta, ...fromList(keys, vals) }), [i], [1])) as tf.Scalar)(keys.map((k) => theta[k]!));
    rows.push(g);
  }
  const out = fromList(
    keys,
    keys.map((_, j) => tf.stack(rows.map((r) => r[j]!))),
  );
  tf.dispose(rows.flat());
  return out;
}

/**
 * Andrychowicz et al. 2016, appendix A: x ↦ (log|x| / p, sign x) if |x| ≥ e^−p, else (−1, e^p · x),
 * on a new last axis of size 2 — gradients and losses of very different scales become inputs of
 * similar scale. p = 10 as in the paper and in Ravi & Larochelle's code. A stop-gradient: learned
 * optimizers read their learner's gradients as inputs (first order), so no gradient flows into x.
 */
export function preprocessGradient(x: tf.Tensor, p = 10): tf.Tensor {
  return tf.tidy(() => {
    const v = stopGradient(x);
    const big = tf.greaterEqual(tf.abs(v), Math.exp(-p));
    // log of max(|x|, e^-p): finite everywhere, and equal to log|x| where it is used.
    const first = tf.where(big, tf.div(tf.log(tf.maximum(tf.abs(v), Math.exp(-p))), p), tf.fill(v.shape, -1));
    const second = tf.where(big, tf.sign(v), tf.mul(v, Math.exp(p)));
    return stopGradient(tf.stack([first, second], -1));
  });
}
