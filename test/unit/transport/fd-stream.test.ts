// fdSessionStream's written() callbacks: each fires once, in order, and only when all of its
// chunk has gone into the pipe (a chunk bigger than the pipe is written in several steps); and
// writev(2) within its limits however many replies an asynchronous client has due at once.

import { describe, expect, test } from "bun:test";
import { closeSync, openSync, readSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { IOV_MAX, fdSessionStream, type WritevFn } from "../../../src/transport/fd-stream.ts";
import { isPeerGone } from "../../../src/util/io-errors.ts";
import { fcntlOrNull } from "../../../src/util/libc.ts";
import { prng, randomBytes } from "../../support/data.ts";
import { tempDir } from "../../support/env.ts";

describe("fdSessionStream", () => {
  test("written() fires once per chunk, in order, after the whole chunk is in the pipe", async () => {
    const path = join(tempDir(), "fifo");
    expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
    const fd = openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK);
    const pipeSize = fcntlOrNull()!.fcntl(fd, 1032, 0); // F_GETPIPE_SZ
    const rand = prng(3);
    const chunks = [randomBytes(rand, 100), randomBytes(rand, 3 * pipeSize + 17), randomBytes(rand, 5000)];
    const ends: number[] = [];
    let total = 0;
    for (const c of chunks) ends.push((total += c.length));
    const fired: Array<[number, number]> = []; // chunk, bytes read by then
    let readSoFar = 0;
    const stream = fdSessionStream(-1, fd);
    try {
      const writes = chunks.map((c, i) => stream.write(c, () => fired.push([i, readSoFar])));
      const got = new Uint8Array(total);
      const buf = new Uint8Array(65536);
      while (readSoFar < total) {
        let n = 0;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
        }
        got.set(buf.subarray(0, n), readSoFar);
        readSoFar += n;
        await Bun.sleep(n === 0 ? 2 : 0);
      }
      await Promise.all(writes);
      await stream.flush();
      expect(Buffer.from(got).equals(Buffer.concat(chunks))).toBe(true);
      expect(fired.map((f) => f[0])).toEqual([0, 1, 2]);
      // the big chunk's callback came only once at most a pipeful of it was still unread
      expect(fired[1]![1]).toBeGreaterThanOrEqual(ends[1]! - pipeSize);
    } finally {
      closeSync(fd);
    }
  });
});

/** Read everything from a non-blocking fd until `total` bytes arrived. */
async function drain(fd: number, total: number): Promise<Uint8Array> {
  const got = new Uint8Array(total);
  const buf = new Uint8Array(1 << 20);
  let n = 0;
  while (n < total) {
    let r = 0;
    try {
      r = readSync(fd, buf, 0, Math.min(buf.length, total - n), null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    }
    got.set(buf.subarray(0, r), n);
    n += r;
    await Bun.sleep(r === 0 ? 1 : 0);
  }
  return got;
}

describe("fdSessionStream and writev's limits", () => {
  // The real writev, counted: the kernel itself answers EINVAL above IOV_MAX iovecs.
  function countingWritev(calls: number[]): WritevFn {
    const { writev } = require("node:fs") as typeof import("node:fs");
    return (fd, chunks, pos, cb) => {
      calls.push(chunks.length);
      writev(fd, chunks, pos, cb);
    };
  }

  for (const [what, count, size] of [
    ["100,000 put replies of 12 bytes", 100_000, 12],
    ["6,000 replies of 3,000 bytes", 6_000, 3_000],
    ["3,000 mixed replies", 3_000, -1],
  ] as const) {
    test(`${what} queued at once reach a real pipe intact, at most IOV_MAX iovecs per call`, async () => {
      const path = join(tempDir(), "fifo");
      expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
      const fd = openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK);
      const rand = prng(count);
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < count; i++) chunks.push(randomBytes(rand, size > 0 ? size : i % 3 === 0 ? 12 : i % 3 === 1 ? 2500 : 40_000));
      const total = chunks.reduce((a, c) => a + c.length, 0);
      const calls: number[] = [];
      const stream = fdSessionStream(-1, fd, countingWritev(calls));
      try {
        let fired = 0;
        // not awaited one by one: the session's replies pile up while the client is slow
        const writes = chunks.map((c) => stream.write(c, () => fired++));
        const got = await drain(fd, total);
        await Promise.all(writes);
        await stream.flush();
        expect(Buffer.from(got).equals(Buffer.concat(chunks))).toBe(true);
        expect(fired).toBe(count);
        expect(Math.max(...calls)).toBeLessThanOrEqual(IOV_MAX);
      } finally {
        closeSync(fd);
      }
    }, 60_000);
  }

  test("a failing writev is reported with the call and errno, not as the client going away", async () => {
    const stream = fdSessionStream(-1, 1, (_fd, _chunks, _pos, cb) =>
      cb(Object.assign(new Error("EINVAL: invalid argument, writev"), { code: "EINVAL" }), 0),
    );
    let err: unknown;
    try {
      await stream.write(new Uint8Array(10));
      await stream.flush();
    } catch (e) {
      err = e;
    }
    expect(String(err)).toContain("writev(2) on fd 1 failed: EINVAL");
    expect(isPeerGone(err)).toBe(false);
  });

  test("EPIPE is the client going away", async () => {
    const stream = fdSessionStream(-1, 1, (_fd, _chunks, _pos, cb) =>
      cb(Object.assign(new Error("EPIPE: broken pipe, writev"), { code: "EPIPE" }), 0),
    );
    const err = await stream.flush().then(
      () => stream.write(new Uint8Array(5000)).then(() => stream.flush()),
    ).catch((e) => e);
    expect(isPeerGone(err)).toBe(true);
  });
});
