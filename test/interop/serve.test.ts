// The real borg 1.2 client through `burg serve` against the same client through `borg serve`:
// every command gives the same exit code (and, where it is deterministic, the same output),
// extracted data is byte-identical, and plain local `borg check` accepts burg's repository.

import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { borgEnv, requireBorg, runAsync, tempDir, type RunResult } from "../support/env.ts";
import { fakeSsh, remoteBorg, type RemoteBorg } from "../support/fake-ssh.ts";

const TIMEOUT = 300_000;

interface Step {
  label: string;
  args: (url: (archive?: string) => string, dir: string) => string[];
  /** Compare stdout/stderr too (after replacing the per-server directory). */
  compareOutput?: boolean;
  expectCode: number;
}

/** One server's run: a temp dir with source data, a borg home and a repository. */
interface Side {
  dir: string;
  repo: string;
  borg: RemoteBorg;
  results: RunResult[];
}

function side(name: string, remotePath: string | undefined): Side {
  const dir = tempDir(`burg-serve-${name}-`);
  mkdirSync(join(dir, "home"));
  const rsh = fakeSsh(dir);
  return { dir, repo: join(dir, "repo"), borg: remoteBorg(join(dir, "home"), rsh, remotePath), results: [] };
}

async function runSteps(s: Side, steps: Step[], src: string): Promise<void> {
  for (const step of steps) {
    const url = (archive?: string) => s.borg.url(s.repo, archive);
    // relative paths in archives: run from the source's parent so both sides archive "src/..."
    s.results.push(await s.borg.run(step.args(url, s.dir), { cwd: join(src, "..") }));
  }
}

function normalize(text: string, dir: string): string {
  return text
    .split(dir)
    .join("<DIR>")
    .split("\n")
    .filter((l) => !l.startsWith("Remote: ")) // server debug chatter differs by implementation
    .join("\n");
}

function compare(steps: Step[], ref: Side, ours: Side): void {
  steps.forEach((step, i) => {
    const a = ref.results[i]!;
    const b = ours.results[i]!;
    const ctx = `${step.label}\n--- borg serve:\n${a.stderr}\n--- burg serve:\n${b.stderr}`;
    expect({ step: step.label, code: b.code, ctx: b.code === a.code ? "" : ctx }).toEqual({
      step: step.label,
      code: a.code,
      ctx: "",
    });
    expect({ step: step.label, code: b.code }).toEqual({ step: step.label, code: step.expectCode });
    if (step.compareOutput) {
      expect(normalize(b.stdout, ours.dir)).toBe(normalize(a.stdout, ref.dir));
      expect(normalize(b.stderr, ours.dir)).toBe(normalize(a.stderr, ref.dir));
    }
  });
}

async function localCheck(s: Side, extra: string[] = []): Promise<RunResult> {
  return runAsync([requireBorg(), "check", ...extra, s.repo], { env: borgEnv(join(s.dir, "home")) });
}

const FULL: Step[] = [
  { label: "init", args: (u) => ["init", "-e", "repokey", u()], expectCode: 0 },
  { label: "init again", args: (u) => ["init", "-e", "repokey", u()], compareOutput: true, expectCode: 2 },
  { label: "create a1", args: (u) => ["create", u("a1"), "src"], expectCode: 0 },
  {
    label: "create a2 with checkpoints",
    args: (u) => [
      "create",
      "--checkpoint-interval",
      "1",
      "--content-from-command",
      u("a2"),
      "--",
      "sh",
      "-c",
      "head -c 3000000 /dev/urandom; sleep 2; head -c 3000000 /dev/urandom",
    ],
    expectCode: 0,
  },
  { label: "list repo", args: (u) => ["list", "--short", u()], compareOutput: true, expectCode: 0 },
  { label: "list archive", args: (u) => ["list", "--format", "{mode} {size} {path}{NL}", u("a1")], compareOutput: true, expectCode: 0 },
  { label: "info archive", args: (u) => ["info", u("a1")], expectCode: 0 },
  // both sides run at once from the same source tree: extract for real only afterwards
  { label: "extract dry-run", args: (u) => ["extract", "--dry-run", "--list", u("a1")], compareOutput: true, expectCode: 0 },
  { label: "diff", args: (u) => ["diff", u("a1"), "a2"], expectCode: 0 },
  { label: "rename", args: (u) => ["rename", u("a1"), "a1b"], expectCode: 0 },
  { label: "list missing archive", args: (u) => ["list", u("nope")], compareOutput: true, expectCode: 2 },
  { label: "check repository", args: (u) => ["check", "--repository-only", u()], expectCode: 0 },
  { label: "check archives", args: (u) => ["check", "--archives-only", u()], expectCode: 0 },
  { label: "check verify-data", args: (u) => ["check", "--verify-data", u()], expectCode: 0 },
  { label: "key export", args: (u, d) => ["key", "export", u(), join(d, "key.txt")], expectCode: 0 },
  { label: "break-lock", args: (u) => ["break-lock", u()], expectCode: 0 },
  { label: "with-lock true", args: (u) => ["with-lock", u(), "true"], expectCode: 0 },
  { label: "with-lock false", args: (u) => ["with-lock", u(), "false"], expectCode: 1 },
  { label: "prune", args: (u) => ["prune", "--keep-last", "1", u()], expectCode: 0 },
  { label: "list after prune", args: (u) => ["list", "--short", u()], compareOutput: true, expectCode: 0 },
  { label: "compact", args: (u) => ["compact", u()], expectCode: 0 },
  { label: "check repair", args: (u) => ["check", "--repair", u()], expectCode: 0 },
  { label: "create a3", args: (u) => ["create", u("a3"), "src"], expectCode: 0 },
  { label: "delete archive", args: (u) => ["delete", u("a3")], expectCode: 0 },
];

