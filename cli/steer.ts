// Signals to a running run (pause, resume, cancel), shared by their three command files.
import { cancelSignal, pauseSignal, resumeSignal } from "../workflows/index.js";
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
  try {
    await s.client.workflow.getHandle(runId).signal(SIGNALS[which]);
  } catch (e) {
    throw temporalError(e, s.settings, runId);
  }
  const p = await queryProgress(s, runId, 3000);
  const out: SteerJson = { runId, signal: which, iteration: p?.iteration ?? null, iterations: p?.iterations ?? null };
  process.stdout.write(json ? `${JSON.stringify(out, null, 2)}\n` : `run ${runId}: ${WHAT[which]}${p ? ` (at iteration ${p.iteration}/${p.iterations})` : ""}\n`);
}
