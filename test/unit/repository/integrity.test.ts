// Integrity-checked index.N / hints.N against borg's own IntegrityCheckedFile (run with
// /usr/bin/python3): the same digests and the same JSON for the same files, verification of
// borg's files here and of these files in borg, and corruption detected on both sides.

import { describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FileIntegrityError, HashIndexFormatError } from "../../../src/errors.ts";
import { NSIndex } from "../../../src/repository/hashindex.ts";
import {
  computeDigests,
  formatIntegrityData,
  parseIntegrityData,
  readCheckedFile,
  readIndexFile,
  writeCheckedFile,
  writeIndexFile,
} from "../../../src/repository/integrity.ts";
import { log } from "../../../src/util/log.ts";
import { borgPython } from "../../support/borg-python.ts";
import { tempDir } from "../../support/env.ts";

/**
 * Writes index.N and hints.N the way Repository.write_index does (to .tmp names, hashed under
 * the final names), renames them, and prints both integrity JSON strings and the entries.
 */
const BORG_WRITE = `
import sys, os, random
from borg.hashindex import NSIndex
from borg.crypto.file_integrity import IntegrityCheckedFile
from borg.helpers import msgpack
d, tid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(n)
idx = NSIndex()
keys = [random.randbytes(32) for i in range(n)]
for i, k in enumerate(keys):
    idx[k] = (random.randrange(0, 1000), i * 40)
for k in keys[::3]:
    del idx[k]
hints = {b'version': 2, b'segments': {1: 5, 2: 7}, b'compact': {1: 100}, b'storage_quota_use': 12345, b'shadow_index': {}}
hints_name = 'hints.%d' % tid
with IntegrityCheckedFile(os.path.join(d, hints_name + '.tmp'), filename=hints_name, write=True) as fd:
    msgpack.pack(hints, fd)
print(fd.integrity_data)
index_name = 'index.%d' % tid
with IntegrityCheckedFile(os.path.join(d, index_name + '.tmp'), filename=index_name, write=True) as fd:
    idx.write(fd)
print(fd.integrity_data)
os.replace(os.path.join(d, hints_name + '.tmp'), os.path.join(d, hints_name))
os.replace(os.path.join(d, index_name + '.tmp'), os.path.join(d, index_name))
for k, (s, o) in idx.iteritems():
    print(k.hex(), s, o)
`;

/** Verifies a file with borg's IntegrityCheckedFile; prints "ok", the entries (index) or the error class. */
const BORG_VERIFY = `
import sys
from borg.hashindex import NSIndex
from borg.crypto.file_integrity import IntegrityCheckedFile, FileIntegrityError
from borg.helpers import msgpack
from borg.logger import setup_logging
setup_logging(level='warning')
kind, path, data = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    with IntegrityCheckedFile(path, write=False, integrity_data=data) as fd:
        if kind == 'index':
            idx = NSIndex.read(fd)
        else:
            obj = msgpack.unpack(fd)
    print('ok')
    if kind == 'index':
        for k, (s, o) in idx.iteritems():
            print(k.hex(), s, o)
except FileIntegrityError as e:
    print('FileIntegrityError')
`;

function entryLines(index: NSIndex): string[] {
  return [...index.entries()].map(([k, s, o]) => `${Buffer.from(k).toString("hex")} ${s} ${o}`);
}

function flipByte(path: string, at: number): void {
  const b = readFileSync(path);
  b[at]! ^= 0x10;
  writeFileSync(path, b);
}

/** Capture what the shared logger prints while `fn` runs. */
function captureLog<T>(fn: () => T): { value: T | undefined; error: unknown; lines: string[] } {
  const lines: string[] = [];
  const sink = log.sink;
  log.sink = { write: (l) => void lines.push(l) };
  try {
    return { value: fn(), error: undefined, lines };
  } catch (e) {
    return { value: undefined, error: e, lines };
  } finally {
    log.sink = sink;
  }
}

