// The one interface an activity calls: run the inner loops of a shard of tasks, return their sum.
import type { Params } from "../params.js";
import type { Task } from "../tasks/types.js";

export type AlgorithmName = "maml" | "fomaml" | "reptile";

/** Query-set loss (and accuracy for classification) before and after adaptation, per task. */
export interface TaskMetrics {
  preLoss: number;
  postLoss: number;
  preAccuracy?: number;
  postAccuracy?: number;
}

export interface ShardResult {
  /**
   * Sum over the shard's tasks, in task order: meta-gradients (MAML, FOMAML) or parameter deltas
   * φ − θ (Reptile). The caller owns and disposes these tensors.
   */
  sum: Params;
  /** One entry per task, in task order. */
  metrics: TaskMetrics[];
}

export interface ShardHooks {
  /**
   * Called synchronously after every inner step of every task (heartbeats). Throwing from it
   * aborts the shard (cancellation); all tensors are released before the error propagates.
   */
  onInnerStep?: (taskOffset: number, step: number) => void;
  /** Awaited after each task (or each task batch), so I/O such as heartbeats can flush. */
  afterTask?: (tasksDone: number) => void | Promise<void>;
}

export interface MetaAlgorithm {
  readonly name: AlgorithmName;
  /** `meta-gradient`: the outer step descends along it. `delta`: the outer step moves along it. */
  readonly resultKind: "meta-gradient" | "delta";
  /** Whether tasks run batched over a task dimension (one batched matMul for all tasks). */
  readonly batched: boolean;
  runShard(params: Params, tasks: readonly Task[], hooks?: ShardHooks): Promise<ShardResult>;
}
