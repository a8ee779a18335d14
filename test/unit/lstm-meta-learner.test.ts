// The LSTM meta-learner (Ravi & Larochelle 2017): one coordinate's update over two steps worked by
// hand; the hand-written backward through the recorded unroll against tfjs's autodiff of the plain
// steps; one episode's meta-gradient against central differences of the replayed unroll (the
// learner's recorded gradients and losses fed back as constants); evaluation = the training unroll;
// the global clip; cancellation; bit-identical shards from one seed; no leaks; the presets.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, runEpisodes } from "../../meta/algorithms/episodes.js";
import type { LearnerSetup } from "../../meta/algorithms/learner.js";
import {
  B1,
  BF,
  BI,
  disposeTrajectory,
  flatten,
  initialState,
  LSTM_KEYS,
  lstmMetaLearner,
  lstmMetaLearnerEpisode,
  metaLearnerStep,
  modelKeysOf,
  rollout,
  unflatten,
  W1,
  WF,
  WI,
  type LstmMetaLearnerOptions,
} from "../../meta/algorithms/lstm-meta-learner.js";
import { LEARNERS } from "../../meta/algorithms/registry.js";
import { taskLoss } from "../../meta/losses.js";
import { mlp, uniformTensor } from "../../meta/models.js";
import { dispose, names, type Params } from "../../meta/params.js";
import { deriveSeed, Rng } from "../../meta/rng.js";
import { parseRunConfig, resolveRun } from "../../meta/run-config.js";
import type { Task, TaskFamily } from "../../meta/tasks/types.js";
import { randomDirection, useCpu } from "../helpers/tf.js";

before(useCpu);

