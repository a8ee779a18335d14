// S3 blob store (AWS S3 or any S3-compatible server) over @aws-sdk/client-s3, with end-to-end SHA-256.
//
// Every object holds its blob in the store envelope (storage/envelope.ts): a header line with the
// payload's SHA-256, then the payload, verified on every `get`. The same checksum is also written as
// user metadata `x-amz-meta-sha256` and checked when the server still returns it; servers and tools
// that drop metadata (rclone restarted over its directory, gateways, `aws s3 sync`, copies made with
// file tools) leave the object as verifiable as before. Objects written before the envelope carry
// only the metadata checksum; they read as legacy blobs (see envelope.ts). A single PutObject is
// atomic per object; above `multipartThresholdBytes` a multipart upload is used, which S3 also makes
// visible only on completion (and which lib-storage aborts on failure, so no parts are left behind).
// Transit is additionally covered by the SDK's own flexible checksums (CRC32 by default).
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  BlobCorrupt,
  BlobNotFound,
  StoreAccessDenied,
  StoreError,
  StoreRequestRejected,
  StoreUnavailable,
  validateKey,
  validatePrefix,
  type BlobStore,
  type PutOptions,
} from "./blobstore.js";
import { openBlob, sealBlob } from "./envelope.js";

const MiB = 1024 * 1024;

/** Defaults of the tunable `S3StoreOptions`, in one place. */
export const S3_STORE_DEFAULTS = {
  multipartThresholdBytes: 16 * MiB,
  partSizeBytes: 8 * MiB,
  queueSize: 4,
  maxAttempts: 3,
  connectionTimeoutMs: 5_000,
  requestTimeoutMs: 120_000,
} as const;

/** S3 parts must be at least 5 MiB (all but the last). */
export const MIN_PART_SIZE_BYTES = 5 * MiB;

/** Static credentials; when absent the SDK's standard credential chain is used. */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Options of `S3BlobStore`. `openStore` fills them from an `s3://` URI and the environment. */
export interface S3StoreOptions {
  /** Bucket holding the blobs. It must exist: the store never creates buckets. */
  bucket: string;
  /** Key prefix inside the bucket, without trailing '/'. Default "" (keys at the bucket root). */
  prefix?: string;
  /** Signing region (openStore: AWS_REGION, default us-east-1). */
  region: string;
  /** Custom endpoint URL, e.g. http://127.0.0.1:9000. Default: AWS S3 for the region. */
  endpoint?: string;
  /** Path-style URLs (endpoint/bucket/key) instead of virtual-hosted (bucket.endpoint/key). Default false. */
  forcePathStyle?: boolean;
  /** Static credentials. Default: the SDK's standard credential chain. */
  credentials?: S3Credentials;
  /** Blobs larger than this go up as multipart uploads. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Part size of multipart uploads, at least 5 MiB. Default 8 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded concurrently. Default 4. */
  queueSize?: number;
  /** Attempts per request, including the first; the SDK retries transient errors with backoff. Default 3. */
  maxAttempts?: number;
  /** Time allowed to open a TCP connection, ms. Default 5000. */
  connectionTimeoutMs?: number;
  /** Time allowed for one request and its response, ms (0: none). Default 120000. */
  requestTimeoutMs?: number;
  /** A ready client, which then overrides region, endpoint, credentials, attempts and timeouts. */
  client?: S3Client;
}

type Op = "put" | "get" | "exists" | "list" | "delete";

