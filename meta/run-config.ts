// The full run configuration: the shared keys (contracts/config.ts) plus what the registries declare
// — the learner (`algorithm` and its own options under `config[algorithm]`), the model (`model.*`)
// and the task family (`task.*`) — validated as one strict zod schema with defaults in one place.
// Also what follows from a config: the learner's setup, and whether a checkpoint can resume it.
import { z } from "zod";
import { commonConfigShape, InvalidRunConfigError, issueLines, type CommonConfig } from "../contracts/config.js";
import { findLearner, LEARNERS } from "./algorithms/registry.js";
import type { Learner, LearnerSetup } from "./algorithms/learner.js";
import { FAMILIES, MODELS, findFamily, findModel, type ModelConfig, type TaskConfig } from "./registry.js";
import type { Params } from "./params.js";
import { deriveSeed, Stream } from "./rng.js";
import type { DataPort, TaskFamily } from "./tasks/types.js";

const hasOptions = (l: Learner<unknown>) => Object.keys(l.options.shape).length > 0;

const learnerSections = Object.fromEntries(
  LEARNERS.filter(hasOptions).map((l) => [l.name, l.options.strict().optional().describe(`Options of ${l.title}, when algorithm is ${l.name}.`)]),
);

const algorithmHelp = "The learner: " + LEARNERS.map((l) => `\`${l.name}\` — ${l.title}: ${l.summary}`).join("; ") + ".";

export const RunConfigSchema = z
  .object({
    algorithm: z.enum(LEARNERS.map((l) => l.name) as [string, ...string[]]).default("maml").describe(algorithmHelp),
    task: z
      .discriminatedUnion("family", FAMILIES.map((f) => f.schema.strict()) as unknown as [z.ZodObject, ...z.ZodObject[]])
      .prefault({ family: "sinusoid" })
      .describe("Task family: " + FAMILIES.map((f) => `\`${f.family}\` (${f.summary})`).join(", ") + "."),
    model: z
      .discriminatedUnion("kind", MODELS.map((m) => m.schema.strict()) as unknown as [z.ZodObject, ...z.ZodObject[]])
      .prefault({ kind: "sinusoid-mlp" })
      .describe("Model: " + MODELS.map((m) => `\`${m.kind}\` (${m.summary})`).join(", ") + "."),
    ...commonConfigShape,
    ...learnerSections,
  })
  .strict()
  .superRefine((c, ctx) => {
    const learner = findLearner(c.algorithm)!;
    const family = findFamily((c.task as { family: string }).family)!;
    const model = findModel((c.model as { kind: string }).kind)!;
    for (const other of LEARNERS) {
      if (other !== learner && (c as Record<string, unknown>)[other.name] !== undefined) {
        ctx.addIssue({ code: "custom", path: [other.name], message: `options for ${other.name} given, but algorithm is ${learner.name}; remove them or set algorithm: ${other.name}` });
      }
    }
    for (const l of family.limits?.(c.task as never) ?? []) ctx.addIssue({ code: "custom", path: ["task", l.key], message: l.message });
    if (!model.fits.includes(family.kind)) {
      const fitting = MODELS.filter((m) => m.fits.includes(family.kind)).map((m) => m.kind).join(" or ");
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `${model.kind} does not fit ${family.kind} tasks (${family.family}); use ${fitting}` });
    } else {
      const why = model.mismatch?.({ name: family.family, kind: family.kind, ...family.shape(c.task as never) });
      if (why) ctx.addIssue({ code: "custom", path: ["model", "kind"], message: why });
    }
    if (!learner.needs.taskKinds.includes(family.kind)) {
      ctx.addIssue({ code: "custom", path: ["algorithm"], message: `${learner.name} learns ${learner.needs.taskKinds.join(" and ")} tasks, not ${family.kind} (${family.family})` });
    }
    if ((learner.needs.embedding ?? false) !== (model.embedding ?? false)) {
      const ok = MODELS.filter((m) => (m.embedding ?? false) === (learner.needs.embedding ?? false) && m.fits.includes(family.kind)).map((m) => m.kind).join(" or ");
      const what = learner.needs.embedding ? "an embedding model without a classifier" : "a model with a classifier";
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `${learner.name} needs ${what}; ${model.kind} is not one — use ${ok}` });
    }
    const kinds = learner.needs.modelKinds;
    if (kinds && !kinds.includes(model.kind)) {
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `${learner.name} needs a ${kinds.join(" or ")} model; ${model.kind} is not one — set model.kind: ${kinds[0]}` });
    }
    if (learner.needs.headSplit && !model.headSplit) {
      const ok = MODELS.filter((m) => m.headSplit && m.fits.includes(family.kind)).map((m) => m.kind).join(" or ");
      ctx.addIssue({ code: "custom", path: ["model", "kind"], message: `${learner.name} adapts a head on a body; ${model.kind} has no such split — use ${ok}` });
    }
    if (c.shardSize > c.metaBatchSize) {
      ctx.addIssue({ code: "custom", path: ["shardSize"], message: `shardSize ${c.shardSize} exceeds metaBatchSize ${c.metaBatchSize}; set shardSize ≤ metaBatchSize` });
    }
  });

