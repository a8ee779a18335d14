// The JSON that activities take and return. Storage keys travel, tensors never do (Temporal's
// payload limit is 2 MB); every key is derived deterministically so a retry writes the same one.
import type { RunConfigJson as RunConfig } from "./config.js";

/**
 * Query-set loss (and accuracy, for classification) before and after adaptation: the one metrics
 * type of the project — per task in meta/, per shard or iteration as means (TaskMetricsSummary),
 * per iteration in telemetry/.
 */
export interface AdaptationMetrics {
  preLoss: number;
  postLoss: number;
  preAccuracy?: number;
  postAccuracy?: number;
}

/** Mean metrics over a set of tasks (accuracy only for classification). */
export interface TaskMetricsSummary extends AdaptationMetrics {
  tasks: number;
}

export interface InitRunInput {
  runId: string;
  config: RunConfig;
}
/** Content-addressed keys of the initial parameters and optimizer state. */
export interface StateKeys {
  paramsKey: string;
  optimKey: string;
}

export interface RunShardInput {
  runId: string;
  config: RunConfig;
  iteration: number;
  shardIndex: number;
  /** Task indices [taskStart, taskEnd) of this iteration's meta-batch. */
  taskStart: number;
  taskEnd: number;
  paramsKey: string;
}
export interface RunShardOutput {
  /** Key of the blob with the shard's summed meta-gradient (or Reptile delta). */
  resultKey: string;
  metrics: TaskMetricsSummary;
  /** Backend the shard ran on and its wall time, for metrics. */
  backend: string;
  seconds: number;
  /**
   * The longest stretch of this attempt, in seconds, between two heartbeats it sent (its start
   * and end count as beats): what the heartbeat timeout must outlast. The workflow sizes the next
   * rounds' timeout from it (workflows/heartbeat.ts).
   */
  silentSeconds?: number;
  /** The worker that ran it and when it started (epoch ms), for the run's record (storage/record.ts). */
  worker?: string;
  startedAt?: number;
}

/** One finished shard of a round, as the outer step writes it into the run's record. */
export interface ShardTiming {
  index: number;
  worker: string;
  seconds: number;
  tasks: number;
  startedAt: number;
}

/**
 * The sink through which the workflow names each finished shard's result to its coordinator, which
 * reads it ahead for the local outer step (activities/prefetch.ts). Workflow side:
 * `const { metatrainPrefetch } = proxySinks<PrefetchSinks>();`.
 */
export type PrefetchSinks = {
  metatrainPrefetch: {
    /** A shard's result is written under `key`: start reading it (when the outer step runs here, a local activity). */
    shardResult(key: string): void;
  };
};

export interface OuterStepInput {
  runId: string;
  config: RunConfig;
  iteration: number;
  paramsKey: string;
  optimKey: string;
  /** Shard result keys in shard order; the sum runs in this order (determinism). */
  shardKeys: string[];
  /** Tasks those shards cover (the outer step averages over them). */
  taskCount: number;
  /** A meta learning rate set by a signal, overriding config.metaLr. */
  metaLr?: number;
  /** The round's metrics and shards, written with the step into the run's record; absent: no record. */
  round?: { metrics: TaskMetricsSummary; shards: ShardTiming[] };
}

/** One shard result the outer step could not use. */
export interface UnusableShard {
  key: string;
  shardIndex: number;
  /** What was wrong: missing, a checksum mismatch, a shard of another run or iteration. */
  reason: string;
}

/** The details of a `ShardResultUnusable` failure (its first details entry). */
export interface ShardResultUnusableDetails {
  code: "ShardResultUnusable";
  suggestion: string;
  iteration: number;
  shards: UnusableShard[];
}

export interface CheckpointManifest {
  format: "metatrain-checkpoint/1";
  runId: string;
  /** Iterations completed: the next iteration to run is this one. */
  iteration: number;
  paramsKey: string;
  optimKey: string;
  config: RunConfig;
  metaLr: number;
  metrics: { latest?: TaskMetricsSummary; evaluation?: EvaluationSummary };
  createdAt: string;
}

export interface WriteCheckpointInput {
  manifest: Omit<CheckpointManifest, "format" | "createdAt">;
}
export interface WriteCheckpointOutput {
  manifestKey: string;
}

