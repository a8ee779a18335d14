// A run's record: one small JSON blob per round, per evaluation and per resume, written by the
// coordinator's activities under keys fixed by (run, iteration) — a retried activity rewrites the
// same object, so the record is append-only in effect and survives retries, worker kills and
// continue-as-new (the run id stays). Each checkpoint compacts the blobs before it into one segment
// blob, so a long run keeps a few blobs per checkpoint interval. `metatrain report` reads it back.
import type { AdaptationMetrics, MeanCI } from "../contracts/activities.js";
import type { BlobStore } from "./blobstore.js";
import { BlobCorrupt, BlobNotFound } from "./blobstore.js";
import { parseRecordKey, recordOriginKey, recordPrefix, recordSegmentKey } from "./keys.js";

/** Format tag of every record blob. */
export const RECORD_FORMAT = "metatrain-record/1" as const;

/** One shard of a round as the record keeps it. */
export interface ShardRecord {
  index: number;
  /** The worker that ran the attempt that counted (METATRAIN_WORKER_NAME, else the host name). */
  worker: string;
  /** Wall time of that attempt, in seconds. */
  seconds: number;
  tasks: number;
}

/** One round (meta-iteration): x = `iteration` updates applied before it. */
export interface IterationRecord extends AdaptationMetrics {
  format: typeof RECORD_FORMAT;
  kind: "iteration";
  runId: string;
  iteration: number;
  tasks: number;
  /** The base meta learning rate (the config's or a signalled one) and the step size applied. */
  metaLr: number;
  stepSize: number;
  /** Epoch ms: the earliest shard start (the round's start) and the outer step's end. */
  startedAt: number;
  endedAt: number;
  /** The outer step's own wall time, in seconds. */
  outerSeconds: number;
  shards: ShardRecord[];
}

/** A held-out evaluation after `iteration` iterations. */
export interface EvaluationRecord {
  format: typeof RECORD_FORMAT;
  kind: "evaluation";
  runId: string;
  iteration: number;
  steps: number;
  loss: MeanCI;
  accuracy?: MeanCI;
  endedAt: number;
}

/** A run started from another run's checkpoint: its record goes on from there. */
export interface OriginRecord {
  format: typeof RECORD_FORMAT;
  kind: "origin";
  runId: string;
  sourceRunId: string;
  manifestKey: string;
  /** The checkpoint's iteration: the source's rounds below it belong to this run's history. */
  iteration: number;
}

/** Rounds and evaluations compacted into one blob at a checkpoint (iterations `first`–`last`). */
export interface SegmentRecord {
  format: typeof RECORD_FORMAT;
  kind: "segment";
  runId: string;
  iteration: number;
  last: number;
  entries: (IterationRecord | EvaluationRecord)[];
}

export type RecordEntry = IterationRecord | EvaluationRecord | OriginRecord | SegmentRecord;

/** Compact JSON (no indentation): the bytes of one record blob. */
export function encodeRecord(r: RecordEntry): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}

const finite = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
const count = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
const meanCi = (x: unknown): boolean => typeof x === "object" && x !== null && finite((x as MeanCI).mean) && finite((x as MeanCI).ci95) && count((x as MeanCI).n);

/** Parse and check one record blob; throws BlobCorrupt naming `key` and the first bad field. */
export function decodeRecord(key: string, bytes: Uint8Array): RecordEntry {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch (e) {
    throw new BlobCorrupt(key, `not valid JSON (${(e as Error).message})`);
  }
  return checkEntry(key, doc, true);
}

function checkEntry(key: string, doc: Record<string, unknown>, top: boolean): RecordEntry {
  const bad = (field: string): never => {
    throw new BlobCorrupt(key, `is not a ${RECORD_FORMAT} record: field ${field} missing or invalid`);
  };
  if (typeof doc !== "object" || doc === null || doc.format !== RECORD_FORMAT) bad("format");
  if (typeof doc.runId !== "string") bad("runId");
  if (!count(doc.iteration)) bad("iteration");
  switch (doc.kind) {
    case "iteration":
      for (const f of ["preLoss", "postLoss", "metaLr", "stepSize", "startedAt", "endedAt", "outerSeconds"]) if (!finite(doc[f])) bad(f);
      for (const f of ["preAccuracy", "postAccuracy"]) if (doc[f] !== undefined && !finite(doc[f])) bad(f);
      if (!count(doc.tasks)) bad("tasks");
      if (!Array.isArray(doc.shards) || !doc.shards.every((s: ShardRecord) => count(s?.index) && typeof s.worker === "string" && finite(s.seconds) && count(s.tasks))) bad("shards");
      break;
    case "evaluation":
      if (!count(doc.steps)) bad("steps");
      if (!meanCi(doc.loss)) bad("loss");
      if (doc.accuracy !== undefined && !meanCi(doc.accuracy)) bad("accuracy");
      if (!finite(doc.endedAt)) bad("endedAt");
      break;
    case "origin":
      if (!top) bad("kind");
      if (typeof doc.sourceRunId !== "string") bad("sourceRunId");
      if (typeof doc.manifestKey !== "string") bad("manifestKey");
      break;
    case "segment":
      if (!top) bad("kind");
      if (!count(doc.last)) bad("last");
      if (!Array.isArray(doc.entries)) bad("entries");
      for (const e of doc.entries as Record<string, unknown>[]) checkEntry(key, typeof e === "object" && e !== null ? e : {}, false);
      break;
    default:
      bad("kind");
  }
  return doc as unknown as RecordEntry;
}

