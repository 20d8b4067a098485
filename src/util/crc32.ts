// CRC-32 (zlib's, as borg's segment entries use) of a range of a buffer, in JavaScript.
//
// Bun.hash.crc32 is native and runs at memory speed, but takes a whole view: checking a
// range means a subarray, one short-lived object per call. A segment can hold a million small
// entries, and that garbage made the check's heap (and RSS) grow by tens of MB per segment. For
// a few bytes to a hundred or so this table-driven version (slicing by 8) is also faster than
// the native call with its view; above that the native one wins.

const TABLE = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = TABLE[n]!;
  for (let k = 1; k < 8; k++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[k * 256 + n] = c;
  }
}

/** Below about this many bytes crc32Range is faster than Bun.hash.crc32 on a subarray. */
export const CRC32_RANGE_MAX = 128;

/** CRC-32 of buf[start, end), continuing from `seed` (a previous result), like Bun.hash.crc32. */
export function crc32Range(buf: Uint8Array, start: number, end: number, seed = 0): number {
  const T = TABLE;
  let c = ~seed;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      T[1792 + (a & 0xff)]! ^
      T[1536 + ((a >>> 8) & 0xff)]! ^
      T[1280 + ((a >>> 16) & 0xff)]! ^
      T[1024 + (a >>> 24)]! ^
      T[768 + buf[i + 4]!]! ^
      T[512 + buf[i + 5]!]! ^
      T[256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
  }
  for (; i < end; i++) c = T[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 of buf[start, end): the faster way for its length. */
export function crc32Of(buf: Uint8Array, start: number, end: number, seed = 0): number {
  return end - start <= CRC32_RANGE_MAX ? crc32Range(buf, start, end, seed) : Bun.hash.crc32(buf.subarray(start, end), seed) >>> 0;
}
