// MAML-RL's pieces: the Cholesky / ridge solve, returns and the linear feature baseline, rollouts,
// the Gaussian log-likelihood, the VPG estimator against the closed-form gradient of a 1-step
// problem, the second-order meta-gradient and TRPO's Fisher-vector product against central
// differences, conjugate gradient, and a leak-free, deterministic shard.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import * as tf from "@tensorflow/tfjs";
import type { Environment } from "../../meta/envs/types.js";
import { point2d } from "../../meta/envs/point-2d.js";
import { cholesky, choleskySolve, ridgeFit } from "../../meta/linalg.js";
import { gaussianMlp, LOG_STD } from "../../meta/models/gaussian-mlp.js";
import { fromList, names, type Params } from "../../meta/params.js";
import { registerHigherOrderGradients } from "../../meta/gradients.js";
import { advantages, averageReturn, discountedReturns } from "../../meta/rl/baseline.js";
import { adapted, type AdaptOptions } from "../../meta/rl/adapt.js";
import { rollout, type Trajectories } from "../../meta/rl/rollouts.js";
import { conjugateGradient, gaussianKl } from "../../meta/rl/trpo.js";
import { logLikelihood, policyBatch, samplingPolicy, vpgSurrogate, disposeBatch } from "../../meta/rl/vpg.js";
import { LocalMetaTrainer } from "../../meta/trainer.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";

