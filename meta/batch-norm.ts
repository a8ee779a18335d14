// Batch norm (transductive: the batch's own mean and variance) as ONE kernel with a hand-written
// gradient — one tape node instead of nine, and a backward of 8 full-size ops instead of ~11 —
// that is itself differentiable to any order (MAML differentiates through it twice). On
// tfjs-node's backend, one task's batch norm runs as TensorFlow's fused kernels instead (below),
// and so does a task-batched one with enough rows a task (tasks moved beside the channels).
import * as tf from "@tensorflow/tfjs";
import { floatType, nativeBackend, registerOwnKernel, type NativeBackend } from "./native.js";

/** Added to the variance (PyTorch's and the MAML reference code's default). */
export const BN_EPS = 1e-5;

const KERNEL = "MetatrainBatchNorm";

interface BnAttrs {
  axes: number[];
}

// ---- TensorFlow's own fused kernels, on tfjs-node's backend ----------------------------------
// One task's batch norm normalises over every axis but the last (features or channels), which is
// TensorFlow's FusedBatchNorm in training mode: one native pass instead of seven full-size ops
// forward, and FusedBatchNormGrad backward (Conv4 shards run one task at a time 14–47% faster,
// bench/RESULTS.md). TensorFlow gives FusedBatchNormGrad no gradient of its own, so it runs here
// as a kernel of ours (GRAD_KERNEL) whose gradient is written out below (bnGradGrad): MAML's
// inner steps, whose backward the outer gradient differentiates, run it natively too.

/** The backend as a native one, when it is tfjs-node's (`tensorflow`) and x's batch norm is one FusedBatchNorm (axes all but the last; γ, β one value per feature). */
function nativeFor(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, axes: number[]): NativeBackend | undefined {
  if ((x.rank !== 2 && x.rank !== 4) || gamma.rank !== 1 || beta.rank !== 1) return undefined;
  if (axes.length !== x.rank - 1 || axes.some((a, i) => a !== i)) return undefined;
  return nativeBackend();
}

function fusedAttrs(b: NativeBackend): unknown[] {
  const B = b.binding;
  return [
    floatType(b),
    { name: "epsilon", type: B.TF_ATTR_FLOAT, value: BN_EPS },
    { name: "data_format", type: B.TF_ATTR_STRING, value: "NHWC" },
    { name: "is_training", type: B.TF_ATTR_BOOL, value: true },
  ];
}

/** x as NHWC: [N, C] → [N, 1, 1, C]. */
const nhwc = (x: tf.Tensor): tf.Tensor => (x.rank === 4 ? x : tf.reshape(x, [x.shape[0]!, 1, 1, x.shape[1]!]));

/** FusedBatchNorm in training mode: y (x's shape) and the batch mean and variance it saves for its gradient. */
function nativeForward(b: NativeBackend, x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const none = tf.tensor1d([]);
  const [y, mean, variance, saved1, saved2] = b.executeMultipleOutputs("FusedBatchNorm", fusedAttrs(b), [nhwc(x), gamma, beta, none, none], 5);
  tf.dispose([none, mean!, variance!]);
  return [x.rank === 4 ? y! : tf.reshape(y!, x.shape), saved1!, saved2!];
}

const GRAD_KERNEL = "MetatrainBatchNormGrad";

/** FusedBatchNormGrad: ∂/∂x (x's shape), ∂/∂γ and ∂/∂β ([C]) for upstream g, from FusedBatchNorm's saved statistics. */
function nativeBackward(b: NativeBackend, g: tf.Tensor, x: tf.Tensor, gamma: tf.Tensor, saved1: tf.Tensor, saved2: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const [dx, dgamma, dbeta, r3, r4] = b.executeMultipleOutputs("FusedBatchNormGrad", fusedAttrs(b), [nhwc(g), nhwc(x), gamma, saved1, saved2], 5);
  tf.dispose([r3!, r4!]);
  return [x.rank === 4 ? dx! : tf.reshape(dx!, x.shape), dgamma!, dbeta!];
}

