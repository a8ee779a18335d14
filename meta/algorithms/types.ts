// What a shard computation hands back (per-task metrics and the sum of contributions), the hooks it
// calls, and the episode it computes on (built in episodes.ts, or factored-episode.ts).
import type * as tf from "@tensorflow/tfjs";
import type { AdaptationMetrics } from "../../contracts/activities.js";
import type { ExampleTensors } from "../losses.js";
import type { Params } from "../params.js";
import type { Task, TaskKind } from "../tasks/types.js";

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
  /**
   * Tensors the learner's outer step reads besides the sum, never summed (MAML-RL with TRPO: each
   * task's trajectories), named by the learner. They travel in the shard's result blob; the caller
   * owns and disposes them.
   */
  data?: Params;
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

/** Where a shard's `data` tensors sit in its result blob, beside the sum's (model parameter names never start with it). */
export const SHARD_DATA_PREFIX = "shard-data/";

/** A shard result as one map for its blob: the sum's tensors and the data's under SHARD_DATA_PREFIX (the same tensors, not copies). */
export function shardBlobMap(r: { sum: Params; data?: Params }): Params {
  const out: Params = { ...r.sum };
  for (const [k, t] of Object.entries(r.data ?? {})) out[SHARD_DATA_PREFIX + k] = t;
  return out;
}

/** Inverse of shardBlobMap: the sum's tensors and the data's (undefined when the shard sent none). */
export function splitShardBlobMap(m: Params): { sum: Params; data?: Params } {
  const sum: Params = {};
  const data: Params = {};
  for (const [k, t] of Object.entries(m)) {
    if (k.startsWith(SHARD_DATA_PREFIX)) data[k.slice(SHARD_DATA_PREFIX.length)] = t;
    else sum[k] = t;
  }
  return Object.keys(data).length ? { sum, data } : { sum };
}

/** A unit of work: one task, or all tasks of a shard stacked along a leading task axis. */
export interface Episode {
  count: number;
  /** Tasks stacked on a leading task axis (examples [T, n, ...]), even when there is one. */
  batched: boolean;
  kind: TaskKind;
  support: ExampleTensors;
  query: ExampleTensors;
  /** θ as this episode's forward expects it: unchanged, or tiled to [T, ...]. */
  expand: (theta: Params) => Params;
  forward: (p: Params, x: tf.Tensor) => tf.Tensor;
  /**
   * Sum a map shaped like this episode's parameters over the task axis (identity when unbatched).
   * An entry the episode keeps shared across tasks (a factored input kernel) is already that sum.
   */
  reduce: (p: Params) => Params;
  /**
   * Σ over tasks of φ − θ, in θ's names, for θ as `expand` gave it and φ reached from it by `step`
   * (Reptile's contribution). A factored input kernel's is Σ_t Xs_tᵀ·V_t, without per-task copies.
   */
  delta: (phi: Params, theta: Params) => Params;
  /** One SGD step φ ← φ − α∇L_support(φ) over the names in `keys` (Finn et al. eq. 1); other entries pass through. */
  step: (keys: readonly string[], phi: Params, lr: number) => Params;
  /** Tensors the episode built for itself beyond its examples, freed with it. */
  owned?: tf.Tensor[];
  /** The tasks, for learners that need their raw examples (e.g. minibatches). */
  tasks: readonly Task[];
}
