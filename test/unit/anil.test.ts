// ANIL's meta-gradient (Raghu et al. 2019): second order through the head's inner steps and the
// body's features, through softmax cross-entropy, against finite differences; first-order ANIL
// differs; the body is never adapted; batched tasks give what one task at a time gives; no tensor leaks.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { anil, anilEpisode } from "../../meta/algorithms/anil.js";
import { runEpisodes } from "../../meta/algorithms/episodes.js";
import { maml, mamlEpisode } from "../../meta/algorithms/maml.js";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { taskLoss, toTensors } from "../../meta/losses.js";
import { conv4, mlp, type Model } from "../../meta/models.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task } from "../../meta/tasks/types.js";
import { LocalMetaTrainer, NO_DATA } from "../../meta/trainer.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";
import { randomTask as task } from "../helpers/classification.js";

before(async () => {
  await useCpu();
  registerHigherOrderGradients();
});

/** L_q after k SGD steps of the head alone, written out independently of the learner. */
function postLoss(model: Model, theta: Params, t: Task, k: number, lr: number): number {
  const split = model.split!;
  return tf.tidy(() => {
    const s = toTensors(t.support, "classification", model.outputs);
    const q = toTensors(t.query, "classification", model.outputs);
    const fs = split.body(theta, s.x);
    let head = split.headKeys.map((n) => theta[n]!);
    const headLoss = (f: tf.Tensor, y: tf.Tensor) => (...h: tf.Tensor[]) => {
      const p: Params = {};
      split.headKeys.forEach((n, j) => (p[n] = h[j]!));
      return taskLoss("classification", split.head(p, f), y);
    };
    for (let i = 0; i < k; i++) {
      const g = tf.grads(headLoss(fs, s.y))(head);
      head = head.map((w, j) => tf.sub(w, tf.mul(g[j]!, lr)));
    }
    return headLoss(split.body(theta, q.x), q.y)(...head).dataSync()[0]!;
  });
}

async function grad(model: Model, theta: Params, t: Task, k: number, lr: number, firstOrder: boolean): Promise<Params> {
  return (await runEpisodes(theta, [t], { model, kind: "classification", batched: false }, anilEpisode(model.split!, k, lr, firstOrder))).sum;
}

/**
 * Relative errors of the directional derivative along random unit directions against central
 * differences. ε = 1e-3 with losses near 1: float32 rounding ~1e-7 → ~1e-4 in the quotient, the
 * O(ε²) truncation below that; a ReLU (or max-pool) kink inside ±ε spoils a direction, which the
 * callers allow for where the net has many kinks.
 */
async function fdErrors(model: Model, t: Task, k: number, lr: number, dirs: number, eps = 1e-3) {
  const theta = model.init(31);
  const g2 = await grad(model, theta, t, k, lr, false);
  const g1 = await grad(model, theta, t, k, lr, true);
  const second: number[] = [];
  const first: number[] = [];
  for (let d = 0; d < dirs; d++) {
    const v = randomDirection(theta, 700 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (postLoss(model, plus, t, k, lr) - postLoss(model, minus, t, k, lr)) / (2 * eps);
    const scale = Math.max(5e-2, Math.abs(fd));
    second.push(Math.abs(dot(g2, v) - fd) / scale);
    first.push(Math.abs(dot(g1, v) - fd) / scale);
    dispose(v, plus, minus);
  }
  dispose(theta, g1, g2);
  return { second, first };
}

test("second-order ANIL meta-gradient, MLP with batch norm, 3-way, 2 head steps: matches finite differences", async () => {
  const model = mlp({ sizes: [16, 12, 8, 3], batchNorm: true, inputShape: [4, 4, 1] });
  const before = tf.memory().numTensors;
  // ε = 3e-4, not 1e-3: batch norm over 6 examples and two head steps of α = 0.5 make this loss
  // steep, and the O(ε²) truncation at 1e-3 was measured at up to 3.5e-2 relative, shrinking ~10×
  // at 3e-4, where float32 rounding (~1e-7 / 3e-4 ≈ 3e-4 relative) is still far below 2e-2.
  const { second, first } = await fdErrors(model, task(5, 3, 2, [4, 4, 1]), 2, 0.5, 5, 3e-4);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  assert.ok(Math.max(...second) < 2e-2, `ANIL vs finite differences: ${second}`);
  // Large head steps make the dropped second-order terms matter: first order must be visibly off.
  assert.ok(Math.max(...first) > 5 * Math.max(...second), `first-order should differ: ${first} vs ${second}`);
});

test("second-order ANIL meta-gradient through Conv4 (4 filters, batch norm, max-pool)", async () => {
  const model = conv4({ inputShape: [16, 16, 1], outputs: 3, filters: 4 });
  const { second } = await fdErrors(model, task(6, 3, 2, [16, 16, 1]), 1, 0.5, 4, 1e-4);
  // At most one of four directions may cross a ReLU or max-pool kink.
  assert.ok(second.filter((e) => e < 2e-2).length >= 3, `ANIL vs finite differences on Conv4: ${second}`);
});

test("evaluation: 0 steps is the plain forward (MAML's number), a small head step lowers the loss; training batches the MLP's tasks and leaks nothing", async () => {
  const run = resolveRun(parseRunConfig({ algorithm: "anil", innerSteps: 2, innerLr: 0.01, metaBatchSize: 4, shardSize: 2 }), NO_DATA);
  const params = anil.init(run.setup, 3);
  const r = await anil.evaluate(run.setup, params, { tasks: 20, steps: [0, 1], seed: 2 });
  const plain = await maml.evaluate(run.setup, params, { tasks: 20, steps: [0], seed: 2 });
  // Both evaluate 20 tasks as one batched episode, ANIL through the split's batched body and head,
  // MAML through its factored forward: the same function, summed in another order (1e-6 relative).
  assert.ok(Math.abs(r.results[0]!.loss.mean - plain.results[0]!.loss.mean) <= 1e-6 * plain.results[0]!.loss.mean, `${r.results[0]!.loss.mean} vs ${plain.results[0]!.loss.mean}`);
  // One step of α = 0.01 along the head's support gradient: a descent step on 20 tasks' average.
  assert.ok(r.results[1]!.loss.mean < r.results[0]!.loss.mean, `head step: ${r.results[1]!.loss.mean} vs ${r.results[0]!.loss.mean}`);
  dispose(params);
  // The MLP's split has batched forms, so a shard's tasks run as one episode.
  const t = new LocalMetaTrainer({ algorithm: "anil", metaBatchSize: 4, shardSize: 2, iterations: 3, batchTasks: true });
  assert.equal(t.runner.batched, true);
  const headKeys = new Set(run.setup.model.split!.headKeys);
  assert.deepEqual(names(t.params).filter((k) => headKeys.has(k)), ["dense2/kernel", "dense2/bias"]);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) await t.step();
  assert.equal(tf.memory().numTensors, before, "a training step leaves the tensor count unchanged");
  t.dispose();
});

