// The time lock in the engine (`keepDeleted`): deletes and overwrites of committed entries are
// held through compaction until they expire; held entries that compaction copies forward never
// come back to life when plain borg rebuilds the index from the segments; expired holds are
// freed; plain borg's own compaction drops what is held.

import { describe, expect, test } from "bun:test";
import { readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { readHolds } from "../../src/repository/holds.ts";
import { Repository } from "../../src/repository/repository.ts";
import { toHex } from "../../src/util/hex.ts";
import { borgPython } from "../support/borg-python.ts";
import { prng, randomBytes } from "../support/data.ts";
import { tempDir } from "../support/env.ts";

const MANIFEST = new Uint8Array(32);

function idOf(n: number): Uint8Array {
  const id = new Uint8Array(32);
  new DataView(id.buffer).setUint32(0, n + 1);
  id[31] = 0x5a;
  return id;
}

/** Live ids as plain borg sees them after rebuilding its index from the segments (index and hints removed). */
function borgReplayedIds(repo: string): Map<string, string> {
  for (const name of readdirSync(repo)) {
    if (/^(index|hints|integrity)\.\d+$/.test(name)) rmSync(join(repo, name));
  }
  const out = borgPython(
    `
import sys, hashlib
from borg.logger import setup_logging
setup_logging(level="error")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r:
    assert r.check(), "borg check failed"
    marker = None
    while True:
        page = r.list(limit=1000, marker=marker)
        if not page:
            break
        for i in page:
            print(i.hex(), hashlib.sha256(r.get(i)).hexdigest())
        marker = page[-1]
`,
    [repo],
  );
  return new Map(out.split("\n").filter(Boolean).map((l) => l.split(" ") as [string, string]));
}

async function sha(data: Uint8Array): Promise<string> {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

function repoBytes(repo: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else total += statSync(join(d, e.name)).size;
    }
  };
  walk(join(repo, "data"));
  return total;
}

