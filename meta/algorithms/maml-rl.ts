// MAML for reinforcement learning (Finn et al. 2017, §5.3 and Alg. 3): each task (a goal of an
// environment) samples trajectories with the policy θ, takes innerSteps vanilla-policy-gradient
// steps (one per fresh batch), samples with the adapted policy φ, and contributes ∇θ of the VPG
// surrogate on that post-update batch through the inner steps (second order; the data is held
// fixed, as the reference code's estimator). The outer step is TRPO on the coordinator (the paper's,
// meta/rl/trpo.ts) or Adam on the mean meta-gradient (`outer: vpg-adam`, simpler, not the paper's).
// Reported losses are negative average returns.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { meanCI, type EvaluationResult } from "../evaluate.js";
import { registerHigherOrderGradients } from "../gradients.js";
import { adam } from "../optimizers.js";
import { dispose, fromList, names, type Params } from "../params.js";
import { adapted, rolloutStages, type AdaptOptions } from "../rl/adapt.js";
import { packStages, trpo } from "../rl/trpo.js";
import { disposeBatch, vpgSurrogate } from "../rl/vpg.js";
import type { TaskMetrics } from "./types.js";
import { defineLearner, type LearnerSetup } from "./learner.js";

const options = z.object({
  trajectories: z.number().int().min(2).max(10000).default(20).describe("Trajectories sampled per task and stage (maml_rl fast_batch_size: 20)."),
  discount: z.number().min(0).max(1).default(0.99).describe("γ of returns and of the linear feature baseline (maml_rl: 0.99)."),
  outer: z.enum(["trpo", "vpg-adam"]).default("trpo").describe("Outer step: trpo (the paper's, on the coordinator: conjugate gradient on KL Fisher-vector products + line search) or vpg-adam (Adam at metaLr on the mean meta-gradient: simpler, not the paper's)."),
  maxKl: z.number().positive().max(10).default(0.01).describe("TRPO's KL bound δ (maml_rl step_size: 0.01)."),
  cgIterations: z.number().int().min(1).max(100).default(10).describe("TRPO's conjugate-gradient iterations (rllab: 10)."),
  cgDamping: z.number().min(0).max(1).default(1e-5).describe("Damping added to TRPO's Fisher-vector products (rllab reg_coeff: 1e-5)."),
  backtrackRatio: z.number().gt(0).lt(1).default(0.8).describe("TRPO line-search shrink factor (rllab: 0.8)."),
  maxBacktracks: z.number().int().min(1).max(100).default(15).describe("TRPO line-search tries (rllab: 15)."),
});
type Options = z.infer<typeof options>;

function adaptOptions(s: LearnerSetup<Options>, innerLr = s.config.innerLr): AdaptOptions {
  const env = s.train.env;
  if (!env) throw new Error(`maml-rl needs an environment task family; ${s.train.name} has none`);
  return { model: s.model, env, trajectories: s.hyper.trajectories, discount: s.hyper.discount, innerLr };
}

const metricsOf = (returns: readonly number[]): TaskMetrics => ({ preLoss: -returns[0]!, postLoss: -returns[returns.length - 1]! });

