// The shard activities' heartbeat timeout, sized from what the run's own shards have shown.
//
// A gpu worker that dies (SIGKILL, node loss) is noticed only when its shard misses the heartbeat
// timeout; until then the round waits. A fixed timeout has to outlast the longest stretch a live
// worker can go without heartbeating — a cold start reading the data set, one long Conv4 step on a
// CPU backend — so on a fast model it costs tens of seconds per fault. Each shard reports its
// longest silence (RunShardOutput.silentSeconds, first beat to last, start and end included), and
// the workflow schedules later rounds with a timeout that outlasts the longest silence seen so far
// with headroom. The first round, before any shard has reported, uses `heartbeatSeconds`, which is
// also the ceiling. Pure and deterministic: the inputs are activity results recorded in history.

/** Multiple of the longest silence seen. */
export const SILENCE_HEADROOM = 3;
/** Added to it, in seconds: scheduling jitter, a GC pause, the worker's one-second beat cadence. */
export const SILENCE_MARGIN_SECONDS = 2;

export interface HeartbeatTimeouts {
  /** The first round's timeout and the ceiling. */
  heartbeatSeconds: number;
  /** The floor (capped at heartbeatSeconds). */
  heartbeatMinSeconds: number;
}

/**
 * Heartbeat timeout in whole seconds for the next shards, given the longest silence any shard of
 * the run has shown (undefined: none has reported yet).
 *
 * Example: shards that beat every second and never block longer give silence ≈ 1 s →
 * ceil(3 × 1 + 2) = 5 s. A CPU Conv4 task blocking 6 s between beats → ceil(3 × 6 + 2) = 20 s.
 */
export function heartbeatTimeoutSeconds(t: HeartbeatTimeouts, silentSeconds: number | undefined): number {
  const ceiling = t.heartbeatSeconds;
  if (silentSeconds === undefined || !Number.isFinite(silentSeconds) || silentSeconds < 0) return ceiling;
  const floor = Math.min(t.heartbeatMinSeconds, ceiling);
  return Math.min(ceiling, Math.max(floor, Math.ceil(SILENCE_HEADROOM * silentSeconds + SILENCE_MARGIN_SECONDS)));
}

/** The longest of two silences (either may be unknown). */
export function longestSilence(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}
