// The gpu activity: one shard's inner loops, its summed contributions written under a fixed key.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { ApplicationFailure, CancelledFailure } from "@temporalio/activity";
import type { RunShardInput, RunShardOutput, TaskMetricsSummary } from "../contracts/activities.js";
import { meanOf, shardBlobMap, type TaskMetrics } from "../meta/algorithms/types.js";
import { allFinite, dispose, serializeParams, type Params } from "../meta/params.js";
import { parseRunConfig, type RunConfig } from "../meta/run-config.js";
import { shardKey } from "../storage/keys.js";
import { cancellation, invalidInput, nonFiniteLoss, toActivityFailure } from "./errors.js";
import { isCount, isObject, secondsSince, type ActivityContext, type ActivityKit } from "./ports.js";

/** Sleep until `end` (performance.now() time) in slices of at most 1 s, offering a heartbeat after each and stopping at once on cancellation. */
async function simulateComputeUntil(end: number, ctx: ActivityContext, beat: (d: Record<string, unknown>) => void): Promise<void> {
  while (performance.now() < end) {
    if (ctx.signal.aborted) throw cancellation(ctx.signal);
    await new Promise((r) => setTimeout(r, Math.min(1000, end - performance.now())));
    beat({ simulated: true });
  }
}

/** Mean metrics over a shard's tasks (accuracy only where the tasks report it). */
function summarize(ms: readonly TaskMetrics[]): TaskMetricsSummary {
  const out: TaskMetricsSummary = { tasks: ms.length, preLoss: meanOf(ms, "preLoss"), postLoss: meanOf(ms, "postLoss") };
  if (ms.some((m) => m.preAccuracy !== undefined)) {
    out.preAccuracy = meanOf(ms, "preAccuracy");
    out.postAccuracy = meanOf(ms, "postAccuracy");
  }
  return out;
}

function summaryFinite(s: TaskMetricsSummary): boolean {
  return [s.preLoss, s.postLoss, s.preAccuracy ?? 0, s.postAccuracy ?? 0].every(Number.isFinite);
}

/** The `error_type` label of a failed attempt: the failure type it leaves with (BlobCorrupt, NonFiniteLoss, …), else the error's name. */
function errorTypeOf(e: unknown): string {
  const f = toActivityFailure(e);
  if (f instanceof ApplicationFailure) return f.type ?? "Other";
  return f instanceof Error ? f.name : "Other";
}

/** The algorithm label before the config is parsed (a config that fails to parse still reports). */
function algorithmOf(raw: unknown): string {
  const a = isObject(raw) ? raw.algorithm : undefined;
  return typeof a === "string" ? a : "unknown";
}

