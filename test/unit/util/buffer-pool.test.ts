// BufferPool: exact-size views of power-of-two buffers, lent again only after being given
// back, small requests and over-limit returns left to the garbage collector.

import { describe, expect, test } from "bun:test";
import { BufferPool } from "../../../src/util/buffer-pool.ts";

describe("BufferPool", () => {
  test("lends exact-size views; a buffer is reused only after it was given back", () => {
    const pool = new BufferPool(1000, 1 << 20);
    const a = pool.take(3000);
    expect(a.length).toBe(3000);
    expect(a.buffer.byteLength).toBe(4096);
    expect(pool.owns(a)).toBe(true);
    const b = pool.take(3000);
    expect(b.buffer).not.toBe(a.buffer); // a is still lent
    pool.give(a);
    expect(pool.owns(a)).toBe(false);
    const c = pool.take(2500); // same class (4096): a's buffer again
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(2500);
    pool.give(a); // given back twice: ignored, c keeps its buffer
    expect(pool.take(3000).buffer).not.toBe(c.buffer);
  });

  test("small requests are plain buffers; no more than maxBytes is kept", () => {
    const pool = new BufferPool(1000, 8192);
    const small = pool.take(999);
    expect(pool.owns(small)).toBe(false);
    const views = [pool.take(4096), pool.take(4096), pool.take(4096)];
    const buffers = views.map((v) => v.buffer);
    for (const v of views) pool.give(v);
    // two of 4096 fit in 8192; the third was dropped
    const again = [pool.take(4096), pool.take(4096), pool.take(4096)].map((v) => v.buffer);
    expect(again.filter((b) => buffers.includes(b)).length).toBe(2);
  });
});
