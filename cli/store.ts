// Checkpoints as the CLI sees them: URIs (`<storeUri>/runs/<id>/checkpoints/…` or a bare run id),
// the store they live in, their manifests and parameters; store errors as one-line CliErrors.
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { CheckpointManifest } from "../contracts/activities.js";
import type { RunConfig } from "../meta/run-config.js";
import type { Params } from "../meta/params.js";
import { isStoreError, openStore, type BlobStore } from "../storage/blobstore.js";
import { RUN_ID_PATTERN, checkpointManifestKey, checkpointsPrefix, latestCheckpointKey, parseCheckpointManifestKey } from "../storage/keys.js";
import { CliError, ExitCodes } from "./errors.js";

type Env = Readonly<Record<string, string | undefined>>;

/** The store `metatrain dev` gives its worker, and the CLI's default when METATRAIN_STORE is unset. */
export const DEFAULT_STORE_URI = "file:./.metatrain/store";

/** METATRAIN_STORE, else the dev default. */
export function storeUriFromEnv(env: Env = process.env): string {
  const v = env.METATRAIN_STORE?.trim();
  return v ? v : DEFAULT_STORE_URI;
}

/** A store URI as printed: `file:./rel` made absolute (`file:///abs/rel`), no trailing '/'. */
export function displayStoreUri(uri: string, cwd = process.cwd()): string {
  const u = uri.replace(/\/+$/, "");
  if (u.startsWith("file:") && !u.startsWith("file://")) {
    const p = decodeURIComponent(u.slice("file:".length));
    if (p && !isAbsolute(p)) return pathToFileURL(resolve(cwd, p)).href;
  }
  return u;
}

/** The full URI of a key in a store. */
export const keyUri = (storeUri: string, key: string): string => `${displayStoreUri(storeUri)}/${key}`;

/** A checkpoint named on the command line. */
export interface CheckpointRef {
  /** The store, as given (or from METATRAIN_STORE for a bare run id). */
  storeUri: string;
  /** A manifest key, or a run's `latest.json` pointer key. */
  key: string;
  runId: string;
  /** `<storeUri>/<key>`, with the store made absolute. */
  uri: string;
}

const FORMS =
  "give <store>/runs/<id>/checkpoints/latest.json, <store>/runs/<id>/checkpoints/<iteration>/manifest.json " +
  "(store: file:///abs/dir, file:./rel/dir or s3://bucket/prefix), or a run id with METATRAIN_STORE set";

/** Parse a checkpoint URI or a bare run id (→ that run's latest checkpoint in METATRAIN_STORE). */
export function parseCheckpointRef(arg: string, env: Env = process.env): CheckpointRef {
  const a = arg.trim().replace(/\/+$/, "");
  if (RUN_ID_PATTERN.test(a) && !a.includes(":")) {
    const storeUri = storeUriFromEnv(env);
    const key = latestCheckpointKey(a);
    return { storeUri, key, runId: a, uri: keyUri(storeUri, key) };
  }
  // <store>/runs/<id>[/checkpoints[/latest.json | /<iteration>[/manifest.json]]]
  const m = /^(.+?)\/runs\/([^/]+)(?:\/checkpoints(?:\/(latest\.json|\d{1,8})(?:\/manifest\.json)?)?)?$/.exec(a);
  if (!m || !/^(file:|s3:\/\/)/.test(m[1]!)) {
    throw new CliError(`'${arg}' is not a checkpoint URI`, ExitCodes.badInput, FORMS);
  }
  const [, storeUri, runId, which] = m as unknown as [string, string, string, string | undefined];
  if (!RUN_ID_PATTERN.test(runId)) throw new CliError(`'${runId}' in '${arg}' is not a run id`, ExitCodes.badInput, FORMS);
  const key = which === undefined || which === "latest.json" ? latestCheckpointKey(runId) : checkpointManifestKey(runId, Number(which));
  return { storeUri, key, runId, uri: keyUri(storeUri, key) };
}

/** A store error as the user should see it: not found 4, access denied 5, unreachable 3, bad URI 2. */
export function storeCliError(e: unknown, context: string): unknown {
  if (!isStoreError(e)) return e;
  const code =
    e.code === "BLOB_NOT_FOUND"
      ? ExitCodes.notFound
      : e.code === "STORE_ACCESS_DENIED"
        ? ExitCodes.accessDenied
        : e.code === "STORE_UNAVAILABLE"
          ? ExitCodes.unreachable
          : e.code === "INVALID_STORE_URI" || e.code === "INVALID_BLOB_KEY"
            ? ExitCodes.badInput
            : ExitCodes.failure;
  return new CliError(`${context}: ${e.message.split("\n")[0]}`, code, e.suggestion);
}

