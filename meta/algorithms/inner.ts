// The inner loops of MAML (Finn et al. 2017, Alg. 2), first-order MAML (§5.2) and Reptile
// (Nichol et al. 2018, Alg. 1) over a shard of tasks, one task at a time or batched over a task axis.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "../models.js";
import { names, type Params } from "../params.js";
import { accuracy, disposeExamples, stackExamples, taskLoss, taskLosses, toTensors, type ExampleTensors } from "../losses.js";
import type { Task, TaskKind } from "../tasks/types.js";
import { registerHigherOrderGradients } from "../gradients.js";
import type { AlgorithmName, MetaAlgorithm, ShardHooks, ShardResult, TaskMetrics } from "./types.js";

export interface InnerLoopOptions {
  algorithm: AlgorithmName;
  model: Model;
  kind: TaskKind;
  /** Inner gradient steps k per task. */
  innerSteps: number;
  /** Inner SGD step size α. */
  innerLr: number;
  /**
   * Run a shard's tasks as one batch over a task axis (needs `model.forwardBatched`). The result
   * differs from the unbatched one in the last bits (another summation order) but is equally
   * deterministic; keep it fixed within a run.
   */
  batchTasks?: boolean;
}

const fromList = (keys: string[], vals: tf.Tensor[]): Params => {
  const p: Params = {};
  keys.forEach((k, i) => (p[k] = vals[i]!));
  return p;
};

/** One SGD step φ ← φ − α∇L(φ) on the support set (Finn et al. eq. 1). */
function sgdStep(keys: string[], phi: Params, lossOf: (p: Params) => tf.Scalar, lr: number): Params {
  const g = tf.grads((...vals: tf.Tensor[]) => lossOf(fromList(keys, vals)))(keys.map((k) => phi[k]!));
  const next: Params = {};
  keys.forEach((k, i) => (next[k] = tf.sub(phi[k]!, tf.mul(g[i]!, lr))));
  return next;
}

/** A unit of work: one task, or all tasks of a shard stacked along a leading task axis. */
interface Group {
  count: number;
  support: ExampleTensors;
  query: ExampleTensors;
  /** θ as this group's forward expects it: unchanged, or tiled to [T, ...]. */
  expand: (theta: Params) => Params;
  forward: (p: Params, x: tf.Tensor) => tf.Tensor;
  /** Sum a per-task-shaped map over the task axis (identity when unbatched). */
  reduce: (p: Params) => Params;
}

function singleGroup(task: Task, o: InnerLoopOptions): Group {
  return {
    count: 1,
    support: toTensors(task.support, o.kind, o.model.outputs),
    query: toTensors(task.query, o.kind, o.model.outputs),
    expand: (t) => t,
    forward: (p, x) => o.model.forward(p, x),
    reduce: (p) => p,
  };
}

function batchedGroup(tasks: readonly Task[], o: InnerLoopOptions): Group {
  const T = tasks.length;
  const fwd = o.model.forwardBatched!.bind(o.model);
  return {
    count: T,
    support: stackExamples(tasks.map((t) => t.support), o.kind, o.model.outputs),
    query: stackExamples(tasks.map((t) => t.query), o.kind, o.model.outputs),
    expand: (theta) => {
      const p: Params = {};
      for (const k of names(theta)) {
        const t = theta[k]!;
        p[k] = tf.tile(tf.expandDims(t, 0), [T, ...t.shape.map(() => 1)]);
      }
      return p;
    },
    forward: fwd,
    reduce: (p) => {
      const out: Params = {};
      for (const k of names(p)) out[k] = tf.sum(p[k]!, 0);
      return out;
    },
  };
}

