// The environment seam: a pure, deterministic simulator over plain typed arrays. An environment is
// one file (meta/envs/<name>.ts) exporting an `Environment` and its task family (`environmentFamily`
// in meta/tasks/environment.ts), plus one line in meta/registry.ts.
import type { Rng } from "../rng.js";

/** What one step of an environment gives back. */
export interface Transition {
  /** The state after the step (a new array: states are never mutated). */
  state: Float64Array;
  /** What the policy sees of that state. */
  observation: Float64Array;
  reward: number;
  /** The episode ends here (goal reached); the horizon is the rollout's business, not the step's. */
  done: boolean;
}

/**
 * A task-parameterised environment. Every method is a pure function of its arguments: the state and
 * the goal are passed in, never held, so one object serves every task and every trajectory, and
 * equal arguments give equal bytes on any machine (plain float64 arithmetic, no tfjs).
 */
export interface Environment {
  /** The `task.family` value of its task family, e.g. `point-2d`. */
  readonly name: string;
  /** Length of an observation (the policy's input). */
  readonly observationSize: number;
  /** Length of an action (the policy's output). */
  readonly actionSize: number;
  /** Length of a goal (the task's parameters). */
  readonly goalSize: number;
  /** Steps after which a rollout is cut off (rllab's max_path_length). */
  readonly horizon: number;
  /** One task's goal from the task's stream (the family draws nothing else from it). */
  sampleGoal(rng: Rng): Float64Array;
  /** The start state of an episode towards `goal`. */
  reset(goal: Float64Array): Float64Array;
  /** The observation of a state. */
  observe(state: Float64Array): Float64Array;
  /** Apply `action` (the policy's raw sample; the environment clips it) in `state` towards `goal`. */
  step(state: Float64Array, action: ArrayLike<number>, goal: Float64Array): Transition;
}
