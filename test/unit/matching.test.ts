// Matching networks: cosine and Euclidean attention worked by hand; one episode's gradient against
// finite differences (each distance, and with Full Context Embeddings); train vs test episodes;
// bit-identical shards from one seed; no leaks.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, runEpisodes } from "../../meta/algorithms/episodes.js";
import type { LearnerSetup } from "../../meta/algorithms/learner.js";
import { attentionLogits, fceKey, matching, matchingEpisode, matchingLogits, type MatchingOptions, type MatchingRule } from "../../meta/algorithms/matching.js";
import { taskLoss } from "../../meta/losses.js";
import { mlp, type Model } from "../../meta/models.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun, resumeIncompatibilities } from "../../meta/run-config.js";
import type { Task } from "../../meta/tasks/types.js";
import { dot, identityEmbedding, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(useCpu);

// A linear 2-d embedding set to the identity, so embeddings are the inputs. 2-way 2-shot, support in
// shot-major order (labels 0, 1, 0, 1): s0 = (1,0), s1 = (0,1), s2 = (1,1) of class 0 … s3 = (0,2) of
// class 1, i.e. class 0 = {s0, s2}, class 1 = {s1, s3}. Queries q0 = (1,0) of class 0, q1 = (1,2) of
// class 1. ŷ_k = Σ_{i∈k} exp c_i / Σ_i exp c_i, loss −log ŷ_label, episode loss the mean.
// Cosine:
//   q0: c = [1, 0, 1/√2, 0] → ŷ0 = (e + e^0.707107)/(e + e^0.707107 + 2) = 4.746397/6.746397
//       = 0.70354545, loss 0.35162279
//   q1: c = [1/√5, 2/√5, 3/√10, 2/√5] = [0.447214, 0.894427, 0.948683, 0.894427]
//       → ŷ1 = 2e^0.894427/(e^0.447214 + e^0.948683 + 2e^0.894427) = 0.54124822, loss 0.61387729
//   episode loss 0.48275004; accuracy 1.
// Euclidean (c = −‖q − s‖²):
//   q0: c = [0, −2, −1, −5] → ŷ0 = (1 + e⁻¹)/(1 + e⁻¹ + e⁻² + e⁻⁵) = 0.90590882, loss 0.09881662
//   q1: c = [−4, −2, −1, −1] → ŷ1 = (e⁻² + e⁻¹)/(e⁻⁴ + e⁻² + 2e⁻¹) = 0.56578500, loss 0.56954114
//       (s2 of class 0 is as near as s3: the class's other member, s1, decides)
//   episode loss 0.33417888; accuracy 1.
const handTask: Task = {
  support: { x: Float32Array.from([1, 0, 0, 1, 1, 1, 0, 2]), xShape: [4, 2], y: Int32Array.from([0, 1, 0, 1]) },
  query: { x: Float32Array.from([1, 0, 1, 2]), xShape: [2, 2], y: Int32Array.from([0, 1]) },
  seed: 1,
};
const rule = (distance: MatchingOptions["distance"], fce = false): MatchingRule => ({ distance, fce, fceSteps: 3 });

for (const [distance, probs, loss] of [
  ["cosine", [[0.70354545, 0.29645455], [0.45875178, 0.54124822]], 0.48275004],
  ["euclidean", [[0.90590882, 0.09409118], [0.434215, 0.565785]], 0.33417888],
] as const) {
  test(`${distance} attention: ŷ and the episode loss, by hand`, async () => {
    const { model, params } = identityEmbedding();
    const e = episodeOf([handTask], model, "classification", false, 2);
    tf.tidy(() => {
      const logits = matchingLogits(model, params, e, rule(distance));
      const p = tf.softmax(logits).arraySync() as number[][];
      probs.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(p[i]![j]! - v) < 1e-6, `ŷ[${i}][${j}] ${p[i]![j]} vs ${v}`)));
      const l = taskLoss("classification", logits, e.query.y).dataSync()[0]!;
      assert.ok(Math.abs(l - loss) < 1e-6, `loss ${l} vs ${loss}`);
    });
    disposeEpisode(e);
    const before = tf.memory().numTensors;
    const r = await runEpisodes(params, [handTask], { model, kind: "classification", batched: false, classes: 2 }, matchingEpisode(model, rule(distance)));
    assert.ok(Math.abs(r.metrics[0]!.postLoss - loss) < 1e-6);
    assert.equal(r.metrics[0]!.postAccuracy, 1);
    assert.equal(r.metrics[0]!.preLoss, r.metrics[0]!.postLoss, "nothing adapts");
    dispose(r.sum);
    assert.equal(tf.memory().numTensors, before, "no tensors left behind");
    dispose(params);
  });
}

