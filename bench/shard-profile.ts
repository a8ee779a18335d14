// Where a shard's time goes: one case and learner of bench/cases.ts, batched where it batches, timed
// as the mean of `--shards` shards after warm-up, then one shard under tf.profile with its kernels
// summed by name and by name and input shapes (most expensive first). Profiling first is how
// issue 14's levers were found; to compare two versions of the code, run this on each in turn,
// alternating, on the same quiet machine (one process cannot hold two versions of a module).
//   node --import tsx bench/shard-profile.ts --backend tfjs-node [--case omniglot-mlp] [--algorithm fomaml]
//        [--shards 5] [--top 25] [--batched true]
// Kernel times under tf.profile are inflated by the profiler's own bookkeeping; read them as
// shares of the whole, and the first line (no profiler) as the shard's time.
import * as tf from "@tensorflow/tfjs";
import { dispose } from "../meta/params.js";
import { benchCase, benchParams, benchRunner, benchShardTasks } from "./cases.js";
import { arg, log, numArg, setupBackend } from "./common.js";

const caseId = arg("case", "omniglot-mlp");
const algorithm = arg("algorithm", "fomaml");
const shards = numArg("shards", 5);
const top = numArg("top", 25);
const batchTasks = arg("batched", "true") === "true";

await setupBackend();
const c = benchCase(caseId, [algorithm]);
const tasks = benchShardTasks(c);
const theta = benchParams(c, algorithm);
const runner = benchRunner(c, algorithm, batchTasks);
const shard = async () => dispose((await runner.runShard(theta, tasks)).sum);

for (let i = 0; i < 3; i++) await shard();
const t0 = performance.now();
for (let i = 0; i < shards; i++) await shard();
const ms = (performance.now() - t0) / shards;
console.log(`${caseId} ${algorithm} (${runner.batched ? "batched" : "one by one"}, ${c.shard} tasks): ${ms.toFixed(1)} ms a shard, ${(ms / c.shard).toFixed(2)} ms a task (mean of ${shards})`);

const prof = await tf.profile(shard);
const sum = (key: (k: (typeof prof.kernels)[number]) => string) => {
  const by = new Map<string, { n: number; ms: number }>();
  for (const k of prof.kernels) {
    const e = by.get(key(k)) ?? { n: 0, ms: 0 };
    e.n++;
    e.ms += typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    by.set(key(k), e);
  }
  return [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, top).map(([k, v]) => `${v.ms.toFixed(1).padStart(8)} ms ${String(v.n).padStart(6)}×  ${k}`);
};
const total = prof.kernels.reduce((a, k) => a + (typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0), 0);
console.log(`profiled shard: ${prof.kernels.length} kernels, ${total.toFixed(1)} kernel-ms\n\nby kernel:\n${sum((k) => k.name).join("\n")}\n\nby kernel and input shapes:\n${sum((k) => `${k.name} ${JSON.stringify(k.inputShapes)}`).join("\n")}`);
log("done");
dispose(theta);
