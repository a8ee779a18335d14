// The memory-augmented network of Santoro et al. 2016 (§3.1–3.2): an LSTM controller with an
// external memory read by cosine-similarity content addressing and written by Least Recently Used
// Access (LRUA); with `memory: false`, the same controller alone (their "LSTM" baseline, Table 1).
// Details the paper leaves open follow the Theano implementation tristandeleu/ntm-one-shot
// (mann/model.py), cited as "the reference" below. The episode loss is meta/algorithms/mann.ts's.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { InvalidRunConfigError } from "../../contracts/config.js";
import { uniformTensor, type Model, type ModelSpec } from "../models.js";
import { smallestMask } from "../ops.js";
import type { Params } from "../params.js";
import { Rng } from "../rng.js";

/** How the write heads pick least-used slots. */
export type LeastUsedRule = "per-head" | "shared";

/** The network's shape and memory rule, all resolved. */
export interface MannShape {
  /** Features per step: the image and the previous label's one-hot (meta/tasks/sequence.ts). */
  inputs: number;
  /** Classes: softmax outputs per step. */
  outputs: number;
  /** LSTM controller units (Santoro et al.: 200). */
  controllerSize: number;
  /** false: the controller alone, no memory (Santoro et al.'s LSTM baseline). */
  memory: boolean;
  /** Memory rows N (Santoro et al.: 128). */
  memorySlots: number;
  /** Memory row width M (Santoro et al.: 40). */
  memoryWidth: number;
  /** Read heads, each with its own key, write gate and add vector (Santoro et al.: 4). */
  readHeads: number;
  /** γ, the usage decay (Santoro et al. §3.2: 0.99; the reference code: 0.95). */
  usageDecay: number;
  /** `per-head` (the reference): head i writes to the i-th least-used slot; `shared`: every head to all n least-used slots (the paper's w^lu taken literally). */
  leastUsed: LeastUsedRule;
}

/** The memory's state between steps, batched over B episodes. */
export interface LruaState {
  /** M_t, [B, slots, width]. */
  memory: tf.Tensor3D;
  /** w^r_t, [B, heads, slots]. */
  readWeights: tf.Tensor3D;
  /** w^u_t, [B, slots]. */
  usage: tf.Tensor2D;
}

/** What the controller emits for the memory at one step (after their squashing nonlinearities). */
export interface LruaHeads {
  /** k_t = tanh(·), [B, heads, width]. */
  key: tf.Tensor3D;
  /** a_t = tanh(·), [B, heads, width]. */
  add: tf.Tensor3D;
  /** σ(α_t), the write gate in (0, 1), [B, heads]. */
  gate: tf.Tensor2D;
}

/** One LRUA step: the new state and what led to it. */
export interface LruaStep extends LruaState {
  /** w^lu_{t−1}, the least-used indicator each head writes with, [B, heads, slots]. */
  leastUsed: tf.Tensor3D;
  /** w^w_t, [B, heads, slots]. */
  writeWeights: tf.Tensor3D;
  /** r_t, [B, heads, width]. */
  reads: tf.Tensor3D;
}

/** The reference's initial memory value (mann/model.py `M_0 = 1e-6 · ones`): cosine reads of an empty memory stay finite. */
export const MEMORY_INIT = 1e-6;
/** The reference's ε inside the cosine's square root (mann/utils/similarities.py). */
export const COSINE_EPS = 1e-6;

/**
 * The state every episode starts from — the memory wiped: M_0 = 1e-6 everywhere, w^r_0 and w^u_0
 * one-hot at slot 0 (the reference's `shared_one_hot`), so the first writes go to slots 1…n.
 */
export function lruaInitial(batch: number, o: Pick<MannShape, "memorySlots" | "memoryWidth" | "readHeads">): LruaState {
  return tf.tidy(() => {
    const first = tf.oneHot(tf.zeros([batch], "int32"), o.memorySlots) as tf.Tensor2D;
    return {
      memory: tf.fill([batch, o.memorySlots, o.memoryWidth], MEMORY_INIT) as tf.Tensor3D,
      readWeights: tf.tile(tf.expandDims(tf.cast(first, "float32"), 1), [1, o.readHeads, 1]) as tf.Tensor3D,
      usage: tf.cast(first, "float32") as tf.Tensor2D,
    };
  });
}

/**
 * K(k, M(i)) = k·M(i) / √(‖k‖²‖M(i)‖² + ε) for every head's key against every row (Santoro et al.
 * §3.1's cosine, no key strength; ε = 1e-6 inside the root as the reference, so an all-zero row scores 0): [B, heads, slots].
 */