describe("borg client through burg serve behaves as through borg serve", () => {
  test(
    "the full command set on a repokey repository",
    async () => {
      const src = join(tempDir("burg-serve-src-"), "src");
      makeSourceTree(src, { seed: 7, files: 40, totalBytes: 3_000_000 });
      const ref = side("borg", "borg");
      const ours = side("burg", undefined);
      await Promise.all([runSteps(ref, FULL, src), runSteps(ours, FULL, src)]);
      compare(FULL, ref, ours);
      const out = join(ours.dir, "out");
      mkdirSync(out);
      const cwd = join(src, "..");
      expect((await ours.borg.run(["create", ours.borg.url(ours.repo, "final"), "src"], { cwd })).code).toBe(0);
      const x = await ours.borg.run(["extract", ours.borg.url(ours.repo, "final")], { cwd: out });
      expect(x.code).toBe(0);
      assertSameTree(src, join(out, "src"));
      expect((await localCheck(ours, ["--verify-data"])).code).toBe(0);
      // and the end of the story: borg delete of the whole repository
      const del = await ours.borg.run(["delete", ours.borg.url(ours.repo)]);
      const delRef = await ref.borg.run(["delete", ref.borg.url(ref.repo)]);
      expect([del.code, delRef.code]).toEqual([0, 0]);
      const gone = await ours.borg.run(["list", ours.borg.url(ours.repo)]);
      const goneRef = await ref.borg.run(["list", ref.borg.url(ref.repo)]);
      expect(gone.code).toBe(2);
      expect(normalize(gone.stderr, ours.dir)).toBe(normalize(goneRef.stderr, ref.dir));
    },
    TIMEOUT,
  );

  for (const mode of ["none", "keyfile", "authenticated"]) {
    test(
      `init, create, list, extract and check with -e ${mode}`,
      async () => {
        const src = join(tempDir("burg-serve-src-"), "src");
        makeSourceTree(src, { seed: 11, files: 12, totalBytes: 600_000 });
        writeFileSync(join(src, "d0", "binary-name-\u00e4\u00f6.bin"), new Uint8Array([0, 1, 2, 255]));
        const steps: Step[] = [
          { label: "init", args: (u) => ["init", "-e", mode, u()], expectCode: 0 },
          { label: "create", args: (u) => ["create", u("a1"), "src"], expectCode: 0 },
          { label: "list", args: (u) => ["list", "--format", "{mode} {size} {path}{NL}", u("a1")], compareOutput: true, expectCode: 0 },
          { label: "check", args: (u) => ["check", u()], expectCode: 0 },
        ];
        const ref = side("borg", "borg");
        const ours = side("burg", undefined);
        await Promise.all([runSteps(ref, steps, src), runSteps(ours, steps, src)]);
        compare(steps, ref, ours);
        const out = join(ours.dir, "out");
        mkdirSync(out);
        expect((await ours.borg.run(["extract", ours.borg.url(ours.repo, "a1")], { cwd: out })).code).toBe(0);
        assertSameTree(src, join(out, "src"));
        expect((await localCheck(ours)).code).toBe(0);
      },
      TIMEOUT,
    );
  }
});