test("batched ANIL (second and first order) and its batched evaluation equal one task at a time, to float32 rounding", async () => {
  // The batched episode runs the body once over all tasks' examples with shared weights (batch
  // norm per task) and each task's head on a task axis; only summation order differs from one
  // task at a time, so 1e-4 relative after two head steps and a second backward pass.
  const model = mlp({ sizes: [16, 12, 8, 3], batchNorm: true, inputShape: [4, 4, 1] });
  const theta = model.init(11);
  const tasks = [0, 1, 2].map((i) => task(30 + i, 3, 2, [4, 4, 1]));
  for (const firstOrder of [false, true]) {
    const fn = anilEpisode(model.split!, 2, 0.5, firstOrder);
    const before = tf.memory().numTensors;
    const one = await runEpisodes(theta, tasks, { model, kind: "classification", batched: false }, fn);
    const many = await runEpisodes(theta, tasks, { model, kind: "classification", batched: true }, fn);
    assert.equal(tf.memory().numTensors, before + 2 * names(theta).length, "only the two results remain");
    for (const k of names(theta)) {
      const x = one.sum[k]!.dataSync();
      const y = many.sum[k]!.dataSync();
      x.forEach((v, i) => assert.ok(Math.abs(v - y[i]!) <= 1e-4 * (1 + Math.abs(v)), `${firstOrder ? "first" : "second"} order ${k}[${i}]: ${v} vs ${y[i]}`));
    }
    one.metrics.forEach((m, i) => assert.ok(Math.abs(m.postLoss - many.metrics[i]!.postLoss) < 1e-5 * (1 + m.postLoss), `task ${i} post-loss`));
    // The "before" metrics are read off the query features the tape computes: they must be the
    // plain forward's query loss at θ (no step), here written out with the unbatched model.
    tasks.forEach((t, i) => {
      const want = postLoss(model, theta, t, 0, 0.5);
      for (const [how, m] of [["one by one", one.metrics[i]!], ["batched", many.metrics[i]!]] as const) {
        assert.ok(Math.abs(m.preLoss - want) <= 1e-5 * (1 + want), `${firstOrder ? "first" : "second"} order, ${how}, task ${i} pre-loss: ${m.preLoss} vs ${want}`);
      }
    });
    dispose(one.sum, many.sum);
  }
  dispose(theta);
  const run = resolveRun(parseRunConfig({ algorithm: "anil", innerSteps: 2, innerLr: 0.5, metaBatchSize: 4, shardSize: 2 }), NO_DATA);
  const params = anil.init(run.setup, 5);
  const o = { tasks: 6, steps: [0, 1, 2], seed: 3 };
  const a = await anil.evaluate(run.setup, params, { ...o, batch: 1 });
  const b = await anil.evaluate(run.setup, params, { ...o, batch: 4 }); // chunks of 4 and 2
  a.results.forEach((r, i) => assert.ok(Math.abs(r.loss.mean - b.results[i]!.loss.mean) <= 1e-5 * (1 + r.loss.mean), `${r.steps} steps: ${r.loss.mean} vs ${b.results[i]!.loss.mean}`));
  assert.notEqual(a.results[2]!.loss.mean, a.results[0]!.loss.mean, "the head adapts");
  dispose(params);
});

test("with an empty body (a single linear layer) ANIL's meta-gradient is MAML's", async () => {
  // All parameters are the head's, so adapting the head is adapting everything: the two must agree
  // to float32 rounding of the same operations (1e-6 relative).
  const model = mlp({ sizes: [16, 3], inputShape: [4, 4, 1] });
  const theta = model.init(8);
  const t = task(9, 3, 2, [4, 4, 1]);
  const a = await grad(model, theta, t, 2, 0.5, false);
  const m = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false }, mamlEpisode(2, 0.5, false))).sum;
  for (const k of names(m)) {
    const x = a[k]!.dataSync();
    const y = m[k]!.dataSync();
    x.forEach((v, i) => assert.ok(Math.abs(v - y[i]!) <= 1e-6 * Math.max(1, Math.abs(y[i]!)), `${k}[${i}]: ${v} vs ${y[i]}`));
  }
  dispose(theta, a, m);
});
