// fdSessionStream's written() callbacks: each fires once, in order, and only when all of its
// chunk has gone into the pipe (a chunk bigger than the pipe is written in several steps).

import { describe, expect, test } from "bun:test";
import { closeSync, openSync, readSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { fdSessionStream } from "../../../src/transport/fd-stream.ts";
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
