// Runs as the CLI reports them: one stable JSON shape (`RunStatusJson`) built from Temporal's
// description of the workflow, its `progress` query or its result, and the human-readable lines.
import { defaultPayloadConverter, WorkflowFailedError, WorkflowNotFoundError, type WorkflowExecutionInfo } from "@temporalio/client";
import type { EvaluationSummary, MetaTrainingInput, MetaTrainingResult, RunProgress, TaskMetricsSummary } from "../contracts/activities.js";
import { parseRunConfig, type RunConfig } from "../meta/run-config.js";

/** The config if it parses, else null (a run's input as another client may have sent it). */
function tryParse(raw: unknown): RunConfig | null {
  try {
    return parseRunConfig(raw);
  } catch {
    return null;
  }
}
import { WORKFLOW_TYPE } from "../contracts/queues.js";
import { progressQuery } from "../workflows/index.js";
import { parseCheckpointManifestKey } from "../storage/keys.js";
import { displayStoreUri, keyUri, latestGoodCheckpoint, openCliStore, storeUriFromEnv } from "./store.js";
import { failureOf, temporalError, unknownRun, type TemporalSession } from "./temporal.js";

/** Where a run stands. `paused` and `cancelling` are running runs; the rest have ended. */
export type RunState = "running" | "paused" | "cancelling" | "completed" | "cancelled" | "failed" | "terminated" | "timed_out";

/** `metatrain status --json`, and each item of `metatrain list --json`. Documented in docs/cli.md. */
export interface RunStatusJson {
  runId: string;
  status: RunState;
  /** Meta-iterations completed (null when the run cannot say: no worker answered, or it failed before starting). */
  iteration: number | null;
  /** Meta-iterations the run is to do. */
  iterations: number | null;
  algorithm: string | null;
  /** Task family: `sinusoid` or `omniglot`. */
  task: string | null;
  model: string | null;
  /** Outer learning rate in force. */
  metaLr: number | null;
  /** Mean metrics of the last meta-batch (pre/post-adaptation loss, and accuracy for classification). */
  latest: TaskMetricsSummary | null;
  /** The last held-out evaluation. */
  evaluation: EvaluationSummary | null;
  /** Full URI of the last checkpoint manifest, in the store METATRAIN_STORE names (default file:./.metatrain/store). */
  checkpoint: string | null;
  /** The same as a store key. */
  checkpointKey: string | null;
  /** The iteration that checkpoint was taken after. For a run that failed, terminated or timed out: the newest checkpoint in the store that verifies (the one to resume from). */
  checkpointIteration: number | null;
  /** Why a run failed, terminated or timed out: the error type (e.g. NonFiniteLoss) and message. */
  error: { type: string | null; message: string } | null;
  /** Something the status could not find out (e.g. no worker answered the progress query). */
  warning: string | null;
  startedAt: string | null;
  closedAt: string | null;
  /** The run config (null while a run resumed from a checkpoint has not said it). */
  config: RunConfig | null;
  temporal: { namespace: string; workflowId: string; executionRunId: string; taskQueue: string; historyLength: number };
}

/** The input of the run's current execution (its first history event), or undefined. */
async function currentInput(s: TemporalSession, runId: string): Promise<MetaTrainingInput | undefined> {
  try {
    const res = await s.connection.withDeadline(Date.now() + 5000, () =>
      s.connection.workflowService.getWorkflowExecutionHistory({ namespace: s.settings.namespace, execution: { workflowId: runId }, maximumPageSize: 1 }),
    );
    const payload = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    return payload ? defaultPayloadConverter.fromPayload<MetaTrainingInput>(payload) : undefined;
  } catch {
    return undefined;
  }
}

/** Ask a running run where it stands; undefined when no worker answers within `timeoutMs`. */
export async function queryProgress(s: TemporalSession, runId: string, timeoutMs = 5000): Promise<RunProgress | undefined> {
  try {
    return await s.connection.withDeadline(Date.now() + timeoutMs, () => s.client.workflow.getHandle(runId).query(progressQuery));
  } catch {
    return undefined;
  }
}

