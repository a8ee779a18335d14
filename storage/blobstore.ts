// The blob store port: the interface every store implements, its key rules, its errors and `openStore(uri)`.
//
// Integrity contract, whatever the implementation: `put` stores the blob in the self-verifying
// envelope of storage/envelope.ts (a versioned header line with the payload's SHA-256, in the bytes
// themselves), and `get` recomputes the checksum and throws BlobCorrupt on any difference. So every
// blob is verified on read, tensor blobs (which also carry their own CRC-32) and JSON alike, and no
// backend's object metadata is needed for it (S3 keeps a copy there, checked when present).
import { createHash } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { S3StoreOptions } from "./s3-store.js";

/** Options of `BlobStore.put`. */
export interface PutOptions {
  /** MIME type recorded with the blob where the store keeps one (S3). Default "application/octet-stream". */
  contentType?: string;
  /**
   * The blob can be recomputed bit-identically from what is already durable (a shard result is a
   * pure function of seed, iteration and shard), so a store may skip what makes a write survive a
   * power loss (the filesystem store's fsyncs). It stays atomic: a reader sees the old bytes or the
   * new ones, and a torn or lost blob fails verification or is missing, which the workflow heals by
   * rerunning the shard. Default false.
   */
  recomputable?: boolean;
}

/**
 * Where runs keep their bytes: parameters, optimizer state, shard results, checkpoint manifests.
 * Keys follow `validateKey`; `storage/keys.ts` builds them.
 */
export interface BlobStore {
  /** Write (or overwrite) atomically: readers see the old bytes or the new ones, never a mix. */
  put(key: string, bytes: Uint8Array, opts?: PutOptions): Promise<void>;
  /** Read and verify (storage/envelope.ts). Throws BlobNotFound, or BlobCorrupt when the bytes do not match their checksum. */
  get(key: string): Promise<Uint8Array>;
  /** Whether a blob is stored at `key` (its content is not verified). */
  exists(key: string): Promise<boolean>;
  /** Keys starting with `prefix` (a string prefix, as S3 lists; "" lists all), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Remove; deleting a missing key is not an error (so a retried delete succeeds). */
  delete(key: string): Promise<void>;
  /** Where the store points, for logs and error messages; never includes credentials. */
  describe(): string;
}

// ---- errors ------------------------------------------------------------------------------------

/** The codes of store errors, as activities report them (the Temporal failure type). */
export type StoreErrorCode =
  | "BLOB_NOT_FOUND"
  | "BLOB_CORRUPT"
  | "STORE_UNAVAILABLE"
  | "STORE_ACCESS_DENIED"
  | "STORE_REQUEST_REJECTED"
  | "INVALID_STORE_URI"
  | "INVALID_BLOB_KEY";

interface StoreErrorOptions {
  suggestion?: string;
  cause?: unknown;
}

/** Base of every error a store throws: a code, whether a retry can help, and what to do about it. */
export abstract class StoreError extends Error {
  abstract readonly code: StoreErrorCode;
  abstract readonly retryable: boolean;
  /** What the user or operator should change; undefined when there is nothing to add. */
  readonly suggestion: string | undefined;

  constructor(message: string, opts: StoreErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.suggestion = opts.suggestion;
  }
}

/** No blob at the key. Not retryable: the key is wrong or the blob was never written. */
export class BlobNotFound extends StoreError {
  override readonly name = "BlobNotFound";
  readonly code = "BLOB_NOT_FOUND";
  readonly retryable = false;
  constructor(
    readonly key: string,
    where: string,
    opts: StoreErrorOptions = {},
  ) {
    super(`no blob at key "${key}" in ${where}`, {
      suggestion: "check the key (a run id or iteration may be wrong) or that the run wrote it to this store",
      ...opts,
    });
  }
}

