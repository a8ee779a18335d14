// The activities of a meta-training run as a factory over ports (a blob store, a log, the activity context); the worker wires real ones.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import * as tf from "@tensorflow/tfjs";
import { ApplicationFailure, CancelledFailure, Context } from "@temporalio/activity";
import type {
  CheckpointManifest, EvaluateInput, EvaluationSummary, InitRunInput, LoadCheckpointInput, MetaTrainingActivities,
  OuterStepInput, RunShardInput, RunShardOutput, StateKeys, TaskMetricsSummary, WriteCheckpointInput, WriteCheckpointOutput,
} from "../contracts/activities.js";
import { parseRunConfig, type RunConfig } from "../contracts/config.js";
import type { TaskMetrics } from "../meta/algorithms/types.js";
import { evaluate as evaluateParams } from "../meta/evaluate.js";
import { deserializeState, reptileStepSize, serializeState, type OuterState } from "../meta/optimizers.js";
import { allFinite, CorruptBlobError, decodeArrays, deserializeParams, dispose, serializeParams, sumInOrder, type Params } from "../meta/params.js";
import { deriveSeed, Stream } from "../meta/rng.js";
import { initialParams, meanOf, outerOptimizer } from "../meta/trainer.js";
import { BlobCorrupt, BlobNotFound, type BlobStore } from "../storage/blobstore.js";
import { noopMetrics, type MetricsPort } from "../telemetry/metrics.js";
import { checkpointManifestKey, contentAddress, latestCheckpointKey, optimKey, paramsKey, shardKey } from "../storage/keys.js";
import { BuildCache, modelFor } from "./build.js";
import { blobMismatch, cancellation, invalidInput, nonFiniteLoss, toActivityFailure } from "./errors.js";
import { ParamsCache } from "./params-cache.js";

export { ActivityErrorTypes } from "./errors.js";
export { modelFor, familyFor } from "./build.js";

/** What an activity needs from Temporal: heartbeats, the cancellation signal and the attempt number. */
export interface ActivityContext {
  heartbeat(details?: unknown): void;
  signal: AbortSignal;
  /** Temporal attempt of this execution, 1 for the first (attempts above 1 are retries, for metrics). Default 1. */
  attempt?: number;
}

export type ActivityLog = (msg: string, fields?: Record<string, unknown>) => void;

export interface ActivityDeps {
  /** Where parameters, optimizer state, shard results and checkpoints live. */
  store: BlobStore;
  /** Structured log line sink. Default: discard. */
  log?: ActivityLog;
  /** The current activity's context. Default: `Context.current()` of @temporalio/activity. */
  context?: () => ActivityContext;
  /** Parameter sets cached per worker by key (LRU; evicted tensors are disposed). Default 4. */
  paramsCacheSize?: number;
  /** The tfjs backend in use, reported with shard results. Default `tf.getBackend()`. */
  backendName?: () => string;
  /** Least time between two heartbeats sent from inner steps, in ms; every task end heartbeats regardless. Default 1000. */
  heartbeatIntervalMs?: number;
  /** Clock for manifest timestamps. Default `new Date()`. */
  now?: () => Date;
  /**
   * Where activities report metrics (telemetry/): inner loops, shard outcomes, outer steps, run
   * progress, checkpoints, parameter-cache lookups. Default `noopMetrics`. Evaluations and run
   * state are reported by the workflow's sinks on the coordinator, not here (docs/observability.md).
   */
  metrics?: MetricsPort;
  /**
   * Benchmarks only: sleep this many ms per task after its real work (heartbeating and honouring
   * cancellation), to stand in for GPU compute when measuring orchestration scaling. Default 0.
   */
  simulatedTaskMs?: number;
}

/** Sleep `ms` in slices of at most 1 s, heartbeating and stopping at once on cancellation. */
async function simulateCompute(ms: number, ctx: ActivityContext, beat: (d: Record<string, unknown>) => void): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (ctx.signal.aborted) throw cancellation(ctx.signal);
    await new Promise((r) => setTimeout(r, Math.min(1000, end - performance.now())));
    beat({ simulated: true });
  }
}

