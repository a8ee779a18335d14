// Inner-loop throughput: tasks per second for one shard, per algorithm, model and backend, with
// the shard's tasks run one by one and batched over a task axis. Side by side in one process,
// alternating variants per repeat so machine noise hits both alike; medians reported.
//   node --import tsx bench/throughput.ts [--backends cpu,wasm] [--repeats 3] [--shard 32] [--conv4 false] [--algorithms maml,anil]
//        [--episodes 4]
// Episodic learners (those that cannot learn regression) are timed on their first `omniglot-5w1s-<name>*`
// preset's own model and training episodes (Prototypical networks: 60-way), `--episodes` per shard.
import * as tf from "@tensorflow/tfjs";
import { LEARNERS } from "../meta/algorithms/registry.js";
import { parseRunConfig, resolveRun, runnerFor } from "../meta/run-config.js";
import { FILE_DATA } from "../activities/build.js";
import { dispose } from "../meta/params.js";
import type { Task } from "../meta/tasks/types.js";
import { benchCases, benchShardTasks } from "./cases.js";
import type { ShardRunner } from "../meta/algorithms/learner.js";
import type { Params } from "../meta/params.js";
import { selectBackend, type BackendPreference } from "../meta/backend.js";
import { arg, log, machine, median, numArg, record } from "./common.js";

const backends = arg("backends", "cpu,wasm").split(",") as BackendPreference[];
const repeats = numArg("repeats", 3);
const shard = numArg("shard", 32);
const withConv4 = arg("conv4", "false") === "true";
const episodes = numArg("episodes", 4);
const only = arg("algorithms", "").split(",").filter(Boolean);
/**
 * An episodic learner's (one that cannot learn regression) first Omniglot 5-way 1-shot preset, or
 * for sequence learners its first 5-class one (`omniglot-5c-…`); undefined for the others.
 */
const episodicPreset = (name: string) => {
  const l = LEARNERS.find((x) => x.name === name)!;
  if (l.needs.taskKinds.includes("regression")) return undefined;
  return l.presets.find((p) => p.name.startsWith(`omniglot-5w1s-${name}`)) ?? l.presets.find((p) => p.name.startsWith("omniglot-5c-"));
};
const selected = LEARNERS.filter((l) => !only.length || only.includes(l.name));
// The classifier cases; episodic learners are timed on their own presets below, not on the embedding case.
const cases = benchCases({ shard, conv4: withConv4 }).filter((c) => !(c.spec.kind === "conv4" && c.spec.classifier === false));

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
    const tasks = benchShardTasks(c);
    const theta = c.model.init(3);
    for (const { name: algorithm, needs } of selected.filter((l) => !episodicPreset(l.name))) {
      const variants = [false, ...(c.model.forwardBatched && needs.taskBatching ? [true] : [])];
      // Reptile here takes plain SGD steps on the whole support set, as the numbers recorded before the learner seam did.
      const options = algorithm === "reptile" ? { innerOptimizer: "sgd" } : undefined;
      const runners = variants.map((v) => runnerFor({ algorithm, model: c.model, kind: c.family.kind, innerSteps: c.innerSteps, innerLr: c.innerLr, batchTasks: v, ...(options ? { options } : {}) }));
      await timeShard(backend, c.label, algorithm, runners, theta, tasks);
    }
    dispose(theta);
  }
  for (const learner of selected) {
    const preset = episodicPreset(learner.name);
    if (!preset) continue;
    const { setup } = resolveRun(parseRunConfig(preset.config), FILE_DATA);
    const tasks = Array.from({ length: episodes }, (_, i) => setup.train.task(7, "train", 0, i));
    const t = tasks[0]!;
    const label = `${preset.name}: ${setup.model.name}, training episodes of ${t.support.xShape[0]} support + ${t.query.xShape[0]} query images`;
    const theta = learner.init(setup, 3);
    await timeShard(backend, label, learner.name, [learner.shardRunner(setup)], theta, tasks);
    dispose(theta);
  }
}

/** Median time of one shard per runner, alternating runners per repeat after an untimed warm-up. */
async function timeShard(backend: string, label: string, algorithm: string, runners: ShardRunner[], theta: Params, tasks: Task[]): Promise<void> {
  const times: number[][] = runners.map(() => []);
  // One untimed warm-up per variant (kernels compile, buffers allocate), then alternate.
  for (let r = -1; r < repeats; r++) {
    for (const [i, runner] of runners.entries()) {
      const t0 = performance.now();
      const out = await runner.runShard(theta, tasks);
      const ms = performance.now() - t0;
      dispose(out.sum);
      if (r >= 0) times[i]!.push(ms);
    }
  }
  for (const [i, runner] of runners.entries()) {
    const ms = median(times[i]!);
    const row = { backend, case: label, algorithm, batched: runner.batched, shardTasks: tasks.length, msPerShard: Math.round(ms), msPerTask: +(ms / tasks.length).toFixed(2), tasksPerSecond: +((1000 * tasks.length) / ms).toFixed(2), repeats };
    rows.push(row);
    log(`${backend} ${label} ${algorithm} ${runner.batched ? "batched" : "one-by-one"}: ${row.msPerTask} ms/task, ${row.tasksPerSecond} tasks/s`);
  }
}
log(`tensors alive at the end: ${tf.memory().numTensors}`);
record(`throughput-${backends.join("+")}${only.length ? `-${only.join("+")}` : ""}`, {
  benchmark: "inner-loop throughput for one shard",
  command: `node --import tsx bench/throughput.ts --backends ${backends.join(",")} --repeats ${repeats} --shard ${shard} --episodes ${episodes}${withConv4 ? " --conv4 true" : ""}${only.length ? ` --algorithms ${only.join(",")}` : ""}`,
  machine: machine(),
  rows,
});
