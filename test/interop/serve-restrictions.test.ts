// The operator's options of a forced `burg serve`, with the real borg client and compared with
// borg serve where borg has them: --restrict-to-path / --restrict-to-repository give the same
// refusals (exit code and message), including escapes by "..", symlinks and ~user;
// --storage-quota, --append-only and --umask act as in borg; and from SSH_ORIGINAL_COMMAND only
// the log level (and debug topics, lock wait) are taken, never restrictions, permissions or
// VAR=value words.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, statSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { BURG, tempDir } from "../support/env.ts";
import { forcedSsh, remoteBorg } from "../support/fake-ssh.ts";
import { repoContents } from "../support/repo-contents.ts";

const TIMEOUT = 300_000;

function layout(): { dir: string; home: string } {
  const dir = tempDir("burg-restrict-");
  const home = join(dir, "home");
  for (const d of ["home", "allowed", "other"]) mkdirSync(join(dir, d));
  symlinkSync(join(dir, "other"), join(dir, "allowed", "escape"));
  return { dir, home };
}

function normalize(s: string, dir: string): string {
  return s.split(dir).join("<DIR>");
}

describe("restrictions through a forced command, burg serve vs borg serve", () => {
  for (const [option, allowedRepo] of [
    ["--restrict-to-path", "allowed"],
    ["--restrict-to-repository", "allowed/repo"],
  ] as const) {
    test(
      `${option}: allowed inside, refused outside and on every escape`,
      async () => {
        const results: Record<string, Array<{ label: string; code: number; stderr: string }>> = {};
        const dirs: Record<string, string> = {};
        for (const server of ["borg", BURG]) {
          const { dir, home } = layout();
          dirs[server] = dir;
          const borg = remoteBorg(home, forcedSsh(dir, `${server} serve ${option} ${join(dir, allowedRepo)}`));
          const url = (p: string) => `ssh://fakehost${p}`;
          const attempts: Array<[string, string]> = [
            ["inside", url(join(dir, "allowed/repo"))],
            ["outside", url(join(dir, "other/repo"))],
            ["dot-dot", url(join(dir, "allowed")) + "/../other/repo2"],
            ["symlink", url(join(dir, "allowed/escape/repo3"))],
            ["tilde user", "ssh://fakehost/~root/repo"],
            ["prefix sibling", url(join(dir, "allowedX"))],
          ];
          results[server] = [];
          for (const [label, u] of attempts) {
            const r = await borg.run(["init", "-e", "none", u]);
            results[server]!.push({ label, code: r.code, stderr: normalize(r.stderr, dir) });
          }
        }
        const ours = results[BURG]!;
        expect(ours).toEqual(results["borg"]!);
        expect(ours.map((r) => r.code)).toEqual([0, 2, 2, 2, 2, 2]);
        expect(ours[1]!.stderr).toContain("Repository path not allowed");
      },
      TIMEOUT,
    );
  }

  test(
    "the client's own command cannot lift restrictions or permissions; VAR=value words are ignored",
    async () => {
      const { dir, home } = layout();
      const log = join(dir, "serve.log");
      const forced = `BORG_REPO_PERMISSIONS=read-only ${BURG} serve --restrict-to-path ${join(dir, "allowed")} 2>>${log}`;
      const rsh = forcedSsh(dir, forced);
      // the client asks for more through its remote path (which ends up in SSH_ORIGINAL_COMMAND)
      const sneaky = `BORG_REPO_PERMISSIONS=all ${BURG} --restrict-to-path=/ --permissions=all --append-only`;
      const borg = remoteBorg(home, rsh, sneaky);
      const outside = await borg.run(["init", "-e", "none", `ssh://fakehost${join(dir, "other/repo")}`]);
      expect(outside.code).toBe(2);
      expect(outside.stderr).toContain("Repository path not allowed");
      const inside = await borg.run(["init", "-e", "none", `ssh://fakehost${join(dir, "allowed/repo")}`]);
      expect(inside.code).toBe(2); // read-only from the forced command's environment
      expect(inside.stderr).toContain("Permission denied: creating a repository is not allowed");
      expect(readFileSync(log, "utf8")).not.toContain('"levelname": "DEBUG"');
    },
    TIMEOUT,
  );

  test(
    "--umask of the forced command sets the repository's file modes (default 0077); the client's is ignored",
    async () => {
      const { dir, home } = layout();
      const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
      const plain = remoteBorg(home, forcedSsh(dir, `${BURG} serve`, "ssh-default"));
      expect((await plain.run(["init", "-e", "none", `ssh://fakehost${join(dir, "allowed/r1")}`])).code).toBe(0);
      expect([mode(join(dir, "allowed/r1")), mode(join(dir, "allowed/r1/config"))]).toEqual(["700", "600"]);
      const umask = remoteBorg(home, forcedSsh(dir, `${BURG} serve --umask 0027`, "ssh-umask"), `${BURG} --umask 0000`);
      expect((await umask.run(["init", "-e", "none", `ssh://fakehost${join(dir, "allowed/r2")}`])).code).toBe(0);
      expect([mode(join(dir, "allowed/r2")), mode(join(dir, "allowed/r2/config"))]).toEqual(["750", "640"]);
    },
    TIMEOUT,
  );

  test(
    "--storage-quota of the forced command is enforced like borg serve's",
    async () => {
      const results: Array<{ code: number; stderr: string }> = [];
      for (const server of ["borg", BURG]) {
        const { dir, home } = layout();
        const data = join(dir, "data");
        mkdirSync(data);
        await Bun.write(join(data, "big"), new Uint8Array(15_000_000).map((_, i) => (i * 2654435761) >>> 24));
        const borg = remoteBorg(home, forcedSsh(dir, `${server} serve --storage-quota 10M`));
        const url = (a?: string) => `ssh://fakehost${join(dir, "allowed/repo")}${a ? `::${a}` : ""}`;
        expect((await borg.run(["init", "-e", "none", url()])).code).toBe(0);
        const r = await borg.run(["create", "-C", "none", url("a"), "data"], { cwd: dir });
        results.push({ code: r.code, stderr: r.stderr.split("\n").filter((l) => l.includes("quota")).join("\n") });
      }
      expect(results[1]).toEqual(results[0]!);
      expect(results[1]!.code).toBe(2);
      expect(results[1]!.stderr).toContain("The storage quota (10.00 MB) has been exceeded");
    },
    TIMEOUT,
  );

  test(
    "--append-only keeps borg's meaning: deletes work, nothing leaves the segments, init is not append-only",
    async () => {
      const outcome: unknown[] = [];
      for (const server of ["borg", BURG]) {
        const { dir, home } = layout();
        mkdirSync(join(dir, "data"));
        await Bun.write(join(dir, "data", "f"), "some data\n".repeat(1000));
        const borg = remoteBorg(home, forcedSsh(dir, `${server} serve --append-only`));
        const repo = join(dir, "allowed/repo");
        const url = (a?: string) => `ssh://fakehost${repo}${a ? `::${a}` : ""}`;
        const codes: number[] = [];
        for (const args of [
          ["init", "-e", "none", url()],
          ["create", url("a1"), "data"],
          ["create", url("a2"), "data"],
        ]) codes.push((await borg.run(args, { cwd: dir })).code);
        const before = repoContents(repo);
        for (const args of [
          ["delete", url("a1")],
          ["compact", url()],
          ["list", "--short", url()],
        ]) codes.push((await borg.run(args, { cwd: dir })).code);
        const after = repoContents(repo);
        const kept = new Set(after.puts.map(([i, h]) => `${i}:${h}`));
        outcome.push({
          codes,
          putsKept: before.puts.every(([i, h]) => kept.has(`${i}:${h}`)),
          fewerIds: after.ids.length < before.ids.length,
          configAppendOnly: /append_only = 1/.test(readFileSync(join(repo, "config"), "utf8")),
          transactionsLog: readFileSync(join(repo, "transactions"), "utf8").length > 0,
        });
      }
      expect(outcome[1]).toEqual(outcome[0]);
      expect(outcome[1]).toEqual({
        codes: [0, 0, 0, 0, 0, 0],
        putsKept: true,
        fewerIds: true,
        configAppendOnly: false,
        transactionsLog: true,
      });
    },
    TIMEOUT,
  );

  test(
    "the log level comes from the client's command, not the forced one",
    async () => {
      const { dir, home } = layout();
      const quiet = join(dir, "quiet.log");
      const loud = join(dir, "loud.log");
      const url = `ssh://fakehost${join(dir, "allowed/repo")}`;
      // forced --debug, client at the default level: no debug lines leave the server
      const a = remoteBorg(home, forcedSsh(dir, `${BURG} serve --debug 2>>${quiet}`, "ssh-a"));
      expect((await a.run(["init", "-e", "none", url])).code).toBe(0);
      // forced --critical, client with --debug: the server logs debug lines
      const b = remoteBorg(home, forcedSsh(dir, `${BURG} serve --critical 2>>${loud}`, "ssh-b"));
      expect((await b.run(["--debug", "list", url])).code).toBe(0);
      const levels = (file: string) =>
        readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => (JSON.parse(l) as { levelname: string }).levelname);
      expect(levels(quiet).filter((l) => l === "DEBUG")).toEqual([]);
      expect(levels(loud)).toContain("DEBUG");
    },
    TIMEOUT,
  );
});
