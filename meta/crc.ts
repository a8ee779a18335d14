// Table-driven reflected CRC-32s by polynomial: IEEE 802.3 (zlib's, the tensor blobs') and
// Castagnoli's CRC-32C (TFRecord framing of TensorBoard event files). No imports: anyone may use it.

/** A reflected CRC-32 over `bytes[start, end)` for the reflected polynomial `poly`, init and xorout 0xffffffff. */
export function reflectedCrc32(poly: number): (bytes: Uint8Array, start?: number, end?: number) => number {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? poly ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return (bytes, start = 0, end = bytes.length) => {
    let c = 0xffffffff;
    for (let i = start; i < end; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
}
