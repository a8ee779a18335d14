// The JSON that activities take and return. Storage keys travel, tensors never do (Temporal's
// payload limit is 2 MB); every key is derived deterministically so a retry writes the same one.
import type { RunConfig } from "./config.js";

/** Mean metrics over a set of tasks (accuracy only for classification). */
export interface TaskMetricsSummary {
  tasks: number;
  preLoss: number;
  postLoss: number;
  preAccuracy?: number;
  postAccuracy?: number;
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
}

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
  batchNorm: "none" | "transductive";
}

export interface LoadCheckpointInput {
  /** A manifest key, or a run's `latest` pointer key, in the worker's store. */
  key: string;
}
