// The sequential segment verifier against borg's own LoggedIO.iter_objects: for intact and
// damaged segment files (bit flips, truncation, zeroed blocks, bad magic, trailing garbage,
// empty files) the valid entries and the first error message are borg's, at every chunk size
// and read depth (so entries, headers and keys straddling chunk boundaries are covered).

import { describe, expect, test } from "bun:test";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TAG_COMMIT } from "../../../src/repository/format.ts";
import { ReadPipeline, scanSegments, type PipelineOptions } from "../../../src/repository/segment-scan.ts";
import { SegmentStore } from "../../../src/repository/segments.ts";
import { Residency, dropFromPageCache } from "../../../src/util/direct-io.ts";
import { toHex } from "../../../src/util/hex.ts";
import { borgPython } from "../../support/borg-python.ts";
import { prng, randomBytes } from "../../support/data.ts";
import { tempDir } from "../../support/env.ts";

type Seen = { entries: Array<[number, string | null, number, number]>; error: string | null };

const ITER_WITH_BORG = `
import sys, json
from borg.repository import LoggedIO
from borg.helpers import IntegrityError
io = LoggedIO(sys.argv[1], 1 << 30, 1000)
out = {}
for seg, fn in io.segment_iterator():
    entries, error = [], None
    try:
        for tag, key, offset, size in io.iter_objects(seg):
            entries.append([tag, key.hex() if key else None, offset, size])
    except IntegrityError as e:
        error = str(e)
    out[seg] = {"entries": entries, "error": error}
print(json.dumps(out))
`;

async function scanAll(io: SegmentStore, chunkSize: number, depth: number): Promise<Record<string, Seen>> {
  const out: Record<string, Seen> = {};
  let bytes = 0;
  const segments = io.listSegments();
  for await (const r of scanSegments(segments, (s) => io.segmentFilename(s), {
    chunkSize,
    depth,
    onBytes: (n) => (bytes += n),
  })) {
    const entries: Seen["entries"] = [];
    for (const e of r.entries.iterate()) entries.push([e.tag, e.key ? toHex(e.key) : null, e.offset, e.size]);
    expect(r.ioError).toBeNull();
    out[String(r.segment)] = { entries, error: r.error ? r.error.message : null };
  }
  const total = segments.reduce((n, s) => n + io.segmentSize(s), 0);
  expect(bytes).toBe(total);
  return out;
}

/** A store with segments of varied entries: tiny, medium, larger than the small chunk sizes. */
function writeSegments(dir: string, seed: number, count = 150): SegmentStore {
  mkdirSync(join(dir, "data"), { recursive: true });
  const io = new SegmentStore(dir, 300_000, 1000);
  const rand = prng(seed);
  for (let i = 0; i < count; i++) {
    const id = randomBytes(rand, 32);
    const size = i % 10 === 0 ? 150_000 + Math.floor(rand() * 100_000) : Math.floor(rand() * 3000);
    io.writePut(id, randomBytes(rand, size));
    if (i % 9 === 4) io.writeDelete(id);
    if (i % 20 === 19) io.writeCommit();
  }
  io.writeCommit();
  io.close();
  return io;
}

function flip(path: string, offset: number, bit = 0): void {
  const b = readFileSync(path);
  b[offset]! ^= 1 << bit;
  writeFileSync(path, b);
}

