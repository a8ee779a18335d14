// One task of MAML for RL (Finn et al. 2017, §5.3, Alg. 3): sample trajectories with the current
// policy, take a vanilla-policy-gradient step on them, sample again with the adapted policy — the
// stages whose data the meta-objective and evaluation use. Shared by the learner's shard, its TRPO
// outer step (which re-runs the data-fixed inner steps) and its evaluation.
import * as tf from "@tensorflow/tfjs";
import { sgdStep } from "../algorithms/episodes.js";
import type { Environment } from "../envs/types.js";
import type { Model } from "../models.js";
import { keep, names, type Params } from "../params.js";
import { deriveSeed } from "../rng.js";
import type { Task } from "../tasks/types.js";
import { advantages, averageReturn } from "./baseline.js";
import { rollout } from "./rollouts.js";
import { disposeBatch, policyBatch, samplingPolicy, vpgSurrogate, type PolicyBatch } from "./vpg.js";

export interface AdaptOptions {
  model: Model;
  env: Environment;
  /** Trajectories per stage (maml_rl's fast_batch_size: 20). */
  trajectories: number;
  /** γ of the returns and baseline. */
  discount: number;
  innerLr: number;
}

/** θ − α·∇θ L_vpg(θ; batch): one inner step, differentiable when called inside a gradient. */
export function innerStep(o: AdaptOptions, theta: Params, batch: PolicyBatch): Params {
  return sgdStep(names(theta), theta, (p) => vpgSurrogate(o.model, p, batch), o.innerLr);
}

/** φ_K(θ) from fixed stage batches 0..K−1 (the data does not depend on θ: the reference's estimator). */
export function adapted(o: AdaptOptions, theta: Params, batches: readonly PolicyBatch[]): Params {
  let phi = theta;
  for (const b of batches) phi = innerStep(o, phi, b);
  return phi;
}

/** The stages of one task: stage k's trajectories are sampled with φ_k, stage k+1's after a step on them. */
export interface Stages {
  /** K + 1 batches (advantages from each stage's own baseline); the caller disposes them. */
  batches: PolicyBatch[];
  /** Average undiscounted return of each stage. */
  returns: number[];
}

/**
 * Roll out stage 0 with θ, then `steps` times: one inner step on the last stage's batch and a new
 * rollout with the adapted policy. Stage k draws its noise from deriveSeed(task.seed, k), so a
 * retried task samples the same actions. `afterStep(k)` runs after inner step k (heartbeats;
 * throwing aborts, with everything released).
 */
export function rolloutStages(o: AdaptOptions, theta: Params, task: Task, steps: number, afterStep?: (k: number) => void): Stages {
  const goal = task.goal;
  if (!goal) throw new Error("rolloutStages: the task has no goal (an rl task family makes them)");
  const batches: PolicyBatch[] = [];
  const returns: number[] = [];
  let phi: Params | undefined;
  try {
    for (let k = 0; k <= steps; k++) {
      const tr = rollout(o.env, samplingPolicy(o.model, phi ?? theta), goal, o.trajectories, deriveSeed(task.seed, k));
      returns.push(averageReturn(tr));
      batches.push(policyBatch(tr, advantages(tr, { discount: o.discount })));
      if (k === steps) break;
      const prev = phi;
      phi = tf.tidy(() => keep(innerStep(o, prev ?? theta, batches[k]!)));
      if (prev) tf.dispose(Object.values(prev));
      afterStep?.(k);
    }
    return { batches, returns };
  } catch (e) {
    batches.forEach(disposeBatch);
    throw e;
  } finally {
    if (phi) tf.dispose(Object.values(phi));
  }
}