/** A parsed, fully defaulted run config. `config[config.algorithm]` holds the learner's options. */
export type RunConfig = CommonConfig & {
  task: TaskConfig;
  model: ModelConfig;
  [learnerOptions: string]: unknown;
};

/** What a user or a preset writes: any subset, the schema fills the rest. */
export type RunConfigInput = { [key: string]: unknown } & {
  algorithm?: string;
  task?: { family: string; [k: string]: unknown };
  model?: { kind: string; [k: string]: unknown };
};

/** Parse and default a run config, or throw InvalidRunConfigError saying what to fix. */
export function parseRunConfig(input: unknown): RunConfig {
  const r = RunConfigSchema.safeParse(input ?? {});
  if (!r.success) throw new InvalidRunConfigError(issueLines(r.error.issues, RunConfigSchema, input ?? {}));
  const c = r.data as unknown as RunConfig;
  const learner = findLearner(c.algorithm)!;
  // The chosen learner's options, defaulted, so every process sees the same values.
  if (hasOptions(learner)) c[learner.name] = learner.options.parse(c[learner.name] ?? {});
  return c;
}

/** The learner a parsed config names. */
export function learnerOf(config: RunConfig): Learner<any> {
  return findLearner(config.algorithm)!;
}

/** The learner's own options of a parsed config (`{}` for learners without any). */
export function optionsOf<H>(config: RunConfig): H {
  return (config[config.algorithm] ?? {}) as H;
}

/** A config resolved into the engine's objects. */
export interface ResolvedRun {
  learner: Learner<any>;
  setup: LearnerSetup<any>;
}

function family(task: TaskConfig, overrides: object, data: DataPort): TaskFamily {
  const spec = findFamily(task.family)!;
  return spec.build(spec.schema.parse({ ...task, ...overrides }) as never, data);
}

/** Model, train and test task families and the learner of a parsed config. */
export function resolveRun(config: RunConfig, data: DataPort): ResolvedRun {
  const learner = learnerOf(config);
  const hyper = optionsOf(config);
  const test = family(config.task, {}, data);
  const overrides = learner.trainTask?.(config, hyper) ?? {};
  const train = Object.keys(overrides).length ? family(config.task, overrides, data) : test;
  const spec = findModel(config.model.kind)!;
  const model = spec.build(config.model as never, { inputShape: test.inputShape, outputs: test.outputs });
  return { learner, setup: { config, hyper, model, train, test } };
}

/**
 * The initial meta-parameters of a run: a pure function of its shape and `seed`. The seed is the
 * caller's, never `run.setup.config.seed`: a resolved run is shared (BuildCache) by every config of
 * the same shape, whatever their seeds.
 */
