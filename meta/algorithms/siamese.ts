// Convolutional siamese networks (Koch et al. 2015): an embedding f shared by both twins; a pair
// (x1, x2) scores p = σ(Σ_k α_k |f(x1)_k − f(x2)_k| + b) (§3.2, the weighted L1 distance into one
// sigmoid unit), trained by binary cross-entropy on same/different pairs (§3.2, eq. 1); one-shot,
// a query takes the class of its most similar support image (§4.2). Each episode contributes the
// gradient of its pair loss; Adam applies the mean. No inner loop: first-order by nature.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, withoutAdaptation } from "../evaluate.js";
import { accuracy } from "../losses.js";
import type { Model } from "../models.js";
import { adam } from "../optimizers.js";
import { names, type Params } from "../params.js";
import { deriveSeed, Rng } from "../rng.js";
import { episodicTrainOptions, episodicTrainTask, noInnerLoopEpisode, type Episode, type EpisodeFn } from "./episodes.js";
import { defineLearner, LEARNER_PARAM_PREFIX, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  ...episodicTrainOptions,
  balancePairs: z
    .boolean()
    .default(true)
    .describe("Weigh same and different pairs equally: the loss is ½(mean over same pairs + mean over different pairs), as Koch et al.'s half-same minibatches are in expectation; false: the mean over all support × query pairs."),
  weightDecay: z.number().min(0).default(0).describe("L2 penalty λ·Σ w² on the kernels and α (Koch et al. eq. 1 tune one λ per layer in [0, 0.1] and do not publish them); default 0."),
});
export type SiameseOptions = z.infer<typeof options>;

/** The weighted-L1 head: learner-owned meta-parameters beside the embedding's, so any embedding model serves. */
export const ALPHA_KEY = `${LEARNER_PARAM_PREFIX}siamese/alpha`;
export const BIAS_KEY = `${LEARNER_PARAM_PREFIX}siamese/bias`;

/** Pair logits s_ij = Σ_k α_k |a_ik − b_jk| + b for rows a [n, d] and b [m, d]: [n, m] (σ(s) is Koch's p). */
export function weightedL1Logits(p: Params, a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const [n, d] = a.shape;
  const m = b.shape[0];
  const dist = tf.reshape(tf.abs(tf.sub(tf.expandDims(a, 1), tf.expandDims(b, 0))), [n * m, d]);
  return tf.add(tf.reshape(tf.matMul(dist, tf.reshape(p[ALPHA_KEY]!, [d, 1])), [n, m]), p[BIAS_KEY]!) as tf.Tensor2D;
}

/**
 * The logit of every (query i, support j) pair, [nq, ns]. Support and query are embedded in one
 * batch (as Prototypical networks here; a batch-norm embedding then sees both).
 */
export function pairLogits(model: Model, p: Params, e: Episode): tf.Tensor2D {
  const ns = e.support.x.shape[0]!;
  const z = model.forward(p, tf.concat([e.support.x, e.query.x], 0)) as tf.Tensor2D;
  return weightedL1Logits(p, tf.slice(z, [ns, 0], [-1, -1]), tf.slice(z, [0, 0], [ns, -1]));
}

/**
 * The pairs of an episode: every query with every support image — nothing sampled, so an episode
 * fixes its pairs — target 1 where their classes agree, and each pair's weight in the loss
 * (`balance`: ½ over the same pairs and ½ over the different ones, a side without pairs adding 0;
 * else 1/(nq·ns) each). Both [nq, ns].
 */
export function episodePairs(e: Episode, balance: boolean): { targets: tf.Tensor2D; weights: tf.Tensor2D } {
  const targets = tf.matMul(e.query.y as tf.Tensor2D, e.support.y as tf.Tensor2D, false, true) as tf.Tensor2D;
  const [nq, ns] = targets.shape;
  const total = nq * ns;
  if (!balance) return { targets, weights: tf.fill([nq, ns], 1 / total) as tf.Tensor2D };
  const same = tf.sum(targets);
  const half = (count: tf.Tensor) => tf.div(0.5, tf.maximum(count, 1));
  const weights = tf.add(tf.mul(targets, half(same)), tf.mul(tf.sub(1, targets), half(tf.sub(total, same))));
  return { targets, weights: weights as tf.Tensor2D };
}

/** Σ w_ij · BCE(σ(s_ij), t_ij), with BCE(σ(s), t) = softplus(s) − t·s (stable for any s). */
export function pairLoss(logits: tf.Tensor2D, pairs: { targets: tf.Tensor2D; weights: tf.Tensor2D }): tf.Scalar {
  return tf.sum(tf.mul(pairs.weights, tf.sub(tf.softplus(logits), tf.mul(pairs.targets, logits))));
}

/**
 * Koch et al.'s one-shot rule as class scores [nq, ways]: class k scores the best logit of its support
 * images, so the argmax is the class of the most similar support image (for K shots: the nearest of
 * them, not their mean). `supportOneHot` [ns, ways].
 */
export function mostSimilarScores(logits: tf.Tensor2D, supportOneHot: tf.Tensor2D): tf.Tensor2D {
  // Pairs of other classes are pushed to −1e30, below any logit; σ and the max are monotone.
  const mask = tf.mul(tf.sub(tf.expandDims(supportOneHot, 0), 1), 1e30);
  return tf.max(tf.add(tf.expandDims(logits, 2), mask), 1) as tf.Tensor2D;
}

const decayed = (k: string): boolean => k.endsWith("/kernel") || k === ALPHA_KEY;

