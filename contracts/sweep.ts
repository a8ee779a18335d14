// A hyperparameter sweep: its spec, its trials and the successive-halving schedule, as pure
// functions shared by the CLI (which validates a spec before starting it) and the sweep workflow
// (workflows/sweep.ts, which must decide the same way on every replay). No I/O, no clock, no
// Math.random: every random draw comes from the sweep's seed.
import { z } from "zod";

/** Workflow type of a sweep (the CLI starts it by name). */
export const SWEEP_WORKFLOW_TYPE = "sweepWorkflow";

const numberList = z.array(z.number().finite()).min(1);

/** One swept key: a list of values (grid), or a range to draw from (random search). */
export const SweepParameterSchema = z.union([
  z.strictObject({
    key: z.string().min(1).describe("A run-config key, dotted for nested ones (innerLr, maml.firstOrder, task.shots)."),
    values: z.union([numberList, z.array(z.boolean()).min(1), z.array(z.string()).min(1)]),
  }),
  z.strictObject({
    key: z.string().min(1),
    lo: z.number().finite(),
    hi: z.number().finite(),
    log: z.boolean().default(false).describe("Draw log-uniformly (step sizes): lo and hi must be > 0."),
  }),
]);
export type SweepParameter = z.infer<typeof SweepParameterSchema>;

export const SweepSpecSchema = z
  .strictObject({
    /** The run config every trial starts from (resolved and validated by the CLI). */
    base: z.record(z.string(), z.unknown()),
    parameters: z.array(SweepParameterSchema).min(1),
    samples: z.int().min(1).max(1000).default(1).describe("Random draws per grid point (ranges only)."),
    seed: z.int().min(0).max(0xffffffff).default(1).describe("Seed of the random draws."),
    concurrency: z.int().min(1).max(100).default(2).describe("Trial runs at once."),
    eta: z.int().min(2).max(10).default(3).describe("Successive halving: keep the best 1/eta at each rung."),
    minIterations: z.int().min(1).describe("Iterations of the first rung."),
    maxIterations: z.int().min(1).describe("Iterations a surviving trial is trained to."),
  })
  .refine((s) => s.minIterations <= s.maxIterations, { message: "minIterations must be at most maxIterations", path: ["minIterations"] })
  .refine((s) => s.parameters.every((p) => !("lo" in p) || (p.lo < p.hi && (!p.log || p.lo > 0))), {
    message: "each range needs lo < hi (and lo > 0 when log)",
    path: ["parameters"],
  });
export type SweepSpec = z.infer<typeof SweepSpecSchema>;

export interface SweepInput {
  sweepId: string;
  spec: SweepSpec;
}

/** One trial: its index and the values it sets. */
export interface Trial {
  index: number;
  values: Record<string, number | boolean | string>;
}

/** Where a trial stands. */
export interface TrialStatus extends Trial {
  state: "pending" | "running" | "stopped" | "finished" | "failed";
  /** Child run ids, one per rung it reached. */
  runs: string[];
  /** Its held-out score at each rung reached (higher is better: accuracy, or −loss). */
  scores: number[];
  /** Iterations reached. */
  iteration: number;
  error?: string;
  /** The last checkpoint of its latest run (what a next rung resumes from). */
  checkpoint?: string;
}

export interface SweepProgress {
  sweepId: string;
  rung: number;
  budgets: number[];
  metric: string;
  trials: TrialStatus[];
  /** Set once the last rung is done. */
  winner?: number;
}

export interface SweepResult extends SweepProgress {
  winner: number;
}

/** 32-bit mix (splitmix32-style): the k-th draw of stream `seed`, uniform in [0, 1). */
export function uniform(seed: number, k: number): number {
  let z = (seed ^ Math.imul(k + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  return z / 2 ** 32;
}

/**
 * The trials of a spec, in a fixed order: the grid's cartesian product (first key slowest), each
 * grid point with `samples` draws of the ranges (draw d of trial t, parameter p from stream
 * (seed, t·P + p)).
 */
export function sweepTrials(spec: Pick<SweepSpec, "parameters" | "samples" | "seed">): Trial[] {
  const grid = spec.parameters.filter((p): p is Extract<SweepParameter, { values: unknown }> => "values" in p);
  const ranges = spec.parameters.filter((p): p is Extract<SweepParameter, { lo: number }> => "lo" in p);
  let points: Record<string, number | boolean | string>[] = [{}];
  for (const g of grid) points = points.flatMap((pt) => (g.values as (number | boolean | string)[]).map((v) => ({ ...pt, [g.key]: v })));
  const samples = ranges.length ? spec.samples : 1;
  const trials: Trial[] = [];
  for (const pt of points) {
    for (let d = 0; d < samples; d++) {
      const index = trials.length;
      const values = { ...pt };
      ranges.forEach((r, p) => {
        const u = uniform(spec.seed, index * spec.parameters.length + p);
        values[r.key] = r.log ? Math.exp(Math.log(r.lo) + u * (Math.log(r.hi) - Math.log(r.lo))) : r.lo + u * (r.hi - r.lo);
      });
      trials.push({ index, values });
    }
  }
  return trials;
}

/**
 * Iterations of each rung: minIterations·eta^k while below maxIterations, then maxIterations.
 * E.g. min 10, max 90, eta 3 → [10, 30, 90]; min 10, max 50 → [10, 30, 50].
 */
export function rungBudgets(spec: Pick<SweepSpec, "minIterations" | "maxIterations" | "eta">): number[] {
  const out: number[] = [];
  for (let b = spec.minIterations; b < spec.maxIterations; b *= spec.eta) out.push(b);
  out.push(spec.maxIterations);
  return out;
}

/** How many of `n` trials go on to the next rung: the best ⌊n/eta⌋, at least 1. */
export function survivors(n: number, eta: number): number {
  return Math.max(1, Math.floor(n / eta));
}

/**
 * The best `keep` of `scored` (index, score): highest score first, ties to the lower trial index;
 * a failed trial (score NaN) never goes on.
 */
export function promote(scored: readonly { index: number; score: number }[], keep: number): number[] {
  return scored
    .filter((s) => Number.isFinite(s.score))
    .sort((a, b) => b.score - a.score || a.index - b.index)
    .slice(0, keep)
    .map((s) => s.index);
}

/** A config with one dotted key set (copies along the path; the input is not changed). */
export function setKey(config: Record<string, unknown>, dotted: string, value: unknown): Record<string, unknown> {
  const [head, ...rest] = dotted.split(".");
  if (!rest.length) return { ...config, [head!]: value };
  const inner = config[head!];
  const obj = typeof inner === "object" && inner !== null && !Array.isArray(inner) ? (inner as Record<string, unknown>) : {};
  return { ...config, [head!]: setKey(obj, rest.join("."), value) };
}

/** The run config of a trial at a rung. */
export function trialConfig(spec: Pick<SweepSpec, "base">, trial: Trial, iterations: number): Record<string, unknown> {
  let c: Record<string, unknown> = { ...spec.base };
  for (const [k, v] of Object.entries(trial.values)) c = setKey(c, k, v);
  return setKey(c, "iterations", iterations);
}

/** Child run id of a trial at a rung: `<sweep>-t<trial>-r<rung>`. */
export function trialRunId(sweepId: string, trial: number, rung: number): string {
  return `${sweepId}-t${trial}-r${rung}`;
}
