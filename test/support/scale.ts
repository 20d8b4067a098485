// The scale tier's harness: the same borg client work through `burg serve`, `borg serve` and
// `burg socket` ("sides"), run concurrently (the client is single-threaded Python, so two
// sides use both cores of a small machine), with the results compared side by side and
// plain local borg checking every repository afterwards. Source data is generated once and
// shared read-only by all sides; every side has its own borg home, cache and repositories.

import { mkdirSync, openSync, closeSync, writeSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "bun:test";
import { BURG, borgEnv, requireBorg, requireBurg, run, runAsync, type RunResult } from "./env.ts";
import { fakeSsh, forcedSsh, remoteBorg, type RemoteBorg } from "./fake-ssh.ts";
import type { TestScope } from "./scope.ts";
import { connectRsh, startBurgSocket } from "./socket-server.ts";

export type ServerKind = "burg serve" | "borg serve" | "burg socket" | "burg serve --daemon-socket";

export interface Side {
  kind: ServerKind;
  dir: string;
  home: string;
  borg: RemoteBorg;
  /** A repository path of this side. */
  repo(name?: string): string;
  url(name?: string, archive?: string): string;
}

/** One side per kind, each in its own temp dir; `burg socket` sides get their own running server. */
export async function makeSides(scope: TestScope, kinds: ServerKind[]): Promise<Side[]> {
  requireBorg();
  requireBurg();
  const out: Side[] = [];
  for (const kind of kinds) {
    const dir = scope.tempDir(`burg-scale-${kind.replace(/[^a-z]+/g, "-")}-`);
    const home = join(dir, "home");
    mkdirSync(home);
    let rsh: string;
    if (kind === "burg socket") {
      const sock = join(dir, "burg.sock");
      await startBurgSocket(scope, ["--socket", sock], { env: borgEnv(home) });
      rsh = connectRsh(sock);
    } else if (kind === "burg serve --daemon-socket") {
      // the ssh forced-command setup: every session handed to one daemon
      const sock = join(dir, "run", "burg.sock");
      mkdirSync(join(dir, "run"), { mode: 0o700 });
      await startBurgSocket(scope, ["--socket", sock], { env: borgEnv(home) });
      rsh = forcedSsh(dir, `${BURG} serve --daemon-socket ${sock}`);
    } else {
      rsh = fakeSsh(dir);
    }
    const borg = remoteBorg(home, rsh, kind === "borg serve" ? "borg" : BURG);
    const repo = (name = "repo") => join(dir, name);
    out.push({ kind, dir, home, borg, repo, url: (name, archive) => borg.url(repo(name), archive) });
  }
  return out;
}

/** Run `f` on every side at once; resolves with the results in side order. */
export function onEach<T>(sides: Side[], f: (s: Side) => Promise<T>): Promise<T[]> {
  return Promise.all(sides.map(f));
}

/** Every side's result has exit code `code`; the message shows each side's stderr otherwise. */
export function expectCodes(what: string, sides: Side[], results: RunResult[], code = 0): void {
  const got = results.map((r, i) => ({ side: sides[i]!.kind, code: r.code }));
  const want = sides.map((s) => ({ side: s.kind, code }));
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    const detail = results.map((r, i) => `--- ${sides[i]!.kind} (exit ${r.code}):\n${r.stderr.slice(-4000)}`).join("\n");
    throw new Error(`${what}: exit codes differ from ${code}\n${detail}`);
  }
}

/** One borg client command on every side at once, all expected to exit with `code`. */
export async function borgOnEach(
  what: string,
  sides: Side[],
  args: (s: Side) => string[],
  opts: { cwd?: string; code?: number } = {},
): Promise<RunResult[]> {
  const results = await onEach(sides, (s) => s.borg.run(args(s), { cwd: opts.cwd }));
  expectCodes(what, sides, results, opts.code ?? 0);
  return results;
}

/** The archive names of a repository, through the side's server. */
export async function archiveNames(s: Side, name?: string): Promise<string[]> {
  const r = await s.borg.run(["list", "--short", s.url(name)]);
  if (r.code !== 0) throw new Error(`${s.kind}: borg list failed:\n${r.stderr}`);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Plain local borg checks a side's repository (no server involved): exit 0, nothing said. */
export async function plainBorgCheck(s: Side, name?: string, extra: string[] = []): Promise<void> {
  const r = await runAsync([requireBorg(), "check", ...extra, s.repo(name)], { env: borgEnv(s.home) });
  expect({ side: s.kind, code: r.code, stderr: r.stderr }).toEqual({ side: s.kind, code: 0, stderr: "" });
}

/**
 * Generate `files` small files below `dir` (1,000 per directory): each unique, 70 to ~1,000
 * bytes, so each is one chunk of its own. Python writes them (it is there with borg and is
 * quicker at many small files than spawning anything per file).
 */
export function makeManySmallFiles(dir: string, files: number, seed: number): void {
  const script = `
import os, sys, random
root, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(b"file %d " % i + rnd.randbytes(64 + (i * 37) % 900))
`;
  const r = run(["python3", "-c", script, dir, String(files), String(seed)]);
  if (r.code !== 0) throw new Error(`generating ${files} files failed: ${r.stderr}`);
}

/**
 * A file of `blocks` blocks of 4 KiB, each unique (its number in the first 8 bytes, the rest a
 * cheap pattern of it), for `--chunker-params fixed,4096`: one object per block.
 */
export function makeBlockFile(path: string, blocks: number): void {
  const fd = openSync(path, "w");
  const per = 256; // blocks per write
  const buf = new Uint8Array(per * 4096);
  const dv = new DataView(buf.buffer);
  try {
    for (let b = 0; b < blocks; b += per) {
      const n = Math.min(per, blocks - b);
      for (let i = 0; i < n; i++) {
        const off = i * 4096;
        const v = b + i;
        for (let w = 0; w < 4096; w += 4) dv.setUint32(off + w, Math.imul(v + 1, 0x9e3779b1) ^ (w * 0x85ebca6b), true);
        dv.setBigUint64(off, BigInt(v), true);
      }
      writeSync(fd, buf, 0, n * 4096);
    }
  } finally {
    closeSync(fd);
  }
}

/** A tree of `files` random files (100 B to 60 KB) for clients that run at the same time. */
export function makeClientTree(dir: string, files: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  for (let i = 0; i < files; i++) {
    const size = 100 + ((i * 7919 + seed * 104729) % 60_000);
    writeFileSync(join(dir, `c${seed}-f${i}`), crypto.getRandomValues(new Uint8Array(size)));
  }
}
