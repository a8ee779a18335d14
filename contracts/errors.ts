// Error type names carried in Temporal ApplicationFailures; `nonRetryable` ones fail the run at once.
export const ErrorTypes = {
  /** The run config does not validate; the message says what to fix. */
  InvalidRunConfig: "InvalidRunConfig",
  /** A stored blob failed its checksum: retrying cannot help. */
  BlobCorrupt: "BlobCorrupt",
  /**
   * Shard results the outer step cannot use (missing, or failing verification): the details name
   * them (`ShardResultUnusableDetails`), and the workflow reruns those shards — they are a pure
   * function of (seed, iteration, shard) — then retries the outer step.
   */
  ShardResultUnusable: "ShardResultUnusable",
  /** A referenced blob does not exist (a wrong checkpoint URI, or storage was wiped). */
  BlobNotFound: "BlobNotFound",
  /** Training produced NaN or ±Inf; lower the learning rates. The last good checkpoint is kept. */
  NonFiniteLoss: "NonFiniteLoss",
  /** Storage refused our credentials or the bucket is missing. */
  StoreAccessDenied: "StoreAccessDenied",
  /** An activity was called with inputs that cannot be right (a caller bug, not a transient). */
  InvalidActivityInput: "InvalidActivityInput",
  /** Storage could not be reached; retried with backoff. */
  StoreUnavailable: "StoreUnavailable",
  /** Too few shards finished before the deadline (failure policy). */
  TooFewShards: "TooFewShards",
  /** The task options ask more of the data set than it holds (images per class, classes in a split). */
  DataSetLimit: "DataSetLimit",
  /** The worker's TensorFlow.js backend has no kernel for an op the run needs: retrying on it cannot help. */
  KernelNotAvailable: "KernelNotAvailable",
  /** Every trial of a sweep failed: the message gives the first trial's reason. */
  SweepFailed: "SweepFailed",
} as const;

/** Failures that retrying never fixes: activities mark these non-retryable. */
export const NON_RETRYABLE_ERROR_TYPES: string[] = [
  ErrorTypes.InvalidRunConfig,
  ErrorTypes.BlobCorrupt,
  ErrorTypes.BlobNotFound,
  ErrorTypes.ShardResultUnusable,
  ErrorTypes.NonFiniteLoss,
  ErrorTypes.StoreAccessDenied,
  ErrorTypes.InvalidActivityInput,
  ErrorTypes.KernelNotAvailable,
  ErrorTypes.DataSetLimit,
];

/** The message at the bottom of a chain of causes (an activity's own reason), else `e`'s own. */
export function innermostMessage(e: unknown): string {
  let msg = e instanceof Error ? e.message : String(e);
  for (let c: unknown = e instanceof Error ? e.cause : undefined, depth = 0; c instanceof Error && depth < 20; c = c.cause, depth++) {
    if (c.message) msg = c.message;
  }
  return msg;
}
