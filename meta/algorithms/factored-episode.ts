// A task-batched episode that never builds per-task copies of an MLP's kernels.
//
// A dense layer computes z = h·W. An SGD step on the support set (n rows a task) changes W by
// −α·hᵀ·δ, where h is the layer's support input and δ = ∂L/∂z over the support rows: a rank-n
// change. So after k steps each task's kernel is W plus a sum of such terms, and its products never
// need W_t itself.
//
// The input kernel sees the same support images Xs at every step, so its changes share one factor:
//   W_t = W + Xsᵀ·V_t,  V_t = −α·Σ_steps δ   ([n, out] per task),
//   Xs·W_t = Xs·W + (Xs·Xsᵀ)·V_t,   Xq·W_t = Xq·W + (Xq·Xsᵀ)·V_t.
// For Omniglot's MLP (784 inputs, 5 support images) that replaces 32 task copies of a 784×256
// kernel — 25 MB per copy of the shard, several copies per step, and a batched matmul that reads
// all of them — by a [32, 5, 256] factor, one shared matMul per forward and two small Gram
// matrices.
//
// A hidden kernel's input changes from step to step (the layers below it adapt), so its factor
// grows by n rows a step: after steps with support inputs h₀ … h_{k−1} and gradients δ₀ … δ_{k−1},
//   W_t = W + H_tᵀ·V_t,  H_t = [h₀; …; h_{k−1}]  ([k·n, in]),  V_t = −α·[δ₀; …; δ_{k−1}]  ([k·n, out]),
//   h·W_t = h·W + (h·H_tᵀ)·V_t.
// It pays while k·n stays well below the layer's widths: for the Omniglot MLP's 256→128, 128→64 and
// 64→64 layers after 5 steps of 5 rows, [32, 25, in] factors instead of [32, in, out] copies (which
// cost a full-size add, scale, product and gradient product each step, bench/RESULTS.md).
//
// The algebra is exact; the values differ from the unfactored path by float32 rounding
// (test/unit/factored-episode.test.ts states the tolerance). Gradients flow through ordinary taped
// ops (matMul, BatchMatMul, Add, Concat), so MAML's second-order meta-gradient is unchanged.
//
// Only plain SGD on the whole support set has this form: learners opt in (MAML, first-order MAML,
// Reptile with its SGD inner loop on whole support sets, and test-time SGD adaptation); Meta-SGD's
// per-weight step sizes and Adam do not.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "../models.js";
import { batchMatMul3d } from "../gradients.js";
import { taskLoss } from "../losses.js";
import { addScaled, fromList, names, pick, type Params } from "../params.js";
import type { Episode } from "./types.js";

/** The prefix of the entries a factored episode adds to the parameters (model names never start with it). */
const RESERVED = "~factored/";
/** Xs·W per task, [T, n, out]: the support rows' input-kernel product before any step. */
const XW = RESERVED + "xw:";
/** V per task, [T, m, out]: the kernel's change so far is (its factor)ᵀ·V. Absent before the first step. */
const V = RESERVED + "v:";
/** A hidden kernel's H per task, [T, m, in]: the support inputs of the steps so far. Absent before the first step. */
const H = RESERVED + "h:";
/** Marks a hidden kernel as shared and factored (the entry is the kernel itself, not a copy). */
const SHARED = RESERVED + "shared:";

/** A kernel of `phi` that a factored episode keeps shared (so the generic SGD step must not touch it). */
export function factoredKernelIn(phi: Params, keys: readonly string[]): string | undefined {
  return keys.find((k) => XW + k in phi || SHARED + k in phi);
}

/** Whether factoring pays for these tasks: the model names an input kernel, and the support set has fewer rows than inputs. */
export function factoringPays(model: Model, supportRows: number): boolean {
  if (!model.inputKernel || !model.forwardBatched) return false;
  return supportRows < model.inputShape.reduce((a, b) => a * b, 1);
}

/**
 * A hidden kernel is factored when both its widths are at least this many times the support rows
 * a task: its factor after a few steps is then a fraction of the kernel. Measured on the Omniglot
 * MLP (bench/factored.ts, bench/RESULTS.md).
 */
let hiddenMinRatio = 8;

/** Sets the ratio above (for bench/factored.ts and tests; Infinity factors the input kernel alone); returns the previous one. */
export function setHiddenFactorRatio(ratio: number): number {
  const was = hiddenMinRatio;
  hiddenMinRatio = ratio;
  return was;
}

/** The model's hidden kernels that a support set of `rows` rows a task factors. */
function hiddenFactored(model: Model, rows: number): string[] {
  return (model.hiddenKernels ?? []).filter((k) => Math.min(k.in, k.out) >= hiddenMinRatio * rows).map((k) => k.name);
}

