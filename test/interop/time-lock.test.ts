// Time-locked deletes with the real borg client: archives made through `burg serve
// --keep-deleted`, then an attack by the client (delete every archive and compact; prune to one
// archive; overwrite objects with garbage through raw RPC puts; an attack followed by a
// legitimate backup), then `burg undelete --since` a time before the attack and the one
// documented owner step (`borg check --repair`): every archive is listed, extracts
// byte-identical, and `borg check --verify-data` passes.

import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { BURG, killAndReap, runAsync } from "../support/env.ts";
import { forcedSsh, remoteBorg, type RemoteBorg } from "../support/fake-ssh.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { connectRsh, startBurgSocket, waitUntil } from "../support/socket-server.ts";
import { lastSegment, segmentBytes, segmentSizes } from "../support/repo-contents.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

// burg and plain borg agree on the host ID, so each sees the other's dead processes' locks as stale.
const HOST_ID = "timelock-test@123456789";
const HOST_ENV = { ...(process.env as Record<string, string>), BORG_HOST_ID: HOST_ID };
const REPAIR = { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES", BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: "YES" };

interface Setup {
  dir: string;
  repo: string;
  borg: RemoteBorg;
  /** The owner's own access for the repair step (no --append-only: borg refuses repairs there). */
  owner: RemoteBorg;
  cwd: string;
  /** archive name -> directory (relative to cwd) with what it holds */
  archives: Map<string, string>;
  ok(args: string[], env?: Record<string, string>): Promise<{ stdout: string; stderr: string }>;
}

/**
 * A repository with archives a1..a3, made through `burg serve ${opts.before ?? serveArgs}`;
 * the Setup's client then talks to `burg serve ${serveArgs}`.
 */
async function setup(serveArgs: string, opts: { before?: string } = {}): Promise<Setup> {
  const dir = scope.tempDir("burg-timelock-");
  const home = join(dir, "home");
  mkdirSync(home);
  const cwd = join(dir, "data");
  const repo = join(dir, "repo");
  const borg = remoteBorg(home, forcedSsh(dir, `BORG_HOST_ID=${HOST_ID} ${BURG} serve ${serveArgs}`));
  const first = opts.before === undefined ? borg : remoteBorg(home, forcedSsh(dir, `BORG_HOST_ID=${HOST_ID} ${BURG} serve ${opts.before}`, "before-ssh"));
  const owner = remoteBorg(home, forcedSsh(dir, `BORG_HOST_ID=${HOST_ID} ${BURG} serve --keep-deleted 1h`, "owner-ssh"));
  const ok = async (args: string[], env: Record<string, string> = {}) => {
    const r = await s.borg.run(args, { cwd, env });
    expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: expect.any(String) });
    return r;
  };
  const s: Setup = { dir, repo, borg: first, owner, cwd, archives: new Map(), ok };
  makeSourceTree(join(cwd, "common"), { seed: 1, files: 200, totalBytes: 4_000_000 });
  await ok(["init", "-e", "repokey", borg.url(repo)]);
  for (let i = 1; i <= 3; i++) await backup(s, `a${i}`, i);
  s.borg = borg;
  return s;
}

/** An archive of a snapshot directory: the common files plus some of its own. */
async function backup(s: Setup, name: string, seed: number): Promise<void> {
  const snap = `snap-${name}`;
  cpSync(join(s.cwd, "common"), join(s.cwd, snap, "common"), { recursive: true });
  makeSourceTree(join(s.cwd, snap, "own"), { seed: 100 + seed, files: 40, totalBytes: 1_500_000 });
  writeFileSync(join(s.cwd, snap, "name.txt"), name);
  await s.ok(["create", s.borg.url(s.repo, name), snap]);
  s.archives.set(name, snap);
}

async function burg(...args: string[]) {
  return runAsync([BURG, ...args], { env: HOST_ENV });
}

