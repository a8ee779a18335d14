// MAML, first-order MAML and Reptile (with plain SGD inner steps): meta-gradients against finite differences, the first-order
// identity, a Reptile delta worked by hand, determinism and tensor leaks.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runnerFor } from "../helpers/learners.js";
import { mlp, sinusoidMlp } from "../../meta/models.js";
import { dispose, type Params } from "../../meta/params.js";
import { taskLoss, toTensors } from "../../meta/losses.js";
import { sinusoidFamily } from "../../meta/tasks/sinusoid.js";
import { LocalMetaTrainer } from "../../meta/trainer.js";
import type { Task } from "../../meta/tasks/types.js";
import { dot, randomDirection, shifted, useCpu, values } from "../helpers/tf.js";

before(useCpu);

/** Query loss after k SGD steps on the support set, evaluated in plain forward mode. */
function postAdaptationLoss(model: ReturnType<typeof mlp>, theta: Params, task: Task, k: number, lr: number): number {
  return tf.tidy(() => {
    const s = toTensors(task.support, "regression", 1);
    const q = toTensors(task.query, "regression", 1);
    const keys = Object.keys(theta);
    let phi = theta;
    for (let i = 0; i < k; i++) {
      const cur = phi;
      const g = tf.grads((...v: tf.Tensor[]) => {
        const p: Params = {};
        keys.forEach((n, j) => (p[n] = v[j]!));
        return taskLoss("regression", model.forward(p, s.x), s.y);
      })(keys.map((n) => cur[n]!));
      const next: Params = {};
      keys.forEach((n, j) => (next[n] = tf.sub(cur[n]!, tf.mul(g[j]!, lr))));
      phi = next;
    }
    return taskLoss("regression", model.forward(phi, q.x), q.y).dataSync()[0]!;
  });
}

test("MAML meta-gradient through 3 inner steps matches central finite differences (MLP)", async () => {
  // A small tanh-free ReLU MLP on one sinusoid task. Directional derivative along 4 random unit
  // directions v: (L(θ+εv) − L(θ−εv)) / 2ε with ε = 1e-3. In float32 the loss (~1–10) carries
  // ~1e-6 absolute rounding, so the quotient carries ~1e-3; truncation is O(ε²·L''') ≪ that. A
  // ReLU kink crossed within ±ε would break this; with these seeds none is (checked: the same
  // directions agree to < 1%). First-order MAML must be visibly worse, proving the
  // second-order term is really there.
  const model = mlp({ sizes: [1, 16, 16, 1] });
  const theta = model.init(7);
  const task = sinusoidFamily({ shots: 10 }).task(3, "train", 0, 0);
  const k = 3;
  const lr = 0.05;
  const maml = runnerFor({ algorithm: "maml", model, kind: "regression", innerSteps: k, innerLr: lr });
  const fo = runnerFor({ algorithm: "fomaml", model, kind: "regression", innerSteps: k, innerLr: lr });
  const g2 = (await maml.runShard(theta, [task])).sum;
  const g1 = (await fo.runShard(theta, [task])).sum;
  let worstSecond = 0;
  let worstFirst = 0;
  for (let d = 0; d < 4; d++) {
    const v = randomDirection(theta, 100 + d);
    const eps = 1e-3;
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (postAdaptationLoss(model, plus, task, k, lr) - postAdaptationLoss(model, minus, task, k, lr)) / (2 * eps);
    const scale = Math.max(1e-2, Math.abs(fd));
    worstSecond = Math.max(worstSecond, Math.abs(dot(g2, v) - fd) / scale);
    worstFirst = Math.max(worstFirst, Math.abs(dot(g1, v) - fd) / scale);
    dispose(v, plus, minus);
  }
  assert.ok(worstSecond < 1e-2, `MAML vs finite differences: worst relative error ${worstSecond}`);
  assert.ok(worstFirst > 10 * worstSecond, `first-order MAML should differ from the true meta-gradient (${worstFirst} vs ${worstSecond})`);
  dispose(theta, g1, g2);
});

