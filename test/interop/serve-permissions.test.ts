// `burg serve --permissions` with the real borg 1.2 client, each mode against the usual
// commands: what must work works, what must not fails with a clear "Permission denied" and
// exit code 2, and the repository proves it (unchanged bytes for read-only; every earlier
// object and manifest PUT still in the segments for no-delete and write-only). Plain local
// `borg check` accepts the repository afterwards.

import { describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, runAsync, tempDir, type RunResult } from "../support/env.ts";
import { fakeSsh, forcedSsh, remoteBorg, type RemoteBorg } from "../support/fake-ssh.ts";
import { MANIFEST_HEX, repoContents, snapshotFiles } from "../support/repo-contents.ts";

const TIMEOUT = 300_000;

interface Fixture {
  dir: string;
  repo: string;
  home: string;
  cwd: string;
  src: string;
  /** The client through a forced `burg serve --permissions MODE`. */
  client(mode: string, home?: string): RemoteBorg;
  url(archive?: string): string;
}

/** A repokey repository with archives a1 and a2, made through burg serve with all permissions. */
async function fixture(): Promise<Fixture> {
  const dir = tempDir("burg-perm-");
  const home = join(dir, "home");
  mkdirSync(home);
  const cwd = join(dir, "data");
  const src = join(cwd, "src");
  makeSourceTree(src, { seed: 3, files: 20, totalBytes: 1_000_000 });
  const repo = join(dir, "repo");
  const all = remoteBorg(home, fakeSsh(dir));
  for (const args of [
    ["init", "-e", "repokey", all.url(repo)],
    ["create", all.url(repo, "a1"), "src"],
    ["create", all.url(repo, "a2"), "src"],
  ]) {
    const r = await all.run(args, { cwd });
    if (r.code !== 0) throw new Error(`fixture: borg ${args[0]} failed: ${r.stderr}`);
  }
  return {
    dir,
    repo,
    home,
    cwd,
    src,
    client: (mode, h = home) => remoteBorg(h, forcedSsh(dir, `${BURG} serve --permissions ${mode}`, `ssh-${mode}`)),
    url: (archive) => all.url(repo, archive),
  };
}

type Expect = 0 | 1 | "denied";

async function expectSteps(f: Fixture, borg: RemoteBorg, steps: Array<[string, string[], Expect]>): Promise<void> {
  for (const [label, args, want] of steps) {
    const r: RunResult = await borg.run(args, { cwd: f.cwd });
    const got = { label, code: r.code, denied: r.stderr.includes("Permission denied") };
    const ok = want === "denied" ? { label, code: 2, denied: true } : { label, code: want, denied: false };
    if (got.code !== ok.code || got.denied !== ok.denied) {
      throw new Error(`${label}: expected ${JSON.stringify(ok)}, got ${JSON.stringify(got)}\n${r.stderr}`);
    }
  }
}

async function localCheck(f: Fixture): Promise<void> {
  const r = await runAsync([requireBorg(), "check", "--verify-data", f.repo], { env: borgEnv(f.home) });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
}

async function archives(f: Fixture): Promise<string[]> {
  const r = await runAsync([requireBorg(), "list", "--short", f.repo], { env: borgEnv(f.home) });
  expect(r.code).toBe(0);
  return r.stdout.trim().split("\n").sort();
}

function expectKept(before: ReturnType<typeof repoContents>, after: ReturnType<typeof repoContents>): void {
  const ids = new Set(after.ids);
  expect(before.ids.filter((i) => !ids.has(i))).toEqual([]);
  const puts = new Set(after.puts.map(([i, h]) => `${i}:${h}`));
  expect(before.puts.filter(([i, h]) => !puts.has(`${i}:${h}`))).toEqual([]);
}

const CHECKPOINTED = (archive: string): string[] => [
  "create",
  "--checkpoint-interval",
  "1",
  "--content-from-command",
  archive,
  "--",
  "sh",
  "-c",
  "head -c 2000000 /dev/urandom; sleep 2; head -c 2000000 /dev/urandom",
];

