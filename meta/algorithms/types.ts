// What a shard computation hands back (per-task metrics and the sum of contributions) and the hooks it calls.
import type { AdaptationMetrics } from "../../contracts/activities.js";
import type { Params } from "../params.js";

/** One task's query-set loss (and accuracy) before and after adaptation (contracts' one metrics type). */
export type TaskMetrics = AdaptationMetrics;

export interface ShardResult {
  /**
   * Sum over the shard's tasks, in task order, of what each contributes (meta-gradients, parameter
   * deltas φ − θ, gradients of learner-owned meta-parameters). The caller owns and disposes it.
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

/** Mean of a metric over tasks (NaN when absent). */
export function meanOf(ms: readonly TaskMetrics[], key: keyof TaskMetrics): number {
  const xs = ms.map((m) => m[key]).filter((x): x is number => typeof x === "number");
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}
