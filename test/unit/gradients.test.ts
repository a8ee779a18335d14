// Finite-difference checks of meta/gradients.ts: each registered gradient, and a second-order MAML meta-gradient through a small conv net.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerHigherOrderGradients, softmaxCrossEntropy, undetachedMaskGradients } from '../../meta/gradients.js';
import { Rng } from '../../meta/rng.js';

type Shape4 = [number, number, number, number];
type Pad = 'valid' | 'same' | number;

function randn(rng: Rng, shape: number[], std = 1, mean = 0): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return tf.tensor(v, shape);
}

/** Many exact ties (0, 1, 2, ...) so max-pool tie-breaking matters. */
function tiedInput(rng: Rng, shape: Shape4): tf.Tensor4D {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.max(0, Math.round(1.5 * rng.normal()));
  return tf.tensor4d(v, shape);
}

/** Distinct values at least 0.01 apart, so a perturbation of 1e-3 cannot change any argmax. */
function distinctInput(rng: Rng, shape: Shape4): tf.Tensor4D {
  const n = shape.reduce((a, b) => a * b, 1);
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  return tf.tensor4d(Float32Array.from(order, (k) => 0.01 * k), shape);
}

function scalarOf(t: tf.Tensor): number {
  return t.dataSync()[0]!;
}

/** ⟨a, b⟩ summed over all tensors of two equal-length lists. */
function dotAll(a: tf.Tensor[], b: tf.Tensor[]): number {
  return tf.tidy(() => a.reduce((s, t, i) => s + scalarOf(tf.sum(tf.mul(t, b[i]!))), 0));
}

function conv2DBackpropFilter(x: tf.Tensor, dy: tf.Tensor, filterShape: Shape4, strides: number, pad: Pad): tf.Tensor4D {
  const attrs: tf.Conv2DBackpropFilterAttrs = { strides, pad, dataFormat: 'NHWC', filterShape };
  return tf.engine().runKernel(
    tf.Conv2DBackpropFilter,
    { x, dy } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  );
}

function maxPoolGrad(dy: tf.Tensor, input: tf.Tensor, output: tf.Tensor, filterSize: number, strides: number, pad: Pad): tf.Tensor4D {
  const attrs: tf.MaxPoolGradAttrs = { filterSize, strides, pad };
  return tf.engine().runKernel(
    tf.MaxPoolGrad,
    { dy, input, output } as unknown as tf.NamedTensorMap,
    attrs as unknown as tf.NamedAttrMap,
  );
}

before(async () => {
  await tf.setBackend('cpu');
  registerHigherOrderGradients();
});

test('registration is idempotent and covers the missing kernels', () => {
  const first = [tf.Conv2DBackpropFilter, tf.MaxPoolGrad, tf.Exp, tf.Equal].map((k) => tf.getGradient(k));
  registerHigherOrderGradients();
  const second = [tf.Conv2DBackpropFilter, tf.MaxPoolGrad, tf.Exp, tf.Equal].map((k) => tf.getGradient(k));
  for (let i = 0; i < first.length; i++) {
    assert.ok(first[i] !== undefined);
    assert.equal(second[i], first[i]);
  }
});

// Both ops checked here are linear in the argument being perturbed, so the central difference
// (f(u + εv) − f(u − εv)) / 2ε equals the directional derivative exactly for any ε; ε = 1 keeps
// float32 cancellation out of it. What is left is float32 rounding in sums of ≤ ~10³ products of
// O(1) numbers: ~1e-6 relative, so 1e-4 relative (floor 1e-4 absolute) has ample margin while a
// wrong formula (wrong padding side, transposed stride) misses by O(1).
const linearTol = (an: number): number => 1e-4 * Math.max(1, Math.abs(an));

