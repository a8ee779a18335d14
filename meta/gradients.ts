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
//      Not re-registered for this: MaxPool, Max, Min (their output only feeds an argmax/equality
//      mask, whose derivative is 0 anyway; MaxPool's is re-registered below with that input and
//      output detached, which changes no value), Pow (only its exponent-gradient reads the
//      output), LogSoftmax (no op runs that kernel in 4.22), Elu and LRN (their EluGrad / LRNGrad
//      kernels lack gradients).
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
import { reluGrad } from './relu.js';

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
 * MaxPool's gradient as tfjs's own (MaxPoolGrad of dy at the saved input and output), with that
 * input and output detached: MaxPoolGrad is piecewise constant in them (maxPoolGradGrad above
 * gives them 0), so MAML's outer backward would only build, cast and add zeros for them.
 */
const maxPoolGradFromSaved = (asSaved: (t: tf.Tensor) => tf.Tensor): tf.GradConfig => ({
  kernelName: tf.MaxPool,
  inputsToSave: ['x'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, y] = saved as [tf.Tensor4D, tf.Tensor4D];
    const { filterSize, strides, pad, dimRoundingMode } = attrs as unknown as tf.MaxPoolAttrs;
    return { x: () => maxPoolGrad(dy as tf.Tensor4D, asSaved(x) as tf.Tensor4D, asSaved(y) as tf.Tensor4D, { filterSize, strides, pad, dimRoundingMode }) };
  },
});
const maxPoolGradFromDetached = maxPoolGradFromSaved(detach);

/**
 * The mask gradients as they were before their inputs were detached (tfjs's own MaxPool gradient;
 * ReLU's one kernel on its saved x), for benchmarks and tests to compare against: register them
 * in place of registerHigherOrderGradients' own. Same values, more kernels at second order.
 */
export const undetachedMaskGradients: readonly tf.GradConfig[] = [
  maxPoolGradFromSaved((t) => t),
  fromInput(tf.Relu, 'x', (x, dy) => reluGrad(dy, x)),
];

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

/**
 * Leaner versions of tfjs 4.22's own gradients for the ops every inner step runs (the MLP and Conv4
 * forwards, batch norm, the losses, task tiling). Same values: each drops only work that cannot
 * change a float32 result — casts of float32 to float32 (Multiply, RealDiv, Relu, Square, Sqrt), a
 * product with a tensor of ones where a Tile broadcasts (Sum, Mean; x·1 = x exactly; Mean divides
 * the small dy by N before broadcasting instead of after, the same quotient per element), Reshape
 * kernels that change no shape (Add, Sub, reductions that keep dims, BatchMatMul) — each Reshape
 * is a native op on tfjs-node (~25 µs), a clone is a reference count. Tile's
 * gradient is the exception: tfjs adds reps₀·reps₁·… slices one by one (64 kernels for a 32-task
 * tile), here one reshape and one Sum, whose summation order differs, so values agree to float32
 * rounding (last bits), not bitwise. Every gradient is built from differentiable ops on the saved
 * INPUTS (item 3 at the top), so they are themselves differentiable to any order; each is checked
 * against finite differences at first and second order in test/unit/lean-gradients.test.ts.
 *
 * Not used, after checking: tf.fused.matMul (bias + activation). Under a gradient tape it runs the
 * unfused ops anyway for any activation but 'linear' (tfjs-core's shouldFuse), and tfjs-node's
 * _FusedMatMul kernel is itself matMul + add + activation composed in JS (no native fusion), so it
 * cannot remove kernels here; its linear form does give the same second-order gradients on cpu.
 */
/**
 * tf.matMul(a, b, transposeA, transposeB), straight to the BatchMatMul kernel when both are 3-D with
 * the same batch size (what tf.matMul would reshape them to anyway: same kernel, same values, no
 * Reshape kernels); any other ranks go through tf.matMul.
 */
export function batchMatMul3d(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  if (a.rank !== 3 || b.rank !== 3 || a.shape[0] !== b.shape[0] || a.dtype !== 'float32' || b.dtype !== 'float32') return tf.matMul(a, b, transposeA, transposeB);
  const attrs: tf.BatchMatMulAttrs = { transposeA, transposeB };
  return tf.engine().runKernel(tf.BatchMatMul, { a, b } as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * t (of the broadcast shape) summed down to an input's `shape`; a fresh tensor either way (the
 * engine needs a new tensor per input gradient), a clone — no kernel work — when nothing reduces,
 * and no Reshape kernel when the ranks agree (a Sum keeping dims lands on the shape directly).
 */
function reduceTo(t: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, t.shape);
  if (axes.length === 0) return tf.clone(t);
  if (shape.length === t.rank) return tf.sum(t, axes, true);
  const r = tf.sum(t, axes);
  return tf.util.arraysEqual(r.shape, shape) ? r : tf.reshape(r, shape);
}

/** dy of a reduction over `axes` of x, broadcast back to x's shape (reshape + tile). */
function broadcastBack(dy: tf.Tensor, xShape: number[], axes: number[]): tf.Tensor {
  const kept = xShape.map((d, i) => (axes.includes(i) ? 1 : d));
  const reps = xShape.map((d, i) => (axes.includes(i) ? d : 1));
  // dy already has the kept shape when the reduction kept its dims: no Reshape kernel then.
  const r = tf.util.arraysEqual(dy.shape, kept) ? dy : tf.reshape(dy, kept);
  return reps.every((k) => k === 1) ? (r === dy ? tf.clone(dy) : r) : tf.tile(r, reps);
}

