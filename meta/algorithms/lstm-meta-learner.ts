// The LSTM meta-learner (Ravi & Larochelle 2017, "Optimization as a model for few-shot learning"):
// a coordinate-wise two-layer LSTM is the learner's optimizer. Layer 1, a standard LSTM, reads each
// coordinate's preprocessed loss and gradient; layer 2's cell state IS the learner's parameters,
// θ_t = σ(f_t) ⊙ θ_{t−1} − σ(i_t) ⊙ ∇_t (§3.1: c_t = f_t ⊙ c_{t−1} + i_t ⊙ c̃_t with c̃_t = −∇_t),
// started at c_0 = θ_0, the learner's initialisation, itself a meta-parameter. One task contributes the gradient of its query
// loss at θ_T with respect to θ_0 and the LSTM's weights through the unrolled updates, the learner's
// gradients and losses entering as inputs (first order, as twitter-research/meta-learning-lstm);
// Adam at metaLr applies the mean, its global gradient norm clipped (0.25 in the reference code).
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, type AdaptAndMeasure } from "../evaluate.js";
import { taskLoss } from "../losses.js";
import { uniformTensor } from "../models.js";
import { preprocessGradient } from "../ops.js";
import { adam } from "../optimizers.js";
import { fromList, names, type Params } from "../params.js";
import { deriveSeed, Rng } from "../rng.js";
import { abortableSteps, queryLoss, taskMetrics, type Episode, type EpisodeFn, type QueryReadout } from "./episodes.js";
import { defineLearner, LEARNER_PARAM_PREFIX, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  hiddenSize: z.number().int().min(1).max(1024).default(20).describe("Hidden units of layer 1, the standard LSTM (Ravi & Larochelle 2017, §4, and the reference code's nHidden: 20)."),
  maxGradNorm: z.number().positive().default(0.25).describe("Global L2-norm clip of the meta-gradient before Adam (the reference code's maxGradNorm: 0.25), applied to the coordinator's mean over the meta-batch."),
});
export type LstmMetaLearnerOptions = z.infer<typeof options>;

// Coordinates run along the LAST axis ([features, n]): the per-coordinate features are rows, so
// every slice and concat is of whole rows and every matMul is untransposed (the wasm backend reads
// a whole tensor to slice it and is several times slower at transposed matMuls).

/** Name of a meta-learner parameter: `learner/lstm-meta-learner/<layer>/<name>`. */
export const lstmKey = (layer: "layer1" | "layer2", part: string): string => `${LEARNER_PARAM_PREFIX}lstm-meta-learner/${layer}/${part}`;
/**
 * Layer 1, the standard LSTM: gates z = W1 [x; h] + b1 with W1 [4H, 4 + H], rows in blocks of H for
 * the input, forget and output gates and the candidate, columns [L₁, L₂, ∇₁, ∇₂, h] (the reference's
 * W, transposed); b1 [4H, 1].
 */
export const W1 = lstmKey("layer1", "kernel");
export const B1 = lstmKey("layer1", "bias");
/** Layer 2: f = W_F [h; θ; f_prev] + b_F, i = W_I [h; θ; i_prev] + b_I; W_F, W_I are [1, H + 2], b_F, b_I one scalar each ([1]), shared by every coordinate as in the reference. */
export const WF = lstmKey("layer2", "wf");
export const WI = lstmKey("layer2", "wi");
export const BF = lstmKey("layer2", "bf");
export const BI = lstmKey("layer2", "bi");
export const LSTM_KEYS = [W1, B1, WF, WI, BF, BI] as const;

/**
 * The recurrent state beside θ ([1, n]) for n coordinates: layer 1's h and c ([H, n], zero at the
 * start) and layer 2's previous forget and input pre-activations ([1, n], zero at the start). The
 * reference code feeds back the pre-activations (its `fS[s] = fN`), where the paper's equations write
 * the gate values f_{t−1}, i_{t−1}; this follows the code.
 */
export type OptimizerState = {
  h: tf.Tensor2D;
  c: tf.Tensor2D;
  f: tf.Tensor2D;
  i: tf.Tensor2D;
};

export function initialState(n: number, hidden: number): OptimizerState {
  return { h: tf.zeros([hidden, n]), c: tf.zeros([hidden, n]), f: tf.zeros([1, n]), i: tf.zeros([1, n]) };
}

const stateTensors = (s: OptimizerState): tf.Tensor[] => [s.h, s.c, s.f, s.i];

