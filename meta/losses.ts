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
  return { x, y: tf.tensor(oneHotArray(ex.y as Int32Array, outputs), [n, outputs], "float32"), labels };
}

/**
 * One-hot rows as a Float32Array, built in JS: the same 0/1 values as tf.oneHot + cast, without
 * two kernels per task (OneHot is ~1 ms a call on tfjs-node). An index outside [0, depth) gives an
 * all-zero row, as tf.oneHot does.
 */
function oneHotArray(labels: Int32Array, depth: number): Float32Array {
  const out = new Float32Array(labels.length * depth);
  labels.forEach((c, i) => {
    if (c >= 0 && c < depth) out[i * depth + c] = 1;
  });
  return out;
}

/**
 * Several tasks' examples stacked along a new leading task axis (all must have equal shapes). The
 * typed arrays are joined in JS and uploaded once per tensor (not one tensor per task and a Pack).
 */
export function stackExamples(parts: readonly Examples[], kind: TaskKind, outputs: number): ExampleTensors {
  if (kind === "rl") throw new Error("rl tasks have no support or query examples: their learner rolls out the task's environment (meta/rl/rollouts.ts)");
  const shape = parts[0]!.xShape;
  for (const p of parts) if (!tf.util.arraysEqual(p.xShape, shape)) throw new Error(`stackExamples: tasks of shapes [${p.xShape}] and [${shape}] cannot be stacked`);
  const T = parts.length;
  const n = shape[0]!;
  const join = <A extends Float32Array | Int32Array>(arrays: A[], make: (len: number) => A): A => {
    const out = make(arrays.reduce((s, a) => s + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  const x = tf.tensor(join(parts.map((p) => p.x), (l) => new Float32Array(l)), [T, ...shape], "float32");
  if (kind === "regression") return { x, y: tf.tensor(join(parts.map((p) => p.y as Float32Array), (l) => new Float32Array(l)), [T, n, outputs], "float32") };
  const labels = join(parts.map((p) => p.y as Int32Array), (l) => new Int32Array(l));
  return { x, y: tf.tensor(oneHotArray(labels, outputs), [T, n, outputs], "float32"), labels: tf.tensor2d(labels, [T, n], "int32") };
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
