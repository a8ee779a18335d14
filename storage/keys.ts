// The storage key layout of a run, as pure functions (no I/O), and the content address of a blob.
//
//   runs/<runId>/params/<sha256>.mtt                              parameters, content-addressed
//   runs/<runId>/optim/<sha256>.mtt                               optimizer state, content-addressed
//   runs/<runId>/iter/<iteration:8>/shard-<index:4>.mtt           one shard's summed result
//   runs/<runId>/checkpoints/<iteration:8>/manifest.json          checkpoint manifest
//   runs/<runId>/checkpoints/latest.json                          pointer to the newest manifest
//   runs/<runId>/record/<iteration:8>.iter.json                   one round's losses, timings, shards (JSON)
//   runs/<runId>/record/<iteration:8>.eval.json                   the evaluation after <iteration> rounds
//   runs/<runId>/record/<first:8>-<last:8>.seg.json               those of rounds first–last, compacted at a checkpoint
//   runs/<runId>/record/origin.json                               a resumed run: the checkpoint it came from
//
// Shard keys depend only on (run, iteration, shard), so a retried activity overwrites the same key
// and the outer step reads exactly one result per shard. Content addresses make rewriting the same
// parameters a no-op in effect. Zero-padded numbers make lexical order the numeric order in listings.
import { InvalidBlobKey, sha256Hex } from "./blobstore.js";

/** Run ids: 1-64 characters of letters, digits, '.', '_', '-', not starting with '.' or '-'. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
/** Iterations fit 8 digits. */
export const MAX_ITERATION = 99_999_999;
/** Shard indices fit 4 digits. */
export const MAX_SHARD_INDEX = 9_999;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** SHA-256 of the bytes as 64 lowercase hex digits: the name of a content-addressed blob. */
export function contentAddress(bytes: Uint8Array): string {
  return sha256Hex(bytes);
}

/** Check a run id; throws InvalidBlobKey saying what to change. */
export function validateRunId(runId: string): string {
  if (typeof runId !== "string" || !RUN_ID_PATTERN.test(runId)) {
    throw new InvalidBlobKey(`runs/${String(runId)}`, `run id ${JSON.stringify(runId)} must be 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'`, {
      suggestion: 'choose a run id such as "omniglot-5w1s-2024-06-01"',
    });
  }
  return runId;
}

function checkInt(what: string, n: number, max: number, key: string): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new InvalidBlobKey(key, `${what} must be an integer from 0 to ${max}, got ${n}`);
  }
}

