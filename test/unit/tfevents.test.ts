// TensorBoard event files by hand: CRC-32C against its published check values, TFRecord's masking,
// and an Event's protobuf bytes field by field (the reader test against tensorboard itself is in
// test/integration/report.test.ts).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { crc32c, encodeEvent, eventFile, maskedCrc32c, tfrecord } from "../../cli/report/tfevents.js";

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

describe("crc32c", () => {
  test("matches the published check values", () => {
    // The CRC catalogue's check value for CRC-32C (iSCSI) over "123456789".
    assert.equal(crc32c(ascii("123456789")), 0xe3069283);
    // RFC 3720 appendix B.4: 32 bytes of zeros → aa 36 91 8a as stored little-endian, i.e. 0x8a9136aa.
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    // RFC 3720 B.4: 32 bytes of 0xff → 0x62a8ab43.
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  });

  test("masking: rotate right 15, add 0xa282ead8 (mod 2^32)", () => {
    // c = 0xe3069283: c >>> 15 = 0x1c60d; (c & 0x7fff) << 17 = 0x1283 << 17 = 0x25060000;
    // rotated 0x2507c60d; + 0xa282ead8 = 0xc78ab0e5.
    assert.equal(maskedCrc32c(ascii("123456789")), 0xc78ab0e5);
  });
});

describe("TFRecord framing and Event protos", () => {
  test("a frame is u64le length, masked CRC of those 8 bytes, data, masked CRC of the data", () => {
    const data = ascii("123456789");
    const f = tfrecord(data);
    assert.equal(f.length, 8 + 4 + 9 + 4);
    assert.equal(hex(f.subarray(0, 8)), "0900000000000000");
    assert.equal(new DataView(f.buffer).getUint32(8, true), maskedCrc32c(f.subarray(0, 8)));
    assert.equal(hex(f.subarray(12, 21)), hex(data));
    assert.equal(new DataView(f.buffer).getUint32(21, true), 0xc78ab0e5);
  });

  test("Event { wall_time 1.0, step 2, summary { value { tag 'a', simple_value 1.0 } } }, byte by byte", () => {
    const b = encodeEvent({ wallTime: 1, step: 2, scalars: [{ tag: "a", value: 1 }] });
    // field 1 double (tag 0x09) 1.0 = 00..f03f LE; field 2 varint (0x10) 2;
    // field 5 bytes (0x2a) len 10: Summary.value (0x0a) len 8: tag (0x0a) len 1 'a' (0x61),
    // simple_value fixed32 (0x15) 1.0f = 0000803f LE.
    assert.equal(hex(b), "09000000000000f03f" + "1002" + "2a0a" + "0a08" + "0a0161" + "150000803f");
  });

  test("file_version, and varints past one byte (step 300 = ac 02)", () => {
    assert.equal(hex(encodeEvent({ wallTime: 0, fileVersion: "brain.Event:2" })), "090000000000000000" + "1a0d" + hex(ascii("brain.Event:2")));
    assert.equal(hex(encodeEvent({ wallTime: 0, step: 300 })), "090000000000000000" + "10ac02");
  });

  test("an event file is the version record, then one record per point", () => {
    const bytes = eventFile([{ tag: "x", step: 0, value: 0.5, wallTime: 10 }, { tag: "x", step: 1, value: 0.25, wallTime: 11 }], 9);
    let at = 0;
    let records = 0;
    while (at < bytes.length) {
      const len = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(at, true));
      at += 12 + len + 4;
      records++;
    }
    assert.equal(at, bytes.length);
    assert.equal(records, 3);
  });
});
