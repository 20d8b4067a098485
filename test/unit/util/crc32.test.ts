// crc32Range (JavaScript, on a range) against Bun.hash.crc32 (native, on a view): every length
// from 0 to 300 at odd offsets, longer ranges, and continuing from a seed.

import { describe, expect, test } from "bun:test";
import { crc32Of, crc32Range } from "../../../src/util/crc32.ts";
import { prng, randomBytes } from "../../support/data.ts";

describe("crc32Range", () => {
  const rand = prng(5);
  const buf = randomBytes(rand, 70_000);

  test("equals Bun.hash.crc32 for every short length and offset", () => {
    for (let len = 0; len <= 300; len++) {
      const start = (len * 7) % 13;
      expect(crc32Range(buf, start, start + len)).toBe(Bun.hash.crc32(buf.subarray(start, start + len)) >>> 0);
    }
    for (const [s, e] of [[1, 65_537], [0, 70_000], [69_999, 70_000]] as const) {
      expect(crc32Range(buf, s, e)).toBe(Bun.hash.crc32(buf.subarray(s, e)) >>> 0);
    }
  });

  test("continues from a seed like Bun.hash.crc32, across any split", () => {
    const whole = Bun.hash.crc32(buf.subarray(0, 1000)) >>> 0;
    for (const cut of [0, 1, 5, 9, 128, 129, 999, 1000]) {
      expect(crc32Range(buf, cut, 1000, crc32Range(buf, 0, cut))).toBe(whole);
      expect(crc32Of(buf, cut, 1000, crc32Of(buf, 0, cut))).toBe(whole);
      expect(crc32Range(buf, cut, 1000, Bun.hash.crc32(buf.subarray(0, cut)))).toBe(whole);
    }
  });
});
