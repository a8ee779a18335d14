// Relation networks: the query × class pairing, class sums and MSE worked by hand; one episode's
// gradient against finite differences; per-network gradient clipping after the shard sum; argmax
// evaluation; determinism and no leaks.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { InvalidRunConfigError } from "../../contracts/config.js";
import { disposeEpisode, episodeOf, runEpisodes } from "../../meta/algorithms/episodes.js";
import { relation, relationEpisode, relationLoss, relationOf, relationScores } from "../../meta/algorithms/relation.js";
import type { Model } from "../../meta/models.js";
import { relationNet, type RelationModules, type RelationNetModel } from "../../meta/models/relation-net.js";
import { adam, clipFactors } from "../../meta/optimizers.js";
import { dispose, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task } from "../../meta/tasks/types.js";
import { dot, randomDirection, shifted, useCpu, values } from "../helpers/tf.js";

before(useCpu);

// A 2-way 2-shot episode of 2-d inputs whose "embedding" is the input as a 1×1 map of 2 channels.
// Support in shot-major order (labels 0, 1, 0, 1): class 0 at (1,0), (2,0) → class sum (3, 0);
// class 1 at (0,1), (0,3) → class sum (0, 4). Queries q0 = (5,6) of class 1, q1 = (7,8) of class 0.
// Pairs, row i·ways + j = query i with class j, channels [class map, query map]:
//   row 0 (q0, c0) [3, 0, 5, 6]   row 1 (q0, c1) [0, 4, 5, 6]
//   row 2 (q1, c0) [3, 0, 7, 8]   row 3 (q1, c1) [0, 4, 7, 8]
// The relation "module" σ(w·pair) with w = (0.1, −0.1, 0, 0) scores classes, not queries:
//   c0: σ(0.3) = 0.57444252, c1: σ(−0.4) = 0.40131234 for both queries.
//   MSE to one-hot [[0,1],[1,0]]: (0.57444252² + 0.59868766² + 0.42555748² + 0.40131234²) / 4
//   = (0.68841112 + 0.34215077) / 4 = 0.25764047; argmax 0 for both → accuracy 1/2.
const handTask: Task = {
  support: { x: Float32Array.from([1, 0, 0, 1, 2, 0, 0, 3]), xShape: [4, 2], y: Int32Array.from([0, 1, 0, 1]) },
  query: { x: Float32Array.from([5, 6, 7, 8]), xShape: [2, 2], y: Int32Array.from([1, 0]) },
  seed: 1,
};
function handModel(): { model: Model; rel: RelationModules; params: Params; pairs: number[][][][][] } {
  const pairs: number[][][][][] = [];
  const rel: RelationModules = {
    groups: ["w"],
    embed: (_p, x) => tf.reshape(x, [x.shape[0]!, 1, 1, 2]),
    relate(p, pr) {
      pairs.push(pr.arraySync());
      return tf.sigmoid(tf.sum(tf.mul(tf.reshape(pr, [pr.shape[0], 4]), p["w"]!), 1)) as tf.Tensor1D;
    },
  };
  const model: RelationNetModel = { name: "hand", inputShape: [2], outputs: 2, batchNorm: "none", init: () => ({}), forward: (_p, x) => x, relation: rel };
  return { model, rel, params: { w: tf.tensor1d([0.1, -0.1, 0, 0]) }, pairs };
}

