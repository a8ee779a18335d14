// Omniglot 5-way 1-shot meta-training within a time budget, then accuracy with a 95% CI over
// held-out tasks of the test characters.
//   node --import tsx bench/omniglot.ts --algorithm maml|fomaml|reptile [--model mlp|conv4]
//        [--minutes 15] [--backend auto] [--split vinyals] [--eval-tasks 600]
// Hyperparameters follow the papers where our inner loop matches theirs (see PRESETS below).
import { conv4, omniglotMlp, type Model } from "../meta/models.js";
import { omniglotFamily, type OmniglotSplit } from "../meta/tasks/omniglot.js";
import { loadOmniglot } from "../storage/datasets.js";
import { LocalMetaTrainer, meanOf, type MetaTrainConfig } from "../meta/trainer.js";
import { evaluate } from "../meta/evaluate.js";
import type { AlgorithmName } from "../meta/algorithms/types.js";
import { arg, log, machine, numArg, record, setupBackend } from "./common.js";

const algorithm = arg("algorithm", "maml") as AlgorithmName;
const modelName = arg("model", "mlp");
const minutes = numArg("minutes", 15);
const split = arg("split", "vinyals") as OmniglotSplit;
const evalTasks = numArg("eval-tasks", 600);
const seed = numArg("seed", 1);
const ways = 5;
const shots = 1;
const queryShots = 15;

/**
 * MAML (Finn et al. 2017, §5.2 and appendix A.1): Omniglot with one inner step, α = 0.4,
 * meta-batch 32, Adam β = 1e-3; evaluated with 3 steps. First-order MAML: the same.
 * Reptile (Nichol et al. 2018, Table 3): 5 inner steps, meta-batch 5, outer ε = 1 annealed
 * linearly to 0, 50 steps at test. Reptile's paper uses Adam (lr 1e-3, β1 = 0) in the inner loop;
 * metatrain's inner loop is plain SGD, so α = 0.4 as for MAML (not tuned).
 */
const PRESETS: Record<AlgorithmName, { cfg: Omit<MetaTrainConfig, "iterations" | "seed" | "algorithm">; evalSteps: number[] }> = {
  maml: { cfg: { innerSteps: 1, innerLr: 0.4, metaLr: 1e-3, metaBatchSize: 32 }, evalSteps: [0, 1, 3, 10] },
  fomaml: { cfg: { innerSteps: 1, innerLr: 0.4, metaLr: 1e-3, metaBatchSize: 32 }, evalSteps: [0, 1, 3, 10] },
  reptile: { cfg: { innerSteps: 5, innerLr: 0.4, metaLr: 1.0, metaBatchSize: 5 }, evalSteps: [0, 5, 10, 50] },
};

const backend = await setupBackend();
const data = loadOmniglot();
const train = omniglotFamily(data, { ways, shots, queryShots, split });
const model: Model = modelName === "conv4" ? conv4({ outputs: ways, downsample: "stride" }) : omniglotMlp(ways);
const preset = PRESETS[algorithm];
const evalSteps = arg("eval-steps", "").split(",").filter(Boolean).map(Number);
if (evalSteps.length) preset.evalSteps = evalSteps;
// Batch a shard's tasks where the model supports it: 10× faster on the native backend
// (bench/RESULTS.md, inner-loop throughput).
const batchTasks = model.forwardBatched !== undefined;
const base = { ...preset.cfg, algorithm, seed, batchTasks };

// Calibrate: time two iterations on a throwaway trainer to size the run, because Reptile's
// annealing needs the total number of iterations up front.
const probe = new LocalMetaTrainer(model, train, { ...base, iterations: 1000 });
await probe.step();
const tc = performance.now();
await probe.step();
const msPerIt = performance.now() - tc;
probe.dispose();
const iterations = Math.max(1, Math.floor((minutes * 60_000) / msPerIt));
log(`${algorithm} ${model.name}: ~${msPerIt.toFixed(0)} ms/iteration, planning ${iterations} iterations for ${minutes} min`);

const trainer = new LocalMetaTrainer(model, train, { ...base, iterations });
const t0 = performance.now();
const curve: { iteration: number; preAccuracy: number; postAccuracy: number; postLoss: number }[] = [];
let acc: { pre: number[]; post: number[]; loss: number[] } = { pre: [], post: [], loss: [] };
const every = Math.max(1, Math.floor(iterations / 20));
for (let i = 0; i < iterations; i++) {
  const r = await trainer.step();
  acc.pre.push(meanOf(r.metrics, "preAccuracy"));
  acc.post.push(meanOf(r.metrics, "postAccuracy"));
  acc.loss.push(meanOf(r.metrics, "postLoss"));
  if ((i + 1) % every === 0 || i + 1 === iterations) {
    const m = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    curve.push({ iteration: i + 1, preAccuracy: +m(acc.pre).toFixed(4), postAccuracy: +m(acc.post).toFixed(4), postLoss: +m(acc.loss).toFixed(4) });
    log(`iteration ${i + 1}/${iterations}: train query accuracy ${m(acc.pre).toFixed(3)} → ${m(acc.post).toFixed(3)} after adaptation, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    acc = { pre: [], post: [], loss: [] };
  }
}
const trainSeconds = (performance.now() - t0) / 1000;
const test = omniglotFamily(data, { ways, shots, queryShots, split });
const te = performance.now();
const ev = await evaluate(model, test, trainer.params, {
  tasks: evalTasks, steps: preset.evalSteps, innerLr: preset.cfg.innerLr, seed: 1000 + seed, split: "test",
  onTask: (d, n) => { if (d % 100 === 0) log(`evaluated ${d}/${n} test tasks`); },
});
const pct = (x: number) => +(100 * x).toFixed(2);
record(`omniglot-${algorithm}-${model.name}-${backend.backend}`, {
  benchmark: `Omniglot ${ways}-way ${shots}-shot, ${algorithm}, ${model.name}`,
  command: `node --import tsx bench/omniglot.ts --algorithm ${algorithm} --model ${modelName} --minutes ${minutes} --backend ${backend.candidate}`,
  machine: machine(),
  backend: backend.backend,
  split,
  batchNorm: model.batchNorm,
  evaluationMode: model.batchNorm === "none" ? "non-transductive" : "transductive (batch norm uses query-batch statistics)",
  config: { ...base, iterations, ways, shots, queryShots },
  training: { iterations, seconds: Math.round(trainSeconds), msPerIteration: Math.round((1000 * trainSeconds) / iterations), curve },
  evaluation: {
    tasks: evalTasks, seconds: Math.round((performance.now() - te) / 1000), innerLr: preset.cfg.innerLr,
    accuracyPercent: ev.results.map((r) => ({ steps: r.steps, mean: pct(r.accuracy!.mean), ci95: pct(r.accuracy!.ci95) })),
  },
  paper: algorithm === "reptile" ? "Reptile (transductive) Omniglot 5-way 1-shot, Conv4: 97.68 ± 0.04% (100k iterations)" : "MAML 5-way 1-shot: MLP 89.7 ± 1.1%, Conv4 98.7 ± 0.4% (60k iterations)",
});
trainer.dispose();
