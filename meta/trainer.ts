// One meta-iteration exactly as the distributed system runs it — tasks from (seed, iteration,
// index), shards of fixed size, shard sums added in shard order, one outer step — in one process.
// Benchmarks and tests use it; the Temporal workflow runs the same steps across workers.
import * as tf from "@tensorflow/tfjs";
import { createAlgorithm } from "./algorithms/inner.js";
import type { AlgorithmName, MetaAlgorithm, TaskMetrics } from "./algorithms/types.js";
import type { Model } from "./models.js";
import { adam, reptileOuter, type OuterOptimizer, type OuterState } from "./optimizers.js";
import { dispose, names, sumInOrder, type Params } from "./params.js";
import { deriveSeed, Stream } from "./rng.js";
import type { Task, TaskFamily } from "./tasks/types.js";

export interface MetaTrainConfig {
  algorithm: AlgorithmName;
  /** Inner steps k during meta-training. */
  innerSteps: number;
  /** Inner step size α. */
  innerLr: number;
  /** Outer step size: Adam's β for (FO)MAML, Reptile's initial ε. */
  metaLr: number;
  /** Tasks per meta-iteration. */
  metaBatchSize: number;
  /** Tasks per shard (one activity each when distributed). Default: the whole meta-batch. */
  shardSize?: number;
  /** Total meta-iterations (Reptile anneals ε over them). */
  iterations: number;
  /** Run seed: parameters' initialisation and every task derive from it. */
  seed: number;
  /** Batch each shard's tasks over a task axis (MLPs). Default false. */
  batchTasks?: boolean;
  /** Reptile: anneal ε linearly to 0. Default true. */
  anneal?: boolean;
}

/** The tasks of one meta-iteration, in task order. */
export function iterationTasks(family: TaskFamily, seed: number, iteration: number, metaBatchSize: number): Task[] {
  return Array.from({ length: metaBatchSize }, (_, i) => family.task(seed, "train", iteration, i));
}

/** Split [0, n) into consecutive shards of `size` (the last may be smaller). */
export function shardRanges(n: number, size: number): { start: number; end: number }[] {
  const out = [];
  for (let s = 0; s < n; s += size) out.push({ start: s, end: Math.min(n, s + size) });
  return out;
}

export function outerOptimizer(cfg: MetaTrainConfig): OuterOptimizer {
  return cfg.algorithm === "reptile"
    ? reptileOuter({ metaLr: cfg.metaLr, totalIterations: cfg.iterations, anneal: cfg.anneal ?? true })
    : adam({ lr: cfg.metaLr });
}

/** The initial parameters of a run: a pure function of the model and the run seed. */
export const initialParams = (model: Model, seed: number): Params => model.init(deriveSeed(seed, Stream.init));

export interface IterationReport {
  iteration: number;
  metrics: TaskMetrics[];
}

export class LocalMetaTrainer {
  readonly algorithm: MetaAlgorithm;
  readonly optimizer: OuterOptimizer;
  params: Params;
  state: OuterState;
  iteration = 0;

  constructor(
    readonly model: Model,
    readonly family: TaskFamily,
    readonly cfg: MetaTrainConfig,
  ) {
    this.algorithm = createAlgorithm({
      algorithm: cfg.algorithm,
      model,
      kind: family.kind,
      innerSteps: cfg.innerSteps,
      innerLr: cfg.innerLr,
      batchTasks: cfg.batchTasks ?? false,
    });
    this.optimizer = outerOptimizer(cfg);
    this.params = initialParams(model, cfg.seed);
    this.state = this.optimizer.initialState(this.params);
  }

  /** Run one meta-iteration and apply the outer update. */
  async step(): Promise<IterationReport> {
    const it = this.iteration;
    const tasks = iterationTasks(this.family, this.cfg.seed, it, this.cfg.metaBatchSize);
    const sums: Params[] = [];
    const metrics: TaskMetrics[] = [];
    try {
      for (const { start, end } of shardRanges(tasks.length, this.cfg.shardSize ?? tasks.length)) {
        const r = await this.algorithm.runShard(this.params, tasks.slice(start, end));
        sums.push(r.sum);
        metrics.push(...r.metrics);
      }
      const total = sumInOrder(sums);
      const next = this.optimizer.apply(this.params, total, tasks.length, this.state);
      dispose(total, this.params);
      this.params = next.params;
      this.state = next.state;
    } finally {
      dispose(...sums);
    }
    this.iteration = it + 1;
    return { iteration: it, metrics };
  }

  /** Flat copy of the current parameters' values, for bit-for-bit comparisons. */
  snapshot(): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const k of names(this.params)) out[k] = (this.params[k]!.dataSync() as Float32Array).slice();
    return out;
  }

  dispose(): void {
    dispose(this.params);
  }
}

/** Mean of a metric over tasks (NaN when absent). */
export function meanOf(ms: readonly TaskMetrics[], key: keyof TaskMetrics): number {
  const xs = ms.map((m) => m[key]).filter((x): x is number => typeof x === "number");
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

