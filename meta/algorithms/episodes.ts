// What the learners share below their own math: a shard's tasks as episodes (one task, or all of
// them stacked on a task axis), the SGD step, query metrics read inside the tape, cancellation that
// never unwinds through tf.grads, and the shard sum folded in task order.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import type { Model } from "../models.js";
import { addScaled, dispose, fromList, names, sub, type Params } from "../params.js";
import { accuracy, disposeExamples, stackExamples, taskLoss, taskLosses, toTensors, type ExampleTensors } from "../losses.js";
import type { Task, TaskKind } from "../tasks/types.js";
import { factorInputKernel, factoredKernelIn, factoringPays } from "./factored-episode.js";
import type { Episode, ShardHooks, ShardResult, TaskMetrics } from "./types.js";

/**
 * Options every episodic (metric) learner has: its training episodes may differ from the test
 * episodes `config.task` describes (Snell et al. train Omniglot on 60-way episodes, test on 5 or 20).
 */
export const episodicTrainOptions = {
  trainWays: z.number().int().min(2).optional().describe("Classes per training episode (Snell et al. on Omniglot: 60); default `task.ways`, the test episodes' ways."),
  trainShots: z.number().int().min(1).optional().describe("Support examples per class in training episodes; default `task.shots`."),
  trainQueryShots: z.number().int().min(1).optional().describe("Query examples per class in training episodes (Snell et al.: 5 on Omniglot); default `task.queryShots`."),
};
export type EpisodicTrainOptions = { trainWays?: number; trainShots?: number; trainQueryShots?: number };

/** A learner's `trainTask` for the options above: only what is set overrides `config.task`. */
export function episodicTrainTask(config: { task: object }, hyper: EpisodicTrainOptions): { ways?: number; shots?: number; queryShots?: number } {
  const hasWays = (config.task as { ways?: number }).ways !== undefined;
  return {
    ...(hyper.trainWays !== undefined && hasWays ? { ways: hyper.trainWays } : {}),
    ...(hyper.trainShots !== undefined ? { shots: hyper.trainShots } : {}),
    ...(hyper.trainQueryShots !== undefined ? { queryShots: hyper.trainQueryShots } : {}),
  };
}

/**
 * The run settings Prototypical and Matching networks' Omniglot presets share: a Conv4-64 embedding
 * (max-pool, batch norm), one episode per Adam step at 1e-3, 1,000 test episodes every 1,000.
 */
export const CONV4_EPISODIC_RUN = {
  model: { kind: "conv4-embedding", downsample: "maxpool", batchNorm: true, filters: 64 },
  metaLr: 0.001,
  metaBatchSize: 1,
  shardSize: 1,
  iterations: 20000,
  evalSteps: 0,
  evalTasks: 1000,
  evalEvery: 1000,
  checkpointEvery: 100,
} as const;

/** A unit of work (meta/algorithms/types.ts): one task, or all tasks of a shard on a task axis. */
export type { Episode };

function single(task: Task, model: Model, kind: TaskKind, classes: number): Episode {
  const e: Episode = {
    count: 1,
    batched: false,
    kind,
    support: toTensors(task.support, kind, classes),
    query: toTensors(task.query, kind, classes),
    expand: (t) => t,
    forward: (p, x) => model.forward(p, x),
    reduce: (p) => p,
    delta: (phi, theta) => sub(phi, theta),
    step: (keys, phi, lr) => sgdStep(keys, phi, supportLoss(e), lr),
    tasks: [task],
  };
  return e;
}

/** θ tiled to [T, ...] for a task-batched forward. */
export function tileParams(theta: Params, T: number): Params {
  const p: Params = {};
  for (const k of names(theta)) {
    const t = theta[k]!;
    p[k] = tf.tile(tf.expandDims(t, 0), [T, ...t.shape.map(() => 1)]);
  }
  return p;
}