describe("burg serve --permissions with the borg 1.2 client", () => {
  test(
    "read-only: reading commands work, writing ones are denied, not one byte changes",
    async () => {
      const f = await fixture();
      const before = snapshotFiles(f.repo);
      const borg = f.client("read-only");
      const out = join(f.dir, "out");
      mkdirSync(out);
      await expectSteps(f, borg, [
        ["list repo", ["list", f.url()], 0],
        ["list archive", ["list", f.url("a1")], 0],
        ["info", ["info", f.url("a1")], 0],
        ["diff", ["diff", f.url("a1"), "a2"], 0],
        ["check", ["check", f.url()], 0],
        ["check verify-data", ["check", "--verify-data", f.url()], 0],
        ["key export", ["key", "export", f.url(), join(f.dir, "key.txt")], 0],
        ["break-lock", ["break-lock", f.url()], 0],
        ["with-lock", ["with-lock", f.url(), "true"], 0],
        ["create", ["create", f.url("a3"), "src"], "denied"],
        ["rename", ["rename", f.url("a1"), "renamed"], "denied"],
        ["delete archive", ["delete", f.url("a1")], "denied"],
        ["prune", ["prune", "--keep-last", "1", f.url()], "denied"],
        ["compact", ["compact", f.url()], "denied"],
        ["check repair", ["check", "--repair", f.url()], "denied"],
        ["change passphrase", ["key", "change-passphrase", f.url()], "denied"],
        ["delete repo", ["delete", f.url()], "denied"],
        ["init", ["init", "-e", "none", f.url().replace(/repo$/, "other")], "denied"],
      ]);
      const x = await borg.run(["extract", f.url("a1")], { cwd: out });
      expect(x.code).toBe(0);
      assertSameTree(f.src, join(out, "src"));
      expect(snapshotFiles(f.repo)).toEqual(before);
      await localCheck(f);
    },
    TIMEOUT,
  );

  test(
    "no-delete: backups (with checkpoints) work, nothing committed before disappears",
    async () => {
      const f = await fixture();
      const before = repoContents(f.repo);
      const borg = f.client("no-delete");
      await expectSteps(f, borg, [
        ["create", ["create", f.url("a3"), "src"], 0],
        ["create with checkpoints", CHECKPOINTED(f.url("a4")), 0],
        ["list", ["list", f.url("a1")], 0],
        ["check", ["check", f.url()], 0],
        ["rename", ["rename", f.url("a1"), "renamed"], "denied"],
        ["delete archive", ["delete", f.url("a1")], "denied"],
        ["prune", ["prune", "--keep-last", "1", f.url()], "denied"],
        ["compact (does not compact)", ["compact", f.url()], 0],
        ["check repair", ["check", "--repair", f.url()], "denied"],
        ["change passphrase", ["key", "change-passphrase", f.url()], "denied"],
        ["delete repo", ["delete", f.url()], "denied"],
        ["with-lock", ["with-lock", f.url(), "true"], 0],
        ["init elsewhere", ["init", "-e", "none", f.url().replace(/repo$/, "other")], 0],
      ]);
      const after = repoContents(f.repo);
      expectKept(before, after);
      // every manifest version written through no-delete is still on disk
      const manifests = (c: typeof before) => c.puts.filter(([i]) => i === MANIFEST_HEX).length;
      expect(manifests(after)).toBeGreaterThanOrEqual(manifests(before) + 3);
      expect(await archives(f)).toEqual(["a1", "a2", "a3", "a4"]);
      await localCheck(f);
    },
    TIMEOUT,
  );

  test(
    "write-only: backups work, stored data cannot be read back",
    async () => {
      const f = await fixture();
      const before = repoContents(f.repo);
      const borg = f.client("write-only");
      const out = join(f.dir, "out");
      mkdirSync(out);
      const freshHome = join(f.dir, "fresh-home");
      mkdirSync(freshHome);
      await expectSteps(f, borg, [
        ["create", ["create", f.url("a3"), "src"], 0],
        ["create with checkpoints", CHECKPOINTED(f.url("a4")), 0],
        ["list archive", ["list", f.url("a1")], "denied"],
        ["info", ["info", f.url("a1")], "denied"],
        ["diff", ["diff", f.url("a1"), "a2"], "denied"],
        ["check archives", ["check", "--archives-only", f.url()], "denied"],
        ["check repository", ["check", "--repository-only", f.url()], 0],
        ["delete archive", ["delete", f.url("a1")], "denied"],
        ["prune", ["prune", "--keep-last", "1", f.url()], "denied"],
        ["key export", ["key", "export", f.url(), join(f.dir, "key.txt")], 0],
        ["list repo (manifest only)", ["list", f.url()], 0],
        ["check (reads archives)", ["check", f.url()], "denied"],
        ["rename", ["rename", f.url("a1"), "renamed"], "denied"],
        ["compact (does not compact)", ["compact", f.url()], 0],
        ["with-lock", ["with-lock", f.url(), "true"], 0],
        ["break-lock", ["break-lock", f.url()], 0],
        ["change passphrase", ["key", "change-passphrase", f.url()], "denied"],
        ["init elsewhere", ["init", "-e", "none", f.url().replace(/repo$/, "other")], 0],
      ]);
      expect((await borg.run(["extract", f.url("a1")], { cwd: out })).stderr).toContain("Permission denied");
      // a client without a chunks cache cannot sync it (that reads archives) but can back up
      // with --no-cache-sync
      await expectSteps(f, f.client("write-only", freshHome), [
        ["create from a fresh client", ["create", f.url("a5"), "src"], "denied"],
        ["create --no-cache-sync", ["create", "--no-cache-sync", f.url("a6"), "src"], 0],
      ]);
      expectKept(before, repoContents(f.repo));
      expect(await archives(f)).toEqual(["a1", "a2", "a3", "a4", "a6"]);
      await localCheck(f);
    },
    TIMEOUT,
  );

  test(
    "BORG_REPO_PERMISSIONS sets the mode; --permissions overrides it",
    async () => {
      const f = await fixture();
      const envRo = (cmd: string, name: string) => remoteBorg(f.home, forcedSsh(f.dir, cmd, name));
      await expectSteps(f, envRo(`BORG_REPO_PERMISSIONS=read-only ${BURG} serve`, "ssh-env"), [
        ["env read-only", ["create", f.url("a3"), "src"], "denied"],
      ]);
      await expectSteps(f, envRo(`BORG_REPO_PERMISSIONS=read-only ${BURG} serve --permissions all`, "ssh-env-all"), [
        ["option wins", ["create", f.url("a3"), "src"], 0],
      ]);
    },
    TIMEOUT,
  );
});