/** The owner's way back: undelete on the server, `borg check --repair` on the client, then every archive checked. */
async function recoverAndVerify(s: Setup, since: string, expected: string[], opts: { mayBeDone?: boolean } = {}): Promise<void> {
  const dry = await burg("undelete", s.repo, "--since", since, "--dry-run", "--json");
  expect(dry.code).toBe(0);
  const plan = JSON.parse(dry.stdout);
  expect(plan.dry_run).toBe(true);
  if (!opts.mayBeDone) {
    expect(plan.sessions.length).toBeGreaterThan(0);
    expect(plan.restored_objects).toBeGreaterThan(0);
  }
  const r = await burg("undelete", s.repo, "--since", since, "--json");
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
  const done = JSON.parse(r.stdout);
  expect(done.restored_objects).toBe(plan.restored_objects);
  // repeated, it finds everything in place
  const again = JSON.parse((await burg("undelete", s.repo, "--since", since, "--json")).stdout);
  expect(again.restored_objects).toBe(0);
  expect(again.manifest_removed).toBe(false);
  // an undelete killed after its commit may have removed the manifest already: this one says so
  expect(again.manifest_missing).toBe(done.manifest_missing);
  if (done.manifest_removed) expect(done.manifest_missing).toBe(true);
  if (done.manifest_missing) {
    expect(done.next_step).toBe(`borg check --repair ${s.repo}`);
    const repair = await s.owner.run(["check", "--repair", s.borg.url(s.repo)], { cwd: s.cwd, env: REPAIR });
    expect({ code: repair.code, stderr: repair.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
  }
  const listed = (await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim().split("\n").filter(Boolean).sort();
  expect(listed).toEqual([...expected].sort());
  for (const name of expected) {
    const out = join(s.dir, "extract", name);
    mkdirSync(out, { recursive: true });
    const x = await s.borg.run(["extract", s.borg.url(s.repo, name)], { cwd: out });
    expect({ name, code: x.code, stderr: x.stderr }).toEqual({ name, code: 0, stderr: "" });
    const snap = s.archives.get(name)!;
    assertSameTree(join(s.cwd, snap), join(out, snap));
    rmSync(out, { recursive: true });
  }
  await s.ok(["check", "--verify-data", s.borg.url(s.repo)]);
  // plain borg on the server agrees
  await plainCheck(s.repo);
}

async function beforeAttack(): Promise<string> {
  const t = new Date().toISOString();
  await Bun.sleep(1100);
  return t;
}

describe("time-locked deletes (--keep-deleted)", () => {
  test(
    "delete every archive and compact: undelete and check --repair bring every archive back",
    async () => {
      const s = await setup("--keep-deleted 1h");
      const t = await beforeAttack();
      await s.ok(["delete", "--glob-archives", "*", s.borg.url(s.repo)], REPAIR);
      await s.ok(["compact", s.borg.url(s.repo)]);
      expect((await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim()).toBe("");
      // the client's delete and compact succeeded; the server still has the data
      const status = JSON.parse((await burg("status", "--json", s.repo)).stdout);
      expect(status.held.bytes).toBeGreaterThan(4_000_000);
      await recoverAndVerify(s, t, ["a1", "a2", "a3"]);
    },
    300_000,
  );

  test(
    "archives made before the time lock was used; prune --keep-last 1 and compact, then a legitimate backup: all four archives after the undelete",
    async () => {
      // a1..a3 through a plain burg serve: the time lock covers what is deleted from now on
      const s = await setup("--keep-deleted 1h", { before: "" });
      const t = await beforeAttack();
      const segmentsBefore = segmentBytes(s.repo);
      await s.ok(["prune", "--keep-last", "1", s.borg.url(s.repo)]);
      await s.ok(["compact", s.borg.url(s.repo)]);
      // what compaction would have dropped is held, and nothing left the segments
      const held = JSON.parse((await burg("status", "--json", s.repo)).stdout).held.bytes as number;
      expect(held).toBeGreaterThan(1_000_000); // a1's and a2's own files, 3 MB, about half compressed
      expect(segmentBytes(s.repo)).toBeGreaterThanOrEqual(segmentsBefore - 200_000);
      await backup(s, "after", 9);
      expect((await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim().split("\n").sort()).toEqual(["a3", "after"]);
      await recoverAndVerify(s, t, ["a1", "a2", "a3", "after"]);
    },
    300_000,
  );

  test(
    "objects overwritten with garbage through raw RPC puts come back as they were",
    async () => {
      const s = await setup("--keep-deleted 1h");
      const t = await beforeAttack();
      const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: join(s.dir, "home") };
      const c = new RpcClient([BURG, "serve", "--keep-deleted", "1h"], env);
      await c.negotiate();
      await c.open(s.repo);
      const ids = (await c.call("list", { limit: 100000, marker: null })) as Uint8Array[];
      expect(ids.length).toBeGreaterThan(100);
      await c.pipeline(
        "put",
        ids.map((id, i) => ({ id, data: new TextEncoder().encode(`garbage ${i}`) })),
      );
      await c.call("commit", { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false });
      await c.close();
      // every object is garbage now, the manifest included
      const broken = await s.borg.run(["list", s.borg.url(s.repo)], { cwd: s.cwd });
      expect(broken.code).not.toBe(0);
      await recoverAndVerify(s, t, ["a1", "a2", "a3"]);
    },
    300_000,
  );

  test(
    "with --append-only and with --permissions no-delete each keeps its meaning",
    async () => {
      const s = await setup("--keep-deleted 1h --append-only");
      const before = segmentSizes(s.repo);
      // append-only: the delete works, compaction is off, so nothing leaves the segments
      await s.ok(["delete", s.borg.url(s.repo, "a1")], REPAIR);
      await s.ok(["compact", s.borg.url(s.repo)]);
      const after = segmentSizes(s.repo);
      for (const [f, size] of before) expect({ f, size: after.get(f) }).toEqual({ f, size });
      expect((await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim().split("\n")).toEqual(["a2", "a3"]);
      // no-delete: deletes are refused as ever
      const nodelete = remoteBorg(join(s.dir, "home"), forcedSsh(s.dir, `BORG_HOST_ID=${HOST_ID} ${BURG} serve --keep-deleted 1h --permissions no-delete`, "nodelete-ssh"));
      const del = await nodelete.run(["delete", nodelete.url(s.repo, "a2")], { cwd: s.cwd, env: REPAIR });
      expect(del.code).toBe(2);
      expect(del.stderr).toContain("Permission denied");
      expect((await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim().split("\n")).toEqual(["a2", "a3"]);
      await plainCheck(s.repo);
    },
    300_000,
  );

  test(
    "recreate works under the time lock and what it dropped is held; destroy is refused; the manifests the creates replaced are held",
    async () => {
      const s = await setup("--keep-deleted 1h");
      const heldBefore = JSON.parse((await burg("status", "--json", s.repo)).stdout).held.bytes as number;
      // recreate a1 without its own files: exit 0, the list unchanged, the dropped chunks held
      await s.ok(["recreate", "--exclude", "snap-a1/own", s.borg.url(s.repo, "a1")]);
      await s.ok(["compact", s.borg.url(s.repo)]);
      const out = join(s.dir, "x-a1");
      mkdirSync(out);
      await s.borg.run(["extract", s.borg.url(s.repo, "a1")], { cwd: out });
      expect(readdirSync(join(out, "snap-a1")).sort()).toEqual(["common", "name.txt"]);
      const heldAfter = JSON.parse((await burg("status", "--json", s.repo)).stdout).held.bytes as number;
      expect(heldAfter - heldBefore).toBeGreaterThan(500_000); // a1's own files, 1.5 MB, about half compressed
      const destroy = await s.borg.run(["delete", s.borg.url(s.repo)], { cwd: s.cwd, env: REPAIR });
      expect(destroy.code).toBe(2);
      expect(destroy.stderr).toContain("time lock");
      const listed = (await s.ok(["list", "--short", s.borg.url(s.repo)])).stdout.trim().split("\n");
      expect(listed).toEqual(["a1", "a2", "a3"]);
      const status = JSON.parse((await burg("status", "--json", s.repo)).stdout);
      expect(status.held.objects).toBeGreaterThan(0); // the manifests the creates replaced
    },
    300_000,
  );

  test(
    "a burg serve killed during the attack, and killed undeletes: plain borg accepts the repository each time, the undelete repeats",
    async () => {
      const s = await setup("--keep-deleted 1h --client-name kill-me");
      // killed once the attack's session holds the lock, and once its transaction has started
      // writing (a segment beyond the last committed one exists)
      for (const when of ["locked", "writing"] as const) {
        const t = await beforeAttack();
        const last = lastSegment(s.repo);
        const attack = s.borg.run(["delete", "--glob-archives", "*", s.borg.url(s.repo)], { cwd: s.cwd, env: REPAIR });
        // polled every 2 ms: the delete's transaction writes for a moment only
        await waitUntil(() => (when === "locked" ? existsSync(join(s.repo, "lock.exclusive")) : lastSegment(s.repo) > last), `the attack ${when}`, 60_000, 2);
        expect(await killAndReap("serve --keep-deleted 1h --client-name kill-me")).not.toEqual([]);
        // the client lost its server in the middle of the delete
        expect((await attack).code).not.toBe(0);
        await plainCheck(s.repo);
        await recoverAndVerify(s, t, ["a1", "a2", "a3"], { mayBeDone: true });
      }
      // killed undeletes after a complete attack
      const t = await beforeAttack();
      await s.ok(["delete", "--glob-archives", "*", s.borg.url(s.repo)], REPAIR);
      await s.ok(["compact", s.borg.url(s.repo)]);
      for (const delay of [20, 60, 120]) {
        const p = Bun.spawn([BURG, "undelete", s.repo, "--since", t], { stdout: "ignore", stderr: "ignore", env: HOST_ENV });
        scope.track(p);
        await Bun.sleep(delay);
        p.kill("SIGKILL");
        await p.exited;
        await plainCheck(s.repo);
      }
      await recoverAndVerify(s, t, ["a1", "a2", "a3"], { mayBeDone: true });
    },
    600_000,
  );

  test(
    "daily create, prune and compact: the size levels off at what borg's compact keeps plus what was deleted within the time lock",
    async () => {
      const keep = 6; // seconds: about two simulated days
      const s = await setup(`--keep-deleted ${keep}s`);
      const start = Date.now() - 30 * 86400_000;
      const sizes: number[] = [];
      for (let day = 0; day < 14; day++) {
        // each day: 1 MB of new data, kept by prune for 3 days, then deleted
        rmSync(join(s.cwd, "daily"), { recursive: true, force: true });
        makeSourceTree(join(s.cwd, "daily"), { seed: 1000 + day, files: 10, totalBytes: 1_000_000 });
        const ts = new Date(start + day * 86400_000).toISOString().slice(0, 19);
        await s.ok(["create", "--timestamp", ts, s.borg.url(s.repo, `day-${day}`), "daily", "common"]);
        await s.ok(["prune", "--keep-daily", "3", "--glob-archives", "day-*", s.borg.url(s.repo)]);
        await s.ok(["compact", s.borg.url(s.repo)]);
        sizes.push(segmentBytes(s.repo));
      }
      const status = JSON.parse((await burg("status", "--json", s.repo)).stdout);
      const held = status.held.bytes as number;
      // what borg's own compact would keep: a copy compacted by plain borg
      const copy = join(s.dir, "copy");
      cpSync(s.repo, copy, { recursive: true });
      const plain = await runAsync(["borg", "compact", copy], { env: { ...process.env, BORG_PASSPHRASE: "" } as Record<string, string> });
      expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: "" });
      const borgKeeps = segmentBytes(copy);
      const now = sizes.at(-1)!;
      // held data is about two days' deletes (1 MB each, plus the manifests), not all of them
      expect(held).toBeGreaterThan(500_000);
      expect(held).toBeLessThan(5_000_000);
      expect(now).toBeGreaterThanOrEqual(borgKeeps);
      expect(now).toBeLessThanOrEqual(borgKeeps + held + 1_500_000);
      // levelled off: the last days do not keep growing (14 days of 1 MB would be 14 MB more)
      const tail = sizes.slice(-5);
      expect(Math.max(...tail) - Math.min(...tail)).toBeLessThan(3_500_000);
      expect(now).toBeLessThan(sizes[0]! + 8_000_000);
    },
    600_000,
  );

  test(
    "held data counts against the quota and the client is told; burg compact frees it when the time is up; burg config sets the repository's own time lock",
    async () => {
      const s = await setup("--keep-deleted 5s --storage-quota 12M");
      await s.ok(["delete", s.borg.url(s.repo, "a1")]);
      await s.ok(["delete", s.borg.url(s.repo, "a2")]);
      await s.ok(["compact", s.borg.url(s.repo)]);
      // about 8 MB stored (the test data compresses to half): over the quota only because of what is held
      makeSourceTree(join(s.cwd, "big"), { seed: 77, files: 40, totalBytes: 16_000_000 });
      const over = await s.borg.run(["create", s.borg.url(s.repo, "big"), "big"], { cwd: s.cwd });
      expect(over.code).toBe(2);
      expect(over.stderr).toContain("The storage quota (12.00 MB) has been exceeded");
      expect(over.stderr).toContain("is deleted data the server keeps until");
      expect(over.stderr).toContain("time lock, --keep-deleted");
      await Bun.sleep(5200);
      // the time is up: burg compact on the server frees it
      const compact = await burg("compact", "--json", s.repo);
      expect({ code: compact.code, stderr: compact.stderr }).toEqual({ code: 0, stderr: "" });
      const freed = JSON.parse(compact.stdout);
      expect(freed.freed_bytes).toBeGreaterThan(1_000_000);
      expect(freed.held_objects).toBe(0);
      await s.ok(["create", s.borg.url(s.repo, "big"), "big"]);
      s.archives.set("big", "big");

      // the repository's own setting outlasts the command line's 5 s
      expect((await burg("config", s.repo, "keep_deleted", "2h")).code).toBe(0);
      expect((await burg("config", s.repo, "keep_deleted")).stdout.trim()).toBe("7200");
      const t = await beforeAttack();
      await s.ok(["delete", s.borg.url(s.repo, "a3")]);
      await Bun.sleep(5200);
      await s.ok(["compact", s.borg.url(s.repo)]);
      const kept = JSON.parse((await burg("compact", "--json", s.repo)).stdout);
      expect(kept.held_bytes).toBeGreaterThan(500_000);
      expect(Date.parse(kept.held_until)).toBeGreaterThan(Date.now() + 3600_000);
      const status = await burg("status", s.repo);
      expect(status.stdout).toMatch(/Held \(time lock\): +\d/);
      expect(status.stdout).toContain("repository keep_deleted 2:00:00");
      await recoverAndVerify(s, t, ["a3", "big"]);
      // the journal has each undelete that changed something and each burg compact
      const log = (await burg("log", "--json", s.repo)).stdout.trim().split("\n").map((l) => JSON.parse(l));
      expect(log.filter((r: any) => r.command === "undelete" && r.outcome === "committed").length).toBe(1);
      expect(log.filter((r: any) => r.command === "compact").length).toBe(2);
    },
    300_000,
  );

  test(
    "burg socket --keep-deleted holds what its clients delete",
    async () => {
      const dir = scope.tempDir("burg-timelock-socket-");
      const sock = join(dir, "burg.sock");
      await startBurgSocket(scope, ["--socket", sock, "--keep-deleted", "1h"], { env: HOST_ENV });
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      makeSourceTree(join(cwd, "src"), { seed: 3, files: 50, totalBytes: 2_000_000 });
      const borg = remoteBorg(home, connectRsh(sock));
      const repo = join(dir, "repo");
      for (const args of [["init", "-e", "repokey", borg.url(repo)], ["create", borg.url(repo, "a"), "src"]]) {
        expect((await borg.run(args, { cwd })).code).toBe(0);
      }
      const t = await beforeAttack();
      expect((await borg.run(["delete", "--glob-archives", "*", borg.url(repo)], { cwd })).code).toBe(0);
      expect((await borg.run(["compact", borg.url(repo)], { cwd })).code).toBe(0);
      const status = JSON.parse((await burg("status", "--json", repo)).stdout);
      expect(status.held.bytes).toBeGreaterThan(800_000); // 2 MB of test data compresses to half
      const r = JSON.parse((await burg("undelete", repo, "--since", t, "--json")).stdout);
      expect(r.manifest_removed).toBe(true);
      const repair = await borg.run(["check", "--repair", borg.url(repo)], { cwd, env: REPAIR });
      expect(repair.code).toBe(0);
      expect((await borg.run(["list", "--short", borg.url(repo)], { cwd })).stdout.trim()).toBe("a");
      await plainCheck(repo);
    },
    300_000,
  );
});

async function plainCheck(repo: string): Promise<void> {
  const r = await runAsync(["borg", "check", "--repository-only", repo], { env: HOST_ENV });
  // after a kill, borg removes the dead process's lock (same host ID) and says so
  const stderr = r.stderr.split("\n").filter((l) => l !== "" && !/^(Killed stale lock|Removed stale .* roster lock)/.test(l));
  expect({ code: r.code, stderr }).toEqual({ code: 0, stderr: [] });
}
