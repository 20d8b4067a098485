// A reply that cannot be written for a reason other than the client going away is burg's
// failure, not a disconnect: `burg serve` whose stdout is a file on a full file system (a
// size-limited tmpfs the test mounts; root, as in CI) logs an ERROR naming the call and errno
// on stderr (the borg client shows it as a "Remote: ..." line), rolls the transaction back,
// releases the lock and exits 2. Plain borg then finds the repository at its last commit.

import { describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeSync } from "node:fs";
import { join } from "node:path";
import { borgEnv, requireBorg, requireBurg, run } from "../support/env.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { testScope } from "../support/scope.ts";
import { rpc } from "../support/serve-process.ts";
import { StreamDecoder, encode, mapGet } from "../../src/util/msgpack.ts";

const scope = testScope();

function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  const r = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  if (r.exitCode !== 0) {
    throw new Error(`this test mounts a tmpfs and needs root (as in CI): ${r.stderr.toString().trim()}`);
  }
  scope.onCleanup(() => void Bun.spawnSync(["umount", "-l", dir]));
}

/** Fill the file system holding `dir` to the last byte. */
function fill(dir: string): void {
  const fd = openSync(join(dir, "filler"), "w");
  const block = new Uint8Array(4096);
  try {
    for (;;) writeSync(fd, block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
  }
  try {
    for (;;) writeSync(fd, block, 0, 1);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
  } finally {
    closeSync(fd);
  }
}

function decodeAll(path: string): unknown[] {
  const d = new StreamDecoder();
  d.feed(new Uint8Array(readFileSync(path)));
  return [...d];
}

describe("burg serve: a failed reply write is an internal error, not a disconnect", () => {
  test("stdout on a full file system: ERROR with writev and ENOSPC, rolled back, lock released, exit 2", async () => {
    const home = scope.tempDir("burg-transport-");
    const env = borgEnv(home);
    const repo = join(home, "repo");
    expect(run([requireBorg(), "init", "-e", "none", repo], { env }).code).toBe(0);
    const small = join(home, "small");
    mountTmpfs(small, "64k");
    const outPath = join(small, "replies");
    const out = openSync(outPath, "w");
    const proc = scope.track(
      Bun.spawn([requireBurg(), "serve"], { env, stdin: "pipe", stdout: out, stderr: "pipe" }),
    );
    closeSync(out);
    const stderr = new Response(proc.stderr).text();
    proc.stdin.write(encode(rpc(1, "negotiate", { client_data: new Map([["client_version", [1, 2, 4, -1]]]) })));
    proc.stdin.write(encode(rpc(2, "open", { path: new TextEncoder().encode(repo), create: false, lock_wait: 1, lock: true, exclusive: true })));
    await proc.stdin.flush();
    const deadline = Date.now() + 20_000;
    while (decodeAll(outPath).length < 2 && Date.now() < deadline) await Bun.sleep(20);
    expect(decodeAll(outPath).length).toBe(2);
    expect(readdirSync(repo).some((n) => n.startsWith("lock."))).toBe(true);

    fill(small);
    // puts as borg sends them (no waiting); the client then waits for their replies, keeping
    // its side open: the server must notice on its own that its replies cannot be written
    for (let i = 0; i < 2000; i++) {
      const id = new Uint8Array(32);
      new DataView(id.buffer).setUint32(0, i + 1);
      proc.stdin.write(encode(rpc(3 + i, "put", { id, data: new Uint8Array(100).fill(i & 0xff) })));
    }
    try {
      await proc.stdin.flush();
    } catch {}
    const code = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => "still running")]);
    proc.kill("SIGKILL");
    const log = await stderr;
    expect(code).toBe(2);
    const errors = log
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l))
      .filter((l) => l.levelname === "ERROR");
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0].message).toContain("writev(2) on fd 1 failed: ENOSPC");
    expect(errors[0].message).toContain("rolled back");

    // rolled back and unlocked: plain borg opens it at once, and nothing of the session is there
    expect(readdirSync(repo).filter((n) => n.startsWith("lock."))).toEqual([]);
    const check = run([requireBorg(), "check", repo], { env });
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);
    const c = new RpcClient([requireBurg(), "serve"], env);
    await c.negotiate();
    await c.open(repo);
    expect(await c.call("__len__", {})).toBe(1); // the manifest borg init wrote
    expect(mapGet(new Map([["x", 1]]), "x")).toBe(1);
    await c.close();
    expect(existsSync(join(repo, "data", "0", "3"))).toBe(false);
  }, 60_000);
});
