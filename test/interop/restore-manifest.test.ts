// `burg restore-manifest` on a repository written through `burg serve --permissions no-delete`:
// every manifest version is listed, an earlier one becomes current again, and the borg client
// then sees that version's archives (after dropping its replay-protection state, as printed).

import { describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, requireBurg, runAsync, tempDir } from "../support/env.ts";
import { fakeSsh, forcedSsh, remoteBorg } from "../support/fake-ssh.ts";
import { MANIFEST_HEX, repoContents } from "../support/repo-contents.ts";

describe("burg restore-manifest", () => {
  test(
    "lists the manifest versions kept by no-delete and restores an earlier one",
    async () => {
      const dir = tempDir("burg-restore-");
      const home = join(dir, "home");
      const cwd = join(dir, "data");
      mkdirSync(home);
      makeSourceTree(join(cwd, "src"), { seed: 5, files: 10, totalBytes: 300_000 });
      const repo = join(dir, "repo");
      const all = remoteBorg(home, fakeSsh(dir));
      const noDelete = remoteBorg(home, forcedSsh(dir, `${BURG} serve --permissions no-delete`));
      const url = (a?: string) => all.url(repo, a);
      for (const [borg, args] of [
        [all, ["init", "-e", "repokey", url()]],
        [all, ["create", url("a1"), "src"]],
        [all, ["create", url("a2"), "src"]],
        [noDelete, ["create", url("a3"), "src"]],
      ] as const) {
        const r = await borg.run([...args], { cwd });
        expect({ args, code: r.code }).toEqual({ args, code: 0 });
      }
      const manifests = repoContents(repo).puts.filter(([i]) => i === MANIFEST_HEX);
      const burg = (...args: string[]) => runAsync([requireBurg(), "restore-manifest", repo, ...args], { env: borgEnv(home) });

      const list = await burg();
      expect(list.code).toBe(0);
      const rows = list.stdout.trim().split("\n").slice(1);
      expect(rows.length).toBe(manifests.length);
      expect(rows.at(-1)).toContain("(current)");
      rows.forEach((row, i) => expect(row).toContain(manifests[i]![1].slice(0, 16)));

      // the version before a3 is the one before the last
      const before = rows.length - 1;
      const restore = await burg("--restore", String(before));
      expect(restore.code).toBe(0);
      const id = /security\/([0-9a-f]{64})\/manifest-timestamp/.exec(restore.stdout)![1]!;
      // the client refuses the older manifest until its replay-protection state is dropped
      const refused = await runAsync([requireBorg(), "list", "--short", repo], { env: borgEnv(home) });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("newer than repository");
      rmSync(join(home, ".config/borg/security", id, "manifest-timestamp"));
      rmSync(join(home, ".cache/borg", id), { recursive: true, force: true });
      const listed = await runAsync([requireBorg(), "list", "--short", repo], { env: borgEnv(home) });
      expect(listed.stdout.trim().split("\n")).toEqual(["a1", "a2"]);
      expect((await runAsync([requireBorg(), "check", "--repository-only", repo], { env: borgEnv(home) })).code).toBe(0);

      // the restore added a version; restoring the current one again changes nothing
      const after = (await burg()).stdout.trim().split("\n").slice(1);
      expect(after.length).toBe(rows.length + 1);
      expect(after.at(-1)!.slice(-30)).toBe(rows[before - 1]!.slice(-19) + "  (current)");
      expect((await burg("--restore", String(after.length))).stdout).toContain("already the current one");
      const bad = await burg("--restore", "999");
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("no manifest version 999");
    },
    300_000,
  );
});
