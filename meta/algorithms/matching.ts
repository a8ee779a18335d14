// Matching networks (Vinyals et al. 2016): a query x̂ is labelled by attention over the support set,
// ŷ = Σ_i a(x̂, x_i) y_i with a = softmax_i c(f(x̂), g(x_i)) (eqs. 1–2); with Full Context Embeddings
// g is a bidirectional LSTM over the support embeddings and f an attention LSTM over them (§2.1.2,
// appendix A). Each episode contributes the gradient of its query loss −log ŷ; Adam applies the mean.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, withoutAdaptation } from "../evaluate.js";
import { uniformTensor, type Model } from "../models.js";
import { adam } from "../optimizers.js";
import type { Params } from "../params.js";
import { deriveSeed, Rng } from "../rng.js";
import { CONV4_EPISODIC_RUN, episodicTrainOptions, episodicTrainTask, noInnerLoopEpisode, queryLossOf, type Episode, type EpisodeFn } from "./episodes.js";
import { defineLearner, LEARNER_PARAM_PREFIX, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  ...episodicTrainOptions,
  distance: z
    .enum(["cosine", "euclidean"])
    .default("cosine")
    .describe("Similarity c of the attention: `cosine` (Vinyals et al. 2016: the paper's, in [−1, 1] with no temperature) or `euclidean`, −‖f(x̂) − g(x_i)‖² (reproductions on Omniglot: far better than cosine)."),
  fce: z.boolean().default(false).describe("Full Context Embeddings (Vinyals et al. 2016, §2.1.2 and appendix A): g a bidirectional LSTM over the support embeddings, f an attention LSTM over them (the paper's miniImageNet setup; its Omniglot figures are without FCE [unverified])."),
  fceSteps: z.number().int().min(1).default(5).describe("K, the attention LSTM's read steps over the support set with `fce` (Vinyals et al. 2016, appendix A.1, which gives no value)."),
});
export type MatchingOptions = z.infer<typeof options>;

/** What shapes the classifier: the learner's options less the training-episode overrides. */
export type MatchingRule = Pick<MatchingOptions, "distance" | "fce" | "fceSteps">;

/** Squared norms below this count as this (cosine of a zero embedding: 0, not NaN). */
const MIN_NORM2 = 1e-12;

const unit = (z: tf.Tensor2D): tf.Tensor2D => tf.mul(z, tf.rsqrt(tf.maximum(tf.sum(tf.square(z), -1, true), MIN_NORM2)));

/**
 * Log of the attention classifier's ŷ (eq. 1) up to a per-query constant, from query embeddings
 * zq [nq, d], support embeddings zs [ns, d] and one-hot support labels [ns, ways]: logit_k =
 * log Σ_{i: y_i = k} exp c(zq, zs_i), so softmax(logits) = Σ_i a_i y_i = ŷ exactly and the softmax
 * cross-entropy of these logits is −log ŷ_y. No clipping of ŷ is needed: the class sums are
 * log-sum-exps, finite (and with a non-zero gradient) however far a query is from its class, where
 * log(clip(ŷ)) would be flat.
 */
export function attentionLogits(zq: tf.Tensor2D, zs: tf.Tensor2D, onehot: tf.Tensor2D, distance: MatchingOptions["distance"]): tf.Tensor2D {
  const sim =
    distance === "cosine"
      ? tf.matMul(unit(zq), unit(zs), false, true)
      : // −‖q − s‖² from the difference itself (no ‖q‖² − 2q·s + ‖s‖² cancellation).
        tf.neg(tf.sum(tf.square(tf.sub(tf.expandDims(zq, 1), tf.expandDims(zs, 0))), -1));
  // 0 where support example i is of class k, −1e30 elsewhere: exp underflows to exactly 0 there, and
  // every class has a support example, so each log-sum-exp has a finite maximum.
  const mask = tf.mul(tf.sub(tf.transpose(onehot), 1), 1e30); // [ways, ns]
  return tf.logSumExp(tf.add(tf.expandDims(sim, 1), tf.expandDims(mask, 0)), -1) as tf.Tensor2D; // [nq, ways]
}

/** Name of a Full Context Embedding parameter: `learner/fce/<lstm>/<kernel|bias>`. */
export const fceKey = (lstm: "fwd" | "bwd" | "att", part: "kernel" | "bias"): string => `${LEARNER_PARAM_PREFIX}fce/${lstm}/${part}`;

/** One LSTM step with the gates from one matMul: [x, h] W + b → input, forget, output, candidate. */
function lstmStep(p: Params, lstm: "fwd" | "bwd" | "att", x: tf.Tensor2D, h: tf.Tensor2D, c: tf.Tensor2D): [tf.Tensor2D, tf.Tensor2D] {
  const z = tf.add(tf.matMul(tf.concat([x, h], 1), p[fceKey(lstm, "kernel")] as tf.Tensor2D), p[fceKey(lstm, "bias")]!);
  const [i, f, o, g] = tf.split(z, 4, 1) as tf.Tensor2D[];
  const next: tf.Tensor2D = tf.add(tf.mul(tf.sigmoid(f!), c), tf.mul(tf.sigmoid(i!), tf.tanh(g!)));
  return [tf.mul(tf.sigmoid(o!), tf.tanh(next)), next];
}

