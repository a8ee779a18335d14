// Leak benchmark: a worker-equivalent process (role `all`: the worker's activities, instrumented store and metrics, /metrics served) runs many meta-iterations while its own /metrics is sampled; resident memory and TensorFlow.js tensors must stay flat.
//
//   node --import tsx bench/leak.ts [--backend cpu|wasm|tfjs-node] [--iterations 2000]
//        [--every 50] [--algorithm maml] [--meta-batch 25] [--shard-size 5] [--eval-every 500]
//   → bench/results/leak-<backend>.json
//
// Each iteration is what a run's workflow makes a worker of role `all` do: runShard for every
// shard, outerStep, a checkpoint every `checkpointEvery`, an evaluation every `evalEvery`, and the
// workflow sink's progress/evaluation reports — through createActivities over a filesystem store
// wrapped by instrumentStore, reporting to the prom-client registry behind a real /metrics server.
// Every `every` iterations (between activities, as an idle worker is scraped) the bench fetches
// its own /metrics and records process_resident_memory_bytes, metatrain_tfjs_tensors,
// metatrain_tfjs_memory_bytes and nodejs_heap_size_used_bytes, after a full GC (so the series
// shows what is retained, not what is merely not yet collected).
//
// Verdict: tensors are flat when every sample after the warm-up (the parameter cache filling up)
// is the same number. Resident memory is flat when the least-squares slope over the second half
// of the run, times the second half's iterations, is below max(5 MiB, 2% of the mean RSS).
import { mkdtempSync, rmSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { createActivities, type ActivityContext } from "../activities/index.js";
import type { RunShardOutput, StateKeys } from "../contracts/activities.js";
import { shardPlan } from "../contracts/config.js";
import { parseRunConfig, type RunConfig, type RunConfigInput } from "../meta/run-config.js";
import { describeBackend, selectBackend, type BackendPreference } from "../meta/backend.js";
import { FsBlobStore } from "../storage/fs-store.js";
import { instrumentStore, startTelemetry, storeKindOf } from "../telemetry/index.js";
import { arg, log, machine, numArg, record } from "./common.js";

export interface LeakOptions {
  /** Meta-iterations to run. */
  iterations: number;
  /** Sample /metrics every this many iterations (and after the last). */
  every: number;
  /** The run config (defaults: the MAML paper's sinusoid setting, as bench/sinusoid.ts). */
  config?: RunConfigInput;
  /** Progress lines. Default: none. */
  log?: (msg: string) => void;
  /** A full garbage collection, run before each sample. Default `exposeGc()`. */
  gc?: () => void;
}

/** V8's full GC as a function, whether or not node was started with --expose-gc. */
export function exposeGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

export interface LeakSample {
  /** Iterations completed when sampled. */
  iteration: number;
  /** Seconds since the first iteration started. */
  seconds: number;
  /** `process_resident_memory_bytes` from /metrics. */
  rssBytes: number;
  /** `nodejs_heap_size_used_bytes` from /metrics. */
  heapUsedBytes: number;
  /** `metatrain_tfjs_tensors` from /metrics. */
  tensors: number;
  /** `metatrain_tfjs_memory_bytes` from /metrics. */
  tfjsBytes: number;
}

export interface LeakVerdict {
  /** Samples before this iteration are warm-up (the parameter cache filling), left out of the tensor check. */
  warmupIterations: number;
  tensorsFlat: boolean;
  /** Distinct tensor counts after the warm-up (one value when flat). */
  tensorCounts: number[];
  /** Least-squares slope of RSS over the second half of the samples. */
  rssSlopeBytesPerIteration: number;
  /** That slope times the second half's length: how much RSS grew over it. */
  rssGrowthSecondHalfBytes: number;
  /** max(5 MiB, 2% of the mean RSS of the second half). */
  rssThresholdBytes: number;
  rssFlat: boolean;
  /** Heap (JS) slope over the second half, for telling a JS leak from a native one. */
  heapSlopeBytesPerIteration: number;
}

export interface LeakResult {
  backend: string;
  config: RunConfig;
  iterations: number;
  every: number;
  secondsPerIteration: number;
  samples: LeakSample[];
  verdict: LeakVerdict;
}

/** The default run: sinusoid MAML as in the paper (K = 10, one inner step, meta-batch 25) in shards of 5. */
export const LEAK_CONFIG: RunConfigInput = {
  algorithm: "maml",
  task: { family: "sinusoid", shots: 10, queryShots: 10 },
  metaBatchSize: 25,
  shardSize: 5,
  innerSteps: 1,
  innerLr: 0.01,
  metaLr: 0.001,
  seed: 1,
  checkpointEvery: 10,
  evalEvery: 100,
  evalTasks: 25,
  evalSteps: 5,
};

/** One value of a metric in Prometheus text format (the first series of that name). */
export function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text);
  if (!m) throw new Error(`/metrics has no ${name}`);
  return Number(m[1]);
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export function verdict(samples: readonly LeakSample[], iterations: number, warmupIterations: number): LeakVerdict {
  const after = samples.filter((s) => s.iteration >= warmupIterations);
  const tensorCounts = [...new Set(after.map((s) => s.tensors))];
  const half = samples.filter((s) => s.iteration >= iterations / 2);
  const xs = half.map((s) => s.iteration);
  const rssSlope = slope(xs, half.map((s) => s.rssBytes));
  const heapSlope = slope(xs, half.map((s) => s.heapUsedBytes));
  const span = half.length ? half.at(-1)!.iteration - half[0]!.iteration : 0;
  const meanRss = half.reduce((a, s) => a + s.rssBytes, 0) / Math.max(1, half.length);
  const threshold = Math.max(5 * 2 ** 20, 0.02 * meanRss);
  const growth = rssSlope * span;
  return {
    warmupIterations,
    tensorsFlat: after.length > 0 && tensorCounts.length === 1,
    tensorCounts,
    rssSlopeBytesPerIteration: rssSlope,
    rssGrowthSecondHalfBytes: growth,
    rssThresholdBytes: threshold,
    rssFlat: growth < threshold,
    heapSlopeBytesPerIteration: heapSlope,
  };
}

