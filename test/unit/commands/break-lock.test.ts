// runBreakLock: reports holders (alive / dead / other host), breaks locks, refuses a live local
// holder without --force, prints this host's ID with --show and no repository.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runBreakLock } from "../../../src/commands/break-lock.ts";
import type { BreakLockOptions } from "../../../src/commands/break-lock.ts";
import { UsageError } from "../../../src/errors.ts";
import { pythonJsonDumps, serializeRecord, uniqueName } from "../../../src/lock/format.ts";
import type { ProcessId } from "../../../src/lock/format.ts";
import { processStartTicks } from "../../../src/lock/liveness.ts";
import { RepositoryLock } from "../../../src/lock/lock.ts";
import { cleanupLockTests, useHostId, deadPid, liveProcess, lockTempDir } from "../../support/locks.ts";

afterAll(cleanupLockTests);

const HOST = "burg-unit-break@1";
useHostId(HOST);

function call(opts: Partial<BreakLockOptions>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = runBreakLock(
    { repos: [], show: false, force: false, json: false, ...opts },
    { stdout: (t) => out.push(t), stderr: (t) => err.push(t) },
  );
  return { code, stdout: out.join(""), stderr: err.join("") };
}

function fakeRepo(): string {
  const dir = lockTempDir("burg-break-");
  writeFileSync(join(dir, "config"), "[repository]\n");
  return dir;
}

function plant(dir: string, id: ProcessId, record = ""): void {
  mkdirSync(join(dir, "lock.exclusive"), { recursive: true });
  writeFileSync(join(dir, "lock.exclusive", uniqueName(id)), record);
  writeFileSync(join(dir, "lock.roster"), pythonJsonDumps({ exclusive: [id] }));
}

describe("burg break-lock", () => {
  test("--show without a repository prints this host's ID", () => {
    const r = call({ show: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(HOST + "\n");
    expect(r.stderr).toContain("BORG_HOST_ID");
    const j = call({ show: true, json: true });
    expect(JSON.parse(j.stdout)).toEqual({ host_id: HOST, origin: "env", file: null });
  });

  test("without a repository and without --show it is a usage error", () => {
    expect(() => call({})).toThrow(UsageError);
  });

  test("an unlocked repository is left as it is", () => {
    const dir = fakeRepo();
    const r = call({ repos: [dir] });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${dir}: not locked\n`);
  });

  test("a dead holder of this host is shown and removed", () => {
    const dir = fakeRepo();
    const dead: ProcessId = [HOST, deadPid(), 0];
    plant(dir, dead);
    const r = call({ repos: [dir] });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`host ${HOST} (this host) pid ${dead[1]} thread 0 [lock.exclusive, roster:exclusive]: dead (no such process)`);
    expect(r.stdout).toContain(`Lock of ${dir} broken.`);
    expect(readdirSync(dir)).toEqual(["config"]);
  });

  test("a live holder of this host is not broken without --force", async () => {
    const dir = fakeRepo();
    const lock = await new RepositoryLock(dir, { exclusive: true, timeout: 1 }).acquire();
    const r = call({ repos: [dir] });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain(`pid ${process.pid} thread 0`);
    expect(r.stdout).toMatch(/started \d{4}-\d\d-\d\dT[\d:]+Z: alive/);
    expect(r.stderr).toContain(`Not breaking the lock of ${dir}: it is held by a live process on this host (pid ${process.pid})`);
    expect(r.stderr).toContain("--force");
    expect(lock.gotExclusiveLock()).toBe(true);

    const forced = call({ repos: [dir], force: true });
    expect(forced.code).toBe(0);
    expect(readdirSync(dir)).toEqual(["config"]);
    lock.release();
  });

  test("a live process of another program holding a stale record is broken: its PID was reused", () => {
    const dir = fakeRepo();
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    const ticks = String(Number(processStartTicks(p.pid)) - 3);
    plant(dir, id, serializeRecord({ host: HOST, pid: p.pid, thread: 0, start_ticks: ticks, boot_id: null, started: null }));
    const r = call({ repos: [dir] });
    expect(r.stdout).toContain("dead (pid");
    expect(r.code).toBe(0);
    expect(existsSync(join(dir, "lock.exclusive"))).toBe(false);
  });

  test("a holder of another host ID is shown as such and broken", () => {
    const dir = fakeRepo();
    plant(dir, ["elsewhere@9", 4242, 0]);
    const r = call({ repos: [dir], json: true });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.host_id).toBe(HOST);
    expect(j.repositories).toHaveLength(1);
    const repo = j.repositories[0];
    expect(repo).toMatchObject({ repository: dir, lock_path: join(dir, "lock"), locked: true, action: "broken", error: null });
    expect(repo.holders).toEqual([
      {
        name: "elsewhere@9.4242-0",
        host: "elsewhere@9",
        pid: 4242,
        thread: 0,
        roles: ["lock.exclusive", "roster:exclusive"],
        started: null,
        state: "other-host",
        reason: expect.stringContaining("another host ID"),
        recorded: false,
      },
    ]);
    expect(readdirSync(dir)).toEqual(["config"]);
  });

  test("--show only shows", () => {
    const dir = fakeRepo();
    plant(dir, [HOST, deadPid(), 0]);
    const r = call({ repos: [dir], show: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(": dead (no such process)");
    expect(readdirSync(dir).sort()).toEqual(["config", "lock.exclusive", "lock.roster"]);
  });

  test("missing repositories and non-repositories are errors; the others are still handled", () => {
    const dir = fakeRepo();
    plant(dir, ["elsewhere@9", 1, 0]);
    const notRepo = lockTempDir();
    const r = call({ repos: [join(notRepo, "missing"), notRepo, dir] });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`Repository ${join(notRepo, "missing")} does not exist.`);
    expect(r.stderr).toContain(`${notRepo} is not a valid repository.`);
    expect(readdirSync(dir)).toEqual(["config"]);
  });
});
