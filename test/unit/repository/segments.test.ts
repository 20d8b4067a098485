// Segment files: bytes written by the engine are read by borg's own LoggedIO and vice versa;
// corruption is reported with segment and offset.

import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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

  test("compaction's copy: entries of every size move as they are, only what is copied is read, a damaged one is cut off again", () => {
    const src = newStore(64 << 20);
    const rand = prng(11);
    const sizes = [100, 100_000, 300_000, 1_500_000, 5];
    const put: Array<[number, Uint8Array]> = [];
    for (let i = 0; i < sizes.length; i++) {
      const id = new Uint8Array(32).fill(i + 1);
      const [, off] = src.writePut(id, randomBytes(rand, sizes[i]!));
      put.push([off, id]);
    }
    src.writeDelete(new Uint8Array(32).fill(9));
    src.writeCommit();
    const original = readFileSync(src.segmentFilename(0));
    const copyAll = (from: SegmentStore, to: SegmentStore, skip = new Set<number>()) => {
      for (const e of from.iterObjects(0, { copying: true })) {
        if (e.tag === TAG_PUT && !skip.has(e.offset)) to.copyPut(e, 0);
        else if (e.tag === TAG_DELETE) expect(from.entryView(e, 0).length).toBe(41);
      }
    };
    const dst = newStore(64 << 20);
    copyAll(src, dst);
    dst.writeCommit();
    // the PUTs, byte for byte, in order (the DELETE and the COMMIT were not copied)
    const copied = readFileSync(dst.segmentFilename(0));
    const putsEnd = put[put.length - 1]![0] + 41 + 5;
    expect(Buffer.compare(copied.subarray(0, putsEnd), original.subarray(0, putsEnd))).toBe(0);
    for (const [off, id] of put) expect(toHex(dst.read(0, off, id))).toBe(toHex(src.read(0, off, id)));

    // A damaged entry: the one of several pieces near its end, a small one at its start.
    for (const [which, at] of [[3, 1_400_000], [0, 45]] as const) {
      const bytes = Buffer.from(original);
      const off = put[which]![0];
      bytes[off + at] ^= 0x01;
      writeFileSync(src.segmentFilename(0), bytes);
      const from = new SegmentStore(src.path, 64 << 20, 1000);
      const to = newStore(64 << 20);
      expect(() => copyAll(from, to)).toThrow(new IntegrityError(`Segment entry checksum mismatch [segment 0, offset ${off}]`).message);
      // the destination ends where the damaged entry would have begun
      to.flushWrites();
      expect(readFileSync(to.segmentFilename(0)).length).toBe(off);
      from.close();
      to.close();
    }
    // Dropped entries are not read: damage in one that is skipped goes unnoticed.
    const bytes = Buffer.from(original);
    bytes[put[3]![0] + 1_000_000] ^= 0x01;
    writeFileSync(src.segmentFilename(0), bytes);
    const from = new SegmentStore(src.path, 64 << 20, 1000);
    const to = newStore(64 << 20);
    copyAll(from, to, new Set([put[3]![0]]));
    to.writeCommit();
    expect([...to.iterObjects(0)].filter((e) => e.tag === TAG_PUT).length).toBe(4);
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

  test("recovery writes the same bytes as borg's recover_segment, for many kinds of damage", () => {
    const RECOVER_WITH_BORG = `
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import LoggedIO
io = LoggedIO(sys.argv[1], 1 << 30, 1000)
for seg in map(int, sys.argv[2:]):
    io.recover_segment(seg, io.segment_filename(seg))
`;
    // One segment of small entries with DELETEs, then one larger than the recovery's 8 MiB read
    // buffer (so it has to grow), a few more and a commit; one damaged copy per case. The damage
    // stays in front of the big entry: after damage, recovery tries every byte position, which
    // takes borg's Python seconds per MB.
    const io = newStore(1 << 30);
    const rand = prng(99);
    for (let i = 0; i < 46; i++) {
      const size = i === 40 ? 8_700_000 : Math.floor(rand() * 20_000);
      const id = randomBytes(rand, 32);
      io.writePut(id, randomBytes(rand, size));
      if (i % 7 === 3) io.writeDelete(id);
    }
    io.writeCommit();
    io.close();
    const intact = readFileSync(io.segmentFilename(0));
    const damage: Array<(b: Uint8Array) => Uint8Array> = [
      (b) => b,
      (b) => (b.fill(0, 8, 8 + 4096), b), // the first headers zeroed
      (b) => ((b[150_000]! ^= 0x20), b), // a flip inside an entry
      (b) => ((b[12]! ^= 0xff), b), // the first entry's size field
      (b) => b.subarray(0, b.length - 100), // truncated inside the last entries
      (b) => b.subarray(0, 300_000), // truncated long before the end
      (b) => b.subarray(0, 12), // less than magic + header
      (b) => new Uint8Array(0),
      (b) => Buffer.concat([b.subarray(0, 5000), randomBytes(rand, 300_000), b.subarray(5000)]), // garbage inserted
      (b) => {
        for (let i = 0; i < 30; i++) b[Math.floor(rand() * 200_000)]! ^= 1 << (i % 8);
        return b;
      },
    ];
    const segs = damage.map((_, i) => i + 1);
    for (const dirName of ["burg", "borg"]) mkdirSync(join(io.path, dirName, "data", "0"), { recursive: true });
    damage.forEach((hurt, i) => {
      const bytes = hurt(new Uint8Array(intact));
      for (const dirName of ["burg", "borg"]) writeFileSync(join(io.path, dirName, "data", "0", String(segs[i])), bytes);
    });
    borgPython(RECOVER_WITH_BORG, [join(io.path, "borg"), ...segs.map(String)]);
    const ours = new SegmentStore(join(io.path, "burg"), 1 << 30, 1000);
    for (const s of segs) ours.recoverSegment(s);
    for (const s of segs) {
      const a = readFileSync(join(io.path, "burg", "data", "0", String(s)));
      const b = readFileSync(join(io.path, "borg", "data", "0", String(s)));
      expect({ segment: s, size: a.length, same: a.equals(b) }).toEqual({ segment: s, size: b.length, same: true });
    }
    // Nothing but the segments is left behind (no temp files).
    expect(readdirSync(join(io.path, "burg", "data", "0")).sort()).toEqual(segs.map(String).sort());
    // The intact copy comes back unchanged.
    expect(readFileSync(join(io.path, "burg", "data", "0", "1")).equals(intact)).toBe(true);
  }, 60_000);
});
