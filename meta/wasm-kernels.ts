// Kernels the engine needs that the wasm backend lacks, written with ops it has, so Conv4 trains on
// a machine without the native backend. Today: Conv2DBackpropFilter (the filter gradient of conv2d).
import * as tf from "@tensorflow/tfjs";

/**
 * dW[p,q,c,o] = Σ_{b,i,j} xPadded[b, i·sH + p, j·sW + q, c] · dy[b,i,j,o]: for each filter tap (p, q)
 * the strided slice of the padded input is an [N, C] matrix (N = batch·outH·outW) and its product
 * with dy as [N, O] is that tap's [C, O] block — im2col one tap at a time, 9 matMuls for 3×3. The
 * padding is conv2d's own (backend_util.computeConv2DInfo), so 'same', 'valid' and explicit pads
 * and any stride give what the cpu backend's kernel gives (up to float summation order).
 */
function conv2DBackpropFilter(x: tf.Tensor4D, dy: tf.Tensor4D, attrs: tf.Conv2DBackpropFilterAttrs): tf.Tensor4D {
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== "NHWC") {
    throw new Error(`wasm Conv2DBackpropFilter: only NHWC is implemented, got ${attrs.dataFormat}`);
  }
  const filterShape = attrs.filterShape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, "channelsLast");
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow, inChannels: ci, outChannels: co, padInfo } = info;
  const n = x.shape[0];
  return tf.tidy(() => {
    // Enough bottom/right padding for the last tap's last window (conv2d's pad may be short of it by design).
    const needH = (oh - 1) * sh + kh;
    const needW = (ow - 1) * sw + kw;
    const bottom = Math.max(0, needH - (x.shape[1] + padInfo.top));
    const right = Math.max(0, needW - (x.shape[2] + padInfo.left));
    const xp = tf.pad(x, [[0, 0], [padInfo.top, bottom], [padInfo.left, right], [0, 0]]);
    const dy2 = tf.reshape(dy, [n * oh * ow, co]);
    const taps: tf.Tensor[] = [];
    for (let p = 0; p < kh; p++) {
      for (let q = 0; q < kw; q++) {
        const patch = tf.stridedSlice(xp, [0, p, q, 0], [n, p + (oh - 1) * sh + 1, q + (ow - 1) * sw + 1, ci], [1, sh, sw, 1]);
        taps.push(tf.matMul(tf.reshape(patch, [n * oh * ow, ci]), dy2, true, false));
      }
    }
    return tf.reshape(tf.stack(taps), [kh, kw, ci, co]) as tf.Tensor4D;
  });
}

let registered = false;

/** Register the missing wasm kernels (idempotent); call after the wasm backend is set. */
export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  if (tf.getKernel(tf.Conv2DBackpropFilter, "wasm") === undefined) {
    tf.registerKernel({
      kernelName: tf.Conv2DBackpropFilter,
      backendName: "wasm",
      // Ops run inside a kernel are not taped (the engine's kernelDepth > 0): the recorded op is
      // Conv2DBackpropFilter itself, whose gradient meta/gradients.ts registers, so second-order
      // MAML through Conv4 works on wasm too. The result is a Tensor, which the engine takes as is.
      kernelFunc: ({ inputs, attrs }) => {
        const { x, dy } = inputs as unknown as { x: tf.Tensor4D; dy: tf.Tensor4D };
        return conv2DBackpropFilter(x, dy, attrs as unknown as tf.Conv2DBackpropFilterAttrs) as unknown as tf.TensorInfo;
      },
    });
  }
}

/** The computation alone, for tests against another backend's kernel. */
export const _testing = { conv2DBackpropFilter };
