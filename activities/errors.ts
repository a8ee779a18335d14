// The one place where errors become Temporal failures: a type name from contracts/errors, a suggestion, and retry semantics.
import { ApplicationFailure, CancelledFailure } from "@temporalio/activity";
import type { ShardResultUnusableDetails, UnusableShard } from "../contracts/activities.js";
import { InvalidRunConfigError } from "../contracts/config.js";
import { ErrorTypes } from "../contracts/errors.js";
import { CorruptBlobError } from "../meta/params.js";
import { DataSetLimitError } from "../meta/tasks/types.js";
import { isStoreError, type StoreError } from "../storage/blobstore.js";

/**
 * Failure types activities raise. Beyond contracts/errors: `StoreUnavailable` (transient, retried)
 * and `InvalidActivityInput` (a caller bug such as an empty shard range; never retried).
 */
export const ActivityErrorTypes = {
  ...ErrorTypes,
  StoreUnavailable: "StoreUnavailable",
  InvalidActivityInput: "InvalidActivityInput",
  /** A gpu worker's store refused it (its credentials, most likely): retried on another worker. */
  WorkerStoreAccessDenied: "WorkerStoreAccessDenied",
} as const;

/** Details attached to every failure made here, for the workflow and the CLI. */
export interface FailureDetails {
  code: string;
  suggestion?: string;
}

function failure(type: string, message: string, nonRetryable: boolean, suggestion?: string, cause?: Error, extra: object = {}): ApplicationFailure {
  const details: FailureDetails = { code: type, ...(suggestion ? { suggestion } : {}), ...extra };
  return ApplicationFailure.create({
    type,
    message: suggestion ? `${message}; ${suggestion}` : message,
    nonRetryable,
    details: [details],
    ...(cause ? { cause } : {}),
  });
}

function storeFailureType(e: StoreError): string {
  switch (e.code) {
    case "BLOB_NOT_FOUND":
      return ErrorTypes.BlobNotFound;
    case "BLOB_CORRUPT":
      return ErrorTypes.BlobCorrupt;
    case "STORE_ACCESS_DENIED":
      return ErrorTypes.StoreAccessDenied;
    case "STORE_UNAVAILABLE":
      return ActivityErrorTypes.StoreUnavailable;
    default:
      return e.name; // InvalidBlobKey, InvalidStoreUri, StoreRequestRejected: all non-retryable
  }
}

/**
 * What an activity throws for `e`: cancellations and ApplicationFailures unchanged; store errors,
 * corrupt tensor blobs and invalid configs as typed ApplicationFailures whose `nonRetryable`
 * follows the error; anything else unchanged (a plain Error is retried by the activity's policy).
 */
export function toActivityFailure(e: unknown): unknown {
  if (e instanceof ApplicationFailure || e instanceof CancelledFailure) return e;
  if (isStoreError(e)) return failure(storeFailureType(e), e.message, !e.retryable, e.suggestion, e);
  if (e instanceof CorruptBlobError) {
    return failure(ErrorTypes.BlobCorrupt, e.message, true, "rerun the step that wrote the blob or resume from an earlier checkpoint", e);
  }
  if (e instanceof InvalidRunConfigError) {
    return failure(ErrorTypes.InvalidRunConfig, e.message, true, "fix the run config fields named above and submit the run again", e);
  }
  if (e instanceof DataSetLimitError) {
    return failure(ErrorTypes.DataSetLimit, e.message, true, "change the task options named above and submit the run again", e);
  }
  const kernel = e instanceof Error ? /Kernel '([^']+)' not registered for backend '([^']+)'/.exec(e.message) : null;
  if (kernel) {
    return failure(
      ErrorTypes.KernelNotAvailable,
      `the ${kernel[2]} backend of TensorFlow.js has no '${kernel[1]}' kernel, which this run needs`,
      true,
      "run the workers on the native backend (npm run setup:native, or the GPU image) or set METATRAIN_BACKEND to a backend that has it",
      e as Error,
    );
  }
  return e;
}

/** Whether `e` is the store refusing this process (access denied, no such bucket). */
export function isStoreAccessDenied(e: unknown): e is StoreError {
  return isStoreError(e) && e.code === "STORE_ACCESS_DENIED";
}

/**
 * A store refusal seen by one gpu worker, as that worker's problem: retryable, so Temporal gives
 * the attempt to another worker (a run whose every worker is refused still fails, after
 * `timeouts.maximumAttempts`, with this message).
 */
export function workerStoreAccessDenied(e: StoreError, worker: string): ApplicationFailure {
  return failure(
    ActivityErrorTypes.WorkerStoreAccessDenied,
    `gpu worker ${worker} was refused by the store: ${e.message}`,
    false,
    "retried on another worker; fix that worker's store credentials (METATRAIN_STORE, AWS_* variables) and restart it",
    e,
  );
}

/** Training or evaluation produced NaN or ±Inf: retrying recomputes the same numbers. */
export function nonFiniteLoss(where: string): ApplicationFailure {
  return failure(
    ErrorTypes.NonFiniteLoss,
    `${where} produced NaN or ±Inf`,
    true,
    "lower innerLr or metaLr (or fewer innerSteps) and resume from the last checkpoint",
  );
}

/** A request no retry can fix, naming what to change. */
export function invalidInput(message: string, suggestion: string): ApplicationFailure {
  return failure(ActivityErrorTypes.InvalidActivityInput, message, true, suggestion);
}

/** A stored blob whose content contradicts its key (e.g. a shard of another iteration). */
export function blobMismatch(key: string, reason: string): ApplicationFailure {
  return failure(ErrorTypes.BlobCorrupt, `blob "${key}" ${reason}`, true, "rerun the step that writes it, or resume from an earlier checkpoint");
}

/**
 * Shard results of `iteration` that are missing or fail verification. Not retryable as is (the
 * same blobs would be read again): the workflow reruns the shards the details name, which rewrites
 * them, and then retries the outer step.
 */
export function shardResultsUnusable(iteration: number, shards: UnusableShard[]): ApplicationFailure {
  const suggestion = "rerun those shards (the workflow does so itself) and retry the outer step";
  const details: Omit<ShardResultUnusableDetails, "code" | "suggestion"> = { iteration, shards };
  const list = shards.map((s) => `shard ${s.shardIndex} (${s.reason})`).join("; ");
  return failure(ErrorTypes.ShardResultUnusable, `iteration ${iteration}: ${shards.length} shard result(s) unusable: ${list}`, true, suggestion, undefined, details);
}

/** The error to throw when `signal` was aborted: its reason (Temporal's CancelledFailure), else a new CancelledFailure. */
export function cancellation(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new CancelledFailure(typeof r === "string" ? r : "activity cancelled");
}
