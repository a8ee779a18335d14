// The run configuration: one zod schema, defaults written here and nowhere else. What crosses a
// process boundary (CLI → workflow → activities) is the parsed, fully defaulted JSON.
import { z } from "zod";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const positive = () => z.number().positive().finite();

export const SinusoidTaskSchema = z.object({
  family: z.literal("sinusoid"),
  /** K support points per task (MAML paper: 10). */
  shots: int(1, 10_000).default(10),
  /** Query points per task. */
  queryShots: int(1, 10_000).default(10),
});

export const OmniglotTaskSchema = z.object({
  family: z.literal("omniglot"),
  /** `vinyals`: 1200 train / 423 test characters with rotations; `background-evaluation`: the authors' split. */
  split: z.enum(["vinyals", "background-evaluation"]).default("vinyals"),
  ways: int(2, 1000).default(5),
  shots: int(1, 19).default(1),
  queryShots: int(1, 19).default(15),
  /** Directory of the packed dataset; default `METATRAIN_OMNIGLOT_DIR` or the repository's shared data. */
  dataDir: z.string().optional(),
});

export const TaskSchema = z.discriminatedUnion("family", [SinusoidTaskSchema, OmniglotTaskSchema]);

export const ModelSchema = z.object({
  /** `sinusoid-mlp` 1-40-40-1; `omniglot-mlp` 784-256-128-64-64-N; `conv4` 4 × [3×3 conv, BN, ReLU, pool]. */
  kind: z.enum(["sinusoid-mlp", "omniglot-mlp", "conv4"]).default("sinusoid-mlp"),
  /** Batch norm (transductive: batch statistics) in omniglot-mlp and conv4. */
  batchNorm: z.boolean().default(true),
  /** conv4 downsampling: 2×2 max-pool or stride-2 convolutions. */
  downsample: z.enum(["maxpool", "stride"]).default("stride"),
  /** conv4 filters per layer. */
  filters: int(1, 1024).default(64),
});

export const FailurePolicySchema = z.object({
  /**
   * Fraction of shards an iteration needs. 1 (default): every shard, bit-identical results.
   * Below 1: after `shardDeadlineSeconds`, go on with the shards that finished — this gives up
   * bit-identical results, since the outer step then averages another set of tasks.
   */
  minShardFraction: z.number().gt(0).max(1).default(1),
  /** With minShardFraction < 1: how long to wait for the rest once enough shards are done. */
  shardDeadlineSeconds: int(1).default(600),
});

export const TimeoutsSchema = z.object({
  /** One shard activity, from start to close. */
  shardStartToCloseSeconds: int(1).default(1800),
  /** A shard activity must heartbeat within this; a silent worker is presumed dead. */
  heartbeatSeconds: int(1).default(30),
  /** Outer step, checkpoint and evaluation activities. */
  coordinatorStartToCloseSeconds: int(1).default(600),
  /** Attempts per activity before the run fails (transient errors only). */
  maximumAttempts: int(1, 100).default(10),
});

export const RunConfigSchema = z
  .object({
    algorithm: z.enum(["maml", "fomaml", "reptile"]).default("maml"),
    task: TaskSchema.default({ family: "sinusoid", shots: 10, queryShots: 10 }),
    model: ModelSchema.default({ kind: "sinusoid-mlp", batchNorm: true, downsample: "stride", filters: 64 }),
    /** Inner SGD steps k per task during meta-training. */
    innerSteps: int(1, 1000).default(1),
    /** Inner step size α. */
    innerLr: positive().default(0.01),
    /** Outer step size: Adam's β for (FO)MAML; Reptile's initial ε (annealed linearly to 0). */
    metaLr: positive().default(0.001),
    /** Reptile: anneal ε linearly to 0 over the run. */
    anneal: z.boolean().default(true),
    /** Tasks per meta-iteration. */
    metaBatchSize: int(1, 100_000).default(25),
    /** Tasks per shard activity. Fixed by the config (never by the worker count) for determinism. */
    shardSize: int(1, 100_000).default(5),
    /** Run a shard's tasks batched over a task axis (MLPs; 10× faster on the native backend). */
    batchTasks: z.boolean().default(true),
    /** Meta-iterations in the run. */
    iterations: int(1, 10_000_000).default(100),
    /** Run seed: the initialisation and every task derive from it. */
    seed: int(0, 0xffffffff).default(1),
    /** Write a checkpoint every N iterations (and always at the end). */
    checkpointEvery: int(1).default(10),
    /** Evaluate on held-out tasks every M iterations (0: only at the end). */
    evalEvery: int(0).default(0),
    evalTasks: int(1, 100_000).default(100),
    /** Test-time inner steps (papers test with more steps than they train with). */
    evalSteps: int(0, 10_000).default(10),
    /** Continue-as-new every N iterations, to keep workflow history small. */
    continueAsNewEvery: int(1, 10_000).default(100),
    failurePolicy: FailurePolicySchema.default({ minShardFraction: 1, shardDeadlineSeconds: 600 }),
    timeouts: TimeoutsSchema.default({ shardStartToCloseSeconds: 1800, heartbeatSeconds: 30, coordinatorStartToCloseSeconds: 600, maximumAttempts: 10 }),
  })
  .strict()
  .superRefine((c, ctx) => {
    const image = c.task.family !== "sinusoid";
    if (c.model.kind === "sinusoid-mlp" && image) {
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `sinusoid-mlp fits the sinusoid family only; use omniglot-mlp or conv4 for ${c.task.family}` });
    }
    if (c.model.kind !== "sinusoid-mlp" && !image) {
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `${c.model.kind} needs an image task family; use sinusoid-mlp for sinusoid` });
    }
    if (c.shardSize > c.metaBatchSize) {
      ctx.addIssue({ code: "custom", path: ["shardSize"], message: `shardSize ${c.shardSize} exceeds metaBatchSize ${c.metaBatchSize}; set shardSize ≤ metaBatchSize` });
    }
  });

export type RunConfig = z.infer<typeof RunConfigSchema>;
export type RunConfigInput = z.input<typeof RunConfigSchema>;

/** A config that failed validation; `problems` are `path: message` lines a user can act on. */
export class InvalidRunConfigError extends Error {
  override readonly name = "InvalidRunConfig";
  constructor(readonly problems: string[]) {
    super(`invalid run config: ${problems.join("; ")}`);
  }
}

/** Parse and default a run config, or throw InvalidRunConfigError saying what to fix. */
export function parseRunConfig(input: unknown): RunConfig {
  const r = RunConfigSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  throw new InvalidRunConfigError(
    r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(config)"}: ${i.message}`),
  );
}

/** Shards of one iteration: consecutive task ranges of `shardSize`, the last possibly shorter. */
export function shardPlan(c: Pick<RunConfig, "metaBatchSize" | "shardSize">): { index: number; taskStart: number; taskEnd: number }[] {
  const out = [];
  for (let s = 0, i = 0; s < c.metaBatchSize; s += c.shardSize, i++) out.push({ index: i, taskStart: s, taskEnd: Math.min(c.metaBatchSize, s + c.shardSize) });
  return out;
}
