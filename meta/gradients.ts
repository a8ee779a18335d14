// Gradients TensorFlow.js 4.22 lacks for second-order MAML through conv nets (grad of a grad of conv2d / maxPool).
//
// Found by running tf.grad over (query loss after inner SGD steps taken with tf.grads) through
// Conv4 = 4 × [conv2d 3x3 'same' → batch norm (tf.moments, or tf.batchNorm) → relu → maxPool 2x2/2
// or conv stride 2] → flatten → dense → cross entropy on the cpu backend, and comparing it with
// finite differences:
//   1. Conv2DBackpropFilter (the filter gradient of Conv2D) has no gradient: tf.grad throws.
//   2. MaxPoolGrad (the input gradient of MaxPool) has no gradient: tf.grad throws.
//   3. A gradient that reads a saved OUTPUT of its kernel (outputsToSave) is cut off at second
//      order: the engine saves a clone of the output whose tape node is recorded before the node
//      that produces the output, so the outer backward pass never reaches it (tensorflow/tfjs#3252).
//      Where that is the only path tf.grad throws, otherwise the term is silently dropped. On the
//      path: Exp (inside log-softmax). Re-registered below from the saved input instead: Exp,
//      Tanh, Sigmoid, Softmax (same values at first order, one more elementwise op in backward).
//      Not re-registered: MaxPool, Max, Min (their output only feeds an argmax/equality mask, whose
//      derivative is 0 anyway), Pow (only its exponent-gradient reads the output), LogSoftmax (no
//      op runs that kernel in 4.22), Elu and LRN (their EluGrad / LRNGrad kernels lack gradients).
//   4. Comparison kernels other than GreaterEqual have no gradient, and Max's gradient (max-shift of
//      log-softmax) uses Equal as a mask: tf.grad throws. Registered as 0 below.
//   5. tf.logSoftmax and tf.losses.softmaxCrossEntropy are tf.customGrad ops whose forward runs with
//      the tape off, so the log-probabilities their backward reuses are constants to an outer
//      tf.grad: silently wrong at second order (the softmax Hessian is lost) whatever is
//      registered. Use softmaxCrossEntropy below for any loss that is differentiated twice.
//   Everything else on the path (Conv2D, Conv2DBackpropInput, Relu → Step, moments, Sqrt/Rsqrt,
//   RealDiv, FusedBatchNorm, BatchMatMul, Reshape, Sum/Mean, Log, broadcasting Add/Mul) is fine.
//
// Backends: cpu — all of it. wasm — all of it once meta/wasm-kernels.ts has given it the
// Conv2DBackpropFilter kernel it lacks (selectBackend does so). The MaxPoolGrad gradient needs only
// MaxPoolGrad, DepthwiseConv2dNative, Tile, Multiply and ZerosLike kernels, which wasm has.
import * as tf from '@tensorflow/tfjs';
import { logSoftmax } from './losses.js';

type Pad = tf.Conv2DBackpropFilterAttrs['pad'];
type Rounding = tf.Conv2DBackpropFilterAttrs['dimRoundingMode'];
type Pair = [number, number] | number;

/** Runs the Conv2DBackpropInput kernel (the public conv2dTranspose op is NHWC-only). */
function conv2DBackpropInput(
  inputShape: [number, number, number, number],
  dy: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: Pair,
  pad: Pad,
  dataFormat: 'NHWC' | 'NCHW',
  dimRoundingMode: Rounding,
): tf.Tensor4D {
  const attrs: tf.Conv2DBackpropInputAttrs = { strides, pad, dataFormat, dimRoundingMode, inputShape };
  return tf.engine().runKernel(
    tf.Conv2DBackpropInput,
    { dy, filter } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  );
}

/** Runs the MaxPoolGrad kernel (not exported as a public op). */
function maxPoolGrad(
  dy: tf.Tensor4D,
  input: tf.Tensor4D,
  output: tf.Tensor4D,
  attrs: tf.MaxPoolGradAttrs,
): tf.Tensor4D {
  return tf.engine().runKernel(
    tf.MaxPoolGrad,
    { dy, input, output } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  );
}

