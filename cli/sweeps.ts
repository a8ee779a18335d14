// Sweeps from the CLI: a spec from a file and flags (checked trial by trial before anything
// starts), starting the sweep workflow, and reading where a sweep stands.
import { WorkflowNotFoundError } from "@temporalio/client";
import {
  SWEEP_WORKFLOW_TYPE,
  SweepSpecSchema,
  sweepTrials,
  trialConfig,
  trialRunId,
  type SweepInput,
  type SweepParameter,
  type SweepProgress,
  type SweepSpec,
} from "../contracts/sweep.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { RUN_ID_PATTERN } from "../storage/keys.js";
import { readYamlMapping, resolveConfig } from "./config.js";
import { CliError, ExitCodes, nearest } from "./errors.js";
import { configKeys } from "./schema.js";
import { failureOf, temporalError, type TemporalSession } from "./temporal.js";

/** Trials a sweep may hold: each is at least one child run. */
export const MAX_TRIALS = 500;
/** Longest sweep id: its child runs add `-t<trial>-r<rung>` within the 64-character run id. */
export const MAX_SWEEP_ID = 52;

export interface SweepSources {
  file?: string;
  preset?: string;
  set: string[];
  grid: string[];
  random: string[];
  samples?: number;
  eta?: number;
  minIterations?: number;
  maxIterations?: number;
  concurrency?: number;
  seed?: number;
}

/** `--grid innerLr=0.01,0.1` → a grid parameter (values parsed as JSON where they parse). */
export function parseGrid(flag: string): SweepParameter {
  const eq = flag.indexOf("=");
  if (eq <= 0 || eq === flag.length - 1) throw new CliError(`--grid expects key=v1,v2,…, got '${flag}'`, ExitCodes.badInput, "e.g. --grid innerLr=0.005,0.01,0.02");
  const values = flag
    .slice(eq + 1)
    .split(",")
    .map((v) => {
      try {
        return JSON.parse(v) as unknown;
      } catch {
        return v;
      }
    });
  const kinds = new Set(values.map((v) => typeof v));
  if (kinds.size !== 1 || !["number", "boolean", "string"].includes([...kinds][0]!)) {
    throw new CliError(`--grid ${flag}: give values of one kind (numbers, true/false, or names)`, ExitCodes.badInput);
  }
  return { key: flag.slice(0, eq), values: values as number[] };
}

/** `--random metaLr=1e-4..1e-2:log` → a range parameter. */
export function parseRandom(flag: string): SweepParameter {
  const m = /^([^=]+)=([^.]+(?:\.\d+)?(?:e-?\d+)?)\.\.([^:]+)(:log)?$/.exec(flag);
  const lo = m ? Number(m[2]) : Number.NaN;
  const hi = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw new CliError(`--random expects key=lo..hi or key=lo..hi:log, got '${flag}'`, ExitCodes.badInput, "e.g. --random metaLr=0.0001..0.01:log");
  }
  return { key: m[1]!, lo, hi, log: m[4] !== undefined };
}

/** A sweep file: the base (preset, config, set) and the sweep's own keys. */
const FILE_KEYS = ["preset", "config", "set", "grid", "random", "samples", "eta", "minIterations", "maxIterations", "concurrency", "seed"] as const;

