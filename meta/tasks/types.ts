// What a task is: support and query sets as plain typed arrays, made by a pure function of
// (seed, split, iteration, taskIndex). Tensors are built from them by the algorithm, not here.

/** One set of examples: inputs `x` (shape `xShape`, first dim = examples) and targets `y`. */
export interface Examples {
  x: Float32Array;
  xShape: number[];
  /** Regression: float targets, shape [n, outputs]. Classification: class index per example. */
  y: Float32Array | Int32Array;
}

/**
 * `regression` and `classification`: adapt on `support`, evaluate on `query`. `sequence`: one
 * episode as a sequence of steps (meta/tasks/sequence.ts): `query` holds the steps in order (each
 * input carries the previous step's label), `support` is empty; learners of other kinds refuse it.
 * `rl`: a goal of an environment (meta/envs/); the learner simulates its own rollouts from the task's
 * `goal` and `seed`, `support` and `query` are empty; it has no examples to turn into tensors.
 */
export type TaskKind = "regression" | "classification" | "sequence" | "rl";

/** One few-shot task: adapt on `support`, evaluate on `query`. */
export interface Task {
  support: Examples;
  query: Examples;
  /**
   * Seed for randomness inside the task's adaptation (e.g. Reptile's minibatch order), derived
   * from the same (seed, split, iteration, taskIndex) as the task itself.
   */
  seed: number;
  /**
   * `rl` tasks only: the environment's task parameters (point-2d: the goal position), drawn by the
   * family from the same (seed, split, iteration, taskIndex). Rollouts draw their noise from `seed`.
   */
  goal?: Float64Array;
}

/** Which pool of classes or functions a task is drawn from. */
export type TaskSplit = "train" | "val" | "test";

/** A family of tasks. `task` must be pure: equal arguments give equal bytes, on any machine. */
export interface TaskFamily {
  readonly name: string;
  readonly kind: TaskKind;
  /** Shape of one input example, e.g. [1] for sinusoid, [28, 28, 1] for Omniglot. */
  readonly inputShape: number[];
  /** Output units: 1 for sinusoid regression, `ways` for N-way classification. */
  readonly outputs: number;
  /** `rl` families only: the environment whose goals the tasks are (inputs: its observation, outputs: its action). */
  readonly env?: import("../envs/types.js").Environment;
  task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task;
}

/** Data sets a family may need, supplied by the process (storage/datasets.ts): meta/ reads no files. */
export interface DataPort {
  /** Both Omniglot sets at `resolution` (default 28; 105: the original images). */
  omniglot(dir?: string, resolution?: import("./omniglot.js").OmniglotResolution): import("./omniglot.js").OmniglotData;
}

/** A task family as a run config names it: its options (`task.*`), its kind, how it is built. */
export interface FamilySpec<O extends { family: string } = { family: string }> {
  readonly family: string;
  /** `task.*` options with defaults; must include `family: z.literal(family)`. */
  readonly schema: import("zod").ZodObject;
  readonly kind: TaskKind;
  /** One line for the docs. */
  readonly summary: string;
  /** Shape of one input and output units, known without loading data (for model checks). */
  shape(options: O): { inputShape: number[]; outputs: number };
  /**
   * What the options ask of the data set beyond what it holds, known without loading it (images
   * per class, classes per split): each problem's `task.*` key and a message saying what to change.
   * Checked by the run-config schema, so `config`/`submit` refuse it; default none.
   */
  limits?(options: O): { key: string; message: string }[];
  build(options: O, data: DataPort): TaskFamily;
}

/**
 * The options ask more of a data set than it holds (images per class, classes in a split): no
 * retry can help, only other options. Activities map it to the non-retryable `DataSetLimit`.
 */
export class DataSetLimitError extends Error {
  override readonly name = "DataSetLimit";
}
