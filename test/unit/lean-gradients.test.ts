// The lean gradients of meta/gradients.ts (leanGradients): the same first-order values as tfjs's own
// (bit for bit, Tile to rounding), and correct at first and second order by finite differences.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { leanGradients, registerHigherOrderGradients } from '../../meta/gradients.js';
import { Rng } from '../../meta/rng.js';

await tf.setBackend('cpu');
// tfjs's own gradients, captured before ours replace them.
const tfjsOwn = new Map(leanGradients.map((c) => [c.kernelName, tf.getGradient(c.kernelName)!]));
registerHigherOrderGradients();

function randn(rng: Rng, shape: number[], std = 1, mean = 0): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = mean + std * rng.normal();
  return tf.tensor(v, shape);
}
/** Values with |x| ≥ 0.5 (random sign), so a 1e-2 step never crosses ReLU's kink and sqrt stays smooth. */
function awayFromZero(rng: Rng, shape: number[], positive = false): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (0.5 + Math.abs(rng.normal())) * (positive || rng.uniform(0, 1) < 0.5 ? 1 : -1);
  return tf.tensor(v, shape);
}
const scalarOf = (t: tf.Tensor): number => t.dataSync()[0]!;
const dotAll = (a: tf.Tensor[], b: tf.Tensor[]): number => tf.tidy(() => a.reduce((s, t, i) => s + scalarOf(tf.sum(tf.mul(t, b[i]!))), 0));

/** Swap tfjs's own gradients in (true) or ours (false) for the kernels of leanGradients. */
function useTfjsOwn(own: boolean): void {
  for (const c of leanGradients) tf.registerGradient(own ? tfjsOwn.get(c.kernelName)! : c);
}

// Each case: an op of one or two inputs, the inputs' shapes (broadcasting where the op allows) and
// which inputs must stay away from 0 (ReLU's kink, sqrt's domain and RealDiv's pole).
interface Case {
  kernel: string;
  op: (...x: tf.Tensor[]) => tf.Tensor;
  shapes: number[][];
  positive?: boolean[];
}
const cases: Record<string, Case> = {
  'Multiply, b broadcast over rows': { kernel: tf.Multiply, op: (a, b) => tf.mul(a, b!), shapes: [[4, 3], [1, 3]] },
  'Multiply, same shapes': { kernel: tf.Multiply, op: (a, b) => tf.mul(a, b!), shapes: [[4, 3], [4, 3]] },
  'RealDiv, b broadcast (batch norm: (x − μ)/σ)': { kernel: tf.RealDiv, op: (a, b) => tf.div(a, b!), shapes: [[4, 3], [1, 3]], positive: [false, true] },
  'RealDiv, a broadcast': { kernel: tf.RealDiv, op: (a, b) => tf.div(a, b!), shapes: [[3], [2, 3]], positive: [false, true] },
  Relu: { kernel: tf.Relu, op: (x) => tf.relu(x), shapes: [[4, 3]] },
  Square: { kernel: tf.Square, op: (x) => tf.square(x), shapes: [[4, 3]] },
  Sqrt: { kernel: tf.Sqrt, op: (x) => tf.sqrt(x), shapes: [[4, 3]], positive: [true] },
  'Sum over axis 0': { kernel: tf.Sum, op: (x) => tf.sum(x, 0), shapes: [[4, 3]] },
  'Sum over axes 0, 2 keepDims': { kernel: tf.Sum, op: (x) => tf.sum(x, [0, 2], true), shapes: [[2, 3, 4]] },
  'Mean over the last axis': { kernel: tf.Mean, op: (x) => tf.mean(x, -1), shapes: [[4, 3]] },
  'Mean over axes 0, 1, 2 keepDims (Conv4 batch norm)': { kernel: tf.Mean, op: (x) => tf.mean(x, [0, 1, 2], true), shapes: [[2, 3, 3, 2]] },
  'Tile over a task axis (tileParams)': { kernel: tf.Tile, op: (x) => tf.tile(x, [5, 1, 1]), shapes: [[1, 3, 2]] },
  'Tile over two axes': { kernel: tf.Tile, op: (x) => tf.tile(x, [2, 3]), shapes: [[3, 2]] },
};

/**
 * f₁ = ⟨c₁, op(x)²⟩ and f₂ = ⟨c₂, ∇f₁(x)⟩. The square makes the upstream gradient of op (2c₁·op(x))
 * depend on x, so ∇f₂ differentiates op's gradient in its upstream too (as MAML does), not only in x.
 */