function readSweepFile(file: string): Record<string, unknown> {
  const parsed = readYamlMapping(file, "sweep file", `keys (${FILE_KEYS.join(", ")})`);
  for (const k of Object.keys(parsed)) {
    if (!(FILE_KEYS as readonly string[]).includes(k)) {
      const near = nearest(k, FILE_KEYS);
      throw new CliError(`unknown sweep file key '${k}'${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, `a sweep file has ${FILE_KEYS.join(", ")}`);
    }
  }
  return parsed;
}

/** The spec a user asked for, every trial's config validated as `submit` would. */
export function resolveSweep(src: SweepSources): SweepSpec {
  const f = src.file ? readSweepFile(src.file) : {};
  const preset = src.preset ?? (typeof f.preset === "string" ? f.preset : undefined);
  const fileSet = Array.isArray(f.set) ? f.set.map(String) : [];
  const base = resolveConfig({ base: (f.config ?? {}) as Record<string, never>, preset, set: [...fileSet, ...src.set] });
  const params: SweepParameter[] = [];
  if (f.grid !== undefined) {
    if (typeof f.grid !== "object" || f.grid === null) throw new CliError("sweep file: grid must map keys to lists of values", ExitCodes.badInput);
    for (const [key, values] of Object.entries(f.grid)) params.push({ key, values: (Array.isArray(values) ? values : [values]) as number[] });
  }
  if (f.random !== undefined) {
    if (typeof f.random !== "object" || f.random === null) throw new CliError("sweep file: random must map keys to 'lo..hi' or 'lo..hi:log'", ExitCodes.badInput);
    for (const [key, range] of Object.entries(f.random)) params.push(parseRandom(`${key}=${String(range)}`));
  }
  params.push(...src.grid.map(parseGrid), ...src.random.map(parseRandom));
  if (!params.length) throw new CliError("a sweep needs at least one --grid or --random key", ExitCodes.badInput, "e.g. metatrain sweep --preset sinusoid-maml --grid innerLr=0.005,0.01,0.02 --grid metaLr=0.0005,0.001");
  const keys = configKeys();
  for (const p of params) {
    if (!keys.includes(p.key)) {
      const near = nearest(p.key, keys);
      throw new CliError(`unknown config key '${p.key}' in the sweep${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, "the README's configuration reference lists every key");
    }
    if (p.key === "iterations") throw new CliError("iterations cannot be swept: the sweep sets them per rung (--min-iterations, --max-iterations)", ExitCodes.badInput);
  }
  const num = (flag: number | undefined, key: string): number | undefined => flag ?? (typeof f[key] === "number" ? (f[key] as number) : undefined);
  const maxIterations = num(src.maxIterations, "maxIterations") ?? base.iterations;
  const eta = num(src.eta, "eta") ?? 3;
  const raw = {
    base,
    parameters: params,
    samples: num(src.samples, "samples") ?? 1,
    seed: num(src.seed, "seed") ?? base.seed,
    concurrency: num(src.concurrency, "concurrency") ?? 2,
    eta,
    maxIterations,
    // By default three rungs: max/eta², max/eta, max.
    minIterations: num(src.minIterations, "minIterations") ?? Math.max(1, Math.floor(maxIterations / (eta * eta))),
  };
  const r = SweepSpecSchema.safeParse(raw);
  if (!r.success) {
    throw new CliError(`invalid sweep: ${r.error.issues.map((i) => `${i.path.join(".") || "sweep"}: ${i.message}`).join("; ")}`, ExitCodes.badInput);
  }
  const spec = r.data;
  const trials = sweepTrials(spec);
  if (trials.length > MAX_TRIALS) throw new CliError(`the sweep has ${trials.length} trials, more than ${MAX_TRIALS}`, ExitCodes.badInput, "use fewer grid values or --samples");
  // Every trial as a run config, checked now: a bad value fails here, not as a failed trial later.
  for (const t of trials) {
    try {
      resolveConfig({ base: trialConfig(spec, t, spec.maxIterations) as Record<string, never> });
    } catch (e) {
      if (e instanceof CliError) throw new CliError(`trial ${t.index} (${JSON.stringify(t.values)}): ${e.message}`, ExitCodes.badInput, e.suggestion);
      throw e;
    }
  }
  return spec;
}

export function checkSweepId(id: string): string {
  if (!RUN_ID_PATTERN.test(id) || id.length > MAX_SWEEP_ID) {
    throw new CliError(`sweep id '${id}' is not valid: use 1-${MAX_SWEEP_ID} letters, digits, '.', '_' or '-', not starting with '.' or '-'`, ExitCodes.badInput);
  }
  return id;
}

/** Start the sweep workflow; a taken id is a usage error. */
export async function startSweep(s: TemporalSession, sweepId: string, spec: SweepSpec): Promise<string> {
  const { WorkflowExecutionAlreadyStartedError } = await import("@temporalio/client");
  try {
    const h = await s.client.workflow.start(SWEEP_WORKFLOW_TYPE, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: sweepId,
      args: [{ sweepId, spec } satisfies SweepInput],
      workflowIdReusePolicy: "REJECT_DUPLICATE",
    });
    return h.firstExecutionRunId;
  } catch (e) {
    if (e instanceof WorkflowExecutionAlreadyStartedError) throw new CliError(`sweep id '${sweepId}' is taken`, ExitCodes.badInput, "choose another --sweep-id");
    throw temporalError(e, s.settings);
  }
}

/** Whether `id` names a sweep (false: not a workflow, or another kind). */
export async function isSweep(s: TemporalSession, id: string): Promise<boolean> {
  try {
    return (await s.client.workflow.getHandle(id).describe()).type === SWEEP_WORKFLOW_TYPE;
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) return false;
    throw temporalError(e, s.settings);
  }
}

