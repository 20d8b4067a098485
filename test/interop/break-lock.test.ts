// `burg break-lock` through dist/burg against locks taken by the real borg: it refuses to break a
// live borg's lock of this host without --force, breaks a dead one's, breaks another host's, and
// `--show` without a repository prints the host ID.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { borgEnv, requireBorg, requireBurg, run, runAsync } from "../support/env.ts";
import { borgInit, borgWithLock, cleanupLockTests, killBorg, lockTempDir } from "../support/locks.ts";

afterAll(cleanupLockTests);

const HOST = "burg-interop-break@4";

function setup(): { home: string; repo: string } {
  const home = lockTempDir("burg-interop-break-");
  const repo = join(home, "repo");
  borgInit(repo, home);
  return { home, repo };
}

function burgEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, BURG_CONFIG_DIR: join(home, "burg-config"), ...extra };
}

function lockFiles(repo: string): string[] {
  return readdirSync(repo).filter((n) => n.startsWith("lock."));
}

describe("burg break-lock (dist/burg)", () => {
  test("--show without a repository prints the host ID", () => {
    const home = lockTempDir();
    const r = run([requireBurg(), "break-lock", "--show"], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(HOST + "\n");
    const derived = run([requireBurg(), "break-lock", "--show", "--json"], { env: burgEnv(home) });
    expect(derived.code).toBe(0);
    const j = JSON.parse(derived.stdout);
    expect(j.host_id).toMatch(/^[^@\s]+@\d+$/);
    expect(["machine-id", "generated"]).toContain(j.origin);
    // Stable across runs.
    const again = JSON.parse(run([requireBurg(), "break-lock", "--show", "--json"], { env: burgEnv(home) }).stdout);
    expect(again.host_id).toBe(j.host_id);
  });

  test("a live borg of this host ID: refused without --force, broken with it", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: HOST });
    try {
      const refused = run([requireBurg(), "break-lock", repo], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
      expect(refused.code).toBe(2);
      expect(refused.stdout).toContain(`host ${HOST} (this host) pid ${borg.pid} thread 0`);
      expect(refused.stdout).toContain(": alive (process is running)");
      expect(refused.stderr).toContain(`Not breaking the lock of ${repo}: it is held by a live process on this host (pid ${borg.pid})`);
      expect(lockFiles(repo).sort()).toEqual(["lock.exclusive", "lock.roster"]);

      const forced = run([requireBurg(), "break-lock", "--force", repo], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
      expect(forced.code).toBe(0);
      expect(forced.stdout).toContain(`Lock of ${repo} broken.`);
      expect(lockFiles(repo)).toEqual([]);
    } finally {
      await killBorg(borg);
    }
  }, 60000);

  test("a dead borg's lock is broken without --force, and borg can lock again", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: HOST });
    await killBorg(borg);
    const shown = run([requireBurg(), "break-lock", "--show", repo], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`pid ${borg.pid} thread 0 [lock.exclusive, roster:exclusive]: dead (no such process)`);
    expect(lockFiles(repo).length).toBe(2);
    const r = run([requireBurg(), "break-lock", repo], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
    expect(r.code).toBe(0);
    expect(lockFiles(repo)).toEqual([]);
    const again = await runAsync([requireBorg(), "with-lock", "--lock-wait", "1", repo, "true"], {
      env: borgEnv(home, { BORG_HOST_ID: HOST }),
    });
    expect(again.code).toBe(0);
  }, 60000);

  test("a lock left under another host ID (the host ID changed) is broken without --force", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: "old-mac-based@1234567" });
    try {
      const r = run([requireBurg(), "break-lock", "--json", repo], { env: burgEnv(home, { BORG_HOST_ID: HOST }) });
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.repositories[0].action).toBe("broken");
      expect(j.repositories[0].holders[0]).toMatchObject({ host: "old-mac-based@1234567", state: "other-host" });
      expect(existsSync(join(repo, "lock.exclusive"))).toBe(false);
    } finally {
      await killBorg(borg);
    }
  }, 60000);
});
