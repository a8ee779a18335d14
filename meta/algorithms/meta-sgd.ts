// Meta-SGD (Li et al. 2017): a learned step size per parameter, θ′ = θ − α ⊙ ∇L_support(θ); each task
// contributes the gradients of its query loss with respect to θ and α; Adam updates both.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, type AdaptAndMeasure } from "../evaluate.js";
import { registerHigherOrderGradients } from "../gradients.js";
import { adam } from "../optimizers.js";
import { fromList, names, type Params } from "../params.js";
import { deriveSeed, Rng } from "../rng.js";
import { abortableSteps, queryLoss, supportLoss, taskMetrics, type Episode, type EpisodeFn, type QueryReadout } from "./episodes.js";
import { defineLearner, LEARNER_PARAM_PREFIX, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  firstOrder: z
    .boolean()
    .default(false)
    .describe("Drop the second-order terms of the θ-gradient (the α-gradient of one step needs none: ∂L_q/∂α = −∇L_q(θ′) ⊙ ∇L_s(θ) exactly)."),
  alphaInit: z.enum(["innerLr", "uniform"]).default("innerLr").describe("α's initial value: `innerLr` everywhere, or uniform in [alphaLow, alphaHigh] (the paper: [0.005, 0.1])."),
  alphaLow: z.number().positive().default(0.005).describe("Lower end of α's uniform initialisation."),
  alphaHigh: z.number().positive().default(0.1).describe("Upper end of α's uniform initialisation."),
});
export type MetaSgdOptions = z.infer<typeof options>;

/** Name of the step size belonging to parameter `k`. */
export const alphaKey = (k: string): string => `${LEARNER_PARAM_PREFIX}lr/${k}`;

/** The model's parameter names of a meta-parameter map (the ones with a step size). */
const thetaKeys = (p: Params): string[] => names(p).filter((k) => !k.startsWith(LEARNER_PARAM_PREFIX));

/** One Meta-SGD step φ ← φ − α ⊙ ∇L(φ) (Li et al. eq. 1) over the model's parameters. */
function step(keys: readonly string[], phi: Params, alpha: Params, lossOf: (p: Params) => tf.Scalar): { next: Params; grad: Params } {
  const g = tf.grads((...vals: tf.Tensor[]) => lossOf(fromList(keys, vals)))(keys.map((k) => phi[k]!));
  const next: Params = {};
  keys.forEach((k, i) => (next[k] = tf.sub(phi[k]!, tf.mul(alpha[alphaKey(k)]!, g[i]!))));
  return { next, grad: fromList(keys, g) };
}

export function metaSgdEpisode(innerSteps: number, firstOrder: boolean): EpisodeFn {
  return (e, meta, firstTask, hooks) => {
    const all = names(meta);
    const keys = thetaKeys(meta);
    const steps = abortableSteps(hooks, firstTask);
    const pre: QueryReadout = { loss: [], accuracy: [] };
    const post: QueryReadout = { loss: [], accuracy: [] };
    queryLoss(e, e.expand(meta), pre);
    let result: Params;
    if (!firstOrder) {
      // Differentiate the query loss through every step with respect to θ and α together.
      const f = (...vals: tf.Tensor[]) => {
        const m = e.expand(fromList(all, vals));
        let phi: Params = fromList(keys, keys.map((k) => m[k]!));
        for (let i = 0; i < innerSteps; i++) {
          phi = step(keys, phi, m, supportLoss(e)).next;
          if (!steps.step(i)) break;
        }
        return queryLoss(e, phi, post);
      };
      result = fromList(all, tf.grads(f)(all.map((k) => meta[k]!)));
      steps.rethrow();
    } else {
      const m = e.expand(meta);
      let phi: Params = fromList(keys, keys.map((k) => m[k]!));
      const supportGrads: Params[] = [];
      for (let i = 0; i < innerSteps; i++) {
        const s = step(keys, phi, m, supportLoss(e));
        supportGrads.push(s.grad);
        phi = s.next;
        if (!steps.step(i)) steps.rethrow();
      }
      const gq = fromList(keys, tf.grads((...vals: tf.Tensor[]) => queryLoss(e, fromList(keys, vals), post))(keys.map((k) => phi[k]!)));
      // θ: the query gradient at φ (Jacobians of the steps taken as identity). α: each step i
      // moved φ by −α ⊙ g_i, so ∂L_q/∂α ≈ −Σ_i ∇L_q(φ) ⊙ g_i (exact for one step).
      const out: Params = {};
      for (const k of keys) {
        out[k] = gq[k]!;
        let ga = tf.neg(tf.mul(gq[k]!, supportGrads[0]![k]!));
        for (let i = 1; i < supportGrads.length; i++) ga = tf.sub(ga, tf.mul(gq[k]!, supportGrads[i]![k]!));
        out[alphaKey(k)] = ga;
      }
      result = e.reduce(fromList(all, all.map((k) => out[k]!)));
    }
    return { result, metrics: taskMetrics(e, pre, post) };
  };
}