/** Layer 1's input x = [pre(L); pre(∇)] ([4, n]): Andrychowicz et al. appendix A (p = 10), the loss broadcast to every coordinate and first, as in the reference. */
export function preprocessedInputs(grad: tf.Tensor2D, loss: tf.Scalar): tf.Tensor2D {
  const n = grad.shape[1];
  const preLoss = tf.tile(tf.reshape(preprocessGradient(loss), [2, 1]), [1, n]);
  const preGrad = tf.transpose(tf.reshape(preprocessGradient(grad), [n, 2]));
  return tf.concat([preLoss, preGrad], 0) as tf.Tensor2D;
}

/** Every intermediate of one update, which the backward recomputes. */
interface StepParts {
  x: tf.Tensor2D;
  si: tf.Tensor2D;
  sf: tf.Tensor2D;
  so: tf.Tensor2D;
  tg: tf.Tensor2D;
  tc: tf.Tensor2D;
  sF: tf.Tensor2D;
  sI: tf.Tensor2D;
  theta: tf.Tensor2D;
  state: OptimizerState;
}

/** Row blocks of W1 and b1 for gate q (0 input, 1 forget, 2 output, 3 candidate). */
const gate = (p: Params, q: number, H: number) => ({ w: tf.slice(p[W1]!, [q * H, 0], [H, -1]) as tf.Tensor2D, b: tf.slice(p[B1]!, [q * H, 0], [H, 1]) });
/** W_F or W_I as its h part [1, H] and its θ and previous-gate weights ([1, 1] each). */
const layer2 = (w: tf.Tensor, H: number) => {
  const [wh, wt, wp] = tf.split(w, [H, 1, 1], 1) as tf.Tensor2D[];
  return { wh: wh!, wt: wt!, wp: wp! };
};

function stepParts(p: Params, s: OptimizerState, theta: tf.Tensor2D, grad: tf.Tensor2D, pre: tf.Tensor2D): StepParts {
  const H = s.h.shape[0];
  const x = tf.concat([pre, s.h], 0) as tf.Tensor2D;
  // One matMul per gate block: no slicing of the [4H, n] pre-activations.
  const z = [0, 1, 2, 3].map((q) => {
    const { w, b } = gate(p, q, H);
    return tf.add(tf.matMul(w, x), b);
  });
  const [si, sf, so, tg] = [tf.sigmoid(z[0]!), tf.sigmoid(z[1]!), tf.sigmoid(z[2]!), tf.tanh(z[3]!)] as tf.Tensor2D[];
  const c: tf.Tensor2D = tf.add(tf.mul(sf!, s.c), tf.mul(si!, tg!));
  const tc: tf.Tensor2D = tf.tanh(c);
  const h: tf.Tensor2D = tf.mul(so!, tc);
  const gateF = layer2(p[WF]!, H);
  const gateI = layer2(p[WI]!, H);
  const f: tf.Tensor2D = tf.addN([tf.matMul(gateF.wh, h), tf.mul(theta, gateF.wt), tf.mul(s.f, gateF.wp), tf.broadcastTo(p[BF]!, theta.shape)]);
  const i: tf.Tensor2D = tf.addN([tf.matMul(gateI.wh, h), tf.mul(theta, gateI.wt), tf.mul(s.i, gateI.wp), tf.broadcastTo(p[BI]!, theta.shape)]);
  const [sF, sI] = [tf.sigmoid(f), tf.sigmoid(i)];
  const next: tf.Tensor2D = tf.sub(tf.mul(sF, theta), tf.mul(sI, grad));
  return { x, si: si!, sf: sf!, so: so!, tg: tg!, tc, sF, sI, theta: next, state: { h, c, f, i } };
}

/**
 * One update of the meta-learner, in plain ops: θ [1, n] at step t − 1, the learner's gradient
 * [1, n] and loss (a scalar) there — inputs, constant to the meta-gradient. Layer 1:
 * x = [pre(L); pre(∇)], [i; f; o; g] = W1 [x; h] + b1, c′ = σ(f) c + σ(i) tanh(g),
 * h′ = σ(o) tanh(c′). Layer 2: f_t = W_F [h′; θ; f_{t−1}] + b_F, i_t = W_I [h′; θ; i_{t−1}] + b_I
 * (pre-activations), θ_t = σ(f_t) ⊙ θ − σ(i_t) ⊙ ∇.
 */