function readVec(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** Runs one group; returns its summed result and per-task metrics. Everything else is freed. */
function runGroup(
  g: Group,
  theta: Params,
  o: InnerLoopOptions,
  firstTask: number,
  hooks: ShardHooks,
): { result: Params; metrics: TaskMetrics[] } {
  const keys = names(theta);
  const cls = o.kind === "classification";
  const lossS = (p: Params) => taskLoss(o.kind, g.forward(p, g.support.x), g.support.y);
  // A hook that throws (cancellation) must not unwind through tf.grads: tfjs keeps the tensors it
  // saved for the backward pass until that pass runs. So record the error, stop stepping, let the
  // gradient computation finish, and rethrow once the tape is gone.
  let aborted: { error: unknown } | undefined;
  const step = (i: number): boolean => {
    try {
      hooks.onInnerStep?.(firstTask, i);
    } catch (error) {
      aborted = { error };
    }
    return aborted === undefined;
  };
  let post: number[] = [];
  let postAcc: number[] = [];
  // Read the query metrics of adapted parameters synchronously, so nothing has to outlive the
  // gradient tape (a tf.keep inside tf.grads would leak if a hook threw).
  const queryLoss = (phi: Params): tf.Scalar => {
    const out = g.forward(phi, g.query.x);
    const losses = taskLosses(o.kind, out, g.query.y);
    post = readVec(losses);
    if (cls) postAcc = readVec(accuracy(out, g.query.labels!));
    return losses.rank === 0 ? (losses as tf.Scalar) : tf.sum(losses);
  };

  return tf.tidy(() => {
    const thetaE = g.expand(theta);
    const preOut = g.forward(thetaE, g.query.x);
    const pre = readVec(taskLosses(o.kind, preOut, g.query.y));
    const preAcc = cls ? readVec(accuracy(preOut, g.query.labels!)) : [];

    let result: Params;
    if (o.algorithm === "maml") {
      // True second-order meta-gradient: differentiate the query loss through all k inner steps.
      const f = (...vals: tf.Tensor[]) => {
        let phi = g.expand(fromList(keys, vals));
        for (let i = 0; i < o.innerSteps; i++) {
          phi = sgdStep(keys, phi, lossS, o.innerLr);
          if (!step(i)) break;
        }
        return queryLoss(phi);
      };
      result = fromList(keys, tf.grads(f)(keys.map((k) => theta[k]!)));
      if (aborted) throw aborted.error;
    } else {
      let phi = thetaE;
      for (let i = 0; i < o.innerSteps; i++) {
        phi = sgdStep(keys, phi, lossS, o.innerLr);
        if (!step(i)) throw aborted!.error;
      }
      if (o.algorithm === "fomaml") {
        // First-order: the query gradient at the adapted parameters stands in for the meta-gradient.
        const gq = tf.grads((...vals: tf.Tensor[]) => queryLoss(fromList(keys, vals)))(keys.map((k) => phi[k]!));
        result = g.reduce(fromList(keys, gq));
      } else {
        tf.tidy(() => queryLoss(phi));
        const delta: Params = {};
        for (const k of keys) delta[k] = tf.sub(phi[k]!, thetaE[k]!);
        result = g.reduce(delta);
      }
    }
    const metrics: TaskMetrics[] = pre.map((p, i) => ({
      preLoss: p,
      postLoss: post[i]!,
      ...(cls ? { preAccuracy: preAcc[i]!, postAccuracy: postAcc[i]! } : {}),
    }));
    return { result, metrics } as unknown as tf.TensorContainer;
  }) as unknown as { result: Params; metrics: TaskMetrics[] };
}

/** Build the algorithm an activity calls for a shard of tasks. */
export function createAlgorithm(o: InnerLoopOptions): MetaAlgorithm {
  if (!Number.isInteger(o.innerSteps) || o.innerSteps < 1) throw new RangeError(`innerSteps must be an integer ≥ 1, got ${o.innerSteps}`);
  if (!(o.innerLr > 0)) throw new RangeError(`innerLr must be > 0, got ${o.innerLr}`);
  // Second-order MAML through conv, pooling and softmax needs gradients tfjs lacks (idempotent).
  registerHigherOrderGradients();
  const batched = (o.batchTasks ?? false) && o.model.forwardBatched !== undefined;
  if (o.batchTasks && !batched) throw new Error(`model ${o.model.name} has no task-batched forward; set batchTasks to false`);
  return {
    name: o.algorithm,
    resultKind: o.algorithm === "reptile" ? "delta" : "meta-gradient",
    batched,
    async runShard(theta: Params, tasks: readonly Task[], hooks: ShardHooks = {}): Promise<ShardResult> {
      if (tasks.length === 0) throw new Error("runShard: a shard needs at least one task");
      const groups = batched ? [tasks] : tasks.map((t) => [t]);
      let sum: Params | undefined;
      const metrics: TaskMetrics[] = [];
      try {
        for (const gt of groups) {
          const g = batched ? batchedGroup(gt, o) : singleGroup(gt[0]!, o);
          let r: { result: Params; metrics: TaskMetrics[] };
          try {
            r = runGroup(g, theta, o, metrics.length, hooks);
          } finally {
            disposeExamples(g.support);
            disposeExamples(g.query);
          }
          // Left fold in task order: ((g0 + g1) + g2) + … — the order is part of determinism.
          if (sum === undefined) sum = r.result;
          else {
            const prev: Params = sum;
            sum = tf.tidy(() => {
              const s: Params = {};
              for (const k of names(prev)) s[k] = tf.add(prev[k]!, r.result[k]!);
              return s;
            });
            for (const k of names(prev)) prev[k]!.dispose();
            for (const k of names(r.result)) r.result[k]!.dispose();
          }
          metrics.push(...r.metrics);
          await hooks.afterTask?.(metrics.length);
        }
      } catch (e) {
        if (sum) for (const k of names(sum)) sum[k]!.dispose();
        throw e;
      }
      return { sum: sum!, metrics };
    },
  };
}