/** g(x_i, S) = h→_i + h←_i + g′(x_i): a bidirectional LSTM over the support set in its order, plus a skip (eq. in A.2). */
export function contextSupport(p: Params, zs: tf.Tensor2D): tf.Tensor2D {
  const rows = tf.split(zs, zs.shape[0], 0) as tf.Tensor2D[];
  const pass = (lstm: "fwd" | "bwd", order: number[]): tf.Tensor2D[] => {
    let h = tf.zerosLike(rows[0]!);
    let c = h;
    const out: tf.Tensor2D[] = [];
    for (const i of order) {
      [h, c] = lstmStep(p, lstm, rows[i]!, h, c);
      out[i] = h;
    }
    return out;
  };
  const order = rows.map((_, i) => i);
  return tf.addN([zs, tf.concat(pass("fwd", order), 0), tf.concat(pass("bwd", [...order].reverse()), 0)]) as tf.Tensor2D;
}

/**
 * f(x̂, S) = h_K of K read steps (eqs. in A.1): r = Σ_i softmax_i(h_{k−1}·g(x_i)) g(x_i);
 * ĥ_k, c_k = LSTM(f′(x̂), [h_{k−1}, r], c_{k−1}); h_k = ĥ_k + f′(x̂). h_0 = c_0 = 0 (the paper names
 * no start), so the first read is the mean of g over the support set. All queries step together.
 */
export function contextQuery(p: Params, zq: tf.Tensor2D, gs: tf.Tensor2D, steps: number): tf.Tensor2D {
  let h = tf.zerosLike(zq);
  let c = h;
  for (let k = 0; k < steps; k++) {
    const r = tf.matMul(tf.softmax(tf.matMul(h, gs, false, true)), gs);
    const [hh, cc] = lstmStep(p, "att", zq, tf.concat([h, r], 1) as tf.Tensor2D, c);
    h = tf.add(hh, zq);
    c = cc;
  }
  return h;
}

/** The query logits of an episode: support and query embedded in one batch, as protonet does (batch norm sees both). */
export function matchingLogits(model: Model, p: Params, e: Episode, rule: MatchingRule): tf.Tensor2D {
  const ns = e.support.x.shape[0]!;
  const z = model.forward(p, tf.concat([e.support.x, e.query.x], 0)) as tf.Tensor2D;
  let zs = tf.slice(z, [0, 0], [ns, -1]);
  let zq = tf.slice(z, [ns, 0], [-1, -1]);
  if (rule.fce) {
    zs = contextSupport(p, zs);
    zq = contextQuery(p, zq, zs, rule.fceSteps);
  }
  return attentionLogits(zq, zs, e.support.y as tf.Tensor2D, rule.distance);
}

export const matchingEpisode = (model: Model, rule: MatchingRule): EpisodeFn => noInnerLoopEpisode((p, e, readout) => queryLossOf(e, matchingLogits(model, p, e, rule), readout));

/** The model's parameters, plus with `fce` the three LSTMs' at U(±1/√d) (PyTorch's LSTM default), d the embedding width. */
function init(s: LearnerSetup<MatchingOptions>, seed: number): Params {
  const theta = s.model.init(seed);
  if (!s.hyper.fce) return theta;
  const d = s.model.outputs;
  const rng = new Rng(deriveSeed(seed, 0x3a7c));
  const out: Params = { ...theta };
  // Inputs [x, state]: x is d wide; the support LSTMs' state is h (d), the attention LSTM's [h, r] (2d).
  for (const [lstm, inputs] of [["fwd", 2 * d], ["bwd", 2 * d], ["att", 3 * d]] as const) {
    out[fceKey(lstm, "kernel")] = uniformTensor(rng, [inputs, 4 * d], 1 / Math.sqrt(d));
    out[fceKey(lstm, "bias")] = uniformTensor(rng, [4 * d], 1 / Math.sqrt(d));
  }
  return out;
}

export const matching = defineLearner<MatchingOptions>({
  name: "matching",
  title: "Matching networks (Vinyals et al. 2016)",
  summary: "gradient of the episode's query loss −log ŷ, ŷ = attention over the support labels (softmax of cosine or −‖f(x̂) − g(x)‖² similarities; FCE LSTMs with fce); Adam (metaLr)",
  options,
  needs: { secondOrder: false, taskKinds: ["classification"], taskBatching: false, embedding: true },
  // Not protonet's "model+adam": with fce the meta-parameters hold the LSTMs too.
  stateLayout: "model+matching+adam",
  pins: ["fce"],
  trainTask: episodicTrainTask,
  init,
  outer: () => adam(),
  shardRunner: (s) => episodeRunner(s, matchingEpisode(s.model, s.hyper), false),
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, withoutAdaptation((p, e) => matchingLogits(s.model, p, e, s.hyper)), { batchable: false }),
  presets: (
    [
      ["5w1s", 5, 1, "98.1", "92.0", "98.3"],
      ["5w5s", 5, 5, "98.9", "93.2", "99.8"],
      ["20w1s", 20, 1, "93.8", "75.6", "92.8"],
      ["20w5s", 20, 5, "98.5", "77.8", "97.8"],
    ] as const
  ).map(([tag, ways, shots, paper, cosine, euclidean]) => ({
    name: `omniglot-${tag}-matching`,
    description: `Omniglot ${ways}-way ${shots}-shot, Matching networks, Conv4-64 embedding (max-pool, batch norm), cosine attention`,
    source: `Vinyals et al. 2016, §4.1.1 and Table 1: Conv4-64 embedding, cosine attention, no FCE [unverified], training episodes as the test's (paper: ${paper}%). Departs: the paper names no optimizer or schedule here, so Adam 1e-3 on one episode per update for 20,000 episodes, 15 queries per class and 1,000 test episodes are this preset's; reproductions report ${cosine}% with cosine and ${euclidean}% with distance "euclidean"`,
    config: {
      algorithm: "matching",
      task: { family: "omniglot", split: "vinyals", ways, shots, queryShots: 15 },
      ...CONV4_EPISODIC_RUN,
      matching: { distance: "cosine", fce: false },
    },
  })),
});
