// Fuzzed input for `burg serve`: the client-to-server bytes of real borg sessions (init,
// create, list, info, extract, check, delete, prune, compact; recorded through a BORG_RSH that
// tees them), changed by the seeded mutational fuzzer of test/support/fuzz.ts, and fed to a
// fresh `burg serve --restrict-to-path` on a copy of the repository. For every case: no
// internal error, no crash, no hang (10 s), peak RSS within bounds, and afterwards every
// repository in the case's directory passes plain borg's Repository.check() with no lock left
// behind. BURG_FUZZ_CASES sets the number of cases (default 1000).

import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { borgPython } from "../support/borg-python.ts";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, run, writeExecutable } from "../support/env.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { remoteBorg } from "../support/fake-ssh.ts";
import { fuzzCase, replaceBytes } from "../support/fuzz.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const CASES = Number(process.env.BURG_FUZZ_CASES ?? 1000);
const PARALLEL = 4;
const BATCH = 100;
const HANG_MS = 10_000;
/** Far above what any well-formed session needs here (burg serve peaks near 100 MiB), far below what a length prefix believed would take. */
const RSS_LIMIT_KIB = 400 * 1024;
const HOST_ID = "fuzz-test@424242";

interface Outcome {
  seed: number;
  mutations: string[];
  code: number | null;
  signal: string | null;
  ms: number;
  rssKiB: number;
  stderr: string;
}

/** Checks every borg repository under each directory with borg's own code; returns the failures. */
const PLAIN_CHECK = `
import os, sys, io
from borg.logger import setup_logging
from borg.repository import Repository
stream = io.StringIO()
setup_logging(stream=stream, level='warning')
bad = []
for top in sys.argv[1:]:
    for root, dirs, files in os.walk(top):
        if 'README' in files and 'data' in dirs and 'config' in files:
            dirs[:] = []
            try:
                with Repository(root, exclusive=True, lock_wait=1) as r:
                    if not r.check():
                        bad.append(root + ': check found errors: ' + stream.getvalue()[-500:])
            except Exception as e:
                bad.append(root + ': ' + type(e).__name__ + ': ' + str(e))
            stream.truncate(0)
            if os.path.exists(os.path.join(root, 'lock.exclusive')):
                bad.append(root + ': lock.exclusive left behind')
print('\\n'.join(bad))
`;

