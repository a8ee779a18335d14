// Reptile as the paper runs it: minibatches in reshuffled passes, the inner Adam with β1 = 0 worked
// by hand on a one-parameter problem, train shots separate from test shots, and non-transductive
// prediction (one query at a time beside the support set).
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { minibatchIndices, _testing } from "../../meta/algorithms/reptile.js";
import { disposeEpisode, episodeOf } from "../../meta/algorithms/episodes.js";
import { mlp } from "../../meta/models.js";
import { dispose, type Params } from "../../meta/params.js";
import { parseRunConfig, resolveRun, runnerFor } from "../../meta/run-config.js";
import { NO_DATA } from "../../meta/trainer.js";
import { useCpu } from "../helpers/tf.js";

before(useCpu);

test("minibatches: passes over fresh shuffles, batches running across pass boundaries, the same for the same seed", () => {
  // n = 5, b = 2, 6 steps = 12 indices = 2 full passes and 2 of a third: batch 2 holds the last index
  // of pass 1 and the first of pass 2, so each pass (5 consecutive indices) is a permutation of 0..4.
  const a = minibatchIndices(7, 5, 2, 6);
  assert.deepEqual(a, minibatchIndices(7, 5, 2, 6));
  assert.notDeepEqual(a, minibatchIndices(8, 5, 2, 6));
  assert.equal(a.length, 6);
  assert.ok(a.every((batch) => batch.length === 2));
  const flat = a.flat();
  for (const pass of [flat.slice(0, 5), flat.slice(5, 10)]) assert.deepEqual([...pass].sort(), [0, 1, 2, 3, 4]);
  // A batch larger than the set is the whole set, every step.
  assert.deepEqual(minibatchIndices(1, 3, 10, 2).map((b) => [...b].sort()), [[0, 1, 2], [0, 1, 2]]);
});

test("the inner Adam with β1 = 0 on a one-parameter regression, worked by hand", async () => {
  // A 1-1 linear layer y = w·x + b on one example x = 1, y = 3: L = (w + b − 3)², so
  // ∂L/∂w = ∂L/∂b = 2(w + b − 3).
  // Start w = b = 0 ⇒ g = −6 for both. Adam, β1 = 0, β2 = 0.999, lr = 0.1, ε = 1e-8:
  //   t = 1: m = g = −6, v = 0.001·36 = 0.036, lr₁ = 0.1·√(1 − 0.999)/(1 − 0) = 0.1·0.0316228 = 0.00316228
  //          step = lr₁·m/(√v + ε) = 0.00316228·(−6)/0.189737 = −0.1 ⇒ w = b = 0.1
  //   t = 2: g = 2(0.2 − 3) = −5.6, m = −5.6, v = 0.999·0.036 + 0.001·31.36 = 0.067324,
  //          lr₂ = 0.1·√(1 − 0.999²)/1 = 0.1·0.0447102 = 0.00447102, step = 0.00447102·(−5.6)/0.259469 = −0.0964964
  //          ⇒ w = b = 0.1964964; Reptile's delta φ − θ = 0.1964964 for both.
  const model = mlp({ sizes: [1, 1] });
  const theta: Params = { "dense0/kernel": tf.tensor2d([[0]]), "dense0/bias": tf.tensor1d([0]) };
  const ex = { x: new Float32Array([1]), xShape: [1, 1], y: new Float32Array([3]) };
  const runner = runnerFor({ algorithm: "reptile", model, kind: "regression", innerSteps: 2, innerLr: 0.1, options: { innerOptimizer: "adam", adamBeta1: 0 } });
  const { sum } = await runner.runShard(theta, [{ support: ex, query: ex, seed: 1 }]);
  for (const k of ["dense0/kernel", "dense0/bias"]) assert.ok(Math.abs(sum[k]!.dataSync()[0]! - 0.1964964) < 1e-5, `${k}: ${sum[k]!.dataSync()[0]}`);
  dispose(theta, sum);
});

test("training tasks have trainShots per class (and one query), test tasks the task's own shots", () => {
  const run = resolveRun(parseRunConfig({ algorithm: "reptile", reptile: { trainShots: 4 } }), NO_DATA);
  assert.equal(run.setup.train.task(1, "train", 0, 0).support.xShape[0], 4);
  assert.equal(run.setup.test.task(1, "test", 0, 0).support.xShape[0], 10);
  const plain = resolveRun(parseRunConfig({ algorithm: "reptile" }), NO_DATA);
  assert.equal(plain.setup.train, plain.setup.test, "without trainShots, one family");
});

test("non-transductive prediction: each query beside the support set, exactly as a forward on that batch", () => {
  // With batch norm the output for a query depends on the batch it is in: predicted one at a time,
  // query j's output must equal the last row of forward([support; query j]), and differ from the
  // transductive output (batch statistics over all queries).
  const model = mlp({ sizes: [4, 6, 3], batchNorm: true });
  const theta = model.init(2);
  const rng = Array.from({ length: 3 * 4 * 4 }, (_, i) => Math.sin(i * 1.7));
  const set = (off: number) => ({ x: Float32Array.from(rng.slice(off, off + 12)), xShape: [3, 4], y: Int32Array.from([0, 1, 2]) });
  const e = episodeOf([{ support: set(0), query: set(12), seed: 1 }], model, "classification", false);
  tf.tidy(() => {
    const got = _testing.perExampleOutputs(e, theta).arraySync() as number[][];
    for (let j = 0; j < 3; j++) {
      const x = tf.concat([e.support.x, tf.slice(e.query.x, j, 1)], 0);
      const want = (model.forward(theta, x).arraySync() as number[][])[3]!;
      want.forEach((v, c) => assert.ok(Math.abs(v - got[j]![c]!) < 1e-6, `query ${j} class ${c}: ${got[j]![c]} vs ${v}`));
    }
    const transductive = model.forward(theta, e.query.x).arraySync() as number[][];
    assert.ok(transductive.some((row, j) => row.some((v, c) => Math.abs(v - got[j]![c]!) > 1e-3)), "batch statistics differ, so must the outputs");
  });
  dispose(theta);
  disposeEpisode(e);
});
