// The coordinator's checkpoint activities: write a manifest then the run's `latest` pointer; read one
// back, verifying the blobs it names and whether the requested config can resume from it.
import type { CheckpointManifest, LoadCheckpointInput, LoadCheckpointOutput, WriteCheckpointInput, WriteCheckpointOutput } from "../contracts/activities.js";
import { ApplicationFailure } from "@temporalio/activity";
import { ErrorTypes } from "../contracts/errors.js";
import { CorruptBlobError, decodeArrays } from "../meta/params.js";
import { parseRunConfig, resumeIncompatibilities } from "../meta/run-config.js";
import { BlobNotFound, isStoreError } from "../storage/blobstore.js";
import { checkpointManifestKey, checkpointsPrefix, contentAddress, latestCheckpointKey, parseCheckpointManifestKey, recordOriginKey } from "../storage/keys.js";
import { RECORD_FORMAT, compactRecord } from "../storage/record.js";
import { blobMismatch, invalidInput } from "./errors.js";
import { isCount, isObject, secondsSince, utf8, type ActivityKit } from "./ports.js";

/** Format of checkpoint manifests (also in contracts' CheckpointManifest type). */
export const CHECKPOINT_FORMAT = "metatrain-checkpoint/1" as const;

/** Body of a run's `latest` pointer. */
export interface LatestPointer {
  manifestKey: string;
  iteration: number;
}

