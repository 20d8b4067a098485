// burg serve enlarges the pipes it is given as stdin and stdout to 1 MiB (fewer, larger reads
// and writes for big objects), once a session moves bulk data; short sessions leave them alone.

import { describe, expect, test } from "bun:test";
import { closeSync, openSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { fcntlOrNull } from "../../src/util/libc.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { BURG, findBurg, requireBurg, tempDir } from "../support/env.ts";

const F_GETPIPE_SZ = 1032;

/** Sizes of the pipes behind a process's stdin and stdout. */
function pipeSizes(pid: number): number[] {
  return [0, 1].map((n) => {
    const fd = openSync(`/proc/${pid}/fd/${n}`, (n === 0 ? fsc.O_WRONLY : fsc.O_RDONLY) | fsc.O_NONBLOCK);
    try {
      return fcntlOrNull()!.fcntl(fd, F_GETPIPE_SZ, 0);
    } finally {
      closeSync(fd);
    }
  });
}

describe("burg serve on pipes", () => {
  test("its stdin and stdout pipes grow to 1 MiB once objects flow, not before", async () => {
    requireBurg();
    const home = tempDir();
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, BURG_CONFIG_DIR: join(home, "cfg") };
    // Pipes, as sshd gives a forced command (Bun.spawn would give the server a socketpair).
    const c = new RpcClient(["sh", "-c", 'cat | "$@" | cat', "sh", BURG, "serve"], env);
    try {
      await c.negotiate();
      await c.open(join(home, "repo"), true);
      const burg = findBurg(c.pid)!;
      expect(burg).not.toBeNull();
      expect(pipeSizes(burg)).toEqual([65536, 65536]);
      const data = new Uint8Array(512 * 1024);
      await c.call("put", { id: new Uint8Array(32).fill(1), data });
      expect(pipeSizes(burg)).toEqual([1 << 20, 1 << 20]);
    } finally {
      await c.close();
    }
  });
});