/**
 * Conv2DBackpropFilter computes dW = F(x, dy), bilinear in (x, dy):
 *   dW[p,q,c,o] = Σ_{b,i,j} x[b, i·sH + p − padTop, j·sW + q − padLeft, c] · dy[b,i,j,o].
 * For a filter-shaped upstream g, ⟨g, dW⟩ = ⟨dy, conv2d(x, g)⟩ (same strides, pad, rounding), hence
 *   ∂⟨g,dW⟩/∂dy = conv2d(x, g)
 *   ∂⟨g,dW⟩/∂x  = conv2d's input-gradient for filter g at upstream dy = conv2DBackpropInput(x.shape, dy, g).
 */
const conv2DBackpropFilterGrad: tf.GradConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  inputsToSave: ['x', 'dy'],
  gradFunc: (g, saved, attrs) => {
    const [x, dy] = saved as [tf.Tensor4D, tf.Tensor4D];
    const gW = g as tf.Tensor4D;
    const { strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
    return {
      x: () => conv2DBackpropInput(x.shape, dy, gW, strides, pad, dataFormat, dimRoundingMode),
      dy: () => tf.conv2d(x, gW, strides, pad, dataFormat, 1, dimRoundingMode),
    };
  },
};

/**
 * MaxPoolGrad computes dx = M·dy: each dy[o] is added at the argmax position a(o) of window o of
 * `input`. It is linear in dy, so for an input-shaped upstream g, ∂⟨g, M·dy⟩/∂dy = Mᵀg, i.e.
 *   (Mᵀg)[o] = g[a(o)],
 * and it is piecewise constant in input and output (a(o) only jumps), so those gradients are 0.
 *
 * a(o) is taken from the backend's own MaxPoolGrad kernel rather than recomputed, so tie-breaking
 * (cpu: first maximum in row-major window order; webgl: last) and padding handling match the
 * forward's backward exactly. Windows are split into cH×cW classes by (row mod cH, col mod cW) with
 * cH = ⌈filterH/strideH⌉, cW = ⌈filterW/strideW⌉, so two windows of one class never overlap. For a
 * class k with indicator 1ₖ (output-shaped), mₖ = M·1ₖ is then exactly the 0/1 mask of that class's
 * argmax positions, and
 *   (Mᵀg)[o] = Σ_{p ∈ window o} mₖ[p]·g[p] = sumPool(mₖ ⊙ g)[o]   for o in class k,
 * where sumPool is a depthwise conv with an all-ones filter and the pool's strides/pad/rounding.
 * What this relies on: the kernel sends each dy[o] wholly to one position inside window o (or
 * nowhere, e.g. an all-NaN window), which holds for the cpu, wasm and webgl kernels. For the usual
 * 2x2/stride-2 pool there is one class and one extra MaxPoolGrad call.
 */
const maxPoolGradGrad: tf.GradConfig = {
  kernelName: tf.MaxPoolGrad,
  inputsToSave: ['input', 'output'],
  gradFunc: (g, saved, attrs) => {
    const [input, output] = saved as [tf.Tensor4D, tf.Tensor4D];
    const gx = g as tf.Tensor4D;
    const poolAttrs = attrs as unknown as tf.MaxPoolGradAttrs;
    const { filterSize, strides, pad, dimRoundingMode } = poolAttrs;
    return {
      dy: () => {
        const info = tf.backend_util.computePool2DInfo(input.shape, filterSize, strides, 1, pad, dimRoundingMode);
        const [batch, outH, outW, channels] = output.shape;
        if (info.outHeight !== outH || info.outWidth !== outW) {
          throw new Error(`MaxPoolGrad gradient: pool output ${outH}x${outW} != computed ${info.outHeight}x${info.outWidth}`);
        }
        const ones = tf.ones([info.filterHeight, info.filterWidth, channels, 1]) as tf.Tensor4D;
        const sumPool = (t: tf.Tensor4D): tf.Tensor4D =>
          tf.depthwiseConv2d(t, ones, [info.strideHeight, info.strideWidth], pad, 'NHWC', 1, dimRoundingMode);
        const cH = Math.ceil(info.filterHeight / info.strideHeight);
        const cW = Math.ceil(info.filterWidth / info.strideWidth);
        if (cH === 1 && cW === 1) {
          return sumPool(tf.mul(maxPoolGrad(tf.onesLike(output), input, output, poolAttrs), gx));
        }
        let acc: tf.Tensor4D = tf.zerosLike(output);
        for (let a = 0; a < cH; a++) {
          for (let b = 0; b < cW; b++) {
            const ind = new Float32Array(outH * outW);
            for (let r = a; r < outH; r += cH) for (let c = b; c < outW; c += cW) ind[r * outW + c] = 1;
            const ind4 = tf.tile(tf.tensor4d(ind, [1, outH, outW, 1]), [batch, 1, 1, channels]) as tf.Tensor4D;
            const mask = maxPoolGrad(ind4, input, output, poolAttrs);
            acc = tf.add(acc, tf.mul(ind4, sumPool(tf.mul(mask, gx))));
          }
        }
        return acc;
      },
      input: () => tf.zerosLike(input),
      output: () => tf.zerosLike(output),
    };
  },
};