describe('Conv2DBackpropFilter gradient', () => {
  const cases: Array<{ h: number; w: number; s: number; pad: Pad; k: number }> = [
    { h: 7, w: 7, s: 1, pad: 'same', k: 3 },
    { h: 7, w: 6, s: 2, pad: 'same', k: 3 }, // odd/even sizes: asymmetric 'same' padding
    { h: 8, w: 8, s: 2, pad: 'same', k: 3 },
    { h: 7, w: 7, s: 1, pad: 'valid', k: 3 },
    { h: 8, w: 7, s: 2, pad: 'valid', k: 3 }, // stride does not divide: last rows dropped
    { h: 6, w: 6, s: 2, pad: 1, k: 2 },
  ];
  for (const { h, w, s, pad, k } of cases) {
    test(`stride ${s}, pad ${pad}, ${h}x${w}`, () => {
      tf.tidy(() => {
        const rng = new Rng(1000 + h * 10 + w + s);
        const filterShape: Shape4 = [k, k, 3, 4];
        const x = randn(rng, [2, h, w, 3]) as tf.Tensor4D;
        const yShape = tf.conv2d(x, tf.zeros(filterShape) as tf.Tensor4D, s, pad).shape;
        const dy = randn(rng, yShape);
        const g = randn(rng, filterShape);
        // f(x, dy) = ⟨g, Conv2DBackpropFilter(x, dy)⟩
        const f = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.mul(g, conv2DBackpropFilter(a, b, filterShape, s, pad)));
        const [gx, gdy] = tf.grads(f)([x, dy]);
        const vx = randn(rng, x.shape);
        const vdy = randn(rng, dy.shape);
        const fdx = (scalarOf(f(tf.add(x, vx), dy)) - scalarOf(f(tf.sub(x, vx), dy))) / 2;
        const fdy = (scalarOf(f(x, tf.add(dy, vdy))) - scalarOf(f(x, tf.sub(dy, vdy)))) / 2;
        const anx = dotAll([gx!], [vx]);
        const andy = dotAll([gdy!], [vdy]);
        assert.ok(Math.abs(anx - fdx) <= linearTol(anx), `∂/∂x: analytic ${anx} vs fd ${fdx}`);
        assert.ok(Math.abs(andy - fdy) <= linearTol(andy), `∂/∂dy: analytic ${andy} vs fd ${fdy}`);
      });
    });
  }
});

describe('MaxPoolGrad gradient', () => {
  const cases: Array<{ k: number; s: number; pad: Pad; h: number }> = [
    { k: 2, s: 2, pad: 'valid', h: 8 }, // Conv4's pool: windows do not overlap
    { k: 2, s: 2, pad: 'same', h: 7 },
    { k: 3, s: 2, pad: 'same', h: 7 }, // overlapping windows: 2x2 classes
    { k: 3, s: 2, pad: 'valid', h: 8 },
    { k: 3, s: 1, pad: 'same', h: 6 }, // 3x3 classes
    { k: 3, s: 2, pad: 1, h: 7 },
  ];
  for (const { k, s, pad, h } of cases) {
    for (const kind of ['tied', 'distinct'] as const) {
      test(`∂/∂dy, filter ${k}, stride ${s}, pad ${pad}, ${kind} input`, () => {
        tf.tidy(() => {
          const rng = new Rng(2000 + k * 100 + s * 10 + h);
          const shape: Shape4 = [2, h, h, 3];
          const x = kind === 'tied' ? tiedInput(rng, shape) : distinctInput(rng, shape);
          const y = tf.maxPool(x, k, s, pad);
          const dy = randn(rng, y.shape);
          const g = randn(rng, x.shape);
          // With ties this also checks the routing matches the kernel's own tie-breaking.
          const f = (d: tf.Tensor): tf.Scalar => tf.sum(tf.mul(g, maxPoolGrad(d, x, y, k, s, pad)));
          const gdy = tf.grad(f)(dy);
          const v = randn(rng, dy.shape);
          const fd = (scalarOf(f(tf.add(dy, v))) - scalarOf(f(tf.sub(dy, v)))) / 2;
          const an = dotAll([gdy], [v]);
          assert.ok(Math.abs(an - fd) <= linearTol(an), `analytic ${an} vs fd ${fd}`);
        });
      });
    }
    test(`∂/∂input and ∂/∂output are 0, filter ${k}, stride ${s}, pad ${pad}`, () => {
      tf.tidy(() => {
        const rng = new Rng(3000 + k * 100 + s * 10 + h);
        const x = distinctInput(rng, [2, h, h, 3]);
        const y = tf.maxPool(x, k, s, pad);
        const dy = randn(rng, y.shape);
        const g = randn(rng, x.shape);
        const f = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.mul(g, maxPoolGrad(dy, a, b, k, s, pad)));
        const [gIn, gOut] = tf.grads(f)([x, y]);
        assert.equal(scalarOf(tf.max(tf.abs(gIn!))), 0);
        assert.equal(scalarOf(tf.max(tf.abs(gOut!))), 0);
        // Values are ≥ 0.01 apart, so a 1e-3 step leaves every argmax, hence f, unchanged.
        const r = randn(rng, x.shape);
        const v = tf.mul(1e-3, tf.div(r, tf.norm(r)));
        assert.equal(scalarOf(f(tf.add(x, v), y)), scalarOf(f(x, y)));
      });
    });
  }
});