export function cosineSimilarity(key: tf.Tensor3D, memory: tf.Tensor3D): tf.Tensor3D {
  const dot = tf.matMul(key, memory, false, true); // [B, heads, slots]
  const kk = tf.sum(tf.square(key), -1, true); // [B, heads, 1]
  const mm = tf.expandDims(tf.sum(tf.square(memory), -1), 1); // [B, 1, slots]
  return tf.div(dot, tf.sqrt(tf.add(tf.mul(kk, mm), COSINE_EPS))) as tf.Tensor3D;
}

/**
 * w^lu_{t−1} for each head, [B, heads, slots], from w^u_{t−1} [B, slots]; no gradient (Santoro et al.
 * §3.2: 1 where w^u_{t−1}(i) ≤ m(w^u_{t−1}, n), the n-th smallest usage, n = the number of reads).
 * `per-head` (the reference's `argsort(w^u)[:, :n]`): head i gets the one-hot of the i-th smallest —
 * smallestMask(w^u, i+1) − smallestMask(w^u, i), the masks nested since ties go to the lower index —
 * so the heads together cover the paper's n smallest; `shared`: every head the n-smallest mask.
 */
export function leastUsedWeights(usage: tf.Tensor2D, heads: number, rule: LeastUsedRule): tf.Tensor3D {
  if (rule === "shared") return tf.tile(tf.expandDims(smallestMask(usage, heads), 1), [1, heads, 1]) as tf.Tensor3D;
  const masks = Array.from({ length: heads }, (_, i) => smallestMask(usage, i + 1));
  return tf.stack(masks.map((m, i) => (i === 0 ? m : tf.sub(m, masks[i - 1]!))), 1) as tf.Tensor3D;
}

/**
 * One step of LRUA memory access (Santoro et al. §3.2, in the reference's order):
 *   w^lu_{t−1} = least used of w^u_{t−1}                                  (leastUsedWeights)
 *   w^w_t = σ(α) w^r_{t−1} + (1 − σ(α)) w^lu_{t−1}                         (per head)
 *   M_t = M_{t−1} with its least-used row set to 0, + Σ_heads w^w_t a_tᵀ    ("prior to writing to memory,
 *         the least used memory location is computed from w^u_{t−1} and is set to zero"; one row, as the reference)
 *   w^r_t = softmax_i K(k_t, M_t(i))                                      (§3.1; read after the write, as the reference)
 *   r_t = Σ_i w^r_t(i) M_t(i)                                             (§3.1)
 *   w^u_t = γ w^u_{t−1} + Σ_heads w^r_t + Σ_heads w^w_t                    (§3.2)
 * Usage reaches the loss only through the least-used indicator, which is piecewise constant: no
 * gradient flows into w^u (nor did the reference's argsort pass one).
 */
export function lruaStep(prev: LruaState, h: LruaHeads, o: Pick<MannShape, "usageDecay" | "leastUsed">): LruaStep {
  const heads = h.key.shape[1];
  const leastUsed = leastUsedWeights(prev.usage, heads, o.leastUsed);
  const g = tf.expandDims(h.gate, 2); // [B, heads, 1]
  const writeWeights = tf.add(tf.mul(g, prev.readWeights), tf.mul(tf.sub(1, g), leastUsed)) as tf.Tensor3D;
  const zeroed = tf.mul(prev.memory, tf.expandDims(tf.sub(1, smallestMask(prev.usage, 1)), 2)); // row of the smallest usage → 0
  const memory = tf.add(zeroed, tf.matMul(writeWeights, h.add, true, false)) as tf.Tensor3D; // Σ_h w^w_h(i) a_h
  const readWeights = tf.softmax(cosineSimilarity(h.key, memory)) as tf.Tensor3D;
  const reads = tf.matMul(readWeights, memory) as tf.Tensor3D;
  const usage = tf.addN([tf.mul(prev.usage, o.usageDecay), tf.sum(readWeights, 1), tf.sum(writeWeights, 1)]) as tf.Tensor2D;
  return { memory, readWeights, usage, leastUsed, writeWeights, reads };
}

/** A MANN: a Model (whose `forward` reads its n inputs as ONE sequence of n steps) that runs batches of sequences. */
export interface MannModel extends Model {
  readonly shape: MannShape;
  /**
   * Logits [B, T, outputs] of B sequences x [B, T, inputs], each from the wiped initial state, all
   * with the same parameters. `trace`, if given, sees every LRUA step (tests).
   */
  sequences(p: Params, x: tf.Tensor3D, trace?: (t: number, step: LruaStep) => void): tf.Tensor3D;
}

/** The model's MANN interface, or a config error naming the model kind to use. */
export function mannOf(model: Model): MannModel {
  if (typeof (model as Partial<MannModel>).sequences !== "function") {
    throw new InvalidRunConfigError([`model.kind: mann needs a sequence model; ${model.name} is not one — use mann`]);
  }
  return model as MannModel;
}