/** The batch-norm backward of `g` on the native kernel, as a taped op (its gradient is bnGradGrad). */
function backwardOp(g: tf.Tensor, x: tf.Tensor, gamma: tf.Tensor, saved1: tf.Tensor, saved2: tf.Tensor): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.engine().runKernel(GRAD_KERNEL, { g, x, gamma, saved1, saved2 } as unknown as tf.NamedTensorMap, {}) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/**
 * The gradient of the batch-norm backward (dx, dγ, dβ) = B(g, x, γ) — what MAML's outer gradient
 * needs of each inner step's batch norm. Per channel, over the N elements of all axes but the
 * last, with μ, σ² of x, r = 1/√(σ² + ε), x̂ = (x − μ)·r, m₁ = mean(g), m₂ = mean(g·x̂):
 *   dx = γ·r·u with u = g − m₁ − x̂·m₂,   dγ = Σ g·x̂,   dβ = Σ g.
 * For upstream gradients a (of dx), b (of dγ), c (of dβ), and D_a = γ·r·(a − mean(a) − x̂·mean(a·x̂))
 * — the batch-norm backward of a itself, since g ↦ g − mean(g) − x̂·mean(g·x̂) is self-adjoint:
 *   ∂/∂g = D_a + b·x̂ + c
 *   ∂/∂γ = r·Σ a·u                                    (dx is linear in γ; dγ, dβ do not read it)
 *   ∂/∂x = b·r·u                                      (from dγ, through x̂: the backward of b·g)
 *        − γ·r²·mean(a·u)·x̂                            (dx through r: δr = −r²·mean(x̂·δx))
 *        − r·m₂·D_a                                   (dx through x̂ in x̂·m₂)
 *        − γ·r²·mean(a·x̂)·u                            (dx through m₂ = mean(g·x̂))
 * D_a is this kernel again, and the rest plain taped ops from the saved inputs, so the result is
 * itself differentiable (test/unit/native-batch-norm.test.ts checks second and third order
 * against the textbook formula in plain ops).
 */
const bnGradGrad: tf.GradConfig = {
  kernelName: GRAD_KERNEL,
  inputsToSave: ["g", "x", "gamma", "saved1", "saved2"],
  gradFunc: (dys, saved) => {
    const [g, x, gamma, saved1, saved2] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    const [a, b, c] = dys as tf.Tensor[];
    const axes = x.shape.slice(0, -1).map((_, i) => i);
    const n = x.size / x.shape[x.rank - 1]!;
    const mean = tf.mean(x, axes, true);
    const centred = tf.sub(x, mean);
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), axes, true), BN_EPS));
    const xhat = tf.mul(centred, r);
    const m2 = tf.mean(tf.mul(g, xhat), axes, true);
    const u = tf.sub(tf.sub(g, tf.mean(g, axes, true)), tf.mul(xhat, m2));
    const [da, saxhat] = backwardOp(a!, x, gamma, saved1, saved2);
    const au = tf.sum(tf.mul(a!, u), axes, true);
    const rFlat = tf.reshape(r, gamma.shape);
    // ∂/∂x = (b·r − γ·r²·mean(a·x̂))·u − γ·r²·mean(a·u)·x̂ − r·m₂·D_a, the per-channel factors first.
    const gr2 = tf.mul(gamma, tf.square(r));
    const onU = tf.sub(tf.mul(b!, r), tf.mul(gr2, tf.div(saxhat!, n)));
    const onXhat = tf.mul(gr2, tf.div(au, n));
    return {
      g: () => tf.add(tf.add(da!, tf.mul(xhat, b!)), c!),
      x: () => tf.sub(tf.sub(tf.mul(u, onU), tf.mul(xhat, onXhat)), tf.mul(da!, tf.mul(r, m2))),
      gamma: () => tf.mul(rFlat, tf.reshape(au, gamma.shape)),
      // FusedBatchNorm's saved statistics carry nothing of their own: the terms through μ and σ²
      // are in ∂/∂x above.
      saved1: () => tf.zerosLike(saved1),
      saved2: () => tf.zerosLike(saved2),
    };
  },
};

