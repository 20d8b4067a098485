// Integrity-checked index.N and hints.N files, as borg 1.2's IntegrityCheckedFile
// (crypto/file_integrity.py) writes and verifies them; the digests are stored in integrity.N.
//
// The digest stream of a file named F (base name only) is:
//   '%10d' % len(F) + F, then the file's bytes; at each named part (after the index's 18-byte
//   header: "HashHeader"; at the end: "final") '%10d' % len(part) + part + str(position), and
//   the hex digest of everything hashed so far is that part's digest.
// Every digest is of a prefix of one stream, so each is computed one-shot over a contiguous
// layout of that stream. For the index the layout is built in place around the bucket array
// (whose buffer has scratch space at both ends, see hashindex.ts), so neither writing nor
// reading an index copies the table; a file is read once, into the memory it will live in,
// and verified there.

import { closeSync, fstatSync, fsyncSync, openSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { FileIntegrityError, HashIndexFormatError } from "../errors.ts";
import { readFully, writeAll } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { Xxh64Stream } from "../util/xxh64.ts";
import { HASH_HEADER_SIZE, NSIndex, parseHashHeader } from "./hashindex.ts";

/** Part name -> lowercase hex digest, in the order the parts occur in the file. */
export interface IntegrityParts {
  [part: string]: string;
}

export interface DigestChunk {
  bytes: Uint8Array;
  /** Name of the part that ends after these bytes, if any. */
  part?: string;
}

/** What borg's IntegrityCheckedFile can verify; it always writes XXH64. */
export type IntegrityAlgorithm = "XXH64" | "SHA512";

const LOGGER = "borg.crypto.file_integrity";
const encoder = new TextEncoder();
/** Below this a chunk is simply copied into the stream layout. */
const IN_PLACE_MIN = 64 * 1024;

/**
 * The algorithm of parts that came from parseIntegrityData, kept beside the plain parts object
 * so the parts stay a simple map (and borg's SHA512 data can still be verified).
 */
const algorithmOf = new WeakMap<IntegrityParts, IntegrityAlgorithm>();

/** ('%10d' % len(s)) + s, encoded as Python's str.encode() does. */
function lengthPrefixed(s: string, tail = ""): Uint8Array {
  return encoder.encode(String([...s].length).padStart(10, " ") + s + tail);
}

type Piece = Uint8Array | { digest: string };

/**
 * Digests of a file written (or read) as `chunks` in order; `filename` is hashed by its base
 * name (borg hashes "index.5" even while writing "index.5.tmp"). Only parts named in `chunks`
 * get a digest; the caller names the last one "final".
 */
export function computeDigests(
  filename: string,
  chunks: ReadonlyArray<DigestChunk>,
  algorithm: IntegrityAlgorithm = "XXH64",
): IntegrityParts {
  const pieces: Piece[] = [lengthPrefixed(basename(filename))];
  let position = 0;
  for (const c of chunks) {
    pieces.push(c.bytes);
    position += c.bytes.length;
    if (c.part !== undefined) {
      pieces.push(lengthPrefixed(c.part, String(position)));
      pieces.push({ digest: c.part });
    }
  }
  // Nothing after the last part takes part in any digest.
  let last = pieces.length;
  while (last > 0 && pieces[last - 1] instanceof Uint8Array) last--;
  const used = pieces.slice(0, last);
  return algorithm === "XXH64" ? digestsXXH64(used) : digestsStreaming(used, algorithm);
}

function digestsStreaming(pieces: ReadonlyArray<Piece>, algorithm: IntegrityAlgorithm): IntegrityParts {
  if (algorithm !== "SHA512") throw new Error(`no streaming hasher for ${algorithm}`);
  const hasher = new Bun.CryptoHasher("sha512");
  const parts: IntegrityParts = {};
  for (const p of pieces) {
    if (p instanceof Uint8Array) hasher.update(p);
    else parts[p.digest] = hasher.copy().digest("hex");
  }
  return parts;
}

function xxh64Hex(bytes: Uint8Array): string {
  return Bun.hash.xxHash64(bytes, 0n).toString(16).padStart(16, "0");
}

/**
 * XXH64 is only available one-shot, so the stream is laid out contiguously. When the largest
 * chunk has room around it in its own ArrayBuffer (the index's buckets do), the rest of the
 * stream is written into that room, hashed, and the room's bytes are put back; otherwise the
 * stream is copied into one new buffer.
 */
function digestsXXH64(pieces: ReadonlyArray<Piece>): IntegrityParts {
  let total = 0;
  let anchor = -1;
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i]!;
    if (!(p instanceof Uint8Array)) continue;
    total += p.length;
    if (anchor === -1 || p.length > (pieces[anchor] as Uint8Array).length) anchor = i;
  }
  let before = 0;
  for (let i = 0; i < anchor; i++) {
    const p = pieces[i]!;
    if (p instanceof Uint8Array) before += p.length;
  }
  const a = anchor === -1 ? null : (pieces[anchor] as Uint8Array);
  const after = a === null ? 0 : total - before - a.length;
  const inPlace =
    a !== null &&
    a.length >= IN_PLACE_MIN &&
    a.buffer instanceof ArrayBuffer &&
    a.byteOffset >= before &&
    a.buffer.byteLength - a.byteOffset - a.length >= after;

  let layout: Uint8Array;
  let restore: (() => void) | null = null;
  if (inPlace) {
    layout = new Uint8Array(a.buffer, a.byteOffset - before, total);
    const savedBefore = layout.slice(0, before);
    const savedAfter = layout.slice(before + a.length);
    restore = () => {
      layout.set(savedBefore, 0);
      layout.set(savedAfter, before + a.length);
    };
  } else {
    layout = new Uint8Array(total);
  }
  try {
    const parts: IntegrityParts = {};
    let pos = 0;
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i]!;
      if (p instanceof Uint8Array) {
        if (!(inPlace && i === anchor)) layout.set(p, pos);
        pos += p.length;
      } else {
        parts[p.digest] = xxh64Hex(layout.subarray(0, pos));
      }
    }
    return parts;
  } finally {
    restore?.();
  }
}

