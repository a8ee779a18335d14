// Rollouts of a Gaussian policy in an environment: N trajectories of one task stepped together (one
// policy forward of [N, observation] per time step), their noise drawn from an explicit seed, stored
// as padded [N, H, ·] arrays with each path's length. Pure given the policy: equal arguments give
// equal bytes on one backend.
import type { Environment } from "../envs/types.js";
import { Rng } from "../rng.js";

/** A batch of N trajectories of horizon H, padded: step t of path i is at i·H + t. */
export interface Trajectories {
  count: number;
  horizon: number;
  obsSize: number;
  actSize: number;
  /** [N, H, obsSize]: the observation each action was taken in. */
  observations: Float32Array;
  /** [N, H, actSize]: the policy's raw samples (the environment clips them; the likelihood is of these). */
  actions: Float32Array;
  /** [N, H]. */
  rewards: Float64Array;
  /** Steps in each path: H, or fewer when the goal was reached (that step included). */
  lengths: Int32Array;
}

/** The policy as rollouts need it: means for a batch of observations, and the (state-independent) log standard deviations. */
export interface SamplingPolicy {
  /** Means [n, actSize] (row-major) for observations [n, obsSize]. */
  mean(observations: Float32Array, n: number): Float32Array;
  logStd: Float32Array;
}

/**
 * `count` trajectories towards `goal`, each action a = μ(o) + σ·ε with ε ~ N(0, 1) drawn from
 * `new Rng(seed)` in (time, path, dimension) order — every path draws at every step, finished or
 * not, so the stream never depends on when paths end. A path ends at the horizon or on `done`.
 */
export function rollout(env: Environment, policy: SamplingPolicy, goal: Float64Array, count: number, seed: number): Trajectories {
  const H = env.horizon;
  const O = env.observationSize;
  const A = env.actionSize;
  const rng = new Rng(seed);
  const observations = new Float32Array(count * H * O);
  const actions = new Float32Array(count * H * A);
  const rewards = new Float64Array(count * H);
  const lengths = new Int32Array(count);
  const states = Array.from({ length: count }, () => env.reset(goal));
  const live = new Array<boolean>(count).fill(true);
  const obsNow = new Float32Array(count * O);
  for (let i = 0; i < count; i++) obsNow.set(env.observe(states[i]!), i * O);
  const std = Array.from(policy.logStd, Math.exp);
  const action = new Float32Array(A);
  for (let t = 0; t < H && live.includes(true); t++) {
    const mu = policy.mean(obsNow, count);
    for (let i = 0; i < count; i++) {
      for (let d = 0; d < A; d++) action[d] = mu[i * A + d]! + std[d]! * rng.normal();
      if (!live[i]) continue;
      observations.set(obsNow.subarray(i * O, (i + 1) * O), (i * H + t) * O);
      actions.set(action, (i * H + t) * A);
      const tr = env.step(states[i]!, action, goal);
      rewards[i * H + t] = tr.reward;
      lengths[i] = t + 1;
      states[i] = tr.state;
      obsNow.set(tr.observation, i * O);
      if (tr.done) live[i] = false;
    }
  }
  return { count, horizon: H, obsSize: O, actSize: A, observations, actions, rewards, lengths };
}

/** [N, H] mask: 1 at each path's valid steps, 0 past its end. */
export function validMask(tr: Trajectories): Float32Array {
  const m = new Float32Array(tr.count * tr.horizon);
  for (let i = 0; i < tr.count; i++) m.fill(1, i * tr.horizon, i * tr.horizon + tr.lengths[i]!);
  return m;
}