export function metaLearnerStep(p: Params, s: OptimizerState, theta: tf.Tensor2D, grad: tf.Tensor2D, loss: tf.Scalar): { theta: tf.Tensor2D; state: OptimizerState } {
  const r = stepParts(p, s, theta, grad, preprocessedInputs(grad, loss));
  return { theta: r.theta, state: r.state };
}

const dSigmoid = (s: tf.Tensor) => tf.mul(s, tf.sub(1, s));
const dTanh = (t: tf.Tensor) => tf.sub(1, tf.square(t));

/** Gradients of the six weights, named as the parameters. */
type WeightGrads = Params;

/**
 * The chain rule back through one update (metaLearnerStep's equations, its gradient and loss inputs
 * constant): from the gradients of θ_t and of the state after the step (`d`; zero state gradients
 * after the last step) to those of θ_{t−1} and the state before it, plus the step's share of the
 * weights' gradients. Recomputes the step's intermediates from its inputs.
 */
export function stepBackward(p: Params, s: OptimizerState, theta: tf.Tensor2D, grad: tf.Tensor2D, pre: tf.Tensor2D, dTheta: tf.Tensor2D, d: OptimizerState | undefined): { dTheta: tf.Tensor2D; dState: OptimizerState; dWeights: WeightGrads } {
  const H = s.h.shape[0];
  const r = stepParts(p, s, theta, grad, pre);
  const gateF = layer2(p[WF]!, H);
  const gateI = layer2(p[WI]!, H);
  // Through θ_t = σ(f) θ − σ(i) ∇ into the layer-2 pre-activations.
  const df = tf.mul(tf.mul(dTheta, theta), dSigmoid(r.sF)) as tf.Tensor2D;
  const di = tf.neg(tf.mul(tf.mul(dTheta, grad), dSigmoid(r.sI))) as tf.Tensor2D;
  const dF = d ? tf.add(df, d.f) : df;
  const dI = d ? tf.add(di, d.i) : di;
  const dThetaPrev = tf.addN([tf.mul(dTheta, r.sF), tf.mul(dF, gateF.wt), tf.mul(dI, gateI.wt)]) as tf.Tensor2D;
  // h′ feeds both gates ([H, 1] columns of W_F, W_I times the [1, n] rows) and the next step.
  const dhNew = tf.addN([tf.mul(tf.reshape(gateF.wh, [H, 1]), dF), tf.mul(tf.reshape(gateI.wh, [H, 1]), dI), ...(d ? [d.h] : [])]);
  const dcNew = tf.add(tf.mul(tf.mul(dhNew, r.so), dTanh(r.tc)), d ? d.c : tf.zerosLike(r.tc));
  const dz = [tf.mul(tf.mul(dcNew, r.tg), dSigmoid(r.si)), tf.mul(tf.mul(dcNew, s.c), dSigmoid(r.sf)), tf.mul(tf.mul(dhNew, r.tc), dSigmoid(r.so)), tf.mul(tf.mul(dcNew, r.si), dTanh(r.tg))];
  const dzAll = tf.concat(dz, 0);
  // dW1 = dz xᵀ and dh = W1[:, 4:]ᵀ dz, with the transposes made explicit (see the top of the file).
  const dW1 = tf.matMul(dzAll, tf.transpose(r.x));
  const dhPrev = tf.matMul(tf.transpose(tf.slice(p[W1]!, [0, 4], [-1, H])), dzAll) as tf.Tensor2D;
  const rowSums = (a: tf.Tensor, b: tf.Tensor) => tf.reshape(tf.sum(tf.mul(a, b), 1), [1, -1]);
  const dW = (dg: tf.Tensor, prev: tf.Tensor) => tf.concat([rowSums(r.state.h, dg), rowSums(theta, dg), rowSums(prev, dg)], 1);
  return {
    dTheta: dThetaPrev,
    dState: { h: dhPrev, c: tf.mul(dcNew, r.sf), f: tf.mul(dF, gateF.wp), i: tf.mul(dI, gateI.wp) },
    dWeights: { [W1]: dW1, [B1]: tf.sum(dzAll, 1, true), [WF]: dW(dF, s.f), [WI]: dW(dI, s.i), [BF]: tf.reshape(tf.sum(dF), [1]), [BI]: tf.reshape(tf.sum(dI), [1]) },
  };
}

