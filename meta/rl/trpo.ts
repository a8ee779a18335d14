// TRPO as MAML-RL's outer step (Finn et al. 2017 §5.3, after Schulman et al. 2015), run by the
// coordinator: the shards hand in the mean meta-gradient g and, per task, the stage batches they
// sampled; this step solves F·x = g by conjugate gradient, where F·v is the Hessian-vector product of
// the mean KL between the adapted policies φ_i(θ₀) and φ_i(θ) (a third-order product through the
// inner step), then backtracks along x until the surrogate improves within the KL bound. Every
// candidate re-runs the data-fixed inner steps, so it costs the coordinator (CG iterations + line
// search steps) × tasks adaptation passes; the data and so the result are the same whatever the
// shard split. The rllab ConjugateGradientOptimizer's defaults are the paper's.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "../models.js";
import { LOG_STD } from "../models/gaussian-mlp.js";
import type { OuterOptimizer } from "../optimizers.js";
import { fromList, keep, names, type Params } from "../params.js";
import { adapted, type AdaptOptions } from "./adapt.js";
import { batchLogLikelihood, type PolicyBatch } from "./vpg.js";

export interface TrpoOptions {
  /** KL bound δ (maml_rl step_size 0.01). */
  maxKl: number;
  /** Conjugate-gradient iterations (rllab cg_iters 10). */
  cgIterations: number;
  /** Damping added to F·v (rllab reg_coeff 1e-5). */
  damping: number;
  /** Line-search step shrink (rllab backtrack_ratio 0.8). */
  backtrackRatio: number;
  /** Line-search tries (rllab max_backtracks 15). */
  maxBacktracks: number;
}

const STAGE_FIELDS = ["observations", "actions", "advantages", "mask"] as const;

/** Names of task j's stage-k tensors in a shard's data map. */
const stageKey = (j: number, k: number, field: (typeof STAGE_FIELDS)[number]) => `task${j}/stage${k}/${field}`;

/** A task's stage batches as named tensors (clones: the map is the caller's), for `ShardResult.data`. */
export function packStages(j: number, batches: readonly PolicyBatch[]): Params {
  const out: Params = {};
  batches.forEach((b, k) => {
    for (const f of STAGE_FIELDS) out[stageKey(j, k, f)] = b[f].clone();
  });
  return out;
}

/** Every task's stage batches from the shards' data maps in shard order (views of their tensors: not to be disposed apart from them). */
export function unpackStages(maps: readonly Params[], stages: number): PolicyBatch[][] {
  const tasks: PolicyBatch[][] = [];
  for (const m of maps) {
    for (let j = 0; m[stageKey(j, 0, "mask")]; j++) {
      const batches: PolicyBatch[] = [];
      for (let k = 0; k < stages; k++) {
        const get = (f: (typeof STAGE_FIELDS)[number]) => {
          const t = m[stageKey(j, k, f)];
          if (!t) throw new Error(`shard data lacks ${stageKey(j, k, f)}: was it written with another innerSteps?`);
          return t;
        };
        const mask = get("mask") as tf.Tensor1D;
        const steps = (mask.dataSync() as Float32Array).reduce((a, b) => a + b, 0);
        batches.push({ observations: get("observations") as tf.Tensor2D, actions: get("actions") as tf.Tensor2D, advantages: get("advantages") as tf.Tensor1D, mask, steps });
      }
      tasks.push(batches);
    }
  }
  return tasks;
}

/** Σ over every element of a·b, in float64. */
function dot(a: Params, b: Params): number {
  let s = 0;
  for (const k of names(a)) {
    const x = a[k]!.dataSync();
    const y = b[k]!.dataSync();
    for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  }
  return s;
}

/** a + s·b as new tensors. */
const axpy = (a: Params, b: Params, s: number): Params => tf.tidy(() => fromList(names(a), names(a).map((k) => tf.add(a[k]!, tf.mul(b[k]!, s)))));

const disposeMap = (p: Params | undefined) => p && tf.dispose(Object.values(p));

/**
 * Solve A·x = b for a symmetric positive-definite A given as a product, by `iterations` steps of
 * conjugate gradient from x = 0 (rllab's cg, residual tolerance 1e-10). Returns x; inputs untouched.
 */
export function conjugateGradient(av: (v: Params) => Params, b: Params, iterations: number): Params {
  let x = tf.tidy(() => fromList(names(b), names(b).map((k) => tf.zerosLike(b[k]!))));
  let r = axpy(b, b, 0);
  let p = axpy(b, b, 0);
  let rr = dot(r, r);
  for (let i = 0; i < iterations && rr >= 1e-10; i++) {
    const ap = av(p);
    const alpha = rr / dot(p, ap);
    const [x2, r2] = [axpy(x, p, alpha), axpy(r, ap, -alpha)];
    disposeMap(ap);
    disposeMap(x);
    disposeMap(r);
    [x, r] = [x2, r2];
    const rr2 = dot(r, r);
    const p2 = axpy(r, p, rr2 / rr);
    disposeMap(p);
    p = p2;
    rr = rr2;
  }
  disposeMap(r);
  disposeMap(p);
  return x;
}

/** KL(N(μ₀, σ₀²) ‖ N(μ, σ²)) per row, summed over action dimensions: Σ_d [s − s₀ + (σ₀² + (μ₀ − μ)²)/(2σ²) − ½]. */
export function gaussianKl(mean0: tf.Tensor2D, logStd0: tf.Tensor1D, mean: tf.Tensor2D, logStd: tf.Tensor1D): tf.Tensor1D {
  const num = tf.add(tf.exp(tf.mul(logStd0, 2)), tf.square(tf.sub(mean0, mean)));
  const perDim = tf.sub(tf.add(tf.sub(logStd, logStd0), tf.div(num, tf.mul(tf.exp(tf.mul(logStd, 2)), 2))), 0.5);
  return tf.sum(perDim, 1) as tf.Tensor1D;
}