describe("segment scan", () => {
  test("intact and damaged segments: same entries and first error as borg's iter_objects", async () => {
    const dir = tempDir();
    const io = writeSegments(dir, 11);
    const all = io.listSegments();
    // damage only segments with several entries (the commit-only ones are 17 bytes)
    const segs = all.filter((s) => io.segmentSize(s) > 10_000);
    expect(segs.length).toBeGreaterThan(8);
    const f = (i: number) => io.segmentFilename(segs[i]!);
    const size = (i: number) => io.segmentSize(segs[i]!);
    flip(f(0), 8 + 5); // size field of the first entry: too big or short read
    flip(f(1), size(1) - 100); // data
    flip(f(2), 8 + 8, 3); // tag: CRC mismatch
    truncateSync(f(3), size(3) - 5); // inside the last entry
    truncateSync(f(4), 8 + 4); // a partial header
    const zero = readFileSync(f(5));
    zero.fill(0, 20, 4116);
    writeFileSync(f(5), zero);
    writeFileSync(f(6), Buffer.concat([readFileSync(f(6)), Buffer.from("trailing garbage!")]));
    const bad = readFileSync(f(segs.length - 2));
    bad[0] = 0x41; // magic
    writeFileSync(f(segs.length - 2), bad);
    // an empty and a magic-only segment after the rest
    const last = all[all.length - 1]!;
    writeFileSync(io.segmentFilename(last + 1), new Uint8Array(0));
    writeFileSync(io.segmentFilename(last + 2), new TextEncoder().encode("BORG_SEG"));
    // an entry with an acceptable CRC but an unknown tag
    const odd = new Uint8Array(8 + 9);
    odd.set(new TextEncoder().encode("BORG_SEG"));
    const dv = new DataView(odd.buffer);
    dv.setUint32(12, 9, true);
    odd[16] = 7;
    dv.setUint32(8, Bun.hash.crc32(odd.subarray(12)) >>> 0, true);
    writeFileSync(io.segmentFilename(last + 3), odd);

    const borgSaw = JSON.parse(borgPython(ITER_WITH_BORG, [dir])) as Record<string, Seen>;
    const errors = Object.values(borgSaw).filter((s) => s.error).length;
    expect(errors).toBeGreaterThanOrEqual(9);
    for (const [chunkSize, depth] of [
      [97, 1],
      [4096, 3],
      [65_536, 2],
      [4 << 20, 4],
    ] as const) {
      expect(await scanAll(io, chunkSize, depth)).toEqual(borgSaw);
    }
  });

  test("random damage: agrees with borg for many seeds and chunk sizes", async () => {
    const dir = tempDir();
    const io = writeSegments(dir, 3, 60);
    const segs = io.listSegments();
    const rand = prng(77);
    for (const s of segs) {
      const p = io.segmentFilename(s);
      const b = readFileSync(p);
      const kind = Math.floor(rand() * 4);
      if (kind === 0 && b.length > 8) b[8 + Math.floor(rand() * (b.length - 8))]! ^= 1 << Math.floor(rand() * 8);
      if (kind === 1) {
        writeFileSync(p, b.subarray(0, Math.floor(rand() * b.length)));
        continue;
      }
      if (kind === 2) {
        const at = Math.floor(rand() * b.length);
        b.fill(0, at, Math.min(b.length, at + 512));
      }
      writeFileSync(p, b);
    }
    const borgSaw = JSON.parse(borgPython(ITER_WITH_BORG, [dir])) as Record<string, Seen>;
    for (const chunkSize of [61, 1000, 100_000]) expect(await scanAll(io, chunkSize, 2)).toEqual(borgSaw);
  });

  test("a segment that cannot be opened is an I/O error, and the scan goes on", async () => {
    const dir = tempDir();
    const io = writeSegments(dir, 5);
    const segs = io.listSegments();
    unlinkSync(io.segmentFilename(segs[1]!));
    const seen: Array<[number, string | null, number]> = [];
    for await (const r of scanSegments(segs, (s) => io.segmentFilename(s), { chunkSize: 4096 })) {
      seen.push([r.segment, r.ioError ? r.ioError.code ?? "?" : null, r.entries.count]);
    }
    expect(seen.map((s) => s[0])).toEqual(segs);
    expect(seen[1]).toEqual([segs[1]!, "ENOENT", 0]);
    expect(seen.filter((s) => s[1] === null).every((s) => s[2] > 0)).toBe(true);
  });

  test("the read pipeline delivers every byte in order and marks each file's end", async () => {
    const dir = tempDir();
    const rand = prng(9);
    const paths: string[] = [];
    const contents: Uint8Array[] = [];
    for (const n of [0, 1, 70_000, 5, 200_000, 65_536, 65_537]) {
      const p = join(dir, `f${paths.length}`);
      const c = randomBytes(rand, n);
      writeFileSync(p, c);
      paths.push(p);
      contents.push(c);
    }
    const pipeline = new ReadPipeline(paths, { chunkSize: 30_000, depth: 3 });
    const got = contents.map(() => [] as number[]);
    const lasts = contents.map(() => 0);
    for (;;) {
      const c = await pipeline.next();
      if (!c) break;
      expect(c.error).toBeNull();
      expect(c.position).toBe(got[c.file]!.length);
      got[c.file]!.push(...c.bytes);
      if (c.last) lasts[c.file]!++;
    }
    await pipeline.close();
    expect(lasts).toEqual(contents.map(() => 1));
    for (let i = 0; i < contents.length; i++) expect(Buffer.from(got[i]!).equals(Buffer.from(contents[i]!))).toBe(true);
  });

  /** Files of awkward sizes (none a multiple of the 4 KiB alignment but the empty one), written and synced. */
  function awkwardFiles(dir: string): { paths: string[]; contents: Uint8Array[] } {
    const rand = prng(21);
    const paths: string[] = [];
    const contents: Uint8Array[] = [];
    for (const n of [0, 3, 4095, 4097, 70_001, 300_007, 65_536 * 3 + 1]) {
      const p = join(dir, `f${paths.length}`);
      const c = randomBytes(rand, n);
      writeFileSync(p, c);
      const fd = openSync(p, "r");
      fsyncSync(fd);
      closeSync(fd);
      paths.push(p);
      contents.push(c);
    }
    return { paths, contents };
  }

  async function readAll(paths: string[], opts: PipelineOptions): Promise<{ got: Buffer[]; pipeline: ReadPipeline }> {
    const pipeline = new ReadPipeline(paths, opts);
    const got = paths.map(() => [] as Uint8Array[]);
    for (;;) {
      const c = await pipeline.next();
      if (!c) break;
      expect(c.error).toBeNull();
      expect(c.position).toBe(got[c.file]!.reduce((n, b) => n + b.length, 0));
      got[c.file]!.push(c.bytes.slice());
    }
    await pipeline.close();
    return { got: got.map((parts) => Buffer.concat(parts)), pipeline };
  }

  test("direct reads deliver the same bytes, including the unaligned ends of files", async () => {
    const dir = tempDir();
    const { paths, contents } = awkwardFiles(dir);
    for (const [chunkSize, depth] of [[4096, 1], [8192, 3], [65_536, 4]] as const) {
      const { got, pipeline } = await readAll(paths, { chunkSize, depth, io: "direct" });
      for (let i = 0; i < contents.length; i++) expect(got[i]!.equals(Buffer.from(contents[i]!))).toBe(true);
      // Files above 64 KiB (or one chunk) are read by the pipeline; smaller ones synchronously.
      const piped = contents.filter((c) => c.length > Math.min(65_536, chunkSize));
      expect(pipeline.stats.directBytes).toBe(piped.reduce((n, c) => n + c.length, 0));
      expect(pipeline.stats.bufferedBytes).toBe(0);
    }
  });

  test("auto: chunks in the page cache are read buffered, the others directly", async () => {
    const dir = tempDir();
    const { paths, contents } = awkwardFiles(dir);
    const big = paths[5]!; // 300_007 bytes
    // Freshly written: all cached, so nothing is read directly.
    const warm = await readAll([big], { chunkSize: 65_536 });
    expect(warm.got[0]!.equals(Buffer.from(contents[5]!))).toBe(true);
    expect(warm.pipeline.stats).toEqual({ directBytes: 0, bufferedBytes: 300_007 });
    // Dropped from the page cache: every chunk is read directly.
    const fd = openSync(big, "r");
    expect(dropFromPageCache(fd)).toBe(true);
    const probe = Residency.open(fd, 300_007, big)!;
    expect(probe.cached(0, 300_007)).toBe(false);
    probe.close();
    closeSync(fd);
    const cold = await readAll([big], { chunkSize: 65_536 });
    expect(cold.got[0]!.equals(Buffer.from(contents[5]!))).toBe(true);
    expect(cold.pipeline.stats).toEqual({ directBytes: 300_007, bufferedBytes: 0 });
    // Direct reads do not fill the page cache. Cached again by a buffered read, then the tail
    // dropped: the first two chunks are read buffered, the rest directly.
    const fd2 = openSync(big, "r");
    readSync(fd2, new Uint8Array(300_007), 0, 300_007, 0);
    expect(dropFromPageCache(fd2, 131_072)).toBe(true);
    const probe2 = Residency.open(fd2, 300_007, big)!;
    expect([probe2.cached(0, 131_072), probe2.cached(131_072, 65_536)]).toEqual([true, false]);
    probe2.close();
    closeSync(fd2);
    const mixed = await readAll([big], { chunkSize: 65_536 });
    expect(mixed.got[0]!.equals(Buffer.from(contents[5]!))).toBe(true);
    expect(mixed.pipeline.stats).toEqual({ directBytes: 300_007 - 131_072, bufferedBytes: 131_072 });
  });

  test("a file system that refuses O_DIRECT: the reads fall back to buffered ones", async () => {
    const dir = tempDir();
    const { paths, contents } = awkwardFiles(dir);
    let refused = 0;
    const openDirect = (): number => {
      refused++;
      throw Object.assign(new Error("EINVAL: invalid argument, open"), { code: "EINVAL" });
    };
    const { got, pipeline } = await readAll(paths, { chunkSize: 8192, io: "direct", openDirect });
    for (let i = 0; i < contents.length; i++) expect(got[i]!.equals(Buffer.from(contents[i]!))).toBe(true);
    expect(refused).toBe(1); // then direct reads are off for the rest of the pipeline
    expect(pipeline.stats.directBytes).toBe(0);
  });

  test("unaligned chunk sizes never read directly", async () => {
    const dir = tempDir();
    const { paths, contents } = awkwardFiles(dir);
    const { got, pipeline } = await readAll(paths, { chunkSize: 30_000, io: "direct" });
    for (let i = 0; i < contents.length; i++) expect(got[i]!.equals(Buffer.from(contents[i]!))).toBe(true);
    expect(pipeline.stats.directBytes).toBe(0);
  });

  test("skipping a file drops its remaining chunks", async () => {
    const dir = tempDir();
    const paths = [join(dir, "a"), join(dir, "b")];
    writeFileSync(paths[0]!, new Uint8Array(500_000).fill(1));
    writeFileSync(paths[1]!, new Uint8Array(100_000).fill(2));
    const pipeline = new ReadPipeline(paths, { chunkSize: 70_000, depth: 4 });
    const first = await pipeline.next();
    expect(first!.file).toBe(0);
    pipeline.skipFile(0);
    const rest: number[] = [];
    for (;;) {
      const c = await pipeline.next();
      if (!c) break;
      rest.push(c.file);
    }
    await pipeline.close();
    expect(rest).toEqual([1, 1]);
  });

  test("commit entries carry no key", async () => {
    const dir = tempDir();
    const io = writeSegments(dir, 1);
    for await (const r of scanSegments(io.listSegments(), (s) => io.segmentFilename(s))) {
      for (const e of r.entries.iterate()) if (e.tag === TAG_COMMIT) expect(e.key).toBeNull();
    }
  });
});
