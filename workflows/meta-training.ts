// The meta-training workflow: each meta-iteration is one federated round — fan out shard
// activities to `gpu` workers, aggregate under an explicit failure policy, take the outer step,
// checkpoint, maybe evaluate — continuing as new every N rounds with small JSON state.
//
// Deterministic code only: activities are seen as types, no Node built-ins, and every failure this
// file raises is an ApplicationFailure (a plain Error would retry the workflow task forever).
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  proxySinks,
  setHandler,
  workflowInfo,
  type ActivityOptions,
  type RetryPolicy,
} from "@temporalio/workflow";
import type {
  EvaluationSummary,
  LoadCheckpointOutput,
  MetaTrainingActivities,
  MetaTrainingInput,
  MetaTrainingResult,
  MetaTrainingState,
  PrefetchSinks,
  RunProgress,
  RunShardOutput,
  ShardResultUnusableDetails,
  ShardTiming,
  StateKeys,
  TaskMetricsSummary,
} from "../contracts/activities.js";
import { InvalidRunConfigError, parseOrchestration, shardPlan, type RunConfigJson as RunConfig } from "../contracts/config.js";
import { ErrorTypes, NON_RETRYABLE_ERROR_TYPES, innermostMessage } from "../contracts/errors.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { heartbeatTimeoutSeconds, longestSilence } from "./heartbeat.js";
import type { MetatrainSinks } from "../telemetry/sinks.js";

/**
 * Run progress, evaluations and lifecycle state go to the coordinator's metrics through sinks
 * (telemetry/sinks.ts): fire-and-forget calls the worker runs after each activation, never during
 * replay, and that leave nothing in the history (adding or removing one is not a determinism change).
 */
const { metatrainMetrics } = proxySinks<MetatrainSinks>();
/** Shard results named to the coordinator as they land, for the local outer step to find read (contracts/activities.ts, activities/prefetch.ts). */
const { metatrainPrefetch } = proxySinks<PrefetchSinks>();

// ---- signals, updates, queries -------------------------------------------------------------------

/** Stop before the next meta-iteration (the one in flight finishes). */
export const pauseSignal = defineSignal("pause");
/** Undo `pause`. */
export const resumeSignal = defineSignal("resume");
/** Abandon the iteration in flight, write a checkpoint at the last completed iteration, return `cancelled: true`. */
export const cancelSignal = defineSignal("cancel");
/**
 * Set the outer learning rate from the next outer step on; returns the previous value. Rejected
 * (validator, nothing recorded in history) unless finite, > 0 and ≤ MAX_META_LR.
 */
export const setMetaLrUpdate = defineUpdate<number, [number]>("setMetaLr");
/** Where the run stands. */
export const progressQuery = defineQuery<RunProgress>("progress");

/** Upper bound accepted by `setMetaLr` (Reptile's ε₀ is 1 in the paper; nothing sane is above 10). */
export const MAX_META_LR = 10;

/** Why `value` is not an acceptable meta learning rate, or undefined when it is. */
export function metaLrProblem(value: unknown): string | undefined {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return `setMetaLr: metaLr must be a finite number, got ${typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value)}`;
  }
  if (value <= 0) return `setMetaLr: metaLr must be > 0, got ${value}`;
  if (value > MAX_META_LR) return `setMetaLr: metaLr must be ≤ ${MAX_META_LR}, got ${value}; pick a smaller step size`;
  return undefined;
}

// ---- limits --------------------------------------------------------------------------------------

/**
 * Shards in flight at once per round. Temporal refuses a workflow task that would leave more than
 * 2,000 activities (or 2,000 cancellation requests) pending in one execution.
 */
export const MAX_CONCURRENT_SHARDS = 1_000;
/**
 * Shards per round. A round cannot be split across continue-as-new, and each shard costs about
 * 3 to 6 history events (scheduled, started, completed, plus workflow tasks), so 5,000 shards stay
 * well inside a history's hard cap of 51,200 events.
 */
export const MAX_SHARDS_PER_ROUND = 5_000;
/**
 * Times one round may rerun shards whose results the outer step could not use. Shard results are a
 * pure function of (seed, iteration, shard), so one rerun heals a blob damaged at rest; a shard bad
 * again after two reruns points at the store itself (it corrupts what it is given), and the run fails.
 */
