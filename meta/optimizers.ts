// Outer-loop updates with state that serializes to bytes: Adam for (FO)MAML (Kingma & Ba 2015,
// Alg. 1) and Reptile's interpolation θ ← θ + ε·mean(φ − θ) with ε linearly annealed to 0
// (Nichol et al. 2018, Alg. 2 and §6).
import * as tf from "@tensorflow/tfjs";
import { decodeArrays, encodeArrays, names, type Params } from "./params.js";

/** What an outer optimizer carries between meta-iterations, as plain data. */
export interface OuterState {
  kind: "adam" | "reptile";
  /** Outer steps taken so far. */
  step: number;
  /** Adam moments as flat arrays (absent for Reptile). */
  moments?: { name: string; shape: number[]; m: Float32Array; v: Float32Array }[];
}

export interface AdamOptions {
  /** Meta learning rate β (MAML paper: 1e-3). */
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  epsilon?: number;
}

export interface ReptileOuterOptions {
  /** Initial meta step size ε₀ (Reptile paper, Omniglot: 1.0). */
  metaLr: number;
  /** Total outer iterations T; ε_t = ε₀ · (1 − t/T). */
  totalIterations: number;
  /** Anneal linearly to zero (default true), else keep ε₀ throughout. */
  anneal?: boolean;
}

/**
 * One outer step. `sum` is the sum over `count` tasks of meta-gradients or deltas; the step uses
 * their mean. Returns new parameters and state; inputs are left untouched (the caller disposes).
 */
export interface OuterOptimizer {
  readonly kind: OuterState["kind"];
  initialState(params: Params): OuterState;
  apply(params: Params, sum: Params, count: number, state: OuterState, opts?: { lr?: number }): { params: Params; state: OuterState };
}

export function adam(o: AdamOptions): OuterOptimizer {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  const eps = o.epsilon ?? 1e-8;
  return {
    kind: "adam",
    initialState(params) {
      return {
        kind: "adam",
        step: 0,
        moments: names(params).map((name) => {
          const p = params[name]!;
          return { name, shape: [...p.shape], m: new Float32Array(p.size), v: new Float32Array(p.size) };
        }),
      };
    },
    apply(params, sum, count, state, opts = {}) {
      const lr = opts.lr ?? o.lr;
      const t = state.step + 1;
      const byName = new Map((state.moments ?? []).map((m) => [m.name, m]));
      const out: Params = {};
      const moments: NonNullable<OuterState["moments"]> = [];
      // Bias corrections as float64 scalars folded into one step size (Kingma & Ba, end of §2).
      const stepSize = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
      for (const name of names(params)) {
        const prev = byName.get(name);
        if (!prev) throw new Error(`Adam state has no moments for parameter '${name}'`);
        const r = tf.tidy(() => {
          const g = tf.div(sum[name]!, count);
          const m = tf.add(tf.mul(tf.tensor(prev.m, prev.shape), b1), tf.mul(g, 1 - b1));
          const v = tf.add(tf.mul(tf.tensor(prev.v, prev.shape), b2), tf.mul(tf.square(g), 1 - b2));
          const p = tf.sub(params[name]!, tf.mul(tf.div(m, tf.add(tf.sqrt(v), eps)), stepSize));
          return { p, m, v };
        });
        out[name] = r.p;
        moments.push({ name, shape: prev.shape, m: r.m.dataSync() as Float32Array, v: r.v.dataSync() as Float32Array });
        r.m.dispose();
        r.v.dispose();
      }
      return { params: out, state: { kind: "adam", step: t, moments } };
    },
  };
}

/** ε_t for Reptile's outer step at 0-based iteration t. */
export function reptileStepSize(o: ReptileOuterOptions, t: number): number {
  if (o.anneal === false) return o.metaLr;
  return o.metaLr * Math.max(0, 1 - t / o.totalIterations);
}

export function reptileOuter(o: ReptileOuterOptions): OuterOptimizer {
  return {
    kind: "reptile",
    initialState: () => ({ kind: "reptile", step: 0 }),
    apply(params, sum, count, state, opts = {}) {
      const eps = opts.lr ?? reptileStepSize(o, state.step);
      const out: Params = {};
      for (const name of names(params)) {
        out[name] = tf.tidy(() => tf.add(params[name]!, tf.mul(tf.div(sum[name]!, count), eps)));
      }
      return { params: out, state: { kind: "reptile", step: state.step + 1 } };
    },
  };
}

/** State to bytes, in the checksummed tensor-blob format of params.ts. */
export function serializeState(s: OuterState): Uint8Array {
  const entries = (s.moments ?? []).flatMap((m) => [
    { name: `m/${m.name}`, shape: m.shape, data: m.m },
    { name: `v/${m.name}`, shape: m.shape, data: m.v },
  ]);
  return encodeArrays(entries, { kind: s.kind, step: s.step });
}

/** Inverse of serializeState; throws CorruptBlobError on a bad checksum. */
export function deserializeState(bytes: Uint8Array): OuterState {
  const { tensors, meta } = decodeArrays(bytes);
  const { kind, step } = meta as { kind: OuterState["kind"]; step: number };
  if (kind !== "adam" && kind !== "reptile") throw new Error(`unknown optimizer state kind '${String(kind)}'`);
  if (kind === "reptile") return { kind, step };
  const moments: NonNullable<OuterState["moments"]> = [];
  for (let i = 0; i < tensors.length; i += 2) {
    const m = tensors[i]!;
    const v = tensors[i + 1]!;
    moments.push({ name: m.name.slice(2), shape: m.shape, m: m.data, v: v.data });
  }
  return { kind, step, moments };
}
