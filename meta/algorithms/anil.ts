// ANIL (Raghu et al. 2019, "Almost No Inner Loop"): MAML whose inner loop adapts only the head. The
// body's features are computed once per task; the head takes innerSteps SGD steps on them; each task
// contributes the gradient of its query loss with respect to body and head; Adam applies the mean.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { evaluateWith, type AdaptAndMeasure } from "../evaluate.js";
import { registerHigherOrderGradients } from "../gradients.js";
import { taskLoss } from "../losses.js";
import type { ModelSplit } from "../models.js";
import { adam } from "../optimizers.js";
import { fromList, names, pick, type Params } from "../params.js";
import { abortableSteps, queryLossOf, sgdStep, taskMetrics, tileParams, type Episode, type EpisodeFn, type QueryReadout } from "./episodes.js";
import { defineLearner, type LearnerSetup } from "./learner.js";
import { episodeRunner } from "./maml.js";

const options = z.object({
  firstOrder: z.boolean().default(false).describe("Treat the adapted head as a constant in the outer gradient (first-order ANIL); default: differentiate through the head's inner steps."),
});
export type AnilOptions = z.infer<typeof options>;

/**
 * The split as an episode uses it: one task (the model's body and head), or a task-batched episode
 * (the body once over all tasks' examples with shared weights, each task's head on a task axis).
 */
interface SplitView {
  body(p: Params, x: tf.Tensor): tf.Tensor;
  head(h: Params, features: tf.Tensor): tf.Tensor;
  /** θ's head as this episode's head takes it: itself, or tiled to [T, ...]. */
  heads(p: Params): Params;
  /** Per-task head gradients summed over the task axis (identity for one task). */
  reduce(g: Params): Params;
}

function viewOf(split: ModelSplit, e: Episode): SplitView {
  const heads = (p: Params) => pick(p, split.headKeys);
  if (!e.batched) return { body: split.body, head: split.head, heads, reduce: (g) => g };
  if (!split.bodyBatched || !split.headBatched) throw new Error("anil: a task-batched episode needs a model split with bodyBatched and headBatched");
  return {
    body: split.bodyBatched,
    head: split.headBatched,
    heads: (p) => tileParams(heads(p), e.count),
    reduce: (g) => {
      const out: Params = { ...g };
      for (const k of split.headKeys) out[k] = tf.sum(g[k]!, 0);
      return out;
    },
  };
}

/** `steps` SGD steps of the head on fixed features (calls `each` after every step; stops when it answers false). */
function adaptHead(split: ModelSplit, view: SplitView, e: Episode, p: Params, features: tf.Tensor, lr: number, steps: number, each: (i: number, head: Params) => boolean): Params {
  let head = view.heads(p);
  // With a task axis the loss sums per-task means, so each task's head gets its own gradient.
  const lossOf = (h: Params) => taskLoss(e.kind, view.head(h, features), e.support.y);
  for (let i = 0; i < steps; i++) {
    head = sgdStep(split.headKeys, head, lossOf, lr);
    if (!each(i, head)) break;
  }
  return head;
}

export function anilEpisode(split: ModelSplit, innerSteps: number, innerLr: number, firstOrder: boolean): EpisodeFn {
  return (e, theta, firstTask, hooks) => {
    const keys = names(theta);
    const view = viewOf(split, e);
    const steps = abortableSteps(hooks, firstTask);
    const pre: QueryReadout = { loss: [], accuracy: [] };
    const post: QueryReadout = { loss: [], accuracy: [] };
    // The query features are the body's at θ before and after adaptation (only the head adapts), so
    // each tape below computes them once and reads the "before" metrics from them too: the body's
    // forward over the query set is most of an episode. The "before" ops are taped but do not lead
    // to the loss differentiated, so they add nothing to the gradient.
    let result: Params;
    if (!firstOrder) {
      // Second order: the query loss through the head's steps and through the body's features.
      // The body's weights are shared by the episode's tasks, so their gradient is already the sum.
      const f = (...vals: tf.Tensor[]) => {
        const p = fromList(keys, vals);
        const fq = view.body(p, e.query.x);
        queryLossOf(e, view.head(view.heads(p), fq), pre);
        const head = adaptHead(split, view, e, p, view.body(p, e.support.x), innerLr, innerSteps, (i) => steps.step(i));
        return queryLossOf(e, view.head(head, fq), post);
      };
      result = fromList(keys, tf.grads(f)(keys.map((k) => theta[k]!)));
      steps.rethrow();
    } else {
      const head = adaptHead(split, view, e, theta, view.body(theta, e.support.x), innerLr, innerSteps, (i) => steps.step(i));
      steps.rethrow();
      // First order: the gradient at (body θ, adapted head φ) with φ a leaf of its own.
      const at = { ...theta, ...head };
      const g = tf.grads((...vals: tf.Tensor[]) => {
        const p = fromList(keys, vals);
        const fq = view.body(p, e.query.x);
        queryLossOf(e, view.head(view.heads(theta), fq), pre);
        return queryLossOf(e, view.head(pick(p, split.headKeys), fq), post);
      })(keys.map((k) => at[k]!));
      result = view.reduce(fromList(keys, g));
    }
    return { result, metrics: taskMetrics(e, pre, post) };
  };
}