export const MAX_SHARD_RECOMPUTES = 2;
/** Continue as new before a round when the history could pass this many events during it. */
const HISTORY_EVENT_BUDGET = 40_000;
const EVENTS_PER_SHARD = 6;

// ---- pure round logic (exported for tests) -------------------------------------------------------

/** Shards a round needs under `minShardFraction` (at least one; all of them at fraction 1). */
export function requiredShards(shards: number, minShardFraction: number): number {
  // The epsilon keeps e.g. 0.3 × 10 = 3.0000000000000004 from demanding a fourth shard.
  return Math.min(shards, Math.max(1, Math.ceil(minShardFraction * shards - 1e-9)));
}

/** One shard of a round and what came of it. */
export interface ShardOutcome {
  index: number;
  taskStart: number;
  taskEnd: number;
  output?: RunShardOutput;
}

/** What the outer step needs from a round: result keys in shard order and the tasks they cover. */
export interface RoundAggregate {
  shardKeys: string[];
  taskCount: number;
  /** Task-weighted means over the shards that finished. */
  metrics: TaskMetricsSummary;
  /** Indices of shards left out (failed, or cancelled past the deadline). */
  dropped: number[];
  /** The shards that finished, in shard order, for the run's record. */
  shards: ShardTiming[];
}

/**
 * Aggregate the shards that finished, in shard order (the outer step sums in this order, so the
 * order is fixed whatever order they finished in). Metrics are means weighted by task count.
 */
export function aggregateRound(outcomes: readonly ShardOutcome[]): RoundAggregate {
  const done = [...outcomes].sort((a, b) => a.index - b.index);
  const shardKeys: string[] = [];
  const dropped: number[] = [];
  const shards: ShardTiming[] = [];
  let taskCount = 0;
  const sums = { preLoss: 0, postLoss: 0, preAccuracy: 0, postAccuracy: 0 };
  let accuracyTasks = 0;
  for (const o of done) {
    if (!o.output) {
      dropped.push(o.index);
      continue;
    }
    shardKeys.push(o.output.resultKey);
    const m = o.output.metrics;
    const n = m.tasks;
    shards.push({ index: o.index, worker: o.output.worker ?? "", seconds: o.output.seconds, tasks: n, startedAt: o.output.startedAt ?? 0 });
    taskCount += o.taskEnd - o.taskStart;
    sums.preLoss += m.preLoss * n;
    sums.postLoss += m.postLoss * n;
    if (m.preAccuracy !== undefined && m.postAccuracy !== undefined) {
      sums.preAccuracy += m.preAccuracy * n;
      sums.postAccuracy += m.postAccuracy * n;
      accuracyTasks += n;
    }
  }
  const metricTasks = done.reduce((n, o) => n + (o.output?.metrics.tasks ?? 0), 0);
  const metrics: TaskMetricsSummary = {
    tasks: metricTasks,
    preLoss: metricTasks ? sums.preLoss / metricTasks : NaN,
    postLoss: metricTasks ? sums.postLoss / metricTasks : NaN,
    ...(accuracyTasks
      ? { preAccuracy: sums.preAccuracy / accuracyTasks, postAccuracy: sums.postAccuracy / accuracyTasks }
      : {}),
  };
  return { shardKeys, taskCount, metrics, dropped, shards };
}

/** The shard indices an outer-step failure names as unusable (ShardResultUnusable), else undefined. */
export function unusableShardIndices(e: unknown): number[] | undefined {
  const app = applicationCause(e);
  if (app?.type !== ErrorTypes.ShardResultUnusable) return undefined;
  const d = app.details?.[0] as Partial<ShardResultUnusableDetails> | undefined;
  const indices = (d?.shards ?? []).map((s) => s.shardIndex).filter((i) => Number.isSafeInteger(i) && i >= 0);
  return indices.length ? [...new Set(indices)].sort((a, b) => a - b) : undefined;
}

// ---- failures ------------------------------------------------------------------------------------

