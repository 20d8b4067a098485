// The holds file (repository/holds.ts): round trip, damage detection, which file is valid for a
// committed transaction, expiry.

import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HoldTable, HoldsFormatError, holdsFileIds, readHolds, removeOlderHolds, removeUncommittedHolds, writeHolds } from "../../../src/repository/holds.ts";
import { tempDir } from "../../support/env.ts";

function id(n: number): Uint8Array {
  const b = new Uint8Array(32);
  b[0] = n;
  b[31] = 0xee;
  return b;
}

describe("holds", () => {
  test("encode and decode keep every field; a flipped byte is detected", () => {
    const t = new HoldTable(null);
    for (let i = 0; i < 1000; i++) t.add(id(i & 0xff), i, i * 10, 41 + i, 1000 + i, 2000 + i, i & 1);
    const back = HoldTable.decode(t.encode(), 7);
    expect(back.count).toBe(1000);
    expect(back.txid).toBe(7);
    for (const i of [0, 1, 500, 999]) {
      expect([...back.id(i)]).toEqual([...id(i & 0xff)]);
      expect([back.segment[i], back.offset[i], back.size[i], back.deletedAt[i], back.until[i], back.flags[i]]).toEqual([i, i * 10, 41 + i, 1000 + i, 2000 + i, i & 1]);
    }
    const bytes = t.encode();
    bytes[100] ^= 1;
    expect(() => HoldTable.decode(bytes, 7)).toThrow(HoldsFormatError);
    expect(() => HoldTable.decode(bytes.subarray(0, bytes.length - 1), 7)).toThrow(HoldsFormatError);
  });

  test("expiry: a hold's own until, or the time lock in force now, whichever is later", () => {
    const t = new HoldTable(null);
    t.add(id(1), 1, 8, 100, 1000, 5000);
    expect(t.isHeld(0, 4999, 0)).toBe(true);
    expect(t.isHeld(0, 5000, 0)).toBe(false);
    expect(t.isHeld(0, 5000, 10_000)).toBe(true);
    expect(t.summary(4000)).toEqual({ records: 1, bytes: 100, until: 5000 });
    expect(t.summary(6000)).toEqual({ records: 0, bytes: 0, until: null });
    expect(t.heldBytesBySegment(4000, 0).get(1)).toBe(100);
    t.add(id(2), 2, 8, 50, 1000, 9000);
    expect(t.filter((i) => t.until[i]! > 6000)).toBe(1);
    expect(t.count).toBe(1);
    expect(t.segment[0]).toBe(2);
  });

  test("the newest file not above the committed transaction is the valid one", () => {
    const repo = tempDir();
    const t = new HoldTable(null);
    t.add(id(1), 3, 8, 100, 1, 2);
    writeHolds(repo, 5, t);
    t.add(id(2), 6, 8, 100, 1, 2);
    writeHolds(repo, 9, t);
    expect(readHolds(repo, 4).count).toBe(0);
    expect(readHolds(repo, 5).count).toBe(1);
    expect(readHolds(repo, 8).txid).toBe(5);
    expect(readHolds(repo, 12).count).toBe(2);
    removeUncommittedHolds(repo, 8);
    expect(holdsFileIds(repo)).toEqual([5]);
    writeHolds(repo, 9, t);
    removeOlderHolds(repo, 9);
    expect(holdsFileIds(repo)).toEqual([9]);
    const file = join(repo, "burg", "holds.9");
    const bytes = readFileSync(file);
    bytes[20] ^= 0xff;
    writeFileSync(file, bytes);
    expect(() => readHolds(repo, 9)).toThrow(HoldsFormatError);
  });
});