/** The model's parameters (every name outside `learner/`) as one row [1, n], in the map's order. */
export function flatten(p: Params, keys: readonly string[]): tf.Tensor2D {
  return tf.reshape(tf.concat(keys.map((k) => tf.reshape(p[k]!, [-1])), 0), [1, -1]) as tf.Tensor2D;
}

/** Inverse of flatten: the row cut into the shapes of `like`'s entries named in `keys`. */
export function unflatten(flat: tf.Tensor2D, keys: readonly string[], like: Params): Params {
  const parts = tf.split(tf.reshape(flat, [-1]), keys.map((k) => like[k]!.size), 0);
  return fromList(keys, keys.map((k, j) => tf.reshape(parts[j]!, like[k]!.shape)));
}

export const modelKeysOf = (p: Params): string[] => names(p).filter((k) => !k.startsWith(LEARNER_PARAM_PREFIX));

/** The learner's support loss and its gradient ([1, n]) at θ: the meta-learner's inputs. */
export function learnerInputs(e: Episode, keys: readonly string[], like: Params, theta: tf.Tensor2D): { grad: tf.Tensor2D; loss: tf.Scalar } {
  const at = unflatten(theta, keys, like);
  const { value, grads } = tf.valueAndGrads((...v: tf.Tensor[]) => taskLoss(e.kind, e.forward(fromList(keys, v), e.support.x), e.support.y))(keys.map((k) => at[k]!));
  return { grad: flatten(fromList(keys, grads), keys), loss: value as tf.Scalar };
}

/**
 * What an unroll recorded: θ_0 … θ_T and the states before each step (what the backward needs), and
 * each step's inputs — the learner's gradient and the preprocessed [loss; gradient].
 */
export interface Trajectory {
  thetas: tf.Tensor2D[];
  states: OptimizerState[];
  grads: tf.Tensor2D[];
  pres: tf.Tensor2D[];
}

export function disposeTrajectory(tr: Trajectory): void {
  tf.dispose([...tr.thetas, ...tr.states.flatMap(stateTensors), ...tr.grads, ...tr.pres]);
}

/**
 * The learned optimizer's unroll on an episode's support set, with no gradient tape: `steps`
 * updates from θ_0 = the model's entries of `meta` (flat), each on the whole support set (the
 * reference's minibatch is the support set in both of its configurations, so its epochs are these
 * steps). After update t (0-based) `each(t, θ_{t+1})` is called; false stops. `record` keeps what
 * `replay` needs (about (2H + 8)·n floats a step); otherwise only the last θ is kept.
 */
export function rollout(meta: Params, e: Episode, steps: number, hidden: number, each: (t: number, theta: tf.Tensor2D) => boolean, record: boolean): Trajectory {
  const keys = modelKeysOf(meta);
  const theta0 = tf.tidy(() => flatten(meta, keys));
  const tr: Trajectory = { thetas: [theta0], states: [initialState(theta0.shape[1], hidden)], grads: [], pres: [] };
  for (let t = 0; t < steps; t++) {
    const theta = tr.thetas[tr.thetas.length - 1]!;
    const state = tr.states[tr.states.length - 1]!;
    const r = tf.tidy(() => {
      const { grad, loss } = learnerInputs(e, keys, meta, theta);
      const pre = preprocessedInputs(grad, loss);
      const out = stepParts(meta, state, theta, grad, pre);
      return { grad, pre, theta: out.theta, ...out.state };
    });
    tr.thetas.push(r.theta);
    tr.states.push({ h: r.h, c: r.c, f: r.f, i: r.i });
    tr.grads.push(r.grad);
    tr.pres.push(r.pre);
    if (!record) {
      tf.dispose([tr.thetas.shift()!, ...stateTensors(tr.states.shift()!), tr.grads.shift()!, tr.pres.shift()!]);
    }
    if (!each(t, r.theta)) break;
  }
  return tr;
}

/**
 * θ_T of a recorded unroll as a differentiable function of θ_0 ([1, n]) and the six weights (`p`):
 * a custom op whose value is the recorded θ_T and whose gradient is back-propagation through the
 * recorded steps (stepBackward, newest first), the learner's gradients and losses held constant —
 * exactly the gradient of the "replayed" unroll that feeds the recorded inputs back. `tr` must have
 * been recorded from these same θ_0 and weights, and outlive the backward pass.
 */
