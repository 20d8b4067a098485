// `borg break-lock` through `burg serve` cannot hurt a live writer: whatever the permissions,
// a lock held by a live process on this host (here: another burg serve in the middle of
// `borg with-lock`) stays, and the client is told who holds it. Restricted clients
// (no-delete, write-only, read-only) remove nothing but locks whose holders are known to be
// dead; with all permissions, a lock of another host is broken as borg breaks it.

import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { BURG, borgEnv, requireBorg, requireBurg, run } from "../support/env.ts";
import { fakeSsh, remoteBorg } from "../support/fake-ssh.ts";
import { killBorg } from "../support/locks.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
const HOST = "burg-break-lock-test@1";

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

function setup() {
  requireBurg();
  const dir = scope.tempDir("burg-breaklock-");
  const home = join(dir, "home");
  mkdirSync(home);
  const repo = join(dir, "repo");
  const env = borgEnv(home, { BORG_HOST_ID: HOST });
  expect(run([requireBorg(), "init", "-e", "none", repo], { env }).code).toBe(0);
  const rsh = fakeSsh(dir);
  const client = (permissions: string) => remoteBorg(home, rsh, BURG).run(["break-lock", `ssh://fakehost${repo}`], {
    env: { BORG_HOST_ID: HOST, BORG_REPO_PERMISSIONS: permissions },
  });
  return { dir, home, repo, env, rsh, client };
}

/** `borg with-lock REPO sleep N` with the lock taken by `where`; resolves once it is held. */
async function holdLock(
  s: ReturnType<typeof setup>,
  where: "burg serve" | "local borg",
  hostId = HOST,
): Promise<Subprocess<"ignore", "pipe", "pipe">> {
  const url = where === "burg serve" ? `ssh://fakehost${s.repo}` : s.repo;
  const proc = scope.track(
    Bun.spawn([requireBorg(), "with-lock", url, "sleep", "30"], {
      env: borgEnv(s.home, { BORG_RSH: s.rsh, BORG_REMOTE_PATH: BURG, BORG_HOST_ID: hostId }),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  await until(() => existsSync(join(s.repo, "lock.exclusive")) || proc.exitCode !== null, "the lock");
  await until(() => run(["pgrep", "-f", `sleep 30`]).code === 0, "with-lock's command");
  return proc;
}

describe("break_lock through burg serve", () => {
  test("a live writer's lock stays, in every permission mode; the client is told who holds it", async () => {
    const s = setup();
    const writer = await holdLock(s, "burg serve");
    for (const mode of ["all", "no-delete", "write-only", "read-only"]) {
      const r = await s.client(mode);
      expect({ mode, code: r.code }).toEqual({ mode, code: 2 });
      expect(r.stderr).toContain(`Not breaking the lock ${join(s.repo, "lock")}: a live process on this host holds it`);
      expect(r.stderr).toMatch(new RegExp(`host ${HOST} \\(this host\\) pid \\d+ thread \\d+ \\[lock\\.exclusive, roster:exclusive\\].*: alive`));
      expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(true);
    }
    writer.kill("SIGTERM");
    await writer.exited;
    expect(run([requireBorg(), "check", s.repo], { env: s.env }).code).toBe(0);
  }, 120_000);

  test("restricted clients break only a dead holder's lock; all permissions also another host's", async () => {
    const s = setup();
    // a holder of this host that died (its lock left behind)
    await killBorg(await holdLock(s, "local borg"));
    expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(true);
    const dead = await s.client("no-delete");
    expect({ code: dead.code, stderr: dead.stderr }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(false);

    // a holder of another host: this host cannot tell whether it is alive
    await killBorg(await holdLock(s, "local borg", "elsewhere@2"));
    for (const mode of ["no-delete", "write-only", "read-only"]) {
      const r = await s.client(mode);
      expect({ mode, code: r.code }).toEqual({ mode, code: 2 });
      expect(r.stderr).toContain("this client may only break locks of holders that are known to be dead");
      expect(r.stderr).toContain("host elsewhere@2 pid");
      expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(true);
    }
    const all = await s.client("all");
    expect({ code: all.code, stderr: all.stderr }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(s.repo, "lock.exclusive"))).toBe(false);
    expect(run([requireBorg(), "check", s.repo], { env: s.env }).code).toBe(0);
  }, 120_000);
});
