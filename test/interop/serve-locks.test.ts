// Locks through `burg serve` with the real borg client: a serve killed with SIGKILL in the
// middle of a backup leaves a lock the next client gets past without break-lock; a local borg
// holding the lock makes a client of burg serve time out with borg's LockTimeout message, and
// the other way round; two clients on one repository take turns.

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, requireBurg, run, runAsync, tempDir, writeExecutable } from "../support/env.ts";
import { remoteBorg } from "../support/fake-ssh.ts";

/** A fake ssh that records the pid of the server it execs (the server keeps the pid). */
function pidRecordingSsh(dir: string): { rsh: string; pidFile: string } {
  const pidFile = join(dir, "server.pid");
  const rsh = writeExecutable(join(dir, "pid-ssh"), `#!/bin/sh\nshift\necho $$ > '${pidFile}'\nexec "$@"\n`);
  return { rsh, pidFile };
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

function initRepo(home: string, repo: string): void {
  const r = run([requireBorg(), "init", "-e", "none", repo], { env: borgEnv(home) });
  if (r.code !== 0) throw new Error(r.stderr);
}

describe("locks through burg serve", () => {
  test(
    "a serve killed with SIGKILL mid-backup: the next client gets past its lock without break-lock",
    async () => {
      requireBurg();
      const home = tempDir();
      const repo = join(home, "repo");
      initRepo(home, repo);
      const src = join(home, "src");
      makeSourceTree(src, { seed: 11, files: 40, totalBytes: 150_000_000 });
      const { rsh, pidFile } = pidRecordingSsh(home);
      const client = remoteBorg(home, rsh, BURG);
      const backup = client.run(["create", "-C", "none", client.url(repo, "first"), src]);
      // the server holds the exclusive lock once the client is under way
      await waitFor(() => existsSync(pidFile) && existsSync(join(repo, "lock.exclusive")), 30_000, "the lock");
      await Bun.sleep(300);
      const pid = Number(readFileSync(pidFile, "utf8"));
      process.kill(pid, "SIGKILL");
      const killed = await backup;
      expect(killed.code).toBe(2);
      expect(existsSync(join(repo, "lock.exclusive"))).toBe(true); // the dead server's lock is still there

      const next = await client.run(["create", "--lock-wait", "2", client.url(repo, "second"), join(src, "d1")]);
      expect(next.stderr).not.toContain("Failed to create/acquire the lock");
      expect(next.code).toBe(0);
      const list = await client.run(["list", "--short", client.url(repo)]);
      expect(list.stdout.trim().split("\n")).toEqual(["second"]);
      const check = run([requireBorg(), "check", repo], { env: borgEnv(home) });
      expect(check.stderr).toBe("");
      expect(check.code).toBe(0);
    },
    180_000,
  );

  test("a local borg holding the lock: the client of burg serve times out with borg's message", async () => {
    const home = tempDir();
    const repo = join(home, "repo");
    initRepo(home, repo);
    const holder = Bun.spawn([requireBorg(), "with-lock", repo, "sleep", "20"], { env: borgEnv(home), stderr: "pipe" });
    try {
      await waitFor(() => existsSync(join(repo, "lock.exclusive")), 10_000, "borg's lock");
      const { rsh } = pidRecordingSsh(home);
      const client = remoteBorg(home, rsh, BURG);
      const t0 = Date.now();
      const r = await client.run(["list", "--lock-wait", "1", client.url(repo)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("Failed to create/acquire the lock");
      expect(r.stderr).toContain("(timeout)");
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    } finally {
      holder.kill();
      await holder.exited;
    }
  }, 60_000);

  test("burg serve holding the lock: a local borg times out; afterwards it gets the lock", async () => {
    const home = tempDir();
    const repo = join(home, "repo");
    initRepo(home, repo);
    const { rsh } = pidRecordingSsh(home);
    const client = remoteBorg(home, rsh, BURG);
    const holding = client.run(["with-lock", client.url(repo), "sleep", "4"]);
    await waitFor(() => existsSync(join(repo, "lock.exclusive")), 10_000, "burg's lock");
    const blocked = await runAsync([requireBorg(), "list", "--lock-wait", "1", repo], { env: borgEnv(home) });
    expect(blocked.code).toBe(2);
    expect(blocked.stderr).toContain("Failed to create/acquire the lock");
    expect((await holding).code).toBe(0);
    const after = await runAsync([requireBorg(), "list", "--lock-wait", "1", repo], { env: borgEnv(home) });
    expect(after.code).toBe(0);
  }, 60_000);

  test(
    "two clients backing up into one repository take turns on the lock",
    async () => {
      const home = tempDir();
      const repo = join(home, "repo");
      initRepo(home, repo);
      const src = join(home, "src");
      makeSourceTree(src, { seed: 12, files: 30, totalBytes: 30_000_000 });
      const { rsh } = pidRecordingSsh(home);
      const a = remoteBorg(home, rsh, BURG);
      const homeB = tempDir();
      const b = remoteBorg(homeB, rsh, BURG);
      const [ra, rb] = await Promise.all([
        a.run(["create", "--lock-wait", "60", a.url(repo, "from-a"), src]),
        b.run(["create", "--lock-wait", "60", b.url(repo, "from-b"), src], { env: { BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes" } }),
      ]);
      expect(ra.stderr + rb.stderr).not.toContain("Error");
      expect([ra.code, rb.code]).toEqual([0, 0]);
      const list = await a.run(["list", "--short", a.url(repo)]);
      expect(list.stdout.trim().split("\n").sort()).toEqual(["from-a", "from-b"]);
      const check = run([requireBorg(), "check", repo], { env: borgEnv(home) });
      expect(check.code).toBe(0);
    },
    180_000,
  );
});