test("pairs, class sums and the MSE to one-hot, by hand", async () => {
  const { model, rel, params, pairs } = handModel();
  const e = episodeOf([handTask], model, "classification", false, 2);
  tf.tidy(() => {
    const scores = relationScores(rel, params, e).arraySync();
    assert.deepEqual(pairs[0]!.map((r) => r[0]![0]), [[3, 0, 5, 6], [0, 4, 5, 6], [3, 0, 7, 8], [0, 4, 7, 8]]);
    [[0.57444252, 0.40131234], [0.57444252, 0.40131234]].forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(scores[i]![j]! - v) < 1e-6, `score [${i}][${j}] ${scores[i]![j]} vs ${v}`)));
    // MSE alone on given scores: diffs 0.2, 0.1, 0.4, 0.3 → (0.04 + 0.01 + 0.16 + 0.09) / 4 = 0.075.
    const mse = relationLoss(tf.tensor2d([[0.2, 0.9], [0.6, 0.3]]), tf.tensor2d([[0, 1], [1, 0]])).dataSync()[0]!;
    assert.ok(Math.abs(mse - 0.075) < 1e-7, `mse ${mse}`);
  });
  disposeEpisode(e);
  const before = tf.memory().numTensors;
  const r = await runEpisodes(params, [handTask], { model, kind: "classification", batched: false, classes: 2 }, relationEpisode(rel));
  assert.ok(Math.abs(r.metrics[0]!.postLoss - 0.25764047) < 1e-6, `loss ${r.metrics[0]!.postLoss}`);
  assert.equal(r.metrics[0]!.postAccuracy, 0.5);
  assert.equal(r.metrics[0]!.preLoss, r.metrics[0]!.postLoss, "nothing adapts");
  dispose(r.sum);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  dispose(params);
});