/** Open a store for the CLI. */
export async function openCliStore(uri: string, env: Env = process.env): Promise<BlobStore> {
  try {
    return await openStore(uri, env);
  } catch (e) {
    throw storeCliError(e, "cannot open the store");
  }
}

/** A checkpoint read from its store. */
export interface LoadedCheckpoint {
  ref: CheckpointRef;
  store: BlobStore;
  /** Its config parsed by the full schema. */
  manifest: CheckpointManifest & { config: RunConfig };
  manifestKey: string;
  /** The manifest's full URI. */
  manifestUri: string;
}

const decodeJson = (bytes: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(bytes));

/** Read a checkpoint manifest (following a `latest.json` pointer) and check its format. */
export async function loadCheckpoint(arg: string, env: Env = process.env): Promise<LoadedCheckpoint> {
  const ref = parseCheckpointRef(arg, env);
  const store = await openCliStore(ref.storeUri, env);
  const read = async (key: string): Promise<unknown> => {
    let bytes: Uint8Array;
    try {
      bytes = await store.get(key);
    } catch (e) {
      if (isStoreError(e) && e.code === "BLOB_NOT_FOUND") {
        const latest = key.endsWith("/latest.json");
        throw new CliError(
          `no checkpoint at ${keyUri(ref.storeUri, key)}`,
          ExitCodes.notFound,
          latest
            ? `run '${ref.runId}' has written no checkpoint to ${displayStoreUri(ref.storeUri)} (wrong store? set METATRAIN_STORE to the workers' store, or give the full URI)`
            : "check the iteration: checkpoints are written every `checkpointEvery` iterations and at the end",
        );
      }
      throw storeCliError(e, `cannot read ${keyUri(ref.storeUri, key)}`);
    }
    try {
      return decodeJson(bytes);
    } catch {
      throw new CliError(`${keyUri(ref.storeUri, key)} is not JSON`, ExitCodes.badInput, FORMS);
    }
  };
  let manifestKey = ref.key;
  let doc = await read(ref.key);
  const obj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
  if (obj(doc) && doc.format === undefined && typeof doc.manifestKey === "string") {
    manifestKey = doc.manifestKey;
    doc = await read(manifestKey);
  }
  if (!obj(doc) || doc.format !== "metatrain-checkpoint/1" || typeof doc.paramsKey !== "string") {
    throw new CliError(`${keyUri(ref.storeUri, manifestKey)} is not a metatrain checkpoint manifest`, ExitCodes.badInput, FORMS);
  }
  let config;
  // Loaded here: the config's parser brings the learner registry, so TensorFlow.js, which a CLI that
  // only names a store (status, list, report, --help) does not need.
  const { parseRunConfig } = await import("../meta/run-config.js");
  try {
    config = parseRunConfig(doc.config);
  } catch (e) {
    throw new CliError(`the checkpoint ${keyUri(ref.storeUri, manifestKey)} holds an invalid config: ${(e as Error).message}`, ExitCodes.failure);
  }
  const manifest: CheckpointManifest & { config: RunConfig } = { ...(doc as unknown as CheckpointManifest), config };
  return { ref, store, manifest, manifestKey, manifestUri: keyUri(ref.storeUri, manifestKey) };
}

/**
 * Refuse, before any run is started (exit 2, the run id not used up), a resume the workflow would
 * fail: the coordinator's own `loadCheckpoint` runs here over the CLI's store, so the blobs are
 * verified and the config compared (`resumeIncompatibilities`) exactly as the run would. A
 * checkpoint whose blobs fail verification is refused too, naming the newest earlier one that
 * verifies (the run itself would fall back to it silently).
 * @param requested the changed config (`--set`), or null to go on with the checkpoint's.
 */