/** A Temporal activity context stand-in: heartbeats go nowhere, nothing is ever cancelled. */
function idleContext(): ActivityContext {
  const signal = new AbortController().signal;
  return { heartbeat: () => {}, signal, attempt: 1 };
}

/**
 * Run `iterations` meta-iterations as a worker of role `all` would, on the tfjs backend already
 * selected, sampling this process's /metrics every `every` iterations.
 */
export async function runLeak(opts: LeakOptions): Promise<LeakResult> {
  const say = opts.log ?? (() => {});
  const config = parseRunConfig(opts.config ?? LEAK_CONFIG);
  const gc = opts.gc ?? exposeGc();
  const root = mkdtempSync(join(tmpdir(), "metatrain-leak-"));
  const storeUri = pathToFileURL(root).href;
  const telemetry = await startTelemetry({ role: "all", worker: "leak-bench", port: 0, host: "127.0.0.1", tfMemory: () => tf.memory(), env: {} });
  const { metrics } = telemetry;
  metrics.setBackend(tf.getBackend());
  const acts = createActivities({
    store: instrumentStore(new FsBlobStore({ root }), metrics, storeKindOf(storeUri)),
    metrics,
    context: idleContext,
    backendName: () => tf.getBackend(),
  });
  const runId = "leak";
  const plan = shardPlan(config);
  const samples: LeakSample[] = [];
  const t0 = performance.now();

  async function sample(iteration: number): Promise<void> {
    gc();
    const text = await (await fetch(`${telemetry.server.url}/metrics`)).text();
    const s: LeakSample = {
      iteration,
      seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
      rssBytes: metricValue(text, "process_resident_memory_bytes"),
      heapUsedBytes: metricValue(text, "nodejs_heap_size_used_bytes"),
      tensors: metricValue(text, "metatrain_tfjs_tensors"),
      tfjsBytes: metricValue(text, "metatrain_tfjs_memory_bytes"),
    };
    samples.push(s);
    say(`iteration ${iteration}: rss ${(s.rssBytes / 2 ** 20).toFixed(1)} MiB, heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} MiB, tensors ${s.tensors} (${s.tfjsBytes} B), ${s.seconds} s`);
  }

  try {
    let keys: StateKeys = await acts.initRun({ runId, config: { ...config, iterations: opts.iterations } });
    for (let iteration = 0; iteration < opts.iterations; iteration++) {
      const outs: RunShardOutput[] = [];
      for (const s of plan) {
        outs.push(await acts.runShard({ runId, config, iteration, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey }));
      }
      keys = await acts.outerStep({ runId, config, iteration, paramsKey: keys.paramsKey, optimKey: keys.optimKey, shardKeys: outs.map((o) => o.resultKey), taskCount: config.metaBatchSize });
      const done = iteration + 1;
      const mean = (k: "preLoss" | "postLoss") => outs.reduce((a, o) => a + o.metrics[k] * o.metrics.tasks, 0) / config.metaBatchSize;
      const latest = { preLoss: mean("preLoss"), postLoss: mean("postLoss") };
      metrics.setRunProgress({ runId, iteration: done, iterations: opts.iterations, latest }); // the workflow sink's report
      if (done % config.checkpointEvery === 0) {
        await acts.writeCheckpoint({ manifest: { runId, iteration: done, ...keys, config, metaLr: config.metaLr, metrics: { latest: { tasks: config.metaBatchSize, ...latest } } } });
      }
      if (config.evalEvery > 0 && done % config.evalEvery === 0) {
        const ev = await acts.evaluate({ runId, config, iteration: done, paramsKey: keys.paramsKey });
        metrics.observeEvaluation({ runId, iteration: done, loss: ev.loss, ...(ev.accuracy ? { accuracy: ev.accuracy } : {}) });
      }
      if (done % opts.every === 0 || done === opts.iterations) await sample(done);
    }
  } finally {
    await telemetry.close();
    rmSync(root, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  // The parameter cache (4 sets) is full after 4 iterations; the first sample after that is the floor.
  const warmup = Math.max(opts.every, 5);
  return {
    backend: tf.getBackend(),
    config,
    iterations: opts.iterations,
    every: opts.every,
    secondsPerIteration: Number((seconds / opts.iterations).toFixed(4)),
    samples,
    verdict: verdict(samples, opts.iterations, warmup),
  };
}

async function main(): Promise<void> {
  const choice = await selectBackend(arg("backend", "cpu") as BackendPreference, process.env);
  log(describeBackend(choice));
  const iterations = numArg("iterations", 2000);
  const every = numArg("every", 50);
  const config: RunConfigInput = {
    ...LEAK_CONFIG,
    algorithm: arg("algorithm", "maml") as RunConfigInput["algorithm"],
    metaBatchSize: numArg("meta-batch", 25),
    shardSize: numArg("shard-size", 5),
    evalEvery: numArg("eval-every", 100),
  };
  const result = await runLeak({ iterations, every, config, log });
  const v = result.verdict;
  const mib = (b: number) => Number((b / 2 ** 20).toFixed(2));
  const first = result.samples[0]!;
  const last = result.samples.at(-1)!;
  const summary = {
    command: `node ${process.execArgv.join(" ")} bench/leak.ts ${process.argv.slice(2).join(" ")}`.replace(/\s+/g, " ").trim(),
    machine: machine(),
    backend: result.backend,
    iterations,
    secondsPerIteration: result.secondsPerIteration,
    rssMiB: { first: mib(first.rssBytes), last: mib(last.rssBytes), min: mib(Math.min(...result.samples.map((s) => s.rssBytes))), max: mib(Math.max(...result.samples.map((s) => s.rssBytes))) },
    heapUsedMiB: { first: mib(first.heapUsedBytes), last: mib(last.heapUsedBytes) },
    tensors: { first: first.tensors, last: last.tensors, distinctAfterWarmup: v.tensorCounts },
    rssSecondHalf: {
      slopeKiBPer1000Iterations: Number(((v.rssSlopeBytesPerIteration * 1000) / 1024).toFixed(1)),
      growthMiB: mib(v.rssGrowthSecondHalfBytes),
      thresholdMiB: mib(v.rssThresholdBytes),
    },
    heapSecondHalfSlopeKiBPer1000Iterations: Number(((v.heapSlopeBytesPerIteration * 1000) / 1024).toFixed(1)),
    verdict: `${v.rssFlat ? "flat" : "NOT flat"} RSS, ${v.tensorsFlat ? "flat" : "NOT flat"} tensors`,
  };
  record(`leak-${result.backend}`, { summary, ...result });
  if (!v.tensorsFlat || !v.rssFlat) process.exitCode = 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
