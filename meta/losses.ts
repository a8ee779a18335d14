// Task losses and accuracy, and turning a Task's typed arrays into tensors.
import * as tf from "@tensorflow/tfjs";
import type { Examples, TaskKind } from "./tasks/types.js";

/** Examples as tensors: x shaped as given, y as [n, 1] floats (regression) or one-hot [n, ways]. */
export interface ExampleTensors {
  x: tf.Tensor;
  y: tf.Tensor;
  /** Class indices (classification only), for accuracy: [n], or [T, n] when stacked. */
  labels?: tf.Tensor;
}

export function toTensors(ex: Examples, kind: TaskKind, outputs: number): ExampleTensors {
  // An rl task has no examples: its learner simulates rollouts (meta/rl/). Say so rather than
  // building one-hot "labels" from nothing.
  if (kind === "rl") throw new Error("rl tasks have no support or query examples: their learner rolls out the task's environment (meta/rl/rollouts.ts)");
  const x = tf.tensor(ex.x, ex.xShape, "float32");
  const n = ex.xShape[0]!;
  if (kind === "regression") return { x, y: tf.tensor(ex.y as Float32Array, [n, outputs], "float32") };
  const labels = tf.tensor1d(ex.y as Int32Array, "int32");
  return { x, y: tf.tidy(() => tf.cast(tf.oneHot(labels, outputs), "float32")), labels };
}

/** Several tasks' examples stacked along a new leading task axis (all must have equal shapes). */
export function stackExamples(parts: readonly Examples[], kind: TaskKind, outputs: number): ExampleTensors {
  const one = parts.map((e) => toTensors(e, kind, outputs));
  const out: ExampleTensors = { x: tf.stack(one.map((e) => e.x)), y: tf.stack(one.map((e) => e.y)) };
  if (kind === "classification") out.labels = tf.stack(one.map((e) => e.labels!));
  one.forEach(disposeExamples);
  return out;
}

export function disposeExamples(e: ExampleTensors): void {
  e.x.dispose();
  e.y.dispose();
  e.labels?.dispose();
}

/**
 * Mean loss over the examples: MSE for regression (MAML §5.1), softmax cross-entropy for
 * classification. With a leading task axis ([T, n, k] outputs), the mean is per task and the
 * result is the SUM over tasks, so its gradient w.r.t. per-task parameters is each task's own.
 */
export function taskLoss(kind: TaskKind, outputs: tf.Tensor, targets: tf.Tensor): tf.Scalar {
  const perTask = taskLosses(kind, outputs, targets);
  return perTask.rank === 0 ? (perTask as tf.Scalar) : tf.sum(perTask);
}

/** Mean loss per task: a scalar for [n, k] outputs, a [T] vector for [T, n, k] outputs. */
export function taskLosses(kind: TaskKind, outputs: tf.Tensor, targets: tf.Tensor): tf.Tensor {
  if (kind === "rl") throw new Error("rl tasks have no supervised loss: their learner's objective is the policy-gradient surrogate (meta/rl/vpg.ts)");
  const perExample =
    kind === "regression"
      ? tf.mean(tf.squaredDifference(outputs, targets), -1)
      : // Not tf.logSoftmax: it is a customGrad op whose second derivative tfjs silently drops
        // (see meta/gradients.ts); log-sum-exp from plain ops differentiates twice correctly.
        tf.neg(tf.sum(tf.mul(targets, logSoftmax(outputs)), -1));
  return tf.mean(perExample, -1);
}

/** log softmax over the last axis from plain ops: x − max − log Σ exp(x − max). */
export function logSoftmax(x: tf.Tensor): tf.Tensor {
  // Any shift gives the same value and derivatives; the max only keeps exp in range. Its
  // gradient goes through an Equal mask, which meta/gradients.ts makes twice-differentiable.
  const shifted = tf.sub(x, tf.max(x, -1, true));
  return tf.sub(shifted, tf.log(tf.sum(tf.exp(shifted), -1, true)));
}

/** Fraction of correct argmax predictions (per task when batched: returns [T]). */
export function accuracy(outputs: tf.Tensor, labels: tf.Tensor): tf.Tensor {
  return tf.mean(tf.cast(tf.equal(tf.argMax(outputs, -1), labels), "float32"), -1);
}
