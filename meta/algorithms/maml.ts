// MAML (Finn et al. 2017, Alg. 2): each task contributes the gradient of its query loss through k
// SGD steps on its support set — the true second-order meta-gradient; Adam applies their mean.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { registerHigherOrderGradients } from "../gradients.js";
import { evaluate } from "../evaluate.js";
import { adam } from "../optimizers.js";
import { fromList, names } from "../params.js";
import { abortableSteps, canBatch, queryLoss, runEpisodes, taskMetrics, type EpisodeFn, type QueryReadout } from "./episodes.js";
import { defineLearner, type LearnerSetup, type ShardRunner } from "./learner.js";

/**
 * One episode of MAML: `firstOrder` false differentiates the query loss through all k inner steps
 * (Finn et al. eq. 1 inside the outer gradient); true takes the query gradient at the adapted
 * parameters instead (§5.2's first-order approximation).
 */
export function mamlEpisode(innerSteps: number, innerLr: number, firstOrder: boolean): EpisodeFn {
  return (e, theta, firstTask, hooks) => {
    const keys = names(theta);
    const steps = abortableSteps(hooks, firstTask);
    const pre: QueryReadout = { loss: [], accuracy: [] };
    const post: QueryReadout = { loss: [], accuracy: [] };
    const thetaE = e.expand(theta);
    let result;
    if (!firstOrder) {
      const f = (...vals: tf.Tensor[]) => {
        let phi = e.expand(fromList(keys, vals));
        for (let i = 0; i < innerSteps; i++) {
          phi = e.step(keys, phi, innerLr);
          if (!steps.step(i)) break;
        }
        return queryLoss(e, phi, post);
      };
      result = fromList(keys, tf.grads(f)(keys.map((k) => theta[k]!)));
      steps.rethrow();
    } else {
      let phi = thetaE;
      for (let i = 0; i < innerSteps; i++) {
        phi = e.step(keys, phi, innerLr);
        if (!steps.step(i)) steps.rethrow();
      }
      const gq = tf.grads((...vals: tf.Tensor[]) => queryLoss(e, { ...phi, ...fromList(keys, vals) }, post))(keys.map((k) => phi[k]!));
      result = e.reduce(fromList(keys, gq));
    }
    // The "before" readout comes last: a factored episode reuses the query product its tape made
    // (factored-episode.ts); one made first, outside the tape, could not serve the gradient.
    queryLoss(e, thetaE, pre);
    return { result, metrics: taskMetrics(e, pre, post) };
  };
}

/**
 * A shard runner over an episode function, batched over tasks where the model and config allow.
 * `factorInput`: `fn` adapts only by the episode's own SGD step (`e.step`), so batched episodes may
 * keep the input kernel factored (meta/algorithms/factored-episode.ts).
 */
export function episodeRunner(s: LearnerSetup, fn: EpisodeFn, learnerBatches: boolean, o: { factorInput?: boolean } = {}): ShardRunner {
  const batched = canBatch(s.model, s.config.batchTasks, learnerBatches);
  return { batched, runShard: (theta, tasks, hooks) => runEpisodes(theta, tasks, { model: s.model, kind: s.train.kind, batched, classes: s.train.outputs, factorInput: o.factorInput }, fn, hooks) };
}

export const maml = defineLearner({
  name: "maml",
  title: "MAML (Finn et al. 2017)",
  summary: "second-order meta-gradient through innerSteps SGD steps of size innerLr; Adam (metaLr) on the mean",
  options: z.object({}),
  needs: { secondOrder: true, taskKinds: ["regression", "classification"], taskBatching: true },
  stateLayout: "model+adam",
  pins: [],
  init: (s, seed) => s.model.init(seed),
  outer: () => adam(),
  shardRunner(s) {
    // Second order through conv, pooling and softmax needs gradients tfjs lacks (idempotent).
    registerHigherOrderGradients();
    return episodeRunner(s, mamlEpisode(s.config.innerSteps, s.config.innerLr, false), true, { factorInput: true });
  },
  evaluate: (s, params, o) => evaluate(s.model, s.test, params, { ...o, innerLr: s.config.innerLr }),
  presets: [
    {
      name: "sinusoid-maml",
      description: "Sinusoid regression, MAML, 1-40-40-1 MLP",
      source: "Finn et al. 2017, §5.1: K = 10, one inner step α = 0.01, meta-batch 25, Adam β = 1e-3 (paper: 70k iterations)",
      config: { algorithm: "maml", task: { family: "sinusoid", shots: 10, queryShots: 10 }, model: { kind: "sinusoid-mlp" }, innerSteps: 1, innerLr: 0.01, metaLr: 0.001, metaBatchSize: 25, shardSize: 5, iterations: 1000, evalSteps: 10, evalTasks: 600 },
    },
    {
      name: "omniglot-5w1s-maml-mlp",
      description: "Omniglot 5-way 1-shot, MAML, MLP 784-256-128-64-64-5 with batch norm",
      source: "Finn et al. 2017, §5.2 and appendix A.1: one inner step α = 0.4, meta-batch 32, Adam 1e-3, 3 steps at test (paper: 89.7 ± 1.1%)",
      config: { algorithm: "maml", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "omniglot-mlp", batchNorm: true }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 8, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
      figure: { metric: "accuracy", value: 0.897, ci95: 0.011, label: "Finn et al. 2017, Table 1 (MLP): 89.7 ± 1.1%" },
    },
    {
      name: "omniglot-20w1s-maml-conv4",
      description: "Omniglot 20-way 1-shot, MAML, Conv4 (stride 2, batch norm)",
      source: "Finn et al. 2017, §5.2 and appendix A.1: 5 inner steps α = 0.1, meta-batch 16, Adam 1e-3 (paper: 95.8 ± 0.3%)",
      config: { algorithm: "maml", task: { family: "omniglot", split: "vinyals", ways: 20, shots: 1, queryShots: 5 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 5, innerLr: 0.1, metaLr: 0.001, metaBatchSize: 16, shardSize: 2, iterations: 60000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
      figure: { metric: "accuracy", value: 0.958, ci95: 0.003, label: "Finn et al. 2017, Table 1: 95.8 ± 0.3%" },
    },
  ],
});
