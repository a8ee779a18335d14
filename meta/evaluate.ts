// Evaluation on held-out tasks: a learner adapts to each task's support set its own way and the
// query loss (and accuracy) is reported as a mean with a 95% confidence interval. `evaluate` is
// the MAML family's rule (plain SGD fine-tuning from the meta-learned initialisation).
import * as tf from "@tensorflow/tfjs";
import { disposeEpisode, episodeOf, type Episode } from "./algorithms/episodes.js";
import type { Model } from "./models.js";
import { names, type Params } from "./params.js";
import { accuracy, taskLosses } from "./losses.js";
import type { TaskFamily, TaskSplit } from "./tasks/types.js";

/** Mean and half-width of its 95% confidence interval (normal approximation, 1.96·s/√n). */
export type MeanCI = import("../contracts/activities.js").MeanCI;

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
  /** Step counts at which to measure, e.g. [0, 1, 5, 10]; 0 is the unadapted initialisation. */
  steps: number[];
  /** Test-time SGD step size α. */
  innerLr: number;
  /** Seed of the task stream; tasks are family.task(seed, split, 0, i). */
  seed: number;
  /** Default `test`. */
  split?: TaskSplit;
  /**
   * Tasks fine-tuned at once over a task axis, when the model has a batched forward (MLPs) and the
   * learner allows it. Each task still gets its own copy of the parameters and its own batch-norm
   * statistics, so results equal one-by-one evaluation up to float rounding. Default 50; 1 disables.
   */
  batch?: number;
  /** Called after each chunk of tasks with the count done (progress). */
  onTask?: (done: number, total: number) => void;
}

export interface EvaluationResult {
  family: string;
  model: string;
  split: TaskSplit;
  /** Batch norm statistics mode: `transductive` (query-batch statistics), `per-example`, or `none`. */
  batchNorm: Model["batchNorm"] | "per-example";
  results: { steps: number; loss: MeanCI; accuracy?: MeanCI }[];
  /** Sequence tasks: byInstance[k − 1] is the accuracy at the k-th presentation of a class (Santoro et al. Table 1), over episodes. */
  byInstance?: MeanCI[];
}

/**
 * A learner's test-time rule for one episode: adapt from `params` and call `record(step, outputs)`
 * with the query outputs ([n, k], or [T, n, k] when batched) after each step count in `steps`
 * (sorted, distinct). Runs inside a tidy.
 */
export type AdaptAndMeasure = (e: Episode, params: Params, steps: readonly number[], record: (step: number, queryOutputs: tf.Tensor) => void) => void;

/** A test-time rule that adapts nothing (the metric learners): `predict`'s query outputs at every step count asked for. */
export const withoutAdaptation =
  (predict: (params: Params, e: Episode) => tf.Tensor): AdaptAndMeasure =>
  (e, params, steps, record) => {
    const out = predict(params, e);
    for (const s of steps) record(s, out);
  };

/** Evaluate with a learner's own adaptation rule. `batchable`: whether `adapt` handles task-batched episodes. */
export async function evaluateWith(
  model: Model,
  family: TaskFamily,
  params: Params,
  o: Omit<EvaluateOptions, "innerLr">,
  adapt: AdaptAndMeasure,
  opts: {
    batchable: boolean;
    batchNorm?: EvaluationResult["batchNorm"];
    /** `adapt` steps only by `e.step` (plain SGD on the support set): batched episodes may factor the input kernel. */
    factorInput?: boolean;
  } = { batchable: true },
): Promise<EvaluationResult> {
  const total = o.tasks ?? 600;
  const split = o.split ?? "test";
  const stepsWanted = [...new Set(o.steps)].sort((a, b) => a - b);
  const losses = new Map<number, number[]>(stepsWanted.map((s) => [s, []]));
  const accs = new Map<number, number[]>(stepsWanted.map((s) => [s, []]));
  const cls = family.kind === "classification";
  const batch = model.forwardBatched && opts.batchable ? Math.max(1, o.batch ?? 50) : 1;
  for (let start = 0; start < total; start += batch) {
    const count = Math.min(batch, total - start);
    const tasks = Array.from({ length: count }, (_, j) => family.task(o.seed, split, 0, start + j));
    const e = episodeOf(tasks, model, family.kind, batch > 1, family.outputs, opts.factorInput);
    try {
      tf.tidy(() =>
        adapt(e, params, stepsWanted, (step, out) => {
          losses.get(step)?.push(...taskLosses(family.kind, out, e.query.y).dataSync());
          if (cls) accs.get(step)?.push(...accuracy(out, e.query.labels!).dataSync());
        }),
      );
    } finally {
      disposeEpisode(e);
    }
    o.onTask?.(start + count, total);
    // Let timers and I/O run between chunks on long evaluations.
    await new Promise((r) => setTimeout(r, 0));
  }
  return {
    family: family.name,
    model: model.name,
    split,
    batchNorm: opts.batchNorm ?? model.batchNorm,
    results: stepsWanted.map((st) => ({
      steps: st,
      loss: meanCI(losses.get(st)!),
      ...(cls ? { accuracy: meanCI(accs.get(st)!) } : {}),
    })),
  };
}

/**
 * Test-time SGD on the parameters named `adaptable` (default: all), measuring after each wanted step:
 * the MAML family's rule, shared by learners that adapt by plain gradient steps.
 */
export function sgdAdaptation(lr: number, adaptable?: readonly string[]): AdaptAndMeasure {
  return (e, params, steps, record) => {
    const maxSteps = steps[steps.length - 1] ?? 0;
    let phi = e.expand(params);
    const keys = adaptable ?? names(params);
    for (let step = 0; step <= maxSteps; step++) {
      if (steps.includes(step)) record(step, e.forward(phi, e.query.x));
      if (step === maxSteps) break;
      // The loss sums per-task means, so each task's gradient is its own.
      phi = e.step(keys, phi, lr);
    }
  };
}

/** Evaluate `params` on `family` by SGD fine-tuning at `o.innerLr` (the MAML family's test-time rule). */
export function evaluate(model: Model, family: TaskFamily, params: Params, o: EvaluateOptions): Promise<EvaluationResult> {
  return evaluateWith(model, family, params, o, sgdAdaptation(o.innerLr), { batchable: true, factorInput: true });
}
