// From a run config to the engine's objects — the learner's setup, its shard runner and outer
// optimizer — memoised per process, with the data sets read from this process's files.
import type { ShardRunner } from "../meta/algorithms/learner.js";
import type { OuterOptimizer } from "../meta/optimizers.js";
import { resolveRun, type ResolvedRun, type RunConfig } from "../meta/run-config.js";
import type { DataPort } from "../meta/tasks/types.js";
import { loadOmniglot } from "../storage/datasets.js";

/** Data sets from this machine's files (Omniglot from `task.dataDir`, else the default directory; cached by storage/). */
export const FILE_DATA: DataPort = { omniglot: (dir, resolution) => loadOmniglot(dir, resolution) };

/** What an activity needs to run a config's inner loops, outer step or evaluation. */
export interface Built extends ResolvedRun {
  runner: ShardRunner;
  optimizer: OuterOptimizer;
}

/** Resolve a parsed config once (no memo). */
export function build(config: RunConfig, data: DataPort = FILE_DATA): Built {
  const run = resolveRun(config, data);
  return { ...run, runner: run.learner.shardRunner(run.setup), optimizer: run.learner.outer(run.setup) };
}

/** Per-process memo of `Built` by the config fields that shape it (a worker serves few configs at a time). */
export class BuildCache {
  private readonly entries = new Map<string, Built>();

  /** @param capacity distinct configs kept (default 8); the oldest is dropped beyond it (no tensors are held). */
  constructor(
    private readonly capacity = 8,
    private readonly data: DataPort = FILE_DATA,
  ) {}

  get(config: RunConfig): Built {
    // Everything but the seed, timeouts and bookkeeping may shape the objects built.
    const { seed: _s, timeouts: _t, failurePolicy: _f, checkpointEvery: _c, evalEvery: _e, continueAsNewEvery: _n, localOuterStep: _l, ...shaping } = config;
    const key = JSON.stringify(shaping);
    const hit = this.entries.get(key);
    if (hit) return hit;
    const built = build(config, this.data);
    this.entries.set(key, built);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return built;
  }
}