/**
 * ŷ = (x − μ)/√(σ² + ε)·γ + β with μ, σ² the mean and biased variance of x over `axes` (kept),
 * from plain ops in the order of tf.moments + the textbook formula, so its values are those bit
 * for bit (test/unit/lean-gradients.test.ts). Runs inside a kernel: nothing here is taped.
 */
function forward(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, axes: number[]): tf.Tensor {
  const mean = tf.mean(x, axes, true);
  const centred = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centred), axes, true);
  return tf.add(tf.mul(tf.div(centred, tf.sqrt(tf.add(variance, BN_EPS))), gamma), beta);
}

/**
 * The gradient (Ioffe & Szegedy 2015, §3), for γ, β constant along `axes` (checked in batchNorm):
 *   x̂ = (x − μ)/s, s = √(σ² + ε), N = the number of elements averaged,
 *   ∂/∂β = Σ dy,  ∂/∂γ = Σ dy·x̂,  ∂/∂x = (γ/s)·(dy − mean(dy) − x̂·mean(dy·x̂)).
 * Built from the saved INPUTS with ordinary taped ops, so an outer tf.grad differentiates it
 * (the saved-output cut-off of meta/gradients.ts item 3 never arises).
 */
const bnGrad: tf.GradConfig = {
  kernelName: KERNEL,
  inputsToSave: ["x", "gamma", "beta"],
  // The native forward also returns FusedBatchNorm's saved mean and variance (outputs 1 and 2).
  outputsToSave: [false, true, true],
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma, beta, saved1, saved2] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor?, tf.Tensor?];
    // With three outputs tfjs hands over one upstream gradient per output; only y's is used.
    const g = Array.isArray(dy) ? (dy[0] as tf.Tensor) : (dy as tf.Tensor);
    const { axes } = attrs as unknown as BnAttrs;
    // The native forward ran: TensorFlow's gradient kernel, as our differentiable GRAD_KERNEL
    // (taped when an outer gradient differentiates this one: MAML's inner steps).
    if (saved1 && saved2 && nativeFor(x, gamma, beta, axes)) {
      const [dx, dgamma, dbeta] = backwardOp(g, x, gamma, saved1, saved2);
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    }
    const mean = tf.mean(x, axes, true);
    const centred = tf.sub(x, mean);
    const s = tf.sqrt(tf.add(tf.mean(tf.square(centred), axes, true), BN_EPS));
    const xhat = tf.div(centred, s);
    const gxhat = tf.mul(g, xhat);
    return {
      x: () => tf.mul(tf.div(gamma, s), tf.sub(tf.sub(g, tf.mean(g, axes, true)), tf.mul(xhat, tf.mean(gxhat, axes, true)))),
      gamma: () => sumTo(gxhat, gamma.shape),
      beta: () => sumTo(g, beta.shape),
    };
  },
};

/** t summed over the axes `shape` broadcasts along, as `shape`. */
function sumTo(t: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, t.shape);
  const r = axes.length ? tf.sum(t, axes, shape.length === t.rank) : tf.clone(t);
  return tf.util.arraysEqual(r.shape, shape) ? r : tf.reshape(r, shape);
}

const forwardKernel: tf.KernelFunc = ({ inputs, attrs }) => {
  const { x, gamma, beta } = inputs as unknown as { x: tf.Tensor; gamma: tf.Tensor; beta: tf.Tensor };
  const axes = (attrs as unknown as BnAttrs).axes;
  const native = nativeFor(x, gamma, beta, axes);
  if (native) return tf.tidy(() => nativeForward(native, x, gamma, beta)) as unknown as tf.TensorInfo[];
  return tf.tidy(() => forward(x, gamma, beta, axes)) as unknown as tf.TensorInfo;
};

const backwardKernel: tf.KernelFunc = ({ inputs }) => {
  const { g, x, gamma, saved1, saved2 } = inputs as unknown as Record<"g" | "x" | "gamma" | "saved1" | "saved2", tf.Tensor>;
  return tf.tidy(() => nativeBackward(nativeBackend()!, g, x, gamma, saved1, saved2)) as unknown as tf.TensorInfo[];
};

