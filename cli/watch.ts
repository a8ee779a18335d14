// Follow a run until it ends: a live progress bar on a terminal, one line per change otherwise,
// NDJSON with --json; returns the final status. Shared by `watch`, `submit --watch`, `resume-from --watch`.
import type { RunProgress } from "../contracts/activities.js";
import { CliError, ExitCodes } from "./errors.js";
import { describeExecution, describeRun, durationText, evaluationText, latestText, queryProgress, statusLines, type RunStatusJson } from "./runs.js";
import type { TemporalSession } from "./temporal.js";

export interface WatchOptions {
  /** Where lines go. Default process.stdout. */
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Poll interval, ms. Default 1000. */
  intervalMs?: number;
  /** NDJSON: one `{"event":"progress",…}` object per change, then `{"event":"end","run":RunStatusJson}`. */
  json?: boolean;
  /** Print nothing while watching (the caller prints the final status). */
  quiet?: boolean;
  /** Without a terminal: least time between two lines that report only a new iteration, ms. Default 5000. */
  lineEveryMs?: number;
  /** Stops watching (the run goes on): Ctrl-C. */
  signal?: AbortSignal;
}

const BAR = 24;

function bar(done: number, total: number): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(f * BAR);
  return `[${"█".repeat(full)}${"░".repeat(BAR - full)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

const SPARKS = "▁▂▃▄▅▆▇█";
/** Points the live curve keeps: the most recent iterations seen. */
export const SPARK_POINTS = 24;

/**
 * A unicode sparkline of `values` (the last SPARK_POINTS), each scaled between their min and max;
 * non-finite values are blanks. "" for no values; a flat series is all mid-height.
 */
export function sparkline(values: readonly number[]): string {
  const v = values.slice(-SPARK_POINTS);
  const finite = v.filter(Number.isFinite);
  if (finite.length === 0) return "";
  const lo = Math.min(...finite);
  const span = Math.max(...finite) - lo;
  return v
    .map((x) => (!Number.isFinite(x) ? " " : span === 0 ? SPARKS[3] : SPARKS[Math.min(SPARKS.length - 1, Math.floor(((x - lo) / span) * SPARKS.length))]))
    .join("");
}

/** One progress line: iteration, ETA, pre/post-adaptation loss (and accuracy), the last evaluation. */
export function progressText(p: Pick<RunProgress, "iteration" | "iterations" | "paused" | "cancelling" | "latest" | "evaluation">, etaSeconds: number | undefined): string {
  // A run still initialising (or loading its checkpoint) does not know its iteration count yet.
  const parts = [p.iterations > 0 ? `iteration ${p.iteration}/${p.iterations}` : "starting"];
  if (p.paused) parts.push("paused");
  if (p.cancelling) parts.push("cancelling");
  if (etaSeconds !== undefined && !p.paused && !p.cancelling) parts.push(`ETA ${durationText(etaSeconds)}`);
  const l = latestText(p.latest);
  if (l) parts.push(l);
  const e = evaluationText(p.evaluation);
  if (e) parts.push(e);
  return parts.join(" · ");
}

/** The lines printed when a watched run ends. */
export function endLines(r: RunStatusJson): string[] {
  const it = r.iteration !== null ? `${r.iteration}${r.iterations !== null ? `/${r.iterations}` : ""} iterations` : "";
  const head =
    r.status === "completed"
      ? `run ${r.runId} completed: ${it}`
      : r.status === "cancelled"
        ? `run ${r.runId} cancelled after ${it}`
        : `run ${r.runId} ${r.status}${r.iteration !== null ? ` at iteration ${r.iteration}${r.iterations !== null ? `/${r.iterations}` : ""}` : ""}${r.error ? `: ${r.error.type ? `${r.error.type}: ` : ""}${r.error.message}` : ""}`;
  const lines = [head];
  if (r.latest) {
    const cls = r.latest.postAccuracy !== undefined;
    lines.push(
      cls
        ? `  post-adaptation accuracy ${(100 * r.latest.postAccuracy!).toFixed(1)}%, loss ${r.latest.postLoss.toFixed(4)} (last meta-batch; before adaptation ${(100 * (r.latest.preAccuracy ?? 0)).toFixed(1)}%)`
        : `  post-adaptation MSE ${r.latest.postLoss.toFixed(4)} (last meta-batch; before adaptation ${r.latest.preLoss.toFixed(4)})`,
    );
  }
  if (r.evaluation) lines.push(`  held-out ${evaluationText(r.evaluation).replace(/^eval /, "")}, 95% CI`);
  if (r.checkpoint) lines.push(`  checkpoint ${r.checkpoint}${r.checkpointIteration != null ? ` (iteration ${r.checkpointIteration})` : ""}`);
  if (r.checkpoint && r.status !== "completed" && r.status !== "cancelled") lines.push(`  resume with metatrain resume-from ${r.checkpoint}`);
  return lines;
}

/** Exit code for a run's final state: 0 completed or cancelled, 1 failed, terminated or timed out. */
export const exitCodeOf = (r: RunStatusJson): number => (r.status === "completed" || r.status === "cancelled" ? 0 : ExitCodes.failure);

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((res) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      res();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });

/** Watch `runId` until it ends (or `signal` aborts: then a CliError with exit code 130). */
export async function watchRun(s: TemporalSession, runId: string, o: WatchOptions = {}): Promise<RunStatusJson> {
  const out = o.out ?? process.stdout;
  const tty = !o.json && !o.quiet && out.isTTY === true;
  const interval = o.intervalMs ?? 1000;
  let first: { t: number; it: number } | undefined;
  let rate: number | undefined;
  let prevIt: number | undefined;
  let lastLine = 0;
  let lastFlags = "";
  const lineEvery = o.lineEveryMs ?? 5000;
  let lastKey = "";
  let drawn = false;
  // The post-adaptation loss of each iteration we saw (polling samples a fast run), for the live curve.
  const postLosses: number[] = [];
  let lossIt: number | undefined;
  const clear = () => {
    if (drawn) out.write("\r\x1b[2K");
    drawn = false;
  };
  for (;;) {
    if (o.signal?.aborted) {
      clear();
      throw new CliError(`stopped watching ${runId}; the run goes on`, ExitCodes.interrupted, `\`metatrain status ${runId}\` or \`metatrain watch ${runId}\` to look again`);
    }
    let status;
    try {
      status = (await describeExecution(s, runId)).status.name;
    } catch (e) {
      clear();
      throw e;
    }
    if (status !== "RUNNING") {
      const r = await describeRun(s, runId);
      clear();
      if (o.json) out.write(`${JSON.stringify({ event: "end", run: r })}\n`);
      else if (!o.quiet) out.write(`${endLines(r).join("\n")}\n`);
      return r;
    }
    const p = await queryProgress(s, runId, 5000);
    if (p) {
      const now = Date.now();
      // The rate is measured from the first change we see (a resumed run starts at its checkpoint's iteration).
      if (prevIt === undefined || p.iteration < prevIt) first = undefined;
      else if (p.iteration !== prevIt && !first) first = { t: now, it: p.iteration };
      else if (first && p.iteration > first.it) rate = (p.iteration - first.it) / ((now - first.t) / 1000);
      prevIt = p.iteration;
      if (p.latest && p.iteration !== lossIt) {
        postLosses.push(p.latest.postLoss);
        if (postLosses.length > SPARK_POINTS) postLosses.shift();
        lossIt = p.iteration;
      }
      const eta = rate && rate > 0 ? (p.iterations - p.iteration) / rate : undefined;
      const key = JSON.stringify([p.iteration, p.paused, p.cancelling, p.evaluation?.iteration]);
      if (o.json) {
        if (key !== lastKey) out.write(`${JSON.stringify({ event: "progress", runId, iteration: p.iteration, iterations: p.iterations, paused: p.paused, cancelling: p.cancelling, etaSeconds: eta ?? null, latest: p.latest ?? null, evaluation: p.evaluation ?? null })}\n`);
      } else if (tty) {
        // The curve right after the bar: a narrow terminal cuts the end of the line, not it.
        const curve = postLosses.length > 1 ? ` post-loss ${sparkline(postLosses)} ·` : "";
        const line = `${bar(p.iteration, p.iterations)}${curve} ${progressText(p, eta)}`;
        const width = Math.max(40, (out.columns || 120) - 1);
        out.write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
        drawn = true;
      } else if (!o.quiet && key !== lastKey) {
        // Plain lines (a log, a pipe): at most one per `lineEveryMs` for iterations alone; at once for pause, cancel, evaluation.
        const flags = JSON.stringify([p.paused, p.cancelling, p.evaluation?.iteration]);
        if (flags !== lastFlags || now - lastLine >= lineEvery || p.iteration === p.iterations) {
          out.write(`${runId}: ${progressText(p, eta)}\n`);
          lastLine = now;
          lastFlags = flags;
          lastKey = key;
        }
      }
      if (o.json || tty) lastKey = key;
    } else if (!o.quiet && !o.json && lastKey !== "no-worker") {
      clear();
      out.write(`${runId}: waiting for a worker to answer (is a coordinator, or \`metatrain dev\`, running?)\n`);
      lastKey = "no-worker";
    }
    await sleep(interval, o.signal);
  }
}

/** Print a status as `metatrain status` does. */
export const printStatus = (r: RunStatusJson, out: NodeJS.WritableStream = process.stdout): void => {
  out.write(`${statusLines(r).join("\n")}\n`);
};