function invalidConfig(problems: string[]): ApplicationFailure {
  return ApplicationFailure.create({
    type: ErrorTypes.InvalidRunConfig,
    message: `invalid run config: ${problems.join("; ")}`,
    nonRetryable: true,
    details: [{ problems }],
  });
}

function parseConfigOrFail(raw: unknown, what: string): RunConfig {
  let config: RunConfig;
  try {
    // The shared keys only: the learner's, model's and family's keys are checked by the first
    // activity (initRun or loadCheckpoint), which knows the registries — this bundle holds no tfjs.
    config = parseOrchestration(raw);
  } catch (e) {
    if (e instanceof InvalidRunConfigError) throw invalidConfig(e.problems.map((p) => (what ? `${what}: ${p}` : p)));
    throw ApplicationFailure.nonRetryable(`cannot parse run config: ${String(e)}`, ErrorTypes.InvalidRunConfig);
  }
  const shards = Math.ceil(config.metaBatchSize / config.shardSize);
  if (shards > MAX_SHARDS_PER_ROUND) {
    const prefix = what ? `${what}: ` : "";
    throw invalidConfig([
      `${prefix}shardSize: metaBatchSize ${config.metaBatchSize} in shards of ${config.shardSize} makes ${shards} shards per iteration; ` +
        `one workflow history holds at most ${MAX_SHARDS_PER_ROUND}; set shardSize ≥ ${Math.ceil(config.metaBatchSize / MAX_SHARDS_PER_ROUND)}`,
    ]);
  }
  return config;
}

/** The ApplicationFailure at the bottom of a chain of causes (an activity's own error), if any. */
function applicationCause(e: unknown): ApplicationFailure | undefined {
  let found: ApplicationFailure | undefined;
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 20; c = c.cause, depth++) {
    if (c instanceof ApplicationFailure) found = c;
  }
  return found;
}

/**
 * A step failed for good (after its retries): fail the run with a message naming the step, keeping
 * the activity's error type (BlobCorrupt, NonFiniteLoss, …) so callers can tell failures apart.
 */
function stepFailed(step: string, e: unknown, fallbackType: string): ApplicationFailure {
  const app = applicationCause(e);
  const type = app?.type ?? fallbackType;
  return ApplicationFailure.create({
    type,
    message: `${step} failed: ${innermostMessage(e)}`,
    nonRetryable: true,
    cause: e instanceof Error ? e : undefined,
    details: app?.details?.length ? [...app.details] : undefined,
  });
}

// ---- the workflow --------------------------------------------------------------------------------

const seconds = (n: number): string => `${n}s`;

/**
 * Type of a run failure whose cause carries no error type of its own (an activity that timed out
 * on every attempt, say): contracts/errors.ts names only failures activities raise.
 */
export const STEP_FAILED = "MetaTrainingStepFailed";

function retryPolicy(config: RunConfig): RetryPolicy {
  return {
    initialInterval: "1s",
    backoffCoefficient: 2,
    maximumInterval: "30s",
    maximumAttempts: config.timeouts.maximumAttempts,
    nonRetryableErrorTypes: NON_RETRYABLE_ERROR_TYPES,
  };
}

/** The shard activity with a given heartbeat timeout (workflows/heartbeat.ts sizes it). */
function shardProxy(config: RunConfig, heartbeatSeconds: number): MetaTrainingActivities {
  return proxyActivities<MetaTrainingActivities>({
    taskQueue: TASK_QUEUES.gpu,
    startToCloseTimeout: seconds(config.timeouts.shardStartToCloseSeconds),
    // A worker that stops heartbeating is presumed dead: the shard is retried elsewhere.
    heartbeatTimeout: seconds(heartbeatSeconds),
    retry: retryPolicy(config),
  });
}