/** Registers both kernels for the active backend (the forward's body is backend-neutral tf ops; the backward kernel is tfjs-node's alone) and their gradients, once. */
function ensureRegistered(): void {
  registerOwnKernel(KERNEL, forwardKernel, bnGrad);
  registerOwnKernel(GRAD_KERNEL, backwardKernel, bnGradGrad, ["tensorflow"]);
}

/**
 * Batch norm of x over `axes` with scale γ and offset β, which broadcast against x and are
 * constant along `axes` (one value per feature, per task when task-batched).
 */
export function batchNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, axes: number[]): tf.Tensor {
  const rank = x.rank;
  const along = (t: tf.Tensor) => axes.some((a) => {
    const i = a - (rank - t.rank); // t's axis aligned with x's axis a (broadcasting from the right)
    return i >= 0 && t.shape[i]! !== 1;
  });
  if (along(gamma) || along(beta)) throw new Error(`batchNorm: γ [${gamma.shape}] and β [${beta.shape}] must be constant along the normalised axes [${axes}] of x [${x.shape}]`);
  ensureRegistered();
  if (tf.getBackend() === "tensorflow" && taskBatched(x, axes)) return tasksBesideChannels(x, gamma, beta);
  return runBatchNorm(x, gamma, beta, axes);
}

function runBatchNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, axes: number[]): tf.Tensor {
  const out = tf.engine().runKernel(KERNEL, { x, gamma, beta } as unknown as tf.NamedTensorMap, { axes } as unknown as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  if (!Array.isArray(out)) return out;
  // The native kernel's saved statistics: kept by the tape for the gradient; not the caller's.
  tf.dispose(out.slice(1));
  return out[0]!;
}

/**
 * Rows per task from which the fused kernel pays for the two transposes around it: measured on
 * [32, n, C] (forward and backward, native against the formula) by bench/batch-norm.ts, 1.4–1.7×
 * the formula's time at n = 5, 1.2× at 20, 0.7–0.8× at 75 (bench/RESULTS.md). Support sets of a
 * few shots keep the formula; query sets and Conv4's activations go native.
 */
let nativeMinRows = 32;

/** Sets the row threshold above (for bench/batch-norm.ts, which times shards at several); returns the previous one. */
export function setTaskBatchedNativeMinRows(rows: number): number {
  const was = nativeMinRows;
  nativeMinRows = rows;
  return was;
}

/** x is [T, n, …, C] normalised per task over every axis between the first and the last, with rows enough for the fused kernel. */
const taskBatched = (x: tf.Tensor, axes: number[]): boolean =>
  x.rank >= 3 && axes.length === x.rank - 2 && axes.every((a, i) => a === i + 1) && x.size / (x.shape[0]! * x.shape[x.rank - 1]!) >= nativeMinRows;

/**
 * Task-batched batch norm as one FusedBatchNorm: the task axis moved beside the channels,
 * [T, n, …, C] → [n·…, T·C], makes each (task, channel) pair one channel of a single task's batch
 * norm, with per-task statistics as before. A transpose in and one out (and their gradients)
 * instead of the formula's ~7 full-size ops forward and ~8 backward. Taped tf ops around the
 * kernel, so every order of gradient is the kernel's.
 */
function tasksBesideChannels(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor): tf.Tensor {
  const r = x.rank;
  const [T, C] = [x.shape[0]!, x.shape[r - 1]!];
  const inner = x.shape.slice(1, r - 1);
  const perm = [...inner.map((_, i) => i + 1), 0, r - 1]; // [n, …, T, C]
  const back = [r - 2, ...inner.map((_, i) => i), r - 1];
  const spread = (p: tf.Tensor) => tf.reshape(tf.broadcastTo(p, [T, ...inner.map(() => 1), C]), [T * C]);
  const rows = tf.reshape(tf.transpose(x, perm), [-1, T * C]);
  const y = runBatchNorm(rows, spread(gamma), spread(beta), [0]);
  return tf.transpose(tf.reshape(y, [...inner, T, C]), back);
}
