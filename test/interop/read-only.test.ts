// Repositories the server cannot write: a read-only bind mount (EROFS), an immutable directory
// (chattr +i: EPERM) and files of another user (EACCES, burg run as nobody). As borg does,
// opening without a lock (`--bypass-lock`) turns a refused config or nonce write into a
// warning, so `borg check --verify-data --bypass-lock` through burg serve and `burg check
// --bypass-lock` work and change nothing; with a lock, the check fails with borg's LockFailed.
// Needs root for the mount and chattr, as CI has.

import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BURG, borgEnv, requireBorg, requireBurg, run, writeExecutable } from "../support/env.ts";
import { fakeSsh, remoteBorg } from "../support/fake-ssh.ts";
import { snapshotFiles } from "../support/repo-contents.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
const PASS = { BORG_PASSPHRASE: "read-only test" };

function must(r: { code: number; stderr: string }, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}), this test needs root as in CI: ${r.stderr}`);
}

/** An encrypted repository with one archive; returns its dir, path and the borg home. */
function makeRepo(): { dir: string; repo: string; home: string } {
  const dir = scope.tempDir("burg-readonly-");
  const home = join(dir, "home");
  mkdirSync(home);
  mkdirSync(join(dir, "src"));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, "src", `f${i}`), `file ${i}\n`.repeat(100 * i + 1));
  const env = borgEnv(home, PASS);
  must(run([requireBorg(), "init", "-e", "repokey", join(dir, "repo")], { env }), "borg init");
  must(run([requireBorg(), "create", `${join(dir, "repo")}::one`, "src"], { env, cwd: dir }), "borg create");
  return { dir, repo: join(dir, "repo"), home };
}

type Kind = "read-only mount" | "chattr +i" | "another user's files";

/** Make `repo` unwritable for the server in the given way; returns the path to use. */
function protect(kind: Kind, dir: string, repo: string): string {
  if (kind === "read-only mount") {
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    must(run(["mount", "--bind", repo, mnt]), "mount --bind");
    scope.onCleanup(() => void run(["umount", "-l", mnt]));
    must(run(["mount", "-o", "remount,bind,ro", mnt]), "mount -o remount,ro");
    return mnt;
  }
  if (kind === "chattr +i") {
    must(run(["chattr", "-R", "+i", repo]), "chattr +i");
    scope.onCleanup(() => void run(["chattr", "-R", "-i", repo]));
    return repo;
  }
  // root's files, readable by all: burg runs as nobody
  must(run(["chmod", "-R", "a+rX", dir]), "chmod");
  return repo;
}

const asServer = (kind: Kind, argv: string[]) =>
  kind === "another user's files" ? ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...argv] : argv;

describe("read-only repositories", () => {
  for (const kind of ["read-only mount", "chattr +i", "another user's files"] as const) {
    test(`${kind}: burg check --bypass-lock and borg check --verify-data --bypass-lock through burg serve work and change nothing`, async () => {
      requireBurg();
      const { dir, repo, home } = makeRepo();
      const path = protect(kind, dir, repo);
      const before = snapshotFiles(repo);
      // the server side's own home for nobody: the repository's dir is all it needs
      const serverEnv = { ...borgEnv(dir), BURG_CONFIG_DIR: join(dir, "burg-config") };

      const locked = run(asServer(kind, [BURG, "check", path]), { env: serverEnv });
      expect(locked.code).toBe(2);
      expect(locked.stderr).toContain(`Failed to create/acquire the lock ${join(path, "lock.exclusive")}`);

      const bypass = run(asServer(kind, [BURG, "check", "--bypass-lock", path]), { env: serverEnv });
      expect({ code: bypass.code, stderr: bypass.stderr }).toMatchObject({ code: 0 });
      expect(bypass.stderr).toContain("This is expected when working on read-only repositories.");
      expect(bypass.stderr).not.toContain("Error");

      // the real client, its server started as nobody where the files are another user's
      const rsh = fakeSsh(dir);
      const remote =
        kind === "another user's files"
          ? writeExecutable(join(dir, "burg-as-nobody"), `#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups ${BURG} "$@"\n`)
          : BURG;
      const client = remoteBorg(home, rsh, remote);
      const verify = await client.run(["check", "--verify-data", "--bypass-lock", client.url(path)], { env: PASS });
      const warnings = (text: string) =>
        text.split("\n").filter((l) => !l.includes("read-only repositories") && !l.includes("hardlinks not supported") && l !== "");
      expect({ code: verify.code, stderr: warnings(verify.stderr) }).toEqual({ code: 0, stderr: [] });
      if (kind !== "read-only mount") {
        // borg serve says the same (on a read-only mount it fails: os.link raises EROFS there)
        const borgRemote =
          kind === "another user's files"
            ? writeExecutable(join(dir, "borg-as-nobody"), `#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups borg "$@"\n`)
            : "borg";
        const ref = await remoteBorg(home, rsh, borgRemote).run(["check", "--verify-data", "--bypass-lock", client.url(path)], { env: PASS });
        expect(verify.code).toBe(ref.code);
        const tmpNames = (t: string) => t.replace(/-[A-Za-z0-9_-]+\.tmp'/g, "-XXXX.tmp'");
        expect(tmpNames(verify.stderr)).toBe(tmpNames(ref.stderr));
      }
      const list = await client.run(["list", "--bypass-lock", "--short", client.url(path)], { env: PASS });
      expect(list.stdout).toBe("one\n");
      expect(snapshotFiles(repo)).toEqual(before);
    }, 120_000);
  }
});
