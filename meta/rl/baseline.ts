// Returns, the linear feature baseline and advantages of a batch of trajectories (rllab's
// LinearFeatureBaseline and process_samples, as cbfinn/maml_rl runs them), in float64 on plain arrays.
import { ridgeFit } from "../linalg.js";
import type { Trajectories } from "./rollouts.js";

/** Per-step features of one path: [clip(o, ±10), clip(o, ±10)², t/100, (t/100)², (t/100)³, 1] (rllab's; the 100 is a constant there too). */
export function baselineFeatures(obs: ArrayLike<number>, obsSize: number, length: number): Float64Array {
  const width = 2 * obsSize + 4;
  const f = new Float64Array(length * width);
  for (let t = 0; t < length; t++) {
    const row = t * width;
    for (let d = 0; d < obsSize; d++) {
      const o = Math.min(10, Math.max(-10, obs[t * obsSize + d]!));
      f[row + d] = o;
      f[row + obsSize + d] = o * o;
    }
    const a = t / 100;
    f[row + 2 * obsSize] = a;
    f[row + 2 * obsSize + 1] = a * a;
    f[row + 2 * obsSize + 2] = a * a * a;
    f[row + 2 * obsSize + 3] = 1;
  }
  return f;
}

/** Discounted returns R_t = Σ_{k ≥ t} γ^{k−t} r_k of each path, laid out as the trajectories' [N, H] (0 past a path's end). */
export function discountedReturns(tr: Trajectories, discount: number): Float64Array {
  const { count, horizon, rewards, lengths } = tr;
  const out = new Float64Array(count * horizon);
  for (let i = 0; i < count; i++) {
    let acc = 0;
    for (let t = lengths[i]! - 1; t >= 0; t--) {
      acc = rewards[i * horizon + t]! + discount * acc;
      out[i * horizon + t] = acc;
    }
  }
  return out;
}

export interface AdvantageOptions {
  /** γ. Default 0.99 (maml_rl's point experiments). */
  discount?: number;
  /** Ridge regulariser of the baseline fit. Default 1e-5 (rllab). */
  reg?: number;
  /** Standardise advantages over the batch's steps (rllab's center_adv). Default true. */
  center?: boolean;
}

/**
 * Advantages A_t = R_t − b(s_t) with b the linear feature baseline fitted by ridge regression to this
 * batch's own returns (GAE with λ = 1 telescopes to exactly this), then standardised to mean 0 and
 * standard deviation 1 over the batch's valid steps ((A − mean) / (std + 1e-8), numpy's population
 * std), laid out as [N, H] with 0 past each path's end.
 *
 * Departure from the authors' sampler: it keeps one baseline object for all tasks and predicts with
 * the fit of its previous call (another task's data) before refitting on this one; here each task's
 * baseline is fitted on that task's trajectories and then used on them, as the issue asks.
 */
export function advantages(tr: Trajectories, o: AdvantageOptions = {}): Float64Array {
  const discount = o.discount ?? 0.99;
  const { count, horizon, obsSize, lengths, observations } = tr;
  const returns = discountedReturns(tr, discount);
  const width = 2 * obsSize + 4;
  const steps = lengths.reduce((a, b) => a + b, 0);
  const design = new Float64Array(steps * width);
  const targets = new Float64Array(steps);
  let r = 0;
  for (let i = 0; i < count; i++) {
    const f = baselineFeatures(observations.subarray(i * horizon * obsSize), obsSize, lengths[i]!);
    design.set(f, r * width);
    for (let t = 0; t < lengths[i]!; t++) targets[r + t] = returns[i * horizon + t]!;
    r += lengths[i]!;
  }
  const coef = ridgeFit(design, steps, width, targets, o.reg ?? 1e-5);
  const adv = new Float64Array(count * horizon);
  r = 0;
  for (let i = 0; i < count; i++) {
    for (let t = 0; t < lengths[i]!; t++, r++) {
      let b = 0;
      for (let j = 0; j < width; j++) b += design[r * width + j]! * coef[j]!;
      adv[i * horizon + t] = returns[i * horizon + t]! - b;
    }
  }
  if (o.center ?? true) {
    let mean = 0;
    forValid(tr, (k) => (mean += adv[k]!));
    mean /= steps;
    let v = 0;
    forValid(tr, (k) => (v += (adv[k]! - mean) ** 2));
    const std = Math.sqrt(v / steps);
    forValid(tr, (k) => (adv[k] = (adv[k]! - mean) / (std + 1e-8)));
  }
  return adv;
}

/** Calls `f(i·H + t)` for every valid step t of every path i. */
function forValid(tr: Trajectories, f: (k: number) => void): void {
  for (let i = 0; i < tr.count; i++) for (let t = 0; t < tr.lengths[i]!; t++) f(i * tr.horizon + t);
}

/** Mean over paths of the undiscounted return Σ_t r_t (rllab's AverageReturn). */
export function averageReturn(tr: Trajectories): number {
  let total = 0;
  for (let i = 0; i < tr.count; i++) for (let t = 0; t < tr.lengths[i]!; t++) total += tr.rewards[i * tr.horizon + t]!;
  return total / tr.count;
}