test("a query far from its class: a finite loss and a gradient, where log(clip(ŷ)) would be flat", () => {
  // Class 0 at (0,0), class 1 at (100,0); a class-0 query at (100,0): c = [−10⁴, 0], so ŷ0 = e^−10⁴
  // underflows to 0 in float32; the log-sum-exp logits give loss 10⁴ and ∂loss/∂q = 2(q − s0) −
  // 2(q − s1)·ŷ1 = (200, 0) with ŷ1 = 1: moving q towards s0 lowers the loss.
  tf.tidy(() => {
    const zs = tf.tensor2d([[0, 0], [100, 0]]);
    const onehot = tf.tensor2d([[1, 0], [0, 1]]);
    const f = (zq: tf.Tensor) => taskLoss("classification", attentionLogits(zq as tf.Tensor2D, zs, onehot, "euclidean"), tf.tensor2d([[1, 0]]));
    const q = tf.tensor2d([[100, 0]]);
    assert.equal(f(q).dataSync()[0], 10000);
    assert.deepEqual(Array.from(tf.grad(f)(q).dataSync()), [200, 0]);
  });
});

/** A 3-way task of 2 support and 3 query examples per class on 6 features. */
function task(seed: number): Task {
  const rng = new Rng(seed);
  const set = (n: number) => ({ x: Float32Array.from({ length: n * 6 }, () => rng.normal()), xShape: [n, 6], y: Int32Array.from({ length: n }, (_, i) => i % 3) });
  return { support: set(6), query: set(9), seed };
}

/** What init needs of a setup: the model and the options. */
const setupOf = (model: Model, r: MatchingRule) => ({ model, hyper: { ...r } }) as unknown as LearnerSetup<MatchingOptions>;

for (const [distance, fce] of [["cosine", false], ["euclidean", false], ["cosine", true], ["euclidean", true]] as const) {
  test(`one episode's gradient matches central differences (${distance}${fce ? ", FCE" : ""}; MLP embedding, 3-way 2-shot)`, async () => {
    // ε = 1e-3 on a loss near 1: float32 rounding ~1e-7 → ~1e-4 relative in the quotient, the O(ε²)
    // truncation smaller; ReLU kinks within ±ε are unlikely for these directions (sigmoid and tanh in
    // the LSTMs are smooth): 1e-2 relative (floor 5e-2 for near-zero derivatives).
    const model = mlp({ sizes: [6, 8, 4] });
    const r = rule(distance, fce);
    const theta = matching.init(setupOf(model, r), 4);
    assert.equal(names(theta).includes(fceKey("att", "kernel")), fce, "the LSTMs are meta-parameters exactly with fce");
    const t = task(9);
    const loss = (p: Params) => {
      const e = episodeOf([t], model, "classification", false, 3);
      try {
        return tf.tidy(() => taskLoss("classification", matchingLogits(model, p, e, r), e.query.y).dataSync()[0]!);
      } finally {
        disposeEpisode(e);
      }
    };
    const g = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false, classes: 3 }, matchingEpisode(model, r))).sum;
    assert.deepEqual(names(g), names(theta));
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
}