function batched(tasks: readonly Task[], model: Model, kind: TaskKind, classes: number): Episode {
  const T = tasks.length;
  const e: Episode = {
    count: T,
    batched: true,
    kind,
    support: stackExamples(tasks.map((t) => t.support), kind, classes),
    query: stackExamples(tasks.map((t) => t.query), kind, classes),
    expand: (theta) => tileParams(theta, T),
    forward: (p, x) => model.forwardBatched!(p, x),
    reduce: (p) => {
      const out: Params = {};
      for (const k of names(p)) out[k] = tf.sum(p[k]!, 0);
      return out;
    },
    delta: (phi, theta) => e.reduce(sub(phi, theta)),
    step: (keys, phi, lr) => sgdStep(keys, phi, supportLoss(e), lr),
    tasks,
  };
  return e;
}

/**
 * Episode of a task list: batched over a task axis, or the single task (tasks.length must be 1).
 * `classes`: the width of one-hot targets — the task family's ways (default the model's outputs,
 * which is the same for a classifier; an embedding's outputs are its features). `factorInput`:
 * the caller adapts only by `e.step` (plain SGD on the whole support set), so a batched episode may
 * keep the model's input kernel shared and factor each task's change to it, where that pays
 * (meta/algorithms/factored-episode.ts).
 */
export function episodeOf(tasks: readonly Task[], model: Model, kind: TaskKind, asBatch: boolean, classes = model.outputs, factorInput = false): Episode {
  if (asBatch) {
    const e = batched(tasks, model, kind, classes);
    return factorInput && factoringPays(model, e.support.x.shape[1]!) ? factorInputKernel(e, model) : e;
  }
  if (tasks.length !== 1) throw new Error(`an unbatched episode holds one task, got ${tasks.length}`);
  return single(tasks[0]!, model, kind, classes);
}

/** Free an episode's example tensors. */
export function disposeEpisode(e: Episode): void {
  disposeExamples(e.support);
  disposeExamples(e.query);
  if (e.owned) tf.dispose(e.owned);
}

/** Whether a shard runs batched: asked for, allowed by the learner, and possible for the model. */
export function canBatch(model: Model, requested: boolean, learnerAllows: boolean): boolean {
  return requested && learnerAllows && model.forwardBatched !== undefined;
}

/** One SGD step φ ← φ − α∇L(φ) over the names in `keys` (Finn et al. eq. 1); other entries pass through. */
export function sgdStep(keys: readonly string[], phi: Params, lossOf: (p: Params) => tf.Scalar, lr: number): Params {
  const factored = factoredKernelIn(phi, keys);
  if (factored) throw new Error(`sgdStep: '${factored}' is shared across this episode's tasks, with each task's change factored; step it with the episode's own step (e.step)`);
  const g = tf.grads((...vals: tf.Tensor[]) => lossOf({ ...phi, ...fromList(keys, vals) }))(keys.map((k) => phi[k]!));
  return { ...phi, ...addScaled(fromList(keys, keys.map((k) => phi[k]!)), fromList(keys, g), -lr) };
}

/** The support loss of an episode under parameters p. */
export const supportLoss = (e: Episode) => (p: Params): tf.Scalar => taskLoss(e.kind, e.forward(p, e.support.x), e.support.y);

/** Per-task query loss (and accuracy) read synchronously, so nothing has to outlive a gradient tape. */
export interface QueryReadout {
  loss: number[];
  accuracy: number[];
}

/** The summed query loss of `p` (to differentiate), recording per-task values in `into`. */
export function queryLoss(e: Episode, p: Params, into: QueryReadout): tf.Scalar {
  return queryLossOf(e, e.forward(p, e.query.x), into);
}

/** The summed query loss of query outputs `out`, recording per-task values in `into`. */
export function queryLossOf(e: Episode, out: tf.Tensor, into: QueryReadout): tf.Scalar {
  const losses = taskLosses(e.kind, out, e.query.y);
  into.loss = Array.from(losses.dataSync());
  if (e.kind === "classification") into.accuracy = Array.from(accuracy(out, e.query.labels!).dataSync());
  return losses.rank === 0 ? (losses as tf.Scalar) : tf.sum(losses);
}

