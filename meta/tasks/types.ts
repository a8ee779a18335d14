// What a task is: support and query sets as plain typed arrays, made by a pure function of
// (seed, split, iteration, taskIndex). Tensors are built from them by the algorithm, not here.

/** One set of examples: inputs `x` (shape `xShape`, first dim = examples) and targets `y`. */
export interface Examples {
  x: Float32Array;
  xShape: number[];
  /** Regression: float targets, shape [n, outputs]. Classification: class index per example. */
  y: Float32Array | Int32Array;
}

export type TaskKind = "regression" | "classification";

/** One few-shot task: adapt on `support`, evaluate on `query`. */
export interface Task {
  support: Examples;
  query: Examples;
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
  task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task;
}