export interface SweepStatusJson extends SweepProgress {
  status: string;
  error: string | null;
}

/** A sweep's state: its progress query while it runs, its result once it completed. */
export async function describeSweep(s: TemporalSession, id: string): Promise<SweepStatusJson> {
  const h = s.client.workflow.getHandle(id);
  const d = await h.describe();
  const status = d.status.name.toLowerCase();
  if (d.status.name === "COMPLETED") return { ...((await h.result()) as SweepProgress), status: "completed", error: null };
  let progress: SweepProgress | undefined;
  try {
    progress = (await h.query("sweepProgress")) as SweepProgress;
  } catch {
    progress = undefined;
  }
  let error: string | null = null;
  if (d.status.name === "FAILED") {
    error = await h.result().then(
      () => null,
      (e: unknown) => failureOf(e).message,
    );
  }
  return { ...(progress ?? { sweepId: id, rung: 0, budgets: [], metric: "", trials: [] }), status, error };
}

const fmt = (v: unknown): string => (typeof v === "number" ? Number(v.toPrecision(4)).toString() : String(v));

/** Lines for a terminal: one per trial, best first within its state. */
export function sweepLines(p: SweepStatusJson): string[] {
  const head = `sweep ${p.sweepId}: ${p.status}, rung ${p.rung + 1} of ${p.budgets.length} (iterations ${p.budgets.join(" → ")}), score = ${p.metric}`;
  const rows = p.trials.map((t) => [
    `${t.index}${p.winner === t.index ? " *" : ""}`,
    t.state,
    Object.entries(t.values).map(([k, v]) => `${k}=${fmt(v)}`).join(" "),
    String(t.iteration),
    t.scores.map((x) => (Number.isFinite(x) ? x.toFixed(4) : "failed")).join(" → "),
    t.runs.at(-1) ?? trialRunId(p.sweepId, t.index, 0),
  ]);
  const header = ["TRIAL", "STATE", "VALUES", "ITER", "SCORES", "RUN"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const table = [header, ...rows].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
  const tail: string[] = [];
  if (p.winner !== undefined) {
    const w = p.trials[p.winner]!;
    tail.push(`winner: trial ${w.index} (${Object.entries(w.values).map(([k, v]) => `${k}=${fmt(v)}`).join(", ")}), score ${w.scores.at(-1)?.toFixed(4)}, checkpoint ${w.checkpoint ?? "?"}`);
  }
  if (p.error) tail.push(`error: ${p.error}`);
  return [head, ...table, ...tail];
}

/** Follow a sweep until it ends (a line per change, then the table or the JSON status); returns its final status. */
export async function watchSweep(s: TemporalSession, id: string, o: { json?: boolean; intervalMs: number; signal: AbortSignal }): Promise<SweepStatusJson | undefined> {
  let last = "";
  for (;;) {
    const st = await describeSweep(s, id);
    const done = st.status !== "running";
    const count = (state: string) => st.trials.filter((t) => t.state === state).length;
    const line = `${st.status} rung ${st.rung + 1}/${st.budgets.length}: ${count("running")} running, ${count("stopped")} stopped, ${count("failed")} failed`;
    if (!o.json && line !== last && !done) process.stdout.write(`${line}\n`);
    last = line;
    if (done) {
      process.stdout.write(o.json ? `${JSON.stringify(st, null, 2)}\n` : `${sweepLines(st).join("\n")}\n`);
      return st;
    }
    if (o.signal.aborted) {
      process.stdout.write(`stopped watching; the sweep goes on (metatrain status ${id})\n`);
      return undefined;
    }
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}

/** Exit code of a watched sweep: 0 with a winner, 130 when watching was interrupted, else 1. */
export const sweepExitCode = (st: SweepStatusJson | undefined): number => (st === undefined ? ExitCodes.interrupted : st.status === "completed" ? 0 : ExitCodes.failure);

/** Sweep ids, newest first. */
export async function listSweeps(s: TemporalSession, limit: number): Promise<{ sweepId: string; status: string; startedAt: Date }[]> {
  const out: { sweepId: string; status: string; startedAt: Date }[] = [];
  try {
    for await (const w of s.client.workflow.list({ query: `WorkflowType = "${SWEEP_WORKFLOW_TYPE}"` })) {
      out.push({ sweepId: w.workflowId, status: w.status.name.toLowerCase(), startedAt: w.startTime });
      if (out.length >= limit) break;
    }
  } catch (e) {
    throw temporalError(e, s.settings);
  }
  return out.sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime());
}
