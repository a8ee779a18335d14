// Every metric a metatrain process exports: one prom-client registry per process, typed handles, and the MetricsPort that activities and workflow sinks report through.
//
// Rules (checked over the whole registry by test/unit/telemetry.test.ts):
//   - names start with `metatrain_`, carry their base unit (`_seconds`, `_bytes`, `_ratio`), counters end in `_total`;
//   - labels have bounded cardinality: algorithm, backend, operation, store, phase, error_type,
//     task_queue, state — each capped by `boundedLabel` — and `run_id` on run-level gauges only
//     (runs per process are few, capped by `maxRuns` and forgotten after `runTtlSeconds`);
//     never a task index, shard index, iteration number or storage key.
import type { AdaptationMetrics, MeanCI } from "../contracts/activities.js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from "prom-client";

// ---- the port ------------------------------------------------------------------------------------

/** Outcome of one shard attempt. */
export type ShardOutcome = "completed" | "failed" | "cancelled";

/** Blob store operations timed by `observeStorage` (see telemetry/storage.ts). */
export type StorageOperation = "get" | "put" | "exists" | "list" | "delete";

/** Lifecycle state of a run, as `metatrain_run_state{state}` shows it. */
export type RunState = "running" | "paused" | "finished" | "cancelled" | "failed";
export const RUN_STATES: readonly RunState[] = ["running", "paused", "finished", "cancelled", "failed"];

/** Mean metrics over a meta-iteration's tasks (contracts' one metrics type). */
export type IterationMetrics = AdaptationMetrics;

/** A mean with the half-width of its 95% confidence interval. */
export type MeanCi = MeanCI;

export interface TaskObservation {
  algorithm: string;
  backend: string;
  /** Wall time of the task's inner loop (adaptation steps plus the query evaluation); of all `tasks` together when batched. */
  seconds: number;
  /** Inner (adaptation) steps per task. */
  innerSteps: number;
  /** Tasks run together as one batch over a task axis; each is observed at `seconds / tasks`. Default 1. */
  tasks?: number;
}

export interface ShardObservation {
  algorithm: string;
  backend: string;
  /** Wall time of the attempt, from activity start to result written (or failure). */
  seconds: number;
  /** Tasks in the shard: counted as completed on `completed`, as failed on `failed`, not at all on `cancelled`. */
  tasks: number;
  outcome: ShardOutcome;
  /** Failure type (an ActivityErrorTypes name) when `outcome` is `failed`. Default "Other". */
  errorType?: string;
  /** Temporal attempt number (1 for the first try); attempts above 1 count as retries. Default 1. */
  attempt?: number;
}

export interface OuterStepObservation {
  algorithm: string;
  /** Wall time of the outer step activity: fetch shard blobs, sum, apply the optimizer, write state. */
  seconds: number;
}

export interface RunProgressReport {
  runId: string;
  /** Meta-iterations completed (the next one to run). */
  iteration: number;
  /** Meta-iterations the run is configured for (`config.iterations`). */
  iterations: number;
  /** Task-weighted means of the iteration just completed (the workflow's `round.metrics`). */
  latest?: IterationMetrics;
}

export interface EvaluationReport {
  runId: string;
  /** Iterations completed when the evaluated parameters were written. */
  iteration: number;
  loss: MeanCi;
  accuracy?: MeanCi;
}

export interface StorageObservationOptions {
  /** Store kind: `s3`, `fs`, `memory`, … Default "unknown". */
  store?: string;
  /** False when the operation threw (counted in `metatrain_storage_errors_total`). Default true. */
  ok?: boolean;
}

/**
 * What activities, workers and workflow sinks report through. `createMetrics` implements it over
 * prom-client; `noopMetrics` discards everything (tests); `recordingMetrics` keeps the calls.
 */