/** Test time: features once, then SGD on the head alone. */
function anilAdaptation(split: ModelSplit, lr: number): AdaptAndMeasure {
  return (e, params, wanted, record) => {
    const view = viewOf(split, e);
    const fq = view.body(params, e.query.x);
    if (wanted.includes(0)) record(0, view.head(view.heads(params), fq));
    const maxSteps = wanted[wanted.length - 1] ?? 0;
    adaptHead(split, view, e, params, view.body(params, e.support.x), lr, maxSteps, (i, head) => {
      if (wanted.includes(i + 1)) record(i + 1, view.head(head, fq));
      return true;
    });
  };
}

/** Whether the split has task-batched forms (the MLP's does; Conv4's not yet). */
const batchesTasks = (split: ModelSplit): boolean => split.bodyBatched !== undefined && split.headBatched !== undefined;

const splitOf = (s: LearnerSetup<AnilOptions>): ModelSplit => {
  if (!s.model.split) throw new Error(`anil needs a model with a body/head split; ${s.model.name} has none`);
  return s.model.split;
};

export const anil = defineLearner<AnilOptions>({
  name: "anil",
  title: "ANIL (Raghu et al. 2019)",
  summary: "MAML's meta-gradient with only the head adapted (innerSteps SGD steps on features computed once per task); Adam (metaLr) on the mean",
  options,
  needs: { secondOrder: true, taskKinds: ["regression", "classification"], taskBatching: true, headSplit: true },
  stateLayout: "model+adam",
  pins: [],
  init: (s, seed) => s.model.init(seed),
  outer: () => adam(),
  shardRunner(s) {
    if (!s.hyper.firstOrder) registerHigherOrderGradients();
    const split = splitOf(s);
    return episodeRunner(s, anilEpisode(split, s.config.innerSteps, s.config.innerLr, s.hyper.firstOrder), batchesTasks(split));
  },
  evaluate: (s, params, o) => evaluateWith(s.model, s.test, params, o, anilAdaptation(splitOf(s), s.config.innerLr), { batchable: batchesTasks(splitOf(s)) }),
  presets: [
    {
      name: "omniglot-20w1s-anil-conv4",
      description: "Omniglot 20-way 1-shot, ANIL, Conv4 (stride 2, batch norm)",
      source: "Raghu et al. 2019, Table 2 with MAML's hyperparameters (Finn et al. A.1): 5 inner steps α = 0.1 on the head, meta-batch 16, Adam 1e-3 (paper: 96.2 ± 0.5%)",
      config: { algorithm: "anil", task: { family: "omniglot", split: "vinyals", ways: 20, shots: 1, queryShots: 5 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 5, innerLr: 0.1, metaLr: 0.001, metaBatchSize: 16, shardSize: 2, iterations: 60000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
    {
      name: "omniglot-20w5s-anil-conv4",
      description: "Omniglot 20-way 5-shot, ANIL, Conv4 (stride 2, batch norm)",
      source: "Raghu et al. 2019, Table 2 with MAML's hyperparameters: 5 inner steps α = 0.1 on the head, meta-batch 16, Adam 1e-3 (paper: 98.0 ± 0.3%)",
      config: { algorithm: "anil", task: { family: "omniglot", split: "vinyals", ways: 20, shots: 5, queryShots: 5 }, model: { kind: "conv4", downsample: "stride", batchNorm: true, filters: 64 }, innerSteps: 5, innerLr: 0.1, metaLr: 0.001, metaBatchSize: 16, shardSize: 2, iterations: 60000, evalSteps: 5, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
    {
      name: "omniglot-5w1s-anil-mlp",
      description: "Omniglot 5-way 1-shot, ANIL, MLP 784-256-128-64-64-5 with batch norm",
      source: "ANIL on MAML's Omniglot MLP with MAML's 5-way hyperparameters (not a configuration the paper reports): one head step α = 0.4, meta-batch 32, Adam 1e-3, 3 steps at test",
      config: { algorithm: "anil", task: { family: "omniglot", split: "vinyals", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "omniglot-mlp", batchNorm: true }, innerSteps: 1, innerLr: 0.4, metaLr: 0.001, metaBatchSize: 32, shardSize: 8, iterations: 60000, evalSteps: 3, evalTasks: 600, evalEvery: 1000, checkpointEvery: 100 },
    },
  ],
});
