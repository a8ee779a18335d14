// Prototypical networks: prototypes, distances and the softmax over negative distances worked by
// hand; one episode's gradient against finite differences; nearest-prototype evaluation; no leaks.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, runEpisodes } from "../../meta/algorithms/episodes.js";
import { protonet, protonetEpisode, prototypeLogits } from "../../meta/algorithms/protonet.js";
import { taskLoss } from "../../meta/losses.js";
import { mlp } from "../../meta/models.js";
import { dispose, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task } from "../../meta/tasks/types.js";
import { dot, identityEmbedding, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(useCpu);

// A linear 2-d embedding set to the identity, so embeddings are the inputs themselves. 2-way 2-shot,
// support in shot-major order (labels 0, 1, 0, 1): class 0 at (0,0), (2,0) → prototype (1, 0);
// class 1 at (0,2), (0,4) → prototype (0, 3). Queries (1,1) of class 0 and (0,3) of class 1:
//   (1,1): d² = 1 to c0, 1 + 4 = 5 to c1 → logits [−1, −5], p(0) = 1/(1 + e⁻⁴) = 0.98201379,
//          loss −log p(0) = log(1 + e⁻⁴) = 0.01814993
//   (0,3): d² = 1 + 9 = 10 to c0, 0 to c1 → logits [−10, 0], loss log(1 + e⁻¹⁰) = 4.5398899e-5
//   episode loss = mean = 0.00909766; accuracy 1.
const handTask: Task = {
  support: { x: Float32Array.from([0, 0, 0, 2, 2, 0, 0, 4]), xShape: [4, 2], y: Int32Array.from([0, 1, 0, 1]) },
  query: { x: Float32Array.from([1, 1, 0, 3]), xShape: [2, 2], y: Int32Array.from([0, 1]) },
  seed: 1,
};

test("prototypes, negative squared distances and the episode loss, by hand", async () => {
  const { model, params } = identityEmbedding();
  const e = episodeOf([handTask], model, "classification", false);
  tf.tidy(() => {
    const logits = prototypeLogits(model, params, e).arraySync();
    [[-1, -5], [-10, 0]].forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(logits[i]![j]! - v) < 1e-6, `logit [${i}][${j}] ${logits[i]![j]} vs ${v}`)));
    const loss = taskLoss("classification", tf.tensor2d(logits), e.query.y).dataSync()[0]!;
    assert.ok(Math.abs(loss - 0.00909766) < 1e-7, `loss ${loss}`);
  });
  disposeEpisode(e);
  const before = tf.memory().numTensors;
  const r = await runEpisodes(params, [handTask], { model, kind: "classification", batched: false }, protonetEpisode(model));
  assert.ok(Math.abs(r.metrics[0]!.postLoss - 0.00909766) < 1e-7);
  assert.equal(r.metrics[0]!.postAccuracy, 1);
  assert.equal(r.metrics[0]!.preLoss, r.metrics[0]!.postLoss, "nothing adapts");
  dispose(r.sum);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  dispose(params);
});

test("one episode's gradient matches central differences (MLP embedding, 3-way 2-shot)", async () => {
  // ε = 1e-3 on a loss near 1: float32 rounding ~1e-7 → ~1e-4 relative in the quotient, the O(ε²)
  // truncation smaller; ReLU kinks within ±ε are unlikely for these directions: 1e-2 relative
  // (floor 5e-2 for near-zero derivatives).
  const model = mlp({ sizes: [6, 8, 4] });
  const theta = model.init(4);
  const rng = new Rng(9);
  const set = (n: number) => ({ x: Float32Array.from({ length: n * 6 }, () => rng.normal()), xShape: [n, 6], y: Int32Array.from({ length: n }, (_, i) => i % 3) });
  const t: Task = { support: set(6), query: set(9), seed: 1 };
  const loss = (p: Params) => {
    const e = episodeOf([t], model, "classification", false, 3);
    try {
      return tf.tidy(() => taskLoss("classification", prototypeLogits(model, p, e), e.query.y).dataSync()[0]!);
    } finally {
      disposeEpisode(e);
    }
  };
  const g = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false, classes: 3 }, protonetEpisode(model))).sum;
  const eps = 1e-3;
  for (let d = 0; d < 5; d++) {
    const v = randomDirection(theta, 40 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (loss(plus) - loss(minus)) / (2 * eps);
    const err = Math.abs(dot(g, v) - fd) / Math.max(5e-2, Math.abs(fd));
    assert.ok(err < 1e-2, `direction ${d}: ${dot(g, v)} vs ${fd} (${err})`);
    dispose(v, plus, minus);
  }
  dispose(theta, g);
});

test("train episodes take trainWays/trainShots/trainQueryShots, test episodes the task's; evaluation is the nearest prototype at any step count", async () => {
  const cfg = parseRunConfig({ algorithm: "protonet", task: { family: "omniglot", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4-embedding", filters: 4 }, protonet: { trainWays: 12, trainQueryShots: 5 } });
  const { loadOmniglot } = await import("../../storage/datasets.js");
  const run = resolveRun(cfg, { omniglot: (dir) => loadOmniglot(dir) });
  const tr = run.setup.train.task(1, "train", 0, 0);
  const te = run.setup.test.task(1, "test", 0, 0);
  assert.deepEqual([tr.support.xShape[0], tr.query.xShape[0]], [12, 60]);
  assert.deepEqual([te.support.xShape[0], te.query.xShape[0]], [5, 75]);
  const params = protonet.init(run.setup, 3);
  const before = tf.memory().numTensors;
  const r = await protonet.evaluate(run.setup, params, { tasks: 4, steps: [0, 5], seed: 2 });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(r.results[0]!.accuracy!.mean, r.results[1]!.accuracy!.mean, "no inner loop: every step count is the same");
  assert.ok(Number.isFinite(r.results[0]!.loss.mean), "a finite loss: the one-hot targets are 5 wide, not the embedding's 4 features");
  assert.ok(r.results[0]!.accuracy!.mean > 0.2, `an untrained embedding already beats chance with prototypes: ${r.results[0]!.accuracy!.mean}`);
  dispose(params);
});

test("validation: protonet needs an embedding model, classifier learners refuse one", () => {
  assert.throws(() => parseRunConfig({ algorithm: "protonet", task: { family: "omniglot" }, model: { kind: "conv4" } }), /protonet needs an embedding model without a classifier; conv4 is not one — use conv4-embedding/);
  assert.throws(() => parseRunConfig({ algorithm: "maml", task: { family: "omniglot" }, model: { kind: "conv4-embedding" } }), /maml needs a model with a classifier/);
});