export interface MetricsPort {
  /** GPU: one task's inner loop ended, or a batch of `tasks` (call from the algorithm's `afterTask`). */
  observeTask(o: TaskObservation): void;
  /** GPU: a shard attempt ended, in success, failure or cancellation. */
  observeShard(o: ShardObservation): void;
  /** Coordinator: an outer step ended. */
  observeOuterStep(o: OuterStepObservation): void;
  /** Coordinator or workflow sink: where a run stands after a meta-iteration. Idempotent per iteration. */
  setRunProgress(p: RunProgressReport): void;
  /** Workflow sink (or the activity that knows): the run's lifecycle state. */
  setRunState(runId: string, state: RunState): void;
  /** GPU or workflow sink: the latest evaluation of a run on held-out tasks. */
  observeEvaluation(e: EvaluationReport): void;
  /** Any role: one blob store operation (`bytes` read or written; 0 for exists/list/delete). */
  observeStorage(op: StorageOperation, bytes: number, seconds: number, opts?: StorageObservationOptions): void;
  /** Coordinator: a checkpoint was written (`bytes` written by the checkpoint step). */
  observeCheckpoint(seconds: number, bytes: number): void;
  /** Any role: a lookup in the per-worker parameters cache. */
  observeParamsCache(hit: boolean): void;
  /** Any role: the parameters cache evicted a set. */
  observeParamsCacheEviction(): void;
}

/** A MetricsPort that discards everything. */
export const noopMetrics: MetricsPort = Object.freeze({
  observeTask() {},
  observeShard() {},
  observeOuterStep() {},
  setRunProgress() {},
  setRunState() {},
  observeEvaluation() {},
  observeStorage() {},
  observeCheckpoint() {},
  observeParamsCache() {},
  observeParamsCacheEviction() {},
});

/** One recorded MetricsPort call: the method name and its arguments. */
export interface RecordedCall {
  method: keyof MetricsPort;
  args: unknown[];
}

/** A MetricsPort that records every call in `calls` (for asserting what activities report). */
export function recordingMetrics(): MetricsPort & { calls: RecordedCall[] } {
  const calls: RecordedCall[] = [];
  const port = {} as MetricsPort;
  for (const method of Object.keys(noopMetrics) as (keyof MetricsPort)[]) {
    (port as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      calls.push({ method, args });
    };
  }
  return Object.assign(port, { calls });
}

// ---- options -------------------------------------------------------------------------------------

/** What `tf.memory()` returns, as far as metrics need it. */
export interface TfMemoryInfo {
  numTensors: number;
  numBytes: number;
}

export interface CreateMetricsOptions {
  /** Registry to register into. Default: a new one (one per process: create metrics once). */
  registry?: Registry;
  /** Labels put on every series of the registry, e.g. `{ role: "gpu", worker: hostname() }`. Default none. */
  defaultLabels?: { role: string; worker: string };
  /** Register prom-client's default process and Node.js metrics (`process_resident_memory_bytes`, …). Default true. */
  defaultMetrics?: boolean;
  /**
   * Reads TensorFlow.js memory at scrape time, e.g. `() => tf.memory()`. Default: none, and the
   * `metatrain_tfjs_*` gauges are not registered (a coordinator without tfjs has nothing to report).
   */
  tfMemory?: () => TfMemoryInfo;
  /** Run-level series of a run not reported on for this long are removed. Default 86400 (24 h). */
  runTtlSeconds?: number;
  /** Runs with run-level series kept at most; the least recently reported is removed beyond. Default 16. */
  maxRuns?: number;
  /** Monotonic clock in milliseconds (iteration durations, TTL). Default `performance.now()`. */
  monotonicMs?: () => number;
  /** Wall clock in milliseconds (`metatrain_run_updated_timestamp_seconds`). Default `Date.now()`. */
  wallMs?: () => number;
}

/** Histogram buckets, in base units. */
export const BUCKETS = {
  /** One task's inner loop: ~0.1 s (MLP, wasm) to minutes (Conv4 on cpu). */
  innerLoopSeconds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
  shardSeconds: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
  iterationSeconds: [0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200],
  outerStepSeconds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
  storageSeconds: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  /** 256 B to 1 GiB, ×4. */
  storageBytes: exponentialBuckets(256, 4, 12),
  checkpointSeconds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  /** 1 KiB to 4 GiB, ×4. */
  checkpointBytes: exponentialBuckets(1024, 4, 12),
} as const;

/** Distinct values a bounded label takes before further ones are reported as `other`. */
export const MAX_LABEL_VALUES = 32;

const LABEL_VALUE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/; // storage/keys.ts RUN_ID_PATTERN fits

/**
 * A label whose values are capped: the first `MAX_LABEL_VALUES` distinct well-formed values pass,
 * anything else becomes `other`, so a bug upstream cannot blow up the series count.
 */