/** What tfjs's engine says of gradient recording (its public API has no such question). */
interface TapeState {
  gradientDepth: number;
  kernelDepth: number;
  activeTape: unknown;
}

/**
 * Xq·W of the shared kernel, computed once and reused while W is the same tensor: the query
 * readouts before and after adaptation (and every recorded step at test time) read the same
 * product, [T·nq, d]·[d, out] — for Omniglot 2,400 × 784 × 256, the largest product of an episode.
 * A product serves a gradient only on the tape that recorded it: one computed before a tf.grads
 * began (or on another tape) is not on that tape, so W's gradient through it would be lost; then
 * it is computed again. With no tape recording, any product of the same W serves. Products are
 * kept (a gradient's forward tidy would free them) and freed with the episode (`owned`).
 */
function queryProductCache(xq: tf.Tensor, T: number, nq: number, owned: tf.Tensor[]): (w: tf.Tensor) => tf.Tensor {
  let cached: { w: tf.Tensor; tape: unknown; product: tf.Tensor } | undefined;
  return (w) => {
    const st = (tf.engine() as unknown as { state: TapeState }).state;
    const taping = st.gradientDepth > 0 && st.kernelDepth === 0;
    const tape = taping ? st.activeTape : null;
    if (cached && cached.w === w && !w.isDisposed && !cached.product.isDisposed && (!taping || cached.tape === tape)) return cached.product;
    const product = tf.keep(tf.tidy(() => tf.reshape(tf.matMul(xq, w), [T, nq, w.shape[1]!])));
    owned.push(product);
    cached = { w, tape, product };
    return product;
  };
}

/** h·W for [T, n, in] inputs and a shared [in, out] kernel: one matMul over all T·n rows. */
function sharedProduct(h: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const [T, n, d] = h.shape as [number, number, number];
  return tf.reshape(tf.matMul(tf.reshape(h, [T * n, d]), w), [T, n, w.shape[1]!]);
}

/** Σ_t A_tᵀ·B_t over [T, m, a] and [T, m, b]: one matMul over all T·m rows, [a, b]. */
function summedOuter(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const [T, m] = [a.shape[0]!, a.shape[1]!];
  return tf.matMul(tf.reshape(a, [T * m, a.shape[2]!]), tf.reshape(b, [T * m, b.shape[2]!]), true, false);
}

/**
 * `e` (a task-batched episode of `model`) with the model's input kernel, and the hidden kernels
 * where that pays, kept shared and each task's change to them factored. Owns the flattened
 * inputs, Gram matrices and captured support inputs it builds (disposeEpisode frees them).
 */
