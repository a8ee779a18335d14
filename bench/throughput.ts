// Inner-loop throughput: tasks per second for one shard, per algorithm, model and backend, with
// the shard's tasks run one by one and batched over a task axis. Side by side in one process,
// alternating variants per repeat so machine noise hits both alike; medians reported.
//   node --import tsx bench/throughput.ts [--backends cpu,wasm] [--repeats 3] [--shard 32] [--conv4 false] [--algorithms maml,anil]
import * as tf from "@tensorflow/tfjs";
import { LEARNERS } from "../meta/algorithms/registry.js";
import { runnerFor } from "../meta/run-config.js";
import { conv4, omniglotMlp, sinusoidMlp, type Model } from "../meta/models.js";
import { dispose } from "../meta/params.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import { omniglotFamily } from "../meta/tasks/omniglot.js";
import { loadOmniglot } from "../storage/datasets.js";
import type { TaskFamily } from "../meta/tasks/types.js";
import { selectBackend, type BackendPreference } from "../meta/backend.js";
import { arg, log, machine, median, numArg, record } from "./common.js";

const backends = arg("backends", "cpu,wasm").split(",") as BackendPreference[];
const repeats = numArg("repeats", 3);
const shard = numArg("shard", 32);
const withConv4 = arg("conv4", "false") === "true";
const omni = omniglotFamily(loadOmniglot(), { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });

interface Case { label: string; model: Model; family: TaskFamily; innerSteps: number; innerLr: number; shard: number }
const cases: Case[] = [
  { label: "sinusoid 1-40-40-1, K=10, 1 step", model: sinusoidMlp(), family: sinusoidFamily({ shots: 10 }), innerSteps: 1, innerLr: 0.01, shard },
  { label: "omniglot MLP 784-256-128-64-64-5 (BN), 5-way 1-shot, 15 query, 5 steps", model: omniglotMlp(5), family: omni, innerSteps: 5, innerLr: 0.4, shard },
];
if (withConv4) {
  cases.push({ label: "omniglot Conv4 (64, maxpool, BN), 5-way 1-shot, 15 query, 5 steps", model: conv4({ outputs: 5 }), family: omni, innerSteps: 5, innerLr: 0.4, shard: 2 });
}

const rows: Record<string, unknown>[] = [];
for (const pref of backends) {
  let backend: string;
  try {
    backend = (await selectBackend(pref, {})).backend;
  } catch (e) {
    log(`skipping backend ${pref}: ${(e as Error).message}`);
    continue;
  }
  for (const c of cases) {
    const tasks = Array.from({ length: c.shard }, (_, i) => c.family.task(7, "train", 0, i));
    const theta = c.model.init(3);
    const only = arg("algorithms", "").split(",").filter(Boolean);
    for (const { name: algorithm, needs } of LEARNERS.filter((l) => !only.length || only.includes(l.name))) {
      const variants = [false, ...(c.model.forwardBatched && needs.taskBatching ? [true] : [])];
      const times = new Map<boolean, number[]>(variants.map((v) => [v, []]));
      // Reptile here takes plain SGD steps on the whole support set, as the numbers recorded before the learner seam did.
      const options = algorithm === "reptile" ? { innerOptimizer: "sgd" } : undefined;
      const algos = new Map(variants.map((v) => [v, runnerFor({ algorithm, model: c.model, kind: c.family.kind, innerSteps: c.innerSteps, innerLr: c.innerLr, batchTasks: v, ...(options ? { options } : {}) })]));
      // One untimed warm-up per variant (kernels compile, buffers allocate), then alternate.
      for (let r = -1; r < repeats; r++) {
        for (const v of variants) {
          const t0 = performance.now();
          const out = await algos.get(v)!.runShard(theta, tasks);
          const ms = performance.now() - t0;
          dispose(out.sum);
          if (r >= 0) times.get(v)!.push(ms);
        }
      }
      for (const v of variants) {
        const ms = median(times.get(v)!);
        const row = { backend, case: c.label, algorithm, batched: v, shardTasks: c.shard, msPerShard: Math.round(ms), msPerTask: +(ms / c.shard).toFixed(2), tasksPerSecond: +((1000 * c.shard) / ms).toFixed(2), repeats };
        rows.push(row);
        log(`${backend} ${c.model.name} ${algorithm} ${v ? "batched" : "one-by-one"}: ${row.msPerTask} ms/task, ${row.tasksPerSecond} tasks/s`);
      }
    }
    dispose(theta);
  }
}
log(`tensors alive at the end: ${tf.memory().numTensors}`);
record(`throughput-${backends.join("+")}`, {
  benchmark: "inner-loop throughput for one shard",
  command: `node --import tsx bench/throughput.ts --backends ${backends.join(",")} --repeats ${repeats} --shard ${shard}${withConv4 ? " --conv4 true" : ""}`,
  machine: machine(),
  rows,
});
