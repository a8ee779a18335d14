// Meta-SGD's θ- and α-gradients (Li et al. 2017) against finite differences and, for one inner step,
// against the closed form ∂L_q/∂α = −∇L_q(θ′) ⊙ ∇L_s(θ); batched equals unbatched; no tensor leaks.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { runEpisodes } from "../../meta/algorithms/episodes.js";
import { alphaKey, metaSgd, metaSgdEpisode } from "../../meta/algorithms/meta-sgd.js";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { taskLoss, toTensors } from "../../meta/losses.js";
import { mlp, type Model } from "../../meta/models.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task } from "../../meta/tasks/types.js";
import { NO_DATA, LocalMetaTrainer } from "../../meta/trainer.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(async () => {
  await useCpu();
  // What the learner's shard runner does before a second-order run (tfjs lacks these gradients).
  registerHigherOrderGradients();
});

/** A 3-way task of 2 support and 2 query examples per class on 6 features. */
function task(seed: number): Task {
  const rng = new Rng(seed);
  const set = () => ({ x: new Float32Array(6 * 6).map(() => rng.normal()), xShape: [6, 6], y: new Int32Array(6).map((_, i) => i % 3) });
  return { support: set(), query: set(), seed };
}

/** θ and α of a small MLP: α drawn in [0.05, 0.5] so the steps it takes are of a useful size. */
function metaParams(model: Model, seed: number): Params {
  const theta = model.init(seed);
  const rng = new Rng(seed + 1);
  const out: Params = { ...theta };
  for (const k of names(theta)) out[alphaKey(k)] = tf.tensor(Float32Array.from({ length: theta[k]!.size }, () => rng.uniform(0.05, 0.5)), theta[k]!.shape);
  return out;
}

/** L_q after k Meta-SGD steps, computed independently of the learner (plain loops over tf.grads). */
function postLoss(model: Model, meta: Params, t: Task, k: number): number {
  return tf.tidy(() => {
    const s = toTensors(t.support, "classification", 3);
    const q = toTensors(t.query, "classification", 3);
    const keys = names(meta).filter((n) => !n.startsWith("learner/"));
    let phi = keys.map((n) => meta[n]!);
    const loss = (x: tf.Tensor, y: tf.Tensor) => (...v: tf.Tensor[]) => {
      const p: Params = {};
      keys.forEach((n, j) => (p[n] = v[j]!));
      return taskLoss("classification", model.forward(p, x), y);
    };
    for (let i = 0; i < k; i++) {
      const g = tf.grads(loss(s.x, s.y))(phi);
      phi = phi.map((w, j) => tf.sub(w, tf.mul(meta[alphaKey(keys[j]!)]!, g[j]!)));
    }
    return loss(q.x, q.y)(...phi).dataSync()[0]!;
  });
}

async function contribution(model: Model, meta: Params, t: Task, k: number, firstOrder: boolean): Promise<Params> {
  const r = await runEpisodes(meta, [t], { model, kind: "classification", batched: false }, metaSgdEpisode(k, firstOrder));
  return r.sum;
}

const model = mlp({ sizes: [6, 8, 3] });

test("second-order θ- and α-gradients match central differences (2 inner steps)", async () => {
  // ε = 1e-3 on a loss near 1: float32 rounding (~1e-7) gives ~1e-4 relative error in the quotient,
  // the O(ε²) truncation is smaller; ReLU kinks within ±ε are unlikely for 6 random directions on
  // this net, so 1e-2 relative (floor 5e-2 absolute for near-zero derivatives) is a safe bound.
  const eps = 1e-3;
  const meta = metaParams(model, 3);
  const t = task(11);
  const g = await contribution(model, meta, t, 2, false);
  const before = tf.memory().numTensors;
  for (let d = 0; d < 6; d++) {
    // Directions over θ and α together, then over α alone (so the α-gradient is checked on its own).
    const v = randomDirection(meta, 900 + d);
    if (d >= 3)
      for (const k of names(v))
        if (!k.startsWith("learner/")) {
          const old = v[k]!;
          v[k] = tf.zerosLike(old);
          old.dispose();
        }
    const plus = shifted(meta, v, eps);
    const minus = shifted(meta, v, -eps);
    const fd = (postLoss(model, plus, t, 2) - postLoss(model, minus, t, 2)) / (2 * eps);
    const err = Math.abs(dot(g, v) - fd) / Math.max(5e-2, Math.abs(fd));
    assert.ok(err < 1e-2, `direction ${d}: analytic ${dot(g, v)} vs finite difference ${fd} (relative error ${err})`);
    dispose(v, plus, minus);
  }
  assert.equal(tf.memory().numTensors, before, "no tensors left behind by the checks");
  dispose(meta, g);
});