describe('gradients re-registered from the saved input', () => {
  // h(x) = ⟨c, ∇ₓ⟨c', op(x)⟩⟩; its gradient needs the op's gradient to be differentiable. These ops
  // are smooth, so central differences have truncation error ε²/6·|h'''| ≈ 2e-5 at ε = 1e-2 (h'''
  // is O(1) for inputs of size ~1), and float32 rounding of h (|h| ≲ 10, ~1e-6) adds ≈ 1e-4;
  // 1e-3 (relative, floor 1e-3) covers both, while losing the second-order term is an O(1) error.
  const ops: Record<string, (t: tf.Tensor) => tf.Tensor> = {
    exp: (t) => tf.exp(t),
    tanh: (t) => tf.tanh(t),
    sigmoid: (t) => tf.sigmoid(t),
    softmax: (t) => tf.softmax(t),
    softmaxCrossEntropy: (t) => softmaxCrossEntropy(tf.oneHot(tf.tensor1d([2, 0, 4], 'int32'), 5) as tf.Tensor2D, t as tf.Tensor2D),
  };
  for (const [name, op] of Object.entries(ops)) {
    test(name, () => {
      tf.tidy(() => {
        const rng = new Rng(4000 + name.length);
        const x = randn(rng, [3, 5]);
        const c1 = randn(rng, name === 'softmaxCrossEntropy' ? [] : [3, 5]);
        const c2 = randn(rng, [3, 5]);
        const first = (t: tf.Tensor): tf.Scalar => tf.sum(tf.mul(c1, op(t)));
        const h = (t: tf.Tensor): tf.Scalar => tf.sum(tf.mul(c2, tf.grad(first)(t)));
        const r = randn(rng, x.shape);
        const v = tf.div(r, tf.norm(r));
        const eps = 1e-2;
        for (const [fn, grad] of [[first, tf.grad(first)(x)], [h, tf.grad(h)(x)]] as const) {
          const fd = (scalarOf(fn(tf.add(x, tf.mul(eps, v)))) - scalarOf(fn(tf.sub(x, tf.mul(eps, v))))) / (2 * eps);
          const an = dotAll([grad], [v]);
          assert.ok(Math.abs(an - fd) <= 1e-3 * Math.max(1, Math.abs(an)), `analytic ${an} vs fd ${fd}`);
        }
      });
    });
  }

  test('comparison masks inside gradients (max, leakyRelu, relu6) differentiate to 0', () => {
    tf.tidy(() => {
      const rng = new Rng(4100);
      const x = randn(rng, [3, 5], 4);
      const c2 = randn(rng, [3, 5]);
      const ops: Array<[(t: tf.Tensor) => tf.Tensor, tf.Tensor]> = [
        [(t) => tf.max(t, -1), randn(rng, [3])],
        [(t) => tf.leakyRelu(t, 0.2), randn(rng, [3, 5])],
        [(t) => tf.relu6(t), randn(rng, [3, 5])],
      ];
      for (const [op, c1] of ops) {
        // ∇ₓ⟨c1, op(x)⟩ is c1 routed through a 0/1 (or α) mask built by a comparison: piecewise
        // constant in x, so its own gradient is exactly 0 — and must not throw.
        const h = (t: tf.Tensor): tf.Scalar => tf.sum(tf.mul(c2, tf.grad((u: tf.Tensor) => tf.sum(tf.mul(c1, op(u))))(t)));
        assert.equal(scalarOf(tf.max(tf.abs(tf.grad(h)(x)))), 0);
      }
    });
  });
});