const iso = (d: Date | undefined): string | null => (d ? d.toISOString() : null);

/** When the run's first execution started (continue-as-new starts new executions). */
async function chainStart(s: TemporalSession, runId: string): Promise<Date | undefined> {
  let first: Date | undefined;
  try {
    for await (const w of s.client.workflow.list({ query: `WorkflowId = "${runId}"` })) if (!first || w.startTime < first) first = w.startTime;
  } catch {
    // Visibility is best effort here; describe() gives the current execution's start.
  }
  return first;
}

/** Everything `status` reports about one run. Throws a CliError for an unknown run id. */
export async function describeRun(s: TemporalSession, runId: string, opts: { startedAt?: Date } = {}): Promise<RunStatusJson> {
  const handle = s.client.workflow.getHandle<(input: MetaTrainingInput) => Promise<MetaTrainingResult>>(runId);
  const d = await describeExecution(s, runId);
  const input = await currentInput(s, runId);
  const config = input?.config != null ? tryParse(input.config) : null;
  const storeUri = storeUriFromEnv();
  const out: RunStatusJson = {
    runId,
    status: "running",
    iteration: null,
    iterations: config?.iterations ?? null,
    algorithm: config?.algorithm ?? null,
    task: config?.task.family ?? null,
    model: config?.model.kind ?? null,
    metaLr: null,
    latest: null,
    evaluation: null,
    checkpoint: null,
    checkpointKey: null,
    checkpointIteration: null,
    error: null,
    warning: null,
    startedAt: iso(opts.startedAt ?? (await chainStart(s, runId)) ?? d.startTime),
    closedAt: iso(d.closeTime),
    config,
    temporal: { namespace: s.settings.namespace, workflowId: d.workflowId, executionRunId: d.runId, taskQueue: d.taskQueue, historyLength: d.historyLength },
  };
  const checkpointFrom = (key: string | undefined) => {
    out.checkpointKey = key || null;
    out.checkpoint = key ? keyUri(storeUri, key) : null;
    out.checkpointIteration = key ? (parseCheckpointManifestKey(key)?.iteration ?? null) : null;
  };
  switch (d.status.name) {
    case "RUNNING": {
      const p = await queryProgress(s, runId);
      if (!p) {
        out.warning = "no worker answered the progress query within 5 s: is a coordinator (or `metatrain dev`) running?";
        if (input?.state) {
          out.iteration = input.state.iteration;
          out.latest = input.state.latest ?? null;
          out.evaluation = input.state.evaluation ?? null;
          checkpointFrom(input.state.lastCheckpointKey);
        }
        break;
      }
      out.status = p.cancelling ? "cancelling" : p.paused ? "paused" : "running";
      out.iteration = p.iteration;
      if (p.iterations) out.iterations = p.iterations;
      out.metaLr = Number.isFinite(p.metaLr) ? p.metaLr : null;
      out.latest = p.latest ?? null;
      out.evaluation = p.evaluation ?? null;
      checkpointFrom(p.lastCheckpointKey);
      break;
    }
    case "COMPLETED": {
      const r = await handle.result();
      out.status = r.cancelled ? "cancelled" : "completed";
      out.iteration = r.iteration;
      if (!r.cancelled && out.iterations === null) out.iterations = r.iteration;
      out.latest = r.latest ?? null;
      out.evaluation = r.evaluation ?? null;
      checkpointFrom(r.lastCheckpointKey);
      break;
    }
    default: {
      out.status = d.status.name === "CANCELLED" ? "cancelled" : d.status.name === "TERMINATED" ? "terminated" : d.status.name === "TIMED_OUT" ? "timed_out" : "failed";
      if (input?.state) {
        out.iteration = input.state.iteration;
        out.latest = input.state.latest ?? null;
        out.evaluation = input.state.evaluation ?? null;
        checkpointFrom(input.state.lastCheckpointKey);
      } else if (input?.resumeFrom) checkpointFrom(input.resumeFrom);
      // The execution's input is where it started (the last continue-as-new), not where it stopped:
      // its history's last activity says that, and the store holds the checkpoints written since.
      const stopped = await stoppedIteration(s, runId, d.runId);
      if (stopped !== undefined) out.iteration = stopped;
      try {
        const good = await latestGoodCheckpoint(await openCliStore(storeUri), runId);
        if (good) checkpointFrom(good.manifestKey);
        // A checkpoint past the history's last iteration: written by a local activity (outer step,
        // checkpoint) whose result the history never recorded, the run stopped first. The store
        // is the truth: the run got that far, and resuming from there loses nothing.
        if (out.checkpointIteration !== null && (out.iteration === null || out.checkpointIteration > out.iteration)) out.iteration = out.checkpointIteration;
        else if (out.checkpointKey) out.warning = `no checkpoint of ${runId} in ${displayStoreUri(storeUri)} verifies (is METATRAIN_STORE the workers' store?); the one shown is the run's own last record`;
      } catch (e) {
        out.warning = `cannot read the run's checkpoints in ${displayStoreUri(storeUri)}: ${String((e as Error).message ?? e).split("\n")[0]}`;
      }
      try {
        await handle.result();
      } catch (e) {
        out.error = e instanceof WorkflowFailedError ? failureOf(e) : { type: null, message: String((e as Error).message ?? e).split("\n")[0]! };
      }
    }
  }
  return out;
}