const masked = (x: tf.Tensor1D, b: PolicyBatch) => tf.div(tf.sum(tf.mul(x, b.mask)), b.steps) as tf.Scalar;

/** The coordinator's TRPO step over the tasks' stages (the last stage is the post-update data). */
export function trpoStep(o: AdaptOptions & TrpoOptions, theta: Params, meanGrad: Params, tasks: readonly PolicyBatch[][]): { params: Params; kl: number; loss: number; accepted: boolean } {
  const keys = names(theta);
  const model: Model = o.model;
  const post = (b: readonly PolicyBatch[]) => b[b.length - 1]!;
  // The adapted policies at θ₀ on each task's post-update observations: fixed references.
  const old = tasks.map((b) =>
    tf.tidy(() => {
      const phi = adapted(o, theta, b.slice(0, -1));
      return keep({ mean: model.forward(phi, post(b).observations), logStd: phi[LOG_STD]!, logp: batchLogLikelihood(model, phi, post(b)) });
    }),
  );
  const meanKl = (p: Params): tf.Scalar =>
    tf.div(
      tf.addN(tasks.map((b, i) => { const phi = adapted(o, p, b.slice(0, -1)); return masked(gaussianKl(old[i]!.mean as tf.Tensor2D, old[i]!.logStd as tf.Tensor1D, model.forward(phi, post(b).observations) as tf.Tensor2D, phi[LOG_STD] as tf.Tensor1D), post(b)); })),
      tasks.length,
    ) as tf.Scalar;
  // −(1/T) Σ_i mean_valid(π_φi(θ)/π_φi(θ₀) · A): the likelihood-ratio surrogate, equal to the VPG one in value and gradient at θ₀.
  const surrogate = (p: Params): tf.Scalar =>
    tf.div(
      tf.neg(tf.addN(tasks.map((b, i) => { const phi = adapted(o, p, b.slice(0, -1)); return masked(tf.mul(tf.exp(tf.sub(batchLogLikelihood(model, phi, post(b)), old[i]!.logp!)), post(b).advantages) as tf.Tensor1D, post(b)); }))),
      tasks.length,
    ) as tf.Scalar;
  const fvp = (v: Params): Params =>
    tf.tidy(() => {
      const gradV = (...vals: tf.Tensor[]) => {
        const g = tf.grads((...inner: tf.Tensor[]) => meanKl(fromList(keys, inner)))(vals);
        return tf.addN(g.map((gk, n) => tf.sum(tf.mul(gk, v[keys[n]!]!)))) as tf.Scalar;
      };
      const hv = tf.grads(gradV)(keys.map((k) => theta[k]!));
      return fromList(keys, hv.map((h, n) => tf.add(h, tf.mul(v[keys[n]!]!, o.damping))));
    });
  const evaluate = (p: Params) => tf.tidy(() => [surrogate(p).dataSync()[0]!, meanKl(p).dataSync()[0]!] as const);
  try {
    const x = conjugateGradient(fvp, meanGrad, o.cgIterations);
    const fx = fvp(x);
    const xfx = dot(x, fx);
    disposeMap(fx);
    const step = Math.sqrt((2 * o.maxKl) / (xfx + 1e-8));
    const [lossBefore] = evaluate(theta);
    let ratio = 1;
    for (let n = 0; n < o.maxBacktracks; n++, ratio *= o.backtrackRatio) {
      const candidate = axpy(theta, x, -ratio * step);
      const [loss, kl] = evaluate(candidate);
      if (Number.isFinite(loss) && Number.isFinite(kl) && loss < lossBefore && kl <= o.maxKl) {
        disposeMap(x);
        return { params: candidate, kl, loss, accepted: true };
      }
      disposeMap(candidate);
    }
    disposeMap(x);
    // rllab: "Line search condition violated. Rejecting the step!" — the parameters stay.
    return { params: axpy(theta, theta, 0), kl: 0, loss: lossBefore, accepted: false };
  } finally {
    old.forEach((m) => tf.dispose(Object.values(m)));
  }
}

/** TRPO as an OuterOptimizer: stateless apart from the step count; it needs the shards' data. */
export function trpo(o: AdaptOptions & TrpoOptions, stages: number): OuterOptimizer {
  return {
    kind: "trpo",
    initialState: () => ({ kind: "trpo", step: 0 }),
    stepSize: () => o.maxKl,
    apply(params, sum, count, state, opts) {
      if (state.kind !== "trpo") throw new Error(`optimizer state is of kind '${state.kind}', not trpo: it was written by another learner or outer step`);
      if (!opts.shardData) throw new Error("the TRPO outer step needs the shards' trajectories (ShardResult.data); this caller passed none");
      const tasks = unpackStages(opts.shardData, stages);
      if (tasks.length !== count) throw new Error(`the shards' data holds ${tasks.length} tasks, not ${count}`);
      const meanGrad = tf.tidy(() => fromList(names(sum), names(sum).map((k) => tf.div(sum[k]!, count))));
      try {
        const r = trpoStep(o, params, meanGrad, tasks);
        return { params: r.params, state: { kind: "trpo", step: state.step + 1 } };
      } finally {
        disposeMap(meanGrad);
      }
    },
  };
}