test("for one step, the α-gradient is exactly −∇L_q(θ′) ⊙ ∇L_s(θ), first- and second-order alike", async () => {
  // θ′ = θ − α ⊙ g_s with g_s = ∇L_s(θ) independent of α, so ∂L_q(θ′)/∂α = ∇L_q(θ′) ⊙ ∂θ′/∂α
  // = −∇L_q(θ′) ⊙ g_s exactly: both variants must give it, up to float32 rounding of the products
  // (relative 1e-5 on values of order 1e-2 … 1).
  const meta = metaParams(model, 4);
  const t = task(12);
  const keys = names(meta).filter((n) => !n.startsWith("learner/"));
  const expected = tf.tidy(() => {
    const s = toTensors(t.support, "classification", 3);
    const q = toTensors(t.query, "classification", 3);
    const lossOf = (x: tf.Tensor, y: tf.Tensor) => (...v: tf.Tensor[]) => {
      const p: Params = {};
      keys.forEach((n, j) => (p[n] = v[j]!));
      return taskLoss("classification", model.forward(p, x), y);
    };
    const gs = tf.grads(lossOf(s.x, s.y))(keys.map((k) => meta[k]!));
    const adapted = keys.map((k, j) => tf.sub(meta[k]!, tf.mul(meta[alphaKey(k)]!, gs[j]!)));
    const gq = tf.grads(lossOf(q.x, q.y))(adapted);
    return keys.map((_, j) => Array.from(tf.neg(tf.mul(gq[j]!, gs[j]!)).dataSync()));
  });
  for (const firstOrder of [false, true]) {
    const g = await contribution(model, meta, t, 1, firstOrder);
    keys.forEach((k, j) => {
      const got = Array.from(g[alphaKey(k)]!.dataSync());
      got.forEach((x, i) => assert.ok(Math.abs(x - expected[j]![i]!) <= 1e-5 * Math.max(1e-2, Math.abs(expected[j]![i]!)) + 1e-9, `${k}[${i}] (${firstOrder ? "first" : "second"} order): ${x} vs ${expected[j]![i]}`));
    });
    dispose(g);
  }
  dispose(meta);
});

test("a shard batched over tasks equals task by task (summation order aside), and nothing leaks", async () => {
  const cfg = { algorithm: "meta-sgd", metaBatchSize: 4, shardSize: 4, iterations: 2, "meta-sgd": { alphaInit: "uniform" } };
  const before = tf.memory().numTensors;
  const a = new LocalMetaTrainer({ ...cfg, batchTasks: true });
  const b = new LocalMetaTrainer({ ...cfg, batchTasks: false });
  assert.ok(a.runner.batched && !b.runner.batched);
  for (let i = 0; i < 2; i++) {
    await a.step();
    await b.step();
  }
  const sa = a.snapshot();
  const sb = b.snapshot();
  // The batched path sums per-task gradients over a task axis, another float order: agree to 1e-5.
  for (const k of Object.keys(sa)) sa[k]!.forEach((x, i) => assert.ok(Math.abs(x - sb[k]![i]!) < 1e-5, `${k}[${i}]: ${x} vs ${sb[k]![i]}`));
  assert.ok(Object.keys(sa).some((k) => k.startsWith("learner/lr/")), "α is part of the meta-parameters");
  a.dispose();
  b.dispose();
  assert.equal(tf.memory().numTensors, before);
});

test("α starts at innerLr by default, in [alphaLow, alphaHigh] with alphaInit uniform; evaluation uses it", async () => {
  for (const [opts, lo, hi] of [[{}, 0.01, 0.01], [{ alphaInit: "uniform", alphaLow: 0.02, alphaHigh: 0.03 }, 0.02, 0.03]] as const) {
    const run = resolveRun(parseRunConfig({ algorithm: "meta-sgd", innerLr: 0.01, "meta-sgd": opts }), NO_DATA);
    const p = metaSgd.init(run.setup, 7);
    const alpha = p[alphaKey("dense0/kernel")]!.dataSync();
    assert.ok(alpha.every((x) => x >= lo - 1e-9 && x <= hi + 1e-9), `α in [${lo}, ${hi}]`);
    const r = await metaSgd.evaluate(run.setup, p, { tasks: 4, steps: [0, 1], seed: 5 });
    assert.ok(r.results[1]!.loss.mean < r.results[0]!.loss.mean, "one learned-α step lowers the held-out loss");
    dispose(p);
  }
});