// ---- second-order MAML through a small conv net -------------------------------------------------

type Net = 'pool' | 'stride';

/** A relu net on 8x8x1 images with 4 filters per conv, then dense to 3 classes: 'pool' = 2 ×
 * [conv s1 same → batch norm (tf.moments) → relu → maxPool 2x2/2]; 'stride' = [conv s2 same →
 * per-channel scale and shift → relu] then the same with conv s2 valid.
 * `trace` collects what fixes the net's piece of linearity: relu signs and max-pool argmaxes. */
function forward(net: Net, p: tf.Tensor[], x: tf.Tensor4D, trace?: tf.Tensor[]): tf.Tensor2D {
  let h = x;
  for (let l = 0; l < 2; l++) {
    const [w, b, gamma, beta] = p.slice(4 * l, 4 * l + 4) as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D, tf.Tensor1D];
    if (net === 'pool') {
      h = tf.add(tf.conv2d(h, w, 1, 'same'), b);
      const { mean, variance } = tf.moments(h, [0, 1, 2], true);
      h = tf.add(tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-3))), gamma), beta);
    } else {
      h = tf.add(tf.mul(tf.add(tf.conv2d(h, w, 2, l === 0 ? 'same' : 'valid'), b), gamma), beta);
    }
    trace?.push(tf.greater(h, 0));
    h = tf.relu(h);
    if (net === 'pool') {
      trace?.push(tf.maxPoolWithArgmax(h, 2, 2, 'valid').indexes!);
      h = tf.maxPool(h, 2, 2, 'valid');
    }
  }
  const flat = tf.reshape(h, [h.shape[0], -1]);
  return tf.add(tf.matMul(flat, p[8] as tf.Tensor2D), p[9]!);
}

function initParams(net: Net, rng: Rng): tf.Tensor[] {
  const p: tf.Tensor[] = [];
  let cin = 1;
  for (let l = 0; l < 2; l++) {
    p.push(randn(rng, [3, 3, cin, 4], 0.5), randn(rng, [4], 0.1), randn(rng, [4], 0.1, 1), randn(rng, [4], 0.1));
    cin = 4;
  }
  const flat = net === 'pool' ? 2 * 2 * 4 : 1 * 1 * 4;
  p.push(randn(rng, [flat, 3], 0.5), randn(rng, [3], 0.1));
  return p;
}

const INNER_STEPS = 2;
const INNER_LR = 0.3;

/** The inner loop: INNER_STEPS of SGD on the support loss, θ_{k+1} = θ_k − α∇L_s(θ_k); returns θ_0..θ_K. */
function adapt(net: Net, p0: tf.Tensor[], xs: tf.Tensor4D, ys: tf.Tensor2D): tf.Tensor[][] {
  const path = [p0];
  for (let k = 0; k < INNER_STEPS; k++) {
    const p = path[k]!;
    const gs = tf.grads((...q: tf.Tensor[]) => softmaxCrossEntropy(ys, forward(net, q, xs)))(p);
    path.push(p.map((t, i) => tf.sub(t, tf.mul(INNER_LR, gs[i]!))));
  }
  return path;
}

