// From a run config to the engine's objects: the model, the task family and the algorithm, memoised per process.
import type { RunConfig } from "../contracts/config.js";
import { createAlgorithm } from "../meta/algorithms/inner.js";
import type { MetaAlgorithm } from "../meta/algorithms/types.js";
import { conv4, omniglotMlp, sinusoidMlp, type Model } from "../meta/models.js";
import { omniglotFamily } from "../meta/tasks/omniglot.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import type { TaskFamily } from "../meta/tasks/types.js";
import { loadOmniglot } from "../storage/datasets.js";

/** Output units the task family needs: 1 for sinusoid regression, `ways` for classification. */
function outputsFor(config: RunConfig): number {
  return config.task.family === "sinusoid" ? 1 : config.task.ways;
}

/** The model a run config names (the schema guarantees the model fits the task family). */
export function modelFor(config: RunConfig): Model {
  const m = config.model;
  switch (m.kind) {
    case "sinusoid-mlp":
      return sinusoidMlp();
    case "omniglot-mlp":
      return omniglotMlp(outputsFor(config), m.batchNorm);
    case "conv4":
      // Pass every option explicitly: conv4's own defaults differ from the schema's.
      return conv4({ inputShape: [28, 28, 1], outputs: outputsFor(config), filters: m.filters, downsample: m.downsample, batchNorm: m.batchNorm });
  }
}

/** The task family a run config names. Omniglot is read from `task.dataDir` (else the default dir) once per process. */
export function familyFor(config: RunConfig): TaskFamily {
  const t = config.task;
  switch (t.family) {
    case "sinusoid":
      return sinusoidFamily({ shots: t.shots, queryShots: t.queryShots });
    case "omniglot":
      return omniglotFamily(loadOmniglot(t.dataDir), { ways: t.ways, shots: t.shots, queryShots: t.queryShots, split: t.split });
  }
}

/** What an activity needs to run a config's inner loops or evaluation. */
export interface Built {
  model: Model;
  family: TaskFamily;
  algorithm: MetaAlgorithm;
}

/** Per-process memo of `Built` by the config fields that shape it (a worker serves few configs at a time). */
export class BuildCache {
  private readonly entries = new Map<string, Built>();

  /** @param capacity distinct configs kept (default 8); the oldest is dropped beyond it (no tensors are held). */
  constructor(private readonly capacity = 8) {}

  get(config: RunConfig): Built {
    // Only the fields below change the objects built; seeds, iteration counts and timeouts do not.
    const key = JSON.stringify([config.model, config.task, config.algorithm, config.innerSteps, config.innerLr, config.batchTasks]);
    const hit = this.entries.get(key);
    if (hit) return hit;
    const model = modelFor(config);
    const family = familyFor(config);
    const algorithm = createAlgorithm({
      algorithm: config.algorithm,
      model,
      kind: family.kind,
      innerSteps: config.innerSteps,
      innerLr: config.innerLr,
      // batchTasks is a request: models without a task-batched forward (conv4) run task by task.
      batchTasks: config.batchTasks && model.forwardBatched !== undefined,
    });
    const built = { model, family, algorithm };
    this.entries.set(key, built);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return built;
  }
}
