// Segment files: bytes written by the engine are read by borg's own LoggedIO and vice versa;
// corruption is reported with segment and offset.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { IntegrityError } from "../../../src/errors.ts";
import { COMMIT_ENTRY, TAG_COMMIT, TAG_DELETE, TAG_PUT } from "../../../src/repository/format.ts";
import { SegmentStore } from "../../../src/repository/segments.ts";
import { toHex } from "../../../src/util/hex.ts";
import { borgPython } from "../../support/borg-python.ts";
import { prng, randomBytes } from "../../support/data.ts";
import { tempDir } from "../../support/env.ts";

function newStore(limit = 1 << 20) {
  const dir = tempDir();
  mkdirSync(join(dir, "data"));
  return new SegmentStore(dir, limit, 1000);
}

const READ_WITH_BORG = `
import sys, json
from borg.repository import LoggedIO
io = LoggedIO(sys.argv[1], 1 << 20, 1000)
out = []
for seg, fn in io.segment_iterator():
    for tag, key, offset, data in io.iter_objects(seg, include_data=True):
        out.append([seg, tag, key.hex() if key else None, offset, data.hex() if data is not None else None])
print(json.dumps(out))
`;

describe("segments", () => {
  test("the COMMIT entry is borg's", () => {
    const borgCommit = borgPython("from borg.repository import LoggedIO; print(LoggedIO.COMMIT.hex())").trim();
    expect(toHex(COMMIT_ENTRY)).toBe(borgCommit);
  });

  test("entries written by the engine are read by borg", () => {
    const io = newStore(4096);
    const rand = prng(5);
    const written: Array<[number, number, string, number, string | null]> = [];
    for (let i = 0; i < 30; i++) {
      const id = randomBytes(rand, 32);
      const data = randomBytes(rand, Math.floor(rand() * 900));
      const [seg, off] = io.writePut(id, data);
      written.push([seg, TAG_PUT, toHex(id), off, toHex(data)]);
      if (i % 7 === 3) {
        const before = io.offset;
        const [dseg] = io.writeDelete(id);
        written.push([dseg, TAG_DELETE, toHex(id), before, ""]);
      }
    }
    const cseg = io.writeCommit();
    written.push([cseg, TAG_COMMIT, null as unknown as string, 8, ""]);
    io.close();
    const borgSaw = JSON.parse(borgPython(READ_WITH_BORG, [io.path])) as typeof written;
    expect(borgSaw).toEqual(written);
    expect(borgSaw.map((e) => e[0]).filter((s, i, a) => a.indexOf(s) === i).length).toBeGreaterThan(2);
    const io2 = new SegmentStore(io.path, 4096, 1000);
    expect(io2.segmentsTransactionId()).toBe(cseg);
  });

  test("entries written by borg are read by the engine", () => {
    const dir = tempDir();
    mkdirSync(join(dir, "data"));
    const out = borgPython(
      `
import sys, json, os
from borg.repository import LoggedIO
io = LoggedIO(sys.argv[1], 1 << 20, 1000)
res = []
for i in range(50):
    key = os.urandom(32); data = os.urandom(i * 37)
    seg, off = io.write_put(key, data)
    res.append([seg, 0, key.hex(), off, data.hex()])
    if i % 5 == 0:
        before = io.offset
        seg, size = io.write_delete(key)
        res.append([seg, 1, key.hex(), before, ""])
io.write_commit()
io.close()
print(json.dumps(res))
`,
      [dir],
    );
    const expected = JSON.parse(out) as Array<[number, number, string, number, string]>;
    const io = new SegmentStore(dir, 1 << 20, 1000);
    const seen: Array<[number, number, string, number, string]> = [];
    for (const seg of io.listSegments()) {
      for (const e of io.iterObjects(seg, { includeData: true })) {
        if (e.tag === TAG_COMMIT) continue;
        seen.push([seg, e.tag, toHex(e.key!), e.offset, e.tag === TAG_PUT ? toHex(e.data!) : ""]);
      }
    }
    expect(seen).toEqual(expected);
    for (const [seg, tag, key, off, data] of expected) {
      if (tag === TAG_PUT) expect(toHex(io.read(seg, off, Buffer.from(key, "hex")))).toBe(data);
    }
    expect(io.segmentsTransactionId()).toBe(io.latestSegment());
  });

  test("corruption names segment and offset", () => {
    const io = newStore();
    const id = new Uint8Array(32).fill(7);
    io.writePut(id, new Uint8Array(100).fill(1));
    const [, off2] = io.writePut(new Uint8Array(32).fill(8), new Uint8Array(100).fill(2));
    io.writeCommit();
    const file = io.segmentFilename(0);
    const bytes = readFileSync(file);
    bytes[off2 + 60] ^= 0x10;
    writeFileSync(file, bytes);
    const fresh = new SegmentStore(io.path, 1 << 20, 1000);
    expect(() => [...fresh.iterObjects(0)]).toThrow(new IntegrityError(`Segment entry checksum mismatch [segment 0, offset ${off2}]`).message);
    expect(() => fresh.read(0, off2, new Uint8Array(32).fill(8))).toThrow(IntegrityError);
    expect(fresh.isCommittedSegment(0)).toBe(false);
    expect(fresh.read(0, 8, id).length).toBe(100);
  });

  test("recovery keeps every intact entry after damage", () => {
    const io = newStore();
    const ids = [1, 2, 3, 4].map((v) => new Uint8Array(32).fill(v));
    const offs = ids.map((id, i) => io.writePut(id, new Uint8Array(500).fill(i))[1]);
    io.writeCommit();
    const file = io.segmentFilename(0);
    const bytes = readFileSync(file);
    bytes[offs[1]! + 5] ^= 0xff; // damage entry 2's size field
    writeFileSync(file, bytes);
    io.recoverSegment(0);
    const keys: number[] = [];
    for (const e of io.iterObjects(0)) keys.push(e.key ? e.key[0]! : -1);
    expect(keys).toEqual([1, 3, 4]);
  });
});