/** Test time: evalSteps steps φ ← φ − α ⊙ ∇L_support(φ) with the learned α. */
function metaSgdAdaptation(): AdaptAndMeasure {
  return (e: Episode, meta, wanted, record) => {
    const m = e.expand(meta);
    const keys = thetaKeys(meta);
    let phi: Params = fromList(keys, keys.map((k) => m[k]!));
    const maxSteps = wanted[wanted.length - 1] ?? 0;
    for (let i = 0; i <= maxSteps; i++) {
      if (wanted.includes(i)) record(i, e.forward(phi, e.query.x));
      if (i === maxSteps) break;
      phi = step(keys, phi, m, supportLoss(e)).next;
    }
  };
}

/** θ from the model, α = innerLr (learn2learn's MetaSGD default) or U[alphaLow, alphaHigh] (the paper). */
function init(s: LearnerSetup<MetaSgdOptions>, seed: number): Params {
  const theta = s.model.init(seed);
  const rng = new Rng(deriveSeed(seed, 0x5d5d));
  const out: Params = { ...theta };
  for (const k of names(theta)) {
    const shape = theta[k]!.shape;
    if (s.hyper.alphaInit === "innerLr") out[alphaKey(k)] = tf.fill(shape, s.config.innerLr);
    else {
      const data = new Float32Array(theta[k]!.size);
      for (let i = 0; i < data.length; i++) data[i] = rng.uniform(s.hyper.alphaLow, s.hyper.alphaHigh);
      out[alphaKey(k)] = tf.tensor(data, shape, "float32");
    }
  }
  return out;
}

export const metaSgd = defineLearner<MetaSgdOptions>({
  name: "meta-sgd",
  title: "Meta-SGD (Li et al. 2017)",
  summary: "gradients of the query loss after innerSteps steps θ − α ⊙ ∇L with learned per-parameter α, for θ and α; Adam (metaLr) on both",
  options,
  needs: { secondOrder: true, taskKinds: ["regression", "classification"], taskBatching: true },
  stateLayout: "model+alpha+adam",
  pins: [],
  init,
  outer: () => adam(),
  shardRunner(s) {
    if (!s.hyper.firstOrder) registerHigherOrderGradients();
    return episodeRunner(s, metaSgdEpisode(s.config.innerSteps, s.hyper.firstOrder), true);
  },
  // The MAML family's test-time loop, with the learned α in place of a fixed step size.
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, metaSgdAdaptation()),
  presets: [
    {
      name: "sinusoid-meta-sgd",
      description: "Sinusoid regression, Meta-SGD, 1-40-40-1 MLP",
      source: "Li et al. 2017, §4.1: one inner step with learned α initialised U[0.005, 0.1], K = 10, meta-batch 25 (as MAML), Adam 1e-3",
      config: { algorithm: "meta-sgd", task: { family: "sinusoid", shots: 10, queryShots: 10 }, model: { kind: "sinusoid-mlp" }, innerSteps: 1, innerLr: 0.01, metaLr: 0.001, metaBatchSize: 25, shardSize: 5, iterations: 1000, evalSteps: 1, evalTasks: 600, "meta-sgd": { alphaInit: "uniform" } },
    },
    {
      name: "omniglot-5w1s-meta-sgd-conv4",
      description: "Omniglot 5-way 1-shot, Meta-SGD, Conv4 (stride 2, batch norm)",
      source: "Li et al. 2017, §4.2: MAML's Omniglot Conv4, one inner step with learned α initialised U[0.005, 0.1], Adam 1e-3, meta-batch 32 (paper: 99.53 ± 0.26% [secondary])",
      config: { algorithm: "meta-sgd", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 4, iterations: 60000, evalSteps: 1, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100, "meta-sgd": { alphaInit: "uniform" } },
    },
    {
      name: "omniglot-5w1s-meta-sgd-mlp",
      description: "Omniglot 5-way 1-shot, Meta-SGD, MLP 784-256-128-64-64-5 with batch norm",
      source: "Li et al. 2017 on MAML's Omniglot MLP (not a configuration the paper reports): one inner step, α initialised to MAML's 0.4, Adam 1e-3, meta-batch 32",
      config: { algorithm: "meta-sgd", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "omniglot-mlp", batchNorm: true }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 8, iterations: 60000, evalSteps: 1, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
  ],
});

