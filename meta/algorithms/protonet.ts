// Prototypical networks (Snell et al. 2017): an embedding f; each class's prototype is the mean
// embedding of its support examples (eq. 1); a query is classified by a softmax over negative squared
// Euclidean distances to the prototypes (eq. 2). Each episode contributes the gradient of its query
// loss; Adam applies the mean, its rate halved every 2,000 episodes. No inner loop at all.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, withoutAdaptation } from "../evaluate.js";
import type { Model } from "../models.js";
import { adam } from "../optimizers.js";
import type { Params } from "../params.js";
import { CONV4_EPISODIC_RUN, episodicTrainOptions, episodicTrainTask, noInnerLoopEpisode, queryLossOf, type Episode, type EpisodeFn } from "./episodes.js";
import { defineLearner } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  ...episodicTrainOptions,
  lrHalvingEvery: z.number().int().min(0).default(2000).describe("Halve the meta learning rate every N episodes (the paper: 2,000); 0 keeps it."),
});
export type ProtonetOptions = z.infer<typeof options>;

/**
 * Query logits −‖f(x_q) − c_k‖² for prototypes c_k = mean of f over class k's support examples.
 * Support and query are embedded in one batch, as the reference code does (its batch norm then
 * sees both). Class k's prototype averages the one-hot rows of the support labels.
 */
export function prototypeLogits(model: Model, p: Params, e: Episode): tf.Tensor2D {
  const ns = e.support.x.shape[0]!;
  const z = model.forward(p, tf.concat([e.support.x, e.query.x], 0)) as tf.Tensor2D;
  const zs = tf.slice(z, [0, 0], [ns, -1]);
  const zq = tf.slice(z, [ns, 0], [-1, -1]);
  const onehot = e.support.y as tf.Tensor2D; // [ns, ways]
  const protos = tf.div(tf.matMul(onehot, zs, true, false), tf.expandDims(tf.sum(onehot, 0), 1)); // [ways, d]
  // ‖q − c‖² summed from the difference itself (no ‖q‖² − 2q·c + ‖c‖² cancellation).
  return tf.neg(tf.sum(tf.square(tf.sub(tf.expandDims(zq, 1), tf.expandDims(protos, 0))), -1)) as tf.Tensor2D;
}

export const protonetEpisode = (model: Model): EpisodeFn => noInnerLoopEpisode((p, e, readout) => queryLossOf(e, prototypeLogits(model, p, e), readout));

export const protonet = defineLearner<ProtonetOptions>({
  name: "protonet",
  title: "Prototypical networks (Snell et al. 2017)",
  summary: "gradient of the episode's query loss under a softmax over −‖f(x) − prototype‖² (prototypes = class means of the support embeddings); Adam (metaLr) halved every lrHalvingEvery episodes",
  options,
  needs: { secondOrder: false, taskKinds: ["classification"], taskBatching: false, embedding: true },
  stateLayout: "model+adam",
  pins: [],
  trainTask: episodicTrainTask,
  init: (s, seed) => s.model.init(seed),
  outer: (s) => adam(s.hyper.lrHalvingEvery > 0 ? { decay: { every: s.hyper.lrHalvingEvery, factor: 0.5 } } : {}),
  shardRunner: (s) => episodeRunner(s, protonetEpisode(s.model), false),
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, withoutAdaptation((p, e) => prototypeLogits(s.model, p, e)), { batchable: false }),
  presets: (
    [
      ["5w1s", 5, 1, "98.8"],
      ["5w5s", 5, 5, "99.7"],
      ["20w1s", 20, 1, "96.0"],
      ["20w5s", 20, 5, "98.9"],
    ] as const
  ).map(([tag, ways, shots, paper]) => ({
    name: `omniglot-${tag}-protonet`,
    description: `Omniglot ${ways}-way ${shots}-shot, Prototypical networks, Conv4-64 embedding (max-pool, batch norm)`,
    source: `Snell et al. 2017, §3.1 and Table 1: Conv4-64 embedding, squared Euclidean distance, training episodes of 60 classes with ${shots} shot(s) and 5 queries each, Adam 1e-3 halved every 2,000 episodes (paper: ${paper}%; reproductions ${{ "5w1s": "98.2", "5w5s": "99.4", "20w1s": "95.8", "20w5s": "98.6" }[tag]}%)`,
    config: {
      algorithm: "protonet",
      task: { family: "omniglot", split: "vinyals", ways, shots, queryShots: 15 },
      ...CONV4_EPISODIC_RUN,
      protonet: { trainWays: 60, trainShots: shots, trainQueryShots: 5, lrHalvingEvery: 2000 },
    },
  })),
});
