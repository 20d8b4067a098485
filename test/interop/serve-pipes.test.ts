// burg serve enlarges the pipes it is given as stdin and stdout to 1 MiB (fewer, larger reads
// and writes for big objects). Sessions through pipes are what every other serve test runs.

import { describe, expect, test } from "bun:test";
import { closeSync, openSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { libcOrNull } from "../../src/util/libc.ts";
import { BURG, requireBurg, tempDir } from "../support/env.ts";

const F_GETPIPE_SZ = 1032;

function fifo(path: string): number {
  const r = Bun.spawnSync(["mkfifo", path]);
  if (r.exitCode !== 0) throw new Error(`mkfifo failed: ${r.stderr.toString()}`);
  return openSync(path, fsc.O_RDWR | fsc.O_NONBLOCK);
}

describe("burg serve on pipes", () => {
  test("its stdin and stdout pipes grow to 1 MiB", async () => {
    requireBurg();
    const dir = tempDir();
    const input = fifo(join(dir, "in"));
    const output = fifo(join(dir, "out"));
    const c = libcOrNull()!;
    expect([c.fcntl(input, F_GETPIPE_SZ, 0), c.fcntl(output, F_GETPIPE_SZ, 0)]).toEqual([65536, 65536]);
    const proc = Bun.spawn([BURG, "serve"], {
      stdin: input,
      stdout: output,
      stderr: "pipe",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir, BURG_CONFIG_DIR: join(dir, "cfg") },
    });
    try {
      const deadline = Date.now() + 10_000;
      let sizes: number[] = [];
      while (Date.now() < deadline) {
        sizes = [c.fcntl(input, F_GETPIPE_SZ, 0), c.fcntl(output, F_GETPIPE_SZ, 0)];
        if (sizes[0] === 1 << 20 && sizes[1] === 1 << 20) break;
        await Bun.sleep(20);
      }
      expect(sizes).toEqual([1 << 20, 1 << 20]);
    } finally {
      proc.kill();
      await proc.exited;
      closeSync(input);
      closeSync(output);
    }
  });
});