describe("integrity-checked files vs borg's IntegrityCheckedFile", () => {
  test("borg's index and hints verify here, and writing them again gives borg's exact integrity data", () => {
    const dir = tempDir("burg-integrity-");
    const out = borgPython(BORG_WRITE, [dir, "17", "2000"]).replace(/\n$/, "").split("\n");
    const [hintsJson, indexJson] = [out[0]!, out[1]!];
    expect(indexJson).toStartWith('{"algorithm": "XXH64", "digests": {"HashHeader": "');

    const indexParts = parseIntegrityData(join(dir, "index.17"), indexJson)!;
    const index = readIndexFile(join(dir, "index.17"), indexParts);
    expect(entryLines(index)).toEqual(out.slice(2));
    const parts = writeIndexFile(join(dir, "index.17.tmp"), "index.17", index);
    expect(parts).toEqual(indexParts);
    expect(formatIntegrityData(parts)).toBe(indexJson);
    expect(readFileSync(join(dir, "index.17.tmp")).equals(readFileSync(join(dir, "index.17")))).toBe(true);

    const hintsParts = parseIntegrityData(join(dir, "hints.17"), hintsJson)!;
    const hints = readCheckedFile(join(dir, "hints.17"), hintsParts);
    expect(Buffer.from(hints).equals(readFileSync(join(dir, "hints.17")))).toBe(true);
    const written = writeCheckedFile(join(dir, "hints.17.tmp"), "hints.17", hints);
    expect(formatIntegrityData(written)).toBe(hintsJson);
  });

  test("files and integrity data written here verify in borg", () => {
    const dir = tempDir("burg-integrity-");
    const index = NSIndex.create();
    const key = new Uint8Array(32);
    for (let i = 0; i < 3000; i++) {
      new DataView(key.buffer).setUint32(0, Math.imul(i + 1, 0x9e3779b1) >>> 0, true);
      key[31] = i & 0xff;
      index.set(key, i % 50, i * 8);
    }
    const indexPath = join(dir, "index.4");
    const parts = writeIndexFile(indexPath + ".tmp", "index.4", index);
    renameSync(indexPath + ".tmp", indexPath);
    const indexOut = borgPython(BORG_VERIFY, ["index", indexPath, formatIntegrityData(parts)]).trim().split("\n");
    expect(indexOut[0]).toBe("ok");
    expect(indexOut.slice(1)).toEqual(entryLines(index));

    const hintsPath = join(dir, "hints.4");
    // A msgpack map {b'version': 2} as borg's hints start; borg unpacks it to check it.
    const hintsBytes = new Uint8Array([0x81, 0xc4, 7, ...Buffer.from("version"), 2]);
    const hintsParts = writeCheckedFile(hintsPath, "hints.4", hintsBytes);
    expect(borgPython(BORG_VERIFY, ["hints", hintsPath, formatIntegrityData(hintsParts)]).trim()).toBe("ok");

    // The file name is part of the digest: the same bytes under another name fail, in borg too.
    copyFileSync(indexPath, join(dir, "index.5"));
    expect(borgPython(BORG_VERIFY, ["index", join(dir, "index.5"), formatIntegrityData(parts)]).trim()).toBe(
      "FileIntegrityError",
    );
    expect(() => readIndexFile(join(dir, "index.5"), parts)).toThrow(FileIntegrityError);
  });

  test("a flipped byte in header or buckets fails here and in borg", () => {
    const dir = tempDir("burg-integrity-");
    const out = borgPython(BORG_WRITE, [dir, "3", "500"]).split("\n");
    const indexJson = out[1]!;
    const hintsJson = out[0]!;
    const parts = parseIntegrityData("index.3", indexJson)!;
    // Offset 9 is in num_entries (the header digest), 18 + 40*7 + 5 in a bucket (the final digest).
    for (const at of [9, 18 + 40 * 7 + 5, 18 + 40 * 1031 - 1]) {
      const p = join(dir, `index.3`);
      const orig = join(dir, "index.3.orig");
      copyFileSync(p, orig);
      flipByte(p, at);
      expect(() => readIndexFile(p, parts)).toThrow(FileIntegrityError);
      expect(borgPython(BORG_VERIFY, ["index", p, indexJson]).trim()).toBe("FileIntegrityError");
      // Without integrity data nothing is verified (borg: no integrity.N).
      if (at !== 9) expect(readIndexFile(p, null).size).toBe(333);
      copyFileSync(orig, p);
    }
    expect(readIndexFile(join(dir, "index.3"), parts).size).toBe(333);

    flipByte(join(dir, "hints.3"), 3);
    expect(() => readCheckedFile(join(dir, "hints.3"), parseIntegrityData("hints.3", hintsJson))).toThrow(
      FileIntegrityError,
    );
    expect(borgPython(BORG_VERIFY, ["hints", join(dir, "hints.3"), hintsJson]).trim()).toBe("FileIntegrityError");
  });

  test("integrity data without the HashHeader digest fails an index, as in borg", () => {
    const dir = tempDir("burg-integrity-");
    const out = borgPython(BORG_WRITE, [dir, "2", "100"]).split("\n");
    const onlyFinal = JSON.parse(out[1]!) as { digests: { final: string } };
    const json = formatIntegrityData({ final: onlyFinal.digests.final });
    expect(() => readIndexFile(join(dir, "index.2"), parseIntegrityData("index.2", json))).toThrow(FileIntegrityError);
    expect(borgPython(BORG_VERIFY, ["index", join(dir, "index.2"), json]).trim()).toBe("FileIntegrityError");
  });

  test("SHA512 integrity data (which borg can verify) is verified too", () => {
    const dir = tempDir("burg-integrity-");
    const json = borgPython(
      `
import sys, os
from borg.hashindex import NSIndex
from borg.crypto.file_integrity import IntegrityCheckedFile, SHA512FileHashingWrapper
idx = NSIndex()
for i in range(100):
    idx[i.to_bytes(4, 'little') + bytes(28)] = (i, i)
fd = IntegrityCheckedFile(sys.argv[1], write=True)
fd.fd = fd.hasher = SHA512FileHashingWrapper(backing_fd=fd.file_fd, write=True)
fd.hash_filename()
with fd:
    idx.write(fd)
print(fd.integrity_data)
`,
      [join(dir, "index.8")],
    ).trim();
    expect(json).toStartWith('{"algorithm": "SHA512"');
    const parts = parseIntegrityData("index.8", json)!;
    expect(readIndexFile(join(dir, "index.8"), parts).size).toBe(100);
    const digests = computeDigests(
      "index.8",
      [
        { bytes: readFileSync(join(dir, "index.8")).subarray(0, 18), part: "HashHeader" },
        { bytes: readFileSync(join(dir, "index.8")).subarray(18), part: "final" },
      ],
      "SHA512",
    );
    expect(formatIntegrityData(digests, "SHA512")).toBe(json);
    flipByte(join(dir, "index.8"), 100);
    expect(() => readIndexFile(join(dir, "index.8"), parts)).toThrow(FileIntegrityError);
  });

  test("format errors are borg's ValueErrors, but a corrupted header fails its digest first", () => {
    const dir = tempDir("burg-integrity-");
    const out = borgPython(BORG_WRITE, [dir, "6", "50"]).split("\n");
    const parts = parseIntegrityData("index.6", out[1]!)!;
    const p = join(dir, "index.6");
    const good = readFileSync(p);
    writeFileSync(p, good.subarray(0, good.length - 1));
    expect(() => readIndexFile(p, null)).toThrow(
      new HashIndexFormatError("Incorrect file length (expected 41258, got 41257)"),
    );
    writeFileSync(p, good.subarray(0, 5));
    expect(() => readIndexFile(p, parts)).toThrow("Could not read header (expected 18, but read 5 bytes)");
    const badMagic = Buffer.from(good);
    badMagic[1] = 0x30;
    writeFileSync(p, badMagic);
    expect(() => readIndexFile(p, null)).toThrow(new HashIndexFormatError("Unknown MAGIC in header"));
    expect(() => readIndexFile(p, parts)).toThrow(FileIntegrityError);
  });
});