test("first-order MAML equals the query gradient at the last inner step's parameters", async () => {
  const model = sinusoidMlp();
  const theta = model.init(11);
  const task = sinusoidFamily({ shots: 5 }).task(1, "train", 4, 2);
  const k = 2;
  const lr = 0.01;
  const fo = runnerFor({ algorithm: "fomaml", model, kind: "regression", innerSteps: k, innerLr: lr });
  const { sum } = await fo.runShard(theta, [task]);
  // Independently: φ_k by k explicit SGD steps, then ∇_φ L_query(φ_k).
  const expected = tf.tidy(() => {
    const s = toTensors(task.support, "regression", 1);
    const q = toTensors(task.query, "regression", 1);
    const keys = Object.keys(theta);
    const lossOn = (x: tf.Tensor, y: tf.Tensor) => (...v: tf.Tensor[]) => {
      const p: Params = {};
      keys.forEach((n, j) => (p[n] = v[j]!));
      return taskLoss("regression", model.forward(p, x), y);
    };
    let phi = keys.map((n) => theta[n]!);
    for (let i = 0; i < k; i++) {
      const g = tf.grads(lossOn(s.x, s.y))(phi);
      phi = phi.map((t, j) => tf.sub(t, tf.mul(g[j]!, lr)));
    }
    const gq = tf.grads(lossOn(q.x, q.y))(phi);
    const out: Record<string, Float32Array> = {};
    keys.forEach((n, j) => (out[n] = gq[j]!.dataSync() as Float32Array));
    return out as unknown as tf.TensorContainer;
  }) as unknown as Record<string, Float32Array>;
  const got = values(sum);
  for (const n of Object.keys(expected)) assert.deepEqual(got[n], expected[n], `parameter ${n}`);
  dispose(theta, sum);
});

test("Reptile delta on a 1-parameter linear model, worked by hand", async () => {
  // Model y = w·x + b with w = 0.5, b = 0 (an mlp with sizes [1, 1]). Support: x = [1, 2],
  // y = [2, 4]. Loss L = mean((w·x + b − y)²), so
  //   ∂L/∂w = mean(2(w·x + b − y)·x),  ∂L/∂b = mean(2(w·x + b − y)).
  // Step 1 (α = 0.1): residuals r = [0.5−2, 1−4] = [−1.5, −3]
  //   ∂w = (2·−1.5·1 + 2·−3·2)/2 = −7.5,  ∂b = (2·−1.5 + 2·−3)/2 = −4.5
  //   w = 0.5 + 0.75 = 1.25,  b = 0 + 0.45 = 0.45
  // Step 2: r = [1.25+0.45−2, 2.5+0.45−4] = [−0.3, −1.05]
  //   ∂w = (2·−0.3 + 2·−1.05·2)/2 = −2.4,  ∂b = (2·−0.3 + 2·−1.05)/2 = −1.35
  //   w = 1.25 + 0.24 = 1.49,  b = 0.45 + 0.135 = 0.585
  // Reptile delta φ − θ = [0.99, 0.585].
  const model = mlp({ sizes: [1, 1] });
  const theta: Params = { "dense0/kernel": tf.tensor2d([[0.5]]), "dense0/bias": tf.tensor1d([0]) };
  const ex = { x: new Float32Array([1, 2]), xShape: [2, 1], y: new Float32Array([2, 4]) };
  const reptile = runnerFor({ algorithm: "reptile", model, kind: "regression", innerSteps: 2, innerLr: 0.1 });
  const { sum } = await reptile.runShard(theta, [{ support: ex, query: ex, seed: 1 }]);
  const got = values(sum);
  assert.ok(Math.abs(got["dense0/kernel"]![0]! - 0.99) < 1e-6, `Δw = ${got["dense0/kernel"]![0]}`);
  assert.ok(Math.abs(got["dense0/bias"]![0]! - 0.585) < 1e-6, `Δb = ${got["dense0/bias"]![0]}`);
  dispose(theta, sum);
});

test("a shard's result is the sum of its tasks' results, in task order", async () => {
  const model = sinusoidMlp();
  const theta = model.init(5);
  const fam = sinusoidFamily();
  const tasks = [0, 1, 2].map((i) => fam.task(9, "train", 0, i));
  const algo = runnerFor({ algorithm: "maml", model, kind: "regression", innerSteps: 1, innerLr: 0.01 });
  const whole = values((await algo.runShard(theta, tasks)).sum);
  const parts = await Promise.all(tasks.map(async (t) => values((await algo.runShard(theta, [t])).sum)));
  for (const n of Object.keys(whole)) {
    // The same left fold, in float32: ((a + b) + c).
    const expect = parts[0]![n]!.map((a, i) => Math.fround(Math.fround(a + parts[1]![n]![i]!) + parts[2]![n]![i]!));
    assert.deepEqual(whole[n], expect, n);
  }
  dispose(theta);
});

