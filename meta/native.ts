// Kernels of our own (batch norm, ReLU's backward), and calling a TensorFlow op by name on
// tfjs-node's backend (`tensorflow`) inside them, for kernels tfjs does not expose (FusedBatchNorm
// and its gradient, ReluGrad). The native backend's API is not part of tfjs's public types.
import * as tf from "@tensorflow/tfjs";

/** What tfjs-node's backend offers for running a TensorFlow op by name. */
export interface NativeBackend {
  binding: { TF_ATTR_TYPE: number; TF_ATTR_FLOAT: number; TF_ATTR_STRING: number; TF_ATTR_BOOL: number; TF_FLOAT: number };
  executeMultipleOutputs(name: string, attrs: unknown[], inputs: tf.Tensor[], numOutputs: number): tf.Tensor[];
  executeSingleOutput(name: string, attrs: unknown[], inputs: tf.Tensor[]): tf.Tensor;
}

/** The active backend as a native one, when it is tfjs-node's. */
export function nativeBackend(): NativeBackend | undefined {
  return tf.getBackend() === "tensorflow" ? (tf.backend() as unknown as NativeBackend) : undefined;
}

/** The `T: float32` attribute most TensorFlow ops take. */
export function floatType(b: NativeBackend): { name: string; type: number; value: number } {
  return { name: "T", type: b.binding.TF_ATTR_TYPE, value: b.binding.TF_FLOAT };
}

/**
 * Registers kernel `name` for the active backend (unless `backends` leaves it out, or it is there
 * already) and its gradient `grad` (unless ours is registered already). Cheap to call before every
 * use: each backend is done once.
 */
export function registerOwnKernel(name: string, kernelFunc: tf.KernelFunc, grad: tf.GradConfig, backends?: readonly string[]): void {
  const backend = tf.getBackend();
  const done = registeredFor.get(name) ?? new Set<string>();
  registeredFor.set(name, done);
  if (done.has(backend)) return;
  if ((!backends || backends.includes(backend)) && !tf.getKernel(name, backend)) tf.registerKernel({ kernelName: name, backendName: backend, kernelFunc });
  if (tf.getGradient(name) !== grad) tf.registerGradient(grad);
  done.add(backend);
}
const registeredFor = new Map<string, Set<string>>();