/**
 * Iterations completed when an activity of this input was scheduled: the shard activities and the
 * outer step work on iteration `i` (so `i` were done), a checkpoint and an evaluation come after
 * `iteration` iterations, initRun before any; undefined for other activities.
 */
export function iterationOfActivity(type: string | null | undefined, input: unknown): number | undefined {
  const o = (input ?? {}) as { iteration?: unknown; manifest?: { iteration?: unknown } };
  const n = (x: unknown) => (typeof x === "number" && Number.isSafeInteger(x) && x >= 0 ? x : undefined);
  switch (type) {
    case "runShard":
    case "outerStep":
    case "evaluate":
      return n(o.iteration);
    case "writeCheckpoint":
      return n(o.manifest?.iteration);
    case "initRun":
      return 0;
    default:
      return undefined;
  }
}

/** Iterations a closed execution had completed where it stopped: from its newest scheduled activity, reading its history newest first. */
async function stoppedIteration(s: TemporalSession, runId: string, executionRunId: string): Promise<number | undefined> {
  try {
    let nextPageToken: Uint8Array | undefined;
    for (let page = 0; page < 50; page++) {
      const res = await s.connection.withDeadline(Date.now() + 5000, () =>
        s.connection.workflowService.getWorkflowExecutionHistoryReverse({ namespace: s.settings.namespace, execution: { workflowId: runId, runId: executionRunId }, maximumPageSize: 100, nextPageToken }),
      );
      for (const ev of res.history?.events ?? []) {
        const a = ev.activityTaskScheduledEventAttributes;
        const payload = a?.input?.payloads?.[0];
        if (!a || !payload) continue;
        const it = iterationOfActivity(a.activityType?.name, defaultPayloadConverter.fromPayload(payload));
        if (it !== undefined) return it;
      }
      if (!res.nextPageToken?.length) return undefined;
      nextPageToken = res.nextPageToken;
    }
  } catch {
    // Best effort: the execution's own input still says where it started.
  }
  return undefined;
}

/** Temporal's description of a run's current execution; an unknown id (or another workflow type) is a CliError with the nearest run ids. */
export async function describeExecution(s: TemporalSession, runId: string) {
  let d;
  try {
    d = await s.client.workflow.getHandle(runId).describe();
  } catch (e) {
    if (!(e instanceof WorkflowNotFoundError)) throw temporalError(e, s.settings, runId);
  }
  if (!d || d.type !== WORKFLOW_TYPE) {
    const known = await listRunIds(s, 200).then((l) => l.map((r) => r.runId), () => [] as string[]);
    throw unknownRun(runId, s.settings, known);
  }
  return d;
}