export function checkpointActivities(kit: ActivityKit) {
  const { store, log, now, metrics, readJson, putRecord } = kit;
  async function writeCheckpoint({ manifest: m }: WriteCheckpointInput): Promise<WriteCheckpointOutput> {
    const started = performance.now();
    const config = parseRunConfig(m.config);
    const manifestKey = checkpointManifestKey(m.runId, m.iteration);
    // A manifest naming missing blobs could never be resumed from: refuse to write it.
    for (const k of [m.paramsKey, m.optimKey]) if (!(await store.exists(k))) throw new BlobNotFound(k, store.describe());
    const manifest: CheckpointManifest = { format: CHECKPOINT_FORMAT, ...m, config, createdAt: now().toISOString() };
    const manifestBytes = utf8(JSON.stringify(manifest, null, 2));
    const pointer: LatestPointer = { manifestKey, iteration: m.iteration };
    const pointerBytes = utf8(JSON.stringify(pointer));
    // The run's record of the rounds before this checkpoint becomes one blob, alongside the manifest
    // writes (the step waits for the longer of the two). Repeatable: a retry compacts what is left.
    const [compacted] = await Promise.all([
      compactRecord(store, m.runId, m.iteration),
      (async () => {
        await store.put(manifestKey, manifestBytes, { contentType: "application/json" });
        // Pointer last: whoever reads `latest` finds a complete manifest behind it.
        await store.put(latestCheckpointKey(m.runId), pointerBytes, { contentType: "application/json" });
      })(),
    ]);
    // The parameters and optimizer state it names were written (content-addressed) by the outer step.
    metrics.observeCheckpoint(secondsSince(started), manifestBytes.byteLength + pointerBytes.byteLength);
    log("writeCheckpoint", { runId: m.runId, iteration: m.iteration, manifestKey, recordCompacted: compacted });
    return { manifestKey };
  }

  async function loadCheckpoint({ key, requested, runId }: LoadCheckpointInput): Promise<LoadCheckpointOutput> {
    let manifestKey = key;
    let doc = await readJson(key);
    if (isObject(doc) && doc.format === undefined && typeof doc.manifestKey === "string") {
      manifestKey = doc.manifestKey;
      doc = await readJson(manifestKey);
    }
    const fix = "pass a manifest key (runs/<runId>/checkpoints/<iteration>/manifest.json) or a run's runs/<runId>/checkpoints/latest.json";
    if (!isObject(doc) || doc.format !== CHECKPOINT_FORMAT) {
      const format = isObject(doc) ? JSON.stringify(doc.format) : "none";
      throw invalidInput(`"${manifestKey}" is not a ${CHECKPOINT_FORMAT} manifest (format ${format})`, fix);
    }
    let m: Record<string, unknown> = doc;
    checkManifestFields(manifestKey, m);
    let fallback: LoadCheckpointOutput["fallback"];
    try {
      // Read the blobs the checkpoint names, whatever the workers' caches hold: a resume from a
      // damaged checkpoint must not train on from cached tensors.
      for (const k of [m.paramsKey as string, m.optimKey as string]) await verifyStateBlob(k);
    } catch (e) {
      // Parameters and optimizer state cannot be recomputed from the round: go back to the newest
      // earlier checkpoint of the run whose blobs verify. Every iteration derives from the seed, so
      // the run reaches the same parameters, only later.
      if (!unusableBlob(e)) throw e;
      const earlier = await earlierGoodCheckpoint(m.runId as string, m.iteration as number);
      if (!earlier) throw e;
      fallback = { from: manifestKey, manifestKey: earlier.manifestKey, reason: (e as Error).message };
      log("loadCheckpoint: checkpoint unusable, falling back to an earlier one", { ...fallback, iteration: earlier.doc.iteration });
      m = earlier.doc;
    }
    const fromCheckpoint = parseRunConfig(m.config);
    // The config to go on with (the requested one, else the checkpoint's), checked against what the checkpoint ties down.
    const config = requested == null ? fromCheckpoint : parseRunConfig(requested);
    const problems = resumeIncompatibilities(fromCheckpoint, config, m.iteration as number);
    // The resuming run's record goes on from the checkpoint's run (a run resumed from its own
    // checkpoint already has those rounds). One fixed key: a retried load rewrites it.
    if (runId !== undefined && problems.length === 0 && runId !== m.runId) {
      const loaded = fallback?.manifestKey ?? manifestKey;
      await putRecord(recordOriginKey(runId), { format: RECORD_FORMAT, kind: "origin", runId, sourceRunId: m.runId as string, manifestKey: loaded, iteration: m.iteration as number });
    }
    return { ...(m as unknown as CheckpointManifest), config: fromCheckpoint, resume: { config, problems }, ...(fallback ? { fallback } : {}) };
  }

  function checkManifestFields(manifestKey: string, doc: Record<string, unknown>): void {
    const bad: string[] = ["runId", "paramsKey", "optimKey", "createdAt"].filter((f) => typeof doc[f] !== "string");
    if (!isCount(doc.iteration)) bad.push("iteration");
    if (typeof doc.metaLr !== "number") bad.push("metaLr");
    if (!isObject(doc.metrics)) bad.push("metrics");
    if (bad.length) throw blobMismatch(manifestKey, `is a checkpoint manifest with missing or invalid fields: ${bad.join(", ")}`);
  }

  /** The newest checkpoint of `runId` before `iteration` whose manifest and blobs all verify. */
  async function earlierGoodCheckpoint(runId: string, iteration: number): Promise<{ manifestKey: string; doc: Record<string, unknown> } | undefined> {
    const keys = (await store.list(checkpointsPrefix(runId)))
      .map((k) => ({ k, it: parseCheckpointManifestKey(k)?.iteration }))
      .filter((x): x is { k: string; it: number } => x.it !== undefined && x.it < iteration)
      .sort((a, b) => b.it - a.it);
    for (const { k } of keys) {
      try {
        const doc = await readJson(k);
        if (!isObject(doc) || doc.format !== CHECKPOINT_FORMAT) continue;
        checkManifestFields(k, doc);
        for (const b of [doc.paramsKey as string, doc.optimKey as string]) await verifyStateBlob(b);
        return { manifestKey: k, doc };
      } catch (e) {
        if (!unusableBlob(e)) throw e;
        log("loadCheckpoint: earlier checkpoint unusable too", { manifestKey: k, reason: (e as Error).message });
      }
    }
    return undefined;
  }

  /** A content-addressed state blob: the store's checksum, the tensor format's CRC, the address. */
  async function verifyStateBlob(key: string): Promise<void> {
    const bytes = await store.get(key);
    decodeArrays(bytes);
    const sha = /\/([0-9a-f]{64})\.mtt$/.exec(key)?.[1];
    if (sha !== undefined && contentAddress(bytes) !== sha) {
      throw blobMismatch(key, "does not hash to the content address in its key");
    }
  }
  return { writeCheckpoint, loadCheckpoint };
}

/** A blob that is missing or fails verification (not a transient store error, not a bad config). */
function unusableBlob(e: unknown): boolean {
  if (isStoreError(e)) return e.code === "BLOB_NOT_FOUND" || e.code === "BLOB_CORRUPT";
  return e instanceof CorruptBlobError || (e instanceof ApplicationFailure && e.type === ErrorTypes.BlobCorrupt);
}