describe("fuzzed RPC input", () => {
  test(
    `${CASES} mutated borg sessions: no internal error, no hang, bounded memory, repositories plain borg accepts`,
    async () => {
      const dir = scope.tempDir("burg-fuzz-");
      // Every case runs in a directory whose path has the recorded one's length, so that the
      // repository path inside the stream can be swapped byte for byte.
      const caseDir = (i: number) => join(dir, `c${String(i).padStart(5, "0")}`);
      const recordDir = caseDir(0);
      const repo = join(recordDir, "repo");
      const home = join(dir, "home");
      const src = join(dir, "src");
      const recordings = join(dir, "rec");
      for (const d of [recordDir, home, recordings]) mkdirSync(d, { recursive: true });
      const rsh = writeExecutable(
        join(dir, "tee-ssh"),
        `#!/bin/sh\nshift\nf="${recordings}/$(date +%s%N).in"\ntee "$f" | "$@"\n`,
      );
      const borg = remoteBorg(home, rsh);
      const env = { BORG_HOST_ID: HOST_ID };
      const ok = async (args: string[]) => {
        const r = await borg.run(args, { cwd: dir, env });
        expect({ args, code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ args, code: 0, stderr: "" });
      };
      makeSourceTree(join(src, "a"), { seed: 5, files: 80, totalBytes: 2 << 20 });
      await ok(["init", "-e", "repokey", borg.url(repo)]);
      await ok(["create", borg.url(repo, "one"), "src"]);
      makeSourceTree(join(src, "b"), { seed: 6, files: 40, totalBytes: 1 << 20 });
      await ok(["create", borg.url(repo, "two"), "src"]);
      const template = join(dir, "template");
      cpSync(repo, template, { recursive: true });
      await ok(["list", borg.url(repo)]);
      await ok(["info", borg.url(repo, "one")]);
      await ok(["extract", "--dry-run", borg.url(repo, "two")]);
      await ok(["check", borg.url(repo)]);
      await ok(["delete", borg.url(repo, "one")]);
      await ok(["prune", "--keep-last", "1", borg.url(repo)]);
      await ok(["compact", borg.url(repo)]);
      await ok(["break-lock", borg.url(repo)]);
      const streams = readdirSync(recordings)
        .sort()
        .map((f) => new Uint8Array(readFileSync(join(recordings, f))));
      expect(streams.length).toBe(11);
      const recordedPath = new TextEncoder().encode(repo);

      const runCase = async (i: number): Promise<Outcome> => {
        const { bytes, mutations } = fuzzCase(streams, i);
        const here = caseDir(i);
        mkdirSync(here, { recursive: true });
        cpSync(template, join(here, "repo"), { recursive: true });
        const input = join(here, "input");
        writeFileSync(input, replaceBytes(bytes, recordedPath, new TextEncoder().encode(join(here, "repo"))));
        const usage = join(here, "usage");
        const started = performance.now();
        const p = Bun.spawn(["/usr/bin/time", "-f", "%M", "-o", usage, BURG, "serve", "--restrict-to-path", here], {
          cwd: here,
          stdin: Bun.file(input),
          stdout: "ignore",
          stderr: "pipe",
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, BORG_HOST_ID: HOST_ID },
        });
        const timer = setTimeout(() => p.kill("SIGKILL"), HANG_MS);
        const stderr = await new Response(p.stderr).text();
        await p.exited;
        clearTimeout(timer);
        const ms = performance.now() - started;
        const rss = existsSync(usage) ? Number(readFileSync(usage, "utf8").trim().split("\n").at(-1)) : -1;
        return { seed: i, mutations, code: p.exitCode, signal: p.signalCode ?? null, ms, rssKiB: rss, stderr };
      };

      const problems: string[] = [];
      const describeCase = (o: Outcome, why: string) =>
        `case ${o.seed} (${o.mutations.join("; ")}): ${why}; exit ${o.code}${o.signal ? ` signal ${o.signal}` : ""}, ${Math.round(o.ms)} ms, ${o.rssKiB} KiB\n${o.stderr.slice(-1500)}`;
      let maxRss = 0;
      let slowest = 0;
      for (let first = 1; first <= CASES; first += BATCH) {
        const last = Math.min(CASES, first + BATCH - 1);
        const queue = Array.from({ length: last - first + 1 }, (_, k) => first + k);
        const outcomes: Outcome[] = [];
        await Promise.all(
          Array.from({ length: PARALLEL }, async () => {
            for (let i = queue.shift(); i !== undefined; i = queue.shift()) outcomes.push(await runCase(i));
          }),
        );
        for (const o of outcomes) {
          maxRss = Math.max(maxRss, o.rssKiB);
          slowest = Math.max(slowest, o.ms);
          // /usr/bin/time reports a killed child as "Command terminated by signal 9".
          if (o.ms >= HANG_MS) problems.push(describeCase(o, "hung"));
          else if (o.signal || (o.code ?? 0) > 2) problems.push(describeCase(o, "crashed"));
          else if (/internal error|BurgInternalError|panic|Uncaught|Segmentation fault/.test(o.stderr))
            problems.push(describeCase(o, "internal error"));
          else if (o.rssKiB > RSS_LIMIT_KIB) problems.push(describeCase(o, "too much memory"));
        }
        const dirs = outcomes.map((o) => caseDir(o.seed));
        const bad = borgPython(PLAIN_CHECK, dirs).trim();
        if (bad) problems.push(...bad.split("\n").map((l) => `plain borg: ${l}`));
        if (problems.length === 0) for (const d of dirs) rmSync(d, { recursive: true, force: true });
        if (problems.length > 0) break;
      }
      console.log(`fuzz: ${CASES} cases, peak RSS ${Math.round(maxRss / 1024)} MiB, slowest ${Math.round(slowest)} ms`);
      expect(problems.slice(0, 5)).toEqual([]);
    },
    1_800_000,
  );
});

describe("what the fuzzer found", () => {
  const setup = () => {
    const dir = scope.tempDir("burg-fuzz-found-");
    const repo = join(dir, "repo");
    const env = borgEnv(dir);
    expect(run([requireBorg(), "init", "-e", "none", repo], { env }).code).toBe(0);
    return { repo, env };
  };
  const openArgs = (repo: string, exclusive: boolean) => ({
    path: new TextEncoder().encode(repo),
    create: false,
    lock_wait: 10,
    lock: true,
    exclusive,
    append_only: false,
    make_parent_dirs: false,
  });

  test("calls after destroy get RepositoryNotOpen, not an internal error", async () => {
    const { repo, env } = setup();
    const c = new RpcClient([BURG, "serve"], env);
    await c.negotiate();
    await c.call("open", openArgs(repo, true));
    await c.call("destroy", {});
    expect(existsSync(repo)).toBe(false);
    await expect(c.call("put", { id: new Uint8Array(32).fill(1), data: new Uint8Array(3) })).rejects.toThrow("RepositoryNotOpen");
    await expect(c.call("list", { limit: 10, marker: null })).rejects.toThrow("RepositoryNotOpen");
    const usage = await c.close();
    expect(usage.exitCode).toBe(0);
    expect(usage.stderr).not.toContain("internal error");
  });

  test("writes after open(exclusive=False) get borg's AssertionError every time", async () => {
    const { repo, env } = setup();
    const c = new RpcClient([BURG, "serve"], env);
    await c.negotiate();
    await c.call("open", openArgs(repo, false));
    for (let i = 0; i < 3; i++) {
      await expect(c.call("put", { id: new Uint8Array(32).fill(i), data: new Uint8Array(3) })).rejects.toThrow("bug in code, exclusive lock should exist here");
    }
    expect(await c.call("__len__", {})).toBeGreaterThan(0);
    const usage = await c.close();
    expect(usage.exitCode).toBe(0);
    expect(usage.stderr).not.toContain("internal error");
  });
});
