// Engine features beyond plain put/get, each checked against borg: rebuilding a missing or
// damaged index/hints file with borg's warnings, append-only mode, storage quota, keys, the
// nonce (never lowered), commit-only segments, pagination of list().

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Repository } from "../../src/repository/repository.ts";
import { log } from "../../src/util/log.ts";
import { borgPython } from "../support/borg-python.ts";
import { prng, randomBytes } from "../support/data.ts";
import { borgEnv, requireBorg, run, tempDir } from "../support/env.ts";

function captureLog(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const sink = log.sink;
  log.sink = { write: (l: string) => void lines.push(l) };
  return { lines, restore: () => void (log.sink = sink) };
}

async function filledRepo(n = 100): Promise<{ path: string; ids: Uint8Array[]; home: string }> {
  const home = tempDir();
  const path = join(home, "repo");
  const repo = await Repository.open(path, { create: true, exclusive: true });
  const rand = prng(n);
  const ids: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomBytes(rand, 32);
    ids.push(id);
    await repo.put(id, randomBytes(rand, 1000));
  }
  await repo.commit();
  repo.close();
  return { path, ids, home };
}

function transactionFiles(path: string): string[] {
  return readdirSync(path)
    .filter((n) => /^(index|hints|integrity)\.\d+$/.test(n))
    .sort();
}

function borgCheckOk(home: string, path: string): void {
  const r = run([requireBorg(), "check", "--repository-only", "-v", path], { env: borgEnv(home) });
  if (r.code !== 0 || !r.stderr.includes("no problems found")) throw new Error(`borg check failed:\n${r.stderr}`);
}

describe("index and hints recovery", () => {
  for (const damage of ["missing index", "corrupt index", "missing hints", "corrupt hints", "corrupt integrity"]) {
    test(`${damage}: rebuilt from the segments with borg's warning`, async () => {
      const { path, ids, home } = await filledRepo(120);
      const files = transactionFiles(path);
      const file = (p: string) => join(path, files.find((f) => f.startsWith(p))!);
      if (damage === "missing index") unlinkSync(file("index."));
      if (damage === "missing hints") unlinkSync(file("hints."));
      if (damage.startsWith("corrupt")) {
        const f = file(damage.split(" ")[1] + ".");
        const b = readFileSync(f);
        b[Math.floor(b.length / 2)] ^= 0x55;
        writeFileSync(f, b);
      }
      const cap = captureLog();
      try {
        const repo = await Repository.open(path, { exclusive: true });
        try {
          expect(await repo.len()).toBe(120);
          for (const id of ids) expect((await repo.get(id)).length).toBe(1000);
          await repo.put(new Uint8Array(32).fill(9), new Uint8Array(5));
          await repo.commit();
        } finally {
          repo.close();
        }
      } finally {
        cap.restore();
      }
      const text = cap.lines.join("");
      // borg replays silently when the index is simply missing, and warns when a file is damaged
      if (damage === "missing index") expect(text).toBe("");
      else if (damage.includes("hints")) expect(text).toContain("Repository hints file missing or corrupted, trying to recover");
      else expect(text).toMatch(/Repository index missing or corrupted, trying to recover from|Checking repository transaction due to previous error/);
      expect(transactionFiles(path).length).toBe(3);
      borgCheckOk(home, path);
    });
  }
});

describe("append-only", () => {
  test("never compacts, logs transactions, refuses destroy", async () => {
    const home = tempDir();
    const path = join(home, "repo");
    let repo = await Repository.open(path, { create: true, exclusive: true, appendOnly: true });
    const id = new Uint8Array(32).fill(1);
    await repo.put(id, new Uint8Array(100));
    await repo.commit();
    await repo.delete(id);
    await repo.commit({ compact: true, threshold: 0 });
    const segments = readdirSync(join(path, "data", "0")).length;
    expect(segments).toBeGreaterThanOrEqual(3); // the PUT's segment is kept
    expect(readFileSync(join(path, "transactions"), "utf8")).toMatch(/^transaction \d+, UTC time \d{4}-\d\d-\d\dT/m);
    expect(() => repo.destroy()).toThrow(/append-only mode/);
    repo.close();
    // borg sees the delete, but the old PUT is still on disk for an operator to roll back to
    expect(borgPython(`
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=False) as r:
    print(len(r), r.config.get('repository', 'append_only'))
`, [path]).trim()).toBe("0 1");
    borgCheckOk(home, path);
  });
});

