// A task-batched episode that never builds per-task copies of the model's input kernel.
//
// The first layer of an MLP computes z = x·W on the raw input. An SGD step on the support set Xs
// (n examples) changes W by −α·Xsᵀ·δ, where δ = ∂L/∂z over the support rows: a rank-n change. The
// support set is the same at every inner step, so after any number of steps each task's kernel is
//   W_t = W + Xsᵀ·V_t,  V_t = −α·Σ_steps δ   ([n, out] per task),
// and its products never need W_t itself:
//   Xs·W_t = Xs·W + (Xs·Xsᵀ)·V_t,   Xq·W_t = Xq·W + (Xq·Xsᵀ)·V_t.
// For Omniglot's MLP (784 inputs, 5 support images) that replaces 32 task copies of a 784×256
// kernel — 25 MB per copy of the shard, several copies per step, and a batched matmul that reads
// all of them — by a [32, 5, 256] factor, one shared matMul per forward and two small Gram
// matrices. The algebra is exact; the values differ from the unfactored path by float32 rounding
// (test/unit/factored-episode.test.ts states the tolerance). Gradients flow through ordinary taped
// ops (matMul, BatchMatMul, Add), so MAML's second-order meta-gradient is unchanged.
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
/** Xs·W per task, [T, n, out]: the support rows' first-layer product before any step. */
const XW = RESERVED + "xw:";
/** V per task, [T, n, out]: the kernel's change so far is Xsᵀ·V. Absent before the first step. */
const V = RESERVED + "v:";

/** The input kernel of `phi` if a factored episode expanded it (so the generic SGD step must not touch it). */
export function factoredKernelIn(phi: Params, keys: readonly string[]): string | undefined {
  return keys.find((k) => XW + k in phi);
}

/** Whether factoring pays for these tasks: the model names an input kernel, and the support set has fewer rows than inputs. */
export function factoringPays(model: Model, supportRows: number): boolean {
  if (!model.inputKernel || !model.forwardBatched) return false;
  return supportRows < model.inputShape.reduce((a, b) => a * b, 1);
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

/**
 * `e` (a task-batched episode of `model`) with the model's input kernel kept shared and each task's
 * change to it factored. Owns the flattened inputs and Gram matrices it builds (disposeEpisode frees them).
 */
export function factorInputKernel(e: Episode, model: Model): Episode {
  const W = model.inputKernel!;
  const T = e.count;
  const d = model.inputShape.reduce((a, b) => a * b, 1);
  const ns = e.support.x.shape[1]!;
  const nq = e.query.x.shape[1]!;
  const xsFlat = tf.reshape(e.support.x, [T * ns, d]);
  const xqFlat = tf.reshape(e.query.x, [T * nq, d]);
  const xs = tf.reshape(xsFlat, [T, ns, d]);
  const gs = batchMatMul3d(xs, xs, false, true); // [T, ns, ns]
  const gq = tf.tidy(() => batchMatMul3d(tf.reshape(xqFlat, [T, nq, d]), xs, false, true)); // [T, nq, ns]
  // Freed with the episode; the query products cached below join it as they are made.
  const owned = [...(e.owned ?? []), xsFlat, xqFlat, xs, gs, gq];

  const queryXW = queryProductCache(xqFlat, T, nq, owned);
  const shared = (p: Params): tf.Tensor => {
    if (!(XW + W in p)) throw new Error(`factored episode: the parameters were not expanded by this episode (no '${XW + W}'); build them with e.expand and keep its entries`);
    return p[W]!;
  };
  /** x·W_t for the episode's support or query inputs, or any [T, n, ...] inputs. */
  const inputProduct = (p: Params, x: tf.Tensor): tf.Tensor => {
    const w = shared(p);
    const v = p[V + W];
    if (x === e.support.x) return v ? tf.add(p[XW + W]!, batchMatMul3d(gs, v)) : p[XW + W]!;
    const n = x.shape[1]!;
    const xw = x === e.query.x ? queryXW(w) : tf.reshape(tf.matMul(tf.reshape(x, [T * n, d]), w), [T, n, w.shape[1]!]);
    if (!v) return xw;
    const gram = x === e.query.x ? gq : batchMatMul3d(tf.reshape(x, [T, n, d]), xs, false, true);
    return tf.add(xw, batchMatMul3d(gram, v));
  };
  const forward = (p: Params, x: tf.Tensor) => model.forwardBatched!(p, x, inputProduct(p, x));

  return {
    ...e,
    owned,
    expand(theta) {
      const w = theta[W]!;
      const tiled = e.expand(pick(theta, names(theta).filter((k) => k !== W)));
      return { ...tiled, [W]: w, [XW + W]: tf.reshape(tf.matMul(xsFlat, w), [T, ns, w.shape[1]!]) };
    },
    forward,
    // W's gradient is already the sum over tasks: it is shared.
    reduce(p) {
      const out: Params = {};
      for (const k of names(p)) out[k] = k === W ? p[k]! : tf.sum(p[k]!, 0);
      return out;
    },
    // Σ_t (W_t − W) = Σ_t Xs_tᵀ·V_t: one matMul over all tasks' support rows.
    delta(phi, theta) {
      const out: Params = {};
      for (const k of names(theta)) {
        if (k.startsWith(RESERVED)) continue;
        if (k !== W) out[k] = tf.sum(tf.sub(phi[k]!, theta[k]!), 0);
        else {
          const v = phi[V + W];
          out[k] = v ? tf.matMul(xsFlat, tf.reshape(v, [T * ns, v.shape[2]!]), true, false) : tf.zerosLike(theta[k]!);
        }
      }
      return out;
    },
    step(keys, phi, lr) {
      // With W adapted, differentiate the support loss w.r.t. the first layer's product itself:
      // that gradient is δ, and W_t's step is −α·Xsᵀ·δ, i.e. V_t ← V_t − α·δ.
      const adaptW = keys.includes(W);
      const others = keys.filter((k) => k !== W);
      const zs = inputProduct(phi, e.support.x);
      const g = tf.grads((...vals: tf.Tensor[]) => {
        const p = { ...phi, ...fromList(others, vals) };
        return taskLoss(e.kind, model.forwardBatched!(p, e.support.x, adaptW ? vals[others.length]! : zs), e.support.y);
      })([...others.map((k) => phi[k]!), ...(adaptW ? [zs] : [])]);
      const next: Params = { ...phi, ...addScaled(fromList(others, others.map((k) => phi[k]!)), fromList(others, g.slice(0, others.length)), -lr) };
      if (adaptW) {
        const step = tf.mul(g[others.length]!, -lr);
        const v = phi[V + W];
        next[V + W] = v ? tf.add(v, step) : step;
      }
      return next;
    },
  };
}