/** `runShard(input)`: one attempt, reported as completed, failed (by error type) or cancelled, with its attempt number. */
export function runShardActivity(kit: ActivityKit) {
  const { store, log, context, backendName, heartbeatIntervalMs, simulatedTaskMs, metrics, builds, cache, now, workerName } = kit;
  /** One shard attempt, reported as completed, failed (by error type) or cancelled, with its attempt number. */
  async function runShard(input: RunShardInput): Promise<RunShardOutput> {
    const ctx = context();
    const started = performance.now();
    const startedAt = now().getTime();
    const attempt = ctx.attempt ?? 1;
    const tasks = isCount(input.taskStart) && isCount(input.taskEnd) && input.taskEnd > input.taskStart ? input.taskEnd - input.taskStart : 0;
    let algorithm = algorithmOf(input.config);
    try {
      const config = parseRunConfig(input.config);
      algorithm = config.algorithm;
      const out = { ...(await runShardAttempt(input, config, ctx, started)), worker: workerName, startedAt };
      metrics.observeShard({ algorithm, backend: out.backend, seconds: secondsSince(started), tasks, outcome: "completed", attempt });
      return out;
    } catch (e) {
      const cancelled = e instanceof CancelledFailure || ctx.signal.aborted;
      metrics.observeShard({
        algorithm,
        backend: backendName(),
        seconds: secondsSince(started),
        tasks,
        outcome: cancelled ? "cancelled" : "failed",
        ...(cancelled ? {} : { errorType: errorTypeOf(e) }),
        attempt,
      });
      throw e;
    }
  }

  async function runShardAttempt(input: RunShardInput, config: RunConfig, ctx: ActivityContext, started: number): Promise<RunShardOutput> {
    const { runId, iteration, shardIndex, taskStart, taskEnd } = input;
    if (!isCount(taskStart) || !isCount(taskEnd) || taskStart >= taskEnd || taskEnd > config.metaBatchSize) {
      throw invalidInput(
        `shard ${shardIndex} has task range [${taskStart}, ${taskEnd}), outside [0, ${config.metaBatchSize})`,
        "pass a range from shardPlan(config): integers with taskStart < taskEnd ≤ metaBatchSize",
      );
    }
    const key = shardKey(runId, iteration, shardIndex);
    // The first heartbeat goes out one interval in, not at once: Temporal needs none from a shard
    // that ends before its heartbeat timeout, and each costs a round trip to the server (a whole
    // shard of a small model is a few milliseconds). Cancellation is still seen between steps
    // through the signal, whatever the heartbeats. The attempt's start counts as a beat (the
    // server's heartbeat clock starts with it); `silent` is the longest gap between beats, what
    // the heartbeat timeout has to outlast (the workflow sizes later rounds' timeout from it).
    let lastBeat = started;
    let silent = 0;
    /** Heartbeat, at most once per interval (a beat is a round trip to the server). */
    const maybeBeat = (details: Record<string, unknown>) => {
      const now = performance.now();
      if (now - lastBeat < heartbeatIntervalMs) return;
      ctx.heartbeat({ iteration, shardIndex, ...details });
      silent = Math.max(silent, now - lastBeat);
      lastBeat = now;
    };
    // While the attempt waits on the store (or on anything else asynchronous) a timer beats for it;
    // while tfjs holds the thread, the inner-loop hooks below do.
    // (An interval of 0, tests only, beats at every hook and needs no timer.)
    const ticker = heartbeatIntervalMs > 0 ? setInterval(() => maybeBeat({ waiting: true }), heartbeatIntervalMs) : undefined;
    let sum: Params | undefined;
    let data: Params | undefined;
    let lease: Awaited<ReturnType<typeof cache.acquire>> | undefined;
    try {
      // A cold worker builds the learner and reads its data set here (synchronously: no beat).
      const { setup, runner } = builds.get(config);
      if (ctx.signal.aborted) throw cancellation(ctx.signal);
      lease = await cache.acquire(input.paramsKey);
      const params = lease.params;
      // Task content is a pure function of (seed, iteration, index): a retry recomputes the same shard.
      const tasks = Array.from({ length: taskEnd - taskStart }, (_, j) => setup.train.task(config.seed, "train", iteration, taskStart + j));
      // Inner-loop timing: each afterTask closes the tasks done since the previous one (one task,
      // or a whole batch when tasks run batched over a task axis).
      const backend = backendName();
      let timedDone = 0;
      let taskStarted = performance.now();
      // Simulated compute stands for each task's whole cost, its real inner loops included: task
      // i is done no earlier than simulatedTaskMs·(i + 1) after the first began, however long the
      // real work and each sleep's timer took (deadlines, so neither adds up over the tasks).
      const computeStarted = taskStarted;
      const result = await runner.runShard(params, tasks, {
        onInnerStep: (taskOffset, step) => {
          // Throwing here aborts the shard; the algorithm frees its tensors before the error surfaces.
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          maybeBeat({ task: taskStart + taskOffset, step });
        },
        afterTask: async (done) => {
          if (simulatedTaskMs > 0) await simulateComputeUntil(computeStarted + done * simulatedTaskMs, ctx, maybeBeat);
          metrics.observeTask({ algorithm: config.algorithm, backend, seconds: secondsSince(taskStarted), innerSteps: config.innerSteps, tasks: done - timedDone });
          timedDone = done;
          maybeBeat({ tasksDone: done });
          // Let queued heartbeats go out and a cancellation request come in between tasks.
          await yieldToEventLoop();
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          taskStarted = performance.now();
        },
      });
      sum = result.sum;
      data = result.data;
      const summary = summarize(result.metrics);
      if (!summaryFinite(summary) || !allFinite(sum)) {
        throw nonFiniteLoss(`shard ${shardIndex} of iteration ${iteration} (tasks ${taskStart}–${taskEnd - 1})`);
      }
      // Fixed key: a retried attempt overwrites the same blob with the same bytes. Recomputable: the
      // result is a pure function of (seed, iteration, shard), so a result lost to a crash is rerun
      // by the workflow (ShardResultUnusable) rather than paid for with an fsync on every shard.
      await store.put(key, serializeParams(shardBlobMap({ sum, data }), { runId, iteration, shardIndex, taskStart, taskEnd }), { recomputable: true });
      const seconds = secondsSince(started);
      const silentSeconds = Math.max(silent, performance.now() - lastBeat) / 1000;
      log("runShard", { runId, iteration, shardIndex, tasks: tasks.length, seconds, silentSeconds, postLoss: summary.postLoss });
      return { resultKey: key, metrics: summary, backend, seconds, silentSeconds };
    } finally {
      clearInterval(ticker);
      dispose(sum, data);
      lease?.release();
    }
  }
  return runShard;
}