/** The bytes read do not match the checksum stored with them, or their envelope is damaged. Never retried. */
export class BlobCorrupt extends StoreError {
  override readonly name = "BlobCorrupt";
  readonly code = "BLOB_CORRUPT";
  readonly retryable = false;
  constructor(
    readonly key: string,
    reason: string,
    opts: StoreErrorOptions = {},
  ) {
    super(`blob "${key}" is corrupt: ${reason}`, {
      suggestion:
        "the stored bytes were changed or truncated after they were written, or were not written by metatrain's store; " +
        "rewrite the blob (rerun the step that produced it) or resume from an earlier checkpoint",
      ...opts,
    });
  }
}

/** The store could not be reached or failed transiently (network, timeout, 5xx, full disk). Retry. */
export class StoreUnavailable extends StoreError {
  override readonly name = "StoreUnavailable";
  readonly code = "STORE_UNAVAILABLE";
  readonly retryable = true;
}

/** Credentials, permissions or the bucket are wrong. Not retryable until the configuration changes. */
export class StoreAccessDenied extends StoreError {
  override readonly name = "StoreAccessDenied";
  readonly code = "STORE_ACCESS_DENIED";
  readonly retryable = false;
}

/** The store understood the request and refused it for a reason a retry will not change (an S3 4xx). */
export class StoreRequestRejected extends StoreError {
  override readonly name = "StoreRequestRejected";
  readonly code = "STORE_REQUEST_REJECTED";
  readonly retryable = false;
}

/** The store URI (or the environment that configures it) is malformed. */
export class InvalidStoreUri extends StoreError {
  override readonly name = "InvalidStoreUri";
  readonly code = "INVALID_STORE_URI";
  readonly retryable = false;
  constructor(uri: string, reason: string, opts: StoreErrorOptions = {}) {
    super(`invalid store URI "${uri}": ${reason}`, {
      suggestion: "use file:///absolute/dir, file:./relative/dir or s3://bucket/optional/prefix",
      ...opts,
    });
  }
}

/** A key breaks the rules of `validateKey` (or collides with another key on a filesystem store). */
export class InvalidBlobKey extends StoreError {
  override readonly name = "InvalidBlobKey";
  readonly code = "INVALID_BLOB_KEY";
  readonly retryable = false;
  constructor(
    readonly key: string,
    reason: string,
    opts: StoreErrorOptions = {},
  ) {
    super(`invalid blob key ${JSON.stringify(key)}: ${reason}`, {
      suggestion: `keys are relative '/'-separated paths of segments made of ${SEGMENT_CHARS}, not starting with '.', e.g. "runs/r1/params/<sha256>.mtt"`,
      ...opts,
    });
  }
}

/** True for any error thrown by a store. */
export function isStoreError(e: unknown): e is StoreError {
  return e instanceof StoreError;
}

// ---- keys --------------------------------------------------------------------------------------

/** Longest key accepted, in characters (keys are ASCII). S3 allows 1024 bytes; a prefix is added to it. */
export const MAX_KEY_LENGTH = 512;
/** Longest segment: filesystems allow 255 bytes per name, and the fs store's temp names add about 30. */
export const MAX_SEGMENT_LENGTH = 200;

const SEGMENT_CHARS = "letters, digits, '.', '_', '-' and '='";
// A segment may not start with '.': that excludes '.', '..' and hidden names, which the filesystem
// store uses for its temporary files, so a temp file can never be mistaken for a blob.
const SEGMENT = /^[A-Za-z0-9_=-][A-Za-z0-9._=-]*$/;

