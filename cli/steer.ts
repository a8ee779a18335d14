// Signals to a running run (pause, resume, cancel), shared by their three command files.
import { cancelSignal, pauseSignal, resumeSignal } from "../workflows/index.js";
import type { WorkflowHandle } from "@temporalio/client";
import type { RunProgress } from "../contracts/activities.js";
import { CliError, ExitCodes } from "./errors.js";
import { describeExecution, queryProgress } from "./runs.js";
import { temporalError, withTemporal, type TemporalSession } from "./temporal.js";

export type Steer = "pause" | "resume" | "cancel";
const SIGNALS = { pause: pauseSignal, resume: resumeSignal, cancel: cancelSignal } as const;

/** `pause|resume|cancel --json`. */
export interface SteerJson {
  runId: string;
  signal: Steer;
  /** Iterations completed when the signal was sent (null if no worker answered). */
  iteration: number | null;
  iterations: number | null;
}

const WHAT: Record<Steer, string> = {
  pause: "pausing: the iteration in flight finishes, then the run waits for `metatrain resume`",
  resume: "resumed",
  cancel: "cancelling: the iteration in flight is abandoned, a checkpoint of the last completed iteration is written, then the run ends",
};

/** The run's progress shows the signal taken effect. */
const SEEN: Record<Steer, (p: RunProgress) => boolean> = { pause: (p) => p.paused, resume: (p) => !p.paused, cancel: (p) => p.cancelling };

/** What signalUntilSeen needs of a run: send the signal, its current execution, its progress (undefined: no answer now). */
export interface SteerTarget {
  signal(): Promise<void>;
  execution(): Promise<{ runId: string; running: boolean }>;
  progress(): Promise<RunProgress | undefined>;
}

/**
 * Send a steering signal and wait until the run shows it. A signal that lands while the run
 * continues as new can be lost: the server rejects that completion so that the workflow sees the
 * signal, but the SDK may resume the workflow past the result that led to continue-as-new before
 * it runs the signal's handler (seen in CI on 2026-12-08: the old execution's history holds the
 * cancel, the new execution never saw it). So when the run has moved to a new execution without
 * showing the signal, it is sent again: all three are idempotent. Returns the progress that shows
 * it; undefined when the run ended (a cancel's end) or no worker answered a query (nothing to
 * confirm with: the signal was sent once); the last progress at the deadline.
 */
export async function signalUntilSeen(t: SteerTarget, which: Steer, o: { timeoutMs?: number; pollMs?: number } = {}): Promise<RunProgress | undefined> {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    const sentTo = (await t.execution()).runId;
    await t.signal();
    for (;;) {
      const now = await t.execution();
      if (!now.running) return undefined;
      const p = await t.progress();
      if (!p) return undefined;
      if (SEEN[which](p)) return p;
      if (Date.now() > deadline) return p;
      if (now.runId !== sentTo) break; // a new execution that does not show it: lost in continue-as-new
      await new Promise((r) => setTimeout(r, o.pollMs ?? 200));
    }
  }
}

/** A run as signalUntilSeen steers it: `which` sent through `handle` (the latest execution of a workflow id), progress from `progress`. */
export function steerTarget(handle: WorkflowHandle, which: Steer, progress: () => Promise<RunProgress | undefined>): SteerTarget {
  return {
    signal: () => handle.signal(SIGNALS[which]),
    execution: async () => {
      const d = await handle.describe();
      return { runId: d.runId, running: d.status.name === "RUNNING" };
    },
    progress,
  };
}

/** Send one steering signal to a running run; a run that has ended is a CliError (exit 2). */
export async function steer(runId: string, which: Steer, json: boolean | undefined): Promise<void> {
  await withTemporal((s) => steerIn(s, runId, which, json));
}

/** `steer` over a session the caller holds (`cancel` first asks, on the same connection, whether the id is a sweep). */
export async function steerIn(s: TemporalSession, runId: string, which: Steer, json: boolean | undefined): Promise<void> {
  const d = await describeExecution(s, runId);
  if (d.status.name !== "RUNNING") {
    throw new CliError(`run '${runId}' has ended: there is nothing to ${which}`, ExitCodes.badInput, which === "resume" ? `to go on from its last checkpoint: metatrain resume-from ${runId}` : "`metatrain status` shows how it ended");
  }
  let p: RunProgress | undefined;
  try {
    p = await signalUntilSeen(steerTarget(s.client.workflow.getHandle(runId), which, () => queryProgress(s, runId, 3000)), which, { timeoutMs: 15_000 });
  } catch (e) {
    throw temporalError(e, s.settings, runId);
  }
  const out: SteerJson = { runId, signal: which, iteration: p?.iteration ?? null, iterations: p?.iterations ?? null };
  process.stdout.write(json ? `${JSON.stringify(out, null, 2)}\n` : `run ${runId}: ${WHAT[which]}${p ? ` (at iteration ${p.iteration}/${p.iterations})` : ""}\n`);
}