/** Ids of runs (metaTrainingWorkflow executions), newest first, one per run, with their first start time. */
export async function listRunIds(s: TemporalSession, limit = 1000): Promise<{ runId: string; startedAt: Date; info: WorkflowExecutionInfo }[]> {
  const byId = new Map<string, { runId: string; startedAt: Date; info: WorkflowExecutionInfo }>();
  try {
    for await (const w of s.client.workflow.list({ query: `WorkflowType = "${WORKFLOW_TYPE}"` })) {
      const cur = byId.get(w.workflowId);
      if (!cur) byId.set(w.workflowId, { runId: w.workflowId, startedAt: w.startTime, info: w });
      else {
        if (w.startTime < cur.startedAt) cur.startedAt = w.startTime;
        // The newest execution of a continue-as-new chain says where the run stands.
        if (w.startTime > cur.info.startTime) cur.info = w;
      }
      if (byId.size > limit * 4) break;
    }
  } catch (e) {
    throw temporalError(e, s.settings);
  }
  return [...byId.values()].sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime()).slice(0, limit);
}

// ---- human-readable -------------------------------------------------------------------------------

const num = (x: number): string => (Math.abs(x) >= 100 ? x.toFixed(1) : Math.abs(x) >= 0.001 || x === 0 ? x.toFixed(3) : x.toExponential(2));
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** `pre→post` loss of the last meta-batch: `MSE 3.012 → 0.512` or `loss 1.61 → 0.72, acc 40.0% → 71.3%`. */
export function latestText(m: TaskMetricsSummary | null | undefined): string {
  if (!m) return "";
  if (m.postAccuracy !== undefined && m.preAccuracy !== undefined) return `loss ${num(m.preLoss)} → ${num(m.postLoss)}, acc ${pct(m.preAccuracy)} → ${pct(m.postAccuracy)}`;
  return `MSE ${num(m.preLoss)} → ${num(m.postLoss)}`;
}

/** `eval MSE 0.512 ± 0.031` or `eval acc 89.1% ± 1.1%`, with its iteration and step count. */
export function evaluationText(e: EvaluationSummary | null | undefined): string {
  if (!e) return "";
  const v = e.accuracy ? `acc ${pct(e.accuracy.mean)} ± ${pct(e.accuracy.ci95)}` : `MSE ${num(e.loss.mean)} ± ${num(e.loss.ci95)}`;
  return `eval ${v} (${e.loss.n} tasks, ${e.steps} steps, iteration ${e.iteration})`;
}

export function durationText(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** The lines `metatrain status` prints. */
export function statusLines(r: RunStatusJson): string[] {
  const lines = [`run ${r.runId}: ${r.status}${r.iteration !== null ? `, iteration ${r.iteration}${r.iterations !== null ? `/${r.iterations}` : ""}` : ""}`];
  if (r.algorithm) lines.push(`  config       ${r.algorithm}, ${r.task}, ${r.model}${r.metaLr !== null ? `, meta lr ${r.metaLr}` : ""}`);
  if (r.latest) lines.push(`  last batch   ${latestText(r.latest)} (pre → post adaptation, ${r.latest.tasks} tasks)`);
  if (r.evaluation) lines.push(`  evaluation   ${evaluationText(r.evaluation).replace(/^eval /, "")}`);
  lines.push(`  checkpoint   ${r.checkpoint ?? "none yet"}${r.checkpoint && r.checkpointIteration != null ? ` (iteration ${r.checkpointIteration})` : ""}`);
  if (r.checkpoint && (r.status === "failed" || r.status === "terminated" || r.status === "timed_out")) lines.push(`  resume with  metatrain resume-from ${r.checkpoint}`);
  if (r.startedAt) lines.push(`  started      ${r.startedAt}${r.closedAt ? `, ended ${r.closedAt}` : ""}`);
  if (r.error) lines.push(`  error        ${r.error.type ? `${r.error.type}: ` : ""}${r.error.message}`);
  if (r.warning) lines.push(`  warning      ${r.warning}`);
  return lines;
}