function objectives(c: Case, rng: Rng, xs: tf.Tensor[]) {
  const y = c.op(...xs);
  const c1 = randn(rng, y.shape);
  y.dispose();
  const c2s = xs.map((x) => randn(rng, x.shape));
  const f1 = (...v: tf.Tensor[]): tf.Scalar => tf.sum(tf.mul(c1, tf.square(c.op(...v))));
  const f2 = (...v: tf.Tensor[]): tf.Scalar => {
    const g = tf.grads(f1)(v);
    return tf.addN(g.map((gi, i) => tf.sum(tf.mul(c2s[i]!, gi)))) as tf.Scalar;
  };
  return { f1, f2, consts: [c1, ...c2s] };
}

function inputsOf(c: Case, seed: number): { rng: Rng; xs: tf.Tensor[] } {
  const rng = new Rng(seed);
  const nonSmooth = c.kernel === tf.Relu || c.kernel === tf.Sqrt || c.kernel === tf.RealDiv;
  const xs = c.shapes.map((s, i) => (nonSmooth ? awayFromZero(rng, s, c.positive?.[i]) : randn(rng, s)));
  return { rng, xs };
}

describe('lean gradients agree with tfjs 4.22 own', () => {
  for (const [name, c] of Object.entries(cases)) {
    test(name, () => {
      tf.tidy(() => {
        const run = (own: boolean) => {
          useTfjsOwn(own);
          const { rng, xs } = inputsOf(c, 5000 + name.length);
          const { f1, f2 } = objectives(c, rng, xs);
          return { g1: tf.grads(f1)(xs), g2: tf.grads(f2)(xs) };
        };
        const theirs = run(true);
        const ours = run(false);
        for (let i = 0; i < c.shapes.length; i++) {
          const a = theirs.g1[i]!.dataSync();
          const b = ours.g1[i]!.dataSync();
          // First order: the same float32 operations on the same values (casts and ×1 removed), so
          // bit-identical — except Tile, whose copies are summed by one Sum instead of one add per
          // copy: ≤ 5 terms of O(1), rounding ≤ ~5·2⁻²⁴ relative; 1e-6 absolute is ample.
          if (c.kernel === tf.Tile) for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j]! - b[j]!) <= 1e-6, `first order [${j}]: ${a[j]} vs ${b[j]}`);
          else assert.deepEqual(b, a, 'first order bit-identical');
          // Second order: the two graphs differ in how the differentiated gradient broadcasts and
          // reduces (tile vs ×ones), so equal only to rounding: values O(1) to O(10), a few float32
          // ops each: 1e-5 relative (floor 1e-5) is ≥ 10× the rounding, far below any missing term.
          const a2 = theirs.g2[i]!.dataSync();
          const b2 = ours.g2[i]!.dataSync();
          for (let j = 0; j < a2.length; j++) assert.ok(Math.abs(a2[j]! - b2[j]!) <= 1e-5 * Math.max(1, Math.abs(a2[j]!)), `second order [${j}]: ${a2[j]} vs ${b2[j]}`);
        }
      });
    });
  }
  useTfjsOwn(false);
});

describe('lean gradients match finite differences at first and second order', () => {
  // Central differences along a unit direction v at ε = 1e-2: truncation ε²/6·|f'''| ≈ 2e-5 for
  // these O(1)-curvature ops on inputs with |x| ≥ 0.5 (Sqrt: f''' = 3/8·x^−5/2 ≤ 2.2 at x = 0.5,
  // still ≤ 4e-5; RealDiv 1/b has b ≥ 0.5: |f'''| ≤ 6/b⁴ = 96 → ≤ 2e-3 relative to values ~10);
  // float32 rounding of f (|f| ≲ 10, ~1e-6) over 2ε adds ≈ 1e-4. 5e-3 relative (floor 5e-3)
  // covers both; a wrong or dropped term is an O(1) error. Piecewise-linear ReLU: exact except
  // rounding, since no input is within ε of the kink.
  for (const [name, c] of Object.entries(cases)) {
    test(name, () => {
      tf.tidy(() => {
        const { rng, xs } = inputsOf(c, 6000 + name.length);
        const { f1, f2 } = objectives(c, rng, xs);
        const vs = xs.map((x) => randn(rng, x.shape));
        const norm = Math.sqrt(dotAll(vs, vs));
        const v = vs.map((t) => tf.div(t, norm));
        const eps = 1e-2;
        for (const f of [f1, f2]) {
          const an = dotAll(tf.grads(f)(xs), v);
          const fd = (scalarOf(f(...xs.map((x, i) => tf.add(x, tf.mul(eps, v[i]!))))) - scalarOf(f(...xs.map((x, i) => tf.sub(x, tf.mul(eps, v[i]!)))))) / (2 * eps);
          assert.ok(Math.abs(an - fd) <= 5e-3 * Math.max(1, Math.abs(an)), `${f === f1 ? 'first' : 'second'} order: analytic ${an} vs fd ${fd}`);
        }
      });
    });
  }
});

