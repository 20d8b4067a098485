// A full disk, with the real borg client through `burg serve` on a small ext4 file system the
// test mounts itself: a create that fills the disk fails with a clear message, removes what it
// wrote and releases its lock; on a disk full to the last block the lock is still taken (the
// space reserve) and the failure is just as clean; once space is freed the next create succeeds
// with no manual step. Also a commit refused by borg's free-space check, `burg check --repair`
// running out of space, the storage quota exactly at its boundary, and (in the engine) running
// out of space after the COMMIT, in compaction and in the index. Plain borg checks the
// repository after each.

import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DiskFull } from "../../src/errors.ts";
import { readJournal } from "../../src/journal/journal.ts";
import { localUser, SessionRecorder } from "../../src/journal/recorder.ts";
import { Repository } from "../../src/repository/repository.ts";
import { Logger } from "../../src/util/log.ts";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { biggestDataSegment, flipBit, segmentLayout } from "../support/damage.ts";
import { BURG, borgEnv, requireBorg, run, runAsync } from "../support/env.ts";
import { fakeSsh, remoteBorg, type RemoteBorg } from "../support/fake-ssh.ts";
import { captureLog } from "../support/locks.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { testScope } from "../support/scope.ts";
import { mountSmallFs, smallFsRequired, smallFsUnavailable, type SmallFs } from "../support/small-fs.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const canMount = smallFsRequired();
if (!canMount) console.warn(`disk-full tests skipped: ${smallFsUnavailable()}`);

interface Setup {
  fs: SmallFs;
  home: string;
  /** where the client's source trees are (not on the small file system) */
  cwd: string;
  repo: string;
  borg: RemoteBorg;
  create(name: string, path: string): Promise<{ code: number; stderr: string }>;
  plainCheck(): void;
}

async function setup(sizeMiB: number): Promise<Setup> {
  const fs = mountSmallFs(sizeMiB);
  scope.onCleanup(() => fs.unmount());
  const home = scope.tempDir("burg-diskfull-");
  const cwd = join(home, "src");
  mkdirSync(cwd);
  const repo = join(fs.dir, "repo");
  const borg = remoteBorg(home, fakeSsh(home));
  const init = await borg.run(["init", "-e", "none", borg.url(repo)]);
  expect(init.code).toBe(0);
  // Segments of 8 MiB, so that borg's free-space check before a commit (which keeps room for a
  // whole segment of compaction) fits a small file system.
  expect(run([requireBorg(), "config", repo, "max_segment_size", String(8 << 20)], { env: borgEnv(home) }).code).toBe(0);
  return {
    fs,
    home,
    cwd,
    repo,
    borg,
    create: (name, path) => borg.run(["create", borg.url(repo, name), path], { cwd }),
    plainCheck: () => {
      const r = run([requireBorg(), "check", repo], { env: borgEnv(home) });
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    },
  };
}

function segmentFiles(repo: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(join(repo, "data"))) for (const f of readdirSync(join(repo, "data", d))) out.push(`${d}/${f}`);
  return out.sort();
}

/** Nothing of a failed session is left: no lock, no temporary files, the same segments. */
function expectCleanState(repo: string, segments: string[]): void {
  expect(segmentFiles(repo)).toEqual(segments);
  expect(existsSync(join(repo, "lock.exclusive"))).toBe(false);
  expect(existsSync(join(repo, "lock.roster"))).toBe(false);
  expect(readdirSync(repo).filter((n) => n.endsWith(".tmp"))).toEqual([]);
}

function expectDiskFullMessage(r: { code: number; stderr: string }, during: string): void {
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(`No space left on device in repository`);
  expect(r.stderr).toContain(`(during ${during})`);
  expect(r.stderr).toContain("so the repository is at its last commit");
  expect(r.stderr).not.toContain("internal error");
  expect(r.stderr).not.toContain("Traceback");
}

