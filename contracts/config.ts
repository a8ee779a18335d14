// The run-config fields every learner shares — orchestration (iterations, shards, checkpoints,
// failure policy, timeouts) and the common step sizes — as one zod schema with its defaults. The
// full schema adds the learner, model and task-family parts from their registries
// (meta/run-config.ts); the workflow reads only this part, so it stays free of tfjs.
import { z } from "zod";
import { unknownKeyLine } from "./names.js";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const positive = () => z.number().positive().finite();

// Nested objects are strict: a misspelt key is an error with the nearest name, never dropped.
export const FailurePolicySchema = z.strictObject({
  minShardFraction: z
    .number()
    .gt(0)
    .max(1)
    .default(1)
    .describe(
      "Fraction of shards an iteration needs. 1 (default): every shard, bit-identical results. Below 1: after `shardDeadlineSeconds`, go on with the shards that finished — this gives up bit-identical results, since the outer step then averages another set of tasks.",
    ),
  shardDeadlineSeconds: int(1).default(600).describe("With minShardFraction < 1: how long to wait for the rest once enough shards are done."),
});

export const TimeoutsSchema = z.strictObject({
  shardStartToCloseSeconds: int(1).default(1800).describe("One shard activity, from start to close."),
  heartbeatSeconds: int(1)
    .default(30)
    .describe("Heartbeat timeout of a shard activity until the run has seen its shards run (and the most it grows to): a silent worker is presumed dead and its shard retried elsewhere."),
  heartbeatMinSeconds: int(1)
    .default(5)
    .describe(
      "The least heartbeat timeout. Once shards have run, the timeout is 3× the longest silence a shard of this run has shown, plus 2 s, between this and heartbeatSeconds: a killed gpu worker costs seconds, not heartbeatSeconds. Equal to heartbeatSeconds: a fixed timeout.",
    ),
  coordinatorStartToCloseSeconds: int(1).default(600).describe("Outer step, checkpoint and evaluation activities."),
  maximumAttempts: int(1, 100).default(10).describe("Attempts per activity before the run fails (transient errors only)."),
});

/** The shared keys, in the order the configuration reference lists them. */
export const commonConfigShape = {
  innerSteps: int(1, 1000).default(1).describe("Inner steps k per task during meta-training (gradient-based learners)."),
  innerLr: positive().default(0.01).describe("Inner step size α (Meta-SGD: the initial α)."),
  metaLr: positive().default(0.001).describe("Outer step size: Adam's β for MAML, FOMAML, Meta-SGD and ANIL; Reptile's ε (annealed as its options say)."),
  metaBatchSize: int(1, 100_000).default(25).describe("Tasks per meta-iteration."),
  shardSize: int(1, 100_000).default(5).describe("Tasks per shard activity. Fixed by the config (never by the worker count) for determinism."),
  batchTasks: z
    .boolean()
    .default(true)
    .describe("Run a shard's tasks batched over a task axis where the model and learner allow it (MLPs; about 10× faster on the native backend)."),
  iterations: int(1, 10_000_000).default(100).describe("Meta-iterations in the run."),
  seed: int(0, 0xffffffff).default(1).describe("Run seed: the initialisation and every task derive from it."),
  checkpointEvery: int(1).default(10).describe("Write a checkpoint every N iterations (and always at the end)."),
  evalEvery: int(0).default(0).describe("Evaluate on held-out tasks every M iterations (0: only at the end)."),
  evalTasks: int(1, 100_000).default(100).describe("Held-out tasks per evaluation."),
  evalSteps: int(0, 10_000).default(10).describe("Test-time inner steps (papers test with more steps than they train with)."),
  continueAsNewEvery: int(1, 10_000).default(100).describe("Continue-as-new every N iterations, to keep workflow history small."),
  localOuterStep: z
    .boolean()
    .default(true)
    .describe(
      "Run the outer step and checkpoint writes as local activities in the coordinator process that runs the workflow (saves a task-queue round trip and a workflow task per iteration). false: ordinary activities on the coordinator queue, which any coordinator may pick up.",
    ),
  failurePolicy: FailurePolicySchema.prefault({}),
  timeouts: TimeoutsSchema.prefault({}),
};

/**
 * What the workflow validates at entry: the shared keys, strictly; `algorithm`, `task`, `model`
 * and the learner's own options pass through untouched and are validated by the full schema in
 * the activities (initRun, loadCheckpoint) and in the CLI.
 */
export const OrchestrationSchema = z
  .object({
    algorithm: z.string().default("maml"),
    ...commonConfigShape,
  })
  .loose()
  .superRefine((c, ctx) => {
    if (c.shardSize > c.metaBatchSize) {
      ctx.addIssue({ code: "custom", path: ["shardSize"], message: `shardSize ${c.shardSize} exceeds metaBatchSize ${c.metaBatchSize}; set shardSize ≤ metaBatchSize` });
    }
  });

