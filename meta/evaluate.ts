// Evaluation on held-out tasks: fine-tune from the meta-learned initialisation for a number of
// test-time inner steps, report the query loss (and accuracy) as mean with a 95% confidence interval.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "./models.js";
import { names, type Params } from "./params.js";
import { accuracy, disposeExamples, stackExamples, taskLoss, taskLosses, toTensors, type ExampleTensors } from "./losses.js";
import type { TaskFamily, TaskSplit } from "./tasks/types.js";

/** Mean and half-width of its 95% confidence interval (normal approximation, 1.96·s/√n). */
export interface MeanCI {
  mean: number;
  ci95: number;
  n: number;
}

export function meanCI(xs: readonly number[]): MeanCI {
  const n = xs.length;
  if (n === 0) return { mean: NaN, ci95: NaN, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, ci95: NaN, n };
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  return { mean, ci95: (1.96 * Math.sqrt(variance)) / Math.sqrt(n), n };
}

export interface EvaluateOptions {
  /** Held-out tasks (papers: 600 for Omniglot, 100 points × 600 for sinusoid). Default 600. */
  tasks?: number;
  /** Step counts at which to measure, e.g. [0, 1, 5, 10]; 0 is the unadapted initialisation. Default [innerSteps]. */
  steps: number[];
  /** Test-time SGD step size α. */
  innerLr: number;
  /** Seed of the task stream; tasks are family.task(seed, split, 0, i). */
  seed: number;
  /** Default `test`. */
  split?: TaskSplit;
  /**
   * Tasks fine-tuned at once over a task axis, when the model has a batched forward (MLPs).
   * Each task still gets its own copy of the parameters and its own batch-norm statistics, so
   * results equal one-by-one evaluation up to float rounding. Default 50; 1 disables batching.
   */
  batch?: number;
  /** Called after each task with the count done (progress). */
  onTask?: (done: number, total: number) => void;
}

export interface EvaluationResult {
  family: string;
  model: string;
  split: TaskSplit;
  /** Batch norm statistics mode: `transductive` (query-batch statistics) or `none`. */
  batchNorm: Model["batchNorm"];
  results: { steps: number; loss: MeanCI; accuracy?: MeanCI }[];
}

export async function evaluate(model: Model, family: TaskFamily, params: Params, o: EvaluateOptions): Promise<EvaluationResult> {
  const total = o.tasks ?? 600;
  const split = o.split ?? "test";
  const stepsWanted = [...new Set(o.steps)].sort((a, b) => a - b);
  const maxSteps = stepsWanted[stepsWanted.length - 1] ?? 0;
  const losses = new Map<number, number[]>(stepsWanted.map((s) => [s, []]));
  const accs = new Map<number, number[]>(stepsWanted.map((s) => [s, []]));
  const keys = names(params);
  const cls = family.kind === "classification";
  const batch = model.forwardBatched ? Math.max(1, o.batch ?? 50) : 1;
  for (let start = 0; start < total; start += batch) {
    const count = Math.min(batch, total - start);
    const tasks = Array.from({ length: count }, (_, j) => family.task(o.seed, split, 0, start + j));
    const batched = batch > 1;
    const toT = (which: "support" | "query"): ExampleTensors =>
      batched ? stackExamples(tasks.map((t) => t[which]), family.kind, model.outputs) : toTensors(tasks[0]![which], family.kind, model.outputs);
    const s = toT("support");
    const q = toT("query");
    const forward = (p: Params, x: tf.Tensor) => (batched ? model.forwardBatched!(p, x) : model.forward(p, x));
    try {
      tf.tidy(() => {
        let phi: Params = params;
        if (batched) {
          phi = {};
          for (const k of keys) phi[k] = tf.tile(tf.expandDims(params[k]!, 0), [count, ...params[k]!.shape.map(() => 1)]);
        }
        for (let step = 0; step <= maxSteps; step++) {
          if (losses.has(step)) {
            const out = forward(phi, q.x);
            losses.get(step)!.push(...taskLosses(family.kind, out, q.y).dataSync());
            if (cls) accs.get(step)!.push(...accuracy(out, q.labels!).dataSync());
          }
          if (step === maxSteps) break;
          const cur = phi;
          // The loss sums per-task means, so each task's gradient is its own.
          const g = tf.grads((...v: tf.Tensor[]) => {
            const p: Params = {};
            keys.forEach((k, j) => (p[k] = v[j]!));
            return taskLoss(family.kind, forward(p, s.x), s.y);
          })(keys.map((k) => cur[k]!));
          const next: Params = {};
          keys.forEach((k, j) => (next[k] = tf.sub(cur[k]!, tf.mul(g[j]!, o.innerLr))));
          phi = next;
        }
      });
    } finally {
      disposeExamples(s);
      disposeExamples(q);
    }
    o.onTask?.(start + count, total);
    // Let timers and I/O run between chunks on long evaluations.
    await new Promise((r) => setTimeout(r, 0));
  }
  return {
    family: family.name,
    model: model.name,
    split,
    batchNorm: model.batchNorm,
    results: stepsWanted.map((st) => ({
      steps: st,
      loss: meanCI(losses.get(st)!),
      ...(cls ? { accuracy: meanCI(accs.get(st)!) } : {}),
    })),
  };
}