describe("time lock in the engine", () => {
  test("held entries survive compaction, are copied forward without resurrecting, expire, and plain borg agrees", async () => {
    const dir = tempDir();
    const path = join(dir, "repo");
    const rand = prng(11);
    const original = new Map<number, Uint8Array>();
    // Transaction 1, without a time lock: 400 objects of 8 KiB and a manifest.
    let repo = await Repository.open(path, { create: true, exclusive: true });
    for (let i = 0; i < 400; i++) {
      const data = randomBytes(rand, 8192);
      original.set(i, data);
      await repo.put(idOf(i), data);
    }
    await repo.put(MANIFEST, new TextEncoder().encode("manifest v1"));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    // Objects 0-99 deleted without a time lock: their segment gets freeable space.
    for (let i = 0; i < 100; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    const unlockedTxid = repo.getIndexTransactionId()!;
    repo.close();

    // Under a time lock of an hour: 100-199 deleted, 200-219 overwritten with garbage, the manifest rewritten.
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    for (let i = 100; i < 200; i++) await repo.delete(idOf(i));
    for (let i = 200; i < 220; i++) await repo.put(idOf(i), new TextEncoder().encode(`garbage ${i}`));
    await repo.put(MANIFEST, new TextEncoder().encode("manifest v2"));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
    const txid = repo.getIndexTransactionId();
    repo.close();

    const holds = readHolds(path, txid);
    expect(holds.count).toBe(100 + 20 + 1);
    // the chunks' segment was compacted (0-99 were freeable): their held entries were copied forward
    for (let h = 0; h < holds.count; h++) if (holds.id(h)[31] === 0x5a) expect(holds.segment[h]!).toBeGreaterThan(unlockedTxid);
    // compaction ran (0-99 freed) and copied the held entries out of the compacted segment
    const seen = new Map<string, number>();
    const check = await Repository.open(path, { exclusive: true });
    for (let h = 0; h < holds.count; h++) {
      const id = holds.id(h);
      const data = check.io!.read(holds.segment[h]!, holds.offset[h]!, id) as Uint8Array;
      seen.set(toHex(id), data.length);
      const n = new DataView(id.buffer, id.byteOffset).getUint32(0) - 1;
      if (id[31] === 0x5a) expect(await sha(data)).toBe(await sha(original.get(n)!));
      else expect(new TextDecoder().decode(data)).toBe("manifest v1");
    }
    expect(seen.size).toBe(121);
    expect(await check.len()).toBe(200 + 1);
    check.close();

    // Plain borg, rebuilding its index from the segments, sees exactly the live objects with their live data.
    const live = borgReplayedIds(path);
    expect(live.size).toBe(201);
    for (let i = 0; i < 200; i++) expect(live.has(toHex(idOf(i)))).toBe(false);
    for (let i = 200; i < 220; i++) expect(live.get(toHex(idOf(i)))).toBe(await sha(new TextEncoder().encode(`garbage ${i}`)));
    for (let i = 220; i < 400; i++) expect(live.get(toHex(idOf(i)))).toBe(await sha(original.get(i)!));
    expect(live.get(toHex(MANIFEST))).toBe(await sha(new TextEncoder().encode("manifest v2")));

    // A session without a time lock still honours the holds: compaction keeps them.
    const before = repoBytes(path);
    repo = await Repository.open(path, { exclusive: true });
    await repo.commit({ compact: true, threshold: 0, cleanupCommits: true });
    const txid2 = repo.getIndexTransactionId();
    repo.close();
    expect(readHolds(path, txid2).count).toBe(121);
    expect(repoBytes(path)).toBeGreaterThan(before - 100_000);

    // Once expired (a time lock of 1 s in the deleting session), compaction frees them.
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 1 });
    for (let i = 220; i < 300; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
    expect(readHolds(path, repo.getIndexTransactionId()).count).toBe(121 + 80);
    repo.close();
    await Bun.sleep(1200);
    // the hour-long holds stay; the 1 s ones go
    repo = await Repository.open(path, { exclusive: true });
    await repo.commit({ compact: true, threshold: 0, cleanupCommits: false });
    expect(readHolds(path, repo.getIndexTransactionId()).count).toBe(121);
    repo.close();
    expect(borgReplayedIds(path).size).toBe(201 - 80);
  });

  test("plain borg compact drops held data; burg forgets those holds", async () => {
    const dir = tempDir();
    const path = join(dir, "repo");
    const rand = prng(5);
    let repo = await Repository.open(path, { create: true, exclusive: true });
    for (let i = 0; i < 100; i++) await repo.put(idOf(i), randomBytes(rand, 16384));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    repo.close();
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    for (let i = 0; i < 90; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
    repo.close();
    const held = repoBytes(path);
    expect(held).toBeGreaterThan(90 * 16384);
    borgPython(
      `
import sys
from borg.logger import setup_logging
setup_logging(level="error")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r:
    some = bytes.fromhex(sys.argv[2])
    r.put(some, r.get(some))
    r.commit(compact=True, threshold=0.1)
`,
      [path, toHex(idOf(99))],
    );
    expect(repoBytes(path)).toBeLessThan(20 * 16384);
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    await repo.delete(idOf(95));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
    expect(readHolds(path, repo.getIndexTransactionId()).count).toBe(1);
    repo.close();
  });

  test("holds survive a repair that rewrites their segment at new offsets", async () => {
    const dir = tempDir();
    const path = join(dir, "repo");
    const rand = prng(9);
    const data = new Map<number, Uint8Array>();
    let repo = await Repository.open(path, { create: true, exclusive: true });
    for (let i = 0; i < 100; i++) {
      data.set(i, randomBytes(rand, 8192));
      await repo.put(idOf(i), data.get(i)!);
    }
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    const index = await repo.openIndex(await repo.getTransactionId());
    const b = index.lookup(idOf(0));
    const [seg0, off0] = [index.segmentAt(b), index.offsetAt(b)];
    for (let i = 0; i < 10; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    repo.close();
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    for (let i = 50; i < 60; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    // damage the (dead) first entry: the repair drops it and every later entry moves up
    const file = repo.io!.segmentFilename(seg0);
    repo.close();
    const bytes = new Uint8Array(await Bun.file(file).arrayBuffer());
    bytes[off0 + 100] ^= 0xff;
    await Bun.write(file, bytes);
    repo = await Repository.open(path, { exclusive: true });
    await repo.check({ repair: true, maxDuration: 0 });
    repo.close();
    repo = await Repository.open(path, { exclusive: true });
    await repo.commit({ compact: true, threshold: 0, cleanupCommits: false });
    const holds = readHolds(path, repo.getIndexTransactionId());
    const chunks = [...Array(holds.count).keys()].filter((h) => holds.id(h)[31] === 0x5a);
    expect(chunks.length).toBe(10);
    for (const h of chunks) {
      const id = holds.id(h);
      const n = new DataView(id.buffer, id.byteOffset).getUint32(0) - 1;
      expect(n).toBeGreaterThanOrEqual(50);
      expect(n).toBeLessThan(60);
      const back = repo.io!.read(holds.segment[h]!, holds.offset[h]!, id) as Uint8Array;
      expect(await sha(back)).toBe(await sha(data.get(n)!));
    }
    repo.close();
    expect(borgReplayedIds(path).size).toBe(80);
  });

  test("a damaged holds file: backups go on, compaction stops until the operator removes it, nothing is lost", async () => {
    const dir = tempDir();
    const path = join(dir, "repo");
    const rand = prng(3);
    let repo = await Repository.open(path, { create: true, exclusive: true });
    for (let i = 0; i < 20; i++) await repo.put(idOf(i), randomBytes(rand, 4096));
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    repo.close();
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    for (let i = 0; i < 10; i++) await repo.delete(idOf(i));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
    repo.close();
    const name = readdirSync(join(path, "burg")).find((n) => n.startsWith("holds."))!;
    const file = join(path, "burg", name);
    const bytes = new Uint8Array(await Bun.file(file).arrayBuffer());
    bytes[30] ^= 0xff;
    await Bun.write(file, bytes);
    const before = repoBytes(path);
    repo = await Repository.open(path, { exclusive: true, keepDeleted: 3600 });
    await repo.delete(idOf(10)); // a time-locked delete still works
    await repo.put(idOf(11), new TextEncoder().encode("new data"));
    await repo.commit({ compact: true, threshold: 0, cleanupCommits: false });
    const txid = repo.getIndexTransactionId();
    repo.close();
    expect(readdirSync(join(path, "burg"))).toContain(`${name}.damaged`);
    expect(readHolds(path, txid).count).toBe(2); // the delete and the overwrite
    expect(repoBytes(path)).toBeGreaterThanOrEqual(before); // nothing compacted away
    expect(borgReplayedIds(path).size).toBe(9);
    // the operator gives up the damaged records: compaction runs again
    rmSync(`${file}.damaged`);
    repo = await Repository.open(path, { exclusive: true });
    await repo.commit({ compact: true, threshold: 0, cleanupCommits: false });
    repo.close();
    expect(repoBytes(path)).toBeLessThan(before);
  });
});
