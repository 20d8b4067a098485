// Scale tier: time-locked deletes at the sizes users have. Through `burg serve --keep-deleted`:
// an archive of 100,000 small files (100,000 unique chunks) and a second one, then the attack
// (`borg delete --glob-archives '*'`, 100,000 asynchronous deletes, and `borg compact`), then
// `burg undelete` killed part-way (plain borg accepts what it leaves) and run again to the end,
// the owner's `borg check --repair`: both archives are listed again, the big one extracts
// byte-identical, and `borg check --verify-data` and plain borg's check pass.

import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree } from "../support/data.ts";
import { BURG, runAsync } from "../support/env.ts";
import { forcedSsh, remoteBorg } from "../support/fake-ssh.ts";
import { lastSegment } from "../support/repo-contents.ts";
import { makeManySmallFiles } from "../support/scale.ts";
import { testScope } from "../support/scope.ts";

const FILES = 100_000;
const scope = testScope();
const HOST_ID = "timelock-scale@987654321";
const HOST_ENV = { ...(process.env as Record<string, string>), BORG_HOST_ID: HOST_ID };
const YES = { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES", BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: "YES" };

describe(`time-locked deletes of ${FILES.toLocaleString("en")} objects`, () => {
  test("delete every archive, compact, a killed undelete, the undelete, check --repair: every archive is back", async () => {
    const dir = scope.tempDir("burg-scale-timelock-");
    const home = join(dir, "home");
    mkdirSync(home);
    const data = join(dir, "data");
    makeManySmallFiles(join(data, "src"), FILES, 5);
    mkdirSync(join(data, "small"));
    writeFileSync(join(data, "small", "note.txt"), "a small archive\n");
    const borg = remoteBorg(home, forcedSsh(dir, `BORG_HOST_ID=${HOST_ID} ${BURG} serve --keep-deleted 1h`));
    const repo = join(dir, "repo");
    const ok = async (args: string[], env: Record<string, string> = {}, cwd = data) => {
      const r = await borg.run(args, { cwd, env });
      expect({ args, code: r.code, stderr: r.stderr.slice(-3000) }).toEqual({ args, code: 0, stderr: expect.any(String) });
      return r;
    };
    await ok(["init", "-e", "repokey", borg.url(repo)]);
    await ok(["create", borg.url(repo, "big"), "src"]);
    await ok(["create", borg.url(repo, "small"), "small"]);
    const since = new Date().toISOString();
    await Bun.sleep(1100);
    await ok(["delete", "--glob-archives", "*", borg.url(repo)], YES);
    await ok(["compact", borg.url(repo)]);
    expect((await ok(["list", "--short", borg.url(repo)])).stdout.trim()).toBe("");
    const status = JSON.parse((await runAsync([BURG, "status", "--json", repo], { env: HOST_ENV })).stdout);
    expect(status.held.objects).toBeGreaterThan(FILES);

    const plan = JSON.parse((await runAsync([BURG, "undelete", repo, "--since", since, "--dry-run", "--json"], { env: HOST_ENV })).stdout);
    expect(plan.restored_objects).toBeGreaterThan(FILES);
    // killed part-way: the repository stays at its last commit
    // (killed once its first new segment file appears: part-way through its puts, whatever the
    // machine's speed; a fixed delay let a fast machine finish first)
    const before = lastSegment(repo);
    const killed = Bun.spawn([BURG, "undelete", repo, "--since", since], { env: HOST_ENV, stdout: "ignore", stderr: "ignore" });
    scope.track(killed);
    let exited = false;
    void killed.exited.then(() => (exited = true));
    while (lastSegment(repo) === before && !exited) await Bun.sleep(2);
    killed.kill("SIGKILL");
    await killed.exited;
    expect(killed.signalCode).toBe("SIGKILL");
    const plain = await runAsync(["borg", "check", "--repository-only", repo], { env: HOST_ENV });
    expect(plain.code).toBe(0);
    const again = JSON.parse((await runAsync([BURG, "undelete", repo, "--since", since, "--dry-run", "--json"], { env: HOST_ENV })).stdout);
    expect(again.restored_objects).toBe(plan.restored_objects);

    const done = await runAsync([BURG, "undelete", repo, "--since", since, "--json"], { env: HOST_ENV });
    expect({ code: done.code, stderr: done.stderr }).toEqual({ code: 0, stderr: "" });
    const report = JSON.parse(done.stdout);
    expect(report.restored_objects).toBe(plan.restored_objects);
    expect(report.manifest_removed).toBe(true);
    await ok(["check", "--repair", borg.url(repo)], YES);
    expect((await ok(["list", "--short", borg.url(repo)])).stdout.trim().split("\n").sort()).toEqual(["big", "small"]);
    const out = join(dir, "out");
    mkdirSync(out);
    await ok(["extract", borg.url(repo, "big")], {}, out);
    assertSameTree(join(data, "src"), join(out, "src"));
    await ok(["check", "--verify-data", borg.url(repo)]);
    const final = await runAsync(["borg", "check", "--repository-only", repo], { env: HOST_ENV });
    expect({ code: final.code, stderr: final.stderr }).toEqual({ code: 0, stderr: "" });
  }, 1_500_000);
});