export const mamlRl = defineLearner<Options>({
  name: "maml-rl",
  title: "MAML for RL (Finn et al. 2017, §5.3)",
  summary: "second-order meta-gradient of the post-update VPG surrogate through innerSteps policy-gradient steps on sampled rollouts; TRPO (or Adam) on the coordinator; loss = −average return",
  options,
  needs: { secondOrder: true, taskKinds: ["rl"], taskBatching: false, modelKinds: ["gaussian-mlp"] },
  stateLayout: "model+rl-outer",
  pins: ["outer"],
  init: (s, seed) => s.model.init(seed),
  outer: (s) =>
    s.hyper.outer === "trpo"
      ? trpo({ ...adaptOptions(s), maxKl: s.hyper.maxKl, cgIterations: s.hyper.cgIterations, damping: s.hyper.cgDamping, backtrackRatio: s.hyper.backtrackRatio, maxBacktracks: s.hyper.maxBacktracks }, s.config.innerSteps + 1)
      : adam(),
  shardRunner(s) {
    // exp (the Gaussian's σ) and relu lie on the second-order path (idempotent).
    registerHigherOrderGradients();
    const o = adaptOptions(s);
    const K = s.config.innerSteps;
    const keepData = s.hyper.outer === "trpo";
    return {
      batched: false,
      async runShard(theta, tasks, hooks = {}) {
        if (tasks.length === 0) throw new Error("runShard: a shard needs at least one task");
        const keys = names(theta);
        let sum: Params | undefined;
        let data: Params = {};
        const metrics: TaskMetrics[] = [];
        try {
          for (const [j, task] of tasks.entries()) {
            const stages = rolloutStages(o, theta, task, K, (k) => hooks.onInnerStep?.(j, k));
            try {
              const g = tf.tidy(() => {
                const f = (...vals: tf.Tensor[]) => vpgSurrogate(o.model, adapted(o, fromList(keys, vals), stages.batches.slice(0, K)), stages.batches[K]!);
                return fromList(keys, tf.grads(f)(keys.map((k) => theta[k]!)));
              });
              if (sum === undefined) sum = g;
              else {
                const prev: Params = sum;
                sum = tf.tidy(() => fromList(keys, keys.map((k) => tf.add(prev[k]!, g[k]!))));
                dispose(prev, g);
              }
              if (keepData) data = { ...data, ...packStages(j, stages.batches) };
            } finally {
              stages.batches.forEach(disposeBatch);
            }
            metrics.push(metricsOf(stages.returns));
            await hooks.afterTask?.(metrics.length);
          }
        } catch (e) {
          dispose(sum, data);
          throw e;
        }
        return { sum: sum!, metrics, ...(keepData ? { data } : {}) };
      },
    };
  },
  async evaluate(s, params, o): Promise<EvaluationResult> {
    // Each test goal: sample, step, sample, … (maml_rl's test: the return of the policy after k steps).
    const ao = adaptOptions(s);
    const total = o.tasks ?? 40;
    const maxStep = Math.max(...o.steps);
    const byStep = o.steps.map(() => [] as number[]);
    for (let i = 0; i < total; i++) {
      const stages = rolloutStages(ao, params, s.test.task(o.seed, o.split ?? "test", 0, i), maxStep);
      stages.batches.forEach(disposeBatch);
      o.steps.forEach((k, n) => byStep[n]!.push(-stages.returns[k]!));
      o.onTask?.(i + 1, total);
    }
    return { family: s.test.name, model: s.model.name, split: o.split ?? "test", batchNorm: "none", results: o.steps.map((steps, n) => ({ steps, loss: meanCI(byStep[n]!) })) };
  },
  presets: [
    {
      name: "point-2d-maml-rl-small",
      description: "2-D navigation, MAML-RL with TRPO, a small 32-32 policy (a quick look; CI's preset run)",
      source: "Finn et al. 2017, §5.3 scaled down: 32-32 policy, 10 trajectories, meta-batch 10, 5 conjugate-gradient iterations (paper: 100-100, 20, 20, 10)",
      config: { algorithm: "maml-rl", "maml-rl": { trajectories: 10, cgIterations: 5 }, task: { family: "point-2d", actionScale: 0.1 }, model: { kind: "gaussian-mlp", hidden: [32, 32] }, innerSteps: 1, innerLr: 0.1, metaBatchSize: 10, shardSize: 5, iterations: 50, evalSteps: 1, evalTasks: 40, evalEvery: 10, checkpointEvery: 10 },
    },
    {
      name: "point-2d-maml-rl",
      description: "2-D navigation, MAML-RL with TRPO, Gaussian MLP 100-100",
      source: "Finn et al. 2017, §5.3 and cbfinn/maml_rl maml_trpo_point.py: 20 trajectories, horizon 100, one VPG step α = 0.1 (LEARNERS.md; the authors' script runs 0.5), meta-batch 20, TRPO δ = 0.01, rllab normalize() action scale 0.1; Table 4 evaluates 40 goals (paper: −40.41 → −11.68 → −3.33 → −3.23 after 0–3 steps)",
      config: { algorithm: "maml-rl", task: { family: "point-2d", actionScale: 0.1 }, model: { kind: "gaussian-mlp" }, innerSteps: 1, innerLr: 0.1, metaBatchSize: 20, shardSize: 5, iterations: 100, evalSteps: 1, evalTasks: 40, evalEvery: 10, checkpointEvery: 10 },
    },
    {
      name: "point-2d-maml-rl-vpg",
      description: "2-D navigation, MAML-RL with an Adam outer step (first-order-in-the-outer simplification)",
      source: "Finn et al. 2017, §5.3 setup with the TRPO outer step replaced by Adam at metaLr 0.01 on the mean meta-gradient (not the paper's)",
      config: { algorithm: "maml-rl", "maml-rl": { outer: "vpg-adam" }, task: { family: "point-2d", actionScale: 0.1 }, model: { kind: "gaussian-mlp" }, innerSteps: 1, innerLr: 0.1, metaLr: 0.01, metaBatchSize: 20, shardSize: 5, iterations: 100, evalSteps: 1, evalTasks: 40, evalEvery: 10, checkpointEvery: 10 },
    },
  ],
});
