// Named run configurations with the papers' hyperparameters. Each is a partial config; the schema
// supplies every other default. Sources are cited per preset.
import type { RunConfigInput } from "./config.js";

export interface Preset {
  name: string;
  description: string;
  source: string;
  config: RunConfigInput;
}

export const PRESETS: readonly Preset[] = [
  {
    name: "sinusoid-maml",
    description: "Sinusoid regression, MAML, 1-40-40-1 MLP",
    source: "Finn et al. 2017, §5.1: K = 10, one inner step α = 0.01, meta-batch 25, Adam β = 1e-3 (paper: 70k iterations)",
    config: { algorithm: "maml", task: { family: "sinusoid", shots: 10, queryShots: 10 }, model: { kind: "sinusoid-mlp" }, innerSteps: 1, innerLr: 0.01, metaLr: 0.001, metaBatchSize: 25, shardSize: 5, iterations: 1000, evalSteps: 10, evalTasks: 600 },
  },
  {
    name: "sinusoid-reptile",
    description: "Sinusoid regression, Reptile, 1-40-40-1 MLP",
    source: "Nichol et al. 2018, §5.1 (sine waves): inner SGD on K = 10 points, ε = 1 annealed linearly to 0; here 5 SGD steps α = 0.02 and meta-batch 5 (not tuned)",
    config: { algorithm: "reptile", task: { family: "sinusoid", shots: 10, queryShots: 10 }, model: { kind: "sinusoid-mlp" }, innerSteps: 5, innerLr: 0.02, metaLr: 1, metaBatchSize: 5, shardSize: 5, iterations: 1000, evalSteps: 10, evalTasks: 600 },
  },
  {
    name: "omniglot-5w1s-maml-mlp",
    description: "Omniglot 5-way 1-shot, MAML, MLP 784-256-128-64-64-5 with batch norm",
    source: "Finn et al. 2017, §5.2 and appendix A.1: one inner step α = 0.4, meta-batch 32, Adam 1e-3, 3 steps at test (paper: 89.7 ± 1.1%)",
    config: { algorithm: "maml", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "omniglot-mlp", batchNorm: true }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 8, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
  },
  {
    name: "omniglot-5w1s-fomaml-conv4",
    description: "Omniglot 5-way 1-shot, first-order MAML, Conv4 (stride 2, batch norm)",
    source: "Finn et al. 2017, §5.2: first-order approximation, α = 0.4, one inner step, meta-batch 32, Adam 1e-3 (paper: 98.3 ± 0.5%)",
    config: { algorithm: "fomaml", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 4, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
  },
  {
    name: "omniglot-5w1s-reptile-conv4",
    description: "Omniglot 5-way 1-shot, Reptile, Conv4 (stride 2, batch norm)",
    source: "Nichol et al. 2018, Table 3 (transductive): 5 inner steps, meta-batch 5, ε = 1 annealed to 0, 50 steps at test (paper: 97.68 ± 0.04%); inner loop SGD α = 0.4 here instead of Adam",
    config: { algorithm: "reptile", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 5, innerLr: 0.4, metaLr: 1, metaBatchSize: 5, shardSize: 1, iterations: 100000, evalSteps: 50, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
  },
  {
    name: "omniglot-20w1s-maml-conv4",
    description: "Omniglot 20-way 1-shot, MAML, Conv4 (stride 2, batch norm)",
    source: "Finn et al. 2017, §5.2 and appendix A.1: 5 inner steps α = 0.1, meta-batch 16, Adam 1e-3 (paper: 95.8 ± 0.3%)",
    config: { algorithm: "maml", task: { family: "omniglot", split: "vinyals", ways: 20, shots: 1, queryShots: 5 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 5, innerLr: 0.1, metaLr: 0.001, metaBatchSize: 16, shardSize: 2, iterations: 60000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
  },
];

export function findPreset(name: string): Preset | undefined {
  return PRESETS.find((p) => p.name === name);
}