/**
 * The episode of a learner without an inner loop (the metric learners): the gradient at θ of
 * `loss(p, e, readout)`, which reads the episode's loss and accuracy into `readout` inside the tape.
 * One "step" per episode, for heartbeats and cancellation; nothing adapts, so the readout is both the
 * "before" and the "after".
 */
export function noInnerLoopEpisode(loss: (p: Params, e: Episode, readout: QueryReadout) => tf.Scalar): EpisodeFn {
  return (e, theta, firstTask, hooks) => {
    const keys = names(theta);
    const steps = abortableSteps(hooks, firstTask);
    const readout: QueryReadout = { loss: [], accuracy: [] };
    const g = tf.grads((...vals: tf.Tensor[]) => loss(fromList(keys, vals), e, readout))(keys.map((k) => theta[k]!));
    steps.step(0);
    steps.rethrow();
    return { result: fromList(keys, g), metrics: taskMetrics(e, readout, readout) };
  };
}

/** Per-task metrics from the readouts before and after adaptation. */
export function taskMetrics(e: Episode, pre: QueryReadout, post: QueryReadout): TaskMetrics[] {
  const cls = e.kind === "classification";
  return pre.loss.map((p, i) => ({
    preLoss: p,
    postLoss: post.loss[i]!,
    ...(cls ? { preAccuracy: pre.accuracy[i]!, postAccuracy: post.accuracy[i]! } : {}),
  }));
}

/**
 * Inner-step hooks that never throw inside a gradient tape. A hook that throws (cancellation) must
 * not unwind through tf.grads: tfjs keeps the tensors it saved for the backward pass until that pass
 * runs. So `step` records the error and answers false (stop stepping); `rethrow` raises it once the
 * tape is gone.
 */
export function abortableSteps(hooks: ShardHooks, firstTask: number) {
  let aborted: { error: unknown } | undefined;
  return {
    step(i: number): boolean {
      try {
        hooks.onInnerStep?.(firstTask, i);
      } catch (error) {
        aborted = { error };
      }
      return aborted === undefined;
    },
    rethrow(): void {
      if (aborted) throw aborted.error;
    },
  };
}

/** What a learner computes for one episode: its summed contribution and per-task metrics. */
export type EpisodeFn = (e: Episode, theta: Params, firstTask: number, hooks: ShardHooks) => { result: Params; metrics: TaskMetrics[] };

/**
 * Run a shard: episodes in task order, each through `fn` inside a tidy, their results folded left
 * in task order ((r0 + r1) + r2) + … — the order is part of determinism. The caller owns the sum.
 */
export async function runEpisodes(
  theta: Params,
  tasks: readonly Task[],
  o: {
    model: Model;
    kind: TaskKind;
    batched: boolean;
    /** One-hot width (the family's ways); default the model's outputs. */
    classes?: number;
    /** `fn` adapts only by `e.step`: batched episodes may factor the input kernel (episodeOf). */
    factorInput?: boolean;
  },
  fn: EpisodeFn,
  hooks: ShardHooks = {},
): Promise<ShardResult> {
  if (tasks.length === 0) throw new Error("runShard: a shard needs at least one task");
  const groups = o.batched ? [tasks] : tasks.map((t) => [t]);
  let sum: Params | undefined;
  const metrics: TaskMetrics[] = [];
  try {
    for (const gt of groups) {
      const e = episodeOf(gt, o.model, o.kind, o.batched, o.classes, o.factorInput);
      let r: { result: Params; metrics: TaskMetrics[] };
      try {
        r = tf.tidy(() => fn(e, theta, metrics.length, hooks) as unknown as tf.TensorContainer) as unknown as typeof r;
      } finally {
        disposeEpisode(e);
      }
      if (sum === undefined) sum = r.result;
      else {
        const prev: Params = sum;
        sum = tf.tidy(() => {
          const s: Params = {};
          for (const k of names(prev)) s[k] = tf.add(prev[k]!, r.result[k]!);
          return s;
        });
        dispose(prev, r.result);
      }
      metrics.push(...r.metrics);
      await hooks.afterTask?.(metrics.length);
    }
  } catch (e) {
    dispose(sum);
    throw e;
  }
  return { sum: sum!, metrics };
}
