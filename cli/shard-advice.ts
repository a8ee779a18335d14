// Right-sizing shards at submit: a config whose shards are so small that orchestration would take
// most of each shard's time gets a warning with the measured cost and a shardSize that fixes it.
import type { RunConfig } from "../meta/run-config.js";

/**
 * What one more shard costs a meta-iteration in orchestration, ms: the slope of the iteration time
 * from 1 to 32 near-zero-compute shards on the dev server (bench/RESULTS.md, "Orchestration cost").
 * Re-measured 2026-12-07 with the server's rate limit raised and results read ahead, on S3: 12.1 ms
 * on a quiet host, 14.7 on a busy one ("Reading shard results ahead").
 */
export const SHARD_OVERHEAD_MS = 12;

/**
 * Measured inner-loop compute per task and inner step, ms, on this project's reference CPU machine
 * (2 vCPU, native backend; bench/RESULTS.md "Throughput"): only the cheap models, where tiny shards
 * are likely. Models missing here get no advice. A GPU is faster, so there the share is larger still.
 */
export const TASK_STEP_MS: Readonly<Record<string, number>> = {
  "sinusoid-mlp": 0.8,
  "omniglot-mlp": 5,
  conv4: 190,
};

/** Warn when orchestration would be more than this share of a shard's time. */
export const WARN_SHARE = 0.5;
/**
 * Warn only for this many shards an iteration or more: with a few shards the orchestration is a
 * few tens of milliseconds whatever its share (the default sinusoid config's 5 shards, say), and a
 * warning on every such run would be noise.
 */
export const MIN_SHARDS_TO_WARN = 8;
/** The suggestion aims at most this share. */
export const TARGET_SHARE = 0.1;

export interface ShardAdvice {
  /** Estimated orchestration share of each shard's time, 0..1. */
  share: number;
  computeMsPerShard: number;
  /** A shardSize (a divisor of metaBatchSize where one is near) that brings the share to ≤ TARGET_SHARE, or metaBatchSize. */
  suggestedShardSize: number;
  /** One line for the user. */
  message: string;
}

/** Advice for `config`, or undefined when its shards are big enough, too few to matter, or its model is not in TASK_STEP_MS. */
export function shardAdvice(config: Pick<RunConfig, "model" | "shardSize" | "metaBatchSize" | "innerSteps">): ShardAdvice | undefined {
  const perTaskStep = TASK_STEP_MS[config.model.kind];
  if (perTaskStep === undefined) return undefined;
  const perTask = perTaskStep * Math.max(1, config.innerSteps);
  const computeMsPerShard = perTask * config.shardSize;
  const share = SHARD_OVERHEAD_MS / (SHARD_OVERHEAD_MS + computeMsPerShard);
  if (share <= WARN_SHARE || Math.ceil(config.metaBatchSize / config.shardSize) < MIN_SHARDS_TO_WARN) return undefined;
  // share ≤ T  ⇔  compute ≥ overhead · (1 − T) / T
  const wanted = Math.ceil((SHARD_OVERHEAD_MS * (1 - TARGET_SHARE)) / TARGET_SHARE / perTask);
  let suggestedShardSize = Math.min(config.metaBatchSize, Math.max(wanted, config.shardSize + 1));
  // Prefer a divisor of metaBatchSize (equal shards) within 2× of what is wanted.
  for (let s = suggestedShardSize; s <= Math.min(config.metaBatchSize, 2 * suggestedShardSize); s++) {
    if (config.metaBatchSize % s === 0) {
      suggestedShardSize = s;
      break;
    }
  }
  const pct = (x: number) => `${Math.round(100 * x)}%`;
  const message =
    `shardSize ${config.shardSize}: each shard holds about ${computeMsPerShard.toFixed(1)} ms of ${config.model.kind} compute (CPU estimate) ` +
    `against ${SHARD_OVERHEAD_MS} ms of orchestration per shard, so about ${pct(share)} of the time goes to orchestration; ` +
    `--set shardSize=${suggestedShardSize} brings it to about ${pct(SHARD_OVERHEAD_MS / (SHARD_OVERHEAD_MS + perTask * suggestedShardSize))}`;
  return { share, computeMsPerShard, suggestedShardSize, message };
}
