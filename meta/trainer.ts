// One meta-iteration exactly as the distributed system runs it — tasks from (seed, iteration,
// index), shards of fixed size, shard sums added in shard order, one outer step — in one process.
// Tests and benchmarks use it as the reference the workflow must match bit for bit; it reads
// everything from a parsed run config, so it has no defaults of its own.
import type { ShardRunner } from "./algorithms/learner.js";
import type { TaskMetrics } from "./algorithms/types.js";
import type { OuterOptimizer, OuterState } from "./optimizers.js";
import { dispose, names, sumInOrder, type Params } from "./params.js";
import { initialParams, parseRunConfig, resolveRun, type ResolvedRun, type RunConfig, type RunConfigInput } from "./run-config.js";
import type { DataPort, Task, TaskFamily } from "./tasks/types.js";

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

/** A data port for configs that need no data set files (sinusoid). */
export const NO_DATA: DataPort = {
  omniglot: () => {
    throw new Error("this process was given no Omniglot data; pass a DataPort (storage/datasets.ts loadOmniglot)");
  },
};

export interface IterationReport {
  iteration: number;
  metrics: TaskMetrics[];
}

export class LocalMetaTrainer {
  readonly config: RunConfig;
  readonly run: ResolvedRun;
  readonly runner: ShardRunner;
  readonly optimizer: OuterOptimizer;
  params: Params;
  state: OuterState;
  iteration = 0;

  /** @param config a run config (parsed here, with the schema's defaults) */
  constructor(config: RunConfigInput | RunConfig, data: DataPort = NO_DATA) {
    this.config = parseRunConfig(config);
    this.run = resolveRun(this.config, data);
    this.runner = this.run.learner.shardRunner(this.run.setup);
    this.optimizer = this.run.learner.outer(this.run.setup);
    this.params = initialParams(this.run, this.config.seed);
    this.state = this.optimizer.initialState(this.params);
  }

  /** Run one meta-iteration and apply the outer update (at `metaLr`, default the config's). */
  async step(metaLr = this.config.metaLr): Promise<IterationReport> {
    const it = this.iteration;
    const tasks = iterationTasks(this.run.setup.train, this.config.seed, it, this.config.metaBatchSize);
    const sums: Params[] = [];
    const data: Params[] = [];
    const metrics: TaskMetrics[] = [];
    try {
      for (const { start, end } of shardRanges(tasks.length, this.config.shardSize)) {
        const r = await this.runner.runShard(this.params, tasks.slice(start, end));
        sums.push(r.sum);
        if (r.data) data.push(r.data);
        metrics.push(...r.metrics);
      }
      const total = sumInOrder(sums);
      const next = this.optimizer.apply(this.params, total, tasks.length, this.state, { metaLr, ...(data.length ? { shardData: data } : {}) });
      dispose(total, this.params);
      this.params = next.params;
      this.state = next.state;
    } finally {
      dispose(...sums, ...data);
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

export { initialParams } from "./run-config.js";
export { meanOf } from "./algorithms/types.js";