function boundedLabel(fallback = "other"): (value: string | undefined) => string {
  const seen = new Set<string>();
  return (value) => {
    if (value === undefined || !LABEL_VALUE.test(value)) return fallback;
    if (seen.has(value)) return value;
    if (seen.size >= MAX_LABEL_VALUES) return "other";
    seen.add(value);
    return value;
  };
}

const nonNegative = (x: number): number => (Number.isFinite(x) && x > 0 ? x : 0);

// ---- the metrics ---------------------------------------------------------------------------------

/** The typed metric handles, the port, and helpers for the worker process. */
export interface Metrics extends MetricsPort {
  registry: Registry;
  /** The `metatrain_*` metric handles, for direct use and tests. */
  m: MetricHandles;
  /** Set `metatrain_backend_info{backend}` to 1 (and any previous backend to 0 … removed). */
  setBackend(backend: string): void;
  /**
   * Report activities in flight against slots for one Temporal worker: `inFlight` is read at
   * scrape time, e.g. `() => worker.getStatus().numInFlightActivities`. Returns an unregister function.
   */
  watchWorker(w: { taskQueue: string; slots: number; inFlight: () => number }): () => void;
  /** Count an activity in flight until the returned function is called (when no Worker status is at hand). */
  trackActivity(taskQueue: string): () => void;
  /** Remove a run's series now. */
  forgetRun(runId: string): void;
  /** Runs with run-level series, least recently reported first. */
  runs(): string[];
  /** The exposition text, as `/metrics` serves it. */
  text(): Promise<string>;
}

/** Scrape-time callbacks (prom-client `collect`), run before the metric they belong to is read. */
interface CollectHooks {
  /** Drop expired and excess runs (on the first run-level gauge, so it runs before the others are read). */
  pruneRuns(): void;
  /** Refresh activities in flight and slots from the watched workers. */
  refreshActivities(): void;
  /** Read tf.memory(), when given. */
  readTfMemory?: () => void;
}

