// The factored input kernel (meta/algorithms/factored-episode.ts): batched MAML, first-order MAML,
// Reptile with plain SGD and test-time SGD that keep an MLP's first kernel shared, with each task's change to it as
// Xsᵀ·V, give what one task at a time gives, to float32 rounding; MAML's second-order
// meta-gradient through it matches finite differences; nothing leaks.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runnerFor } from "../helpers/learners.js";
import { mlp } from "../../meta/models.js";
import { dispose, fromList, names } from "../../meta/params.js";
import { taskLoss, toTensors } from "../../meta/losses.js";
import { disposeEpisode, episodeOf, sgdStep, supportLoss } from "../../meta/algorithms/episodes.js";
import { factoringPays } from "../../meta/algorithms/factored-episode.js";
import { evaluate } from "../../meta/evaluate.js";
import type { Task, TaskFamily } from "../../meta/tasks/types.js";
import { dot, randomDirection, shifted, useCpu, values } from "../helpers/tf.js";
import { postLoss, randomTask } from "../helpers/classification.js";

before(useCpu);

// 36 inputs, 5 support rows per task (5-way 1-shot): factoring pays (5 < 36). Batch norm after
// each hidden layer, as in the Omniglot MLP, so the support and query statistics differ.
const model = mlp({ sizes: [36, 12, 10, 5], batchNorm: true, inputShape: [6, 6, 1] });
const tasks: Task[] = [0, 1, 2, 3].map((i) => randomTask(40 + i, 5, 1, [6, 6, 1]));

test("the MLP's batched episodes factor its input kernel where that pays, and only when asked", () => {
  assert.equal(model.inputKernel, "dense0/kernel");
  assert.equal(factoringPays(model, 5), true);
  assert.equal(factoringPays(model, 36), false, "36 support rows: the factor would be as large as the kernel");
  const theta = model.init(1);
  const factored = episodeOf(tasks, model, "classification", true, 5, true);
  const plain = episodeOf(tasks, model, "classification", true, 5, false);
  const pf = factored.expand(theta);
  const pp = plain.expand(theta);
  // Factored: the kernel stays [36, 12], shared; unfactored: tiled to [4, 36, 12].
  assert.deepEqual(pf["dense0/kernel"]!.shape, [36, 12]);
  assert.deepEqual(pp["dense0/kernel"]!.shape, [4, 36, 12]);
  assert.deepEqual(pf["dense1/kernel"]!.shape, [4, 12, 10]);
  // The generic step refuses a factored kernel, and says what to use instead.
  assert.throws(() => sgdStep(names(theta), pf, supportLoss(factored), 0.1), /shared across this episode's tasks.*e\.step/);
  // Before any step both give the same outputs.
  const a = factored.forward(pf, factored.query.x).dataSync();
  const b = plain.forward(pp, plain.query.x).dataSync();
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) <= 1e-5 * (1 + Math.abs(x)), `output ${i}: ${x} vs ${b[i]}`));
  tf.dispose([...Object.values(pf), ...Object.values(pp)]);
  disposeEpisode(factored);
  disposeEpisode(plain);
  dispose(theta);
});

