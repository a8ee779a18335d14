// Outer-loop updates with state that serializes to bytes: the interface every learner's outer step
// implements, and Adam (Kingma & Ba 2015, Alg. 1), which most learners use on their meta-gradients.
// Schedules (Reptile's annealed ε) belong to the learner that defines them.
import * as tf from "@tensorflow/tfjs";
import { decodeArrays, encodeArrays, names, type Params } from "./params.js";

/** What an outer optimizer carries between meta-iterations, as plain data. */
export interface OuterState {
  /** Which optimizer wrote it, e.g. `adam`, `reptile`: a learner refuses state of another kind. */
  kind: string;
  /** Outer steps taken so far. */
  step: number;
  /** Adam moments as flat arrays (absent for stateless updates such as Reptile's). */
  moments?: { name: string; shape: number[]; m: Float32Array; v: Float32Array }[];
}

export interface AdamOptions {
  /** Step decay: the rate is multiplied by `factor` every `every` outer steps (Snell et al.: ½ every 2,000). Default none. */
  decay?: { every: number; factor: number };
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  epsilon?: number;
}

/**
 * One outer step. `sum` is the sum over `count` tasks of what each contributed (meta-gradients,
 * deltas); the step uses their mean. `metaLr` is the run's base rate (the config's, or one set by
 * `setMetaLr`); a schedule, if any, is the optimizer's own. Returns new parameters and state;
 * inputs are left untouched (the caller disposes).
 */
export interface OuterOptimizer {
  readonly kind: string;
  initialState(params: Params): OuterState;
  apply(params: Params, sum: Params, count: number, state: OuterState, opts: { metaLr: number }): { params: Params; state: OuterState };
  /** The step size the next `apply` would use at `state` (for logs and metrics). */
  stepSize(state: OuterState, metaLr: number): number;
}

export function adam(o: AdamOptions = {}): OuterOptimizer {
  const b1 = o.beta1 ?? 0.9;
  const b2 = o.beta2 ?? 0.999;
  const eps = o.epsilon ?? 1e-8;
  const rate = (state: OuterState, metaLr: number): number =>
    o.decay && o.decay.every > 0 ? metaLr * o.decay.factor ** Math.floor(state.step / o.decay.every) : metaLr;
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
    stepSize: rate,
    apply(params, sum, count, state, { metaLr }) {
      const lr = rate(state, metaLr);
      if (state.kind !== "adam") throw new Error(`optimizer state is of kind '${state.kind}', not adam: it was written by another learner`);
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
  const { kind, step } = meta as { kind: unknown; step: unknown };
  if (typeof kind !== "string" || typeof step !== "number") throw new Error("optimizer state blob has no kind and step");
  if (tensors.length === 0) return { kind, step };
  const moments: NonNullable<OuterState["moments"]> = [];
  for (let i = 0; i < tensors.length; i += 2) {
    const m = tensors[i]!;
    const v = tensors[i + 1]!;
    moments.push({ name: m.name.slice(2), shape: m.shape, m: m.data, v: v.data });
  }
  return { kind, step, moments };
}