/** Python's json.dumps of a str (ensure_ascii: everything outside printable ASCII as \uXXXX). */
function pyJsonString(s: string): string {
  return JSON.stringify(s).replace(
    /[^\x20-\x7e]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

/** The integrity data borg stores for a file: json.dumps({'algorithm': …, 'digests': …}). */
export function formatIntegrityData(parts: IntegrityParts, algorithm: IntegrityAlgorithm = "XXH64"): string {
  const digests = Object.entries(parts)
    .map(([k, v]) => `${pyJsonString(k)}: ${pyJsonString(v)}`)
    .join(", ");
  return `{"algorithm": ${pyJsonString(algorithm)}, "digests": {${digests}}}`;
}

/** Python's repr() of the JSON values an algorithm field can hold, for the warning text. */
function pyRepr(v: unknown): string {
  if (typeof v === "string") return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  return String(v);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * borg's IntegrityCheckedFile.parse_integrity_data: null (after a warning) for an algorithm
 * borg does not know, FileIntegrityError (after a warning) for data that is not JSON or lacks
 * the algorithm, the digests or the "final" digest. Stricter in one point: a digest that is not
 * a string is malformed here (borg would fail later with a TypeError while comparing).
 */
export function parseIntegrityData(path: string, json: string): IntegrityParts | null {
  const malformed = (why: string): never => {
    log.warning(`Could not parse integrity data for ${path}: ${why}`, LOGGER);
    throw new FileIntegrityError(path);
  };
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (e) {
    return malformed((e as Error).message);
  }
  if (!isPlainObject(data)) return malformed(`${JSON.stringify(data)} is not a mapping`);
  if (!Object.hasOwn(data, "algorithm")) return malformed("'algorithm'");
  const algorithm = data.algorithm;
  if (typeof algorithm === "object" && algorithm !== null) return malformed("unhashable algorithm");
  if (algorithm !== "XXH64" && algorithm !== "SHA512") {
    log.warning(`Cannot verify integrity of ${path}: Unknown algorithm ${pyRepr(algorithm)}`, LOGGER);
    return null;
  }
  if (!Object.hasOwn(data, "digests")) return malformed("'digests'");
  const digests = data.digests;
  if (!isPlainObject(digests)) return malformed("digests is not a mapping");
  if (!Object.hasOwn(digests, "final")) return malformed("'final'");
  const parts: IntegrityParts = {};
  for (const [k, v] of Object.entries(digests)) {
    if (typeof v !== "string") return malformed(`digest of ${k} is not a string`);
    parts[k] = v;
  }
  algorithmOf.set(parts, algorithm);
  return parts;
}

function hasDigests(integrity: IntegrityParts | null): integrity is IntegrityParts {
  // borg verifies only when it has digests (no integrity.N: nothing to check against).
  return integrity !== null && Object.keys(integrity).length > 0;
}

function verify(path: string, expected: IntegrityParts, actual: IntegrityParts, part: string): void {
  // A part missing from the stored data is a mismatch, as in borg (digests.get(part, '')).
  const want = Object.hasOwn(expected, part) ? expected[part] : "";
  if (want !== actual[part]) throw new FileIntegrityError(path);
}

/** The 18-byte header of the index file open as `fd` (HashIndexFormatError when it is short). */
function readHeader(fd: number): Uint8Array {
  const header = new Uint8Array(HASH_HEADER_SIZE);
  const got = readFully(fd, header, 0);
  if (got < HASH_HEADER_SIZE) {
    throw new HashIndexFormatError(`Could not read header (expected ${HASH_HEADER_SIZE}, but read ${got} bytes)`);
  }
  return header;
}

/**
 * Read an index.N file, verifying its digests when `integrity` has any (FileIntegrityError on a
 * mismatch). The header digest is checked before the header is trusted, as borg does. Format
 * errors are HashIndexFormatError (borg's ValueError), I/O errors the usual errno errors.
 */
export function readIndexFile(path: string, integrity: IntegrityParts | null): NSIndex {
  const name = basename(path);
  const algorithm = (integrity && algorithmOf.get(integrity)) ?? "XXH64";
  const fd = openSync(path, "r");
  try {
    const fileLength = fstatSync(fd).size;
    const header = readHeader(fd);
    const check = hasDigests(integrity);
    if (check) {
      verify(path, integrity, computeDigests(name, [{ bytes: header, part: "HashHeader" }], algorithm), "HashHeader");
    }
    const { numEntries, numBuckets } = parseHashHeader(header, fileLength);
    const buckets = NSIndex.allocateBuckets(numBuckets);
    const n = readFully(fd, buckets, HASH_HEADER_SIZE);
    if (n !== buckets.length) {
      throw new HashIndexFormatError(`Could not read buckets (expected ${buckets.length}, got ${n})`);
    }
    if (check) {
      const actual = computeDigests(
        name,
        [
          { bytes: header, part: "HashHeader" },
          { bytes: buckets, part: "final" },
        ],
        algorithm,
      );
      verify(path, integrity, actual, "final");
      log.debug(`Verified integrity of ${path}`, LOGGER);
    }
    // Only now, after verification, may the table change its bytes (tombstone rebuild).
    return NSIndex.fromBuckets(buckets, numEntries);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write `index` to `path` (typically "index.N.tmp"), hashed under `filename` ("index.N"),
 * fsync it, and return its parts (HashHeader, final). The table is neither copied nor changed.
 */
export function writeIndexFile(path: string, filename: string, index: NSIndex): IntegrityParts {
  const header = index.headerBytes();
  const buckets = index.bucketBytes();
  writeSynced(path, [header, buckets]);
  return computeDigests(filename, [
    { bytes: header, part: "HashHeader" },
    { bytes: buckets, part: "final" },
  ]);
}

/** Read an opaque checked file (hints.N), verifying its "final" digest when there is one. */
export function readCheckedFile(path: string, integrity: IntegrityParts | null): Uint8Array {
  const bytes = readFileSync(path);
  if (hasDigests(integrity)) {
    const algorithm = algorithmOf.get(integrity) ?? "XXH64";
    verify(path, integrity, computeDigests(basename(path), [{ bytes, part: "final" }], algorithm), "final");
    log.debug(`Verified integrity of ${path}`, LOGGER);
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** Write an opaque checked file (hints.N) to `path`, hashed under `filename`; fsync; its parts. */
export function writeCheckedFile(path: string, filename: string, bytes: Uint8Array): IntegrityParts {
  writeSynced(path, [bytes]);
  return computeDigests(filename, [{ bytes, part: "final" }]);
}

function writeSynced(path: string, pieces: ReadonlyArray<Uint8Array>): void {
  const fd = openSync(path, "w");
  try {
    for (const p of pieces) writeAll(fd, p);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The highest N of a non-empty index.N in the repository (borg's get_index_transaction_id). */
export function latestIndexTransaction(repository: string): number | null {
  let best: number | null = null;
  for (const name of readdirSync(repository)) {
    if (!name.startsWith("index.")) continue;
    const n = name.slice(6);
    if (!/^[0-9]+$/.test(n)) continue;
    try {
      if (statSync(join(repository, name)).size === 0) continue;
    } catch {
      continue;
    }
    const v = Number(n);
    if (best === null || v > best) best = v;
  }
  return best;
}

/** Bytes of buckets scanIndexFile reads at a time: a whole number of 40-byte buckets. */
const SCAN_WINDOW = 26214 * 40;

/** A hasher fed piece by piece whose digest of the stream so far can be taken at any point. */
function streamingHasher(algorithm: IntegrityAlgorithm): { update(b: Uint8Array): void; hex(): string } {
  if (algorithm === "XXH64") {
    const x = new Xxh64Stream();
    return { update: (b) => void x.update(b), hex: () => x.digest().toString(16).padStart(16, "0") };
  }
  const h = new Bun.CryptoHasher("sha512");
  return { update: (b) => void h.update(b), hex: () => h.copy().digest("hex") };
}

/**
 * Read an index.N file through a window instead of into memory: its digests are verified as
 * readIndexFile verifies them (same errors), and `visit` sees the bucket bytes window by window
 * (a view valid during the call) before the final digest is checked. Returns the open file,
 * which the caller closes, with the header's counts.
 */
export function scanIndexFile(
  path: string,
  integrity: IntegrityParts | null,
  visit: (buckets: Uint8Array) => void,
): { fd: number; numEntries: number; numBuckets: number } {
  const name = basename(path);
  const check = hasDigests(integrity);
  const hasher = check ? streamingHasher(algorithmOf.get(integrity) ?? "XXH64") : null;
  const fd = openSync(path, "r");
  try {
    const fileLength = fstatSync(fd).size;
    const header = readHeader(fd);
    if (hasher) {
      hasher.update(lengthPrefixed(name));
      hasher.update(header);
      hasher.update(lengthPrefixed("HashHeader", String(HASH_HEADER_SIZE)));
      verify(path, integrity!, { HashHeader: hasher.hex() }, "HashHeader");
    }
    const { numEntries, numBuckets } = parseHashHeader(header, fileLength);
    const total = fileLength - HASH_HEADER_SIZE;
    const window = new Uint8Array(Math.min(SCAN_WINDOW, Math.max(total, 1)));
    let done = 0;
    while (done < total) {
      const want = window.subarray(0, Math.min(window.length, total - done));
      const n = readFully(fd, want, HASH_HEADER_SIZE + done);
      if (n !== want.length) throw new HashIndexFormatError(`Could not read buckets (expected ${total}, got ${done + n})`);
      hasher?.update(want);
      visit(want);
      done += n;
    }
    if (hasher) {
      hasher.update(lengthPrefixed("final", String(fileLength)));
      verify(path, integrity!, { final: hasher.hex() }, "final");
      log.debug(`Verified integrity of ${path}`, LOGGER);
    }
    return { fd, numEntries, numBuckets };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