const CommonSchema = z.object({ algorithm: z.string(), ...commonConfigShape });
/** The shared keys of a parsed config. */
export type CommonConfig = z.infer<typeof CommonSchema>;

/** A run config as it crosses a process boundary: the shared keys typed, the rest as JSON. */
export type RunConfigJson = CommonConfig & {
  task: { family: string; [k: string]: unknown };
  model: { kind: string; [k: string]: unknown };
  [learnerOptions: string]: unknown;
};

/** A config that failed validation; `problems` are `path: message` lines a user can act on. */
export class InvalidRunConfigError extends Error {
  override readonly name = "InvalidRunConfig";
  constructor(readonly problems: string[]) {
    super(`invalid run config: ${problems.join("; ")}`);
  }
}

// zod 4 internals read to find an object's keys at a path: def.type, def.innerType, def.in, def.shape, def.options, def.discriminator.
type ZodDef = { type: string; innerType?: ZodLike; in?: ZodLike; shape?: Record<string, ZodLike>; options?: ZodLike[]; discriminator?: string };
type ZodLike = { def: ZodDef; safeParse?: (v: unknown) => { success: boolean } };
const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly", "catch", "nonoptional"]);

/** The keys of the object schema at `path` in `schema`, following a discriminated union by the value in `input`. */
export function objectKeysAt(schema: unknown, path: readonly PropertyKey[], input: unknown): string[] | undefined {
  let s = schema as ZodLike | undefined;
  let v = input;
  for (let i = 0; s; i++) {
    for (let n = 0; n < 10 && s && (WRAPPERS.has(s.def.type) || s.def.type === "pipe"); n++) s = s.def.type === "pipe" ? s.def.in : s.def.innerType;
    if (!s) return undefined;
    if (s.def.type === "union" && s.def.discriminator) {
      const disc = s.def.discriminator;
      const tag = v && typeof v === "object" ? (v as Record<string, unknown>)[disc] : undefined;
      s = s.def.options?.find((o) => o.def.shape?.[disc]?.safeParse?.(tag).success);
      if (!s) return undefined;
    }
    if (s.def.type !== "object" || !s.def.shape) return undefined;
    if (i === path.length) return Object.keys(s.def.shape);
    const p = String(path[i]);
    s = s.def.shape[p];
    v = v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined;
  }
  return undefined;
}

/**
 * `path: message` lines for zod issues; an unknown key names the nearest valid one when `schema`
 * (and the `input` it parsed, to follow discriminated unions) are given.
 */
export function issueLines(issues: readonly z.core.$ZodIssue[], schema?: unknown, input?: unknown): string[] {
  return issues.flatMap((i) => {
    if (i.code === "unrecognized_keys" && schema !== undefined) {
      const valid = objectKeysAt(schema, i.path, input) ?? [];
      return i.keys.map((k) => unknownKeyLine(i.path.map(String).join("."), k, valid));
    }
    return [`${i.path.length ? i.path.join(".") : "(config)"}: ${i.message}`];
  });
}

/**
 * Top-level keys the workflow cannot place: the shared keys, `algorithm`, `task`, `model` and the
 * chosen learner's options section (named as the algorithm) are known; anything else is a typo or
 * another learner's options. The full schema (activities, CLI) checks the rest strictly.
 */
function unknownTopLevelKeys(input: Record<string, unknown>, algorithm: string): string[] {
  const known = ["algorithm", "task", "model", ...Object.keys(commonConfigShape)];
  return Object.keys(input)
    .filter((k) => !known.includes(k) && k !== algorithm)
    .map((k) => unknownKeyLine("", k, [...known, algorithm]));
}

/** Parse the shared keys (workflow side), or throw InvalidRunConfigError saying what to fix. */
export function parseOrchestration(input: unknown): RunConfigJson {
  const raw = input ?? {};
  const r = OrchestrationSchema.safeParse(raw);
  if (!r.success) throw new InvalidRunConfigError(issueLines(r.error.issues, OrchestrationSchema, raw));
  const unknown = unknownTopLevelKeys(raw as Record<string, unknown>, r.data.algorithm);
  if (unknown.length) throw new InvalidRunConfigError(unknown);
  return r.data as RunConfigJson;
}

/** Shards of one iteration: consecutive task ranges of `shardSize`, the last possibly shorter. */
export function shardPlan(c: Pick<RunConfigJson, "metaBatchSize" | "shardSize">): { index: number; taskStart: number; taskEnd: number }[] {
  const out = [];
  for (let s = 0, i = 0; s < c.metaBatchSize; s += c.shardSize, i++) out.push({ index: i, taskStart: s, taskEnd: Math.min(c.metaBatchSize, s + c.shardSize) });
  return out;
}
