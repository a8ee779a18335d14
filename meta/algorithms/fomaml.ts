// First-order MAML (Finn et al. 2017, §5.2): each task contributes its query gradient at the
// adapted parameters, dropping MAML's second-order terms; Adam applies their mean.
import { z } from "zod";
import { evaluate } from "../evaluate.js";
import { adam } from "../optimizers.js";
import { defineLearner } from "./learner.js";
import { episodeRunner, mamlEpisode } from "./maml.js";

export const fomaml = defineLearner({
  name: "fomaml",
  title: "first-order MAML (Finn et al. 2017, §5.2)",
  summary: "query gradient at the parameters adapted by innerSteps SGD steps; Adam (metaLr) on the mean",
  options: z.object({}),
  needs: { secondOrder: false, taskKinds: ["regression", "classification"], taskBatching: true },
  stateLayout: "model+adam",
  pins: [],
  init: (s, seed) => s.model.init(seed),
  outer: () => adam(),
  shardRunner: (s) => episodeRunner(s, mamlEpisode(s.config.innerSteps, s.config.innerLr, true), true, { factorInput: true }),
  evaluate: (s, params, o) => evaluate(s.model, s.test, params, { ...o, innerLr: s.config.innerLr }),
  presets: [
    {
      name: "omniglot-5w1s-fomaml-conv4",
      description: "Omniglot 5-way 1-shot, first-order MAML, Conv4 (stride 2, batch norm)",
      source: "Finn et al. 2017, §5.2: first-order approximation, α = 0.4, one inner step, meta-batch 32, Adam 1e-3 (paper: 98.3 ± 0.5%)",
      config: { algorithm: "fomaml", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 4, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
    {
      name: "omniglot-5w1s-fomaml-mlp",
      description: "Omniglot 5-way 1-shot, first-order MAML, MLP 784-256-128-64-64-5 with batch norm",
      source: "Finn et al. 2017, §5.2 and appendix A.1 (the MLP of the MAML table), first-order: one inner step α = 0.4, meta-batch 32, Adam 1e-3, 3 steps at test",
      config: { algorithm: "fomaml", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "omniglot-mlp", batchNorm: true }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 8, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
  ],
});