/**
 * Item 3 at the top: the same gradients as tfjs's own, but from the saved input, so the outer
 * tf.grad can follow them. With s = softmax(x) along the last axis:
 *   Softmax: ∂/∂x = s·dy − s·Σ(s·dy)   Exp: dy·eˣ   Tanh: dy·(1 − tanh²x)   Sigmoid: dy·σ(x)(1 − σ(x))
 */
function fromInput(
  kernelName: string,
  inputName: 'x' | 'logits',
  dx: (x: tf.Tensor, dy: tf.Tensor, attrs: tf.NamedAttrMap) => tf.Tensor,
): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: [inputName],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      return { [inputName]: () => dx(x, dy as tf.Tensor, attrs) };
    },
  };
}

const inputSavingGrads: readonly tf.GradConfig[] = [
  fromInput(tf.Softmax, 'logits', (x, dy, attrs) => {
    const { dim } = attrs as unknown as tf.SoftmaxAttrs;
    const sdy = tf.mul(tf.softmax(x, dim), dy);
    return tf.sub(sdy, tf.mul(tf.sum(sdy, dim, true), tf.softmax(x, dim)));
  }),
  fromInput(tf.Exp, 'x', (x, dy) => tf.mul(dy, tf.exp(x))),
  fromInput(tf.Tanh, 'x', (x, dy) => tf.mul(dy, tf.sub(1, tf.square(tf.tanh(x))))),
  fromInput(tf.Sigmoid, 'x', (x, dy) => {
    const s = tf.sigmoid(x);
    return tf.mul(dy, tf.mul(s, tf.sub(1, s)));
  }),
];

/**
 * Comparisons are piecewise constant, so their gradient is 0 (as tfjs already registers for
 * GreaterEqual). They appear inside other gradients as masks — Max/Min (equal), LeakyRelu/Prelu/Selu
 * (greater), Relu6 (lessEqual) — and differentiating such a gradient once more walks into them.
 */
const comparisonGrads: readonly tf.GradConfig[] = [tf.Equal, tf.NotEqual, tf.Greater, tf.Less, tf.LessEqual].map(
  (kernelName) => ({
    kernelName,
    inputsToSave: ['a', 'b'],
    gradFunc: (_dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      return { a: () => tf.zerosLike(a), b: () => tf.zerosLike(b) };
    },
  }),
);

const configs: readonly tf.GradConfig[] = [
  conv2DBackpropFilterGrad,
  maxPoolGradGrad,
  ...inputSavingGrads,
  ...comparisonGrads,
];

/**
 * Registers the gradients above in tfjs's global registry (replacing tfjs's own for the kernels of
 * item 3). Idempotent: a kernel whose registered gradient is already ours is left alone.
 */
export function registerHigherOrderGradients(): void {
  for (const config of configs) {
    if (tf.getGradient(config.kernelName) !== config) tf.registerGradient(config);
  }
}

/**
 * Mean softmax cross entropy over rows, −(1/N) Σ_n Σ_k labels[n,k] · log softmax(logits)[n,k],
 * with log softmax(z) = (z − m) − log Σ_k exp(z_k − m), m = max_k z_k (any m gives the same value
 * and derivatives; the max only keeps exp in range). Built from plain kernels so that, once
 * registerHigherOrderGradients() has run, its gradient is itself differentiable — unlike
 * tf.logSoftmax and tf.losses.softmaxCrossEntropy (item 5 at the top).
 */
export function softmaxCrossEntropy(labels: tf.Tensor2D, logits: tf.Tensor2D): tf.Scalar {
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, logSoftmax(logits)), -1)));
}