test("factored batched MAML and first-order MAML equal one task at a time, to float32 rounding", async () => {
  const theta = model.init(2);
  for (const algorithm of ["maml", "fomaml"] as const) {
    const one = runnerFor({ algorithm, model, kind: "classification", innerSteps: 3, innerLr: 0.4 });
    const many = runnerFor({ algorithm, model, kind: "classification", innerSteps: 3, innerLr: 0.4, batchTasks: true });
    assert.equal(many.batched, true);
    const before = tf.memory().numTensors;
    const a = await one.runShard(theta, tasks);
    const b = await many.runShard(theta, tasks);
    // The two results are the only tensors left (one per parameter each): the episode's Gram
    // matrices, flattened inputs and factors are freed.
    assert.equal(tf.memory().numTensors, before + 2 * names(theta).length, `${algorithm} leaked`);
    const va = values(a.sum);
    const vb = values(b.sum);
    // Tolerance: the factored products sum in another order (Xs·W + (Xs·Xsᵀ)·V rather than Xs·W_t),
    // so each value moves by float32 rounding of terms of size |W|·|x| ~ 1, amplified through
    // three steps at α = 0.4 and a second backward pass: 1e-4 relative, as for the other batched paths.
    for (const n of Object.keys(va)) {
      va[n]!.forEach((x, i) => assert.ok(Math.abs(x - vb[n]![i]!) <= 1e-4 * (1 + Math.abs(x)), `${algorithm} ${n}[${i}]: ${x} vs ${vb[n]![i]}`));
    }
    a.metrics.forEach((m, i) => {
      assert.ok(Math.abs(m.postLoss - b.metrics[i]!.postLoss) < 1e-4 * (1 + m.postLoss), `${algorithm} task ${i} post-loss`);
      // The "before" readout reuses the query product the gradient's tape made: the query loss at θ.
      const want = postLoss(model, theta, tasks[i]!, 0, 0.4);
      assert.ok(Math.abs(b.metrics[i]!.preLoss - want) <= 1e-5 * (1 + want), `${algorithm} task ${i} pre-loss: ${b.metrics[i]!.preLoss} vs ${want}`);
      assert.equal(m.postAccuracy, b.metrics[i]!.postAccuracy);
    });
    dispose(a.sum, b.sum);
  }
  dispose(theta);
});

test("factored batched Reptile (plain SGD on the whole support set) equals one task at a time and the textbook φ − θ", async () => {
  // Reptile's shard sum is Σ_t (φ_t − θ), φ_t = θ after k SGD steps on task t's support set. The
  // factored episode never forms φ_t's input kernel: its change is Σ_t Xs_tᵀ·V_t, one matMul over
  // all support rows. Reference: the same k steps done by hand on each task alone (unbatched
  // forward, tf.grads, φ ← φ − α·g), summed in task order. Tolerance as for MAML above, without
  // the second backward pass: 1e-4 relative.
  const theta = model.init(6);
  const k = 3;
  const lr = 0.4;
  const one = runnerFor({ algorithm: "reptile", model, kind: "classification", innerSteps: k, innerLr: lr });
  const many = runnerFor({ algorithm: "reptile", model, kind: "classification", innerSteps: k, innerLr: lr, batchTasks: true });
  assert.equal(many.batched, true);
  const before = tf.memory().numTensors;
  const a = await one.runShard(theta, tasks);
  const b = await many.runShard(theta, tasks);
  assert.equal(tf.memory().numTensors, before + 2 * names(theta).length, "reptile leaked");
  const keys = names(theta);
  const textbook = tf.tidy(() => {
    const sum = keys.map((n) => tf.zerosLike(theta[n]!));
    for (const t of tasks) {
      const s = toTensors(t.support, "classification", model.outputs);
      let phi = keys.map((n) => theta[n]!);
      for (let i = 0; i < k; i++) {
        const g = tf.grads((...v: tf.Tensor[]) => taskLoss("classification", model.forward(fromList(keys, v), s.x), s.y))(phi);
        phi = phi.map((p, j) => tf.sub(p, tf.mul(g[j]!, lr)));
      }
      phi.forEach((p, j) => (sum[j] = tf.add(sum[j]!, tf.sub(p, theta[keys[j]!]!))));
    }
    return fromList(keys, sum);
  });
  const [va, vb, vt] = [values(a.sum), values(b.sum), values(textbook)];
  for (const n of keys) {
    vt[n]!.forEach((x, i) => {
      assert.ok(Math.abs(x - va[n]![i]!) <= 1e-5 * (1 + Math.abs(x)), `one by one ${n}[${i}]: ${va[n]![i]} vs textbook ${x}`);
      assert.ok(Math.abs(x - vb[n]![i]!) <= 1e-4 * (1 + Math.abs(x)), `factored ${n}[${i}]: ${vb[n]![i]} vs textbook ${x}`);
    });
  }
  // The steps moved the input kernel (the factor is not vacuously zero).
  assert.ok(vb["dense0/kernel"]!.some((x) => Math.abs(x) > 1e-3), "the input kernel's delta is zero");
  dispose(theta, a.sum, b.sum, textbook);
});