export function siameseEpisode(model: Model, o: Pick<SiameseOptions, "balancePairs" | "weightDecay">): EpisodeFn {
  return (e, theta, firstTask, hooks) => {
    const pairs = episodePairs(e, o.balancePairs);
    return noInnerLoopEpisode((p, e, readout) => {
      const logits = pairLogits(model, p, e);
      const bce = pairLoss(logits, pairs);
      // Read inside the tape, as queryLossOf does: the loss reported is the pair BCE without the penalty.
      readout.loss = [bce.dataSync()[0]!];
      readout.accuracy = Array.from(accuracy(mostSimilarScores(logits, e.support.y as tf.Tensor2D), e.query.labels!).dataSync());
      if (o.weightDecay === 0) return bce;
      return tf.addN([bce, ...names(p).filter(decayed).map((k) => tf.mul(tf.sum(tf.square(p[k]!)), o.weightDecay))]) as tf.Scalar;
    })(e, theta, firstTask, hooks);
  };
}

/**
 * Test time: the most similar support image, the same at every step count asked for. The loss that
 * evaluation reports is the softmax cross-entropy of these class scores (every learner's measure),
 * not the pair BCE that training reports.
 */
const mostSimilar = (model: Model) => withoutAdaptation((p, e) => mostSimilarScores(pairLogits(model, p, e), e.support.y as tf.Tensor2D));

/** The embedding's parameters, then α and b drawn U(±1/√d) like a dense layer of d inputs and one unit. */
function init(s: LearnerSetup<SiameseOptions>, seed: number): Params {
  const d = s.model.outputs;
  const rng = new Rng(deriveSeed(seed, 0x51a3));
  const bound = 1 / Math.sqrt(d);
  const draw = (n: number) => tf.tensor1d(Float32Array.from({ length: n }, () => rng.uniform(-bound, bound)));
  return { ...s.model.init(seed), [ALPHA_KEY]: draw(d), [BIAS_KEY]: draw(1) };
}

/** Koch's training, the same for every test setting: 4-way episodes of 2 support and 4 query images a class, 8 × 16 = 128 pairs. */
const kochTraining = { trainWays: 4, trainShots: 2, trainQueryShots: 4 };
const kochDepartures =
  "Departs: Adam instead of SGD with per-layer rates and momentum tuned by Bayesian optimisation (unpublished; no such optimiser here), no affine distortions, no L2 (the per-layer λ are unpublished), U(±1/√fan_in) init instead of N(0, 0.01)/N(0.5, 0.01), pairs from 4-way episodes (8 × 16 = 128, Koch's minibatch, same and different weighed ½ each)";

export const siamese = defineLearner<SiameseOptions>({
  name: "siamese",
  title: "Convolutional siamese networks (Koch et al. 2015)",
  summary: "gradient of the binary cross-entropy of σ(Σ α|f(x_q) − f(x_s)| + b) over the episode's support × query pairs (same class = 1); one-shot by the most similar support image; Adam (metaLr)",
  options,
  needs: { secondOrder: false, taskKinds: ["classification"], taskBatching: false, embedding: true },
  stateLayout: "model+siamese-head+adam",
  pins: [],
  trainTask: episodicTrainTask,
  init,
  outer: () => adam(),
  shardRunner: (s) => episodeRunner(s, siameseEpisode(s.model, s.hyper), false),
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, mostSimilar(s.model), { batchable: false }),
  presets: [
    // First: the cheapest, which test/integration/learner-presets.test.ts runs.
    {
      name: "omniglot-5w1s-siamese-conv4",
      description: "Omniglot 5-way 1-shot, siamese network with a weighted-L1 head on the Conv4-64 embedding, 28×28",
      source: `Koch et al. 2015's loss and one-shot rule on the Vinyals protocol's 28×28 images and Conv4-64 embedding (Koch's own net needs at least 65×65: see omniglot-5w1s-siamese-koch); Adam 1e-3 as Snell et al. (Vinyals-protocol figure for Koch's net: 97.3%). ${kochDepartures}`,
      config: {
        algorithm: "siamese",
        task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 },
        model: { kind: "conv4-embedding", downsample: "maxpool", batchNorm: true, filters: 64 },
        metaLr: 0.001,
        metaBatchSize: 1,
        shardSize: 1,
        iterations: 20000,
        evalSteps: 0,
        evalTasks: 600,
        evalEvery: 1000,
        checkpointEvery: 100,
        siamese: kochTraining,
      },
    },
    ...(
      [
        ["5w1s", 5, 15, "97.3"],
        ["20w1s", 20, 5, "88.2"],
      ] as const
    ).map(([tag, ways, queryShots, vinyals]) => ({
      name: `omniglot-${tag}-siamese-koch`,
      description: `Omniglot ${ways}-way 1-shot, Koch et al.'s siamese network (105×105, 4 convs, dense 4096 sigmoid, weighted-L1 head)`,
      source: `Koch et al. 2015, §3 and Fig. 4: 105×105 inputs, conv 64@10×10, 128@7×7, 128@4×4, 256@4×4 with max-pools, dense 4096 sigmoid, weighted L1 → sigmoid, binary cross-entropy, one-shot by the most similar support image; here on the Vinyals split with rotations (figure on that protocol: ${vinyals}%; Koch's own: 92.0% 20-way within-alphabet, Lake's protocol). Adam 1e-4, the low end of Koch's rate range. ${kochDepartures}`,
      config: {
        algorithm: "siamese",
        task: { family: "omniglot", split: "vinyals", resolution: 105, ways, shots: 1, queryShots },
        model: { kind: "koch-siamese", filters: 64, features: 4096 },
        metaLr: 0.0001,
        metaBatchSize: 1,
        shardSize: 1,
        iterations: 50000,
        evalSteps: 0,
        evalTasks: 600,
        evalEvery: 1000,
        checkpointEvery: 100,
        siamese: kochTraining,
      },
    })),
  ],
});