test('the lean gradients leak no tensors, first and second order', () => {
  const before = tf.memory().numTensors;
  for (const c of Object.values(cases)) {
    const { rng, xs } = inputsOf(c, 7000);
    const { f2, consts } = objectives(c, rng, xs);
    tf.dispose(tf.grads(f2)(xs));
    tf.dispose([...xs, ...consts]);
  }
  assert.equal(tf.memory().numTensors, before);
});

test('batch norm as one kernel (meta/batch-norm.ts) equals tf.moments + the textbook formula: values bit for bit, gradients to rounding, second order too', async () => {
  const { batchNorm } = await import('../../meta/models.js');
  const textbook = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor, axes: number[]) => {
    const { mean, variance } = tf.moments(x, axes, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
  };
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    for (const [shape, axes] of [[[6, 5], [0]], [[3, 6, 5], [1]], [[2, 4, 4, 3], [0, 1, 2]]] as Array<[number[], number[]]>) {
      const rng = new Rng(8000 + shape.length);
      const f = shape[shape.length - 1]!;
      const x = randn(rng, shape, 2, 0.5);
      const g = randn(rng, [f], 0.3, 1);
      const b = randn(rng, [f]);
      assert.deepEqual(batchNorm(x, g, b, axes).dataSync(), textbook(x, g, b, axes).dataSync(), `forward ${shape}`);
      // h = ⟨c₂, ∇ₓ⟨c₁, bn(x)²⟩⟩ and its gradient (the second-order path MAML takes through it).
      const c1 = randn(rng, shape);
      const c2 = randn(rng, shape);
      const grads = (bn: typeof textbook) => {
        const first = (v: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(c1, tf.square(bn(v, gg, bb, axes)))) as tf.Scalar;
        const h = (v: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => tf.sum(tf.mul(c2, tf.grads(first)([v, gg, bb])[0]!)) as tf.Scalar;
        return [...tf.grads(first)([x, g, b]), ...tf.grads(h)([x, g, b])];
      };
      const ours = grads(batchNorm);
      const theirs = grads(textbook);
      // The backward graphs accumulate the two uses of x − μ in another order: rounding only.
      // Values are O(1)–O(10) after a few dozen float32 ops: 1e-4 relative (floor 1e-4) is ≥ 10×
      // that rounding and far below a missing term (O(1)).
      ours.forEach((t, i) => {
        const a = t.dataSync();
        const e = theirs[i]!.dataSync();
        a.forEach((v, j) => assert.ok(Math.abs(v - e[j]!) <= 1e-4 * Math.max(1, Math.abs(e[j]!)), `${shape} gradient ${i}[${j}]: ${v} vs ${e[j]}`));
      });
    }
  });
  assert.equal(tf.memory().numTensors, before);
});

test('batch norm kernel: first and second order match finite differences in x, γ and β', async () => {
  const { batchNorm } = await import('../../meta/batch-norm.js');
  // Same construction and tolerance as the lean-gradient cases above (ε = 1e-2, 5e-3 relative):
  // batch norm is smooth; with σ ≈ 1 its third derivatives are O(1) (O(1/σ³)), so the truncation
  // stays ~1e-4 and float32 rounding of f over 2ε ≈ 1e-4.
  const c: Case = { kernel: 'MetatrainBatchNorm', op: (x, g, b) => batchNorm(x, g!, b!, [0]), shapes: [[6, 3], [3], [3]] };
  tf.tidy(() => {
    const { rng, xs } = inputsOf(c, 9100);
    const { f1, f2 } = objectives(c, rng, xs);
    const vs = xs.map((x) => randn(rng, x.shape));
    const norm = Math.sqrt(dotAll(vs, vs));
    const v = vs.map((t) => tf.div(t, norm));
    const eps = 1e-2;
    for (const f of [f1, f2]) {
      const an = dotAll(tf.grads(f)(xs), v);
      const fd = (scalarOf(f(...xs.map((x, i) => tf.add(x, tf.mul(eps, v[i]!))))) - scalarOf(f(...xs.map((x, i) => tf.sub(x, tf.mul(eps, v[i]!)))))) / (2 * eps);
      assert.ok(Math.abs(an - fd) <= 5e-3 * Math.max(1, Math.abs(an)), `${f === f1 ? 'first' : 'second'} order: analytic ${an} vs fd ${fd}`);
    }
  });
});

test('batch norm refuses a scale that varies along the normalised axes', async () => {
  const { batchNorm } = await import('../../meta/batch-norm.js');
  tf.tidy(() => assert.throws(() => batchNorm(tf.ones([4, 3]), tf.ones([4, 3]), tf.zeros([3]), [0]), /constant along the normalised axes/));
});
