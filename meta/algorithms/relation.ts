// Relation networks (Sung et al. 2018): an embedding f and a relation module g; each class's
// feature map is the sum of f over its support examples (§3.2, K-shot), each query's map is
// concatenated with each class's, and g scores the pair in (0, 1) (eq. 1); the loss is the MSE to
// the one-hot targets (eq. 2). Each episode contributes the gradient of that loss; Adam applies the
// mean, clipped per network and halved every lrHalvingEvery episodes. No inner loop: test time is
// the argmax score.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { InvalidRunConfigError } from "../../contracts/config.js";
import { evaluateWith, withoutAdaptation } from "../evaluate.js";
import { accuracy } from "../losses.js";
import type { Model } from "../models.js";
import type { RelationModules, RelationNetModel } from "../models/relation-net.js";
import { adam } from "../optimizers.js";
import type { Params } from "../params.js";
import { episodicTrainOptions, episodicTrainTask, noInnerLoopEpisode, type Episode, type EpisodeFn } from "./episodes.js";
import { defineLearner } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  ...episodicTrainOptions,
  lrHalvingEvery: z.number().int().min(0).default(100_000).describe("Halve the meta learning rate every N episodes (the reference code's StepLR: 100,000); 0 keeps it."),
  clipNorm: z.number().min(0).default(0.5).describe("Cap the L2 norm of each network's mean gradient (embedding, relation module) at this, after the shards are summed (the reference code: 0.5); 0 turns clipping off."),
});
export type RelationOptions = z.infer<typeof options>;

/** The model's relation modules, or a config error naming the model kind to use. */
export function relationOf(model: Model): RelationModules {
  const rel = (model as Partial<RelationNetModel>).relation;
  if (!rel) throw new InvalidRunConfigError([`model.kind: relation needs a model with a relation module; ${model.name} has none — use relation-net`]);
  return rel;
}

/**
 * Relation scores [nq, ways]: entry (i, j) is g([c_j, f(x_i)]) for query i and class j, where c_j
 * sums f over class j's support examples (the one-hot rows of the support labels pick them) and the
 * pair is the class's map then the query's along the channels, as the reference code concatenates.
 * Support and query are embedded in two batches, as the reference does (batch norm sees each apart).
 */
export function relationScores(rel: RelationModules, p: Params, e: Episode): tf.Tensor2D {
  const fs = rel.embed(p, e.support.x);
  const fq = rel.embed(p, e.query.x);
  const [ns, h, w, c] = fs.shape;
  const nq = fq.shape[0];
  const onehot = e.support.y as tf.Tensor2D; // [ns, ways]
  const ways = onehot.shape[1];
  const classes = tf.matMul(onehot, tf.reshape(fs, [ns, h * w * c]), true, false); // [ways, hwc]
  // Rank-3 tiles (tfjs has no gradient for tiling rank 5): row i·ways + j pairs query i with class j.
  const left = tf.reshape(tf.tile(tf.expandDims(classes, 0), [nq, 1, 1]), [nq * ways, h, w, c]);
  const right = tf.reshape(tf.tile(tf.reshape(fq, [nq, 1, h * w * c]), [1, ways, 1]), [nq * ways, h, w, c]);
  return tf.reshape(rel.relate(p, tf.concat([left, right], 3) as tf.Tensor4D), [nq, ways]);
}

/** The episode's loss: the mean over all nq × ways scores of (score − one-hot)², as nn.MSELoss. */
export function relationLoss(scores: tf.Tensor2D, onehot: tf.Tensor): tf.Scalar {
  return tf.mean(tf.squaredDifference(scores, onehot));
}

export const relationEpisode = (rel: RelationModules): EpisodeFn =>
  noInnerLoopEpisode((p, e, readout) => {
    const scores = relationScores(rel, p, e);
    const loss = relationLoss(scores, e.query.y);
    readout.loss = [loss.dataSync()[0]!];
    readout.accuracy = Array.from(accuracy(scores, e.query.labels!).dataSync());
    return loss;
  });

/**
 * Test time: the argmax relation score, the same at every step count asked for. It records log
 * scores: the same argmax, and the evaluation's softmax cross-entropy then reads as
 * −log(s_y / Σ_j s_j), the true class's share of the scores (the training MSE is not reported here).
 */
const highestRelation = (rel: RelationModules) => withoutAdaptation((p, e) => tf.log(relationScores(rel, p, e)));

export const relation = defineLearner<RelationOptions>({
  name: "relation",
  title: "Relation networks (Sung et al. 2018)",
  summary: "gradient of the episode's MSE between relation scores g([Σ_support f, f(x)]) ∈ (0, 1) and the one-hot labels; Adam (metaLr) on the mean, each network's gradient norm clipped at clipNorm, halved every lrHalvingEvery episodes",
  options,
  needs: { secondOrder: false, taskKinds: ["classification"], taskBatching: false, embedding: true, modelKinds: ["relation-net"] },
  stateLayout: "model+adam",
  pins: [],
  trainTask: episodicTrainTask,
  init(s, seed) {
    relationOf(s.model);
    return s.model.init(seed);
  },
  outer: (s) =>
    adam({
      ...(s.hyper.lrHalvingEvery > 0 ? { decay: { every: s.hyper.lrHalvingEvery, factor: 0.5 } } : {}),
      ...(s.hyper.clipNorm > 0 ? { clipNorm: { max: s.hyper.clipNorm, groups: relationOf(s.model).groups } } : {}),
    }),
  shardRunner: (s) => episodeRunner(s, relationEpisode(relationOf(s.model)), false),
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, highestRelation(relationOf(s.model)), { batchable: false }),
  presets: (
    [
      ["5w1s", 5, 1, 19, "99.6 ± 0.2"],
      ["5w5s", 5, 5, 15, "99.8 ± 0.1"],
      ["20w1s", 20, 1, 10, "97.6 ± 0.2"],
      ["20w5s", 20, 5, 5, "99.1 ± 0.1"],
    ] as const
  ).map(([tag, ways, shots, queries, paper]) => ({
    name: `omniglot-${tag}-relation`,
    description: `Omniglot ${ways}-way ${shots}-shot, Relation networks (embedding and relation module, batch norm)`,
    source:
      `Sung et al. 2018, §4.1 and Table 1 (paper: ${paper}%), hyperparameters of the reference code floodsung/LearningToCompare_FSL: ` +
      `training episodes ${ways}-way ${shots}-shot with ${queries} queries per class, Adam 1e-3 halved every 100,000 episodes, gradient norm clipped at 0.5 per network, ` +
      `MSE to one-hot, 1,000,000 episodes, test episodes of ${shots} quer${shots === 1 ? "y" : "ies"} per class with batch statistics. ` +
      "Departures: rotations by 90° are extra classes of the Vinyals split (the reference rotates each episode as a whole), " +
      "the last iteration is kept (the reference keeps the best test accuracy), the evaluation loss is the cross-entropy of the normalised scores",
    config: {
      algorithm: "relation",
      task: { family: "omniglot", split: "vinyals", ways, shots, queryShots: shots },
      model: { kind: "relation-net", filters: 64, hidden: 8 },
      metaLr: 0.001,
      metaBatchSize: 1,
      shardSize: 1,
      iterations: 1_000_000,
      evalSteps: 0,
      evalTasks: 1000,
      evalEvery: 5000,
      checkpointEvery: 100,
      relation: { trainQueryShots: queries, lrHalvingEvery: 100_000, clipNorm: 0.5 },
    },
  })),
});
