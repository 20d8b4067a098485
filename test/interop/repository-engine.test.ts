// The engine against repositories written by real borg, and real borg against what the engine
// leaves behind: borg init/create/delete/prune/compact, then the engine reads every object,
// then it writes, deletes, commits and compacts, then plain borg check and extract agree.

import { describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { Repository } from "../../src/repository/repository.ts";
import { toHex } from "../../src/util/hex.ts";
import { borgObjectIds, borgPython } from "../support/borg-python.ts";
import { assertSameTree, makeSourceTree, prng, randomBytes } from "../support/data.ts";
import { borgEnv, requireBorg, run, tempDir } from "../support/env.ts";

function borg(home: string, args: string[], extraEnv: Record<string, string> = {}) {
  const r = run([requireBorg(), ...args], { env: borgEnv(home, extraEnv) });
  if (r.code !== 0) throw new Error(`borg ${args.join(" ")} failed (${r.code}):\n${r.stderr}`);
  return r;
}

async function engineObjectIds(repo: Repository): Promise<string[]> {
  const ids: string[] = [];
  let marker: Uint8Array | null = null;
  for (;;) {
    const page: Uint8Array[] = await repo.list(1000, marker);
    if (page.length === 0) break;
    for (const id of page) ids.push(toHex(id));
    marker = page[page.length - 1]!;
  }
  return ids;
}

for (const encryption of ["none", "repokey"]) {
  describe(`engine on a repository made by borg (-e ${encryption})`, () => {
    test(
      "reads every object, writes, deletes, compacts; borg check and extract agree",
      async () => {
        const home = tempDir();
        const env = { BORG_PASSPHRASE: "secret words" };
        const repoPath = join(home, "repo");
        const src = join(home, "src");
        makeSourceTree(src, { seed: 7, files: 60, totalBytes: 3_000_000 });
        borg(home, ["init", "-e", encryption, repoPath], env);
        borg(home, ["create", "-C", "lz4", `${repoPath}::a1`, src], env);
        makeSourceTree(join(src, "more"), { seed: 8, files: 20, totalBytes: 1_000_000 });
        borg(home, ["create", `${repoPath}::a2`, src], env);
        borg(home, ["create", `${repoPath}::a3`, src], env);
        borg(home, ["delete", `${repoPath}::a2`], env);
        // prune's --keep-last counts archives per second: keep a3 and a4 in different seconds
        await Bun.sleep(1100);
        borg(home, ["create", `${repoPath}::a4`, join(src, "more")], env);
        borg(home, ["prune", "--keep-last", "2", repoPath], env);
        borg(home, ["compact", repoPath], env);
        const expected = new Set(borgObjectIds(repoPath));
        expect(expected.size).toBeGreaterThan(50);

        const repo = await Repository.open(repoPath, { exclusive: true, lockWait: 5 });
        try {
          const ids = await engineObjectIds(repo);
          expect(ids.length).toBe(expected.size);
          expect(new Set(ids)).toEqual(expected);
          expect(await repo.len()).toBe(expected.size);
          // every object reads back with a valid CRC (get verifies it)
          for (const hex of ids) {
            const data = await repo.get(Buffer.from(hex, "hex"));
            expect(data.length).toBeGreaterThan(0);
          }
          // scan() pages through the same set in on-disk order
          const scanned: string[] = [];
          let marker: Uint8Array | null = null;
          for (;;) {
            const page: Uint8Array[] = await repo.scan(97, marker);
            if (page.length === 0) break;
            for (const id of page) scanned.push(toHex(id));
            marker = page[page.length - 1]!;
          }
          expect(new Set(scanned)).toEqual(expected);
          expect(scanned.length).toBe(expected.size);

          // the engine writes: random objects, then a commit; then deletes them again and compacts
          const rand = prng(99);
          const mine: Uint8Array[] = [];
          for (let i = 0; i < 300; i++) {
            const id = randomBytes(rand, 32);
            mine.push(id);
            await repo.put(id, randomBytes(rand, 1 + Math.floor(rand() * 70_000)));
          }
          await repo.commit({ compact: false });
          for (const id of mine) expect((await repo.get(id)).length).toBeGreaterThan(0);
          expect(await repo.len()).toBe(expected.size + 300);
        } finally {
          repo.close();
        }
        // borg sees the new objects, and the segments are sound
        expect(new Set(borgObjectIds(repoPath)).size).toBe(expected.size + 300);
        borg(home, ["check", "--repository-only", repoPath], env);

        const repo2 = await Repository.open(repoPath, { exclusive: true, lockWait: 5 });
        try {
          const rand = prng(99);
          for (let i = 0; i < 300; i++) {
            const id = randomBytes(rand, 32);
            randomBytes(rand, 1 + Math.floor(rand() * 70_000));
            await repo2.delete(id);
          }
          await repo2.commit({ compact: true, threshold: 0.1 });
          expect(await repo2.len()).toBe(expected.size);
        } finally {
          repo2.close();
        }
        expect(new Set(borgObjectIds(repoPath))).toEqual(expected);
        // full check (archives too): no orphans, nothing missing
        borg(home, ["check", repoPath], env);
        const out = join(home, "out");
        mkdirSync(out);
        const r = run([requireBorg(), "extract", `${repoPath}::a3`], { env: borgEnv(home, env), cwd: out });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
        assertSameTree(src, join(out, src.slice(1)));
      },
      180_000,
    );
  });
}

describe("engine-created repository", () => {
  test("borg accepts a repository the engine created and filled", async () => {
    const home = tempDir();
    const repoPath = join(home, "repo");
    const repo = await Repository.open(repoPath, { create: true, exclusive: true, lockWait: 5 });
    const rand = prng(3);
    const ids: Uint8Array[] = [];
    try {
      for (let i = 0; i < 200; i++) {
        const id = randomBytes(rand, 32);
        ids.push(id);
        await repo.put(id, randomBytes(rand, Math.floor(rand() * 5000)));
      }
      await repo.commit();
      for (let i = 0; i < 100; i++) await repo.delete(ids[i]!);
      await repo.commit({ compact: true, threshold: 0 });
      await repo.put(ids[0]!, new TextEncoder().encode("again"));
      await repo.commit();
    } finally {
      repo.close();
    }
    const seen = new Set(borgObjectIds(repoPath));
    expect(seen.size).toBe(101);
    expect(seen.has(toHex(ids[0]!))).toBe(true);
    expect(seen.has(toHex(ids[1]!))).toBe(false);
    const r = run([requireBorg(), "check", "--repository-only", "-v", repoPath], { env: borgEnv(home) });
    expect(r.stderr).toContain("no problems found");
    expect(r.code).toBe(0);
    const data = borgPython(
      `
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=False) as r:
    print(r.get(bytes.fromhex(sys.argv[2])).decode())
`,
      [repoPath, toHex(ids[0]!)],
    );
    expect(data.trim()).toBe("again");
  });

  test("refuses to create inside a repository or over a non-empty directory", async () => {
    const home = tempDir();
    const repoPath = join(home, "repo");
    (await Repository.open(repoPath, { create: true, exclusive: true })).close();
    await expect(Repository.open(repoPath, { create: true, exclusive: true })).rejects.toThrow(/already exists/);
    await expect(Repository.open(join(repoPath, "data", "x"), { create: true, exclusive: true })).rejects.toThrow(
      /already exists/,
    );
    const busy = join(home, "busy");
    mkdirSync(join(busy, "sub"), { recursive: true });
    await expect(Repository.open(busy, { create: true, exclusive: true })).rejects.toThrow(/There is already something/);
    await expect(Repository.open(join(home, "missing"), { exclusive: true })).rejects.toThrow(/does not exist/);
  });
});
