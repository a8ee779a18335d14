// Batch norm (transductive: the batch's own mean and variance) as ONE kernel with a hand-written
// gradient — one tape node instead of nine, and a backward of 8 full-size ops instead of ~11 —
// that is itself differentiable to any order (MAML differentiates through it twice).
import * as tf from "@tensorflow/tfjs";

/** Added to the variance (PyTorch's and the MAML reference code's default). */
export const BN_EPS = 1e-5;

const KERNEL = "MetatrainBatchNorm";

interface BnAttrs {
  axes: number[];
}

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
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma, beta] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const g = dy as tf.Tensor;
    const { axes } = attrs as unknown as BnAttrs;
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

const registered = new Set<string>();

/** Registers the kernel for the active backend (its body is backend-neutral tf ops) and the gradient, once. */
function ensureRegistered(): void {
  const backend = tf.getBackend();
  if (registered.has(backend)) return;
  if (!tf.getKernel(KERNEL, backend)) {
    tf.registerKernel({
      kernelName: KERNEL,
      backendName: backend,
      kernelFunc: ({ inputs, attrs }) => {
        const { x, gamma, beta } = inputs as unknown as { x: tf.Tensor; gamma: tf.Tensor; beta: tf.Tensor };
        return tf.tidy(() => forward(x, gamma, beta, (attrs as unknown as BnAttrs).axes)) as unknown as tf.TensorInfo;
      },
    });
  }
  if (tf.getGradient(KERNEL) !== bnGrad) tf.registerGradient(bnGrad);
  registered.add(backend);
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
  return tf.engine().runKernel(KERNEL, { x, gamma, beta } as unknown as tf.NamedTensorMap, { axes } as unknown as tf.NamedAttrMap) as tf.Tensor;
}