export function initialParams(run: ResolvedRun, seed: number): Params {
  return run.learner.init(run.setup, deriveSeed(seed, Stream.init));
}

/**
 * Why a checkpoint trained under `checkpoint` cannot continue under `requested` (empty when it
 * can): the parameters' shapes (model, output units), the optimizer state's layout (the learner's
 * `stateLayout`), the options the learner pins, and the iteration count.
 */
export function resumeIncompatibilities(checkpoint: RunConfig, requested: RunConfig, checkpointIteration: number): string[] {
  const problems: string[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  const from = learnerOf(checkpoint);
  const to = learnerOf(requested);
  if (from.stateLayout !== to.stateLayout) {
    problems.push(`algorithm: the checkpoint was trained with ${from.name}, whose meta-parameters and optimizer state ${to.name} cannot use; keep algorithm "${from.name}"`);
  } else if (from === to) {
    const a = optionsOf<Record<string, unknown>>(checkpoint);
    const b = optionsOf<Record<string, unknown>>(requested);
    for (const pin of to.pins) {
      if (!same(a[pin], b[pin])) problems.push(`${to.name}.${pin}: the checkpoint was trained with ${JSON.stringify(a[pin])}; keep it`);
    }
  }
  if (!same(checkpoint.model, requested.model)) {
    problems.push(`model: the checkpoint's parameters are for model ${JSON.stringify(checkpoint.model)}; keep that model`);
  }
  if (checkpoint.task.family !== requested.task.family) {
    problems.push(`task.family: the checkpoint was trained on ${checkpoint.task.family}; keep that task family`);
  } else if (!findModel(checkpoint.model.kind)?.embedding) {
    // A classifier's output layer has one unit per way; an embedding's does not depend on them.
    const spec = findFamily(checkpoint.task.family)!;
    const a = spec.shape(checkpoint.task as never).outputs;
    const b = spec.shape(requested.task as never).outputs;
    if (a !== b) problems.push(`task.ways: the checkpoint's output layer has ${a} outputs; keep ways ${a}`);
  }
  if (requested.iterations < checkpointIteration) {
    problems.push(`iterations: the checkpoint is at iteration ${checkpointIteration}, past iterations ${requested.iterations}; set iterations ≥ ${checkpointIteration}`);
  }
  return problems;
}

/** A learner's shard runner over a given model and task kind, outside a full run (tests, benchmarks). */
export function runnerFor(o: {
  algorithm: string;
  model: import("./models.js").Model;
  kind: import("./tasks/types.js").TaskKind;
  innerSteps: number;
  innerLr: number;
  /** Default false (one task at a time). */
  batchTasks?: boolean;
  /** The learner's own options (its schema's defaults otherwise). */
  options?: Record<string, unknown>;
  /** Classes of a classification task (one-hot width); default the model's outputs (an embedding's are its features). */
  classes?: number;
  /** More of the config, where the learner's checks need it (an episodic learner's task and model kind); the runner uses `model` as given. */
  config?: RunConfigInput;
}): import("./algorithms/learner.js").ShardRunner {
  const learner = findLearner(o.algorithm);
  if (!learner) throw new Error(`no learner '${o.algorithm}'`);
  const config = parseRunConfig({ ...o.config, algorithm: o.algorithm, innerSteps: o.innerSteps, innerLr: o.innerLr, batchTasks: o.batchTasks ?? false, ...(o.options ? { [o.algorithm]: o.options } : {}) });
  const family: TaskFamily = { kind: o.kind, name: "given", inputShape: o.model.inputShape, outputs: o.classes ?? o.model.outputs, task: () => { throw new Error("runnerFor: tasks are passed to runShard"); } };
  return learner.shardRunner({ config, hyper: optionsOf(config), model: o.model, train: family, test: family });
}