function activityProxies(config: RunConfig) {
  const retry = retryPolicy(config);
  const coordinator: ActivityOptions = {
    taskQueue: TASK_QUEUES.coordinator,
    startToCloseTimeout: seconds(config.timeouts.coordinatorStartToCloseSeconds),
    retry,
  };
  return {
    shards: shardProxy(config, config.timeouts.heartbeatSeconds),
    // Evaluation heartbeats after each held-out task: a killed gpu worker's evaluation is retried
    // elsewhere after heartbeatSeconds, not after the whole start-to-close timeout.
    evaluation: proxyActivities<MetaTrainingActivities>({ ...coordinator, taskQueue: TASK_QUEUES.gpu, heartbeatTimeout: seconds(config.timeouts.heartbeatSeconds) }),
    coordinator: proxyActivities<MetaTrainingActivities>(coordinator),
    // The same coordinator activities run in this worker's own process: no task-queue round trip
    // and no extra workflow task per call. They are idempotent (content-addressed parameters, fixed
    // checkpoint keys), so one rerun after a coordinator crash — a local activity leaves no record
    // in the history until it completes — writes the same bytes.
    local: proxyLocalActivities<MetaTrainingActivities>({ startToCloseTimeout: coordinator.startToCloseTimeout!, retry }),
  };
}

/** The changes to this workflow that `patched` guards, so histories begun before them replay. */
type PatchId = "local-start-activities" | "local-outer-step" | "adaptive-heartbeat" | "cancel-before-continue-as-new";
const PATCH_IDS: readonly PatchId[] = ["local-start-activities", "local-outer-step", "adaptive-heartbeat", "cancel-before-continue-as-new"];

/**
 * Every patch decided in the execution's first activation, before anything awaits. A `patched`
 * call made after an await, on replay, answers false unless the SDK has already announced that
 * patch's marker, and it announces the markers of one workflow task at a time. When a local
 * activity finished just as the SDK sent a workflow-task heartbeat, its marker went out with the
 * first task and the code after it ran in the next: a coordinator taking over such a run replayed
 * past a marker the code did not ask for (nondeterminism, CI 2026-12-07). Deciding them all first
 * puts every marker in the first task's commands. Histories begun before this change (no
 * "patches-first" marker) keep deciding each patch where they used to.
 */
function patchDecisions(): (id: PatchId) => boolean {
  if (!patched("patches-first")) return (id) => patched(id);
  const decided = new Map(PATCH_IDS.map((id) => [id, patched(id)] as const));
  return (id) => decided.get(id)!;
}

/**
 * The per-iteration coordinator steps (outer step, checkpoint): local activities when the config
 * asks for them, except in a history begun before they existed.
 */
function iterationProxies(config: RunConfig, acts: ReturnType<typeof activityProxies>, patch: (id: PatchId) => boolean): MetaTrainingActivities {
  return config.localOuterStep && patch("local-outer-step") ? acts.local : acts.coordinator;
}

/**
 * The start of a run (initRun, loadCheckpoint) as a local activity: a coordinator killed while it
 * runs one costs a workflow-task timeout (the retry runs it again, idempotent: content-addressed
 * writes, reads), not the coordinator start-to-close timeout (600 s by default) that a task lost
 * on a dead worker waits for. Histories begun before keep the activity.
 */
function startProxy(acts: ReturnType<typeof activityProxies>, patch: (id: PatchId) => boolean): MetaTrainingActivities {
  return patch("local-start-activities") ? acts.local : acts.coordinator;
}

/**
 * Meta-train a run: start from `input.state` (continue-as-new), else from the checkpoint
 * `input.resumeFrom`, else from fresh parameters (`initRun`); run `config.iterations` rounds.
 * Fails with InvalidRunConfig (bad config, or a config the checkpoint cannot use), with the type
 * of the activity error that stopped it (BlobCorrupt, BlobNotFound, NonFiniteLoss, …), or with
 * TooFewShards when a round cannot reach `failurePolicy.minShardFraction`.
 */
export async function metaTrainingWorkflow(input: MetaTrainingInput): Promise<MetaTrainingResult> {
  try {
    return await metaTraining(input);
  } catch (e) {
    // The run's end as the dashboard's State panel shows it: continue-as-new is no end at all.
    const runId = input?.runId;
    if (!(e instanceof ContinueAsNew) && typeof runId === "string" && runId !== "") {
      metatrainMetrics.state(runId, isCancellation(e) ? "cancelled" : "failed");
    }
    throw e;
  }
}

