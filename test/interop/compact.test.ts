// `burg compact` on the server, with the real borg client making and deleting the archives:
// several repositories in one run, its own --keep-deleted holding what was deleted within it,
// progress lines, and, once the time lock has run out, the same repository that plain
// `borg compact` leaves on an identical copy.

import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { borgObjectIds } from "../support/borg-python.ts";
import { makeSourceTree } from "../support/data.ts";
import { BURG, runAsync } from "../support/env.ts";
import { forcedSsh, remoteBorg } from "../support/fake-ssh.ts";
import { borgInit, borgWithLock } from "../support/locks.ts";
import { segmentBytes } from "../support/repo-contents.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const HOST_ENV = { ...(process.env as Record<string, string>), BORG_HOST_ID: "compact-test@123456789" };
// Long enough for the client's deletes in both repositories and the first burg compact on a
// slow machine; the test waits for it to run out once.
const LOCK_SECONDS = 10;

describe("burg compact", () => {
  test(
    "several repositories in one run; its --keep-deleted holds; progress; once the lock runs out it leaves what borg compact leaves",
    async () => {
      const dir = scope.tempDir("burg-compact-");
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      mkdirSync(cwd);
      const borg = remoteBorg(home, forcedSsh(dir, `BORG_HOST_ID=${HOST_ENV.BORG_HOST_ID} ${BURG} serve --keep-deleted ${LOCK_SECONDS}s`));
      const ok = async (args: string[]) => {
        const r = await borg.run(args, { cwd, env: { BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: "YES" } });
        expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: "" });
      };
      const repos = [join(dir, "one"), join(dir, "two")];
      for (const [i, repo] of repos.entries()) {
        await ok(["init", "-e", "none", borg.url(repo)]);
        for (const n of [1, 2, 3]) {
          makeSourceTree(join(cwd, `r${i}-a${n}`), { seed: 10 * i + n, files: 20, totalBytes: 1_000_000 });
          await ok(["create", borg.url(repo, `a${n}`), `r${i}-a${n}`]);
        }
      }
      const deleteStart = Date.now();
      await Promise.all(
        repos.map(async (repo) => {
          await ok(["delete", borg.url(repo, "a1")]);
          await ok(["delete", borg.url(repo, "a2")]);
          await ok(["compact", borg.url(repo)]);
        }),
      );
      const deletedAt = Date.now();

      // right after the deletes: both repositories in one run, everything deleted is held
      const first = await runAsync([BURG, "compact", "--json", ...repos], { env: HOST_ENV });
      expect({ code: first.code, stderr: first.stderr }).toEqual({ code: 0, stderr: "" });
      const results = JSON.parse(first.stdout);
      expect(results.map((r: { repository: string }) => r.repository)).toEqual(repos);
      for (const r of results) {
        expect(r.error).toBeNull();
        expect(r.held_bytes).toBeGreaterThan(800_000); // two archives' own files (2 MB), about half compressed
        expect(Date.parse(r.held_until)).toBeGreaterThanOrEqual(deleteStart + LOCK_SECONDS * 1000);
      }

      const twoAfterFirst = segmentBytes(repos[1]!);

      // past the sessions' own lock, burg compact's --keep-deleted still holds it
      await Bun.sleep(Math.max(0, deletedAt + LOCK_SECONDS * 1000 + 500 - Date.now()));
      const before = segmentBytes(repos[0]!);
      const locked = await runAsync([BURG, "compact", "--json", "--keep-deleted", "1h", repos[0]!], { env: HOST_ENV });
      expect(locked.code).toBe(0);
      const l = JSON.parse(locked.stdout);
      expect(l.freed_bytes).toBe(0);
      expect(l.held_bytes).toBe(results[0].held_bytes);
      expect(Date.parse(l.held_until)).toBeGreaterThan(Date.now() + 3500_000);
      expect(segmentBytes(repos[0]!)).toBeGreaterThanOrEqual(before);

      // the lock has run out: an identical copy compacted by plain borg is the reference
      const copy = join(dir, "copy");
      cpSync(repos[0]!, copy, { recursive: true });
      const plain = await runAsync(["borg", "compact", copy], { env: HOST_ENV });
      expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: "" });
      const freeing = await runAsync([BURG, "compact", "--progress", repos[0]!], { env: HOST_ENV });
      expect(freeing.code).toBe(0);
      const progress = freeing.stderr.split("\n").filter((line) => line.startsWith("Compacting"));
      expect(progress.length).toBeGreaterThanOrEqual(1);
      expect(progress.at(-1)).toContain("100.0%");
      expect(freeing.stderr).toMatch(/: freed [\d.]+ [kM]B \(\d+ segments compacted\)\n$/);
      const burgKeeps = segmentBytes(repos[0]!);
      const borgKeeps = segmentBytes(copy);
      expect(burgKeeps).toBeLessThan(before - 800_000);
      // the same live entries; segment files differ only by their commits and magic
      expect(Math.abs(burgKeeps - borgKeeps)).toBeLessThan(4096);
      expect(borgObjectIds(repos[0]!).sort()).toEqual(borgObjectIds(copy).sort());
      for (const repo of [repos[0]!, copy]) {
        const check = await runAsync(["borg", "check", repo], { env: HOST_ENV });
        expect({ repo, code: check.code, stderr: check.stderr }).toEqual({ repo, code: 0, stderr: "" });
      }
      const status = JSON.parse((await runAsync([BURG, "status", "--json", repos[0]!], { env: HOST_ENV })).stdout);
      expect(status.held.bytes).toBe(0);
      // the other repository's deletes are past the lock too, but nothing has compacted it since
      expect(segmentBytes(repos[1]!)).toBe(twoAfterFirst);
    },
    180_000,
  );

  test(
    "burg compact and burg undelete take the exclusive lock: a holder makes them wait and give up after --lock-wait, and they run once it is gone",
    async () => {
      const dir = scope.tempDir("burg-compact-lock-");
      const repo = join(dir, "repo");
      const home = join(dir, "home");
      mkdirSync(home);
      borgInit(repo, home);
      const holder = await borgWithLock(repo, home, 30, { BORG_HOST_ID: HOST_ENV.BORG_HOST_ID });
      const since = new Date(Date.now() - 3600_000).toISOString();
      for (const args of [["compact", "--lock-wait", "1", repo], ["undelete", repo, "--since", since, "--lock-wait", "1"]]) {
        const t0 = Date.now();
        const r = await runAsync([BURG, ...args], { env: HOST_ENV });
        expect({ args, code: r.code }).toEqual({ args, code: 2 });
        expect(r.stderr).toMatch(/[Ll]ock/);
        expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
      }
      // a dry run reads without the lock
      expect((await runAsync([BURG, "undelete", repo, "--since", since, "--dry-run"], { env: HOST_ENV })).code).toBe(0);
      holder.kill("SIGTERM");
      await holder.exited;
      for (const args of [["compact", repo], ["undelete", repo, "--since", since]]) {
        const r = await runAsync([BURG, ...args], { env: HOST_ENV });
        expect({ args, code: r.code }).toEqual({ args, code: 0 });
      }
    },
    60_000,
  );
});