/** Check a key and return it; throws InvalidBlobKey saying what is wrong. */
export function validateKey(key: string): string {
  if (typeof key !== "string") throw new InvalidBlobKey(String(key), "a key must be a string");
  if (key.length === 0) throw new InvalidBlobKey(key, "it is empty");
  if (key.length > MAX_KEY_LENGTH) throw new InvalidBlobKey(key, `it is ${key.length} characters long; the limit is ${MAX_KEY_LENGTH}`);
  if (key.startsWith("/")) throw new InvalidBlobKey(key, "it starts with '/'; keys are relative (drop the leading '/')");
  if (key.endsWith("/")) throw new InvalidBlobKey(key, "it ends with '/'; a key names a blob, not a folder");
  if (key.includes("\\")) throw new InvalidBlobKey(key, "it contains '\\'; separate segments with '/'");
  for (const seg of key.split("/")) {
    if (seg === "") throw new InvalidBlobKey(key, "it has an empty segment ('//')");
    if (seg === "." || seg === "..") throw new InvalidBlobKey(key, `it has a '${seg}' segment; keys cannot step out of or around the store`);
    if (seg.length > MAX_SEGMENT_LENGTH) throw new InvalidBlobKey(key, `a segment is ${seg.length} characters long; the limit is ${MAX_SEGMENT_LENGTH}`);
    if (!SEGMENT.test(seg)) {
      throw new InvalidBlobKey(
        key,
        seg.startsWith(".")
          ? `segment "${seg}" starts with '.'`
          : `segment "${seg}" has a character other than ${SEGMENT_CHARS}`,
      );
    }
  }
  return key;
}

/** Check a list prefix: "" (everything), or key characters, optionally ending with '/'. */
export function validatePrefix(prefix: string): string {
  if (prefix === "") return prefix;
  if (prefix.startsWith("/")) throw new InvalidBlobKey(prefix, "a list prefix cannot start with '/'");
  validateKey(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
  return prefix;
}

// ---- integrity ---------------------------------------------------------------------------------

/** SHA-256 of the bytes, lowercase hex: the checksum stores keep with every blob, and content addresses. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

// ---- opening a store from a URI ----------------------------------------------------------------

/** Environment variables as `process.env` holds them. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Tuning for `openStore`, beyond what the URI and environment say. */
export interface OpenStoreOptions {
  /** Directory a relative `file:` URI is resolved against. Default `process.cwd()`. */
  cwd?: string;
  /** S3 tuning (multipart threshold, part size, attempts, timeouts); see `S3StoreOptions` for defaults. */
  s3?: Pick<
    S3StoreOptions,
    "multipartThresholdBytes" | "partSizeBytes" | "queueSize" | "maxAttempts" | "connectionTimeoutMs" | "requestTimeoutMs"
  >;
}

/**
 * Open the store a URI names. Does no I/O: a wrong bucket or unreachable endpoint shows on first use.
 *
 * - `file:///abs/dir` or `file:./rel/dir` (relative to `opts.cwd`): filesystem store rooted there.
 * - `s3://bucket[/prefix]`: S3 store, configured from `env`:
 *   `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: custom endpoint (default: AWS for the region);
 *   `AWS_REGION` (else `AWS_DEFAULT_REGION`): default `us-east-1`;
 *   `METATRAIN_S3_FORCE_PATH_STYLE`: `true`/`false`; default `true` when an endpoint is given, else `false`;
 *   `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): static credentials when
 *   both are set in `env`, else the SDK's standard credential chain (which reads `process.env`,
 *   profiles, SSO, web identity, container and instance metadata);
 *   `AWS_MAX_ATTEMPTS`: attempts per request (default in `S3StoreOptions`).
 */
export async function openStore(uri: string, env: Env = process.env, opts: OpenStoreOptions = {}): Promise<BlobStore> {
  if (typeof uri !== "string" || uri.trim() === "") throw new InvalidStoreUri(String(uri), "it is empty");
  if (uri.startsWith("file:")) {
    const { FsBlobStore } = await import("./fs-store.js");
    return new FsBlobStore({ root: fileUriToRoot(uri, opts.cwd ?? process.cwd()) });
  }
  if (uri.startsWith("s3://")) {
    // Loaded on demand so that file-store users (CLI, tests) never load the AWS SDK.
    const { S3BlobStore } = await import("./s3-store.js");
    return new S3BlobStore({ ...parseS3Uri(uri), ...s3EnvOptions(uri, env), ...opts.s3 });
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1];
  throw new InvalidStoreUri(uri, scheme ? `unsupported scheme "${scheme}:"` : "it has no scheme");
}

/** The directory a `file:` URI names, resolved against `cwd` when relative. */
export function fileUriToRoot(uri: string, cwd: string): string {
  if (uri.startsWith("file://")) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new InvalidStoreUri(uri, "it is not a valid URL");
    }
    if (url.host !== "" && url.host !== "localhost") {
      throw new InvalidStoreUri(uri, `file URIs cannot name a host ("${url.host}"); use file:///abs/dir or file:./rel/dir`);
    }
    if (url.search || url.hash) throw new InvalidStoreUri(uri, "file URIs take no query or fragment");
    return fileURLToPath(url);
  }
  const path = decodeURIComponent(uri.slice("file:".length));
  if (path === "") throw new InvalidStoreUri(uri, "it names no directory");
  if (isAbsolute(path)) throw new InvalidStoreUri(uri, "an absolute path needs three slashes: file:///abs/dir");
  return resolve(cwd, path);
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Bucket and key prefix of an `s3://bucket[/prefix]` URI. */
export function parseS3Uri(uri: string): { bucket: string; prefix: string } {
  const rest = uri.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  let prefix = slash < 0 ? "" : rest.slice(slash + 1);
  if (bucket === "") throw new InvalidStoreUri(uri, "it names no bucket");
  if (!BUCKET.test(bucket) || bucket.includes("..")) {
    throw new InvalidStoreUri(uri, `"${bucket}" is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')`);
  }
  if (prefix.endsWith("/")) prefix = prefix.slice(0, -1);
  if (prefix !== "") {
    try {
      validateKey(prefix);
    } catch (e) {
      throw new InvalidStoreUri(uri, `its prefix "${prefix}" is not a valid key path (${(e as Error).message})`);
    }
  }
  return { bucket, prefix };
}

