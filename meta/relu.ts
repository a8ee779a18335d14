// ReLU's backward, dy·[x > 0], as ONE kernel: TensorFlow's ReluGrad on tfjs-node's backend, where
// the formula is three kernels (Greater, Cast, Multiply; tfjs's own Step is six), and the formula
// itself elsewhere. Every inner step of every learner runs it once per ReLU layer, and MAML's outer
// gradient runs it again through each inner step's backward (below), so it is on the hot path twice.
import * as tf from "@tensorflow/tfjs";
import { floatType, nativeBackend, registerOwnKernel } from "./native.js";

const KERNEL = "MetatrainReluGrad";

/**
 * The same map as ReLU's backward: linear in dy and piecewise constant in x, so for an upstream g
 *   ∂⟨g, dy·[x > 0]⟩/∂dy = g·[x > 0]   (this kernel again, hence any order)
 *   ∂/∂x = 0                           (the mask only jumps, at x = 0).
 */
const reluGradGrad: tf.GradConfig = {
  kernelName: KERNEL,
  inputsToSave: ["dy", "x"],
  gradFunc: (g, saved) => {
    const [, x] = saved as [tf.Tensor, tf.Tensor];
    return { dy: () => reluGrad(g as tf.Tensor, x), x: () => tf.zerosLike(x) };
  },
};

/** dy·[x > 0] in three plain ops: the kernel's body off tfjs-node, and ReLU's gradient as it was (for benchmarks and tests to compare against). */
export const reluGradFormula = (dy: tf.Tensor, x: tf.Tensor): tf.Tensor => tf.mul(dy, tf.cast(tf.greater(x, 0), "float32"));

/** ReLU's gradient as that formula (what meta/gradients.ts registered before this kernel), to register in its place for a comparison. */
export const reluFormulaGradient: tf.GradConfig = {
  kernelName: tf.Relu,
  inputsToSave: ["x"],
  gradFunc: (dy, saved) => ({ x: () => reluGradFormula(dy as tf.Tensor, (saved as tf.Tensor[])[0]!) }),
};

const kernel: tf.KernelFunc = ({ inputs }) => {
  const { dy, x } = inputs as unknown as { dy: tf.Tensor; x: tf.Tensor };
  const native = nativeBackend();
  // TensorFlow's ReluGrad is gradients·cast(features > 0): the formula's values bit for bit.
  if (native) return native.executeSingleOutput("ReluGrad", [floatType(native)], [dy, x]) as unknown as tf.TensorInfo;
  return tf.tidy(() => reluGradFormula(dy, x)) as unknown as tf.TensorInfo;
};

/**
 * dy·[x > 0] for float32 dy and x of one shape: ReLU's input gradient (for every non-NaN x; a NaN
 * input gives 0, as tfjs's Step gives NaN), differentiable to any order.
 */
export function reluGrad(dy: tf.Tensor, x: tf.Tensor): tf.Tensor {
  registerOwnKernel(KERNEL, kernel, reluGradGrad);
  return tf.engine().runKernel(KERNEL, { dy, x } as unknown as tf.NamedTensorMap, {}) as tf.Tensor;
}
