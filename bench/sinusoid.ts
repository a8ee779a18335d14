// The MAML paper's sinusoid benchmark (Finn et al. 2017, §5.1 and Fig. 2): meta-train with K = 10,
// one inner step, α = 0.01, meta-batch 25, Adam 1e-3; evaluate fine-tuning on K = 5 points for 1,
// 5 and 10 steps over 600 held-out tasks, against a network pretrained on all tasks jointly.
//   node --import tsx bench/sinusoid.ts [--backend wasm] [--minutes 12] [--iterations N]
import * as tf from "@tensorflow/tfjs";
import { sinusoidMlp } from "../meta/models.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import { LocalMetaTrainer, iterationTasks, initialParams, meanOf } from "../meta/trainer.js";
import { evaluate } from "../meta/evaluate.js";
import { adam } from "../meta/optimizers.js";
import { dispose, names, type Params } from "../meta/params.js";
import { taskLoss, toTensors, disposeExamples } from "../meta/losses.js";
import { arg, log, machine, numArg, record, setupBackend } from "./common.js";

const backend = await setupBackend();
const minutes = numArg("minutes", 12);
const maxIterations = numArg("iterations", 70000);
const seed = numArg("seed", 1);
const evalTasks = numArg("eval-tasks", 600);
const batchTasks = arg("batch", "true") === "true";
// The old trainer took the whole meta-batch as one shard: say so, the schema's default is 5.
const cfg = { algorithm: "maml" as const, innerSteps: 1, innerLr: 0.01, metaLr: 1e-3, metaBatchSize: 25, shardSize: 25, iterations: maxIterations, seed, batchTasks };
const model = sinusoidMlp();
const train = sinusoidFamily({ shots: 10 });
const test = sinusoidFamily({ shots: 5, queryShots: 100 });

/** Train until the time budget or the iteration cap; returns iterations done. */
async function timed(stepFn: () => Promise<void>, label: string): Promise<{ iterations: number; seconds: number }> {
  const t0 = performance.now();
  let it = 0;
  while (it < maxIterations && performance.now() - t0 < minutes * 60_000) {
    await stepFn();
    it++;
    if (it % 1000 === 0) log(`${label}: iteration ${it}, ${((performance.now() - t0) / it).toFixed(1)} ms/it`);
  }
  return { iterations: it, seconds: (performance.now() - t0) / 1000 };
}

/** Exactly n iterations (the baseline matches MAML's count). */
async function timedN(n: number, stepFn: () => Promise<void>, label: string): Promise<{ iterations: number }> {
  for (let i = 0; i < n; i++) {
    await stepFn();
    if ((i + 1) % 1000 === 0) log(`${label}: iteration ${i + 1}/${n}`);
  }
  return { iterations: n };
}

// --- MAML ---
const trainer = new LocalMetaTrainer({ ...cfg, task: { family: "sinusoid", shots: 10, queryShots: 10 } });
let lastPost = NaN;
const mamlRun = await timed(async () => {
  const r = await trainer.step();
  lastPost = meanOf(r.metrics, "postLoss");
}, "maml");
log(`maml: ${mamlRun.iterations} iterations in ${mamlRun.seconds.toFixed(0)} s; last train post-update MSE ${lastPost.toFixed(3)}`);
const evalOpts = { tasks: evalTasks, steps: [0, 1, 5, 10], innerLr: 0.01, seed: 1000 + seed };
const mamlEval = await evaluate(model, test, trainer.params, evalOpts);

// --- Pretrained baseline: one network trained on all tasks jointly (no adaptation in training),
// the same tasks per iteration, the same number of iterations, Adam 1e-3 on the mean MSE.
let pre: Params = initialParams(trainer.run, trainer.config.seed);
const opt = adam();
let st = opt.initialState(pre);
let pIt = 0;
const keys = names(pre);
const baseRun = await timedN(mamlRun.iterations, async () => {
  const tasks = iterationTasks(train, seed, pIt++, cfg.metaBatchSize);
  const grads = tf.tidy(() => {
    let acc: tf.Tensor[] | undefined;
    for (const t of tasks) {
      const ex = [t.support, t.query].map((e) => toTensors(e, "regression", 1));
      const g = tf.grads((...v: tf.Tensor[]) => {
        const p: Params = {};
        keys.forEach((k, j) => (p[k] = v[j]!));
        return tf.add(taskLoss("regression", model.forward(p, ex[0]!.x), ex[0]!.y), taskLoss("regression", model.forward(p, ex[1]!.x), ex[1]!.y));
      })(keys.map((k) => pre[k]!));
      ex.forEach(disposeExamples);
      acc = acc ? acc.map((a, j) => tf.add(a, g[j]!)) : g;
    }
    const out: Params = {};
    keys.forEach((k, j) => (out[k] = acc![j]!));
    return out;
  });
  const next = opt.apply(pre, grads, 2 * tasks.length, st, { metaLr: 1e-3 });
  dispose(pre, grads);
  pre = next.params;
  st = next.state;
}, "pretrained");
// The baseline gets the same number of iterations as MAML, not the same time.
const baseEval = await evaluate(model, test, pre, evalOpts);

const fmt = (e: typeof mamlEval) => Object.fromEntries(e.results.map((r) => [`${r.steps} steps`, `${r.loss.mean.toFixed(3)} ± ${r.loss.ci95.toFixed(3)}`]));
record(`sinusoid-${backend.backend}`, {
  benchmark: "sinusoid regression, MAML paper §5.1",
  command: `node --import tsx bench/sinusoid.ts --backend ${backend.candidate} --minutes ${minutes}`,
  machine: machine(),
  backend: backend.backend,
  config: { ...cfg, iterations: mamlRun.iterations, trainShots: 10, evalShots: 5, evalQueryPoints: 100, evalTasks, evalInnerLr: 0.01 },
  maml: { iterations: mamlRun.iterations, seconds: Math.round(mamlRun.seconds), msPerIteration: +(1000 * mamlRun.seconds / mamlRun.iterations).toFixed(2), mse: fmt(mamlEval) },
  pretrained: { iterations: baseRun.iterations, mse: fmt(baseEval) },
  paper: { maml: { "1 steps": 0.67, "5 steps": 0.38, "10 steps": 0.35 }, pretrained: { "1 steps": 2.41, "5 steps": 2.23, "10 steps": 2.19 } },
  raw: { maml: mamlEval, pretrained: baseEval },
});
trainer.dispose();
dispose(pre);
