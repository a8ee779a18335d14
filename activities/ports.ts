// The ports activities run over (a blob store, a log, the activity context, metrics, a clock) and
// the kit every activity file shares: those ports resolved with their defaults, the per-process
// caches, and the blob helpers. The worker wires real ports; tests pass in-memory ones.
import { hostname } from "node:os";
import * as tf from "@tensorflow/tfjs";
import { Context } from "@temporalio/activity";
import { deserializeState, type OuterState } from "../meta/optimizers.js";
import { CorruptBlobError, deserializeParams, type Params } from "../meta/params.js";
import type { RunConfig } from "../meta/run-config.js";
import { BlobCorrupt, type BlobStore } from "../storage/blobstore.js";
import { contentAddress } from "../storage/keys.js";
import { encodeRecord, type RecordEntry } from "../storage/record.js";
import { noopMetrics, type MetricsPort } from "../telemetry/metrics.js";
import { BuildCache } from "./build.js";
import { ParamsCache } from "./params-cache.js";
import type { ResultPrefetch } from "./prefetch.js";

/** What an activity needs from Temporal: heartbeats, the cancellation signal and the attempt number. */
export interface ActivityContext {
  heartbeat(details?: unknown): void;
  signal: AbortSignal;
  /** Temporal attempt of this execution, 1 for the first (attempts above 1 are retries, for metrics). Default 1. */
  attempt?: number;
}

export type ActivityLog = (msg: string, fields?: Record<string, unknown>) => void;

export interface ActivityDeps {
  /** Where parameters, optimizer state, shard results and checkpoints live. */
  store: BlobStore;
  /** Structured log line sink. Default: discard. */
  log?: ActivityLog;
  /** The current activity's context. Default: `Context.current()` of @temporalio/activity. */
  context?: () => ActivityContext;
  /** Parameter sets cached per worker by key (LRU; evicted tensors are disposed). Default 4. */
  paramsCacheSize?: number;
  /** The tfjs backend in use, reported with shard results. Default `tf.getBackend()`. */
  backendName?: () => string;
  /** Least time between two heartbeats sent from inner steps, in ms; every task end heartbeats regardless. Default 1000. */
  heartbeatIntervalMs?: number;
  /** Clock for manifest timestamps. Default `new Date()`. */
  now?: () => Date;
  /**
   * Where activities report metrics (telemetry/): inner loops, shard outcomes, outer steps, run
   * progress, checkpoints, parameter-cache lookups. Default `noopMetrics`. Evaluations and run
   * state are reported by the workflow's sinks on the coordinator, not here (docs/observability.md).
   */
  metrics?: MetricsPort;
  /**
   * Benchmarks only: each task takes this many ms, its real work included — the shard sleeps
   * until k·simulatedTaskMs after its first task began once k tasks are done (heartbeating and
   * honouring cancellation) — to stand in for GPU compute when measuring orchestration. Default 0.
   */
  simulatedTaskMs?: number;
  /**
   * Set by a gpu worker: called when the store refuses a shard or an evaluation (access denied).
   * The attempt then fails retryably as WorkerStoreAccessDenied — another worker takes it — and
   * the worker marks itself unhealthy and stops taking work. Unset: such errors stay
   * StoreAccessDenied, final (one process, as in tests, has no other worker to turn to).
   */
  onStoreAccessDenied?: { worker: string; report: (e: Error) => void };
  /** This worker's name in the run's record (shard durations per worker). Default the host name. */
  workerName?: string;
  /**
   * On a coordinator: shard results read ahead as the workflow reports them (activities/prefetch.ts);
   * the outer step takes its reads from here first. Unset: the outer step reads every result itself.
   */
  prefetch?: ResultPrefetch;
}

/** The Temporal activity context, adapted to the port. */
export function temporalContext(): ActivityContext {
  const c = Context.current();
  return { heartbeat: (d) => c.heartbeat(d), signal: c.cancellationSignal, attempt: c.info.attempt };
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

export function isCount(n: unknown, min = 0): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= min;
}

export const secondsSince = (start: number): number => (performance.now() - start) / 1000;