/** A blob store in an S3 bucket, under an optional key prefix. */
export class S3BlobStore implements BlobStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly region: string;
  private readonly forcePathStyle: boolean;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly maxAttempts: number;
  /** Set once the bucket has answered, so a 404 on HEAD can only mean a missing key. */
  private bucketSeen = false;

  constructor(opts: S3StoreOptions) {
    this.bucket = opts.bucket;
    this.prefix = opts.prefix ?? "";
    this.endpoint = opts.endpoint;
    this.region = opts.region;
    this.forcePathStyle = opts.forcePathStyle ?? false;
    this.multipartThreshold = opts.multipartThresholdBytes ?? S3_STORE_DEFAULTS.multipartThresholdBytes;
    this.partSize = Math.max(MIN_PART_SIZE_BYTES, opts.partSizeBytes ?? S3_STORE_DEFAULTS.partSizeBytes);
    this.queueSize = opts.queueSize ?? S3_STORE_DEFAULTS.queueSize;
    this.maxAttempts = opts.maxAttempts ?? S3_STORE_DEFAULTS.maxAttempts;
    this.client =
      opts.client ??
      new S3Client({
        region: opts.region,
        ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
        forcePathStyle: this.forcePathStyle,
        ...(opts.credentials !== undefined ? { credentials: opts.credentials } : {}),
        maxAttempts: this.maxAttempts,
        requestHandler: {
          connectionTimeout: opts.connectionTimeoutMs ?? S3_STORE_DEFAULTS.connectionTimeoutMs,
          requestTimeout: opts.requestTimeoutMs ?? S3_STORE_DEFAULTS.requestTimeoutMs,
          // Without this a request timeout is only logged, and a hung server hangs the activity.
          throwOnRequestTimeout: true,
        },
      });
  }

  describe(): string {
    const where = this.endpoint ?? `AWS S3 ${this.region}`;
    return `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ""} at ${where}${this.forcePathStyle ? " (path-style)" : ""}`;
  }

  /** Release the client's sockets. The store is unusable afterwards. */
  destroy(): void {
    this.client.destroy();
  }

  private objectKey(key: string): string {
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  async put(key: string, bytes: Uint8Array, opts?: PutOptions): Promise<void> {
    const Key = this.objectKey(validateKey(key));
    const sealed = sealBlob(bytes);
    const params = {
      Bucket: this.bucket,
      Key,
      Body: sealed.bytes,
      // The payload's type; the object's bytes are that payload behind the envelope's header line.
      ContentType: opts?.contentType ?? "application/octet-stream",
      Metadata: { sha256: sealed.sha256 },
    };
    try {
      if (sealed.bytes.length <= this.multipartThreshold) {
        await this.client.send(new PutObjectCommand({ ...params, ContentLength: sealed.bytes.length }));
      } else {
        await new Upload({
          client: this.client,
          params,
          partSize: this.partSize,
          queueSize: this.queueSize,
          leavePartsOnError: false,
        }).done();
      }
      this.bucketSeen = true;
    } catch (e) {
      throw this.mapError(e, "put", key);
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const Key = this.objectKey(validateKey(key));
    let bytes: Uint8Array;
    let stored: string | undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (!res.Body) throw new StoreUnavailable(`S3 returned no body for "${key}" from ${this.describe()}`);
      bytes = await res.Body.transformToByteArray();
      stored = res.Metadata?.["sha256"];
    } catch (e) {
      throw this.mapError(e, "get", key);
    }
    this.bucketSeen = true;
    return openBlob(bytes, { key, where: `object ${Key}`, metadataSha256: stored });
  }

  async exists(key: string): Promise<boolean> {
    const Key = this.objectKey(validateKey(key));
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      this.bucketSeen = true;
      return true;
    } catch (e) {
      if (statusOf(e) !== 404) throw this.mapError(e, "exists", key);
    }
    // A HEAD response has no body, so a missing bucket and a missing key both read as a bare 404.
    if (!this.bucketSeen) {
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      } catch (e) {
        throw this.mapError(statusOf(e) === 404 ? noSuchBucket(e) : e, "exists", key);
      }
      this.bucketSeen = true;
    }
    return false;
  }

  async list(prefix: string): Promise<string[]> {
    validatePrefix(prefix);
    const base = this.prefix ? `${this.prefix}/` : "";
    const out: string[] = [];
    try {
      for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: base + prefix })) {
        for (const obj of page.Contents ?? []) {
          const key = obj.Key?.slice(base.length);
          // Objects that are not valid keys were not written through a store: skip them.
          if (key !== undefined && obj.Key?.startsWith(base) && isValidKey(key)) out.push(key);
        }
      }
    } catch (e) {
      throw this.mapError(e, "list", prefix);
    }
    this.bucketSeen = true;
    return out.sort();
  }

  async delete(key: string): Promise<void> {
    const Key = this.objectKey(validateKey(key));
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (e) {
      // Idempotent, as S3 itself is; some compatible servers answer 404 for a missing key.
      if (nameOf(e) === "NoSuchKey") return;
      throw this.mapError(e, "delete", key);
    }
  }

  /** Translate an SDK or network error into the store's error classes. */
  private mapError(e: unknown, op: Op, key: string): StoreError {
    if (e instanceof StoreError) return e;
    const name = nameOf(e);
    const status = statusOf(e);
    const message = (e as Error | undefined)?.message ?? String(e);
    const where = this.describe();
    const what = `${op} "${key}" on ${where}`;
    const cause = { cause: e };

    // Raised by the SDK's response checksum validation while the body is read.
    if (op === "get" && /^Checksum mismatch/i.test(message)) {
      return new BlobCorrupt(key, `the bytes received do not match the server's checksum (${message})`, cause);
    }
    if (name === "NoSuchBucket") {
      return new StoreAccessDenied(`bucket "${this.bucket}" does not exist at ${this.endpoint ?? `AWS S3 ${this.region}`} (during ${op} "${key}")`, {
        ...cause,
        suggestion: `create the bucket (e.g. \`aws s3 mb s3://${this.bucket}\`) or fix the bucket name in the store URI`,
      });
    }
    if ((op === "get" || op === "exists") && (name === "NoSuchKey" || status === 404)) return new BlobNotFound(key, where, cause);

    const netCode = networkCode(e);
    if (netCode !== undefined || TRANSIENT_NAMES.has(name) || (status !== undefined && status >= 500)) {
      const reason = netCode ?? (status !== undefined ? `${name} (HTTP ${status})` : name);
      const attempts = (e as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? this.maxAttempts;
      return new StoreUnavailable(`cannot ${what}: ${reason} after ${attempts} attempt(s): ${message}`, {
        ...cause,
        suggestion: this.endpoint
          ? `check that the S3 server at ${this.endpoint} is running and reachable (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL); the operation will be retried`
          : "check network access to AWS S3; the operation will be retried",
      });
    }
    if (ACCESS_NAMES.has(name) || status === 401 || status === 403) {
      return new StoreAccessDenied(`access denied: cannot ${what}: ${name}${status ? ` (HTTP ${status})` : ""}: ${message}`, {
        ...cause,
        suggestion: accessSuggestion(name, this.bucket),
      });
    }
    if (status !== undefined && status >= 400) {
      return new StoreRequestRejected(`S3 rejected ${what}: ${name} (HTTP ${status}): ${message}`, {
        ...cause,
        suggestion:
          name === "PermanentRedirect" || name === "AuthorizationHeaderMalformed"
            ? `the bucket lives in another region: set AWS_REGION to the bucket's region`
            : "check the key, the bucket's configuration and that the server supports this S3 operation",
      });
    }
    // No HTTP status and no known network code: an unexpected client-side failure. Retrying is
    // bounded by the caller's retry policy, and most such failures are connection-level.
    return new StoreUnavailable(`cannot ${what}: ${name}: ${message}`, { ...cause });
  }
}

