// burg's lock against the real borg on one repository: each excludes the other, waits for the
// other, takes over after the other releases, removes the other's lock when its process died
// (same host ID), and borg break-lock removes burg's lock.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { LockTimeout } from "../../src/errors.ts";
import { uniqueName } from "../../src/lock/format.ts";
import { RepositoryLock } from "../../src/lock/lock.ts";
import { borgEnv, requireBorg, runAsync } from "../support/env.ts";
import { borgInit, borgWithLock, burgHolder, captureLog, cleanupLockTests, killBorg, useHostId, lockTempDir } from "../support/locks.ts";

afterAll(cleanupLockTests);

const HOST = "burg-interop-lock@3";
useHostId(HOST);

function setup(): { home: string; repo: string; env: Record<string, string> } {
  const home = lockTempDir("burg-interop-lock-");
  const repo = join(home, "repo");
  borgInit(repo, home);
  return { home, repo, env: borgEnv(home, { BORG_HOST_ID: HOST }) };
}

function lockFiles(repo: string): string[] {
  return readdirSync(repo).filter((n) => n.startsWith("lock."));
}

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

describe("burg and borg on one repository", () => {
  test("borg with-lock holding the lock makes burg time out with LockTimeout; afterwards burg gets it", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: HOST });
    const cap = captureLog();
    try {
      const e = await rejects(new RepositoryLock(repo, { exclusive: true, timeout: 1 }).acquire());
      expect(e).toBeInstanceOf(LockTimeout);
      expect((e as Error).message).toBe(`Failed to create/acquire the lock ${repo}/lock.exclusive (timeout).`);
      expect(await rejects(new RepositoryLock(repo, { exclusive: false, timeout: 0.5 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      cap.stop();
    }
    // borg's live lock (same host ID) was not touched.
    expect(cap.lines.join("\n")).not.toContain("stale");
    borg.kill("SIGTERM");
    await borg.exited;
    const lock = await new RepositoryLock(repo, { exclusive: true, timeout: 5 }).acquire();
    expect(lock.gotExclusiveLock()).toBe(true);
    lock.release();
    expect(lockFiles(repo)).toEqual([]);
  }, 60000);

  test("burg holding the lock makes borg fail with its lock timeout; after release borg gets it", async () => {
    const { repo, env } = setup();
    const lock = await new RepositoryLock(repo, { exclusive: true, timeout: 1 }).acquire();
    const r = await runAsync([requireBorg(), "with-lock", "--lock-wait", "1", repo, "true"], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`Failed to create/acquire the lock ${repo}/lock.exclusive (timeout).`);
    expect(lock.gotExclusiveLock()).toBe(true);

    lock.downgrade();
    // A shared burg lock: borg's exclusive lock waits for the reader to leave...
    const r2 = await runAsync([requireBorg(), "with-lock", "--lock-wait", "1", repo, "true"], { env });
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(`Failed to create/acquire the lock ${repo}/lock (timeout).`);
    // ...while borg's shared lock coexists with it, and borg keeps burg's records in the roster.
    const r3 = await runAsync([requireBorg(), "list", "--lock-wait", "1", repo], { env });
    expect(r3.stderr).toBe("");
    expect(r3.code).toBe(0);
    const roster = JSON.parse(readFileSync(join(repo, "lock.roster"), "utf8"));
    expect(roster.shared).toEqual([[HOST, process.pid, 0]]);
    expect(Object.keys(roster.burg)).toEqual([uniqueName([HOST, process.pid, 0])]);

    // borg waiting for burg gets the lock as soon as burg releases.
    const waiting = runAsync([requireBorg(), "with-lock", "--lock-wait", "30", repo, "true"], { env });
    await Bun.sleep(1500);
    lock.release();
    const r4 = await waiting;
    expect(r4.stderr).toBe("");
    expect(r4.code).toBe(0);
    expect(lockFiles(repo)).toEqual([]);
  }, 60000);

  test("borg removes the lock of a dead burg process of its host ID by itself", async () => {
    const { repo, env } = setup();
    const holder = await burgHolder(repo, "exclusive", { BORG_HOST_ID: HOST });
    const name = uniqueName([HOST, holder.pid, 0]);
    expect(readdirSync(join(repo, "lock.exclusive"))).toEqual([name]);
    // borg reads burg's holder name, and sees the live burg process:
    const blocked = await runAsync([requireBorg(), "with-lock", "--lock-wait", "1", repo, "true"], { env });
    expect(blocked.code).toBe(2);
    await holder.kill();
    const r = await runAsync([requireBorg(), "with-lock", "--lock-wait", "5", repo, "true"], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`Killed stale lock ${name}.`);
    expect(lockFiles(repo)).toEqual([]);
  }, 60000);

  test("burg removes the lock of a dead borg process of its host ID, with a warning", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: HOST });
    const [name] = readdirSync(join(repo, "lock.exclusive"));
    expect(name).toBe(uniqueName([HOST, borg.pid, 0]));
    await killBorg(borg);
    const cap = captureLog();
    let lock: RepositoryLock;
    try {
      lock = await new RepositoryLock(repo, { exclusive: true, timeout: 5 }).acquire();
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain(`Warning: Killed stale lock ${name} (no such process).`);
    expect(lock.gotExclusiveLock()).toBe(true);
    lock.release();
    expect(lockFiles(repo)).toEqual([]);
  }, 60000);

  test("a dead borg process of another host ID is never removed by burg", async () => {
    const { home, repo } = setup();
    const borg = await borgWithLock(repo, home, 60, { BORG_HOST_ID: "another-machine@5" });
    await killBorg(borg);
    const cap = captureLog();
    try {
      expect(await rejects(new RepositoryLock(repo, { exclusive: true, timeout: 0.5 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain("burg never removes locks of other host IDs");
    expect(existsSync(join(repo, "lock.exclusive"))).toBe(true);
  }, 60000);

  test("borg break-lock removes a live burg process's lock; that process notices when it releases", async () => {
    const { repo, env } = setup();
    const holder = await burgHolder(repo, "exclusive", { BORG_HOST_ID: HOST });
    const r = await runAsync([requireBorg(), "break-lock", repo], { env });
    expect(r.code).toBe(0);
    expect(lockFiles(repo)).toEqual([]);
    // borg can lock the repository now.
    const again = await runAsync([requireBorg(), "with-lock", "--lock-wait", "1", repo, "true"], { env });
    expect(again.code).toBe(0);
    expect(await holder.stop()).toBe(0);
    const err = await new Response(holder.proc.stderr).text();
    expect(err).toContain("was broken while this process held it");
    expect(lockFiles(repo)).toEqual([]);
  }, 60000);
});
