// FileIndex (the index of a session that only reads, answered from index.N with pread) against
// the table NSIndex loads from the same file: same answers, same moves into tombstones, same
// list order, and toTable() equal to that table.

import { describe, expect, test } from "bun:test";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FileIntegrityError } from "../../../src/errors.ts";
import { FileIndex } from "../../../src/repository/file-index.ts";
import { NSIndex } from "../../../src/repository/hashindex.ts";
import { readIndexFile, writeIndexFile } from "../../../src/repository/integrity.ts";
import { tempDir } from "../../support/env.ts";

function rng(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
}

function key(rand: () => number): Uint8Array {
  const k = new Uint8Array(32);
  for (let i = 0; i < 32; i++) k[i] = Math.floor(rand() * 256);
  return k;
}

/** An index of `n` keys with every third one deleted again (tombstones), written with its digests. */
function fixture(n: number) {
  const rand = rng(n);
  const idx = NSIndex.create();
  const keys: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const k = key(rand);
    keys.push(k);
    idx.set(k, i % 1000, i * 41);
  }
  const deleted = keys.filter((_, i) => i % 3 === 0);
  for (const k of deleted) idx.delete(k);
  const dir = tempDir("burg-file-index-");
  const path = join(dir, "index.7");
  const integrity = writeIndexFile(path, "index.7", idx);
  const absent = Array.from({ length: 200 }, () => key(rand));
  return { path, integrity, keys, deleted, absent };
}

describe("FileIndex", () => {
  test("lookups, moves into tombstones, list order and the table equal NSIndex's (50,000 keys)", () => {
    const f = fixture(50_000);
    const table = readIndexFile(f.path, f.integrity);
    const file = FileIndex.open(f.path, f.integrity, 7)!;
    expect(file).not.toBeNull();
    expect(file.size).toBe(table.size);
    // list from the start and after a marker, before any lookup moved anything
    expect([...file.entries()].map(([k, s, o]) => `${k}:${s}:${o}`)).toEqual([...table.entries()].map(([k, s, o]) => `${k}:${s}:${o}`));
    let moved = 0;
    for (const k of [...f.keys, ...f.absent]) {
      const b = table.lookup(k);
      const before = file.overlayBuckets;
      expect(file.lookup(k)).toBe(b);
      if (file.overlayBuckets > before) moved++;
      if (b >= 0) {
        expect(file.segmentAt(b)).toBe(table.segmentAt(b));
        expect(file.offsetAt(b)).toBe(table.offsetAt(b));
      }
      expect(file.has(k)).toBe(table.has(k));
    }
    expect(moved).toBeGreaterThan(0); // the fixture's tombstones made lookups move entries
    const marker = f.keys[1]!;
    expect([...file.entries(marker)].map(([k]) => k.join())).toEqual([...table.entries(marker)].map(([k]) => k.join()));
    expect(Buffer.from(file.toTable().bucketBytes()).equals(Buffer.from(table.bucketBytes()))).toBe(true);
    file.close();
  });

  test("a damaged file fails its digest like readIndexFile; a table borg rebuilds on loading is not served", () => {
    const f = fixture(2_000);
    const bytes = readFileSync(f.path);
    bytes[bytes.length - 100]! ^= 1;
    writeFileSync(f.path, bytes);
    expect(() => readIndexFile(f.path, f.integrity)).toThrow(FileIntegrityError);
    expect(() => FileIndex.open(f.path, f.integrity, 7)).toThrow(FileIntegrityError);

    // a table of tombstones with 10 empty buckets (borg needs 73 of 1031): loading rebuilds it
    const header = NSIndex.create(1031).headerBytes();
    const buckets = new Uint8Array(1031 * 40);
    const dv = new DataView(buckets.buffer);
    for (let b = 0; b < 1031; b++) dv.setUint32(b * 40 + 32, b % 100 === 0 ? 0xffffffff : 0xfffffffe, true);
    const path = join(tempDir("burg-file-index-"), "index.3");
    writeFileSync(path, Buffer.concat([header, buckets]));
    expect(readIndexFile(path, null).emptyBuckets).toBe(1031); // rebuilt: the tombstones are gone
    expect(FileIndex.open(path, null, 3)).toBeNull();
  });
});
