// RepositoryLock: shared/exclusive semantics within this process and between "processes"
// (holder ids), upgrade/downgrade, timeouts, release paths, and stale-lock recovery: dead
// holders of our host ID are removed with a warning, live ones never, other hosts only reported.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LockError, LockFailed, LockTimeout, isLockError } from "../../../src/errors.ts";
import { pythonJsonDumps, serializeRecord, uniqueName } from "../../../src/lock/format.ts";
import type { LockRecord, ProcessId } from "../../../src/lock/format.ts";
import { bootId, processStartTicks } from "../../../src/lock/liveness.ts";
import { RepositoryLock, heldLockCount, releaseAllLocks } from "../../../src/lock/lock.ts";
import { captureLog, cleanupLockTests, useHostId, deadPid, liveProcess, lockTempDir } from "../../support/locks.ts";

afterAll(cleanupLockTests);

const HOST = "burg-unit-lock@1";
const OTHER = "some-other-host@2";
useHostId(HOST);

afterEach(() => releaseAllLocks());

function repo(): string {
  return lockTempDir("burg-lock-");
}

function roster(dir: string): Record<string, unknown> | null {
  const p = join(dir, "lock.roster");
  return existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : null;
}

function exclusiveNames(dir: string): string[] | null {
  const p = join(dir, "lock.exclusive");
  return existsSync(p) ? readdirSync(p).sort() : null;
}

function recordOf(id: ProcessId, fields: Partial<LockRecord>): LockRecord {
  return { host: id[0], pid: id[1], thread: id[2], start_ticks: null, boot_id: null, started: null, ...fields };
}

/** A lock.exclusive holder file as another process would have left it. */
function plantExclusive(dir: string, id: ProcessId, record: LockRecord | null = null): string {
  mkdirSync(join(dir, "lock.exclusive"), { recursive: true });
  const name = uniqueName(id);
  writeFileSync(join(dir, "lock.exclusive", name), record === null ? "" : serializeRecord(record));
  return name;
}

function plantRoster(dir: string, data: Record<string, unknown>): void {
  writeFileSync(join(dir, "lock.roster"), pythonJsonDumps(data));
}

async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

