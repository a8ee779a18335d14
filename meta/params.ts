// Parameters as named tensor maps, the arithmetic the algorithms need, and a checksummed byte format.
// Every reduction here runs in a fixed order (the order of the names), which is what makes the
// same seed give bit-identical parameters whatever the number of workers.
import { reflectedCrc32 } from "./crc.js";
import * as tf from "@tensorflow/tfjs";

/** Named float32 tensors. Key order is the model's declared order and is significant. */
export type Params = Record<string, tf.Tensor>;

/** The names of `p` in their fixed order. */
export function names(p: Params): string[] {
  return Object.keys(p);
}

function zipWith(a: Params, b: Params, f: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): Params {
  const out: Params = {};
  for (const k of names(a)) {
    const y = b[k];
    if (!y) throw new Error(`parameter maps differ: '${k}' missing from the second`);
    out[k] = f(a[k]!, y);
  }
  return out;
}

function mapParams(a: Params, f: (x: tf.Tensor, name: string) => tf.Tensor): Params {
  const out: Params = {};
  for (const k of names(a)) out[k] = f(a[k]!, k);
  return out;
}

/** a + b, name by name. */
export const add = (a: Params, b: Params): Params => zipWith(a, b, (x, y) => tf.add(x, y));
/** a − b, name by name. */
export const sub = (a: Params, b: Params): Params => zipWith(a, b, (x, y) => tf.sub(x, y));
/** s · a. */
export const scale = (a: Params, s: number): Params => mapParams(a, (x) => tf.mul(x, s));
/** a + s · b (an SGD step when s = −lr and b is a gradient). */
export const addScaled = (a: Params, b: Params, s: number): Params =>
  zipWith(a, b, (x, y) => tf.add(x, tf.mul(y, s)));
/** a + t · (b − a): Reptile's interpolation toward b with step size t. */
export const interpolate = (a: Params, b: Params, t: number): Params =>
  zipWith(a, b, (x, y) => tf.add(x, tf.mul(tf.sub(y, x), t)));
/** a ⊙ b, element by element (Meta-SGD's per-parameter step sizes). */
export const mul = (a: Params, b: Params): Params => zipWith(a, b, (x, y) => tf.mul(x, y));
/** Zeros shaped like a. */
export const zerosLike = (a: Params): Params => mapParams(a, (x) => tf.zerosLike(x));
/** Copies that survive disposal of the originals. */
export const clone = (a: Params): Params => mapParams(a, (x) => x.clone());

/** The map of `keys[i]` → `vals[i]` (what tf.grads hands back, named again). */
export function fromList(keys: readonly string[], vals: readonly tf.Tensor[]): Params {
  const p: Params = {};
  keys.forEach((k, i) => (p[k] = vals[i]!));
  return p;
}

/** The entries of `p` named in `keys`, in that order (no copies). */
export function pick(p: Params, keys: readonly string[]): Params {
  const out: Params = {};
  for (const k of keys) {
    if (!p[k]) throw new Error(`parameter '${k}' missing`);
    out[k] = p[k]!;
  }
  return out;
}

/**
 * Sum of a list of maps, strictly left to right: ((m0 + m1) + m2) + …. Float addition is not
 * associative, so the order is part of the contract: callers pass maps in task or shard order.
 */
export function sumInOrder(maps: readonly Params[]): Params {
  if (maps.length === 0) throw new Error("sumInOrder: nothing to sum");
  // A single map comes back as copies, so the result is always the caller's to dispose.
  if (maps.length === 1) return clone(maps[0]!);
  return tf.tidy(() => {
    let acc = maps[0]!;
    for (let i = 1; i < maps.length; i++) acc = add(acc, maps[i]!);
    return acc;
  });
}

/** Dispose every tensor of every map given. */
export function dispose(...maps: (Params | undefined)[]): void {
  for (const m of maps) if (m) for (const k of names(m)) m[k]!.dispose();
}

/** Keep the tensors of a map alive past the enclosing tf.tidy. */
export function keep(p: Params): Params {
  for (const k of names(p)) tf.keep(p[k]!);
  return p;
}

/** Total element count. */
export function size(p: Params): number {
  return names(p).reduce((n, k) => n + p[k]!.size, 0);
}

/** Sum of squares of all elements, read back as a number (for norms in logs and tests). */
export function sumSquares(p: Params): number {
  return tf.tidy(() => {
    let acc = tf.scalar(0);
    for (const k of names(p)) acc = tf.add(acc, tf.sum(tf.square(p[k]!)));
    return acc.dataSync()[0]!;
  });
}