test("batched tasks give the same meta-gradient as one task at a time, to float32 rounding", async () => {
  const model = sinusoidMlp();
  const theta = model.init(5);
  const fam = sinusoidFamily();
  const tasks = [0, 1, 2, 3].map((i) => fam.task(2, "train", 1, i));
  for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
    const one = runnerFor({ algorithm, model, kind: "regression", innerSteps: 2, innerLr: 0.01 });
    const many = runnerFor({ algorithm, model, kind: "regression", innerSteps: 2, innerLr: 0.01, batchTasks: true });
    assert.equal(many.batched, true);
    const a = await one.runShard(theta, tasks);
    const b = await many.runShard(theta, tasks);
    const va = values(a.sum);
    const vb = values(b.sum);
    for (const n of Object.keys(va)) {
      va[n]!.forEach((x, i) => assert.ok(Math.abs(x - vb[n]![i]!) <= 1e-4 * (1 + Math.abs(x)), `${algorithm} ${n}[${i}]: ${x} vs ${vb[n]![i]}`));
    }
    a.metrics.forEach((m, i) => assert.ok(Math.abs(m.postLoss - b.metrics[i]!.postLoss) < 1e-4 * (1 + m.postLoss)));
    dispose(a.sum, b.sum);
  }
  dispose(theta);
});

test("the same seed gives bit-identical parameters twice, for every algorithm", async () => {
  for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
    const run = async (seed = 42) => {
      const t = new LocalMetaTrainer({
        algorithm, innerSteps: 2, innerLr: 0.01, metaLr: algorithm === "reptile" ? 0.5 : 1e-3,
        metaBatchSize: 6, shardSize: 4, iterations: 5, seed, batchTasks: false,
      });
      for (let i = 0; i < 5; i++) await t.step();
      const snap = t.snapshot();
      t.dispose();
      return snap;
    };
    const a = await run();
    const b = await run();
    for (const n of Object.keys(a)) assert.deepEqual(a[n], b[n], `${algorithm} ${n}`);
    // And the seed matters: another seed gives other parameters.
    const c = await run(43);
    assert.notDeepEqual(c["dense0/kernel"], a["dense0/kernel"]);
  }
});

test("no tensor is leaked across 100 meta-iterations", async () => {
  for (const [algorithm, batchTasks] of [["maml", false], ["fomaml", true], ["reptile", false]] as const) {
    const t = new LocalMetaTrainer({
      algorithm, task: { family: "sinusoid", shots: 5 }, innerSteps: 2, innerLr: 0.01, metaLr: 1e-3, metaBatchSize: 3, shardSize: 2, iterations: 100, seed: 1, batchTasks,
    });
    await t.step(); // warm-up: backends may allocate lazily on first use
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) await t.step();
    assert.equal(tf.memory().numTensors, before, `${algorithm}${batchTasks ? " (batched)" : ""} leaked tensors`);
    t.dispose();
  }
});

test("a hook that throws (cancellation) aborts the shard and frees every tensor", async () => {
  const model = sinusoidMlp();
  const theta = model.init(1);
  const tasks = [0, 1, 2].map((i) => sinusoidFamily().task(1, "train", 0, i));
  for (const algorithm of ["maml", "fomaml", "reptile"] as const) {
    const algo = runnerFor({ algorithm, model, kind: "regression", innerSteps: 3, innerLr: 0.01 });
    const before = tf.memory().numTensors;
    await assert.rejects(
      algo.runShard(theta, tasks, { onInnerStep: (task, step) => { if (task === 1 && step === 1) throw new Error("cancelled"); } }),
      /cancelled/,
    );
    assert.equal(tf.memory().numTensors, before, `${algorithm} leaked on cancellation`);
  }
  dispose(theta);
});

test("evaluation batched over tasks equals one task at a time, and leaks nothing", async () => {
  const { evaluate } = await import("../../meta/evaluate.js");
  const model = sinusoidMlp();
  const theta = model.init(3);
  const fam = sinusoidFamily({ shots: 5, queryShots: 20 });
  const o = { tasks: 10, steps: [0, 1, 5], innerLr: 0.01, seed: 4 };
  const before = tf.memory().numTensors;
  const one = await evaluate(model, fam, theta, { ...o, batch: 1 });
  const many = await evaluate(model, fam, theta, { ...o, batch: 4 }); // chunks of 4, 4, 2
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(one.results.map((r) => r.steps), [0, 1, 5]);
  one.results.forEach((r, i) => {
    assert.equal(r.loss.n, 10);
    assert.ok(Math.abs(r.loss.mean - many.results[i]!.loss.mean) < 1e-4 * (1 + r.loss.mean), `${r.steps} steps: ${r.loss.mean} vs ${many.results[i]!.loss.mean}`);
  });
  // One small step along the support gradient (an unbiased estimate of the task's gradient) lowers
  // the mean query loss of an untrained net (2.960 → 2.945 here); more steps on 5 points overfit
  // it (3.54 after 5), which is the baseline's failure mode that MAML's paper describes.
  assert.ok(one.results[1]!.loss.mean < one.results[0]!.loss.mean);
  dispose(theta);
});
