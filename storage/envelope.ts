// The self-verifying envelope every store wraps a blob in, the same bytes on every backend:
//
//   "MTBLOB1 sha256=<64 lowercase hex digits of SHA-256(payload)>\n" | payload      (version 1)
//
// An 80-byte ASCII header line, then the payload unchanged (`tail -c +81 FILE` gives it back).
// The checksum travels inside the bytes, so it survives whatever a backend, a copy tool or a server
// restart does to object metadata, and a blob copied between a file store and an S3 bucket with
// plain tools stays verifiable. The version digit lets a later format be told apart.
//
// Bytes that do not look like an envelope (neither the magic "MTBLOB" nor, should a flipped byte have
// hit the magic, " sha256=" and the newline in their places) are legacy: blobs an S3 store wrote before the envelope,
// whose checksum lived only in `x-amz-meta-sha256`. They are checked against that metadata when a
// backend has it, and otherwise returned as they are — the payload formats then carry the rest of
// the verification (tensor blobs end with a CRC-32, JSON must parse), see docs/storage.md.
import { BlobCorrupt, sha256Hex } from "./blobstore.js";

const MAGIC = "MTBLOB";
const HEADER = /^MTBLOB(\d) sha256=([0-9a-f]{64})\n$/;
/** The envelope version this code writes (and the only one it reads). */
export const ENVELOPE_VERSION = 1;
/** Bytes of the header line that precedes every payload. */
export const ENVELOPE_HEADER_BYTES = `${MAGIC}${ENVELOPE_VERSION} sha256=`.length + 64 + 1;

/** A payload in its envelope, ready to store, and the payload's SHA-256 (for metadata where a backend keeps it). */
export interface SealedBlob {
  bytes: Uint8Array;
  sha256: string;
}

/** Wrap a payload: header line + payload, in one buffer. */
export function sealBlob(payload: Uint8Array): SealedBlob {
  const sha256 = sha256Hex(payload);
  const bytes = new Uint8Array(ENVELOPE_HEADER_BYTES + payload.length);
  bytes.set(Buffer.from(`${MAGIC}${ENVELOPE_VERSION} sha256=${sha256}\n`, "ascii"), 0);
  bytes.set(payload, ENVELOPE_HEADER_BYTES);
  return { bytes, sha256 };
}

/** Where the stored bytes were read from, for the messages of `openBlob`. */
export interface OpenBlobSource {
  /** The blob's key. */
  key: string;
  /** The file or object the bytes came from, e.g. "file /data/runs/r/x.mtt" or "object prefix/runs/r/x.mtt". */
  where: string;
  /** The SHA-256 the backend kept beside the bytes (S3 `x-amz-meta-sha256`), if it still has one. */
  metadataSha256?: string | undefined;
}

/**
 * The payload of stored bytes, verified: an envelope's embedded SHA-256 (and the metadata's, when
 * present, must agree with it); a legacy blob's metadata checksum when present. Throws BlobCorrupt.
 * The result is a view into `stored`, not a copy.
 */
export function openBlob(stored: Uint8Array, src: OpenBlobSource): Uint8Array {
  const meta = src.metadataSha256?.toLowerCase();
  if (!looksLikeEnvelope(stored)) {
    if (meta === undefined) return stored; // legacy, metadata lost: the payload format's own checks remain
    const actual = sha256Hex(stored);
    if (actual !== meta) throw new BlobCorrupt(src.key, `SHA-256 mismatch for ${src.where}: metadata says ${meta}, the ${stored.length} bytes read hash to ${actual}`);
    return stored;
  }
  const head = Buffer.from(stored.buffer, stored.byteOffset, Math.min(stored.length, ENVELOPE_HEADER_BYTES)).toString("latin1");
  const m = HEADER.exec(head);
  if (!m) {
    throw new BlobCorrupt(
      src.key,
      stored.length < ENVELOPE_HEADER_BYTES
        ? `${src.where} is ${stored.length} bytes, shorter than the ${ENVELOPE_HEADER_BYTES}-byte checksum header (truncated)`
        : `${src.where} has a damaged checksum header line: ${JSON.stringify(head.slice(0, 40))}…`,
    );
  }
  if (Number(m[1]) !== ENVELOPE_VERSION) {
    throw new BlobCorrupt(src.key, `${src.where} is in blob envelope version ${m[1]}; this metatrain reads version ${ENVELOPE_VERSION}`, {
      suggestion: "read it with the metatrain version that wrote it (or a newer one)",
    });
  }
  const embedded = m[2]!;
  const payload = stored.subarray(ENVELOPE_HEADER_BYTES);
  const actual = sha256Hex(payload);
  if (actual !== embedded) throw new BlobCorrupt(src.key, `SHA-256 mismatch in ${src.where}: its header says ${embedded}, the ${payload.length} payload bytes hash to ${actual}`);
  if (meta !== undefined && meta !== embedded) throw new BlobCorrupt(src.key, `${src.where}: its metadata checksum ${meta} disagrees with the verified embedded one ${embedded}`);
  return payload;
}

const SHA_FIELD = " sha256=";
const SHA_FIELD_AT = MAGIC.length + 1;

function hasAscii(b: Uint8Array, text: string, at: number): boolean {
  if (b.length < at + text.length) return false;
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * The magic, or the rest of the header line in place: one flipped byte cannot hit both, so a damaged
 * envelope is reported as corrupt instead of being returned, header and all, as a legacy payload.
 */
function looksLikeEnvelope(b: Uint8Array): boolean {
  return hasAscii(b, MAGIC, 0) || (hasAscii(b, SHA_FIELD, SHA_FIELD_AT) && b[ENVELOPE_HEADER_BYTES - 1] === 0x0a);
}
