// TensorBoard event files, written by hand: TFRecord framing around `Event` protos holding scalar
// summaries — the few protobuf fields TensorBoard's scalar reader needs, no protobuf runtime.
//
//   record = u64le(len) | u32le(masked_crc32c(len bytes)) | data | u32le(masked_crc32c(data))
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
// (tensorflow/core/util/event.proto, summary.proto; tensorflow/core/lib/io/record_writer.cc.)
import { reflectedCrc32 } from "../../meta/crc.js";

/** CRC-32C (Castagnoli, reflected polynomial 0x82f63b78). */
export const crc32c = reflectedCrc32(0x82f63b78);

/** TFRecord's masked CRC: rotate right by 15, add 0xa282ead8 (so a CRC of CRCs is not a CRC). */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord frame around `data`. */
export function tfrecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

// ---- protobuf wire format: varints, 64-bit, length-delimited and 32-bit fields ----

function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}
const tag = (field: number, wire: number): number[] => varint(BigInt((field << 3) | wire));
const bytesField = (field: number, b: Uint8Array): number[] => [...tag(field, 2), ...varint(BigInt(b.length)), ...b];
function fixed(field: number, wire: 1 | 5, set: (v: DataView) => void): number[] {
  const b = new Uint8Array(wire === 1 ? 8 : 4);
  set(new DataView(b.buffer));
  return [...tag(field, wire), ...b];
}

/** An `Event` with `wall_time`, `step` and either `file_version` or a summary of scalars. */
export function encodeEvent(e: { wallTime: number; step?: number; fileVersion?: string; scalars?: { tag: string; value: number }[] }): Uint8Array {
  const out: number[] = fixed(1, 1, (v) => v.setFloat64(0, e.wallTime, true));
  if (e.step !== undefined) out.push(...tag(2, 0), ...varint(BigInt(e.step)));
  if (e.fileVersion !== undefined) out.push(...bytesField(3, new TextEncoder().encode(e.fileVersion)));
  if (e.scalars?.length) {
    const values = e.scalars.flatMap((s) =>
      bytesField(1, Uint8Array.from([...bytesField(1, new TextEncoder().encode(s.tag)), ...fixed(2, 5, (v) => v.setFloat32(0, s.value, true))])),
    );
    out.push(...bytesField(5, Uint8Array.from(values)));
  }
  return Uint8Array.from(out);
}

/** One scalar point: a tag, a step and its value at a wall time (seconds since the epoch). */
export interface ScalarPoint {
  tag: string;
  step: number;
  value: number;
  wallTime: number;
}

/** The bytes of a whole event file: the version record, then one event per (step, wall time) with its scalars. */
export function eventFile(points: readonly ScalarPoint[], createdAt: number): Uint8Array {
  const events = [encodeEvent({ wallTime: createdAt, fileVersion: "brain.Event:2" })];
  for (const p of points) events.push(encodeEvent({ wallTime: p.wallTime, step: p.step, scalars: [{ tag: p.tag, value: p.value }] }));
  return Buffer.concat(events.map(tfrecord));
}