/** A small Omniglot run of `matching` with the given options (Conv4 of 4 filters: 4 features). */
async function omniglotRun(opts: Partial<MatchingOptions>) {
  const cfg = parseRunConfig({ algorithm: "matching", task: { family: "omniglot", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4-embedding", filters: 4 }, matching: opts });
  const { loadOmniglot } = await import("../../storage/datasets.js");
  return resolveRun(cfg, { omniglot: (dir) => loadOmniglot(dir) });
}

test("train episodes take trainWays/trainShots/trainQueryShots, test episodes the task's; shards and evaluation leak nothing", async () => {
  const run = await omniglotRun({ trainWays: 12, trainShots: 2, trainQueryShots: 5, fce: true, fceSteps: 2 });
  const tr = run.setup.train.task(1, "train", 0, 0);
  const te = run.setup.test.task(1, "test", 0, 0);
  assert.deepEqual([tr.support.xShape[0], tr.query.xShape[0]], [24, 60]);
  assert.deepEqual([te.support.xShape[0], te.query.xShape[0]], [5, 75]);
  const params = matching.init(run.setup, 3);
  const before = tf.memory().numTensors;
  const shard = await matching.shardRunner(run.setup).runShard(params, [tr, run.setup.train.task(1, "train", 0, 1)]);
  assert.equal(shard.metrics.length, 2);
  assert.deepEqual(names(shard.sum), names(params));
  dispose(shard.sum);
  assert.equal(tf.memory().numTensors, before, "a shard leaves nothing behind");
  const r = await matching.evaluate(run.setup, params, { tasks: 4, steps: [0, 5], seed: 2 });
  assert.equal(tf.memory().numTensors, before, "evaluation leaves nothing behind");
  assert.equal(r.results[0]!.accuracy!.mean, r.results[1]!.accuracy!.mean, "no inner loop: every step count is the same");
  assert.ok(Number.isFinite(r.results[0]!.loss.mean), "a finite loss: the one-hot targets are 5 wide, not the embedding's 4 features");
  dispose(params);
});

test("the same seed gives bit-identical initial parameters and shard results", async () => {
  // Two queries per class keep the Conv4 forward on the cpu backend short.
  for (const opts of [{ distance: "cosine" as const, trainQueryShots: 2 }, { distance: "euclidean" as const, trainQueryShots: 2, fce: true, fceSteps: 2 }]) {
    const run = await omniglotRun(opts);
    const tasks = [0, 1].map((i) => run.setup.train.task(7, "train", 0, i));
    const once = async () => {
      const params = matching.init(run.setup, 5);
      const shard = await matching.shardRunner(run.setup).runShard(params, tasks);
      const out = { params: names(params).map((k) => Array.from(params[k]!.dataSync())), sum: names(shard.sum).map((k) => Array.from(shard.sum[k]!.dataSync())), metrics: shard.metrics };
      dispose(params, shard.sum);
      return out;
    };
    assert.deepEqual(await once(), await once(), JSON.stringify(opts));
  }
});

test("validation and resume: an embedding model is required; fce is pinned; protonet's checkpoints are not matching's", () => {
  assert.throws(() => parseRunConfig({ algorithm: "matching", task: { family: "omniglot" }, model: { kind: "conv4" } }), /matching needs an embedding model without a classifier; conv4 is not one — use conv4-embedding/);
  const base = { task: { family: "omniglot" }, model: { kind: "conv4-embedding" } };
  const plain = parseRunConfig({ ...base, algorithm: "matching" });
  assert.deepEqual(resumeIncompatibilities(plain, parseRunConfig({ ...base, algorithm: "matching", matching: { distance: "euclidean" } }), 0), []);
  assert.match(resumeIncompatibilities(plain, parseRunConfig({ ...base, algorithm: "matching", matching: { fce: true } }), 0).join("\n"), /matching\.fce: the checkpoint was trained with false; keep it/);
  assert.match(resumeIncompatibilities(parseRunConfig({ ...base, algorithm: "protonet" }), plain, 0).join("\n"), /trained with protonet/);
});