/**
 * t as a constant: a new tensor on t's data (no copy, no kernel: what tfjs-node's Identity kernel
 * does), recorded on no tape, so no gradient reaches t through it. For the inputs of a gradient
 * whose derivative is exactly 0 — ReLU's x inside its backward (a mask), max-pool's input and
 * output inside MaxPoolGrad (argmax positions) — so that MAML's outer backward does not compute
 * their zero gradients, cast them through the saved clone's node and add them to x's gradient
 * (three full-size kernels per node otherwise).
 */
export function detach(t: tf.Tensor): tf.Tensor {
  tf.backend().incRef(t.dataId);
  return tf.engine().makeTensorFromTensorInfo({ dataId: t.dataId, shape: t.shape, dtype: t.dtype });
}

const binary = (kernelName: string, da: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor, db: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor) => tf.Tensor): tf.GradConfig => ({
  kernelName,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const g = dy as tf.Tensor;
    return { a: () => reduceTo(da(g, a, b), a.shape), b: () => reduceTo(db(g, a, b), b.shape) };
  },
});

export const leanGradients: readonly tf.GradConfig[] = [
  binary(tf.Add, (dy) => dy, (dy) => dy),
  {
    kernelName: tf.Sub,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      // Negate after reducing (the smaller tensor), as tfjs does.
      return { a: () => reduceTo(g, a.shape), b: () => tf.neg(reduceTo(g, b.shape)) };
    },
  },
  binary(tf.Multiply, (dy, _a, b) => tf.mul(dy, b), (dy, a) => tf.mul(dy, a)),
  {
    // ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = −a/b²; the b-gradient is reduced before dividing by b² (as tfjs).
    kernelName: tf.RealDiv,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      return {
        a: () => reduceTo(tf.div(g, b), a.shape),
        b: () => tf.neg(tf.div(reduceTo(tf.mul(g, a), b.shape), tf.square(b))),
      };
    },
  },
  // dy·[x > 0] as one kernel (meta/relu.ts: TensorFlow's ReluGrad on tfjs-node; tfjs's Step is six
  // kernels there — isNaN, greater, ones, fill, where, select); equal to dy·step(x) for every
  // non-NaN x (a NaN input gives 0 here, NaN there).
  // The mask's input detached: its derivative is 0 (a MAML outer pass would otherwise build zeros for it).
  fromInput(tf.Relu, 'x', (x, dy) => reluGrad(dy, detach(x))),
  fromInput(tf.Square, 'x', (x, dy) => tf.mul(dy, tf.mul(x, 2))),
  fromInput(tf.Sqrt, 'x', (x, dy) => tf.div(dy, tf.mul(tf.sqrt(x), 2))),
  {
    // tfjs's own is the same four products through tf.matMul, which reshapes both operands to 3-D
    // and the result back (three Reshape kernels, each a native op on tfjs-node); batchMatMul3d
    // calls the kernel directly when both operands are already 3-D with equal batch.
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const g = dy as tf.Tensor;
      const { transposeA, transposeB } = attrs as unknown as tf.BatchMatMulAttrs;
      const mm = batchMatMul3d;
      if (!transposeA && !transposeB) return { a: () => mm(g, b, false, true), b: () => mm(a, g, true, false) };
      if (!transposeA && transposeB) return { a: () => mm(g, b, false, false), b: () => mm(g, a, true, false) };
      if (transposeA && !transposeB) return { a: () => mm(b, g, false, true), b: () => mm(a, g, false, false) };
      return { a: () => mm(b, g, true, true), b: () => mm(g, a, true, true) };
    },
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const axes = tf.util.parseAxisParam((attrs as unknown as tf.SumAttrs).axis, x.shape);
      return { x: () => broadcastBack(dy as tf.Tensor, x.shape, axes) };
    },
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const axes = tf.util.parseAxisParam((attrs as unknown as tf.MeanAttrs).axis, x.shape);
      const n = axes.reduce((p, a) => p * x.shape[a]!, 1);
      return { x: () => broadcastBack(tf.div(dy as tf.Tensor, n), x.shape, axes) };
    },
  },
  {
    // y[i₀ + k·x₀, …] = x[i₀, …]: dx sums dy over the k copies of each axis — one Sum over a reshape
    // of dy to [reps₀, x₀, reps₁, x₁, …] (tfjs: one slice and one add per copy).
    kernelName: tf.Tile,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as [tf.Tensor];
      const { reps } = attrs as unknown as tf.TileAttrs;
      return {
        x: () => {
          const split = x.shape.flatMap((d, i) => [reps[i]!, d]);
          const axes = x.shape.flatMap((_, i) => (reps[i]! > 1 ? [2 * i] : []));
          const r = tf.reshape(dy as tf.Tensor, split);
          return tf.reshape(axes.length ? tf.sum(r, axes) : r, x.shape);
        },
      };
    },
  },
];

const configs: readonly tf.GradConfig[] = [
  conv2DBackpropFilterGrad,
  maxPoolGradGrad,
  maxPoolGradFromDetached,
  ...inputSavingGrads,
  ...comparisonGrads,
  ...leanGradients,
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
