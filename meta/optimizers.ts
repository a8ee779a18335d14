// Outer-loop updates with state that serializes to bytes: the interface every learner's outer step
// implements, and Adam (Kingma & Ba 2015, Alg. 1), which most learners use on their meta-gradients.
// Schedules (Reptile's annealed ε) belong to the learner that defines them.
import * as tf from "@tensorflow/tfjs";
import { decodeArrays, encodeArrays, fromList, names, sumSquares, type Params } from "./params.js";

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
  /**
   * Gradient-norm clipping of the mean gradient, before the moments see it: each group's L2 norm
   * is capped at `max` (PyTorch's clip_grad_norm_: scaled by max / (norm + 1e-6) when that is below
   * 1). `groups` are parameter-name prefixes clipped separately (a parameter in the first that
   * matches; the rest form one more group); none: one norm over all. Default none. It acts on the
   * coordinator's sum of every shard, so results never depend on how the meta-batch was split.
   */
  clipNorm?: { max: number; groups?: readonly string[] };
}

/** What an outer step is given besides the shard sums. */
export interface OuterStepOptions {
  metaLr: number;
  /**
   * Each shard's `ShardResult.data`, in shard order, for outer steps that need more than a sum
   * (MAML-RL's TRPO reads the tasks' trajectories); absent for learners whose shards return none.
   */
  shardData?: readonly Params[];
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
  apply(params: Params, sum: Params, count: number, state: OuterState, opts: OuterStepOptions): { params: Params; state: OuterState };
  /** The step size the next `apply` would use at `state` (for logs and metrics). */
  stepSize(state: OuterState, metaLr: number): number;
}

/**
 * The factor clipping multiplies each parameter's mean gradient `sum / count` by:
 * min(1, max / (‖group‖₂ + 1e-6)) for the group the parameter is in, as PyTorch's clip_grad_norm_.
 */
export function clipFactors(sum: Params, count: number, clip: NonNullable<AdamOptions["clipNorm"]>): Map<string, number> {
  const prefixes = clip.groups ?? [];
  const groups = new Map<number, string[]>();
  for (const name of names(sum)) {
    const g = prefixes.findIndex((prefix) => name.startsWith(prefix));
    groups.set(g, [...(groups.get(g) ?? []), name]);
  }
  const out = new Map<string, number>();
  for (const keys of groups.values()) {
    const norm = Math.sqrt(tf.tidy(() => sumSquares(fromList(keys, keys.map((k) => tf.div(sum[k]!, count))))));
    for (const k of keys) out.set(k, Math.min(1, clip.max / (norm + 1e-6)));
  }
  return out;
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
      const clip = o.clipNorm ? clipFactors(sum, count, o.clipNorm) : undefined;
      for (const name of names(params)) {
        const prev = byName.get(name);
        if (!prev) throw new Error(`Adam state has no moments for parameter '${name}'`);
        const r = tf.tidy(() => {
          const mean = tf.div(sum[name]!, count);
          const g = clip ? tf.mul(mean, clip.get(name)!) : mean;
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