function s3EnvOptions(uri: string, env: Env): Omit<S3StoreOptions, "bucket" | "prefix"> {
  const nonEmpty = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const endpointVar = nonEmpty("AWS_ENDPOINT_URL_S3") !== undefined ? "AWS_ENDPOINT_URL_S3" : "AWS_ENDPOINT_URL";
  const endpoint = nonEmpty(endpointVar);
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new InvalidStoreUri(uri, `${endpointVar}="${endpoint}" is not an http(s) URL`, {
        suggestion: `set ${endpointVar} to the S3 endpoint, e.g. http://127.0.0.1:9000`,
      });
    }
  }
  const pathStyleVar = nonEmpty("METATRAIN_S3_FORCE_PATH_STYLE");
  if (pathStyleVar !== undefined && pathStyleVar !== "true" && pathStyleVar !== "false") {
    throw new InvalidStoreUri(uri, `METATRAIN_S3_FORCE_PATH_STYLE="${pathStyleVar}" must be "true" or "false"`, {
      suggestion: "set METATRAIN_S3_FORCE_PATH_STYLE=true for servers that need path-style URLs, or unset it",
    });
  }
  const maxAttemptsVar = nonEmpty("AWS_MAX_ATTEMPTS");
  let maxAttempts: number | undefined;
  if (maxAttemptsVar !== undefined) {
    maxAttempts = Number(maxAttemptsVar);
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
      throw new InvalidStoreUri(uri, `AWS_MAX_ATTEMPTS="${maxAttemptsVar}" must be a positive integer`, {
        suggestion: "set AWS_MAX_ATTEMPTS to e.g. 3, or unset it",
      });
    }
  }
  const accessKeyId = nonEmpty("AWS_ACCESS_KEY_ID");
  const secretAccessKey = nonEmpty("AWS_SECRET_ACCESS_KEY");
  const sessionToken = nonEmpty("AWS_SESSION_TOKEN");
  return {
    region: nonEmpty("AWS_REGION") ?? nonEmpty("AWS_DEFAULT_REGION") ?? "us-east-1",
    ...(endpoint !== undefined ? { endpoint } : {}),
    forcePathStyle: pathStyleVar !== undefined ? pathStyleVar === "true" : endpoint !== undefined,
    ...(accessKeyId !== undefined && secretAccessKey !== undefined
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken !== undefined ? { sessionToken } : {}) } }
      : {}),
    ...(maxAttempts !== undefined ? { maxAttempts } : {}),
  };
}