test("one episode's gradient matches central differences (relation-net, 4 filters, 3-way 2-shot)", async () => {
  // ε = 1e-3: the loss (near 0.2) is a float32 sum through batch norm and 18 pairs, good to ~1e-7,
  // so the quotient carries ~1e-4 of noise (seen: up to 1.1e-4); wider ε is worse here, ReLU and
  // max-pool kinks within ±ε multiply. Tolerance 1e-2 relative plus 3e-4 absolute. Directions: the
  // normalised gradient itself (derivative ‖g‖, the strongest signal), then random unit ones. The
  // dense kernels are redrawn at N(0, 0.5) (not the init's 0.01) so the embedding's gradient is not
  // vanishingly small.
  const model = relationNet({ filters: 4, hidden: 4 });
  const rel = relationOf(model);
  const theta = model.init(4);
  const rng = new Rng(9);
  for (const k of ["relation/dense0/kernel", "relation/dense1/kernel"]) {
    const t = theta[k]!;
    theta[k] = tf.tensor(Float32Array.from({ length: t.size }, () => 0.5 * rng.normal()), t.shape);
    t.dispose();
  }
  const set = (n: number) => ({ x: Float32Array.from({ length: n * 784 }, () => rng.normal()), xShape: [n, 28, 28, 1], y: Int32Array.from({ length: n }, (_, i) => i % 3) });
  const t: Task = { support: set(6), query: set(6), seed: 1 };
  const loss = (p: Params) => {
    const e = episodeOf([t], model, "classification", false, 3);
    try {
      return tf.tidy(() => relationLoss(relationScores(rel, p, e), e.query.y).dataSync()[0]!);
    } finally {
      disposeEpisode(e);
    }
  };
  const g = (await runEpisodes(theta, [t], { model, kind: "classification", batched: false, classes: 3 }, relationEpisode(rel))).sum;
  const eps = 1e-3;
  const norm = Math.sqrt(dot(g, g));
  for (let d = 0; d < 5; d++) {
    const v = d === 0 ? shifted(g, g, 1 / norm - 1) : randomDirection(theta, 40 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (loss(plus) - loss(minus)) / (2 * eps);
    const err = Math.abs(dot(g, v) - fd);
    assert.ok(err < 1e-2 * Math.abs(fd) + 3e-4, `direction ${d}: ${dot(g, v)} vs ${fd} (${err})`);
    dispose(v, plus, minus);
  }
  dispose(theta, g);
});

test("gradient clipping acts per group on the mean of the summed shards, by hand", () => {
  // Two tasks summed: a/x sums to (6, 8), b/y to (1). Means (3, 4) with norm 5 and (0.5) with norm
  // 0.5. Cap 1 per group: a/x scaled by 1 / (5 + 1e-6) → (0.6, 0.8); b/y under the cap, kept.
  // Adam's first moments are then (1 − β1)·g = (0.06, 0.08) and 0.05; second (1 − β2)·g² =
  // (3.6e-4, 6.4e-4) and 2.5e-4. One norm over all ((3, 4, 0.5): √25.25 = 5.02494) scales b/y too.
  const sum = { "a/x": tf.tensor1d([6, 8]), "b/y": tf.tensor1d([1]) };
  const params = { "a/x": tf.tensor1d([0, 0]), "b/y": tf.tensor1d([0]) };
  const f = clipFactors(sum, 2, { max: 1, groups: ["a/"] });
  assert.ok(Math.abs(f.get("a/x")! - 0.2) < 1e-7);
  assert.equal(f.get("b/y"), 1);
  const all = clipFactors(sum, 2, { max: 1 });
  assert.ok(Math.abs(all.get("b/y")! - 1 / 5.0249378) < 1e-7, `one group: ${all.get("b/y")}`);
  const before = tf.memory().numTensors;
  const opt = adam({ clipNorm: { max: 1, groups: ["a/"] } });
  const r = opt.apply(params, sum, 2, opt.initialState(params), { metaLr: 0.001 });
  const [mx, my] = r.state.moments!;
  [0.06, 0.08].forEach((v, i) => assert.ok(Math.abs(mx!.m[i]! - v) < 1e-7, `m ${mx!.m[i]} vs ${v}`));
  [3.6e-4, 6.4e-4].forEach((v, i) => assert.ok(Math.abs(mx!.v[i]! - v) < 1e-9, `v ${mx!.v[i]} vs ${v}`));
  assert.ok(Math.abs(my!.m[0]! - 0.05) < 1e-8 && Math.abs(my!.v[0]! - 2.5e-4) < 1e-10);
  dispose(r.params);
  assert.equal(tf.memory().numTensors, before, "no tensors left behind");
  // Clipping each shard before the sum would give another step: shards (6, 0) and (0, 8) are each
  // clipped to norm 1 → mean (0.5, 0.5), not (0.6, 0.8). Only the coordinator's sum is clipped.
  dispose(sum, params);
});

test("train episodes take trainWays/trainShots/trainQueryShots; the same seed gives bit-identical shards; evaluation is the argmax score; no leaks", async () => {
  const cfg = parseRunConfig({ algorithm: "relation", task: { family: "omniglot", ways: 5, shots: 1, queryShots: 1 }, model: { kind: "relation-net", filters: 2, hidden: 2 }, relation: { trainWays: 4, trainShots: 2, trainQueryShots: 3 } });
  const { loadOmniglot } = await import("../../storage/datasets.js");
  const run = resolveRun(cfg, { omniglot: (dir) => loadOmniglot(dir) });
  const tr = run.setup.train.task(1, "train", 0, 0);
  const te = run.setup.test.task(1, "test", 0, 0);
  assert.deepEqual([tr.support.xShape[0], tr.query.xShape[0]], [8, 12]);
  assert.deepEqual([te.support.xShape[0], te.query.xShape[0]], [5, 5]);
  const tasks = [tr, run.setup.train.task(1, "train", 0, 1)];
  const shard = async () => {
    const p = relation.init(run.setup, 3);
    const before = tf.memory().numTensors;
    const r = await relation.shardRunner(run.setup).runShard(p, tasks);
    const out = values(r.sum);
    dispose(r.sum);
    assert.equal(tf.memory().numTensors, before, "a shard leaves no tensors");
    dispose(p);
    return { out, metrics: r.metrics };
  };
  const [a, b] = [await shard(), await shard()];
  assert.deepEqual(a.metrics, b.metrics);
  for (const k of Object.keys(a.out)) assert.deepEqual(a.out[k], b.out[k], `${k} bit-identical`);
  assert.ok(Object.keys(a.out).some((k) => k.startsWith("embed/")) && Object.keys(a.out).some((k) => k.startsWith("relation/")));

  const params = relation.init(run.setup, 3);
  const before = tf.memory().numTensors;
  const r = await relation.evaluate(run.setup, params, { tasks: 3, steps: [0, 5], seed: 2 });
  assert.equal(tf.memory().numTensors, before, "evaluation leaves no tensors");
  assert.equal(r.results[0]!.accuracy!.mean, r.results[1]!.accuracy!.mean, "no inner loop: every step count is the same");
  assert.ok(Number.isFinite(r.results[0]!.loss.mean));
  // The same tasks by hand: the argmax of the relation scores.
  let correct = 0;
  for (let i = 0; i < 3; i++) {
    const e = episodeOf([run.setup.test.task(2, "test", 0, i)], run.setup.model, "classification", false, 5);
    correct += tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(relationScores(relationOf(run.setup.model), params, e), 1), e.query.labels!), "float32")).dataSync()[0]!);
    disposeEpisode(e);
  }
  assert.ok(Math.abs(r.results[0]!.accuracy!.mean - correct / 15) < 1e-6, `${r.results[0]!.accuracy!.mean} vs ${correct / 15}`);
  dispose(params);
});

