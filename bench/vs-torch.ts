// tfjs against PyTorch on the inner-loop cases of bench/cases.ts, side by side in one run: round
// after round, each case and algorithm is timed on tfjs (one by one, and batched over tasks where
// the model allows) and then on PyTorch (bench/torch-reference.py: torch.func + vmap, and one task
// at a time), so machine load hits every variant alike. Medians per variant; the ratio is PyTorch
// vmap's time over tfjs's best (≥ 1 means tfjs is at least as fast).
//   PYTHON=<python with torch, e.g. a venv with `pip install torch`> node --import tsx bench/vs-torch.ts --backend tfjs-node --rounds 3 --tag before
//        [--shard 32] [--conv4 true] [--conv4-shard 2] [--cases sinusoid,omniglot-mlp] [--algorithms maml] [--torch-threads 2,1]
// --torch-threads: PyTorch intra-op thread counts to time, each as its own variant (default 2; on a
// loaded 2-core machine 1 thread can be the faster PyTorch, and the goals are judged against the best).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { runnerFor } from "../meta/run-config.js";
import { dispose, type Params } from "../meta/params.js";
import type { Examples, Task } from "../meta/tasks/types.js";
import type { ShardRunner } from "../meta/algorithms/learner.js";
import { runEpisodes } from "../meta/algorithms/episodes.js";
import { factoringPays } from "../meta/algorithms/factored-episode.js";
import { mamlEpisode } from "../meta/algorithms/maml.js";
import { arg, log, machine, median, numArg, record, setupBackend } from "./common.js";
import { BENCH_ALGORITHMS, benchCases, benchParams, benchShardTasks, type BenchCase } from "./cases.js";

const rounds = numArg("rounds", 3);
const tag = arg("tag", "run");
const torchThreads = arg("torch-threads", "2").split(",").map(Number);
const onlyCases = arg("cases", "").split(",").filter(Boolean);
const onlyAlgorithms = arg("algorithms", "").split(",").filter(Boolean);
const python = process.env.PYTHON ?? "python3";

const choice = await setupBackend();
const cases = benchCases({ shard: numArg("shard", 32), conv4: arg("conv4", "true") === "true", conv4Shard: numArg("conv4-shard", 2) }).filter((c) => !onlyCases.length || onlyCases.includes(c.id));
const algorithms = BENCH_ALGORITHMS.filter((a) => !onlyAlgorithms.length || onlyAlgorithms.includes(a));

/** The PyTorch side: one long-lived process answering one JSON line per request. */
function startTorch() {
  const script = join(dirname(fileURLToPath(import.meta.url)), "torch-reference.py");
  const child = spawn(python, [script, "--threads", String(torchThreads[0])], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async ask(req: object): Promise<Record<string, unknown>> {
      child.stdin.write(JSON.stringify(req) + "\n");
      const next = await lines.next();
      if (next.done) throw new Error(`${python} torch-reference.py exited (is torch installed? set PYTHON)`);
      const ans = JSON.parse(next.value) as Record<string, unknown>;
      if (ans.error) throw new Error(`torch-reference.py: ${ans.error}`);
      return ans;
    },
    close: () => child.stdin.end(JSON.stringify({ op: "quit" }) + "\n"),
  };
}

const b64 = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
const encode = (e: Examples) => ({ x: b64(e.x), shape: e.xShape, y: b64(e.y) });

interface Variant {
  impl: "tfjs" | "torch";
  variant: string;
  time(): Promise<number>;
}
interface Slot {
  c: BenchCase;
  algorithm: string;
  variants: Variant[];
  times: number[][];
}

const UNFACTORED = "batched unfactored";
const torch = startTorch();
const slots: Slot[] = [];
const held: Params[] = [];
let torchVersion = "";
for (const c of cases) {
  const tasks: Task[] = benchShardTasks(c);
  const info = await torch.ask({
    op: "case",
    id: c.id,
    spec: c.spec,
    kind: c.family.kind,
    innerSteps: c.innerSteps,
    innerLr: c.innerLr,
    tasks: tasks.map((t) => {
      const s = encode(t.support);
      const q = encode(t.query);
      return { sx: s.x, sxShape: s.shape, sy: s.y, qx: q.x, qxShape: q.shape, qy: q.y };
    }),
  });
  torchVersion = String(info.torch);
  for (const algorithm of algorithms.filter((a) => c.algorithms.includes(a))) {
    const theta = benchParams(c, algorithm);
    held.push(theta);
    const options = algorithm === "reptile" ? { innerOptimizer: "sgd" } : undefined;
    // One by one, and batched where the learner and model batch (ANIL does not).
    const tfRunners: { label: string; runner: ShardRunner }[] = [false, ...(c.model.forwardBatched ? [true] : [])]
      .map((batchTasks) => runnerFor({ algorithm, model: c.model, kind: c.family.kind, innerSteps: c.innerSteps, innerLr: c.innerLr, batchTasks, classes: c.family.outputs, ...(c.config ? { config: c.config } : {}), ...(options ? { options } : {}) }))
      .filter((runner, i) => i === 0 || runner.batched)
      .map((runner) => ({ label: runner.batched ? "batched" : "one-by-one", runner }));
    // MAML, first-order MAML and plain-SGD Reptile factor an MLP's input kernel when batched
    // (factored-episode.ts); the same batched episode without factoring is timed beside them, as the "before".
    const supportRows = tasks[0]!.support.xShape[0]!;
    if ((algorithm === "maml" || algorithm === "fomaml") && factoringPays(c.model, supportRows)) {
      const fn = mamlEpisode(c.innerSteps, c.innerLr, algorithm === "fomaml");
      tfRunners.push({ label: UNFACTORED, runner: { batched: true, runShard: (p, ts) => runEpisodes(p, ts, { model: c.model, kind: c.family.kind, batched: true, factorInput: false }, fn) } });
    }
    if (algorithm === "reptile" && factoringPays(c.model, supportRows)) {
      // An inner batch as large as the support set: the same whole-set SGD steps, which Reptile factors only when no batch size is set.
      tfRunners.push({ label: UNFACTORED, runner: runnerFor({ algorithm, model: c.model, kind: c.family.kind, innerSteps: c.innerSteps, innerLr: c.innerLr, batchTasks: true, classes: c.family.outputs, options: { innerOptimizer: "sgd", innerBatchSize: supportRows } }) });
    }
    const variants: Variant[] = [
      ...tfRunners.map(({ label, runner }): Variant => ({
        impl: "tfjs",
        variant: label,
        async time() {
          const t0 = performance.now();
          const out = await runner.runShard(theta, tasks);
          const ms = performance.now() - t0;
          dispose(out.sum);
          return ms;
        },
      })),
      ...torchThreads.flatMap((threads) =>
        (["vmap", "loop"] as const).map((v): Variant => ({ impl: "torch", variant: `${v} ${threads}t`, time: async () => (await torch.ask({ op: "time", id: c.id, algorithm, variant: v, threads })).ms as number })),
      ),
    ];
    slots.push({ c, algorithm, variants, times: variants.map(() => []) });
  }
}

