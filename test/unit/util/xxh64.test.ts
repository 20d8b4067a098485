import { describe, expect, test } from "bun:test";
import { Xxh64Stream } from "../../../src/util/xxh64.ts";

describe("streaming XXH64", () => {
  test("equals Bun.hash.xxHash64 for every length up to 300 and however the input is cut", () => {
    const data = new Uint8Array(300);
    crypto.getRandomValues(data);
    for (let n = 0; n <= 300; n++) {
      const whole = Bun.hash.xxHash64(data.subarray(0, n), 0n);
      expect(new Xxh64Stream().update(data.subarray(0, n)).digest()).toBe(whole);
      const s = new Xxh64Stream();
      for (let i = 0; i < n; i += 7) s.update(data.subarray(i, Math.min(n, i + 7)));
      expect(s.digest()).toBe(whole);
    }
  });

  test("digests of prefixes along the way, and inputs larger than the window", () => {
    const data = new Uint8Array((3 << 20) + 77);
    for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, Math.min(data.length, i + 65536)));
    const s = new Xxh64Stream();
    let pos = 0;
    for (const step of [18, 100_003, 1 << 20, 1, (1 << 20) + 5, data.length]) {
      const end = Math.min(data.length, pos + step);
      s.update(data.subarray(pos, end));
      pos = end;
      expect(s.digest()).toBe(Bun.hash.xxHash64(data.subarray(0, pos), 0n));
    }
    expect(pos).toBe(data.length);
  });
});
