// Sinusoid regression exactly as in the MAML paper (Finn et al. 2017, §5.1): amplitude U[0.1, 5],
// phase U[0, π], inputs U[−5, 5], K support and K query points, loss MSE.
import { Rng, deriveSeed, Stream } from "../rng.js";
import { z } from "zod";
import type { Examples, FamilySpec, Task, TaskFamily, TaskSplit } from "./types.js";

export interface SinusoidOptions {
  /** K support points per task (paper: 10 for training, 5/10 at test). Default 10. */
  shots?: number;
  /** Query points per task. Default: equal to `shots`, as in the paper. */
  queryShots?: number;
}

const SPLIT_TAG: Record<TaskSplit, number> = { train: Stream.trainTask, val: Stream.valTask, test: Stream.evalTask };

export interface SinusoidParams {
  amplitude: number;
  phase: number;
}

/** The function parameters of one task (exposed so tests and baselines can check the draw). */
export function sinusoidParams(rng: Rng): SinusoidParams {
  const amplitude = rng.uniform(0.1, 5.0);
  const phase = rng.uniform(0, Math.PI);
  return { amplitude, phase };
}

function points(rng: Rng, n: number, { amplitude, phase }: SinusoidParams): Examples {
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const xi = rng.uniform(-5, 5);
    x[i] = xi;
    y[i] = amplitude * Math.sin(xi - phase);
  }
  return { x, xShape: [n, 1], y };
}

export function sinusoidFamily(opts: SinusoidOptions = {}): TaskFamily {
  const shots = opts.shots ?? 10;
  const queryShots = opts.queryShots ?? shots;
  return {
    name: "sinusoid",
    kind: "regression",
    inputShape: [1],
    outputs: 1,
    task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task {
      const rng = new Rng(deriveSeed(seed, SPLIT_TAG[split], iteration, taskIndex));
      const fn = sinusoidParams(rng);
      return { support: points(rng, shots, fn), query: points(rng, queryShots, fn), seed: deriveSeed(seed, Stream.adaptation, SPLIT_TAG[split], iteration, taskIndex) };
    },
  };
}

export const sinusoidSpec: FamilySpec<{ family: "sinusoid"; shots: number; queryShots: number }> = {
  family: "sinusoid",
  schema: z.object({
    family: z.literal("sinusoid").describe("Sinusoid regression (MAML §5.1): amplitude U[0.1, 5], phase U[0, π], inputs U[−5, 5]."),
    shots: z.number().int().min(1).max(10_000).default(10).describe("K support points per task (MAML paper: 10)."),
    queryShots: z.number().int().min(1).max(10_000).default(10).describe("Query points per task."),
  }),
  kind: "regression",
  summary: "sinusoid regression, amplitude U[0.1, 5], phase U[0, π] (MAML §5.1)",
  shape: () => ({ inputShape: [1], outputs: 1 }),
  build: (o) => sinusoidFamily({ shots: o.shots, queryShots: o.queryShots }),
};