describe('second-order MAML meta-gradient through a conv net', () => {
  for (const net of ['pool', 'stride'] as const) {
    test(`${net}: tf.grad of the post-adaptation query loss matches finite differences`, () => {
      tf.tidy(() => {
        const rng = new Rng(net === 'pool' ? 5001 : 5002);
        const theta = initParams(net, rng);
        const xs = randn(rng, [6, 8, 8, 1]) as tf.Tensor4D;
        const xq = randn(rng, [6, 8, 8, 1]) as tf.Tensor4D;
        const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3) as tf.Tensor2D;
        const metaLoss = (...q: tf.Tensor[]): tf.Scalar =>
          softmaxCrossEntropy(labels, forward(net, adapt(net, q, xs, labels)[INNER_STEPS]!, xq));
        const meta = tf.grads(metaLoss)(theta);
        // First-order MAML (∇ of the query loss at the adapted parameters, no Hessian terms): the
        // check below must be able to tell the two apart, or it proves nothing.
        const adapted = adapt(net, theta, xs, labels)[INNER_STEPS]!;
        const fo = tf.grads((...q: tf.Tensor[]) => softmaxCrossEntropy(labels, forward(net, q, xq)))(adapted);

        // The meta-loss is only piecewise smooth: relu kinks and max-pool argmax switches make the
        // inner gradients, hence the adapted parameters, jump. A direction is used only if the
        // activation pattern (every relu sign and argmax in every forward pass of the adaptation
        // and of the query) is the same at θ ± εv as at θ, so the segment lies in one smooth piece
        // (barring an even number of switches inside it, which has probability O(ε²)).
        const pattern = (q: tf.Tensor[]): Uint8Array =>
          tf.tidy(() => {
            const path = adapt(net, q, xs, labels);
            const trace: tf.Tensor[] = [];
            forward(net, path[0]!, xs, trace);
            forward(net, path[1]!, xs, trace);
            forward(net, path[INNER_STEPS]!, xq, trace);
            return Uint8Array.from(tf.concat(trace.map((t) => tf.reshape(tf.cast(t, 'int32'), [-1]))).dataSync());
          });
        const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
        const base = pattern(theta);

        // ε = 1e-3 on a unit-norm direction: the meta-loss is O(1) and float32 evaluations of it
        // differ by ~1e-7 relative between nearby points, so the quotient carries ≈ 2e-7/2e-3 =
        // 1e-4 of noise; truncation ε²/6·|D³L| is ~1e-6. Tolerance 1e-3 + 1e-2·|D| leaves ~10×
        // margin; dropping the second-order terms (first-order MAML) misses by far more (asserted).
        const eps = 1e-3;
        let checked = 0;
        let foGap = 0;
        for (let attempt = 0; attempt < 12 && checked < 3; attempt++) {
          const raw = theta.map((t) => randn(rng, t.shape));
          const norm = Math.sqrt(dotAll(raw, raw));
          const v = raw.map((t) => tf.div(t, norm));
          const plus = theta.map((t, i) => tf.add(t, tf.mul(eps, v[i]!)));
          const minus = theta.map((t, i) => tf.sub(t, tf.mul(eps, v[i]!)));
          if (!same(pattern(plus), base) || !same(pattern(minus), base)) continue;
          const fd = (scalarOf(metaLoss(...plus)) - scalarOf(metaLoss(...minus))) / (2 * eps);
          const an = dotAll(meta, v);
          const tol = 1e-3 + 1e-2 * Math.abs(an);
          assert.ok(Math.abs(an - fd) <= tol, `direction ${attempt}: analytic ${an} vs fd ${fd}`);
          foGap = Math.max(foGap, Math.abs(dotAll(fo, v) - fd) / tol);
          checked++;
        }
        assert.equal(checked, 3, 'too few directions kept the activation pattern fixed');
        assert.ok(foGap > 5, `first-order MAML is within ${foGap.toFixed(2)} tolerances of fd: check has no power`);
      });
    });
  }
});

test('no tensors leak from the registered gradients', () => {
  const rng = new Rng(6000);
  const x = randn(rng, [2, 6, 6, 2]) as tf.Tensor4D;
  const w = randn(rng, [3, 3, 2, 3]) as tf.Tensor4D;
  const c = randn(rng, [3, 3, 2, 3]);
  // ⟨c, ∂L/∂w⟩ with L through conv (s2) → tanh → maxPool (3x3/2, overlapping) → exp/log-sum:
  // its gradient runs every gradient registered here at least once.
  const run = (): void => {
    const L = (ww: tf.Tensor): tf.Scalar =>
      tf.logSumExp(tf.maxPool(tf.tanh(tf.conv2d(x, ww as tf.Tensor4D, 2, 'same')), 3, 2, 'same'));
    const h = (ww: tf.Tensor): tf.Scalar => tf.sum(tf.mul(c, tf.grad(L)(ww)));
    tf.grad(h)(w).dispose();
  };
  run(); // warm-up: kernels may create persistent state on first use
  const before = tf.memory().numTensors;
  run();
  run();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, w, c]);
});

