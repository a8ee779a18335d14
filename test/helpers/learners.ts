// Test helper: a registered learner's shard runner over a hand-made model and task kind. Reptile
// defaults here to plain SGD on the whole support set, the inner loop the older tests derive by hand.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runnerFor as engineRunnerFor } from "../../meta/run-config.js";
import { dispose, type Params } from "../../meta/params.js";
import type { Model } from "../../meta/models.js";
import type { Task } from "../../meta/tasks/types.js";
import { values } from "./tf.js";

export function runnerFor(o: Parameters<typeof engineRunnerFor>[0]): ReturnType<typeof engineRunnerFor> {
  return engineRunnerFor({ ...o, options: o.options ?? (o.algorithm === "reptile" ? { innerOptimizer: "sgd" } : undefined) });
}

/**
 * A learner's task-batched shard against one task at a time on the same tasks: every summed
 * contribution within tol·(1 + |x|), post-losses too; a rerun of the batched shard bit-identical;
 * no tensor left behind. Tolerances are the caller's, derived where it is called.
 */
export async function assertBatchedMatchesOneByOne(what: string, o: { algorithm: string; model: Model; theta: Params; tasks: Task[]; tol: number }): Promise<void> {
  const one = runnerFor({ algorithm: o.algorithm, model: o.model, kind: "classification", innerSteps: 2, innerLr: 0.1 });
  const many = runnerFor({ algorithm: o.algorithm, model: o.model, kind: "classification", innerSteps: 2, innerLr: 0.1, batchTasks: true });
  assert.equal(many.batched, true, `${what}: batches`);
  const before = tf.memory().numTensors;
  const a = await one.runShard(o.theta, o.tasks);
  const b = await many.runShard(o.theta, o.tasks);
  const va = values(a.sum);
  const vb = values(b.sum);
  for (const n of Object.keys(va)) {
    va[n]!.forEach((x, i) => assert.ok(Math.abs(x - vb[n]![i]!) <= o.tol * (1 + Math.abs(x)), `${what} ${n}[${i}]: ${x} vs ${vb[n]![i]}`));
  }
  a.metrics.forEach((m, i) => assert.ok(Math.abs(m.postLoss - b.metrics[i]!.postLoss) < o.tol * (1 + m.postLoss), `${what} post-loss ${i}`));
  const c = await many.runShard(o.theta, o.tasks);
  const vc = values(c.sum);
  for (const n of Object.keys(vb)) assert.deepEqual(vc[n], vb[n], `${what} ${n}: rerun bit-identical`);
  dispose(a.sum, b.sum, c.sum);
  assert.equal(tf.memory().numTensors, before, `${what}: no tensor left behind`);
}