/** Glorot (Xavier) uniform bound √(6 / (fan_in + fan_out)), the reference's `shared_glorot_uniform`. */
const glorot = (fanIn: number, fanOut: number): number => Math.sqrt(6 / (fanIn + fanOut));

/**
 * The network (Santoro et al. §3.1, Fig. 1, as the reference builds it):
 *   [i, f, o, g] = [x_t, r_{t−1}, h_{t−1}] W_c + b_c;  c_t = σ(f) c_{t−1} + σ(i) tanh(g);  h_t = σ(o) tanh(c_t)
 *   k_t, a_t = tanh(h_t W_k + b_k), tanh(h_t W_a + b_a) per head;  σ(α_t) = σ(h_t W_α + b_α) per head
 *   LRUA (lruaStep) → r_t, the heads' reads concatenated;  logits_t = [h_t, r_t] W_o + b_o
 * x_t is the step's image with the previous label's one-hot (the task family builds it); h_0 = c_0 =
 * r_0 = 0. Without memory: [i, f, o, g] = [x_t, h_{t−1}] W_c + b_c and logits_t = h_t W_o + b_o.
 * Parameters: `controller/kernel` [inputs (+ heads·width) + units, 4·units] with the gates in the
 * order i, f, o, g; `heads/kernel` [units, 2·heads·width + heads] holding W_k | W_a | W_α; `output/*`.
 * Kernels draw Glorot-uniform per block as the reference does (W_xh, W_rh, W_hh; each head's
 * W_key, W_add, W_sigma; W_o), biases start at 0.
 */
export function mannNet(shape: MannShape): MannModel {
  const { inputs, outputs, controllerSize: C, memory: withMemory, memorySlots: S, memoryWidth: W, readHeads: R } = shape;
  for (const [k, v] of Object.entries({ inputs, outputs, controllerSize: C, memorySlots: S, memoryWidth: W, readHeads: R })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`mann: ${k} must be an integer ≥ 1, got ${v}`);
  }
  if (withMemory && R > S) throw new Error(`mann: ${R} read heads need at least as many memory slots, got ${S}`);
  const RW = withMemory ? R * W : 0;
  const name = withMemory ? `mann-${C}-${S}x${W}-r${R}${shape.leastUsed === "shared" ? "-shared" : ""}` : `lstm-${C}`;

  function init(seed: number): Params {
    const rng = new Rng(seed);
    // Row blocks of the controller kernel, each with its own Glorot bound (the reference's W_xh, W_rh, W_hh).
    const blocks = [inputs, ...(withMemory ? [RW] : []), C].map((rows) => uniformTensor(rng, [rows, 4 * C], glorot(rows, 4 * C)));
    const p: Params = { "controller/kernel": tf.concat(blocks, 0), "controller/bias": tf.zeros([4 * C]) };
    tf.dispose(blocks);
    if (withMemory) {
      // Per head, as the reference: W_key, W_add [units, width] and W_sigma [units, 1].
      const keys = Array.from({ length: R }, () => uniformTensor(rng, [C, W], glorot(C, W)));
      const adds = Array.from({ length: R }, () => uniformTensor(rng, [C, W], glorot(C, W)));
      const gates = Array.from({ length: R }, () => uniformTensor(rng, [C, 1], glorot(C, 1)));
      p["heads/kernel"] = tf.concat([...keys, ...adds, ...gates], 1);
      p["heads/bias"] = tf.zeros([2 * RW + R]);
      tf.dispose([...keys, ...adds, ...gates]);
    }
    p["output/kernel"] = uniformTensor(rng, [C + RW, outputs], glorot(C + RW, outputs));
    p["output/bias"] = tf.zeros([outputs]);
    return p;
  }

  function sequences(p: Params, x: tf.Tensor3D, trace?: (t: number, step: LruaStep) => void): tf.Tensor3D {
    const [B, T] = x.shape;
    if (x.shape[2] !== inputs) throw new Error(`${name}: steps have ${x.shape[2]} features, the model takes ${inputs}`);
    const kernel = p["controller/kernel"] as tf.Tensor2D;
    const bias = p["controller/bias"]!;
    let h: tf.Tensor2D = tf.zeros([B, C]);
    let c: tf.Tensor2D = h;
    let state: LruaState | undefined = withMemory ? lruaInitial(B, shape) : undefined;
    let r: tf.Tensor2D = tf.zeros([B, RW]);
    const outs: tf.Tensor2D[] = [];
    const steps = tf.unstack(x, 1) as tf.Tensor2D[];
    for (let t = 0; t < T; t++) {
      const z = tf.add(tf.matMul(tf.concat(withMemory ? [steps[t]!, r, h] : [steps[t]!, h], 1), kernel), bias);
      const [i, f, o, g] = tf.split(z, 4, 1) as tf.Tensor2D[];
      c = tf.add(tf.mul(tf.sigmoid(f!), c), tf.mul(tf.sigmoid(i!), tf.tanh(g!)));
      h = tf.mul(tf.sigmoid(o!), tf.tanh(c));
      if (state) {
        const hz = tf.add(tf.matMul(h, p["heads/kernel"] as tf.Tensor2D), p["heads/bias"]!) as tf.Tensor2D;
        const heads: LruaHeads = {
          key: tf.reshape(tf.tanh(tf.slice(hz, [0, 0], [B, RW])), [B, R, W]),
          add: tf.reshape(tf.tanh(tf.slice(hz, [0, RW], [B, RW])), [B, R, W]),
          gate: tf.sigmoid(tf.slice(hz, [0, 2 * RW], [B, R])),
        };
        const next = lruaStep(state, heads, shape);
        trace?.(t, next);
        state = next;
        r = tf.reshape(next.reads, [B, RW]);
        outs.push(tf.concat([h, r], 1));
      } else outs.push(h);
    }
    const feats = tf.reshape(tf.stack(outs, 1), [B * T, C + RW]);
    const logits = tf.add(tf.matMul(feats, p["output/kernel"] as tf.Tensor2D), p["output/bias"]!);
    return tf.reshape(logits, [B, T, outputs]);
  }

  return {
    name,
    inputShape: [inputs],
    outputs,
    batchNorm: "none",
    shape,
    init,
    sequences,
    forward: (p, x) => tf.squeeze(sequences(p, tf.expandDims(tf.reshape(x, [x.shape[0]!, inputs]), 0) as tf.Tensor3D), [0]),
  };
}