function checkSha(sha256: string, key: string): void {
  if (typeof sha256 !== "string" || !SHA256_HEX.test(sha256)) {
    throw new InvalidBlobKey(key, `content address must be 64 lowercase hex digits (use contentAddress(bytes)), got ${JSON.stringify(sha256)}`);
  }
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0");

/** `runs/<runId>/`: everything a run stored. */
export function runPrefix(runId: string): string {
  return `runs/${validateRunId(runId)}/`;
}

/** Content-addressed parameters. */
export function paramsKey(runId: string, sha256: string): string {
  const key = `${runPrefix(runId)}params/${sha256}.mtt`;
  checkSha(sha256, key);
  return key;
}

/** Content-addressed optimizer state. */
export function optimKey(runId: string, sha256: string): string {
  const key = `${runPrefix(runId)}optim/${sha256}.mtt`;
  checkSha(sha256, key);
  return key;
}

/** `runs/<runId>/iter/<iteration>/`: the shard results of one meta-iteration. */
export function iterationPrefix(runId: string, iteration: number): string {
  const key = `${runPrefix(runId)}iter/${pad(iteration, 8)}/`;
  checkInt("iteration", iteration, MAX_ITERATION, key);
  return key;
}

/** One shard's result for one meta-iteration; the same inputs always give the same key. */
export function shardKey(runId: string, iteration: number, shardIndex: number): string {
  const key = `${iterationPrefix(runId, iteration)}shard-${pad(shardIndex, 4)}.mtt`;
  checkInt("shard index", shardIndex, MAX_SHARD_INDEX, key);
  return key;
}

/** `runs/<runId>/checkpoints/`: manifests and the latest pointer. */
export function checkpointsPrefix(runId: string): string {
  return `${runPrefix(runId)}checkpoints/`;
}

/** The manifest of the checkpoint taken after `iteration`. */
export function checkpointManifestKey(runId: string, iteration: number): string {
  const key = `${checkpointsPrefix(runId)}${pad(iteration, 8)}/manifest.json`;
  checkInt("iteration", iteration, MAX_ITERATION, key);
  return key;
}

/** The pointer to the newest checkpoint manifest; written after the manifest it names. */
export function latestCheckpointKey(runId: string): string {
  return `${checkpointsPrefix(runId)}latest.json`;
}

/** The iteration and shard index of a shard key, or undefined when `key` is not one. */
export function parseShardKey(key: string): { runId: string; iteration: number; shardIndex: number } | undefined {
  const m = /^runs\/([^/]+)\/iter\/(\d{8})\/shard-(\d{4})\.mtt$/.exec(key);
  if (!m || !RUN_ID_PATTERN.test(m[1]!)) return undefined;
  return { runId: m[1]!, iteration: Number(m[2]), shardIndex: Number(m[3]) };
}

/** The iteration of a checkpoint manifest key, or undefined when `key` is not one. */
export function parseCheckpointManifestKey(key: string): { runId: string; iteration: number } | undefined {
  const m = /^runs\/([^/]+)\/checkpoints\/(\d{8})\/manifest\.json$/.exec(key);
  if (!m || !RUN_ID_PATTERN.test(m[1]!)) return undefined;
  return { runId: m[1]!, iteration: Number(m[2]) };
}

/** `runs/<runId>/record/`: the run's per-iteration record (storage/record.ts), read by `metatrain report`. */
export function recordPrefix(runId: string): string {
  return `${runPrefix(runId)}record/`;
}

/** The record of round `iteration` (its losses, timings, shards); the outer step of that round writes it. */
export function iterationRecordKey(runId: string, iteration: number): string {
  const key = `${recordPrefix(runId)}${pad(iteration, 8)}.iter.json`;
  checkInt("iteration", iteration, MAX_ITERATION, key);
  return key;
}

/** The record of the evaluation after `iteration` iterations; the evaluate activity writes it. */
export function evaluationRecordKey(runId: string, iteration: number): string {
  const key = `${recordPrefix(runId)}${pad(iteration, 8)}.eval.json`;
  checkInt("iteration", iteration, MAX_ITERATION, key);
  return key;
}

/** Where a run resumed from a checkpoint says which run and iteration it continues. */
export function recordOriginKey(runId: string): string {
  return `${recordPrefix(runId)}origin.json`;
}

/** Rounds and evaluations `first`–`last` compacted into one blob (at a checkpoint). */
export function recordSegmentKey(runId: string, first: number, last: number): string {
  const key = `${recordPrefix(runId)}${pad(first, 8)}-${pad(last, 8)}.seg.json`;
  checkInt("iteration", first, MAX_ITERATION, key);
  checkInt("iteration", last, MAX_ITERATION, key);
  return key;
}

/** The kind and iteration (a segment's: its first, and `last`) of a record key, or undefined when `key` is not one. */
export function parseRecordKey(key: string): { runId: string; iteration: number; last: number; kind: "iter" | "eval" | "seg" } | undefined {
  const m = /^runs\/([^/]+)\/record\/(\d{8})(?:\.(iter|eval)|-(\d{8})\.seg)\.json$/.exec(key);
  if (!m || !RUN_ID_PATTERN.test(m[1]!)) return undefined;
  const iteration = Number(m[2]);
  return m[4] === undefined ? { runId: m[1]!, iteration, last: iteration, kind: m[3] as "iter" | "eval" } : { runId: m[1]!, iteration, last: Number(m[4]), kind: "seg" };
}