describe("digests", () => {
  test("hashing in place around a large chunk equals hashing a copy, and leaves the neighbours alone", () => {
    const big = new Uint8Array(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) >>> 3;
    const chunk = big.subarray(1000, 200_000);
    const before = big.slice();
    const header = new Uint8Array(18).fill(0x42);
    const chunks = [
      { bytes: header, part: "HashHeader" },
      { bytes: chunk, part: "final" },
    ];
    const inPlace = computeDigests("index.12", chunks);
    expect(Buffer.from(big).equals(Buffer.from(before))).toBe(true);
    const copied = computeDigests("index.12", [
      { bytes: header.slice(), part: "HashHeader" },
      { bytes: chunk.slice(), part: "final" },
    ]);
    expect(inPlace).toEqual(copied);
    // The same stream spelled out by hand: '%10d' % len(name) + name + data + '%10d' % len(part) + part + str(pos).
    const enc = (s: string) => new TextEncoder().encode(s);
    const stream = Buffer.concat([
      enc("         8index.12"),
      header,
      enc("        10HashHeader18"),
      chunk,
      enc(`         5final${18 + chunk.length}`),
    ]);
    expect(copied.final).toBe(Bun.hash.xxHash64(stream, 0n).toString(16).padStart(16, "0"));
    expect(Object.keys(copied)).toEqual(["HashHeader", "final"]);
  });

  test("the path's directory is not hashed, only the base name", () => {
    const data = new Uint8Array([1, 2, 3]);
    expect(computeDigests("/some/dir/hints.3", [{ bytes: data, part: "final" }])).toEqual(
      computeDigests("hints.3", [{ bytes: data, part: "final" }]),
    );
  });

  test("writing an index leaves its table buffer (scratch included) exactly as it was", () => {
    const dir = tempDir("burg-integrity-");
    const index = NSIndex.create(100_000);
    index.set(new Uint8Array(32).fill(5), 1, 2);
    const buckets = index.bucketBytes();
    const whole = new Uint8Array(buckets.buffer).slice();
    writeIndexFile(join(dir, "index.1"), "index.1", index);
    expect(Buffer.from(new Uint8Array(buckets.buffer)).equals(Buffer.from(whole))).toBe(true);
  });
});