type MannConfig = { kind: "mann"; controllerSize: number; memory: boolean; memorySlots: number; memoryWidth: number; readHeads: number; usageDecay: number; leastUsed: LeastUsedRule };

export const mannSpec: ModelSpec<MannConfig> = {
  kind: "mann",
  schema: z.object({
    kind: z.literal("mann").describe("Santoro et al. 2016's memory-augmented network: an LSTM controller with an LRUA memory (or, with memory: false, the LSTM alone); for sequence tasks."),
    controllerSize: z.number().int().min(1).max(4096).default(200).describe("mann LSTM controller units (Santoro et al. §4: 200)."),
    memory: z.boolean().default(true).describe("mann with its external memory; false: the controller alone, Santoro et al.'s LSTM baseline (Table 1)."),
    memorySlots: z.number().int().min(1).max(4096).default(128).describe("mann memory rows (Santoro et al.: 128)."),
    memoryWidth: z.number().int().min(1).max(1024).default(40).describe("mann memory row width (Santoro et al.: 40)."),
    readHeads: z.number().int().min(1).max(64).default(4).describe("mann read heads, each with its own key, write gate and add vector; also n, the least-used slots per write (Santoro et al.: 4)."),
    usageDecay: z.number().min(0).max(1).default(0.99).describe("mann γ, the usage decay w^u_t = γ w^u_{t−1} + w^r_t + w^w_t (Santoro et al. §3.2: 0.99; the reference code tristandeleu/ntm-one-shot: 0.95)."),
    leastUsed: z
      .enum(["per-head", "shared"])
      .default("per-head")
      .describe("mann least-used write rule: `per-head`, head i writes to the i-th least-used slot (the reference code; the heads together cover the paper's n least used); `shared`, every head to all n (the paper's w^lu read literally)."),
  }),
  summary: "LSTM controller with an LRUA external memory, cosine reads, several read heads (Santoro et al. 2016); memory: false gives their LSTM baseline",
  fits: ["sequence"],
  mismatch: (f) => (f.inputShape.length !== 1 ? `mann takes steps of flat features; ${f.name} has inputs [${f.inputShape}]` : undefined),
  build: (o, f) => {
    if (o.memory && o.readHeads > o.memorySlots) {
      throw new InvalidRunConfigError([`model.readHeads: ${o.readHeads} read heads need at least as many memory slots (memorySlots ${o.memorySlots}); lower readHeads or raise memorySlots`]);
    }
    return mannNet({ inputs: f.inputShape[0]!, outputs: f.outputs, controllerSize: o.controllerSize, memory: o.memory, memorySlots: o.memorySlots, memoryWidth: o.memoryWidth, readHeads: o.readHeads, usageDecay: o.usageDecay, leastUsed: o.leastUsed });
  },
};