export function factorKernels(e: Episode, model: Model): Episode {
  const W = model.inputKernel!;
  const T = e.count;
  const d = model.inputShape.reduce((a, b) => a * b, 1);
  const ns = e.support.x.shape[1]!;
  const nq = e.query.x.shape[1]!;
  const hidden = hiddenFactored(model, ns);
  const shared = new Set([W, ...hidden]);
  const xsFlat = tf.reshape(e.support.x, [T * ns, d]);
  const xqFlat = tf.reshape(e.query.x, [T * nq, d]);
  const xs = tf.reshape(xsFlat, [T, ns, d]);
  const gs = batchMatMul3d(xs, xs, false, true); // [T, ns, ns]
  const gq = tf.tidy(() => batchMatMul3d(tf.reshape(xqFlat, [T, nq, d]), xs, false, true)); // [T, nq, ns]
  // Freed with the episode; the query products and support inputs captured below join it as they are made.
  const owned = [...(e.owned ?? []), xsFlat, xqFlat, xs, gs, gq];

  const queryXW = queryProductCache(xqFlat, T, nq, owned);
  const sharedKernel = (p: Params, k: string): tf.Tensor => {
    if (!((k === W ? XW : SHARED) + k in p)) throw new Error(`factored episode: the parameters were not expanded by this episode (no '${(k === W ? XW : SHARED) + k}'); build them with e.expand and keep its entries`);
    return p[k]!;
  };
  /** x·W_t of the input kernel for the episode's support or query inputs, or any [T, n, ...] inputs. */
  const inputProduct = (p: Params, x: tf.Tensor): tf.Tensor => {
    const w = sharedKernel(p, W);
    const v = p[V + W];
    if (x === e.support.x) return v ? tf.add(p[XW + W]!, batchMatMul3d(gs, v)) : p[XW + W]!;
    const n = x.shape[1]!;
    const xw = x === e.query.x ? queryXW(w) : sharedProduct(tf.reshape(x, [T, n, d]), w);
    if (!v) return xw;
    const gram = x === e.query.x ? gq : batchMatMul3d(tf.reshape(x, [T, n, d]), xs, false, true);
    return tf.add(xw, batchMatMul3d(gram, v));
  };
  /** h·W_t of kernel k for inputs h [T, n, in]: factored, or the task's own copy. */
  const product = (p: Params, k: string, h: tf.Tensor): tf.Tensor => {
    if (k === W) return inputProduct(p, h);
    if (!shared.has(k)) return batchMatMul3d(h, p[k]!);
    const hw = sharedProduct(h, sharedKernel(p, k));
    const past = p[H + k];
    return past ? tf.add(hw, batchMatMul3d(batchMatMul3d(h, past, false, true), p[V + k]!)) : hw;
  };
  const forward = (p: Params, x: tf.Tensor) => model.forwardBatched!(p, x, (k, h) => product(p, k, h));

  return {
    ...e,
    owned,
    expand(theta) {
      const tiled = e.expand(pick(theta, names(theta).filter((k) => !shared.has(k))));
      const w = theta[W]!;
      const out: Params = { ...tiled, [W]: w, [XW + W]: sharedProduct(xs, w) };
      for (const k of hidden) out[k] = out[SHARED + k] = theta[k]!;
      return out;
    },
    forward,
    // A shared kernel's gradient is already the sum over tasks.
    reduce(p) {
      const out: Params = {};
      for (const k of names(p)) out[k] = shared.has(k) ? p[k]! : tf.sum(p[k]!, 0);
      return out;
    },
    // Σ_t (W_t − W) = Σ_t (factor_t)ᵀ·V_t: one matMul over all tasks' rows.
    delta(phi, theta) {
      const out: Params = {};
      for (const k of names(theta)) {
        if (k.startsWith(RESERVED)) continue;
        if (!shared.has(k)) out[k] = tf.sum(tf.sub(phi[k]!, theta[k]!), 0);
        else {
          const v = phi[V + k];
          out[k] = !v ? tf.zerosLike(theta[k]!) : summedOuter(k === W ? xs : phi[H + k]!, v);
        }
      }
      return out;
    },
    step(keys, phi, lr) {
      // Differentiate the support loss w.r.t. each adapted shared kernel's product z itself: that
      // gradient is δ, and the kernel's step is −α·hᵀ·δ. The input kernel's product is taken as
      // the leaf; a hidden kernel's depends on the layers below, so a zero added to it is the leaf
      // instead, and its input h is kept for the factor.
      const adapted = keys.filter((k) => shared.has(k));
      const others = keys.filter((k) => !shared.has(k));
      const adaptW = adapted.includes(W);
      const adaptedHidden = adapted.filter((k) => k !== W);
      const zs = adaptW ? inputProduct(phi, e.support.x) : undefined;
      const zeros = adaptedHidden.map((k) => tf.zeros([T, ns, phi[k]!.shape[1]!]));
      const inputs = new Map<string, tf.Tensor>();
      const leaves = [...others.map((k) => phi[k]!), ...(zs ? [zs] : []), ...zeros];
      const g = tf.grads((...vals: tf.Tensor[]) => {
        const p = { ...phi, ...fromList(others, vals) };
        const z = (k: string, h: tf.Tensor): tf.Tensor => {
          if (k === W && zs) return vals[others.length]!;
          const i = adaptedHidden.indexOf(k);
          if (i < 0) return product(p, k, h);
          inputs.set(k, tf.keep(h));
          return tf.add(product(p, k, h), vals[others.length + (zs ? 1 : 0) + i]!);
        };
        return taskLoss(e.kind, model.forwardBatched!(p, e.support.x, z), e.support.y);
      })(leaves);
      tf.dispose(zeros);
      const next: Params = { ...phi, ...addScaled(fromList(others, others.map((k) => phi[k]!)), fromList(others, g.slice(0, others.length)), -lr) };
      const deltas = g.slice(others.length);
      const grow = (key: string, add: tf.Tensor) => {
        const past = phi[key];
        next[key] = past ? tf.concat([past, add], 1) : add;
      };
      if (zs) {
        // The input kernel's factor is Xs at every step: V_t ← V_t − α·δ.
        const step = tf.mul(deltas.shift()!, -lr);
        const v = phi[V + W];
        next[V + W] = v ? tf.add(v, step) : step;
      }
      adaptedHidden.forEach((k, i) => {
        const h = inputs.get(k)!;
        owned.push(h);
        grow(H + k, h);
        grow(V + k, tf.mul(deltas[i]!, -lr));
      });
      return next;
    },
  };
}
