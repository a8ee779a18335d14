// The vanilla policy gradient objective of a Gaussian policy on a batch of trajectories (MAML §5.3's
// inner step, maml_rl's maml_vpg.py): the surrogate −(1/M) Σ_valid log π(a | o)·A over the M valid
// steps, whose gradient is the REINFORCE estimate with the batch's advantages as constants.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "../models.js";
import { LOG_STD } from "../models/gaussian-mlp.js";
import type { Params } from "../params.js";
import { validMask, type SamplingPolicy, type Trajectories } from "./rollouts.js";

/** A batch of trajectories as tensors, flattened over (path, step): M = N·H rows, masked. */
export interface PolicyBatch {
  observations: tf.Tensor2D;
  actions: tf.Tensor2D;
  advantages: tf.Tensor1D;
  mask: tf.Tensor1D;
  /** Σ mask: the valid steps (a number, so the objective's scale is fixed data). */
  steps: number;
}

/** Tensors of `tr` with advantages `adv` ([N, H], e.g. from rl/baseline.ts). The caller disposes them. */
export function policyBatch(tr: Trajectories, adv: ArrayLike<number>): PolicyBatch {
  const rows = tr.count * tr.horizon;
  const mask = validMask(tr);
  return {
    observations: tf.tensor2d(tr.observations, [rows, tr.obsSize]),
    actions: tf.tensor2d(tr.actions, [rows, tr.actSize]),
    advantages: tf.tensor1d(Float32Array.from(adv)),
    mask: tf.tensor1d(mask),
    steps: tr.lengths.reduce((a, b) => a + b, 0),
  };
}

export function disposeBatch(b: PolicyBatch): void {
  tf.dispose([b.observations, b.actions, b.advantages, b.mask]);
}

/**
 * log N(a; μ, diag σ²) per row with σ = exp(logσ):
 * Σ_d [−logσ_d − ½((a_d − μ_d)·e^{−logσ_d})²] − (D/2)·log 2π.
 * `exp` is on MAML's second-order path: its gradient is re-registered from the input
 * (meta/gradients.ts), so the learner must call registerHigherOrderGradients().
 */
export function logLikelihood(mean: tf.Tensor2D, logStd: tf.Tensor1D, actions: tf.Tensor2D): tf.Tensor1D {
  const z = tf.mul(tf.sub(actions, mean), tf.exp(tf.neg(logStd)));
  const perDim = tf.sub(tf.neg(logStd), tf.mul(tf.square(z), 0.5));
  return tf.sub(tf.sum(perDim, 1), (mean.shape[1] * Math.log(2 * Math.PI)) / 2) as tf.Tensor1D;
}

/** The policy's log-likelihood of the batch's actions under `params`, per row. */
export function batchLogLikelihood(model: Model, params: Params, b: PolicyBatch): tf.Tensor1D {
  return logLikelihood(model.forward(params, b.observations) as tf.Tensor2D, params[LOG_STD] as tf.Tensor1D, b.actions);
}

/** −(1/M) Σ_valid log π(a | o)·A: descending it ascends the estimated return. */
export function vpgSurrogate(model: Model, params: Params, b: PolicyBatch): tf.Scalar {
  return tf.div(tf.neg(tf.sum(tf.mul(tf.mul(batchLogLikelihood(model, params, b), b.advantages), b.mask))), b.steps) as tf.Scalar;
}

/** The policy under `params` as rollouts sample it (means read back per step). */
export function samplingPolicy(model: Model, params: Params): SamplingPolicy {
  const logStd = params[LOG_STD];
  if (!logStd) throw new Error(`model ${model.name} has no '${LOG_STD}' parameter: policy-gradient learners need a Gaussian policy (model.kind gaussian-mlp)`);
  return {
    logStd: logStd.dataSync() as Float32Array,
    mean: (obs, n) => tf.tidy(() => model.forward(params, tf.tensor2d(obs, [n, model.inputShape[0]!])).dataSync() as Float32Array),
  };
}