test('ReLU and max-pool read their masks from detached inputs: a second-order pass builds no zeros for them, changes no value, frees everything', async () => {
  // h(w) = ⟨c, ∂L/∂w⟩ with L = Σ u·maxPool(relu(conv(x, w)))²: h's gradient differentiates ReLU's
  // backward and MaxPoolGrad (through their upstream, which the square makes depend on w), and
  // both are piecewise constant in their mask inputs (x of ReLU; input and output of the pool).
  // Detached, those get no gradient at all, so no ZerosLike kernel runs.
  // The reference registers the same gradients undetached (undetachedMaskGradients), whose zero
  // gradients are added in: x + 0 = x, so the values agree bit for bit.
  const rng = new Rng(6100);
  const x = randn(rng, [2, 6, 6, 2]) as tf.Tensor4D;
  const w = randn(rng, [3, 3, 2, 3]);
  const c = randn(rng, [3, 3, 2, 3]);
  const u = randn(rng, [2, 3, 3, 3]);
  const L = (ww: tf.Tensor): tf.Scalar => tf.sum(tf.mul(u, tf.square(tf.maxPool(tf.relu(tf.conv2d(x, ww as tf.Tensor4D, 1, 'same')), 2, 2, 'valid'))));
  const h = (): tf.Tensor => tf.grad((ww: tf.Tensor) => tf.sum(tf.mul(c, tf.grad(L)(ww))))(w);
  h().dispose(); // warm-up: kernels may create persistent state on first use
  const before = tf.memory();
  const prof = await tf.profile(() => h());
  const ours = prof.result as tf.Tensor;
  assert.ok(!prof.kernelNames.includes('ZerosLike'), `kernels: ${prof.kernelNames}`);
  for (const g of undetachedMaskGradients) tf.registerGradient(g);
  let theirs: tf.Tensor;
  try {
    const p = await tf.profile(() => h());
    theirs = p.result as tf.Tensor;
    assert.ok(p.kernelNames.includes('ZerosLike'), 'the undetached reference builds zeros (else this test shows nothing)');
  } finally {
    registerHigherOrderGradients();
  }
  assert.deepEqual(ours.dataSync(), theirs.dataSync());
  assert.ok(ours.dataSync().some((v) => v !== 0), 'a nonzero second-order gradient');
  tf.dispose([ours, theirs]);
  assert.equal(tf.memory().numTensors, before.numTensors, 'tensors left behind');
  assert.equal(tf.memory().numDataBuffers, before.numDataBuffers, 'data left behind');
  tf.dispose([x, w, c, u]);
});

test('MaxPoolGrad gradient on the wasm backend (wasm has no Conv2DBackpropFilter kernel at all)', async () => {
  await tf.setBackend('wasm');
  try {
    tf.tidy(() => {
      const rng = new Rng(7000);
      for (const [k, s, pad] of [[2, 2, 'valid'], [3, 2, 'same']] as const) {
        const x = tiedInput(rng, [2, 7, 7, 3]);
        const y = tf.maxPool(x, k, s, pad);
        const dy = randn(rng, y.shape);
        const g = randn(rng, x.shape);
        const f = (d: tf.Tensor): tf.Scalar => tf.sum(tf.mul(g, maxPoolGrad(d, x, y, k, s, pad)));
        const v = randn(rng, dy.shape);
        const fd = (scalarOf(f(tf.add(dy, v))) - scalarOf(f(tf.sub(dy, v)))) / 2;
        const an = dotAll([tf.grad(f)(dy)], [v]);
        assert.ok(Math.abs(an - fd) <= linearTol(an), `analytic ${an} vs fd ${fd}`);
      }
    });
  } finally {
    await tf.setBackend('cpu');
  }
});