/** Optimizer states kept in memory by the coordinator that wrote them (see `rememberState`). */
export const STATE_CACHE_ENTRIES = 2;
export const STATE_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/** The ports with their defaults, the per-process caches and the blob helpers every activity uses. */
export type ActivityKit = ReturnType<typeof activityKit>;

export function activityKit(deps: ActivityDeps) {
  const { store } = deps;
  const log: ActivityLog = deps.log ?? (() => {});
  const context = deps.context ?? temporalContext;
  const backendName = deps.backendName ?? (() => tf.getBackend());
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 1000;
  const now = deps.now ?? (() => new Date());
  const simulatedTaskMs = deps.simulatedTaskMs ?? 0;
  const workerName = deps.workerName ?? hostname();
  const metrics = deps.metrics ?? noopMetrics;
  const prefetch = deps.prefetch;
  const builds = new BuildCache();


  /** Decode a tensor blob; a bad checksum or layout becomes BlobCorrupt naming the key. */
  function decodeTensors(key: string, bytes: Uint8Array): { params: Params; meta: unknown } {
    try {
      return deserializeParams(bytes);
    } catch (e) {
      if (e instanceof CorruptBlobError) throw new BlobCorrupt(key, e.message);
      throw e;
    }
  }

  /**
   * Optimizer state this process wrote, as the bytes it wrote, by content address: the next outer
   * step on this coordinator (a local activity, so usually this process) decodes it from memory
   * instead of reading it back from the store. The key names the bytes, so the copy cannot be stale.
   * The last STATE_CACHE_ENTRIES, each at most STATE_CACHE_MAX_BYTES (larger states are re-read).
   */
  const stateBytes = new Map<string, Uint8Array>();
  function rememberState(key: string, bytes: Uint8Array): void {
    if (bytes.byteLength > STATE_CACHE_MAX_BYTES) return;
    stateBytes.delete(key);
    stateBytes.set(key, bytes);
    while (stateBytes.size > STATE_CACHE_ENTRIES) stateBytes.delete(stateBytes.keys().next().value!);
  }

  async function readState(key: string): Promise<OuterState> {
    const bytes = stateBytes.get(key) ?? (await store.get(key));
    try {
      return deserializeState(bytes);
    } catch (e) {
      throw new BlobCorrupt(key, (e as Error).message);
    }
  }

  async function readJson(key: string): Promise<unknown> {
    const bytes = await store.get(key);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new BlobCorrupt(key, `not valid JSON (${(e as Error).message})`);
    }
  }

  const cache = new ParamsCache({
    capacity: deps.paramsCacheSize ?? 4,
    load: async (key) => decodeTensors(key, await store.get(key)).params,
    onEvict: (key) => {
      log("params cache evicted", { key });
      metrics.observeParamsCacheEviction();
    },
    onLookup: (hit) => metrics.observeParamsCache(hit),
  });

  /**
   * Write under a content address. Always written, even when the key exists: a blob there may be
   * damaged (a run resumed from an earlier checkpoint recomputes the same bytes and so heals it),
   * and rewriting the same bytes atomically is harmless to readers and to retries.
   */
  async function putContentAddressed(keyOf: (runId: string, sha: string) => string, runId: string, bytes: Uint8Array): Promise<string> {
    const key = keyOf(runId, contentAddress(bytes));
    await store.put(key, bytes);
    return key;
  }

  /** Parameters as stored: the meta names the model so a blob says what it is. */
  const paramsMeta = (config: RunConfig) => ({ kind: "params", model: builds.get(config).setup.model.name, learner: config.algorithm });

  /** Write one record blob (storage/record.ts) under its fixed key: a retry rewrites the same object. */
  async function putRecord(key: string, entry: RecordEntry): Promise<void> {
    await store.put(key, encodeRecord(entry), { contentType: "application/json" });
  }

  return { store, log, context, backendName, heartbeatIntervalMs, now, simulatedTaskMs, workerName, prefetch, putRecord, metrics, builds, cache, decodeTensors, readState, rememberState, readJson, putContentAddressed, paramsMeta };
}