describe("parseIntegrityData", () => {
  test("borg's semantics for unknown algorithms and malformed data", () => {
    const ok = captureLog(() => parseIntegrityData("p", '{"algorithm": "XXH64", "digests": {"final": "00"}}'));
    expect(ok.value).toEqual({ final: "00" });

    const unknown = captureLog(() => parseIntegrityData("/r/index.1", '{"algorithm": "MD5", "digests": {}}'));
    expect(unknown.error).toBeUndefined();
    expect(unknown.value).toBeNull();
    expect(unknown.lines.join("")).toContain("Cannot verify integrity of /r/index.1: Unknown algorithm 'MD5'");

    for (const bad of [
      "not json",
      "[]",
      '"XXH64"',
      '{"digests": {"final": "00"}}',
      '{"algorithm": "XXH64"}',
      '{"algorithm": "XXH64", "digests": {"HashHeader": "00"}}',
      '{"algorithm": "XXH64", "digests": ["final"]}',
      '{"algorithm": ["XXH64"], "digests": {"final": "00"}}',
    ]) {
      const r = captureLog(() => parseIntegrityData("/r/index.1", bad));
      expect(r.error).toBeInstanceOf(FileIntegrityError);
      expect((r.error as FileIntegrityError).borgArgs).toEqual(["/r/index.1"]);
      expect(r.lines.join("")).toContain("Could not parse integrity data for /r/index.1");
    }
  });

  test("formatIntegrityData escapes like Python's json.dumps", () => {
    expect(formatIntegrityData({ "p\u00e9\u007f": 'a"b\\' })).toBe(
      '{"algorithm": "XXH64", "digests": {"p\\u00e9\\u007f": "a\\"b\\\\"}}',
    );
    const py = borgPython(
      `import json\nprint(json.dumps({'algorithm': 'XXH64', 'digests': {'p\\u00e9\\u007f': 'a"b\\\\'}}))`,
    );
    expect(py.trim()).toBe(formatIntegrityData({ "p\u00e9\u007f": 'a"b\\' }));
  });
});