const close = (got: number, want: number, tol: number, what: string) => assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} vs ${want}`);

// ---- one coordinate by hand ---------------------------------------------------------------------
//
// H = 1. W1's rows (gates i, f, o, g) over the columns [L₁, L₂, ∇₁, ∇₂, h], b1 = 0:
//   i: ∇₂ (the gradient's sign)   f: h   o: L₁ + L₂   g: 10·∇₁ (= ln|∇|)
// Layer 2: f = 2h + 0.5θ + 1·f_prev + 1, i = −h + 0·θ + 0.5·i_prev − 2.
// Preprocessing (p = 10, every |x| ≥ e^−10 here): x ↦ (ln|x|/10, sign x).
//
// Step 1: θ₀ = 2, ∇ = 0.5, L = 1; h₀ = c₀ = f₀ = i₀ = 0.
//   x = [0, 1, ln(0.5)/10, 1] = [0, 1, −0.06931472, 1]
//   σ(z_i) = σ(1) = 0.73105858, σ(z_f) = σ(0) = 0.5, σ(z_o) = σ(1) = 0.73105858,
//   tanh(z_g) = tanh(ln 0.5) = (0.5 − 2)/(0.5 + 2) = −0.6
//   c₁ = 0.5·0 + 0.73105858·(−0.6) = −0.43863515;  h₁ = 0.73105858·tanh(c₁) = 0.73105858·(−0.41251248) = −0.30157079
//   f₁ = 2h₁ + 0.5·2 + 0 + 1 = 1.39685843 → σ = 0.80168489
//   i₁ = −h₁ − 2 = −1.69842921 → σ = 0.15467053
//   θ₁ = 0.80168489·2 − 0.15467053·0.5 = 1.52603452
// Step 2: ∇ = −0.25, L = e^−1 (ln L/10 = −0.1).
//   x = [−0.1, 1, ln(0.25)/10, −1] = [−0.1, 1, −0.13862944, −1]
//   σ(z_i) = σ(−1) = 0.26894142, σ(z_f) = σ(h₁) = 0.42517354, σ(z_o) = σ(0.9) = 0.71094950,
//   tanh(z_g) = tanh(ln 0.25) = (0.25 − 4)/(0.25 + 4) = −0.88235294
//   c₂ = 0.42517354·c₁ + 0.26894142·(−0.88235294) = −0.42379731;  h₂ = 0.71094950·tanh(c₂) = 0.71094950·(−0.40012463) = −0.28446841
//   f₂ = 2h₂ + 0.5θ₁ + f₁ + 1 = 2.59093887 → σ = 0.93027614  (the previous PRE-activation f₁ feeds back, as the reference code)
//   i₂ = −h₂ + 0.5·i₁ − 2 = −2.56474620 → σ = 0.07144205
//   θ₂ = 0.93027614·θ₁ − 0.07144205·(−0.25) = 1.43749402
const handWeights = (): Params => ({
  [W1]: tf.tensor2d([
    [0, 0, 0, 1, 0],
    [0, 0, 0, 0, 1],
    [1, 1, 0, 0, 0],
    [0, 0, 10, 0, 0],
  ]),
  [B1]: tf.zeros([4, 1]),
  [WF]: tf.tensor2d([[2, 0.5, 1]]),
  [WI]: tf.tensor2d([[-1, 0, 0.5]]),
  [BF]: tf.tensor1d([1]),
  [BI]: tf.tensor1d([-2]),
});

test("one coordinate over two steps: h, c, the gates and θ, by hand (alone or beside another coordinate)", () => {
  const p = handWeights();
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    // Coordinate 0 is the hand example; in the second run coordinate 1 (θ = −3, ∇ = 7) rides along and
    // must not change coordinate 0's numbers (the LSTM is coordinate-wise; only the loss is shared).
    for (const [theta0, g1, g2] of [[[2], [0.5], [-0.25]], [[2, -3], [0.5, 7], [-0.25, 7]]] as const) {
      const n = theta0.length;
      const s1 = metaLearnerStep(p, initialState(n, 1), tf.tensor2d([[...theta0]]), tf.tensor2d([[...g1]]), tf.scalar(1));
      const col = (t: tf.Tensor) => (t.arraySync() as number[][]).map((r) => r[0]!);
      close(col(s1.state.c)[0]!, -0.43863515, 1e-6, "c₁");
      close(col(s1.state.h)[0]!, -0.30157079, 1e-6, "h₁");
      close(col(s1.state.f)[0]!, 1.39685843, 1e-6, "f₁ (pre-activation)");
      close(col(s1.state.i)[0]!, -1.69842921, 1e-6, "i₁ (pre-activation)");
      close(col(s1.theta)[0]!, 1.52603452, 1e-6, "θ₁");
      const s2 = metaLearnerStep(p, s1.state, s1.theta, tf.tensor2d([[...g2]]), tf.scalar(Math.exp(-1)));
      close(col(s2.state.c)[0]!, -0.42379731, 1e-6, "c₂");
      close(col(s2.state.h)[0]!, -0.28446841, 1e-6, "h₂");
      close(col(s2.state.f)[0]!, 2.59093887, 1e-6, "f₂");
      close(col(s2.state.i)[0]!, -2.5647462, 1e-6, "i₂");
      close(col(s2.theta)[0]!, 1.43749402, 1e-6, "θ₂");
    }
  });
  assert.equal(tf.memory().numTensors, before);
  dispose(p);
});

// ---- a tiny learner on synthetic tasks ----------------------------------------------------------

const H = 3;
/** MLP 4-3-2 (ReLU), 23 coordinates. */
const model = mlp({ sizes: [4, 3, 2] });

/** A 2-way task: 3 support and 4 query examples per class on 4 features, classes shifted apart. */
function task(seed: number): Task {
  const rng = new Rng(seed);
  const set = (k: number) => {
    const y = Int32Array.from({ length: 2 * k }, (_, i) => i % 2);
    return { x: Float32Array.from({ length: 2 * k * 4 }, (_, j) => rng.normal() + (y[Math.floor(j / 4)] === 1 ? 0.8 : -0.8)), xShape: [2 * k, 4], y };
  };
  return { support: set(3), query: set(4), seed };
}

const OMNIGLOT = { task: { family: "omniglot" }, model: { kind: "omniglot-mlp" } };

const family: TaskFamily = { name: "synthetic", kind: "classification", inputShape: [4], outputs: 2, task: (seed, _split, it, i) => task(deriveSeed(seed, it, i)) };

/** A setup over the tiny model (what init, outer, shardRunner and evaluate read). */
function setupOf(innerSteps: number, hiddenSize = H): LearnerSetup<LstmMetaLearnerOptions> {
  // The config is parsed for an Omniglot MLP (it must name a classification family); the setup swaps in the tiny model and tasks.
  const config = parseRunConfig({ ...OMNIGLOT, algorithm: "lstm-meta-learner", innerSteps, "lstm-meta-learner": { hiddenSize } });
  return { config, hyper: config["lstm-meta-learner"] as LstmMetaLearnerOptions, model, train: family, test: family };
}

/**
 * Meta-parameters with LSTM weights U(±0.5) and gate biases near 0, in place of the paper's init
 * (U(±0.01), biases ±4.5): there every path but θ₀ → θ_T is damped by ~0.01 per layer, too flat for
 * finite differences in float32 to see; here every weight moves the query loss.
 */
function strongMeta(seed: number): Params {
  const rng = new Rng(seed);
  return {
    ...model.init(seed),
    [W1]: uniformTensor(rng, [4 * H, 4 + H], 1),
    [B1]: uniformTensor(rng, [4 * H, 1], 0.5),
    [WF]: uniformTensor(rng, [1, H + 2], 1.5),
    [WI]: uniformTensor(rng, [1, H + 2], 1.5),
    [BF]: tf.tensor1d([3]),
    [BI]: tf.tensor1d([-1]),
  };
}

/**
 * The test's own unroll, written from the equations (independent of the learner's code): T steps
 * from the flat θ₀ of `p`, each from the learner gradient and loss at the current θ unless
 * `recorded` gives them (the "replay"); returns the query loss at θ_T and what it used.
 */
function ownUnroll(p: Params, t: Task, T: number, recorded?: { g: Float32Array[]; L: number[] }): { loss: number; g: Float32Array[]; L: number[] } {
  return tf.tidy(() => {
    const e = episodeOf([t], model, "classification", false, 2);
    try {
      const keys = modelKeysOf(p);
      const n = keys.reduce((a, k) => a + p[k]!.size, 0);
      const params = (row: tf.Tensor): Params => {
        const out: Params = {};
        let off = 0;
        for (const k of keys) {
          out[k] = tf.reshape(tf.slice(row, [0, off], [1, p[k]!.size]), p[k]!.shape);
          off += p[k]!.size;
        }
        return out;
      };
      // Appendix A of Andrychowicz et al., p = 10: (ln|x|/10, sign x) if |x| ≥ e^−10, else (−1, e^10·x)
      // (a dead ReLU unit's weights have gradient 0 exactly).
      const pre = (x: tf.Tensor) => {
        const big = tf.greaterEqual(tf.abs(x), Math.exp(-10));
        return [tf.where(big, tf.div(tf.log(tf.maximum(tf.abs(x), 1e-30)), 10), tf.fill(x.shape, -1)), tf.where(big, tf.sign(x), tf.mul(x, Math.exp(10)))];
      };
      let theta: tf.Tensor = tf.concat(keys.map((k) => tf.reshape(p[k]!, [1, -1])), 1);
      let h: tf.Tensor = tf.zeros([H, n]);
      let c: tf.Tensor = tf.zeros([H, n]);
      let f: tf.Tensor = tf.zeros([1, n]);
      let i: tf.Tensor = tf.zeros([1, n]);
      const gs: Float32Array[] = [];
      const Ls: number[] = [];
      for (let s = 0; s < T; s++) {
        let g: tf.Tensor;
        let L: number;
        if (recorded) {
          g = tf.tensor2d(recorded.g[s]!, [1, n]);
          L = recorded.L[s]!;
        } else {
          const at = params(tf.tensor2d(theta.dataSync() as Float32Array, [1, n]));
          const r = tf.valueAndGrads((...v: tf.Tensor[]) => taskLoss("classification", model.forward(Object.fromEntries(keys.map((k, j) => [k, v[j]!])), e.support.x), e.support.y))(keys.map((k) => at[k]!));
          g = tf.concat(r.grads.map((x) => tf.reshape(x, [1, -1])), 1);
          L = r.value.dataSync()[0]!;
        }
        gs.push(g.dataSync() as Float32Array);
        Ls.push(L);
        const [l1, l2] = pre(tf.fill([1, n], L));
        const [g1, g2] = pre(g);
        const x = tf.concat([l1!, l2!, g1!, g2!, h], 0);
        const z = tf.add(tf.matMul(p[W1]!, x), p[B1]!);
        const zs = tf.split(z, 4, 0);
        c = tf.add(tf.mul(tf.sigmoid(zs[1]!), c), tf.mul(tf.sigmoid(zs[0]!), tf.tanh(zs[3]!)));
        h = tf.mul(tf.sigmoid(zs[2]!), tf.tanh(c));
        f = tf.add(tf.matMul(p[WF]!, tf.concat([h, theta, f], 0)), p[BF]!);
        i = tf.add(tf.matMul(p[WI]!, tf.concat([h, theta, i], 0)), p[BI]!);
        theta = tf.sub(tf.mul(tf.sigmoid(f), theta), tf.mul(tf.sigmoid(i), g));
      }
      const loss = taskLoss("classification", model.forward(params(theta), e.query.x), e.query.y).dataSync()[0]!;
      return { loss, g: gs, L: Ls };
    } finally {
      disposeEpisode(e);
    }
  });
}

/**
 * The replayed unroll in plain float64 JavaScript, from the equations: the recorded ∇_t (per
 * coordinate) and L_t fed back as constants, the query loss of the 4-3-2 MLP at θ_T. Independent of
 * tfjs, and precise enough that its finite differences are exact to ~1e-9.
 */
function replay64(p: Record<string, Float64Array>, t: Task, rec: { g: Float32Array[]; L: number[] }): number {
  const pre = (x: number) => (Math.abs(x) >= Math.exp(-10) ? [Math.log(Math.abs(x)) / 10, Math.sign(x)] : [-1, Math.exp(10) * x]);
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const keys = modelKeysOf(Object.fromEntries(Object.keys(p).map((k) => [k, undefined as unknown as tf.Tensor])));
  const theta = Float64Array.from(keys.flatMap((k) => Array.from(p[k]!)));
  const n = theta.length;
  const [w1, b1, wf, wi, bf, bi] = [p[W1]!, p[B1]!, p[WF]!, p[WI]!, p[BF]![0]!, p[BI]![0]!];
  const h = Array.from({ length: n }, () => new Float64Array(H));
  const c = Array.from({ length: n }, () => new Float64Array(H));
  const fPrev = new Float64Array(n);
  const iPrev = new Float64Array(n);
  rec.g.forEach((g, step) => {
    const [l1, l2] = pre(rec.L[step]!);
    for (let j = 0; j < n; j++) {
      const [g1, g2] = pre(g[j]!);
      const x = [l1!, l2!, g1!, g2!, ...h[j]!];
      const z = Array.from({ length: 4 * H }, (_, r) => x.reduce((a, xv, q) => a + w1[r * (4 + H) + q]! * xv, b1[r]!));
      for (let u = 0; u < H; u++) {
        c[j]![u] = sig(z[H + u]!) * c[j]![u]! + sig(z[u]!) * Math.tanh(z[3 * H + u]!);
        h[j]![u] = sig(z[2 * H + u]!) * Math.tanh(c[j]![u]!);
      }
      const lin = (w: Float64Array, prev: number) => h[j]!.reduce((a, hv, u) => a + w[u]! * hv, 0) + w[H]! * theta[j]! + w[H + 1]! * prev;
      fPrev[j] = lin(wf, fPrev[j]!) + bf;
      iPrev[j] = lin(wi, iPrev[j]!) + bi;
      theta[j] = sig(fPrev[j]!) * theta[j]! - sig(iPrev[j]!) * g[j]!;
    }
  });
  // The MLP 4-3-2 at θ_T (dense0/kernel [4, 3], dense0/bias [3], dense1/kernel [3, 2], dense1/bias [2], row-major), mean cross-entropy.
  const [k0, c0, k1, c1] = [theta.subarray(0, 12), theta.subarray(12, 15), theta.subarray(15, 21), theta.subarray(21, 23)];
  const m = t.query.xShape[0]!;
  let loss = 0;
  for (let e = 0; e < m; e++) {
    const xi = Array.from(t.query.x.subarray(e * 4, e * 4 + 4));
    const hid = [0, 1, 2].map((u) => Math.max(0, xi.reduce((a, xv, q) => a + xv * k0[q * 3 + u]!, c0[u]!)));
    const out = [0, 1].map((o) => hid.reduce((a, hv, u) => a + hv * k1[u * 2 + o]!, c1[o]!));
    const mx = Math.max(...out);
    const lse = mx + Math.log(out.reduce((a, o) => a + Math.exp(o - mx), 0));
    loss += lse - out[(t.query.y as Int32Array)[e]!]!;
  }
  return loss / m;
}

const as64 = (p: Params): Record<string, Float64Array> => Object.fromEntries(names(p).map((k) => [k, Float64Array.from(p[k]!.dataSync())]));

test("the hand-written backward through the recorded unroll equals tfjs's autodiff of the plain steps", async () => {
  // Same function, two differentiations: the learner's replay op (stepBackward, newest step first)
  // and tf.grads through T = 3 metaLearnerStep calls fed the recorded gradients and losses. Equal up
  // to float32 summation order: an entry sums up to T·n = 69 products, so ≲ 69 ulps (≈ 4e-6)
  // relative to the largest entry of its gradient; 2e-5 leaves room.
  const T = 3;
  const meta = strongMeta(3);
  const t = task(11);
  const r = await runEpisodes(meta, [t], { model, kind: "classification", batched: false, classes: 2 }, lstmMetaLearnerEpisode(T, H));
  const { g: recG, L: recL } = ownUnroll(meta, t, T);
  const keys = names(meta);
  const mk = modelKeysOf(meta);
  const e = episodeOf([t], model, "classification", false, 2);
  const auto = tf.grads((...v: tf.Tensor[]) => {
    const p: Params = Object.fromEntries(keys.map((k, j) => [k, v[j]!]));
    let theta = flatten(p, mk);
    let s = initialState(theta.shape[1], H);
    for (let i = 0; i < T; i++) ({ theta, state: s } = metaLearnerStep(p, s, theta, tf.tensor2d(recG[i]!, theta.shape), tf.scalar(recL[i]!)));
    return taskLoss("classification", model.forward(unflatten(theta, mk, p), e.query.x), e.query.y);
  })(keys.map((k) => meta[k]!));
  keys.forEach((k, j) => {
    const a = auto[j]!.dataSync();
    const b = r.sum[k]!.dataSync();
    const scale = Math.max(...Array.from(a, Math.abs));
    assert.ok(scale > 1e-4, `${k}: a gradient to compare`);
    a.forEach((x, i) => close(b[i]!, x, 2e-5 * scale, `${k}[${i}]`));
  });
  disposeEpisode(e);
  tf.dispose(auto);
  dispose(meta, r.sum);
});

test("one episode's meta-gradient matches central differences of the replayed unroll (θ₀, layer 1, layer 2)", async () => {
  // The analytic gradient holds the learner's gradients ∇_t and losses L_t constant (first order, as
  // the reference code), so the finite differences are of the replay: replay64, fed the ∇_t, L_t
  // recorded by the test's own float32 unroll at the unperturbed meta-parameters. In float64 with
  // ε = 1e-5 the central difference is exact to ~1e-10 (rounding ~1e-16/ε, truncation ~ε²); no ReLU
  // kink of the 23-coordinate net lies within ±ε for these fixed directions. What is left is the
  // float32 rounding of the analytic gradient (the learner's unroll and backward: relative ~1e-6 per
  // entry, ≲ 1e-5 after the sums over coordinates and steps) and the float32-vs-float64 difference of
  // the trajectories, of the same order. So |analytic − fd| ≤ 1e-4·|fd| + 1e-7.
  const T = 4;
  const eps = 1e-5;
  const meta = strongMeta(5);
  const t = task(21);
  const r = await runEpisodes(meta, [t], { model, kind: "classification", batched: false, classes: 2 }, lstmMetaLearnerEpisode(T, H));
  const rec = ownUnroll(meta, t, T);
  close(rec.loss, r.metrics[0]!.postLoss, 1e-6, "the test's float32 unroll and the learner's reach the same query loss");
  close(replay64(as64(meta), t, rec), r.metrics[0]!.postLoss, 1e-5, "and the float64 replay too");
  const groups: Record<string, (k: string) => boolean> = {
    "θ₀": (k) => !k.startsWith("learner/"),
    "layer 1": (k) => k === W1 || k === B1,
    "layer 2": (k) => k === WF || k === WI || k === BF || k === BI,
    all: () => true,
  };
  const base = as64(meta);
  let d = 0;
  for (const [group, inGroup] of Object.entries(groups)) {
    for (let rep = 0; rep < 2; rep++, d++) {
      const dir = randomDirection(meta, 700 + d);
      const v = as64(dir);
      dispose(dir);
      for (const k of Object.keys(v)) if (!inGroup(k)) v[k]!.fill(0);
      const at = (s: number) => Object.fromEntries(Object.keys(base).map((k) => [k, base[k]!.map((x, i) => x + s * v[k]![i]!)]));
      const fd = (replay64(at(eps), t, rec) - replay64(at(-eps), t, rec)) / (2 * eps);
      const analytic = names(r.sum).reduce((a, k) => a + Array.from(r.sum[k]!.dataSync()).reduce((b, g, i) => b + g * v[k]![i]!, 0), 0);
      assert.ok(Math.abs(analytic - fd) <= 1e-4 * Math.abs(fd) + 1e-7, `${group}, direction ${rep}: analytic ${analytic} vs finite difference ${fd}`);
      assert.ok(Math.abs(fd) > 1e-4, `${group}, direction ${rep}: the loss moves (${fd}), so the check is not empty`);
    }
  }
  dispose(meta, r.sum);
});

// ---- the learner as the engine runs it ----------------------------------------------------------

test("init: θ₀ is the model's own init, the LSTM's weights U(±0.01), forget bias in [4, 5], input bias in [−5, −4]", () => {
  const s = setupOf(2, 20);
  const p = lstmMetaLearner.init(s, 9);
  const own = model.init(9);
  for (const k of names(own)) assert.deepEqual(Array.from(p[k]!.dataSync()), Array.from(own[k]!.dataSync()), k);
  assert.deepEqual(p[W1]!.shape, [80, 24]);
  assert.deepEqual(p[WF]!.shape, [1, 22]);
  for (const k of [W1, B1, WF, WI]) assert.ok(p[k]!.dataSync().every((x) => Math.abs(x) <= 0.01), k);
  const bf = p[BF]!.dataSync()[0]!;
  const bi = p[BI]!.dataSync()[0]!;
  assert.ok(bf >= 4 && bf <= 5 && bi >= -5 && bi <= -4, `b_F ${bf}, b_I ${bi}`);
  assert.deepEqual(names(p).filter((k) => k.startsWith("learner/")), [...LSTM_KEYS]);
  dispose(p, own);
});

test("evaluation runs the training unroll: step 0 is θ₀'s query loss, step T the episode's post-adaptation loss", async () => {
  const T = 3;
  const s = setupOf(T);
  const meta = strongMeta(8);
  const t0 = family.task(4, "test", 0, 0);
  const r = await runEpisodes(meta, [t0], { model, kind: "classification", batched: false, classes: 2 }, lstmMetaLearnerEpisode(T, H));
  const ev = await lstmMetaLearner.evaluate(s, meta, { tasks: 1, steps: [0, 1, T], seed: 4 });
  close(ev.results[0]!.loss.mean, r.metrics[0]!.preLoss, 1e-6, "step 0");
  close(ev.results[2]!.loss.mean, r.metrics[0]!.postLoss, 1e-6, `step ${T}`);
  assert.equal(ev.results[2]!.accuracy!.mean, r.metrics[0]!.postAccuracy);
  dispose(meta, r.sum);
});

test("innerLr is unused: the shard result does not depend on it", async () => {
  const t = task(3);
  const run = async (innerLr: number) => {
    const config = parseRunConfig({ ...OMNIGLOT, algorithm: "lstm-meta-learner", innerSteps: 2, innerLr, "lstm-meta-learner": { hiddenSize: H } });
    const s: LearnerSetup<LstmMetaLearnerOptions> = { config, hyper: config["lstm-meta-learner"] as LstmMetaLearnerOptions, model, train: family, test: family };
    const p = lstmMetaLearner.init(s, 2);
    const out = await lstmMetaLearner.shardRunner(s).runShard(p, [t]);
    const v = names(out.sum).map((k) => Array.from(out.sum[k]!.dataSync()));
    dispose(p, out.sum);
    return v;
  };
  assert.deepEqual(await run(0.4), await run(0.001));
});

test("outer: Adam sees the meta-gradient clipped to a global norm of maxGradNorm (one norm over θ₀ and the LSTM)", () => {
  // A mean gradient of global norm 100 over all parameters is scaled to 0.25 before the moments:
  // after one step m = (1 − β1)·g_clipped, so ‖m‖ = 0.1·0.25·100/(100 + 1e-6) = 0.025 (clipping
  // θ₀ and the LSTM as separate groups would give 0.025·√2).
  const s = setupOf(2);
  const p = lstmMetaLearner.init(s, 1);
  const opt = lstmMetaLearner.outer(s);
  const dir = randomDirection(p, 3);
  const sum: Params = {};
  for (const k of names(dir)) sum[k] = tf.mul(dir[k]!, 200); // a sum over count = 2 tasks: mean norm 100
  const out = opt.apply(p, sum, 2, opt.initialState(p), { metaLr: 1e-3 });
  const m2 = out.state.moments!.reduce((a, m) => a + m.m.reduce((b, x) => b + x * x, 0), 0);
  close(Math.sqrt(m2), 0.025, 1e-6, "‖m‖");
  dispose(p, dir, sum, out.params);
});

test("cancellation from an inner-step hook rejects the shard and leaves no tensors behind", async () => {
  const s = setupOf(4);
  const p = lstmMetaLearner.init(s, 1);
  const before = tf.memory().numTensors;
  const seen: number[] = [];
  await assert.rejects(
    lstmMetaLearner.shardRunner(s).runShard(p, [task(1), task(2)], {
      onInnerStep: (_task, step) => {
        seen.push(step);
        if (step === 2) throw new Error("cancelled");
      },
    }),
    /cancelled/,
  );
  assert.deepEqual(seen, [0, 1, 2], "heartbeats after each step until the hook throws");
  assert.equal(tf.memory().numTensors, before);
  dispose(p);
});

test("the same seed gives bit-identical parameters and shards; a shard of two tasks is task 0 + task 1 in that order", async () => {
  const s = setupOf(3);
  const tasks = [0, 1].map((i) => family.task(7, "train", 3, i));
  const bits = (p: Params) => names(p).map((k) => Array.from(p[k]!.dataSync()));
  const once = async () => {
    const p = lstmMetaLearner.init(s, 5);
    const runner = lstmMetaLearner.shardRunner(s);
    const both = await runner.runShard(p, tasks);
    const a = await runner.runShard(p, [tasks[0]!]);
    const b = await runner.runShard(p, [tasks[1]!]);
    const folded = tf.tidy(() => Object.fromEntries(names(a.sum).map((k) => [k, tf.add(a.sum[k]!, b.sum[k]!)])) as Params);
    const out = { params: bits(p), sum: bits(both.sum), folded: bits(folded), metrics: both.metrics };
    assert.deepEqual(both.metrics, [...a.metrics, ...b.metrics]);
    dispose(p, both.sum, a.sum, b.sum, folded);
    return out;
  };
  const x = await once();
  assert.deepEqual(x.sum, x.folded, "the shard sum is task 0's result plus task 1's, bit for bit");
  assert.deepEqual(await once(), x, "and all of it again from the same seed");
});

test("many episodes and evaluations leave no tensors behind", async () => {
  const s = setupOf(3);
  const p = lstmMetaLearner.init(s, 2);
  const runner = lstmMetaLearner.shardRunner(s);
  const warm = await runner.runShard(p, [family.task(1, "train", 0, 0)]);
  dispose(warm.sum);
  const before = tf.memory().numTensors;
  for (let it = 0; it < 8; it++) {
    const r = await runner.runShard(p, [0, 1, 2].map((i) => family.task(1, "train", it, i)));
    assert.deepEqual(names(r.sum), names(p));
    dispose(r.sum);
    await lstmMetaLearner.evaluate(s, p, { tasks: 3, steps: [0, 2, 5], seed: it });
  }
  assert.equal(tf.memory().numTensors, before);
  dispose(p);
});

test("a recorded rollout holds what the replay needs; one that is not recorded keeps only the last step", () => {
  const p = strongMeta(1);
  const e = episodeOf([task(4)], model, "classification", false, 2);
  const before = tf.memory().numTensors;
  const rec = rollout(p, e, 3, H, () => true, true);
  assert.deepEqual([rec.thetas.length, rec.states.length, rec.grads.length, rec.pres.length], [4, 4, 3, 3]);
  const last = rollout(p, e, 3, H, () => true, false);
  assert.deepEqual([last.thetas.length, last.states.length, last.grads.length, last.pres.length], [1, 1, 0, 0]);
  assert.deepEqual(Array.from(last.thetas[0]!.dataSync()), Array.from(rec.thetas[3]!.dataSync()));
  const stopped = rollout(p, e, 5, H, (t) => t < 1, true);
  assert.equal(stopped.grads.length, 2, "each returning false stops after that step");
  [rec, last, stopped].forEach(disposeTrajectory);
  assert.equal(tf.memory().numTensors, before);
  disposeEpisode(e);
  dispose(p);
});

// ---- registry and presets -----------------------------------------------------------------------

test("registered, with the paper's presets and a cheap MLP preset that CI picks (cheapestPreset: sinusoid, then omniglot-mlp)", async () => {
  assert.ok(LEARNERS.includes(lstmMetaLearner));
  const presetNames = lstmMetaLearner.presets.map((p) => p.name);
  assert.deepEqual(presetNames, ["omniglot-5w1s-lstm-meta-learner-mlp", "omniglot-5w1s-lstm-meta-learner", "omniglot-5w5s-lstm-meta-learner"]);
  const kinds = lstmMetaLearner.presets.map((p) => [(p.config.task as { family: string }).family, (p.config.model as { kind: string }).kind]);
  assert.ok(!kinds.some(([f]) => f === "sinusoid"));
  assert.deepEqual(kinds.filter(([, k]) => k === "omniglot-mlp").length, 1);
  const { loadOmniglot } = await import("../../storage/datasets.js");
  let data: ReturnType<typeof loadOmniglot> | undefined;
  const port = { omniglot: () => (data ??= loadOmniglot()) };
  for (const [preset, steps, shots, modelName] of [
    [lstmMetaLearner.presets[0]!, 5, 1, "mlp-784-256-128-64-64-5-bn"],
    [lstmMetaLearner.presets[1]!, 12, 1, "conv4-32-maxpool-bn"],
    [lstmMetaLearner.presets[2]!, 8, 5, "conv4-32-maxpool-bn"],
  ] as const) {
    const c = parseRunConfig(preset.config);
    assert.equal(c.algorithm, "lstm-meta-learner");
    assert.deepEqual([c.innerSteps, c.evalSteps, c.metaLr, c.metaBatchSize], [steps, steps, 0.001, 1], preset.name);
    assert.deepEqual(c["lstm-meta-learner"], { hiddenSize: 20, maxGradNorm: 0.25 });
    assert.match(preset.source, /miniImageNet only/);
    const run = resolveRun(c, port);
    assert.equal(run.setup.model.name, modelName);
    const tk = run.setup.train.task(1, "train", 0, 0);
    assert.deepEqual([tk.support.xShape[0], tk.query.xShape[0]], [5 * shots, 75], preset.name);
  }
  assert.throws(() => parseRunConfig({ algorithm: "lstm-meta-learner" }), /lstm-meta-learner learns classification tasks/);
});