export interface EvaluateInput {
  runId: string;
  config: RunConfig;
  iteration: number;
  paramsKey: string;
}
export interface MeanCI {
  mean: number;
  ci95: number;
  n: number;
}
export interface EvaluationSummary {
  iteration: number;
  steps: number;
  loss: MeanCI;
  accuracy?: MeanCI;
  /** `transductive` when batch norm uses query-batch statistics. */
  batchNorm: "none" | "transductive" | "per-example";
}

export interface LoadCheckpointInput {
  /** A manifest key, or a run's `latest` pointer key, in the worker's store. */
  key: string;
  /** The config to resume with (raw); absent or null: the checkpoint's own. */
  requested?: unknown;
  /** The run resuming: its record then names the checkpoint it continues (storage/record.ts). */
  runId?: string;
}

/** A checkpoint's manifest (its config parsed) and what resuming it with the requested config would do. */
export interface LoadCheckpointOutput extends CheckpointManifest {
  resume: {
    /** The requested config, parsed and defaulted (the checkpoint's when none was requested). */
    config: RunConfig;
    /** Why the checkpoint cannot continue under it; empty when it can. */
    problems: string[];
  };
  /**
   * Set when the checkpoint asked for had parameters or optimizer state that are missing or fail
   * verification: this output is then the newest earlier checkpoint of the run that verifies.
   */
  fallback?: {
    /** The manifest asked for. */
    from: string;
    /** The manifest loaded instead. */
    manifestKey: string;
    /** What was wrong with the one asked for. */
    reason: string;
  };
}

/**
 * Every activity of a run, as the workflow sees them (`proxyActivities<MetaTrainingActivities>`).
 * `activities/` implements this interface; the workflow imports only this type.
 */
export interface MetaTrainingActivities {
  /** Coordinator: write the initial parameters and optimizer state; idempotent (content-addressed). */
  initRun(input: InitRunInput): Promise<StateKeys>;
  /** GPU: the inner loops of one shard; writes one blob under a key fixed by (run, iteration, shard). */
  runShard(input: RunShardInput): Promise<RunShardOutput>;
  /** Coordinator: sum shard blobs in order, apply the outer optimizer, write new state. */
  outerStep(input: OuterStepInput): Promise<StateKeys>;
  /** Coordinator: write a checkpoint manifest, then the run's `latest` pointer. */
  writeCheckpoint(input: WriteCheckpointInput): Promise<WriteCheckpointOutput>;
  /** GPU: evaluate parameters on held-out tasks. */
  evaluate(input: EvaluateInput): Promise<EvaluationSummary>;
  /** Coordinator: read and validate a checkpoint manifest (for resume-from-checkpoint). */
  loadCheckpoint(input: LoadCheckpointInput): Promise<LoadCheckpointOutput>;
}

/** Workflow input. `resumeFrom` starts from a stored checkpoint; `state` carries continue-as-new. */
export interface MetaTrainingInput {
  runId: string;
  /** Raw config (validated by the workflow at entry: InvalidRunConfig if bad). */
  config: unknown;
  /** Key of a checkpoint manifest to start from (its iteration, parameters, optimizer state). */
  resumeFrom?: string;
  /** Internal: small JSON state handed over by continue-as-new. */
  state?: MetaTrainingState;
}

export interface MetaTrainingState {
  iteration: number;
  paramsKey: string;
  optimKey: string;
  metaLr: number;
  paused: boolean;
  latest?: TaskMetricsSummary;
  evaluation?: EvaluationSummary;
  lastCheckpointKey?: string;
  /** The longest silence any shard of this run has shown (`RunShardOutput.silentSeconds`): sizes the heartbeat timeout. */
  silentSeconds?: number;
}

/** The `progress` query's answer. */
export interface RunProgress {
  runId: string;
  iteration: number;
  iterations: number;
  paused: boolean;
  cancelling: boolean;
  metaLr: number;
  latest?: TaskMetricsSummary;
  evaluation?: EvaluationSummary;
  lastCheckpointKey?: string;
  paramsKey: string;
}

/** Final result of a run's workflow. */
export interface MetaTrainingResult {
  runId: string;
  iteration: number;
  paramsKey: string;
  optimKey: string;
  lastCheckpointKey: string;
  cancelled: boolean;
  latest?: TaskMetricsSummary;
  evaluation?: EvaluationSummary;
}