export async function checkResumable(c: LoadedCheckpoint, requested: RunConfig | null): Promise<void> {
  // Loaded here: the activities bring TensorFlow.js, which only resume-from, eval and export need.
  const [{ checkpointActivities }, { activityKit }, { ApplicationFailure }, { CorruptBlobError }] = await Promise.all([
    import("../activities/checkpoints.js"),
    import("../activities/ports.js"),
    import("@temporalio/activity"),
    import("../meta/params.js"),
  ]);
  const { loadCheckpoint } = checkpointActivities(activityKit({ store: c.store }));
  let out;
  try {
    out = await loadCheckpoint({ key: c.manifestKey, requested });
  } catch (e) {
    const unusable = e instanceof ApplicationFailure || e instanceof CorruptBlobError || (isStoreError(e) && (e.code === "BLOB_CORRUPT" || e.code === "BLOB_NOT_FOUND"));
    if (!unusable) throw storeCliError(e, `cannot read the checkpoint ${c.manifestUri}`);
    throw new CliError(`the checkpoint ${c.manifestUri} cannot be resumed from: ${(e as Error).message.split("\n")[0]}`, ExitCodes.badInput, "no earlier checkpoint of the run verifies either; start a fresh run (nothing was started)");
  }
  if (out.fallback) {
    throw new CliError(
      `the checkpoint ${c.manifestUri} fails verification: ${out.fallback.reason.split("\n")[0]}`,
      ExitCodes.badInput,
      `resume from the newest one that verifies: metatrain resume-from ${keyUri(c.ref.storeUri, out.fallback.manifestKey)} (nothing was started)`,
    );
  }
  if (out.resume.problems.length) {
    throw new CliError(`cannot resume from ${c.manifestUri}: ${out.resume.problems.join("; ")}`, ExitCodes.badInput, "change or drop the --set values named above (nothing was started)");
  }
}

/**
 * The newest checkpoint of `runId` in `store` that a resume can use — its manifest, parameters and
 * optimizer state verified by the coordinator's own `loadCheckpoint` (which falls back to earlier
 * ones) — or undefined when none does. Manifests are listed rather than `latest.json` followed: a
 * run that failed between a manifest and its pointer, or whose pointer is damaged, still has it.
 * Store errors other than a missing or corrupt blob (unreachable, access denied) are thrown.
 */
export async function latestGoodCheckpoint(store: BlobStore, runId: string): Promise<{ manifestKey: string; iteration: number } | undefined> {
  const [{ checkpointActivities }, { activityKit }, { ApplicationFailure }, { CorruptBlobError }] = await Promise.all([
    import("../activities/checkpoints.js"),
    import("../activities/ports.js"),
    import("@temporalio/activity"),
    import("../meta/params.js"),
  ]);
  const { loadCheckpoint } = checkpointActivities(activityKit({ store }));
  const manifests = (await store.list(checkpointsPrefix(runId)))
    .map((k) => parseCheckpointManifestKey(k))
    .filter((x): x is { runId: string; iteration: number } => x !== undefined && x.runId === runId)
    .sort((a, b) => b.iteration - a.iteration);
  for (const { iteration } of manifests) {
    const key = checkpointManifestKey(runId, iteration);
    try {
      const m = await loadCheckpoint({ key, requested: null });
      return { manifestKey: m.fallback?.manifestKey ?? checkpointManifestKey(runId, m.iteration), iteration: m.iteration };
    } catch (e) {
      const unusable = e instanceof ApplicationFailure || e instanceof CorruptBlobError || (isStoreError(e) && (e.code === "BLOB_CORRUPT" || e.code === "BLOB_NOT_FOUND"));
      if (!unusable) throw e;
      // A damaged manifest: try the one before. A damaged blob: loadCheckpoint has already tried
      // every earlier manifest, and none verifies.
      if (!(e as Error).message.includes(key)) return undefined;
    }
  }
  return undefined;
}

/** The parameters a checkpoint names (the caller disposes them). */
export async function loadCheckpointParams(c: LoadedCheckpoint): Promise<Params> {
  let bytes: Uint8Array;
  try {
    bytes = await c.store.get(c.manifest.paramsKey);
  } catch (e) {
    throw storeCliError(e, `cannot read the parameters of ${c.manifestUri}`);
  }
  // Loaded here, not at the top: only eval and export need TensorFlow.js.
  const { deserializeParams } = await import("../meta/params.js");
  try {
    return deserializeParams(bytes).params;
  } catch (e) {
    throw new CliError(`the parameters of ${c.manifestUri} (${c.manifest.paramsKey}) are corrupt: ${(e as Error).message}`, ExitCodes.failure);
  }
}