async function extractsAs(s: Setup, archive: string, path: string): Promise<void> {
  const out = join(s.home, `extract-${archive}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(out);
  const r = await s.borg.run(["extract", s.borg.url(s.repo, archive)], { cwd: out });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  assertSameTree(join(s.cwd, path), join(out, path));
}

function randomFile(path: string, mib: number): void {
  mkdirSync(join(path, ".."), { recursive: true });
  expect(run(["sh", "-c", `head -c ${mib}M /dev/urandom > "$1"`, "sh", path]).code).toBe(0);
}

describe.skipIf(!canMount)("a full disk, through burg serve", () => {
  test(
    "a create that fills the disk fails clearly, removes what it wrote and unlocks; a disk full to the last block too; then the next create succeeds",
    async () => {
      const s = await setup(256);
      makeSourceTree(join(s.cwd, "a1"), { seed: 1, files: 60, totalBytes: 16 << 20 });
      expect((await s.create("a1", "a1")).code).toBe(0);
      const committed = segmentFiles(s.repo);
      expect(existsSync(join(s.repo, "burg", "reserve"))).toBe(true);
      const freeBefore = s.fs.free();

      // More than the file system holds: the create fills it and fails.
      randomFile(join(s.cwd, "big", "file"), 400);
      const full = await s.create("a2", "big");
      expectDiskFullMessage(full, "put");
      expectCleanState(s.repo, committed);
      // what the failed create wrote was given back (the reserve is written again as well)
      expect(s.fs.free()).toBeGreaterThan(freeBefore - (2 << 20));
      expect(existsSync(join(s.repo, "burg", "reserve"))).toBe(true);
      s.plainCheck();
      await extractsAs(s, "a1", "a1");

      // A disk full to the last block (by something else): the lock can only be taken with
      // the space the reserve gives back, and the create fails as cleanly.
      makeSourceTree(join(s.cwd, "a3"), { seed: 3, files: 30, totalBytes: 4 << 20 });
      s.fs.fill();
      const fuller = await s.create("a3", "a3");
      expectDiskFullMessage(fuller, "put");
      expect(fuller.stderr).toContain("using the space reserve (burg/reserve)");
      expectCleanState(s.repo, committed);
      // and the session journal still says what happened (its lines borrow from the reserve too)
      const log = run([BURG, "log", "--json", s.repo]).stdout.trim().split("\n").map((l) => JSON.parse(l));
      expect(log.at(-1)).toMatchObject({ outcome: "error", error: expect.stringContaining("No space left on device in repository") });
      expect(log.at(-1).end).not.toBeNull();

      // Space is freed: no break-lock, no files to delete by hand.
      s.fs.unfill();
      const again = await s.create("a3", "a3");
      expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: "" });
      const list = await s.borg.run(["list", "--short", s.borg.url(s.repo)]);
      expect(list.stdout.split("\n").filter(Boolean)).toEqual(["a1", "a3"]);
      expect(existsSync(join(s.repo, "burg", "reserve"))).toBe(true);
      s.plainCheck();
      await extractsAs(s, "a1", "a1");
      await extractsAs(s, "a3", "a3");
    },
    300_000,
  );

  test(
    "compaction on a full disk, by the client and by burg compact, again and again: refused cleanly; it runs once there is room",
    async () => {
      const s = await setup(192);
      makeSourceTree(join(s.cwd, "a1"), { seed: 41, files: 40, totalBytes: 12 << 20 });
      makeSourceTree(join(s.cwd, "a2"), { seed: 42, files: 40, totalBytes: 12 << 20 });
      expect((await s.create("a1", "a1")).code).toBe(0);
      expect((await s.create("a2", "a2")).code).toBe(0);
      expect((await s.borg.run(["delete", s.borg.url(s.repo, "a1")])).code).toBe(0);
      const before = segmentFiles(s.repo);
      s.fs.fill();
      // The disk stays full: each attempt needs the lock, and gets it from the reserve.
      for (let attempt = 0; attempt < 3; attempt++) {
        const client = await s.borg.run(["compact", s.borg.url(s.repo)]);
        expect(client.code).toBe(2);
        expect(client.stderr).toMatch(/Insufficient free space to complete transaction|No space left on device in repository/);
        expect(client.stderr).not.toContain("internal error");
        const server = run([BURG, "compact", s.repo]);
        expect(server.code).toBe(2);
        expect(server.stderr).toMatch(/Insufficient free space to complete transaction|No space left on device in repository/);
        expect(server.stderr).not.toContain("internal error");
        expectCleanState(s.repo, before);
      }
      s.fs.unfill();
      const compacted = await s.borg.run(["compact", s.borg.url(s.repo)]);
      expect({ code: compacted.code, stderr: compacted.stderr }).toEqual({ code: 0, stderr: "" });
      expect(segmentFiles(s.repo)).not.toEqual(before);
      s.plainCheck();
      await extractsAs(s, "a2", "a2");
    },
    300_000,
  );

  test(
    "a commit refused by borg's free-space check (additional_free_space) rolls back and unlocks",
    async () => {
      const s = await setup(128);
      makeSourceTree(join(s.cwd, "a1"), { seed: 11, files: 30, totalBytes: 4 << 20 });
      expect((await s.create("a1", "a1")).code).toBe(0);
      const committed = segmentFiles(s.repo);
      const env = { env: borgEnv(s.home) };
      expect(run([requireBorg(), "config", s.repo, "additional_free_space", "1G"], env).code).toBe(0);
      makeSourceTree(join(s.cwd, "a2"), { seed: 12, files: 30, totalBytes: 4 << 20 });
      const r = await s.create("a2", "a2");
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/Insufficient free space to complete transaction \(required: [\d.]+ GB, available: [\d.]+ MB\)/);
      expect(r.stderr).not.toContain("internal error");
      expectCleanState(s.repo, committed);
      s.plainCheck();
      expect(run([requireBorg(), "config", s.repo, "additional_free_space", "0"], env).code).toBe(0);
      expect((await s.create("a2", "a2")).code).toBe(0);
      await extractsAs(s, "a2", "a2");
    },
    300_000,
  );

  test(
    "burg check --repair out of space leaves the damaged segment as it was and succeeds once there is room",
    async () => {
      const s = await setup(128);
      makeSourceTree(join(s.cwd, "a1"), { seed: 21, files: 40, totalBytes: 12 << 20 });
      expect((await s.create("a1", "a1")).code).toBe(0);
      const seg = biggestDataSegment(segmentLayout(s.repo));
      const middle = seg.entries[Math.floor(seg.entries.length / 2)]!;
      flipBit(seg.path, middle.offset + 50);
      const digest = () => createHash("sha256").update(readFileSync(seg.path)).digest("hex");
      const damaged = digest();
      const segments = segmentFiles(s.repo);
      const env = { env: { ...(process.env as Record<string, string>), BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES" } };

      s.fs.fill();
      const r = run([BURG, "check", "--repair", s.repo], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("No space left on device in repository");
      expect(r.stderr).toContain("(during check --repair)");
      expect(r.stderr).not.toContain("internal error");
      expect(digest()).toBe(damaged);
      expect(segmentFiles(s.repo)).toEqual(segments);
      expect(readdirSync(join(s.repo, "data", "0")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
      expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(false);

      s.fs.unfill();
      const repaired = run([BURG, "check", "--repair", s.repo], env);
      expect(repaired.code).toBe(0);
      expect(digest()).not.toBe(damaged);
      // The repository is whole again (the damaged chunk is gone, which borg's archive check
      // would go on to report).
      const plain = run([requireBorg(), "check", "--repository-only", s.repo], { env: borgEnv(s.home) });
      expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: "" });
    },
    300_000,
  );
});

describe.skipIf(!canMount)("the session journal on a full disk", () => {
  test("its lines borrow from the space reserve, so what happened is still recorded", async () => {
    const fs = mountSmallFs(32);
    scope.onCleanup(() => fs.unmount());
    const repo = join(fs.dir, "repo");
    const r = await Repository.open(repo, { create: true, exclusive: true });
    await r.commit();
    r.close();
    expect(existsSync(join(repo, "burg", "reserve"))).toBe(true);
    expect(existsSync(join(repo, "burg", "journal.jsonl"))).toBe(false);
    fs.fill();
    const warnings: string[] = [];
    const logger = new Logger();
    logger.sink = { write: (line: string) => warnings.push(line) };
    const rec = new SessionRecorder({ command: "serve", who: localUser(), options: {}, alert: null }, logger);
    rec.opened(repo);
    rec.failed("put", new DiskFull(repo, "put", "No space left on device"));
    rec.ended({ end: "eof" });
    expect(warnings).toEqual([]);
    const lines = readJournal(repo);
    expect(lines.map((l) => l.event)).toEqual(["begin", "end"]);
    expect(lines[1]).toMatchObject({ outcome: "error", error: expect.stringContaining("No space left on device in repository") });
  });
});

describe("the storage quota at its boundary", () => {
  test("a transaction that reaches the quota exactly commits; one byte more is refused and rolled back", async () => {
    const dir = scope.tempDir("burg-quota-");
    const repo = join(dir, "repo");
    const env = borgEnv(dir);
    // Usage counts each object's data and its 41-byte PUT header (borg's storage_quota_use).
    const quota = 10_000_000; // borg's smallest
    const id = (n: number) => new Uint8Array(32).fill(n);
    const first = new RpcClient([BURG, "serve", "--storage-quota", String(quota)], env);
    await first.negotiate();
    await first.open(repo, true);
    await first.call("put", { id: id(1), data: new Uint8Array(6_000_000 - 41) });
    await first.call("put", { id: id(2), data: new Uint8Array(4_000_000 - 41) });
    await first.call("commit", {});
    await first.close();

    const second = new RpcClient([BURG, "serve", "--storage-quota", String(quota)], env);
    await second.negotiate();
    await second.open(repo);
    const over = /The storage quota \(10.00 MB\) has been exceeded \(10.00 MB\)/;
    await expect(second.call("put", { id: id(3), data: new Uint8Array(0) })).rejects.toThrow(over);
    await expect(second.call("commit", {})).rejects.toThrow(over);
    await second.close();

    const r = run([requireBorg(), "debug", "dump-hints", repo, join(dir, "hints.json")], { env });
    expect(r.code).toBe(0);
    const hints = JSON.parse(readFileSync(join(dir, "hints.json"), "utf8"));
    expect(hints.storage_quota_use).toBe(quota);
    const check = run([requireBorg(), "check", "--repository-only", repo], { env });
    expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });
  });
});

describe("the engine out of space after the COMMIT", () => {
  const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" });

  const key = (i: number) => new Uint8Array(32).map((_, j) => (j === 0 ? i : j === 1 ? 7 : 0));

  async function filled(dir: string): Promise<string> {
    const path = join(dir, "repo");
    const repo = await Repository.open(path, { create: true, exclusive: true });
    for (let i = 0; i < 200; i++) await repo.put(key(i), new Uint8Array(50_000).fill(i));
    await repo.commit();
    repo.close();
    return path;
  }


  async function expectAfterDelete(path: string, home: string): Promise<void> {
    const repo = await Repository.open(path, { exclusive: true });
    try {
      expect(await repo.len()).toBe(50);
      for (let i = 150; i < 200; i++) expect((await repo.get(key(i)))[0]).toBe(i);
    } finally {
      repo.close();
    }
    const check = run([requireBorg(), "check", "--repository-only", path], { env: borgEnv(home) });
    expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });
  }

  for (const where of ["compaction", "the index"] as const) {
    test(`in ${where}: the transaction stands, the client is told it succeeded, the next open rebuilds the index`, async () => {
      const dir = scope.tempDir("burg-enospc-");
      const path = await filled(dir);
      const repo = await Repository.open(path, { exclusive: true });
      for (let i = 0; i < 150; i++) await repo.delete(key(i));
      if (where === "compaction") {
        const io = repo.io!;
        let copies = 0;
        const original = io.copyPut.bind(io);
        io.copyPut = (...args) => {
          if (++copies === 3) throw enospc();
          return original(...args);
        };
      } else {
        repo.writeIndex = () => {
          throw enospc();
        };
      }
      const logged = captureLog();
      try {
        await repo.commit();
      } finally {
        logged.stop();
        repo.close();
      }
      expect(logged.lines.join("\n")).toMatch(/No space left on device after transaction \d+ was committed/);
      // nothing after the last COMMIT is left
      const io = (await Repository.open(path, { exclusive: true, lock: false })).io!;
      expect(io.segmentsTransactionId()).toBe(io.latestSegment());
      io.close();
      await expectAfterDelete(path, dir);
    });
  }

  test("before the COMMIT: DiskFull, the transaction rolled back, later writes refused until the client rolls back", async () => {
    const dir = scope.tempDir("burg-enospc-");
    const path = await filled(dir);
    const repo = await Repository.open(path, { exclusive: true });
    const before = repo.io!.listSegments();
    await repo.put(key(250), new Uint8Array(10).fill(1));
    const io = repo.io!;
    const original = io.writePut.bind(io);
    io.writePut = () => {
      throw enospc();
    };
    await expect(repo.put(key(251), new Uint8Array(10))).rejects.toThrow(/No space left on device in repository .* \(during put\)/);
    io.writePut = original;
    // the pipelined puts that follow are refused without writing anything
    await expect(repo.put(key(252), new Uint8Array(10))).rejects.toThrow(/during put/);
    await expect(repo.delete(key(1))).rejects.toThrow(/during put/);
    expect(io.listSegments()).toEqual(before);
    repo.rollback();
    await repo.put(key(253), new Uint8Array(10).fill(3));
    await repo.commit();
    expect(await repo.len()).toBe(201);
    expect(await repo.contains(key(250))).toBe(false);
    repo.close();
  });
});

// The command the README gives for giving held data up early must not be confused by the reserve.
test("plain borg compact and check do not mind burg/reserve", async () => {
  const dir = scope.tempDir("burg-reserve-");
  const repo = join(dir, "repo");
  const borg = remoteBorg(dir, fakeSsh(dir));
  expect((await borg.run(["init", "-e", "none", borg.url(repo)])).code).toBe(0);
  expect(existsSync(join(repo, "burg", "reserve"))).toBe(true);
  expect(readFileSync(join(repo, "burg", "reserve")).length).toBe(1 << 20);
  for (const args of [["compact", repo], ["check", repo]]) {
    const r = await runAsync([requireBorg(), ...args], { env: borgEnv(dir) });
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: "" });
  }
});