before(async () => {
  await useCpu();
  registerHigherOrderGradients();
});

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tol ${tol})`);

describe("linear algebra", () => {
  test("Cholesky of [[4,2],[2,3]] is [[2,0],[1,√2]]; it solves [2,1] to [0.5, 0]", () => {
    // 4x + 2y = 2, 2x + 3y = 1 → y = 0, x = 0.5.
    const l = cholesky(Float64Array.of(4, 2, 2, 3), 2)!;
    assert.deepEqual(Array.from(l).map((v) => +v.toFixed(12)), [2, 0, 1, +Math.SQRT2.toFixed(12)]);
    const x = choleskySolve(l, 2, [2, 1]);
    close(x[0]!, 0.5, 1e-15, "x");
    close(x[1]!, 0, 1e-15, "y");
  });
  test("the classic 3 × 3: L = [[2,0,0],[6,1,0],[−8,5,3]], b = A·[1,1,1] = [0,6,39]", () => {
    const l = cholesky(Float64Array.of(4, 12, -16, 12, 37, -43, -16, -43, 98), 3)!;
    assert.deepEqual(Array.from(l), [2, 0, 0, 6, 1, 0, -8, 5, 3]);
    Array.from(choleskySolve(l, 3, [0, 6, 39])).forEach((v) => close(v, 1, 1e-12, "x"));
    assert.equal(cholesky(Float64Array.of(1, 2, 2, 1), 2), undefined, "indefinite → undefined");
  });
  test("ridgeFit equals the closed-form least-squares solution", () => {
    // F = [[1,0],[0,1],[1,1]], y = [1,2,3]: FᵀF = [[2,1],[1,2]], Fᵀy = [4,5] → c = [1, 2] (an exact fit);
    // the 1e-5 ridge moves it by O(1e-5).
    const c = ridgeFit(Float64Array.of(1, 0, 0, 1, 1, 1), 3, 2, [1, 2, 3], 1e-5);
    close(c[0]!, 1, 1e-4, "c0");
    close(c[1]!, 2, 1e-4, "c1");
    // A rank-deficient design (two equal columns) is solved by the regulariser: c = [1.5, 1.5] for y = 3·x.
    const d = ridgeFit(Float64Array.of(1, 1, 2, 2), 2, 2, [3, 6], 1e-5);
    close(d[0]! + d[1]!, 3, 1e-4, "c0 + c1");
    close(d[0]!, d[1]!, 1e-9, "symmetric");
  });
});

/** Trajectories from explicit rewards (observations zero), for the return and baseline tests. */
function fixed(rewards: number[][], horizon: number): Trajectories {
  const n = rewards.length;
  const r = new Float64Array(n * horizon);
  rewards.forEach((p, i) => p.forEach((v, t) => (r[i * horizon + t] = v)));
  return { count: n, horizon, obsSize: 2, actSize: 2, observations: new Float32Array(n * horizon * 2), actions: new Float32Array(n * horizon * 2), rewards: r, lengths: Int32Array.from(rewards.map((p) => p.length)) };
}

describe("returns and baseline", () => {
  test("discounted returns of [1, 2, 3] at γ = ½ are [2.75, 3.5, 3]", () => {
    // R₂ = 3, R₁ = 2 + ½·3 = 3.5, R₀ = 1 + ½·3.5 = 2.75; past the end of the shorter path: 0.
    const R = discountedReturns(fixed([[1, 2, 3], [4]], 3), 0.5);
    assert.deepEqual(Array.from(R), [2.75, 3.5, 3, 4, 0, 0]);
    assert.equal(averageReturn(fixed([[1, 2, 3], [4]], 3)), 5);
  });
  test("returns linear in time are fitted exactly: advantages 0 before centring", () => {
    // Reward −1 per step, γ = 1, full paths of 100: R_t = −(100 − t) = −100 + 100·(t/100), which is
    // in the span of the features (1 and t/100), so R − b = 0 up to the 1e-5 ridge.
    const tr = fixed([Array(100).fill(-1), Array(100).fill(-1)], 100);
    const a = advantages(tr, { discount: 1, center: false });
    assert.ok(a.every((v) => Math.abs(v) < 1e-3), `max |A| ${Math.max(...Array.from(a, Math.abs))}`);
  });
  test("centred advantages have mean 0 and standard deviation 1 over the valid steps", () => {
    const tr = fixed([[1, -2, 3, 0.5], [2, 2]], 4);
    const a = advantages(tr, { discount: 0.9 });
    const valid = [a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!];
    const mean = valid.reduce((s, v) => s + v, 0) / 6;
    const sd = Math.sqrt(valid.reduce((s, v) => s + (v - mean) ** 2, 0) / 6);
    close(mean, 0, 1e-9, "mean");
    close(sd, 1, 1e-6, "std");
    assert.equal(a[6], 0);
    assert.equal(a[7], 0);
  });
});

describe("rollouts and the Gaussian policy", () => {
  test("log N(1; 0, 1) = −½ − ½·log 2π = −1.41894; σ = e: −1 − ½e⁻² − ½·log 2π", () => {
    const lp = tf.tidy(() => logLikelihood(tf.tensor2d([[0], [0]]), tf.tensor1d([0]), tf.tensor2d([[1], [1]])).dataSync());
    close(lp[0]!, -0.5 - 0.5 * Math.log(2 * Math.PI), 1e-5, "σ = 1");
    const lp2 = tf.tidy(() => logLikelihood(tf.tensor2d([[0]]), tf.tensor1d([1]), tf.tensor2d([[1]])).dataSync());
    close(lp2[0]!, -1 - 0.5 * Math.exp(-2) - 0.5 * Math.log(2 * Math.PI), 1e-5, "σ = e");
  });
  test("rollouts are a pure function of the seed, and a path stops when the goal is reached", () => {
    const model = gaussianMlp({ observations: 2, actions: 2, hidden: [8] });
    const p = model.init(3);
    const env = point2d();
    const a = rollout(env, samplingPolicy(model, p), Float64Array.of(0.3, -0.2), 4, 11);
    const b = rollout(env, samplingPolicy(model, p), Float64Array.of(0.3, -0.2), 4, 11);
    const c = rollout(env, samplingPolicy(model, p), Float64Array.of(0.3, -0.2), 4, 12);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.actions, c.actions);
    // The goal at the start: the first step's test is of the position after one move, so paths run on;
    // a goal at (0, 0) with actions scaled to nothing ends every path after its first step.
    const still = rollout(point2d({ actionScale: 1e-9 }), samplingPolicy(model, p), Float64Array.of(0, 0), 3, 1);
    assert.deepEqual(Array.from(still.lengths), [1, 1, 1]);
    tf.dispose(Object.values(p));
  });
});

/** A one-step task: reward −‖a − g‖², so E[return] = −(‖μ − g‖² + Σ σ²) in closed form. */
const oneStep: Environment = {
  name: "one-step",
  observationSize: 2,
  actionSize: 2,
  goalSize: 2,
  horizon: 1,
  sampleGoal: () => Float64Array.of(0.5, -0.5),
  reset: () => Float64Array.of(1, -1),
  observe: (s) => s.slice(),
  step: (s, a, g) => ({ state: s.slice(), observation: s.slice(), reward: -((a[0]! - g[0]!) ** 2 + (a[1]! - g[1]!) ** 2), done: false }),
};

describe("policy gradient", () => {
  test("the VPG estimate matches the closed-form gradient of the expected return along random directions", () => {
    const model = gaussianMlp({ observations: 2, actions: 2, hidden: [4], initLogStd: -0.5 });
    const p = model.init(5);
    const g = oneStep.sampleGoal(null as never);
    // J(θ) = −(‖μ(o₀) − g‖² + Σ e^{2 logσ}), evaluated in float64 from the tensors' values.
    const J = (q: Params) => {
      const mu = tf.tidy(() => model.forward(q, tf.tensor2d([[1, -1]])).dataSync());
      const ls = q[LOG_STD]!.dataSync();
      return -((mu[0]! - g[0]!) ** 2 + (mu[1]! - g[1]!) ** 2 + Math.exp(2 * ls[0]!) + Math.exp(2 * ls[1]!));
    };
    // 10 batches of 4,000 one-step trajectories, raw rewards as advantages: each batch's gradient of
    // the surrogate −mean(log π·r) estimates −∇J; their spread gives the standard error.
    const keys = names(p);
    const estimates: Params[] = [];
    for (let b = 0; b < 10; b++) {
      const tr = rollout(oneStep, samplingPolicy(model, p), g, 4000, 100 + b);
      const batch = policyBatch(tr, tr.rewards);
      estimates.push(tf.tidy(() => fromList(keys, tf.grads((...v: tf.Tensor[]) => vpgSurrogate(model, fromList(keys, v), batch))(keys.map((k) => p[k]!)))));
      disposeBatch(batch);
    }
    for (const seed of [1, 2, 3]) {
      const v = randomDirection(p, seed);
      const eps = 1e-2;
      const [up, down] = [shifted(p, v, eps), shifted(p, v, -eps)];
      const fd = -(J(up) - J(down)) / (2 * eps); // directional derivative of −J (J is smooth: FD error O(ε²))
      const est = estimates.map((e) => dot(e, v));
      const mean = est.reduce((s, x) => s + x, 0) / est.length;
      const se = Math.sqrt(est.reduce((s, x) => s + (x - mean) ** 2, 0) / (est.length - 1) / est.length);
      assert.ok(Math.abs(mean - fd) < 4 * se + 1e-3, `direction ${seed}: VPG ${mean} vs closed form ${fd} (4·SE = ${4 * se})`);
      tf.dispose([...Object.values(v), ...Object.values(up), ...Object.values(down)]);
    }
    estimates.forEach((e) => tf.dispose(Object.values(e)));
    tf.dispose(Object.values(p));
  });

  test("the meta-gradient ∇θ L_post(θ − α∇L_pre(θ)) matches central differences (second order through exp)", () => {
    // The one-step task (smooth in θ except at ReLU kinks, which 50 rows rarely cross), raw rewards
    // as advantages, α = 0.1: a missing second-order term (e.g. exp's) moves the gradient by O(α).
    const model = gaussianMlp({ observations: 2, actions: 2, hidden: [5] });
    const p = model.init(7);
    const env = oneStep;
    const goal = oneStep.sampleGoal(null as never);
    const pre = rollout(env, samplingPolicy(model, p), goal, 50, 1);
    const post = rollout(env, samplingPolicy(model, p), goal, 50, 2);
    const [b0, b1] = [policyBatch(pre, pre.rewards), policyBatch(post, post.rewards)];
    const o: AdaptOptions = { model, env, trajectories: 50, discount: 0.99, innerLr: 0.1 };
    const keys = names(p);
    const L = (q: Params) => tf.tidy(() => vpgSurrogate(model, adapted(o, q, [b0]), b1).dataSync()[0]!);
    const grad = tf.tidy(() => fromList(keys, tf.grads((...v: tf.Tensor[]) => vpgSurrogate(model, adapted(o, fromList(keys, v), [b0]), b1))(keys.map((k) => p[k]!))));
    for (const seed of [4, 5]) {
      const v = randomDirection(p, seed);
      // float32 central differences: error ≈ ε²·L''' + 1e-7·|L|/ε; ε = 1e-2 keeps both near 1e-5 here.
      const eps = 1e-2;
      const [up, down] = [shifted(p, v, eps), shifted(p, v, -eps)];
      const fd = (L(up) - L(down)) / (2 * eps);
      const an = dot(grad, v);
      assert.ok(Math.abs(an - fd) < 1e-4 + 1e-3 * Math.abs(fd), `direction ${seed}: autodiff ${an} vs FD ${fd}`);
      tf.dispose([...Object.values(v), ...Object.values(up), ...Object.values(down)]);
    }
    tf.dispose([...Object.values(grad), ...Object.values(p)]);
    disposeBatch(b0);
    disposeBatch(b1);
  });

  test("TRPO's Fisher-vector product is the Hessian of the mean KL: central differences of its gradient", () => {
    const model = gaussianMlp({ observations: 2, actions: 2, hidden: [4] });
    const p = model.init(9);
    const obs = tf.tensor2d([[0.1, 0.2], [-0.3, 0.05], [0.4, -0.4]]);
    const ref = tf.tidy(() => ({ mean: model.forward(p, obs) as tf.Tensor2D, ls: p[LOG_STD]!.clone() as tf.Tensor1D }));
    const keys = names(p);
    const kl = (q: Params) => tf.mean(gaussianKl(ref.mean, ref.ls, model.forward(q, obs) as tf.Tensor2D, q[LOG_STD] as tf.Tensor1D)) as tf.Scalar;
    const gradKl = (q: Params) => tf.tidy(() => fromList(keys, tf.grads((...v: tf.Tensor[]) => kl(fromList(keys, v)))(keys.map((k) => q[k]!))));
    const v = randomDirection(p, 1);
    const w = randomDirection(p, 2);
    // Hv·w by double backprop, as trpo.ts builds its product.
    const hv = tf.tidy(() => fromList(keys, tf.grads((...vals: tf.Tensor[]) => {
      const g = tf.grads((...inner: tf.Tensor[]) => kl(fromList(keys, inner)))(vals);
      return tf.addN(g.map((gk, n) => tf.sum(tf.mul(gk, v[keys[n]!]!)))) as tf.Scalar;
    })(keys.map((k) => p[k]!))));
    const eps = 1e-2;
    const [up, down] = [shifted(p, v, eps), shifted(p, v, -eps)];
    const [gu, gd] = [gradKl(up), gradKl(down)];
    const fd = (dot(gu, w) - dot(gd, w)) / (2 * eps);
    const an = dot(hv, w);
    assert.ok(Math.abs(an - fd) < 1e-3 + 1e-2 * Math.abs(fd), `w·Hv ${an} vs FD ${fd}`);
    // At the reference the KL is 0 and so is its gradient.
    const g0 = gradKl(p);
    close(Math.sqrt(dot(g0, g0)), 0, 1e-6, "‖∇KL(θ₀)‖");
    tf.dispose([obs, ref.mean, ref.ls, ...[p, v, w, hv, up, down, gu, gd, g0].flatMap((m) => Object.values(m))]);
  });

  test("conjugate gradient solves a 3 × 3 SPD system in 3 iterations", () => {
    // A = [[4,1,0],[1,3,1],[0,1,2]], b = A·[1, −1, 2] = [3, 0, 3].
    const A = tf.tensor2d([[4, 1, 0], [1, 3, 1], [0, 1, 2]]);
    const b = { x: tf.tensor1d([3, 0, 3]) };
    const x = conjugateGradient((v) => tf.tidy(() => ({ x: tf.squeeze(tf.matMul(A, tf.reshape(v.x!, [3, 1]))) })), b, 3);
    Array.from(x.x!.dataSync()).forEach((xi, i) => close(xi, [1, -1, 2][i]!, 1e-5, `x${i}`));
    tf.dispose([A, b.x, x.x!]);
  });
});

describe("maml-rl learner", () => {
  const config = (outer: string) => ({
    algorithm: "maml-rl",
    "maml-rl": { outer, trajectories: 4, cgIterations: 3, maxBacktracks: 4 },
    task: { family: "point-2d", actionScale: 0.1 },
    model: { kind: "gaussian-mlp", hidden: [8, 8] },
    innerSteps: 1,
    innerLr: 0.1,
    metaLr: 0.01,
    metaBatchSize: 4,
    shardSize: 2,
    iterations: 3,
    seed: 3,
  });
  for (const outer of ["vpg-adam", "trpo"]) {
    test(`${outer}: iterations are deterministic, change the parameters, and leak no tensors`, async () => {
      const run = async () => {
        const t = new LocalMetaTrainer(config(outer));
        await t.step();
        const before = tf.memory().numTensors;
        await t.step();
        await t.step();
        assert.equal(tf.memory().numTensors, before, "tensors after two more iterations");
        const snap = t.snapshot();
        t.dispose();
        return snap;
      };
      const [a, b] = [await run(), await run()];
      assert.deepEqual(a, b);
      const init = new LocalMetaTrainer(config(outer));
      assert.notDeepEqual(init.snapshot(), a, "the outer step moved the policy");
      init.dispose();
    });
  }
  test("evaluation reports −average return after each step count", async () => {
    const t = new LocalMetaTrainer(config("vpg-adam"));
    const r = await t.run.learner.evaluate(t.run.setup, t.params, { tasks: 3, steps: [0, 1, 2], seed: 1 });
    assert.deepEqual(r.results.map((x) => x.steps), [0, 1, 2]);
    // Rewards are −distance, at most 0.71 + 0.1·√2·t at step t (a move is at most 0.1 per axis): over
    // 100 steps a loss in (0, 786).
    for (const x of r.results) assert.ok(x.loss.mean > 0 && x.loss.mean < 786 && x.loss.n === 3, JSON.stringify(x.loss));
    t.dispose();
  });
});