describe("exclusive and shared", () => {
  test("an exclusive lock writes our holder file with a record, and release removes everything", async () => {
    const dir = repo();
    const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
    const me = uniqueName([HOST, process.pid, 0]);
    expect(exclusiveNames(dir)).toEqual([me]);
    const record = JSON.parse(readFileSync(join(dir, "lock.exclusive", me), "utf8"));
    expect(record).toMatchObject({ host: HOST, pid: process.pid, thread: 0, boot_id: bootId() });
    expect(record.start_ticks).toBe(processStartTicks(process.pid));
    const r = roster(dir)!;
    expect(r.exclusive).toEqual([[HOST, process.pid, 0]]);
    expect(Object.keys(r.burg as object)).toEqual([me]);
    expect(lock.gotExclusiveLock()).toBe(true);
    expect(lock.isExclusive()).toBe(true);
    lock.release();
    lock.release(); // idempotent
    expect(readdirSync(dir)).toEqual([]);
    expect(lock.gotExclusiveLock()).toBe(false);
    expect(heldLockCount()).toBe(0);
  });

  test("sessions of one process share one roster entry and exclude each other correctly", async () => {
    const dir = repo();
    const a = await new RepositoryLock(dir, { exclusive: false, timeout: 1 }).acquire();
    const b = await new RepositoryLock(dir, { exclusive: false, timeout: 1 }).acquire();
    expect(roster(dir)!.shared).toEqual([[HOST, process.pid, 0]]);
    expect(exclusiveNames(dir)).toBeNull();
    const e = await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire());
    expect(e).toBeInstanceOf(LockTimeout);
    a.release();
    // b still holds its shared lock: the entry must stay.
    expect(roster(dir)!.shared).toEqual([[HOST, process.pid, 0]]);
    const pending = new RepositoryLock(dir, { exclusive: true, timeout: null }).acquire();
    b.release();
    const x = await pending; // woken when b left
    expect(x.gotExclusiveLock()).toBe(true);
    // The exclusive session excludes a shared one of the same process.
    expect(await rejects(new RepositoryLock(dir, { exclusive: false, timeout: 0.2 }).acquire())).toBeInstanceOf(
      LockTimeout,
    );
    x.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  test("holders of different ids: shared coexist, exclusive waits for them", async () => {
    const dir = repo();
    const p1: ProcessId = [OTHER, 101, 0];
    const p2: ProcessId = [OTHER, 102, 0];
    const p3: ProcessId = [OTHER, 103, 0];
    const cap = captureLog();
    try {
      const s1 = await new RepositoryLock(dir, { exclusive: false, timeout: 1, id: p1 }).acquire();
      const s2 = await new RepositoryLock(dir, { exclusive: false, timeout: 1, id: p2 }).acquire();
      expect(new Set((roster(dir)!.shared as unknown[]).map((e) => JSON.stringify(e)))).toEqual(
        new Set([JSON.stringify(p1), JSON.stringify(p2)]),
      );
      const e = await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.5, id: p3 }).acquire());
      expect(e).toBeInstanceOf(LockTimeout);
      expect((e as LockTimeout).message).toBe(`Failed to create/acquire the lock ${join(dir, "lock")} (timeout).`);
      // Nothing of p3 stays behind.
      expect(JSON.stringify(roster(dir))).not.toContain("103");
      expect(exclusiveNames(dir)).toBeNull();
      s1.release();
      s2.release();
      const x = await new RepositoryLock(dir, { exclusive: true, timeout: 1, id: p3 }).acquire();
      expect(roster(dir)!.exclusive).toEqual([p3]);
      const e2 = await rejects(new RepositoryLock(dir, { exclusive: false, timeout: 0.3, id: p1 }).acquire());
      expect(e2).toBeInstanceOf(LockTimeout);
      expect((e2 as LockTimeout).message).toBe(`Failed to create/acquire the lock ${join(dir, "lock.exclusive")} (timeout).`);
      x.release();
    } finally {
      cap.stop();
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  test("upgrade waits for other readers, downgrade lets them in", async () => {
    const dir = repo();
    const other: ProcessId = [OTHER, 201, 0];
    const cap = captureLog();
    try {
      const mine = await new RepositoryLock(dir, { exclusive: false, timeout: 0.3 }).acquire();
      const theirs = await new RepositoryLock(dir, { exclusive: false, timeout: 1, id: other }).acquire();
      expect(await rejects(mine.upgrade())).toBeInstanceOf(LockTimeout);
      // A failed upgrade leaves the shared lock as it was.
      expect(roster(dir)!.shared).toContainEqual([HOST, process.pid, 0]);
      expect(mine.isExclusive()).toBe(false);
      theirs.release();
      await mine.upgrade();
      expect(mine.gotExclusiveLock()).toBe(true);
      expect(roster(dir)!.exclusive).toEqual([[HOST, process.pid, 0]]);
      expect(roster(dir)!.shared).toEqual([]);
      mine.downgrade();
      expect(mine.isExclusive()).toBe(false);
      expect(mine.gotExclusiveLock()).toBe(false);
      expect(exclusiveNames(dir)).toBeNull();
      expect(roster(dir)!.shared).toEqual([[HOST, process.pid, 0]]);
      const again = await new RepositoryLock(dir, { exclusive: false, timeout: 1, id: other }).acquire();
      again.release();
      mine.release();
    } finally {
      cap.stop();
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  test("the wait lasts about the timeout and polls like borg", async () => {
    const dir = repo();
    const cap = captureLog();
    try {
      const held = await new RepositoryLock(dir, { exclusive: true, timeout: 1, id: [OTHER, 301, 0] }).acquire();
      const t0 = Date.now();
      const e = await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire());
      expect(e).toBeInstanceOf(LockTimeout);
      expect(isLockError(e)).toBe(true);
      expect((e as LockTimeout).borgName).toBe("LockTimeout");
      expect((e as LockTimeout).borgArgs).toEqual([join(dir, "lock.exclusive")]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
      held.release();
    } finally {
      cap.stop();
    }
  });

  test("release() cancels an acquire that is still waiting", async () => {
    const dir = repo();
    const held = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
    const waiter = new RepositoryLock(dir, { exclusive: true, timeout: null });
    const pending = rejects(waiter.acquire());
    await Bun.sleep(50);
    waiter.release();
    expect(await pending).toBeInstanceOf(LockError);
    expect(held.gotExclusiveLock()).toBe(true);
    held.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  test("releaseAllLocks() releases every lock of the process", async () => {
    const a = repo();
    const b = repo();
    const la = await new RepositoryLock(a, { exclusive: true, timeout: 1 }).acquire();
    const lb = await new RepositoryLock(b, { exclusive: false, timeout: 1 }).acquire();
    expect(heldLockCount()).toBe(2);
    releaseAllLocks();
    expect(heldLockCount()).toBe(0);
    expect(readdirSync(a)).toEqual([]);
    expect(readdirSync(b)).toEqual([]);
    expect(la.isHeld()).toBe(false);
    la.release();
    lb.release();
  });

  test("a lock broken by someone else is released with a warning, without touching the new holder", async () => {
    const dir = repo();
    const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
    // Another process breaks it (as borg break-lock does: the files simply go away).
    rmSync(join(dir, "lock.exclusive"), { recursive: true });
    rmSync(join(dir, "lock.roster"));
    const cap = captureLog();
    let newcomer: RepositoryLock | null = null;
    try {
      newcomer = await new RepositoryLock(dir, { exclusive: true, timeout: 1, id: [OTHER, 401, 0] }).acquire();
      expect(lock.gotExclusiveLock()).toBe(false);
      lock.release();
      expect(exclusiveNames(dir)).toEqual([uniqueName([OTHER, 401, 0])]);
      expect(roster(dir)!.exclusive).toEqual([[OTHER, 401, 0]]);
    } finally {
      cap.stop();
      newcomer?.release();
    }
    expect(cap.lines.join("\n")).toContain("was broken while this process held it");
  });

  test("breakLock() removes all lock files and forgets this process's holders", async () => {
    const dir = repo();
    const lock = await new RepositoryLock(dir, { exclusive: false, timeout: 1 }).acquire();
    plantExclusive(dir, [OTHER, 5, 0]);
    new RepositoryLock(dir, { exclusive: true, timeout: 0 }).breakLock();
    expect(readdirSync(dir)).toEqual([]);
    expect(lock.isHeld()).toBe(false);
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a missing or unwritable repository fails with LockFailed", async () => {
    const e = await rejects(new RepositoryLock("/proc/self/no-such-repo", { exclusive: true, timeout: 1 }).acquire());
    expect(e).toBeInstanceOf(LockFailed);
    expect((e as LockFailed).message).toMatch(
      /^Failed to create\/acquire the lock \/proc\/self\/no-such-repo\/lock\.exclusive \(\[Errno \d+\] .+\)\.$/,
    );
  });
});

describe("stale locks", () => {
  test("a holder of our host ID whose process is gone is removed with a warning", async () => {
    const dir = repo();
    const dead: ProcessId = [HOST, deadPid(), 0];
    const name = plantExclusive(dir, dead); // as borg leaves it: empty file
    plantRoster(dir, { exclusive: [dead] });
    const cap = captureLog();
    try {
      const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
      expect(exclusiveNames(dir)).toEqual([uniqueName([HOST, process.pid, 0])]);
      expect(roster(dir)!.exclusive).toEqual([[HOST, process.pid, 0]]);
      lock.release();
    } finally {
      cap.stop();
    }
    const text = cap.lines.join("\n");
    expect(text).toContain(`Warning: Killed stale lock ${name} (no such process).`);
    expect(text).toContain(`Removed stale exclusive roster lock for host ${HOST} pid ${dead[1]} thread 0`);
  });

  test("a holder whose PID now belongs to another process (other start time) is stale", async () => {
    const dir = repo();
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    const ticks = String(Number(processStartTicks(p.pid)) - 7);
    plantExclusive(dir, id, recordOf(id, { start_ticks: ticks, boot_id: bootId() }));
    const cap = captureLog();
    try {
      const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
      lock.release();
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain(`Killed stale lock ${uniqueName(id)} (pid ${p.pid} was reused`);
    expect(p.exitCode).toBeNull(); // the process itself is untouched
  });

  test("a holder recorded in another boot is stale", async () => {
    const dir = repo();
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    plantExclusive(
      dir,
      id,
      recordOf(id, { start_ticks: processStartTicks(p.pid), boot_id: "00000000-0000-4000-8000-000000000001" }),
    );
    const cap = captureLog();
    try {
      const lock = await new RepositoryLock(dir, { exclusive: false, timeout: 1 }).acquire();
      lock.release();
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain("before a reboot");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a live holder of our host ID is never removed (record or not)", async () => {
    const dir = repo();
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    for (const record of [null, recordOf(id, { start_ticks: processStartTicks(p.pid), boot_id: bootId() })]) {
      const name = plantExclusive(dir, id, record);
      const cap = captureLog();
      try {
        expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire())).toBeInstanceOf(
          LockTimeout,
        );
      } finally {
        cap.stop();
      }
      expect(exclusiveNames(dir)).toEqual([name]);
      expect(cap.lines.join("\n")).not.toContain("stale");
    }
  });

  test("a live shared holder of our host ID blocks an exclusive lock; a dead one is removed", async () => {
    const dir = repo();
    const p = liveProcess();
    const live: ProcessId = [HOST, p.pid, 0];
    const dead: ProcessId = [HOST, deadPid(), 0];
    const reused: ProcessId = [HOST, liveProcess().pid, 0];
    plantRoster(dir, {
      shared: [live, dead, reused],
      burg: {
        [uniqueName(reused)]: recordOf(reused, { start_ticks: "1", boot_id: bootId() }),
        [uniqueName(live)]: recordOf(live, { start_ticks: processStartTicks(p.pid), boot_id: bootId() }),
      },
    });
    const cap = captureLog();
    try {
      expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
      // Shared locks still coexist with the live reader.
      const s = await new RepositoryLock(dir, { exclusive: false, timeout: 1 }).acquire();
      expect(roster(dir)!.shared).toEqual([live, [HOST, process.pid, 0]]);
      s.release();
    } finally {
      cap.stop();
    }
    const text = cap.lines.join("\n");
    expect(text).toContain(`Removed stale shared roster lock for host ${HOST} pid ${dead[1]} thread 0 (no such process)`);
    expect(text).toContain(`Removed stale shared roster lock for host ${HOST} pid ${reused[1]} thread 0 (pid`);
    expect(roster(dir)!.shared).toEqual([live]);
    // The record of the removed entry went with it; the live one's stays.
    expect(Object.keys(roster(dir)!.burg as object)).toEqual([uniqueName(live)]);
  });

  test("locks of another host ID are reported and left alone", async () => {
    const dir = repo();
    const foreign: ProcessId = [OTHER, deadPid(), 0];
    const name = plantExclusive(dir, foreign);
    const cap = captureLog();
    try {
      expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      cap.stop();
    }
    expect(exclusiveNames(dir)).toEqual([name]);
    const warnings = cap.lines.filter((l) => l.includes(name));
    expect(warnings.length).toBe(1); // once per acquire, not once per poll
    expect(warnings[0]).toContain("burg never removes locks of other host IDs");
    expect(warnings[0]).toContain(`burg break-lock ${dir}`);

    rmExclusive(dir);
    plantRoster(dir, { shared: [foreign] });
    const cap2 = captureLog();
    try {
      expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      cap2.stop();
    }
    expect(roster(dir)!.shared).toEqual([foreign]);
    expect(cap2.lines.join("\n")).toContain("burg never removes locks of other host IDs");
  });

  test("BORG_HOSTNAME_IS_UNIQUE=no keeps stale locks (reported, not removed)", async () => {
    const dir = repo();
    const dead: ProcessId = [HOST, deadPid(), 0];
    const name = plantExclusive(dir, dead);
    const cap = captureLog();
    process.env.BORG_HOSTNAME_IS_UNIQUE = "no";
    try {
      expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.3 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      delete process.env.BORG_HOSTNAME_IS_UNIQUE;
      cap.stop();
    }
    expect(exclusiveNames(dir)).toEqual([name]);
    expect(cap.lines).toEqual([`Warning: Found stale lock ${name}, but not deleting because BORG_HOSTNAME_IS_UNIQUE=no.`]);
  });

  test("a malformed holder file is reported and left alone", async () => {
    const dir = repo();
    mkdirSync(join(dir, "lock.exclusive"));
    writeFileSync(join(dir, "lock.exclusive", "not-a-lock"), "");
    const cap = captureLog();
    try {
      expect(await rejects(new RepositoryLock(dir, { exclusive: true, timeout: 0.2 }).acquire())).toBeInstanceOf(
        LockTimeout,
      );
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain("Found malformed lock not-a-lock");
    expect(exclusiveNames(dir)).toEqual(["not-a-lock"]);
  });

  test("our own holder name left by a dead process with our PID is taken over, record refreshed", async () => {
    const dir = repo();
    const me: ProcessId = [HOST, process.pid, 0];
    plantExclusive(dir, me, recordOf(me, { start_ticks: "1", boot_id: "old" }));
    const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
    const record = JSON.parse(readFileSync(join(dir, "lock.exclusive", uniqueName(me)), "utf8"));
    expect(record.start_ticks).toBe(processStartTicks(process.pid));
    lock.release();
    expect(readdirSync(dir)).toEqual([]);
  });
});

function rmExclusive(dir: string): void {
  new RepositoryLock(dir, { exclusive: true, timeout: 0 }).breakLock();
}