async function metaTraining(input: MetaTrainingInput): Promise<MetaTrainingResult> {
  const patch = patchDecisions();
  const { runId } = input;
  if (typeof runId !== "string" || runId === "") throw invalidConfig(["runId: give the run an id"]);

  // Config: validated at entry, unless it is to come from the checkpoint we resume from.
  const configFromCheckpoint = input.state === undefined && input.resumeFrom !== undefined && input.config == null;
  let config: RunConfig | undefined = configFromCheckpoint ? undefined : parseConfigOrFail(input.config, "");

  let state: MetaTrainingState | undefined = input.state ? { ...input.state } : undefined;
  let paused = input.state?.paused ?? false;
  let cancelling = false;
  /** Set by `setMetaLr` before the run's state exists (a fresh run still in initRun). */
  let metaLrBeforeStart: number | undefined;
  /** The scope of the shard activities in flight, cancelled by `cancel`. */
  let roundScope: CancellationScope | undefined;

  /** Set once the run has ended: a late signal must not report it running again. */
  let ended = false;
  setHandler(pauseSignal, () => {
    paused = true;
    if (!ended && !cancelling) metatrainMetrics.state(runId, "paused");
  });
  setHandler(resumeSignal, () => {
    const was = paused;
    paused = false;
    if (was && !ended && !cancelling) metatrainMetrics.state(runId, "running");
  });
  setHandler(cancelSignal, () => {
    cancelling = true;
    roundScope?.cancel();
  });
  setHandler(
    setMetaLrUpdate,
    (value) => {
      const previous = state?.metaLr ?? metaLrBeforeStart ?? config?.metaLr ?? NaN;
      if (state) state.metaLr = value;
      else metaLrBeforeStart = value;
      log.info("metaLr set", { runId, previous, metaLr: value });
      return previous;
    },
    {
      validator: (value) => {
        const problem = metaLrProblem(value);
        if (problem !== undefined) throw ApplicationFailure.nonRetryable(problem, ErrorTypes.InvalidRunConfig);
      },
    },
  );
  setHandler(progressQuery, (): RunProgress => ({
    runId,
    iteration: state?.iteration ?? 0,
    iterations: config?.iterations ?? 0,
    paused,
    cancelling,
    metaLr: state?.metaLr ?? metaLrBeforeStart ?? config?.metaLr ?? NaN,
    latest: state?.latest,
    evaluation: state?.evaluation,
    lastCheckpointKey: state?.lastCheckpointKey,
    paramsKey: state?.paramsKey ?? "",
  }));

  // ---- start: continue-as-new state, a checkpoint, or fresh parameters ----
  if (!state) {
    if (input.resumeFrom !== undefined) {
      const resumeFrom = input.resumeFrom;
      let manifest: LoadCheckpointOutput;
      try {
        manifest = await startProxy(activityProxies(config ?? parseOrchestration({})), patch).loadCheckpoint({ key: resumeFrom, requested: config ?? null, runId });
      } catch (e) {
        if (isCancellation(e)) throw e;
        throw stepFailed(`loading checkpoint "${resumeFrom}"`, e, STEP_FAILED);
      }
      const fromCheckpoint = parseConfigOrFail(manifest.config, `checkpoint ${resumeFrom} config`);
      const requested = parseConfigOrFail(manifest.resume.config, "");
      const problems = manifest.resume.problems;
      if (problems.length) throw invalidConfig(problems.map((p) => `${p} (resuming from ${resumeFrom})`));
      config = requested;
      state = {
        iteration: manifest.iteration,
        paramsKey: manifest.paramsKey,
        optimKey: manifest.optimKey,
        // The checkpoint's running rate (it may have been set by setMetaLr), unless the new config changes it.
        metaLr: metaLrBeforeStart ?? (requested.metaLr !== fromCheckpoint.metaLr ? requested.metaLr : manifest.metaLr),
        paused,
        latest: manifest.metrics.latest,
        evaluation: manifest.metrics.evaluation,
        lastCheckpointKey: manifest.fallback?.manifestKey ?? resumeFrom,
      };
      if (manifest.fallback) {
        log.warn("checkpoint unusable: resuming from the previous good checkpoint", { runId, resumeFrom, ...manifest.fallback, iteration: manifest.iteration });
      }
      log.info("resuming from checkpoint", { runId, resumeFrom: manifest.fallback?.manifestKey ?? resumeFrom, iteration: manifest.iteration });
    } else {
      const cfg = config!;
      let keys;
      try {
        keys = await startProxy(activityProxies(cfg), patch).initRun({ runId, config: cfg });
      } catch (e) {
        if (isCancellation(e)) throw e;
        throw stepFailed("initialising the run (initRun)", e, STEP_FAILED);
      }
      state = { iteration: 0, ...keys, metaLr: metaLrBeforeStart ?? cfg.metaLr, paused };
    }
  }
  const cfg: RunConfig = config!;
  const s: MetaTrainingState = state;
  const acts = activityProxies(cfg);
  const perIteration = iterationProxies(cfg, acts, patch);
  const startIteration = s.iteration;
  const shardCount = shardPlan(cfg).length;
  // Heartbeat timeouts sized from the shards' own silences; histories begun before keep the fixed one.
  const adaptiveHeartbeat = patch("adaptive-heartbeat");
  const cancelBeforeContinueAsNew = patch("cancel-before-continue-as-new");
  const shardProxies = new Map<number, MetaTrainingActivities>();
  /** The shard activity as the next shard should be scheduled. */
  const shards = (): MetaTrainingActivities => {
    if (!adaptiveHeartbeat) return acts.shards;
    const timeout = heartbeatTimeoutSeconds(cfg.timeouts, s.silentSeconds);
    let proxy = shardProxies.get(timeout);
    if (!proxy) shardProxies.set(timeout, (proxy = shardProxy(cfg, timeout)));
    return proxy;
  };
  // A local outer step runs in this coordinator's process: it can read the results ahead.
  const readAhead = perIteration === acts.local;
  /** A shard finished: remember how long it went without a heartbeat, and have its result read ahead. */
  const shardFinished = (output: RunShardOutput): void => {
    if (adaptiveHeartbeat) s.silentSeconds = longestSilence(s.silentSeconds, output.silentSeconds);
    if (readAhead) metatrainPrefetch.shardResult(output.resultKey);
  };

  /** Where the run stands, with the latest iteration's losses when there are any. */
  const reportProgress = (): void =>
    metatrainMetrics.progress({ runId, iteration: s.iteration, iterations: cfg.iterations, ...(s.latest ? { latest: s.latest } : {}) });
  // A fresh run, a resumed one, or the next execution after continue-as-new: say where it stands.
  reportProgress();
  if (s.iteration < cfg.iterations) metatrainMetrics.state(runId, paused ? "paused" : "running");

  async function step<T>(name: string, fn: () => Promise<T>, fallbackType: string): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isCancellation(e)) throw e;
      throw stepFailed(name, e, fallbackType);
    }
  }

  async function checkpoint(): Promise<string> {
    const { manifestKey } = await step(
      `writing the checkpoint of iteration ${s.iteration}`,
      () =>
        perIteration.writeCheckpoint({
          manifest: {
            runId,
            iteration: s.iteration,
            paramsKey: s.paramsKey,
            optimKey: s.optimKey,
            config: cfg,
            metaLr: s.metaLr,
            metrics: { ...(s.latest ? { latest: s.latest } : {}), ...(s.evaluation ? { evaluation: s.evaluation } : {}) },
          },
        }),
      STEP_FAILED,
    );
    s.lastCheckpointKey = manifestKey;
    return manifestKey;
  }

  async function evaluate(): Promise<EvaluationSummary> {
    const evaluation = await step(
      `evaluating iteration ${s.iteration}`,
      () => acts.evaluation.evaluate({ runId, config: cfg, iteration: s.iteration, paramsKey: s.paramsKey }),
      STEP_FAILED,
    );
    s.evaluation = evaluation;
    metatrainMetrics.evaluation({ runId, iteration: evaluation.iteration, loss: evaluation.loss, ...(evaluation.accuracy ? { accuracy: evaluation.accuracy } : {}) });
    return evaluation;
  }

  const result = (cancelled: boolean): MetaTrainingResult => ({
    runId,
    iteration: s.iteration,
    paramsKey: s.paramsKey,
    optimKey: s.optimKey,
    lastCheckpointKey: s.lastCheckpointKey ?? "",
    cancelled,
    ...(s.latest ? { latest: s.latest } : {}),
    ...(s.evaluation ? { evaluation: s.evaluation } : {}),
  });

  /**
   * One round's fan-out: every shard at once, then the failure policy. Returns undefined when the
   * round was abandoned by `cancel`.
   */
  async function fanOut(iteration: number): Promise<RoundAggregate | undefined> {
    const plan = shardPlan(cfg);
    const need = requiredShards(plan.length, cfg.failurePolicy.minShardFraction);
    const outcomes: ShardOutcome[] = plan.map((p) => ({ index: p.index, taskStart: p.taskStart, taskEnd: p.taskEnd }));
    const failures: { index: number; error: unknown }[] = [];
    let succeeded = 0;
    let settled = 0;
    const scope = new CancellationScope();
    roundScope = scope;
    let next = 0;
    let stopped = false;
    // A sliding window: at most MAX_CONCURRENT_SHARDS pending at once (the server refuses a
    // workflow task that would hold more than 2,000 pending activities); each settled shard
    // starts the next. Results land by shard index, so completion order never matters.
    const launch = (): void => {
      if (stopped || next >= plan.length) return;
      const shard = plan[next++]!;
      shards()
        .runShard({ runId, config: cfg, iteration, shardIndex: shard.index, taskStart: shard.taskStart, taskEnd: shard.taskEnd, paramsKey: s.paramsKey })
        .then(
          (output) => {
            outcomes[shard.index]!.output = output;
            shardFinished(output);
            succeeded++;
          },
          (error: unknown) => {
            // Cancellations we asked for are not failures of the shard.
            if (!(scope.consideredCancelled && isCancellation(error))) failures.push({ index: shard.index, error });
          },
        )
        .finally(() => {
          settled++;
          void scope.run(async () => launch());
        });
    };
    void scope.run(async () => {
      for (let i = 0; i < Math.min(MAX_CONCURRENT_SHARDS, plan.length); i++) launch();
    });
    const hopeless = (): boolean => plan.length - failures.length < need;
    try {
      await condition(() => cancelling || settled === plan.length || succeeded >= need || hopeless());
      if (!cancelling && !hopeless() && settled < plan.length) {
        // Enough shards are in: give the rest shardDeadlineSeconds, then go on without them.
        // (At fraction 1 `need` is every shard, so this wait never starts.)
        await condition(() => cancelling || settled === plan.length, seconds(cfg.failurePolicy.shardDeadlineSeconds));
      }
    } finally {
      roundScope = undefined;
      stopped = true;
      if (settled < next) scope.cancel(); // stragglers, or everything on cancel or failure
    }
    if (cancelling) return undefined;
    if (hopeless() || succeeded < need) {
      const first = [...failures].sort((a, b) => a.index - b.index)[0];
      const shard = first ? plan[first.index]! : undefined;
      if (need === plan.length && first && shard) {
        throw stepFailed(`iteration ${iteration}: shard ${shard.index} (tasks ${shard.taskStart}–${shard.taskEnd - 1})`, first.error, ErrorTypes.TooFewShards);
      }
      throw ApplicationFailure.create({
        type: ErrorTypes.TooFewShards,
        nonRetryable: true,
        message:
          `iteration ${iteration}: ${succeeded} of ${plan.length} shards finished, ${need} needed ` +
          `(failurePolicy.minShardFraction ${cfg.failurePolicy.minShardFraction})` +
          (first ? `; shard ${first.index} failed: ${innermostMessage(first.error)}` : ""),
        cause: first?.error instanceof Error ? first.error : undefined,
      });
    }
    const agg = aggregateRound(outcomes);
    if (agg.dropped.length) log.warn("round went on without some shards", { runId, iteration, dropped: agg.dropped, tasks: agg.taskCount });
    return agg;
  }

  /**
   * The round's outer step. A shard result it cannot use (missing, or failing verification) is
   * recomputed: those shards run again — same inputs, same key, same bytes — and the step is
   * retried, at most MAX_SHARD_RECOMPUTES times.
   */
  async function outerStep(iteration: number, round: RoundAggregate): Promise<StateKeys> {
    const name = `outer step of iteration ${iteration}`;
    for (let recomputes = 0; ; recomputes++) {
      try {
        return await perIteration.outerStep({
          runId,
          config: cfg,
          iteration,
          paramsKey: s.paramsKey,
          optimKey: s.optimKey,
          shardKeys: round.shardKeys,
          taskCount: round.taskCount,
          // Only a rate set by setMetaLr travels: without it the activity applies the config's
          // schedule (Reptile anneals ε from config.metaLr), exactly as the in-process trainer does.
          ...(s.metaLr !== cfg.metaLr ? { metaLr: s.metaLr } : {}),
          // For the run's record (storage/record.ts); an activity input, so replay is unaffected.
          round: { metrics: round.metrics, shards: round.shards },
        });
      } catch (e) {
        if (isCancellation(e)) throw e;
        const bad = unusableShardIndices(e);
        if (!bad || recomputes >= MAX_SHARD_RECOMPUTES) throw stepFailed(name, e, STEP_FAILED);
        log.warn("recomputing shards whose results are missing or corrupt", { runId, iteration, shards: bad, recompute: recomputes + 1, reason: innermostMessage(e) });
        const plan = shardPlan(cfg);
        const redo = bad.map((index) => plan[index]);
        if (redo.some((p) => p === undefined)) throw stepFailed(name, e, STEP_FAILED); // names no shard of this plan
        await Promise.all(
          redo.map((shard) => {
            const index = shard!.index;
            return step(
              `iteration ${iteration}: recomputing shard ${index} (tasks ${shard!.taskStart}–${shard!.taskEnd - 1})`,
              async () => {
                const output = await shards().runShard({ runId, config: cfg, iteration, shardIndex: index, taskStart: shard!.taskStart, taskEnd: shard!.taskEnd, paramsKey: s.paramsKey });
                shardFinished(output);
                return output;
              },
              ErrorTypes.TooFewShards,
            );
          }),
        );
      }
    }
  }

  // ---- the rounds ----
  while (s.iteration < cfg.iterations) {
    if (paused && !cancelling) {
      log.info("paused", { runId, iteration: s.iteration });
      await condition(() => !paused || cancelling);
    }
    if (cancelling) break;
    const iteration = s.iteration;
    const round = await fanOut(iteration);
    if (!round) break;
    const keys = await outerStep(iteration, round);
    s.iteration = iteration + 1;
    s.paramsKey = keys.paramsKey;
    s.optimKey = keys.optimKey;
    s.latest = round.metrics;
    reportProgress();
    const last = s.iteration === cfg.iterations;
    if (last || s.iteration % cfg.checkpointEvery === 0) await checkpoint();
    if (last || (cfg.evalEvery > 0 && s.iteration % cfg.evalEvery === 0)) await evaluate();
    const info = workflowInfo();
    const historyFull = info.continueAsNewSuggested || info.historyLength + EVENTS_PER_SHARD * shardCount + 100 > HISTORY_EVENT_BUDGET;
    if (!last && !cancelling && (s.iteration - startIteration >= cfg.continueAsNewEvery || historyFull)) {
      await condition(allHandlersFinished);
      // A cancel that came while a handler finished is not carried over: end here instead
      // (histories begun before this went on to continue-as-new, and replay so).
      if (cancelling && cancelBeforeContinueAsNew) break;
      // Small JSON only: the config and keys, never tensors.
      await continueAsNew<typeof metaTrainingWorkflow>({ runId, config: cfg, state: { ...s, paused } });
    }
  }

  if (cancelling) {
    await checkpoint();
    log.info("cancelled", { runId, iteration: s.iteration, checkpoint: s.lastCheckpointKey });
    ended = true;
    metatrainMetrics.state(runId, "cancelled");
    return result(true);
  }
  ended = true;
  metatrainMetrics.state(runId, "finished");
  await condition(allHandlersFinished);
  return result(false);
}