function defineMetrics(registers: Registry[], hooks: CollectHooks) {
  const r = registers;
  const readTf = hooks.readTfMemory;
  return {
    // inner loops (gpu)
    innerLoopDuration: new Histogram({
      name: "metatrain_inner_loop_duration_seconds",
      help: "Wall time of one task's inner loop (adaptation steps plus query evaluation), by algorithm and tfjs backend.",
      labelNames: ["algorithm", "backend"] as const,
      buckets: [...BUCKETS.innerLoopSeconds],
      registers: r,
    }),
    innerSteps: new Counter({
      name: "metatrain_inner_steps_total",
      help: "Inner-loop (adaptation) steps run; rate() gives inner steps per second.",
      labelNames: ["algorithm", "backend"] as const,
      registers: r,
    }),
    shardDuration: new Histogram({
      name: "metatrain_shard_duration_seconds",
      help: "Wall time of one shard attempt (a runShard activity), by outcome.",
      labelNames: ["algorithm", "backend", "outcome"] as const,
      buckets: [...BUCKETS.shardSeconds],
      registers: r,
    }),
    tasksCompleted: new Counter({
      name: "metatrain_tasks_completed_total",
      help: "Tasks of shards that completed (each task counted once per successful shard attempt).",
      labelNames: ["algorithm"] as const,
      registers: r,
    }),
    tasksFailed: new Counter({
      name: "metatrain_tasks_failed_total",
      help: "Tasks of shard attempts that failed (a retried shard counts its tasks again on each failure).",
      labelNames: ["algorithm"] as const,
      registers: r,
    }),
    shardsCompleted: new Counter({
      name: "metatrain_shards_completed_total",
      help: "Shard attempts that completed and wrote their result blob.",
      labelNames: ["algorithm"] as const,
      registers: r,
    }),
    shardsFailed: new Counter({
      name: "metatrain_shards_failed_total",
      help: "Shard attempts that failed, by error type (ActivityErrorTypes name, or Other).",
      labelNames: ["algorithm", "error_type"] as const,
      registers: r,
    }),
    shardsCancelled: new Counter({
      name: "metatrain_shards_cancelled_total",
      help: "Shard attempts cancelled (run cancelled, or a straggler dropped after the shard deadline).",
      labelNames: ["algorithm"] as const,
      registers: r,
    }),
    shardRetries: new Counter({
      name: "metatrain_shard_retries_total",
      help: "Shard attempts that were retries (Temporal attempt > 1), whatever their outcome.",
      labelNames: ["algorithm"] as const,
      registers: r,
    }),
    // outer loop (coordinator or workflow sink); run-level gauges carry run_id
    metaIteration: new Gauge({
      name: "metatrain_meta_iteration",
      help: "Meta-iterations completed by the run (the next iteration to run).",
      labelNames: ["run_id"] as const,
      registers: r,
      collect: hooks.pruneRuns,
    }),
    runIterations: new Gauge({
      name: "metatrain_run_iterations",
      help: "Meta-iterations the run is configured for (progress = metatrain_meta_iteration / this).",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    runState: new Gauge({
      name: "metatrain_run_state",
      help: "1 for the run's current lifecycle state (running, paused, finished, cancelled, failed), 0 for the others.",
      labelNames: ["run_id", "state"] as const,
      registers: r,
    }),
    runUpdated: new Gauge({
      name: "metatrain_run_updated_timestamp_seconds",
      help: "Unix time of this process's latest report on the run; the freshest process's run-level series are the current ones.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    iterationLoss: new Gauge({
      name: "metatrain_iteration_loss",
      help: "Mean query loss over the latest meta-iteration's tasks, before (phase=pre) and after (phase=post) adaptation.",
      labelNames: ["run_id", "phase"] as const,
      registers: r,
    }),
    iterationAccuracy: new Gauge({
      name: "metatrain_iteration_accuracy_ratio",
      help: "Mean query accuracy (0..1) over the latest meta-iteration's tasks, before and after adaptation (classification only).",
      labelNames: ["run_id", "phase"] as const,
      registers: r,
    }),
    iterationDuration: new Histogram({
      name: "metatrain_meta_iteration_duration_seconds",
      help: "Wall time of one meta-iteration: between consecutive progress reports of a run on this process.",
      buckets: [...BUCKETS.iterationSeconds],
      registers: r,
    }),
    outerStepDuration: new Histogram({
      name: "metatrain_outer_step_duration_seconds",
      help: "Wall time of one outer step (sum shard blobs, apply the outer optimizer, write state).",
      labelNames: ["algorithm"] as const,
      buckets: [...BUCKETS.outerStepSeconds],
      registers: r,
    }),
    evaluationIteration: new Gauge({
      name: "metatrain_evaluation_iteration",
      help: "Iteration of the run's latest evaluation on held-out tasks.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    evaluationTasks: new Gauge({
      name: "metatrain_evaluation_tasks",
      help: "Held-out tasks in the run's latest evaluation.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    evaluationLoss: new Gauge({
      name: "metatrain_evaluation_loss",
      help: "Mean post-adaptation loss of the run's latest evaluation on held-out tasks.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    evaluationLossCi95: new Gauge({
      name: "metatrain_evaluation_loss_ci95",
      help: "Half-width of the 95% confidence interval of metatrain_evaluation_loss.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    evaluationAccuracy: new Gauge({
      name: "metatrain_evaluation_accuracy_ratio",
      help: "Mean post-adaptation accuracy (0..1) of the run's latest evaluation on held-out tasks (classification only).",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    evaluationAccuracyCi95: new Gauge({
      name: "metatrain_evaluation_accuracy_ci95_ratio",
      help: "Half-width of the 95% confidence interval of metatrain_evaluation_accuracy_ratio.",
      labelNames: ["run_id"] as const,
      registers: r,
    }),
    // storage
    storageDuration: new Histogram({
      name: "metatrain_storage_operation_duration_seconds",
      help: "Latency of blob store operations, by operation and store kind (failed ones included).",
      labelNames: ["operation", "store"] as const,
      buckets: [...BUCKETS.storageSeconds],
      registers: r,
    }),
    storageBytes: new Histogram({
      name: "metatrain_storage_object_size_bytes",
      help: "Bytes read by gets and written by puts; rate() of the _sum is storage throughput.",
      labelNames: ["operation", "store"] as const,
      buckets: [...BUCKETS.storageBytes],
      registers: r,
    }),
    storageErrors: new Counter({
      name: "metatrain_storage_errors_total",
      help: "Blob store operations that threw (not found included), by operation and store kind.",
      labelNames: ["operation", "store"] as const,
      registers: r,
    }),
    checkpointDuration: new Histogram({
      name: "metatrain_checkpoint_duration_seconds",
      help: "Wall time of writing one checkpoint (manifest, then the latest pointer).",
      buckets: [...BUCKETS.checkpointSeconds],
      registers: r,
    }),
    checkpointSize: new Histogram({
      name: "metatrain_checkpoint_size_bytes",
      help: "Bytes written by one checkpoint step.",
      buckets: [...BUCKETS.checkpointBytes],
      registers: r,
    }),
    paramsCacheHits: new Counter({ name: "metatrain_params_cache_hits_total", help: "Parameter-set lookups served from the worker's cache.", registers: r }),
    paramsCacheMisses: new Counter({ name: "metatrain_params_cache_misses_total", help: "Parameter-set lookups that read the blob store.", registers: r }),
    paramsCacheEvictions: new Counter({ name: "metatrain_params_cache_evictions_total", help: "Parameter sets evicted from the worker's cache.", registers: r }),
    // worker health
    backendInfo: new Gauge({
      name: "metatrain_backend_info",
      help: "1 for the TensorFlow.js backend this process runs on (tensorflow, wasm, cpu).",
      labelNames: ["backend"] as const,
      registers: r,
    }),
    activitiesInFlight: new Gauge({
      name: "metatrain_activities_in_flight",
      help: "Activities executing now on this process, by task queue.",
      labelNames: ["task_queue"] as const,
      registers: r,
      collect: hooks.refreshActivities,
    }),
    activitySlots: new Gauge({
      name: "metatrain_activity_slots",
      help: "Activities this process runs at most at once (maxConcurrentActivityTaskExecutions), by task queue.",
      labelNames: ["task_queue"] as const,
      registers: r,
      collect: hooks.refreshActivities,
    }),
    ...(readTf
      ? {
          tfjsTensors: new Gauge({ name: "metatrain_tfjs_tensors", help: "Tensors TensorFlow.js holds now (tf.memory().numTensors).", registers: r, collect: readTf }),
          tfjsBytes: new Gauge({ name: "metatrain_tfjs_memory_bytes", help: "Bytes TensorFlow.js tensors hold now (tf.memory().numBytes).", registers: r, collect: readTf }),
        }
      : {}),
  };
}

export type MetricHandles = ReturnType<typeof defineMetrics>;

interface RunEntry {
  /** Monotonic ms of the latest report (TTL, LRU). */
  touchedMs: number;
  /** Iteration and time of the latest progress report on this process (iteration durations). */
  lastIteration?: number;
  lastIterationMs?: number;
  /** Lifecycle state last set. */
  state?: RunState;
}

/**
 * Create the process's metrics. Call once per process (a second call on the same registry throws,
 * as prom-client refuses duplicate names); pass `registry` in tests to stay off the global one.
 */
export function createMetrics(opts: CreateMetricsOptions = {}): Metrics {
  const registry = opts.registry ?? new Registry();
  if (opts.defaultLabels) registry.setDefaultLabels({ ...opts.defaultLabels });
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const tfMemory = opts.tfMemory;
  const monotonicMs = opts.monotonicMs ?? (() => performance.now());
  const wallMs = opts.wallMs ?? (() => Date.now());
  const ttlMs = (opts.runTtlSeconds ?? 86_400) * 1000;
  const maxRuns = opts.maxRuns ?? 16;
  if (!(ttlMs > 0)) throw new RangeError(`runTtlSeconds must be > 0, got ${opts.runTtlSeconds}`);
  if (!Number.isInteger(maxRuns) || maxRuns < 1) throw new RangeError(`maxRuns must be an integer ≥ 1, got ${opts.maxRuns}`);

  const algorithmLabel = boundedLabel("unknown");
  const backendLabel = boundedLabel("unknown");
  const errorTypeLabel = boundedLabel("Other");
  const storeLabel = boundedLabel("unknown");
  const queueLabel = boundedLabel("unknown");

  const runs = new Map<string, RunEntry>(); // insertion order = least recently reported first
  const watched = new Map<symbol, { taskQueue: string; slots: number; inFlight: () => number }>();
  const tracked = new Map<string, number>();

  // The hooks run at scrape time only, after `m` below is assigned.
  const m: MetricHandles = defineMetrics([registry], {
    pruneRuns,
    refreshActivities,
    ...(tfMemory
      ? {
          readTfMemory: () => {
            const mem = tfMemory();
            m.tfjsTensors?.set(mem.numTensors);
            m.tfjsBytes?.set(mem.numBytes);
          },
        }
      : {}),
  });

  // ---- run-level series: bounded by maxRuns and runTtlSeconds ----
  const runGauges = [m.metaIteration, m.runIterations, m.runUpdated, m.evaluationIteration, m.evaluationTasks, m.evaluationLoss, m.evaluationLossCi95, m.evaluationAccuracy, m.evaluationAccuracyCi95];
  const phasedGauges = [m.iterationLoss, m.iterationAccuracy];

  function forgetRun(runId: string): void {
    if (!runs.delete(runId)) return;
    for (const g of runGauges) g.remove({ run_id: runId });
    for (const g of phasedGauges) for (const phase of ["pre", "post"]) g.remove({ run_id: runId, phase });
    for (const state of RUN_STATES) m.runState.remove({ run_id: runId, state });
  }

  function pruneRuns(): void {
    const now = monotonicMs();
    for (const [runId, e] of runs) if (now - e.touchedMs > ttlMs) forgetRun(runId);
    while (runs.size > maxRuns) forgetRun(runs.keys().next().value!);
  }

  /** The run's entry, moved to most recently reported; `undefined` for a run id unfit as a label. */
  function touch(runId: string): RunEntry | undefined {
    if (!LABEL_VALUE.test(runId)) return undefined;
    const e = runs.get(runId) ?? { touchedMs: 0 };
    runs.delete(runId);
    e.touchedMs = monotonicMs();
    runs.set(runId, e);
    m.runUpdated.set({ run_id: runId }, wallMs() / 1000);
    pruneRuns();
    return e;
  }

  function setState(runId: string, e: RunEntry, state: RunState): void {
    e.state = state;
    for (const s of RUN_STATES) m.runState.set({ run_id: runId, state: s }, s === state ? 1 : 0);
  }

  // ---- worker health ----
  function refreshActivities(): void {
    const inFlight = new Map<string, number>(tracked);
    const slots = new Map<string, number>();
    for (const w of watched.values()) {
      let n = 0;
      try {
        n = nonNegative(w.inFlight());
      } catch {
        // A worker shutting down may throw from getStatus(): report it as idle.
      }
      inFlight.set(w.taskQueue, (inFlight.get(w.taskQueue) ?? 0) + n);
      slots.set(w.taskQueue, (slots.get(w.taskQueue) ?? 0) + w.slots);
    }
    m.activitiesInFlight.reset();
    m.activitySlots.reset();
    for (const [q, n] of inFlight) m.activitiesInFlight.set({ task_queue: q }, n);
    for (const [q, n] of slots) m.activitySlots.set({ task_queue: q }, n);
  }

  let backend: string | undefined;
  const seenAlgorithms = new Set<string>();

  const metrics: Metrics = {
    registry,
    m,
    observeTask(o) {
      const labels = { algorithm: algorithmLabel(o.algorithm), backend: backendLabel(o.backend) };
      const n = Math.max(1, Math.floor(nonNegative(o.tasks ?? 1)));
      for (let i = 0; i < n; i++) m.innerLoopDuration.observe(labels, nonNegative(o.seconds) / n);
      m.innerSteps.inc(labels, nonNegative(o.innerSteps) * n);
    },
    observeShard(o) {
      const algorithm = algorithmLabel(o.algorithm);
      if (!seenAlgorithms.has(algorithm)) {
        // Counters start at 0 so that rate() and failure ratios read 0, not "no data", before the first failure.
        seenAlgorithms.add(algorithm);
        for (const c of [m.tasksCompleted, m.tasksFailed, m.shardsCompleted, m.shardsCancelled, m.shardRetries]) c.inc({ algorithm }, 0);
      }
      m.shardDuration.observe({ algorithm, backend: backendLabel(o.backend), outcome: o.outcome }, nonNegative(o.seconds));
      if ((o.attempt ?? 1) > 1) m.shardRetries.inc({ algorithm });
      const tasks = nonNegative(o.tasks);
      switch (o.outcome) {
        case "completed":
          m.shardsCompleted.inc({ algorithm });
          m.tasksCompleted.inc({ algorithm }, tasks);
          break;
        case "failed":
          m.shardsFailed.inc({ algorithm, error_type: errorTypeLabel(o.errorType) });
          m.tasksFailed.inc({ algorithm }, tasks);
          break;
        case "cancelled":
          m.shardsCancelled.inc({ algorithm });
          break;
      }
    },
    observeOuterStep(o) {
      m.outerStepDuration.observe({ algorithm: algorithmLabel(o.algorithm) }, nonNegative(o.seconds));
    },
    setRunProgress(p) {
      const e = touch(p.runId);
      if (!e) return;
      const run_id = p.runId;
      const now = monotonicMs();
      // A report for the iteration right after the last one on this process times that iteration;
      // repeats (an activity and a workflow sink both reporting) and jumps (another coordinator ran
      // the iterations between) are not timed.
      if (e.lastIteration !== undefined && e.lastIterationMs !== undefined && p.iteration === e.lastIteration + 1) {
        m.iterationDuration.observe((now - e.lastIterationMs) / 1000);
      }
      if (e.lastIteration === undefined || p.iteration !== e.lastIteration) {
        e.lastIteration = p.iteration;
        e.lastIterationMs = now;
      }
      m.metaIteration.set({ run_id }, p.iteration);
      m.runIterations.set({ run_id }, p.iterations);
      // A paused run's in-flight iteration may still report: it stays paused until resumed.
      if (p.iteration >= p.iterations) setState(run_id, e, "finished");
      else if (e.state !== "paused") setState(run_id, e, "running");
      const l = p.latest;
      if (l) {
        setFinite(m.iterationLoss, { run_id, phase: "pre" }, l.preLoss);
        setFinite(m.iterationLoss, { run_id, phase: "post" }, l.postLoss);
        if (l.preAccuracy !== undefined) setFinite(m.iterationAccuracy, { run_id, phase: "pre" }, l.preAccuracy);
        if (l.postAccuracy !== undefined) setFinite(m.iterationAccuracy, { run_id, phase: "post" }, l.postAccuracy);
      }
    },
    setRunState(runId, state) {
      const e = touch(runId);
      if (e) setState(runId, e, state);
    },
    observeEvaluation(e) {
      if (!touch(e.runId)) return;
      const run_id = e.runId;
      m.evaluationIteration.set({ run_id }, e.iteration);
      m.evaluationTasks.set({ run_id }, e.loss.n);
      setFinite(m.evaluationLoss, { run_id }, e.loss.mean);
      setFinite(m.evaluationLossCi95, { run_id }, e.loss.ci95);
      if (e.accuracy) {
        setFinite(m.evaluationAccuracy, { run_id }, e.accuracy.mean);
        setFinite(m.evaluationAccuracyCi95, { run_id }, e.accuracy.ci95);
      }
    },
    observeStorage(op, bytes, seconds, o = {}) {
      const labels = { operation: op, store: storeLabel(o.store) };
      m.storageErrors.inc(labels, 0); // present at 0 before the first error
      m.storageDuration.observe(labels, nonNegative(seconds));
      if (o.ok === false) m.storageErrors.inc(labels);
      else if (op === "get" || op === "put") m.storageBytes.observe(labels, nonNegative(bytes));
    },
    observeCheckpoint(seconds, bytes) {
      m.checkpointDuration.observe(nonNegative(seconds));
      m.checkpointSize.observe(nonNegative(bytes));
    },
    observeParamsCache(hit) {
      (hit ? m.paramsCacheHits : m.paramsCacheMisses).inc();
    },
    observeParamsCacheEviction() {
      m.paramsCacheEvictions.inc();
    },
    setBackend(name) {
      const b = backendLabel(name);
      if (backend !== undefined && backend !== b) m.backendInfo.remove({ backend });
      backend = b;
      m.backendInfo.set({ backend: b }, 1);
    },
    watchWorker(w) {
      const id = Symbol(w.taskQueue);
      watched.set(id, { taskQueue: queueLabel(w.taskQueue), slots: nonNegative(w.slots), inFlight: w.inFlight });
      return () => {
        watched.delete(id);
      };
    },
    trackActivity(taskQueue) {
      const q = queueLabel(taskQueue);
      tracked.set(q, (tracked.get(q) ?? 0) + 1);
      let done = false;
      return () => {
        if (done) return;
        done = true;
        tracked.set(q, Math.max(0, (tracked.get(q) ?? 1) - 1));
      };
    },
    forgetRun,
    runs: () => [...runs.keys()],
    text: () => registry.metrics(),
  };

  return metrics;
}

/** Set a gauge unless the value is not finite (a NaN loss must not wipe the last good one; NonFiniteLoss fails the step anyway). */
function setFinite<L extends string>(g: Gauge<L>, labels: Partial<Record<L, string>>, value: number): void {
  if (Number.isFinite(value)) g.set(labels, value);
}