/** True when every element of every tensor is finite. */
export function allFinite(p: Params): boolean {
  for (const k of names(p)) {
    const d = p[k]!.dataSync();
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) return false;
  }
  return true;
}

// ---- byte format -------------------------------------------------------------------------------
//
//   "MTT1" | u32 LE header length H | H bytes of UTF-8 JSON header | zero pad to 4 |
//   float32 LE data of each tensor, in header order | u32 LE CRC-32 of every preceding byte
//
// Header: { tensors: [{ name, shape }], meta: <any JSON> }. Float32 only: it is what the models use.

const MAGIC = [0x4d, 0x54, 0x54, 0x31]; // "MTT1"

/** Thrown when bytes are not a tensor blob or their checksum does not match. Never retry it. */
export class CorruptBlobError extends Error {
  override readonly name = "CorruptBlobError";
}

/** CRC-32 (IEEE 802.3, as zlib computes it). */
export const crc32 = reflectedCrc32(0xedb88320);

/** A decoded blob: tensor data as plain arrays, plus the header's meta. */
export interface DecodedTensors {
  tensors: { name: string; shape: number[]; data: Float32Array }[];
  meta: unknown;
}

/** Encode named float32 arrays (already read from tensors) with a JSON meta section. */
export function encodeArrays(
  entries: readonly { name: string; shape: readonly number[]; data: Float32Array }[],
  meta: unknown = null,
): Uint8Array {
  const header = new TextEncoder().encode(
    JSON.stringify({ tensors: entries.map((e) => ({ name: e.name, shape: [...e.shape] })), meta }),
  );
  const headerEnd = 8 + header.length;
  const dataStart = (headerEnd + 3) & ~3;
  const dataBytes = entries.reduce((n, e) => n + e.data.length * 4, 0);
  const out = new Uint8Array(dataStart + dataBytes + 4);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(4, header.length, true);
  out.set(header, 8);
  let off = dataStart;
  for (const e of entries) {
    const expected = e.shape.reduce((a, b) => a * b, 1);
    if (expected !== e.data.length) throw new Error(`encode: '${e.name}' has ${e.data.length} values for shape [${e.shape}]`);
    for (let i = 0; i < e.data.length; i++, off += 4) view.setFloat32(off, e.data[i]!, true);
  }
  view.setUint32(off, crc32(out, 0, off), true);
  return out;
}

/** Decode and verify a blob made by `encodeArrays`. Throws CorruptBlobError on any mismatch. */
export function decodeArrays(bytes: Uint8Array): DecodedTensors {
  if (bytes.length < 12 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw new CorruptBlobError("not a metatrain tensor blob (bad magic bytes)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stored = view.getUint32(bytes.length - 4, true);
  const actual = crc32(bytes, 0, bytes.length - 4);
  if (stored !== actual) {
    throw new CorruptBlobError(
      `tensor blob checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)}): the blob is corrupt or truncated`,
    );
  }
  const hlen = view.getUint32(4, true);
  if (8 + hlen > bytes.length - 4) throw new CorruptBlobError("tensor blob header runs past the end");
  let header: { tensors: { name: string; shape: number[] }[]; meta: unknown };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    throw new CorruptBlobError("tensor blob header is not valid JSON");
  }
  let off = (8 + hlen + 3) & ~3;
  const tensors = header.tensors.map(({ name, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (off + n * 4 > bytes.length - 4) throw new CorruptBlobError(`tensor '${name}' runs past the end of the blob`);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++, off += 4) data[i] = view.getFloat32(off, true);
    return { name, shape, data };
  });
  if (off !== bytes.length - 4) throw new CorruptBlobError("tensor blob has trailing bytes");
  return { tensors, meta: header.meta };
}

/** Serialize a parameter map (values read synchronously) with optional JSON meta. */
export function serializeParams(p: Params, meta: unknown = null): Uint8Array {
  return encodeArrays(
    names(p).map((name) => ({ name, shape: p[name]!.shape, data: p[name]!.dataSync() as Float32Array })),
    meta,
  );
}

/** Inverse of serializeParams: new tensors (the caller owns and disposes them) and the meta. */
export function deserializeParams(bytes: Uint8Array): { params: Params; meta: unknown } {
  const { tensors, meta } = decodeArrays(bytes);
  const params: Params = {};
  for (const t of tensors) params[t.name] = tf.tensor(t.data, t.shape, "float32");
  return { params, meta };
}
