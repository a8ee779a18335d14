// The one interface every learner implements, and what it is handed. A learner is one file under
// meta/algorithms/ plus one line in registry.ts; the config schema, presets, CLI help, docs, the
// resume check, the activities and evaluation all ask the registry, never compare names.
import type { z } from "zod";
import type { EvaluationResult, EvaluateOptions } from "../evaluate.js";
import type { Model } from "../models.js";
import type { OuterOptimizer } from "../optimizers.js";
import type { Params } from "../params.js";
import type { Task, TaskFamily, TaskKind } from "../tasks/types.js";
import type { RunConfig, RunConfigInput } from "../run-config.js";
import type { ShardHooks, ShardResult } from "./types.js";

/** A named configuration with a paper's hyperparameters; `config` is partial, the schema fills the rest. */
export interface Preset {
  name: string;
  description: string;
  /** Paper, section or table, and where this preset departs from it. */
  source: string;
  config: RunConfigInput;
  /** The paper's held-out figure for this setup, drawn by `metatrain report` beside a run's curve. */
  figure?: { metric: "loss" | "accuracy"; value: number; ci95?: number; label: string };
}

/** What a learner requires of the model, the task family and the engine. */
export interface LearnerNeeds {
  /** Differentiates through the inner loop (registers tfjs's missing higher-order gradients). */
  secondOrder: boolean;
  /** Task kinds it can learn. */
  taskKinds: readonly TaskKind[];
  /** Can run a shard's tasks batched over a task axis (when the model has `forwardBatched`). */
  taskBatching: boolean;
  /** Needs the model split into a body and a head (`Model.split`), e.g. ANIL. */
  headSplit?: boolean;
  /** Needs an embedding model without a classifier (metric learners: Prototypical networks). */
  embedding?: boolean;
  /** Only these model kinds carry what it needs (Relation networks: `relation-net`'s relation module). Default any that fits. */
  modelKinds?: readonly string[];
}

/** Everything a learner's methods are given for one run config. */
export interface LearnerSetup<H = unknown> {
  /**
   * The config that shaped this setup. A setup is shared by every config of the same shape
   * (activities/build.ts), so its `seed`, timeouts, failure policy and checkpoint/eval cadence may be
   * another run's: read those from the activity's own config, never from here.
   */
  config: RunConfig;
  /** The learner's own options (`config[learner.name]`), defaulted. */
  hyper: H;
  model: Model;
  /** Tasks for meta-training (may differ from test tasks, e.g. Reptile's train shots). */
  train: TaskFamily;
  /** Held-out tasks for evaluation, as `config.task` says. */
  test: TaskFamily;
}

/** The shard computation of a learner: its per-task contributions summed in task order. */
export interface ShardRunner {
  /** Whether tasks run batched over a task axis. */
  readonly batched: boolean;
  runShard(params: Params, tasks: readonly Task[], hooks?: ShardHooks): Promise<ShardResult>;
}

/** Options for evaluation, as the learner receives them. */
export type LearnerEvalOptions = Omit<EvaluateOptions, "innerLr">;

export interface Learner<H = unknown> {
  /** The `algorithm` value of a config. */
  readonly name: string;
  /** Name and paper, e.g. "MAML (Finn et al. 2017)". */
  readonly title: string;
  /** One line for `--help` and the docs: what one task contributes and how the outer step uses it. */
  readonly summary: string;
  /** Options beyond the shared keys, under `config[name]`, with the papers' names and defaults. */
  readonly options: z.ZodObject;
  readonly needs: LearnerNeeds;
  /**
   * Names the layout of the meta-parameters and optimizer state it checkpoints: learners with the
   * same layout can resume each other's checkpoints (MAML from FOMAML), others cannot.
   */
  readonly stateLayout: string;
  /** Option names a checkpoint ties down (changing them on resume is refused). */
  readonly pins: readonly string[];
  readonly presets: readonly Preset[];
  /** Train-time task overrides (e.g. Reptile trains on more shots than it tests on). Default none. */
  trainTask?(config: RunConfig, hyper: H): { shots?: number; queryShots?: number; ways?: number };
  /** Initial meta-parameters: the model's, plus any the learner owns (names under `LEARNER_PARAM_PREFIX`). */
  init(s: LearnerSetup<H>, seed: number): Params;
  /** The coordinator's update from the shard sums, with serializable state. */
  outer(s: LearnerSetup<H>): OuterOptimizer;
  shardRunner(s: LearnerSetup<H>): ShardRunner;
  /** Test-time adaptation and prediction on held-out tasks. */
  evaluate(s: LearnerSetup<H>, params: Params, o: LearnerEvalOptions): Promise<EvaluationResult>;
}

/**
 * Meta-parameters a learner owns beyond the model's are named `learner/<name>` (e.g. Meta-SGD's
 * `learner/lr/dense0/kernel`), so the model's parameters can be told apart for export.
 */
export const LEARNER_PARAM_PREFIX = "learner/";

/** The model's own parameters of a meta-parameter map (what `metatrain export` writes). */
export function modelParamsOf(p: Params): Params {
  const out: Params = {};
  for (const k of Object.keys(p)) if (!k.startsWith(LEARNER_PARAM_PREFIX)) out[k] = p[k]!;
  return out;
}

/** Identity with a type: lets a learner file declare its options' type once. */
export const defineLearner = <H>(l: Learner<H>): Learner<H> => l;