describe("storage quota", () => {
  test("a transaction over the quota is doomed with borg's error", async () => {
    const home = tempDir();
    const path = join(home, "repo");
    const repo = await Repository.open(path, { create: true, exclusive: true, storageQuota: 10_000 });
    await repo.put(new Uint8Array(32).fill(1), new Uint8Array(5000));
    await expect(repo.put(new Uint8Array(32).fill(2), new Uint8Array(6000))).rejects.toThrow(
      /The storage quota \(10.00 kB\) has been exceeded \(11.08 kB\)/,
    );
    await expect(repo.commit()).rejects.toThrow(/storage quota/);
    repo.close();
    const again = await Repository.open(path, { exclusive: true });
    expect(await again.len()).toBe(0);
    again.close();
    borgCheckOk(home, path);
  });
});

describe("a transaction that cannot start", () => {
  // Found by the fuzzer (serve-fuzz.test.ts): open with exclusive=False, then write.
  test("leaves none open: every later write gets the same error, never one about a missing index", async () => {
    const home = tempDir();
    const path = join(home, "repo");
    const first = await Repository.open(path, { create: true, exclusive: true });
    await first.put(new Uint8Array(32).fill(9), new Uint8Array(10));
    await first.commit();
    first.close();
    const repo = await Repository.open(path, { exclusive: false });
    try {
      for (let i = 0; i < 3; i++) {
        await expect(repo.put(new Uint8Array(32).fill(i), new Uint8Array(10))).rejects.toThrow("bug in code, exclusive lock should exist here");
        expect(repo.activeTxn).toBe(false);
      }
      await expect(repo.delete(new Uint8Array(32))).rejects.toThrow("bug in code, exclusive lock should exist here");
      expect(await repo.len()).toBe(1);
    } finally {
      repo.close();
    }
    borgCheckOk(home, path);
  });
});

describe("keys and nonces", () => {
  test("save_key/load_key round-trip through borg's config", async () => {
    const { path } = await filledRepo(1);
    const key = "hqlhbGdvcml0aG2mc2hhMjU2pGRhdGHaAZ5CZlXGJi4W4C3\nLpIbNhWA8N7hc6TyO0yAzGRCFXcEWA==";
    const repo = await Repository.open(path, { exclusive: true });
    repo.saveKey(new TextEncoder().encode(key));
    repo.close();
    const seen = borgPython(`
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r:
    print(r.load_key().decode())
`, [path]).trim();
    expect(seen).toBe(key);
    const again = await Repository.open(path, { exclusive: true });
    expect(new TextDecoder().decode(again.loadKey())).toBe(key);
    again.close();
  });

  test("nonce reservations work like borg's and are never lowered", async () => {
    const { path } = await filledRepo(1);
    const repo = await Repository.open(path, { exclusive: true });
    try {
      expect(repo.getFreeNonce()).toBeNull();
      repo.commitNonceReservation(0x1000, null);
      expect(repo.getFreeNonce()).toBe(0x1000n);
      expect(() => repo.commitNonceReservation(0x2000, 0x999)).toThrow(/mismatched previous state/);
      expect(() => repo.commitNonceReservation(0x10, 0x1000)).toThrow(/refusing to lower the repository nonce/);
      expect(repo.getFreeNonce()).toBe(0x1000n);
      repo.commitNonceReservation(0x2000, 0x1000);
    } finally {
      repo.close();
    }
    expect(readFileSync(join(path, "nonce"), "utf8")).toBe("0000000000002000");
    const borgNonce = borgPython(`
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r:
    print(r.get_free_nonce())
`, [path]).trim();
    expect(borgNonce).toBe(String(0x2000));
  });
});

describe("uncommitted data", () => {
  test("segments after the last commit are removed on the next transaction", async () => {
    const { path } = await filledRepo(10);
    const repo = await Repository.open(path, { exclusive: true });
    await repo.put(new Uint8Array(32).fill(7), new Uint8Array(100));
    repo.io!.flushWrites();
    repo.close(); // no commit
    const repo2 = await Repository.open(path, { exclusive: true });
    expect(await repo2.len()).toBe(10);
    expect(await repo2.contains(new Uint8Array(32).fill(7))).toBe(false);
    await repo2.put(new Uint8Array(32).fill(8), new Uint8Array(100));
    await repo2.commit();
    repo2.close();
    const segs = readdirSync(join(path, "data", "0")).map(Number).sort((a, b) => a - b);
    // the uncommitted segment number was reused by the new transaction, nothing dangling
    expect(existsSync(join(path, "data", "0", String(segs[segs.length - 1])))).toBe(true);
  });
});