test("the outer step clips the embedding and the relation module apart, at clipNorm", () => {
  const cfg = parseRunConfig({ algorithm: "relation", task: { family: "omniglot" }, model: { kind: "relation-net", filters: 2, hidden: 2 } });
  assert.deepEqual(cfg.relation, { clipNorm: 0.5, lrHalvingEvery: 100_000 }, "the reference code's clip and StepLR by default");
  const model = relationNet({ filters: 2, hidden: 2 });
  const p = model.init(1);
  const g = model.init(2); // a stand-in gradient: both groups' norms are above 0.5 (batch-norm scales of 1)
  const f = clipFactors(g, 1, { max: 0.5, groups: relationOf(model).groups });
  const keys = Object.keys(p);
  const embedKeys = keys.filter((k) => k.startsWith("embed/"));
  const relKeys = keys.filter((k) => k.startsWith("relation/"));
  assert.equal(embedKeys.length + relKeys.length, keys.length, "every parameter is in one of the two networks");
  assert.ok(embedKeys.every((k) => f.get(k) === f.get(embedKeys[0]!)) && relKeys.every((k) => f.get(k) === f.get(relKeys[0]!)));
  assert.ok(f.get(embedKeys[0]!)! < 1 && f.get(relKeys[0]!)! < 1 && f.get(embedKeys[0]!) !== f.get(relKeys[0]!), "two norms, two factors");
  // The learner's Adam: first moments (1 − β1)·factor·g, the factor of the parameter's network.
  const opt = relation.outer({ config: cfg, hyper: cfg.relation as never, model, train: undefined as never, test: undefined as never });
  const r = opt.apply(p, g, 1, opt.initialState(p), { metaLr: 0.001 });
  for (const k of [embedKeys[0]!, relKeys[relKeys.length - 1]!]) {
    const m = r.state.moments!.find((x) => x.name === k)!.m;
    const want = values({ [k]: g[k]! })[k]!.map((x) => 0.1 * f.get(k)! * x);
    m.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-7, `${k}[${i}] ${v} vs ${want[i]}`));
  }
  dispose(p, g, r.params);
});

test("validation: relation needs a relation-net model, refused at config parse", () => {
  assert.throws(() => parseRunConfig({ algorithm: "relation", task: { family: "omniglot" }, model: { kind: "conv4" } }), /relation needs an embedding model without a classifier/);
  // An embedding without a relation module: refused by the config, before any worker builds it.
  assert.throws(
    () => parseRunConfig({ algorithm: "relation", task: { family: "omniglot" }, model: { kind: "conv4-embedding", filters: 2 } }),
    (e: unknown) => e instanceof InvalidRunConfigError && /relation needs a relation-net model; conv4-embedding is not one — set model.kind: relation-net/.test(e.message),
  );
  parseRunConfig({ algorithm: "relation", task: { family: "omniglot" }, model: { kind: "relation-net", filters: 2, hidden: 2 } });
});