export function replay(tr: Trajectory, theta0: tf.Tensor2D, p: Params): tf.Tensor2D {
  const T = tr.grads.length;
  const op = tf.customGrad(((..._inputs: tf.Tensor[]) => ({
    value: tf.clone(tr.thetas[T]!),
    gradFunc: (dy: tf.Tensor2D) =>
      // Own tidy: the engine keeps whatever a custom gradient allocates until the whole backward pass ends.
      tf.tidy(() => {
        let dTheta = dy;
        let dState: OptimizerState | undefined;
        let acc: WeightGrads | undefined;
        for (let t = T - 1; t >= 0; t--) {
          const prevTheta = dTheta;
          const prevState = dState;
          const prevAcc = acc;
          const r = tf.tidy(() => {
            const b = stepBackward(p, tr.states[t]!, tr.thetas[t]!, tr.grads[t]!, tr.pres[t]!, prevTheta, prevState);
            const sum: WeightGrads = prevAcc ? fromList(LSTM_KEYS, LSTM_KEYS.map((k) => tf.add(prevAcc[k]!, b.dWeights[k]!))) : b.dWeights;
            return { dTheta: b.dTheta, dState: b.dState, sum };
          });
          if (prevTheta !== dy) prevTheta.dispose();
          if (prevState) tf.dispose(stateTensors(prevState));
          if (prevAcc) tf.dispose(Object.values(prevAcc));
          dTheta = r.dTheta;
          dState = r.dState;
          acc = r.sum;
        }
        return [dTheta, ...LSTM_KEYS.map((k) => (acc ? acc[k]! : tf.zerosLike(p[k]!)))];
      }),
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return (op as unknown as (...x: tf.Tensor[]) => tf.Tensor2D)(theta0, ...LSTM_KEYS.map((k) => p[k]!));
}

/**
 * One task's contribution: the gradient of the query loss at θ_T w.r.t. every meta-parameter (θ_0 and
 * the LSTM's weights) through the `innerSteps` updates, first order in the learner's gradients and
 * losses as the reference code (its getValue calls). The unroll runs first, with no tape (so
 * heartbeats and cancellation happen outside any tf.grads); the gradient is then taken through
 * `replay` of what it recorded.
 */
export function lstmMetaLearnerEpisode(innerSteps: number, hidden: number): EpisodeFn {
  return (e, meta, firstTask, hooks) => {
    const keys = names(meta);
    const modelKeys = modelKeysOf(meta);
    const steps = abortableSteps(hooks, firstTask);
    const pre: QueryReadout = { loss: [], accuracy: [] };
    const post: QueryReadout = { loss: [], accuracy: [] };
    queryLoss(e, meta, pre);
    const tr = rollout(meta, e, innerSteps, hidden, (t) => steps.step(t), true);
    try {
      steps.rethrow();
      const g = tf.grads((...vals: tf.Tensor[]) => {
        const p = fromList(keys, vals);
        return queryLoss(e, unflatten(replay(tr, flatten(p, modelKeys), p), modelKeys, p), post);
      })(keys.map((k) => meta[k]!));
      return { result: fromList(keys, g), metrics: taskMetrics(e, pre, post) };
    } finally {
      disposeTrajectory(tr);
    }
  };
}

/** Test time: the learned optimizer on the support set, the query outputs after each step count asked for (any count: the LSTM runs on past innerSteps if asked). */
export function lstmAdaptation(hidden: number): AdaptAndMeasure {
  return (e, params, steps, record) => {
    const keys = modelKeysOf(params);
    if (steps.includes(0)) record(0, e.forward(params, e.query.x));
    const maxSteps = steps[steps.length - 1] ?? 0;
    if (maxSteps === 0) return;
    const tr = rollout(params, e, maxSteps, hidden, (t, theta) => {
      if (steps.includes(t + 1)) tf.tidy(() => record(t + 1, e.forward(unflatten(theta, keys, params), e.query.x)));
      return true;
    }, false);
    disposeTrajectory(tr);
  };
}

/**
 * The model's parameters (θ_0 = c_0, the model's own init) plus the LSTM's, as the reference code
 * draws them: every weight and bias U(−0.01, 0.01), then layer 2's forget bias U(4, 5) and input bias
 * U(−5, −4), so the learner starts close to gradient descent with a small step and no forgetting.
 */
function init(s: LearnerSetup<LstmMetaLearnerOptions>, seed: number): Params {
  const theta = s.model.init(seed);
  const H = s.hyper.hiddenSize;
  const rng = new Rng(deriveSeed(seed, 0x157a));
  const small = (shape: number[]) => uniformTensor(rng, shape, 0.01);
  return {
    ...theta,
    [W1]: small([4 * H, 4 + H]),
    [B1]: small([4 * H, 1]),
    [WF]: small([1, H + 2]),
    [WI]: small([1, H + 2]),
    [BF]: tf.tensor1d([rng.uniform(4, 5)]),
    [BI]: tf.tensor1d([rng.uniform(-5, -4)]),
  };
}

const CONV4_32 = { kind: "conv4", downsample: "maxpool", batchNorm: true, filters: 32 } as const;
const OMNIGLOT_RUN = { metaLr: 0.001, metaBatchSize: 1, shardSize: 1, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 } as const;
const REFERENCE = "Ravi & Larochelle 2017 (§4) and twitter-research/meta-learning-lstm (config/lstm/train-imagenet-{1,5}shot.lua)";

export const lstmMetaLearner = defineLearner<LstmMetaLearnerOptions>({
  name: "lstm-meta-learner",
  title: "LSTM meta-learner (Ravi & Larochelle 2017)",
  summary:
    "gradient of the query loss after innerSteps updates by a coordinate-wise LSTM whose cell state is the learner's parameters (from the preprocessed support loss and gradient, first order), w.r.t. θ_0 and the LSTM; Adam (metaLr) with the global norm clipped to maxGradNorm; innerLr unused",
  options,
  needs: { secondOrder: false, taskKinds: ["classification"], taskBatching: false },
  stateLayout: "model+lstm-meta-learner+adam",
  pins: ["hiddenSize"],
  init,
  outer: (s) => adam({ clipNorm: { max: s.hyper.maxGradNorm } }),
  shardRunner: (s) => episodeRunner(s, lstmMetaLearnerEpisode(s.config.innerSteps, s.hyper.hiddenSize), false),
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, lstmAdaptation(s.hyper.hiddenSize), { batchable: false }),
  presets: [
    {
      name: "omniglot-5w1s-lstm-meta-learner-mlp",
      description: "Omniglot 5-way 1-shot, LSTM meta-learner on MAML's MLP 784-256-128-64-64-5 with batch norm (a cheap configuration, not the paper's)",
      source: `${REFERENCE}: the meta-learner, Adam 1e-3, clip 0.25, one episode per update; the paper reports miniImageNet only (5w1s 43.44 ± 0.77%) and no MLP. Departs: MAML's Omniglot MLP as the learner (247k coordinates), 5 updates on the support set instead of 12, 20,000 episodes`,
      config: {
        algorithm: "lstm-meta-learner",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 },
        model: { kind: "omniglot-mlp", batchNorm: true },
        innerSteps: 5, iterations: 20000, evalSteps: 5,
        ...OMNIGLOT_RUN,
      },
    },
    ...(
      [
        ["5w1s", 1, 12, 75000, "43.44 ± 0.77"],
        ["5w5s", 5, 8, 50000, "60.60 ± 0.71"],
      ] as const
    ).map(([tag, shots, steps, episodes, mini]) => ({
      name: `omniglot-${tag}-lstm-meta-learner`,
      description: `Omniglot 5-way ${shots}-shot, LSTM meta-learner on Conv4-32 (max-pool, batch norm)`,
      source: `${REFERENCE}: learner 4 × [3×3 conv 32, batch norm, ReLU, 2×2 max-pool] + linear, meta-learner 20 hidden units, ${steps} updates on the whole support set (the code's ${steps} epochs of one minibatch of ${5 * shots}), Adam 1e-3, clip 0.25, one episode per update, ${episodes} episodes, 600 test episodes, 15 queries per class. The paper reports miniImageNet only (5-way ${shots}-shot ${mini}%), not available here; on Omniglot it gives no figure. Departs: batch statistics at test (transductive), where the code uses running averages gathered on the support set; the meta-learner reads the gradient of the mean support loss, which the code divides once more by its minibatch size`,
      config: {
        algorithm: "lstm-meta-learner",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots, queryShots: 15 },
        model: CONV4_32,
        innerSteps: steps, iterations: episodes, evalSteps: steps,
        ...OMNIGLOT_RUN,
        "lstm-meta-learner": { hiddenSize: 20, maxGradNorm: 0.25 },
      },
    })),
  ],
});
