// Shard right-sizing at submit: when a warning is due, what it says, and the shardSize it suggests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SHARD_OVERHEAD_MS, TASK_STEP_MS, shardAdvice } from "../../cli/shard-advice.js";

const sinusoid = (shardSize: number, metaBatchSize = 32, innerSteps = 1) => ({ model: { kind: "sinusoid-mlp" }, shardSize, metaBatchSize, innerSteps }) as never;

test("tiny sinusoid shards: warned, with the share and a divisor of metaBatchSize that brings it to ≤ 10%", () => {
  const perTask = TASK_STEP_MS["sinusoid-mlp"]!;
  const a = shardAdvice(sinusoid(1));
  assert.ok(a);
  // share = overhead / (overhead + compute) with compute = perTask · 1 task.
  assert.ok(Math.abs(a.share - SHARD_OVERHEAD_MS / (SHARD_OVERHEAD_MS + perTask)) < 1e-12);
  // ≤ 10% needs compute ≥ 9 · overhead, i.e. shardSize ≥ 9 · overhead / perTask; then the next divisor of 32 (within 2×), else that size.
  const wanted = Math.ceil((9 * SHARD_OVERHEAD_MS) / perTask);
  assert.ok(a.suggestedShardSize >= Math.min(32, wanted));
  assert.ok(32 % a.suggestedShardSize === 0 || a.suggestedShardSize === Math.min(32, wanted), `suggested ${a.suggestedShardSize}`);
  assert.match(a.message, /^shardSize 1: .* ms of orchestration per shard, so about \d+% .* --set shardSize=\d+ brings it to about \d+%$/);
});

test("no advice for one shard or a few, when compute dominates, or for a model without an estimate", () => {
  assert.equal(shardAdvice(sinusoid(32)), undefined, "one shard: nothing to merge");
  assert.equal(shardAdvice(sinusoid(5, 25)), undefined, "the default config's 5 shards: too few to matter (MIN_SHARDS_TO_WARN)");
  assert.ok(shardAdvice(sinusoid(4, 32)), "8 tiny shards: warned");
  assert.equal(shardAdvice({ model: { kind: "conv4" }, shardSize: 1, metaBatchSize: 32, innerSteps: 5 } as never), undefined, "Conv4: ~1 s per task");
  assert.equal(shardAdvice({ model: { kind: "mann" }, shardSize: 1, metaBatchSize: 32, innerSteps: 1 } as never), undefined);
});

test("more inner steps mean more compute per task, so a smaller suggestion", () => {
  const one = shardAdvice(sinusoid(1, 1000, 1))!;
  const five = shardAdvice(sinusoid(1, 1000, 5))!;
  assert.ok(five.suggestedShardSize < one.suggestedShardSize, `${five.suggestedShardSize} vs ${one.suggestedShardSize}`);
});
