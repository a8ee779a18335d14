// Conv4's task-batched forward (conv4({ taskBatched: true })): the same outputs and the same MAML,
// first-order MAML and Reptile contributions as one task at a time, bit-identical reruns, no leaks.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { assertBatchedMatchesOneByOne } from "../helpers/learners.js";
import { conv4 } from "../../meta/models.js";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { dispose } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import type { Task } from "../../meta/tasks/types.js";
import { useCpu } from "../helpers/tf.js";

before(async () => {
  await useCpu();
  registerHigherOrderGradients();
});

/** A 3-way task of 16×16 images: 6 support and 6 query examples (two per class). */
function task(seed: number): Task {
  const rng = new Rng(seed);
  const set = () => ({ x: Float32Array.from({ length: 6 * 16 * 16 }, () => rng.next()), xShape: [6, 16, 16, 1], y: Int32Array.from({ length: 6 }, (_, i) => i % 3) });
  return { support: set(), query: set(), seed };
}

for (const downsample of ["maxpool", "stride"] as const) {
  const model = conv4({ inputShape: [16, 16, 1], outputs: 3, filters: 4, downsample, taskBatched: true });

  test(`${downsample}: the batched forward equals the per-task forward, task by task`, () => {
    const theta = model.init(5);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      // Per-task parameters that differ (as after inner steps): θ + t·0.01·r for task t.
      const rng = new Rng(9);
      const per = [0, 1, 2].map((t) => Object.fromEntries(Object.entries(theta).map(([k, v]) => [k, tf.add(v, tf.mul(t * 0.01, tf.randomNormal(v.shape, 0, 1, "float32", rng.int(1e6))))])));
      const xs = [0, 1, 2].map((t) => tf.tensor4d(task(20 + t).support.x, [6, 16, 16, 1]));
      const stacked = Object.fromEntries(Object.keys(theta).map((k) => [k, tf.stack(per.map((p) => p[k]!))]));
      const out = model.forwardBatched!(stacked, tf.stack(xs)).arraySync() as number[][][];
      per.forEach((p, t) => {
        const one = model.forward(p, xs[t]!).arraySync() as number[][];
        // The same float32 ops per task except the batched batch-norm reductions over a 5-D view
        // (another summation order): logits O(1) agree to ~1e-6; 1e-5 absolute leaves 10× margin.
        one.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - out[t]![i]![j]!) <= 1e-5, `task ${t} [${i},${j}]: ${v} vs ${out[t]![i]![j]}`)));
      });
    });
    assert.equal(tf.memory().numTensors, before);
    dispose(theta);
  });

  test(`${downsample}: batched shards give the same contributions as one task at a time (maml, fomaml, reptile)`, async () => {
    const theta = model.init(5);
    const tasks = [1, 2, 3].map(task);
    // Same math in other summation orders (batch-norm reductions over the task-stacked view, the
    // task sum as one Sum instead of adds): second-order meta-gradients of O(1e-2…1) agree to
    // ~1e-6; 1e-4·(1 + |x|) is ≥ 10× that and far below a wrong or missing term. Conv biases
    // before batch norm have gradient 0 in exact arithmetic: rounding residue only, inside the floor.
    for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
      await assertBatchedMatchesOneByOne(`${downsample} ${algorithm}`, { algorithm, model, theta, tasks, tol: 1e-4 });
    }
    dispose(theta);
  });
}
