// growPipe against real pipes (a FIFO opened read-write) and a regular file.

import { describe, expect, test } from "bun:test";
import { closeSync, openSync, writeFileSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { growPipe, fcntlOrNull } from "../../../src/util/libc.ts";
import { tempDir } from "../../support/env.ts";

const F_GETPIPE_SZ = 1032;

function fifo(dir: string, name: string): number {
  const path = join(dir, name);
  const r = Bun.spawnSync(["mkfifo", path]);
  if (r.exitCode !== 0) throw new Error(`mkfifo failed: ${r.stderr.toString()}`);
  return openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK);
}

describe("growPipe", () => {
  test("grows a pipe to the size asked for, never shrinks one, and leaves other files alone", () => {
    const dir = tempDir();
    const fd = fifo(dir, "p");
    try {
      const c = fcntlOrNull()!;
      expect(c.fcntl(fd, F_GETPIPE_SZ, 0)).toBe(65536);
      expect(growPipe(fd, 1 << 20)).toBe(1 << 20);
      expect(c.fcntl(fd, F_GETPIPE_SZ, 0)).toBe(1 << 20);
      expect(growPipe(fd, 65536)).toBe(1 << 20);
    } finally {
      closeSync(fd);
    }
    writeFileSync(join(dir, "f"), "x");
    const file = openSync(join(dir, "f"), "r");
    try {
      expect(growPipe(file, 1 << 20)).toBeNull();
    } finally {
      closeSync(file);
    }
  });
});