test("MAML's meta-gradient through the factored kernel matches finite differences, and first order does not", async () => {
  // The shard's loss is Σ_t L_query,t(θ after k steps on task t), so its directional derivative
  // along v is Σ_t (postLoss_t(θ + εv) − postLoss_t(θ − εv)) / 2ε, each postLoss computed one task
  // at a time with the unbatched forward (no factoring). The setup of maml-classification.test.ts's
  // MLP test (3-way 2-shot on 8×8, 6 support rows < 64 inputs), two tasks. The post-adaptation loss
  // is discontinuous where a support pre-activation crosses 0 (ReLU's derivative jumps, so the inner
  // step does): ε = 5e-4 keeps most directions clear of that, and one of four may cross. Rounding:
  // a float32 loss of ~1 is good to ~1e-7, i.e. ~2e-4 in the quotient, under 2e-2 of a scale ≥ 5e-2.
  const fdModel = mlp({ sizes: [64, 32, 16, 3], batchNorm: true, inputShape: [8, 8, 1] });
  const fdTasks = [0, 1].map((i) => randomTask(5 + i, 3, 2, [8, 8, 1]));
  const theta = fdModel.init(21);
  const k = 2;
  const lr = 0.5;
  const maml = runnerFor({ algorithm: "maml", model: fdModel, kind: "classification", innerSteps: k, innerLr: lr, batchTasks: true });
  const fo = runnerFor({ algorithm: "fomaml", model: fdModel, kind: "classification", innerSteps: k, innerLr: lr, batchTasks: true });
  const g2 = (await maml.runShard(theta, fdTasks)).sum;
  const g1 = (await fo.runShard(theta, fdTasks)).sum;
  const second: number[] = [];
  const first: number[] = [];
  const eps = 5e-4;
  for (let d = 0; d < 4; d++) {
    const v = randomDirection(theta, 300 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = fdTasks.reduce((s, t) => s + (postLoss(fdModel, plus, t, k, lr) - postLoss(fdModel, minus, t, k, lr)) / (2 * eps), 0);
    const scale = Math.max(5e-2, Math.abs(fd));
    if (process.env.FD_DEBUG) console.log({ fd, maml: dot(g2, v), fo: dot(g1, v) });
    second.push(Math.abs(dot(g2, v) - fd) / scale);
    first.push(Math.abs(dot(g1, v) - fd) / scale);
    dispose(v, plus, minus);
  }
  assert.ok(second.filter((e) => e < 2e-2).length >= 3, `MAML (factored) vs finite differences: ${second}`);
  assert.ok(Math.max(...first) > 5 * Math.min(...second), `first-order should differ: ${first} vs ${second}`);
  dispose(theta, g1, g2);
});

test("factored test-time adaptation equals one task at a time, and leaks nothing", async () => {
  const family: TaskFamily = { kind: "classification", name: "random-6x6", inputShape: [6, 6, 1], outputs: 5, task: (seed, _split, _it, i) => randomTask(seed * 1000 + i, 5, 1, [6, 6, 1]) };
  const theta = model.init(4);
  const o = { tasks: 6, steps: [0, 1, 3], innerLr: 0.4, seed: 2 };
  const before = tf.memory().numTensors;
  const one = await evaluate(model, family, theta, { ...o, batch: 1 });
  const many = await evaluate(model, family, theta, { ...o, batch: 4 }); // factored chunks of 4 and 2
  assert.equal(tf.memory().numTensors, before);
  one.results.forEach((r, i) => {
    const m = many.results[i]!;
    assert.ok(Math.abs(r.loss.mean - m.loss.mean) < 1e-4 * (1 + r.loss.mean), `${r.steps} steps: ${r.loss.mean} vs ${m.loss.mean}`);
    assert.equal(r.accuracy!.mean, m.accuracy!.mean, `${r.steps} steps: accuracy`);
  });
  // Adapting changes the predictions: three steps at α = 0.4 fit the 5 support images, so the
  // query loss after them differs from before (the test would pass vacuously if e.step did nothing).
  assert.notEqual(one.results[2]!.loss.mean, one.results[0]!.loss.mean);
  dispose(theta);
});

test("the query product Xq·W is made once per episode: the readouts before and after share it, and so do test-time steps", async () => {
  // 4 tasks × 15 query rows (3 per class) of 36 inputs against the [36, 12] kernel: the product is
  // a MatMul of [60, 36] by [36, 12] (the support product is [20, 36] by [36, 12]). The readouts at θ and after adaptation multiply by the same W (only the
  // factor V changes), so first-order MAML and Reptile make it once, on the tape of the query
  // gradient for first-order MAML (else W's gradient through it would be lost — the equality
  // test above checks the values). Evaluation at 0, 1 and 3 steps makes it once per chunk.
  const theta = model.init(7);
  const withQueries = (seed: number): Task => ({ ...randomTask(seed, 5, 1, [6, 6, 1]), query: randomTask(seed + 100, 5, 3, [6, 6, 1]).support });
  const tasks = [0, 1, 2, 3].map((i) => withQueries(60 + i));
  const isProduct = (k: { name: string; inputShapes: (number[] | null)[] }) =>
    k.name === "BatchMatMul" && JSON.stringify(k.inputShapes) === JSON.stringify([[60, 36], [36, 12]]);
  for (const algorithm of ["fomaml", "reptile"] as const) {
    const runner = runnerFor({ algorithm, model, kind: "classification", innerSteps: 2, innerLr: 0.4, batchTasks: true });
    const prof = await tf.profile(async () => dispose((await runner.runShard(theta, tasks)).sum));
    assert.equal(prof.kernels.filter(isProduct).length, 1, `${algorithm}: query products made`);
  }
  const family: TaskFamily = { kind: "classification", name: "random-6x6", inputShape: [6, 6, 1], outputs: 5, task: (seed, _split, _it, i) => withQueries(seed * 1000 + i) };
  const prof = await tf.profile(async () => void (await evaluate(model, family, theta, { tasks: 4, steps: [0, 1, 3], innerLr: 0.4, seed: 2, batch: 4 })));
  assert.equal(prof.kernels.filter(isProduct).length, 1, "evaluation: query products made");
  dispose(theta);
});

test("a query product made before a gradient's tape began is not reused on it (W's gradient through it would be lost)", () => {
  // The query loss's gradient with respect to the shared kernel W, on a fresh episode and on one
  // whose query product was made (and cached) by a readout outside any tape: they must be equal.
  // If the cached product were reused on the tape, W's gradient would lack the Xqᵀ·δ term.
  const theta = model.init(8);
  const W = "dense0/kernel";
  const gradW = (readFirst: boolean): Float32Array => {
    const e = episodeOf(tasks, model, "classification", true, 5, true);
    try {
      return tf.tidy(() => {
        const p = e.expand(theta);
        if (readFirst) e.forward(p, e.query.x);
        const [g] = tf.grads((w: tf.Tensor) => taskLoss("classification", e.forward({ ...p, [W]: w }, e.query.x), e.query.y))([p[W]!]);
        return g!.dataSync() as Float32Array;
      });
    } finally {
      disposeEpisode(e);
    }
  };
  const fresh = gradW(false);
  const afterRead = gradW(true);
  assert.ok(fresh.some((x) => Math.abs(x) > 1e-4), "W has a gradient through the query product");
  fresh.forEach((x, i) => assert.equal(afterRead[i], x, `dW[${i}]`));
  dispose(theta);
});

test("a cancelled factored shard frees every tensor", async () => {
  const theta = model.init(5);
  const algo = runnerFor({ algorithm: "maml", model, kind: "classification", innerSteps: 3, innerLr: 0.4, batchTasks: true });
  const before = tf.memory().numTensors;
  await assert.rejects(
    algo.runShard(theta, tasks, { onInnerStep: (_task, step) => { if (step === 1) throw new Error("cancelled"); } }),
    /cancelled/,
  );
  assert.equal(tf.memory().numTensors, before);
  dispose(theta);
});
