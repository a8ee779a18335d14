// The published figure for a run's setup: the preset (meta/algorithms/*) whose setup the run's
// config matches, when that preset carries a figure.
import { PRESETS } from "../../meta/algorithms/registry.js";
import { parseRunConfig } from "../../meta/run-config.js";
import type { PaperFigure } from "./charts.js";

/**
 * What makes a result comparable to a paper's: learner, task (without where its data lives),
 * model, inner loop, meta-batch and test-time steps. Iterations, seeds, rates and cadence may differ.
 */
function setupOf(config: unknown): string | undefined {
  try {
    const c = parseRunConfig(config);
    const { dataDir: _where, ...task } = c.task as typeof c.task & { dataDir?: string };
    return JSON.stringify([c.algorithm, task, c.model, c.innerSteps, c.innerLr, c.metaBatchSize, c.evalSteps]);
  } catch {
    return undefined; // a config this version cannot parse matches no preset
  }
}

/** The figure of the first preset with one whose setup equals the config's, else undefined. */
export function paperFigureFor(config: unknown): PaperFigure | undefined {
  const setup = setupOf(config);
  if (setup === undefined) return undefined;
  return PRESETS.find((p) => p.figure && setupOf(p.config) === setup)?.figure;
}