const TRANSIENT_NAMES = new Set([
  "TimeoutError",
  "RequestTimeout",
  "RequestTimeoutException",
  "SlowDown",
  "ServiceUnavailable",
  "InternalError",
  "ThrottlingException",
  "RequestTimeTooSkewed",
]);

const ACCESS_NAMES = new Set([
  "AccessDenied",
  "Forbidden",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "AllAccessDisabled",
  "AccountProblem",
  "CredentialsProviderError",
]);

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTDOWN",
  "UND_ERR_SOCKET",
]);

function accessSuggestion(name: string, bucket: string): string {
  switch (name) {
    case "InvalidAccessKeyId":
      return "the server does not know this access key id: check AWS_ACCESS_KEY_ID (or the profile/role the AWS credential chain picks) for this endpoint";
    case "SignatureDoesNotMatch":
      return "the secret key does not match the access key id: check AWS_SECRET_ACCESS_KEY (and AWS_REGION on AWS)";
    case "ExpiredToken":
    case "InvalidToken":
    case "TokenRefreshRequired":
      return "the session credentials expired or are invalid: refresh them (AWS_SESSION_TOKEN, SSO login or the role)";
    case "CredentialsProviderError":
      return "no credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure a profile, SSO or role for the standard AWS credential chain";
    default:
      return `allow these credentials s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on bucket "${bucket}", or use credentials that have them`;
  }
}

function nameOf(e: unknown): string {
  const n = (e as { name?: unknown; Code?: unknown } | undefined)?.name;
  return typeof n === "string" ? n : "Error";
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** A Node network error code on the error, its cause, or any of an AggregateError's errors (dual-stack connects). */
function networkCode(e: unknown, depth = 0): string | undefined {
  if (e === null || typeof e !== "object" || depth > 3) return undefined;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && NETWORK_CODES.has(code)) return code;
  for (const inner of [(e as { cause?: unknown }).cause, ...((e as { errors?: unknown[] }).errors ?? [])]) {
    const c = networkCode(inner, depth + 1);
    if (c !== undefined) return c;
  }
  return undefined;
}

function noSuchBucket(e: unknown): unknown {
  return Object.assign(new Error("The specified bucket does not exist", { cause: e }), { name: "NoSuchBucket" });
}

function isValidKey(key: string): boolean {
  try {
    validateKey(key);
    return true;
  } catch {
    return false;
  }
}