/** A run's history as the report draws it, oldest first; a resumed run's source rounds included. */
export interface RunHistory {
  runId: string;
  iterations: IterationRecord[];
  evaluations: EvaluationRecord[];
  /** The chain of checkpoints it was resumed from, nearest first. */
  origins: OriginRecord[];
}

/** Reads at once per listing: enough to hide an S3 round trip, few enough for a small server. */
const READ_CONCURRENCY = 16;

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const work = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, work));
  return out;
}

/** Most resume hops followed (a chain of resumes longer than this is surely a loop). */
const MAX_ORIGINS = 100;

/**
 * Read a run's record from the store. A run resumed from another run's checkpoint (origin.json)
 * continues that run's rounds below the checkpoint's iteration, recursively, so the curves are
 * continuous. Throws BlobNotFound when the run has no record at all.
 */
export async function readRunHistory(store: BlobStore, runId: string): Promise<RunHistory> {
  const history: RunHistory = { runId, iterations: [], evaluations: [], origins: [] };
  let current = runId;
  let below = Infinity;
  const seen = new Set<string>();
  for (let hop = 0; hop <= MAX_ORIGINS && !seen.has(current); hop++) {
    seen.add(current);
    const keys = (await store.list(recordPrefix(current))).filter((k) => {
      const p = parseRecordKey(k);
      return p !== undefined && p.iteration <= below;
    });
    const blobs = await mapLimit(keys, READ_CONCURRENCY, async (k) => decodeRecord(k, await store.get(k)));
    // By iteration: a blob left behind by a compaction cut short repeats what its segment holds.
    const iterations = new Map<number, IterationRecord>();
    const evaluations = new Map<number, EvaluationRecord>();
    for (const e of blobs.flatMap((b) => (b.kind === "segment" ? b.entries : [b]))) {
      // The source's rounds from the checkpoint on belong to the source, not to this history.
      if (e.kind === "iteration" && e.iteration < below) iterations.set(e.iteration, e);
      else if (e.kind === "evaluation" && e.iteration <= below) evaluations.set(e.iteration, e);
    }
    for (const e of iterations.values()) if (!history.iterations.some((x) => x.iteration === e.iteration)) history.iterations.push(e);
    for (const e of evaluations.values()) if (!history.evaluations.some((x) => x.iteration === e.iteration)) history.evaluations.push(e);
    const origin = await readOrigin(store, current);
    if (!origin) break;
    history.origins.push(origin);
    current = origin.sourceRunId;
    below = origin.iteration;
  }
  if (history.iterations.length === 0 && history.evaluations.length === 0) {
    throw new BlobNotFound(recordPrefix(runId), store.describe(), { suggestion: "check the run id and METATRAIN_STORE; runs record their rounds from this version of metatrain on" });
  }
  history.iterations.sort((a, b) => a.iteration - b.iteration);
  history.evaluations.sort((a, b) => a.iteration - b.iteration);
  return history;
}

/**
 * Compact the run's round and evaluation blobs before iteration `below` into one segment blob,
 * then delete them; returns how many it compacted. Safe to repeat or to cut short at any point:
 * the segment is written before anything is deleted, a retry compacts what is left (the reader
 * takes each iteration once, wherever it finds it), and older segments are left as they are.
 */
export async function compactRecord(store: BlobStore, runId: string, below: number): Promise<number> {
  const keys = (await store.list(recordPrefix(runId))).filter((k) => {
    const p = parseRecordKey(k);
    return p !== undefined && p.kind !== "seg" && p.iteration < below;
  });
  if (keys.length === 0) return 0;
  const entries = (await mapLimit(keys, READ_CONCURRENCY, async (k) => decodeRecord(k, await store.get(k)))).filter(
    (e): e is IterationRecord | EvaluationRecord => e.kind === "iteration" || e.kind === "evaluation",
  );
  const first = Math.min(...entries.map((e) => e.iteration));
  const last = Math.max(...entries.map((e) => e.iteration));
  const segment: SegmentRecord = { format: RECORD_FORMAT, kind: "segment", runId, iteration: first, last, entries };
  await store.put(recordSegmentKey(runId, first, last), encodeRecord(segment), { contentType: "application/json" });
  await mapLimit(keys, READ_CONCURRENCY, (k) => store.delete(k));
  return keys.length;
}

async function readOrigin(store: BlobStore, runId: string): Promise<OriginRecord | undefined> {
  const key = recordOriginKey(runId);
  if (!(await store.exists(key))) return undefined;
  const r = decodeRecord(key, await store.get(key));
  if (r.kind !== "origin") throw new BlobCorrupt(key, `holds a ${r.kind} record, not an origin`);
  return r;
}

/**
 * Compute vs orchestration per round, in seconds: compute is the slowest shard (the round's
 * critical path) plus the outer step; the rest of the round's wall time — from the previous
 * round's end, or from its first shard's start when there is none — is orchestration.
 */
export function iterationTimes(rs: readonly IterationRecord[]): { iteration: number; seconds: number; compute: number; orchestration: number }[] {
  return rs.map((r, i) => {
    const prev = rs[i - 1];
    const from = prev && prev.iteration === r.iteration - 1 && prev.endedAt <= r.endedAt ? prev.endedAt : r.startedAt;
    const seconds = Math.max(0, (r.endedAt - from) / 1000);
    const compute = Math.min(seconds, Math.max(0, ...r.shards.map((s) => s.seconds)) + r.outerSeconds);
    return { iteration: r.iteration, seconds, compute, orchestration: seconds - compute };
  });
}