/** The Temporal activity context, adapted to the port. */
function temporalContext(): ActivityContext {
  const c = Context.current();
  return { heartbeat: (d) => c.heartbeat(d), signal: c.cancellationSignal, attempt: c.info.attempt };
}

/** Format of checkpoint manifests (also in contracts' CheckpointManifest type). */
export const CHECKPOINT_FORMAT = "metatrain-checkpoint/1" as const;

/** Body of a run's `latest` pointer. */
export interface LatestPointer {
  manifestKey: string;
  iteration: number;
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

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isCount(n: unknown, min = 0): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= min;
}

const secondsSince = (start: number): number => (performance.now() - start) / 1000;

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

/** Every activity of a run over the given ports; errors leave as typed ApplicationFailures (see errors.ts). */
export function createActivities(deps: ActivityDeps): MetaTrainingActivities {
  const { store } = deps;
  const log: ActivityLog = deps.log ?? (() => {});
  const context = deps.context ?? temporalContext;
  const backendName = deps.backendName ?? (() => tf.getBackend());
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 1000;
  const now = deps.now ?? (() => new Date());
  const simulatedTaskMs = deps.simulatedTaskMs ?? 0;
  const metrics = deps.metrics ?? noopMetrics;
  const builds = new BuildCache();

  /** Decode a tensor blob; a bad checksum or layout becomes BlobCorrupt naming the key. */
  function decodeTensors(key: string, bytes: Uint8Array): { params: Params; meta: unknown } {
    try {
      return deserializeParams(bytes);
    } catch (e) {
      if (e instanceof CorruptBlobError) throw new BlobCorrupt(key, e.message);
      throw e;
    }
  }

  async function readState(key: string): Promise<OuterState> {
    const bytes = await store.get(key);
    try {
      return deserializeState(bytes);
    } catch (e) {
      throw new BlobCorrupt(key, (e as Error).message);
    }
  }

  async function readJson(key: string): Promise<unknown> {
    const bytes = await store.get(key);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new BlobCorrupt(key, `not valid JSON (${(e as Error).message})`);
    }
  }

  const cache = new ParamsCache({
    capacity: deps.paramsCacheSize ?? 4,
    load: async (key) => decodeTensors(key, await store.get(key)).params,
    onEvict: (key) => {
      log("params cache evicted", { key });
      metrics.observeParamsCacheEviction();
    },
    onLookup: (hit) => metrics.observeParamsCache(hit),
  });

  /** Write under a content address; an existing blob already holds these bytes (retries are no-ops). */
  async function putContentAddressed(keyOf: (runId: string, sha: string) => string, runId: string, bytes: Uint8Array): Promise<string> {
    const key = keyOf(runId, contentAddress(bytes));
    if (!(await store.exists(key))) await store.put(key, bytes);
    return key;
  }

  /** Parameters as stored: the meta names the model so a blob says what it is. */
  const paramsMeta = (config: RunConfig) => ({ kind: "params", model: modelFor(config).name });

  /** Run `fn`, mapping whatever it throws through the one error mapping. */
  const mapped =
    <I, O>(fn: (input: I) => Promise<O>) =>
    async (input: I): Promise<O> => {
      try {
        return await fn(input);
      } catch (e) {
        throw toActivityFailure(e);
      }
    };

  async function initRun({ runId, config: raw }: InitRunInput): Promise<StateKeys> {
    const config = parseRunConfig(raw);
    const params = initialParams(modelFor(config), config.seed);
    let owned = true;
    try {
      const state = outerOptimizer(config).initialState(params);
      const pKey = await putContentAddressed(paramsKey, runId, serializeParams(params, paramsMeta(config)));
      const oKey = await putContentAddressed(optimKey, runId, serializeState(state));
      cache.put(pKey, params);
      owned = false;
      log("initRun", { runId, paramsKey: pKey, optimKey: oKey });
      return { paramsKey: pKey, optimKey: oKey };
    } finally {
      if (owned) dispose(params);
    }
  }

  /** One shard attempt, reported as completed, failed (by error type) or cancelled, with its attempt number. */
  async function runShard(input: RunShardInput): Promise<RunShardOutput> {
    const ctx = context();
    const started = performance.now();
    const attempt = ctx.attempt ?? 1;
    const tasks = isCount(input.taskStart) && isCount(input.taskEnd) && input.taskEnd > input.taskStart ? input.taskEnd - input.taskStart : 0;
    let algorithm = algorithmOf(input.config);
    try {
      const config = parseRunConfig(input.config);
      algorithm = config.algorithm;
      const out = await runShardAttempt(input, config, ctx, started);
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
    const { family, algorithm } = builds.get(config);
    if (ctx.signal.aborted) throw cancellation(ctx.signal);
    const lease = await cache.acquire(input.paramsKey);
    let sum: Params | undefined;
    try {
      // Task content is a pure function of (seed, iteration, index): a retry recomputes the same shard.
      const tasks = Array.from({ length: taskEnd - taskStart }, (_, j) => family.task(config.seed, "train", iteration, taskStart + j));
      let lastBeat = -Infinity;
      let simulatedDone = 0;
      // Inner-loop timing: each afterTask closes the tasks done since the previous one (one task,
      // or a whole batch when tasks run batched over a task axis).
      const backend = backendName();
      let timedDone = 0;
      let taskStarted = performance.now();
      const beat = (details: Record<string, unknown>) => {
        ctx.heartbeat({ iteration, shardIndex, ...details });
        lastBeat = performance.now();
      };
      const result = await algorithm.runShard(lease.params, tasks, {
        onInnerStep: (taskOffset, step) => {
          // Throwing here aborts the shard; the algorithm frees its tensors before the error surfaces.
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          if (performance.now() - lastBeat >= heartbeatIntervalMs) beat({ task: taskStart + taskOffset, step });
        },
        afterTask: async (done) => {
          if (simulatedTaskMs > 0) await simulateCompute((done - simulatedDone) * simulatedTaskMs, ctx, beat);
          simulatedDone = done;
          metrics.observeTask({ algorithm: config.algorithm, backend, seconds: secondsSince(taskStarted), innerSteps: config.innerSteps, tasks: done - timedDone });
          timedDone = done;
          beat({ tasksDone: done });
          // Let queued heartbeats go out and a cancellation request come in between tasks.
          await yieldToEventLoop();
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          taskStarted = performance.now();
        },
      });
      sum = result.sum;
      const summary = summarize(result.metrics);
      if (!summaryFinite(summary) || !allFinite(sum)) {
        throw nonFiniteLoss(`shard ${shardIndex} of iteration ${iteration} (tasks ${taskStart}–${taskEnd - 1})`);
      }
      // Fixed key: a retried attempt overwrites the same blob with the same bytes.
      await store.put(key, serializeParams(sum, { runId, iteration, shardIndex, taskStart, taskEnd }));
      const seconds = secondsSince(started);
      log("runShard", { runId, iteration, shardIndex, tasks: tasks.length, seconds, postLoss: summary.postLoss });
      return { resultKey: key, metrics: summary, backend, seconds };
    } finally {
      dispose(sum);
      lease.release();
    }
  }

  async function outerStep(input: OuterStepInput): Promise<StateKeys> {
    const { runId, iteration, shardKeys, taskCount } = input;
    const started = performance.now();
    const config = parseRunConfig(input.config);
    if (shardKeys.length === 0) throw invalidInput(`outer step of iteration ${iteration} got no shard keys`, "pass the result keys of the shards that finished, in shard order");
    if (!isCount(taskCount, 1)) throw invalidInput(`taskCount ${taskCount} is not a positive integer`, "pass the number of tasks the given shards cover");
    if (input.metaLr !== undefined && !(Number.isFinite(input.metaLr) && input.metaLr > 0)) {
      throw invalidInput(`metaLr ${input.metaLr} is not a positive finite number`, "set a positive meta learning rate");
    }
    const optimizer = outerOptimizer(config);
    // Fetch in parallel, decode in the given order: the sum below runs strictly in that order.
    const blobs = await Promise.all(shardKeys.map((k) => store.get(k)));
    const shards: Params[] = [];
    let total: Params | undefined;
    let next: Params | undefined;
    let lease: Awaited<ReturnType<ParamsCache["acquire"]>> | undefined;
    try {
      let covered = 0;
      shardKeys.forEach((k, i) => {
        const { params, meta } = decodeTensors(k, blobs[i]!);
        shards.push(params);
        const m = isObject(meta) ? meta : {};
        if (m.runId !== runId || m.iteration !== iteration || !isCount(m.taskStart) || !isCount(m.taskEnd)) {
          throw blobMismatch(k, `holds a shard of run ${String(m.runId)} iteration ${String(m.iteration)}, not of run ${runId} iteration ${iteration}`);
        }
        covered += m.taskEnd - m.taskStart;
      });
      if (covered !== taskCount) {
        throw invalidInput(`the ${shardKeys.length} shards cover ${covered} tasks but taskCount is ${taskCount}`, "pass the number of tasks the given shards cover");
      }
      lease = await cache.acquire(input.paramsKey);
      const state = await readState(input.optimKey);
      if (state.kind !== optimizer.kind) {
        throw blobMismatch(input.optimKey, `holds ${state.kind} optimizer state but algorithm ${config.algorithm} uses ${optimizer.kind}`);
      }
      total = sumInOrder(shards);
      if (!allFinite(total)) throw nonFiniteLoss(`the shards of iteration ${iteration}`);
      // Reptile's ε anneals from the (possibly signalled) initial rate exactly as reptileOuter does; Adam takes the rate as is.
      const base = input.metaLr ?? config.metaLr;
      const lr = optimizer.kind === "reptile" ? reptileStepSize({ metaLr: base, totalIterations: config.iterations, anneal: config.anneal }, state.step) : base;
      const out = optimizer.apply(lease.params, total, taskCount, state, { lr });
      next = out.params;
      if (!allFinite(next)) throw nonFiniteLoss(`the outer step of iteration ${iteration}`);
      const pKey = await putContentAddressed(paramsKey, runId, serializeParams(next, paramsMeta(config)));
      const oKey = await putContentAddressed(optimKey, runId, serializeState(out.state));
      // The next iteration's shards (on this worker in role `all`) and outer step read these parameters.
      cache.put(pKey, next);
      next = undefined;
      log("outerStep", { runId, iteration, shards: shardKeys.length, taskCount, lr, paramsKey: pKey });
      metrics.observeOuterStep({ algorithm: config.algorithm, seconds: secondsSince(started) });
      // The iteration is done once its state is written; the workflow's sink adds the round's losses.
      metrics.setRunProgress({ runId, iteration: iteration + 1, iterations: config.iterations });
      return { paramsKey: pKey, optimKey: oKey };
    } finally {
      dispose(...shards, total, next);
      lease?.release();
    }
  }

  async function writeCheckpoint({ manifest: m }: WriteCheckpointInput): Promise<WriteCheckpointOutput> {
    const started = performance.now();
    const config = parseRunConfig(m.config);
    const manifestKey = checkpointManifestKey(m.runId, m.iteration);
    // A manifest naming missing blobs could never be resumed from: refuse to write it.
    for (const k of [m.paramsKey, m.optimKey]) if (!(await store.exists(k))) throw new BlobNotFound(k, store.describe());
    const manifest: CheckpointManifest = { format: CHECKPOINT_FORMAT, ...m, config, createdAt: now().toISOString() };
    const manifestBytes = utf8(JSON.stringify(manifest, null, 2));
    await store.put(manifestKey, manifestBytes, { contentType: "application/json" });
    // Pointer last: whoever reads `latest` finds a complete manifest behind it.
    const pointer: LatestPointer = { manifestKey, iteration: m.iteration };
    const pointerBytes = utf8(JSON.stringify(pointer));
    await store.put(latestCheckpointKey(m.runId), pointerBytes, { contentType: "application/json" });
    // The parameters and optimizer state it names were written (content-addressed) by the outer step.
    metrics.observeCheckpoint(secondsSince(started), manifestBytes.byteLength + pointerBytes.byteLength);
    log("writeCheckpoint", { runId: m.runId, iteration: m.iteration, manifestKey });
    return { manifestKey };
  }

  async function loadCheckpoint({ key }: LoadCheckpointInput): Promise<CheckpointManifest> {
    let manifestKey = key;
    let doc = await readJson(key);
    if (isObject(doc) && doc.format === undefined && typeof doc.manifestKey === "string") {
      manifestKey = doc.manifestKey;
      doc = await readJson(manifestKey);
    }
    const fix = "pass a manifest key (runs/<runId>/checkpoints/<iteration>/manifest.json) or a run's runs/<runId>/checkpoints/latest.json";
    if (!isObject(doc) || doc.format !== CHECKPOINT_FORMAT) {
      const format = isObject(doc) ? JSON.stringify(doc.format) : "none";
      throw invalidInput(`"${manifestKey}" is not a ${CHECKPOINT_FORMAT} manifest (format ${format})`, fix);
    }
    const bad: string[] = ["runId", "paramsKey", "optimKey", "createdAt"].filter((f) => typeof doc[f] !== "string");
    if (!isCount(doc.iteration)) bad.push("iteration");
    if (typeof doc.metaLr !== "number") bad.push("metaLr");
    if (!isObject(doc.metrics)) bad.push("metrics");
    if (bad.length) throw blobMismatch(manifestKey, `is a checkpoint manifest with missing or invalid fields: ${bad.join(", ")}`);
    // Read the blobs the checkpoint names, whatever the workers' caches hold: a resume from a
    // damaged checkpoint must fail here, at once, rather than train on from cached tensors.
    for (const k of [doc.paramsKey as string, doc.optimKey as string]) await verifyStateBlob(k);
    return { ...(doc as unknown as CheckpointManifest), config: parseRunConfig(doc.config) };
  }

  /** A content-addressed state blob: the store's checksum, the tensor format's CRC, the address. */
  async function verifyStateBlob(key: string): Promise<void> {
    const bytes = await store.get(key);
    decodeArrays(bytes);
    const sha = /\/([0-9a-f]{64})\.mtt$/.exec(key)?.[1];
    if (sha !== undefined && contentAddress(bytes) !== sha) {
      throw blobMismatch(key, "does not hash to the content address in its key");
    }
  }

  async function evaluate(input: EvaluateInput): Promise<EvaluationSummary> {
    const { iteration } = input;
    const ctx = context();
    const config = parseRunConfig(input.config);
    const { model, family } = builds.get(config);
    const lease = await cache.acquire(input.paramsKey);
    try {
      const r = await evaluateParams(model, family, lease.params, {
        tasks: config.evalTasks,
        steps: [config.evalSteps],
        innerLr: config.innerLr,
        // One held-out task stream per run, the same at every iteration, so evaluations compare.
        seed: deriveSeed(config.seed, Stream.evalTask),
        split: "test",
        onTask: (done, total) => {
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          ctx.heartbeat({ iteration, evaluated: done, of: total });
        },
      });
      const res = r.results[0]!;
      if (!Number.isFinite(res.loss.mean) || (res.accuracy && !Number.isFinite(res.accuracy.mean))) {
        throw nonFiniteLoss(`evaluation of iteration ${iteration} (${config.evalSteps} test-time steps)`);
      }
      log("evaluate", { runId: input.runId, iteration, loss: res.loss.mean, accuracy: res.accuracy?.mean });
      return { iteration, steps: res.steps, loss: res.loss, ...(res.accuracy ? { accuracy: res.accuracy } : {}), batchNorm: r.batchNorm };
    } finally {
      lease.release();
    }
  }

  return {
    initRun: mapped(initRun),
    runShard: mapped(runShard),
    outerStep: mapped(outerStep),
    writeCheckpoint: mapped(writeCheckpoint),
    evaluate: mapped(evaluate),
    loadCheckpoint: mapped(loadCheckpoint),
  };
}