// Round −1 is an untimed warm-up (kernels compile, buffers allocate, vmap traces).
for (let r = -1; r < rounds; r++) {
  for (const s of slots) {
    for (const [i, v] of s.variants.entries()) {
      const ms = await v.time();
      if (r >= 0) s.times[i]!.push(ms);
    }
  }
  log(`round ${r < 0 ? "warm-up" : r + 1} of ${rounds} done`);
}
torch.close();
dispose(...held);

const perTask = (s: Slot, i: number) => median(s.times[i]!) / s.c.shard;
const bestOf = (s: Slot, pick: (v: Variant) => boolean) => Math.min(...s.variants.flatMap((v, i) => (pick(v) ? [perTask(s, i)] : [])));
const rows = slots.map((s) => {
  const byName = Object.fromEntries(s.variants.map((v, i) => [`${v.impl} ${v.variant}`, +perTask(s, i).toFixed(3)]));
  const best = bestOf(s, (v) => v.impl === "tfjs" && v.variant !== UNFACTORED);
  const main = torchThreads[0];
  const vm = byName[`torch vmap ${main}t`]!;
  const loop = byName[`torch loop ${main}t`]!;
  return {
    case: s.c.id,
    label: s.c.label,
    algorithm: s.algorithm,
    shardTasks: s.c.shard,
    msPerTask: byName,
    tfjsBest: +best.toFixed(3),
    // Speed relative to PyTorch: its time over ours (≥ 1: we are at least as fast). Against the
    // first thread count, and against PyTorch's best over all thread counts timed.
    speedVsVmap: +(vm / best).toFixed(2),
    speedVsLoop: +(loop / best).toFixed(2),
    speedVsBestVmap: +(bestOf(s, (v) => v.variant.startsWith("vmap")) / best).toFixed(2),
    speedVsBestLoop: +(bestOf(s, (v) => v.variant.startsWith("loop")) / best).toFixed(2),
    rawMs: Object.fromEntries(s.variants.map((v, i) => [`${v.impl} ${v.variant}`, s.times[i]!.map((t) => Math.round(t))])),
  };
});

const fmt = (x: number | undefined) => (x === undefined ? "–" : x < 1 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString());
const torchCols = torchThreads.flatMap((t) => [`torch vmap ${t}t`, `torch loop ${t}t`]);
const multi = torchThreads.length > 1;
const table = [
  `| case (shard) | algorithm | tfjs one-by-one | tfjs batched, unfactored | tfjs batched | ${torchCols.join(" | ")} | tfjs vs vmap ${torchThreads[0]}t | vs loop ${torchThreads[0]}t |${multi ? " vs best vmap | vs best loop |" : ""}`,
  `|---|---|---|---|---|${torchCols.map(() => "---|").join("")}---|---|${multi ? "---|---|" : ""}`,
  ...rows.map(
    (r) =>
      `| ${r.case} (${r.shardTasks}) | ${r.algorithm} | ${fmt(r.msPerTask["tfjs one-by-one"])} | ${fmt(r.msPerTask[`tfjs ${UNFACTORED}`])} | ${fmt(r.msPerTask["tfjs batched"])} | ${torchCols.map((c) => fmt(r.msPerTask[c])).join(" | ")} | ${r.speedVsVmap.toFixed(2)}× | ${r.speedVsLoop.toFixed(2)}× |${multi ? ` ${r.speedVsBestVmap.toFixed(2)}× | ${r.speedVsBestLoop.toFixed(2)}× |` : ""}`,
  ),
].join("\n");
log(`tensors alive at the end: ${tf.memory().numTensors}`);
record(`vs-torch-${choice.candidate}-${tag}`, {
  benchmark: "inner loops, tfjs against PyTorch CPU (ms per task, medians over rounds, interleaved)",
  // The interpreter by what it is, not where it sits on this machine.
  command: `PYTHON=<python with torch> node --import tsx bench/vs-torch.ts ${process.argv.slice(2).join(" ")}`,
  backend: choice.backend,
  candidate: choice.candidate,
  torch: torchVersion,
  torchThreads,
  rounds,
  machine: machine(),
  rows,
  table,
});
console.log("\n" + table);
