// borg 1.2's NSIndex, the repository index (index.N): chunk id (32 bytes) -> where its newest
// PUT lives (segment u32, offset u32). File format and table behaviour are those of borg's C
// `_hashindex.c` and `hashindex.pyx` (NSIndex) at 1.2.4, because borg reads and writes the same
// files and because iteration order (Repository.list pagination with a marker) is bucket order.
//
// File: header `BORG_IDX` | num_entries i32 | num_buckets i32 | key_size i8 | value_size i8
// (18 bytes, little-endian), then num_buckets buckets of key(32) | segment u32 | offset u32.
// An empty bucket has segment 0xffffffff, a deleted one (tombstone) 0xfffffffe; the bytes of a
// bucket that was never used are all zero apart from that marker, and deleting only rewrites the
// marker. Keeping those exact bytes is what makes a file written here byte-identical to borg's.
//
// Memory: the whole table is one ArrayBuffer holding the buckets exactly as in the file, viewed
// as bytes and as 32-bit words; there is no object per entry. Loading wraps the bytes read from
// disk. The bucket bytes sit between a little unused scratch space at both ends of that buffer
// so integrity.ts can lay the XXH64 stream (name prefix, header, part names) around the buckets
// and hash the index file in one call without copying the table.

import { HashIndexFormatError, HashIndexKeyError, HashIndexValueError } from "../errors.ts";

export const NS_KEY_SIZE = 32;
export const NS_VALUE_SIZE = 8;
export const HASH_HEADER_SIZE = 18;
export const HASH_MAGIC: Uint8Array = new TextEncoder().encode("BORG_IDX");
export const BUCKET_SIZE = NS_KEY_SIZE + NS_VALUE_SIZE;
const BUCKET_WORDS = BUCKET_SIZE / 4;
/** Word of a bucket holding the segment (and the empty/deleted markers); the offset follows it. */
const SEG_WORD = NS_KEY_SIZE / 4;

/** Largest segment number the index accepts (hashindex.pyx _MAX_VALUE); above it are markers. */
export const MAX_VALUE = 2 ** 32 - 1025;
// Markers as seen through the Int32Array view (0xffffffff and 0xfffffffe).
const EMPTY = -1;
const DELETED = -2;

/** borg's hash_sizes table: every table size borg picks when it creates or resizes a table. */
export const HASH_SIZES: readonly number[] = [
  1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 445649, 757607, 1287917, 2189459, 3065243, 4291319,
  6007867, 8410991, 11775359, 16485527, 23079703, 27695653, 33234787, 39881729, 47858071, 57429683, 68915617,
  82698751, 99238507, 119086189, 144378011, 157223263, 173476439, 190253911, 209915011, 230493629, 253169431,
  278728861, 306647623, 337318939, 370742809, 408229973, 449387209, 493428073, 543105119, 596976533, 657794869,
  722676499, 795815791, 874066969, 962279771, 1057701643, 1164002657, 1280003147, 1407800297, 1548442699,
  1703765389, 1873768367, 2062383853,
];
const HASH_MIN_LOAD = 0.25;
const HASH_MAX_LOAD = 0.75;
const HASH_MAX_EFF_LOAD = 0.93;

/** Unused bytes around the buckets in the table's ArrayBuffer (see the top comment). */
const SCRATCH_BEFORE = 256;
const SCRATCH_AFTER = 64;

if (BUCKET_SIZE !== 40 || HASH_MAGIC.length !== 8 || SCRATCH_BEFORE % 8 !== 0) {
  throw new Error("hashindex: layout constants");
}
// The word views read the file's little-endian words directly.
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error("hashindex: needs a little-endian host");

// The limits, in the same double arithmetic and truncation as the C code's (int) casts.
function lowerLimit(numBuckets: number): number {
  return numBuckets <= HASH_SIZES[0]! ? 0 : Math.trunc(numBuckets * HASH_MIN_LOAD);
}
function upperLimit(numBuckets: number): number {
  return numBuckets >= HASH_SIZES[HASH_SIZES.length - 1]! ? numBuckets : Math.trunc(numBuckets * HASH_MAX_LOAD);
}
export function minEmptyOf(numBuckets: number): number {
  return 1 + Math.trunc(numBuckets * (1.0 - HASH_MAX_EFF_LOAD));
}
/** Index of the smallest table size >= size (may be one past the end, as in C). */
function sizeIdx(size: number): number {
  let i = HASH_SIZES.length - 1;
  while (i >= 0 && HASH_SIZES[i]! >= size) i--;
  return i + 1;
}
function sizeAt(i: number): number {
  // The C code would read past the table for sizes above its last entry; clamp instead.
  return HASH_SIZES[Math.max(0, Math.min(i, HASH_SIZES.length - 1))]!;
}
function fitSize(current: number): number {
  return sizeAt(sizeIdx(current));
}
function growSize(current: number): number {
  return sizeAt(sizeIdx(current) + 1);
}
function shrinkSize(current: number): number {
  return sizeAt(sizeIdx(current) - 1);
}

/** A bucket array for `numBuckets` buckets, 8-aligned, with scratch space around it. */
function allocBuckets(numBuckets: number): Uint8Array {
  const len = numBuckets * BUCKET_SIZE;
  return new Uint8Array(new ArrayBuffer(SCRATCH_BEFORE + len + SCRATCH_AFTER), SCRATCH_BEFORE, len);
}

function checkKey(key: Uint8Array): void {
  if (key.length !== NS_KEY_SIZE) throw new RangeError(`hash index keys are ${NS_KEY_SIZE} bytes, got ${key.length}`);
}

function hexOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export interface HashHeaderFields {
  numEntries: number;
  numBuckets: number;
}

/**
 * Check an index file's header against the file's length, with the messages of borg's
 * hashindex_read (which raises ValueError). Stricter than borg in one point: key and value
 * sizes must be NSIndex's, so a chunks cache or foreign index is refused instead of misread.
 */
export function parseHashHeader(header: Uint8Array, fileLength: number): HashHeaderFields {
  if (header.length < HASH_HEADER_SIZE) {
    throw new HashIndexFormatError(
      `Could not read header (expected ${HASH_HEADER_SIZE}, but read ${header.length} bytes)`,
    );
  }
  for (let i = 0; i < HASH_MAGIC.length; i++) {
    if (header[i] !== HASH_MAGIC[i]) throw new HashIndexFormatError("Unknown MAGIC in header");
  }
  const dv = new DataView(header.buffer, header.byteOffset, HASH_HEADER_SIZE);
  const numEntries = dv.getInt32(8, true);
  const numBuckets = dv.getInt32(12, true);
  const keySize = dv.getInt8(16);
  const valueSize = dv.getInt8(17);
  const expected = HASH_HEADER_SIZE + numBuckets * (keySize + valueSize);
  if (fileLength !== expected) {
    throw new HashIndexFormatError(`Incorrect file length (expected ${expected}, got ${fileLength})`);
  }
  if (keySize !== NS_KEY_SIZE || valueSize !== NS_VALUE_SIZE) {
    throw new HashIndexFormatError(
      `Unexpected key/value size in header (expected ${NS_KEY_SIZE}/${NS_VALUE_SIZE}, got ${keySize}/${valueSize})`,
    );
  }
  return { numEntries, numBuckets };
}

export class NSIndex {
  /** The buckets, exactly the file's bytes after the header. */
  private buf: Uint8Array;
  /**
   * The same bytes as 32-bit words. Int32 rather than Uint32 so that every word is a small
   * integer to the JIT (no doubles) in the key comparisons; segment and offset are read with >>> 0.
   */
  private w: Int32Array;
  private nEntries: number;
  private nBuckets: number;
  private nEmpty: number;
  private lower: number;
  private upper: number;
  private minEmpty: number;
  /** Second result of find() when the key is absent: the first tombstone or empty bucket seen. */
  private startIdx = -1;

  private constructor(buckets: Uint8Array, numEntries: number, numEmpty: number) {
    this.buf = buckets;
    this.w = new Int32Array(buckets.buffer, buckets.byteOffset, buckets.length / 4);
    this.nBuckets = buckets.length / BUCKET_SIZE;
    this.nEntries = numEntries;
    this.nEmpty = numEmpty;
    this.lower = lowerLimit(this.nBuckets);
    this.upper = upperLimit(this.nBuckets);
    this.minEmpty = minEmptyOf(this.nBuckets);
  }

  /** An empty index like borg's `NSIndex(capacity)`: the smallest table size >= capacity. */
  static create(capacity = 0): NSIndex {
    const numBuckets = fitSize(capacity);
    const buckets = allocBuckets(numBuckets);
    const w = new Int32Array(buckets.buffer, buckets.byteOffset, buckets.length / 4);
    for (let i = SEG_WORD; i < w.length; i += BUCKET_WORDS) w[i] = EMPTY;
    return new NSIndex(buckets, 0, numBuckets);
  }

  /**
   * Storage for reading `numBuckets` buckets straight from a file, to hand to fromBuckets().
   * Its contents are unspecified until the caller has filled all of it.
   */
  static allocateBuckets(numBuckets: number): Uint8Array {
    return allocBuckets(numBuckets);
  }

  /**
   * An index over bucket bytes read from a file (header already checked), taking ownership of
   * them: they are wrapped, not copied, when 4-aligned (a misaligned view is copied once).
   * Like borg's hashindex_read, too few empty buckets (too many tombstones) trigger a same-size
   * rebuild.
   */
  static fromBuckets(buckets: Uint8Array, numEntries: number): NSIndex {
    if (buckets.length % BUCKET_SIZE !== 0) throw new RangeError("bucket bytes are not a whole number of buckets");
    let own = buckets;
    if (buckets.byteOffset % 4 !== 0) {
      own = allocBuckets(buckets.length / BUCKET_SIZE);
      own.set(buckets);
    }
    const index = new NSIndex(own, numEntries, 0);
    index.nEmpty = index.countEmpty();
    if (index.nEmpty < index.minEmpty) index.resize(index.nBuckets);
    return index;
  }

  /**
   * Read an index from a whole file's bytes (borg's NSIndex.read). The buckets are wrapped
   * without copying when they are 4-aligned in memory, i.e. when `file.byteOffset % 4 === 2`;
   * otherwise they are copied once. readIndexFile (integrity.ts) reads into aligned memory.
   */
  static fromBytes(file: Uint8Array): NSIndex {
    const h = parseHashHeader(file.subarray(0, HASH_HEADER_SIZE), file.length);
    return NSIndex.fromBuckets(file.subarray(HASH_HEADER_SIZE), h.numEntries);
  }

  /** The 18-byte file header for the current state. */
  headerBytes(): Uint8Array {
    const h = new Uint8Array(HASH_HEADER_SIZE);
    h.set(HASH_MAGIC, 0);
    const dv = new DataView(h.buffer);
    dv.setInt32(8, this.nEntries, true);
    dv.setInt32(12, this.nBuckets, true);
    dv.setInt8(16, NS_KEY_SIZE);
    dv.setInt8(17, NS_VALUE_SIZE);
    return h;
  }

  /** The bucket bytes as they go to the file: a view of the live table, valid until the next change. */
  bucketBytes(): Uint8Array {
    return this.buf;
  }

  get size(): number {
    return this.nEntries;
  }

  get numBuckets(): number {
    return this.nBuckets;
  }

  /** Never-used buckets (num_empty; tombstones are not empty). Rebuilds happen when it runs low. */
  get emptyBuckets(): number {
    return this.nEmpty;
  }

  /** Bytes the index file takes (borg's index.size(), used in free-space estimates). */
  byteSize(): number {
    return HASH_HEADER_SIZE + this.nBuckets * BUCKET_SIZE;
  }

  /**
   * Bucket number of `key`, or -1. Like borg, a hit behind a tombstone moves the entry into the
   * first tombstone of its probe chain, so lookups can change the table (and its bytes).
   */
  lookup(key: Uint8Array): number {
    checkKey(key);
    return this.find(
      key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24),
      key[4]! | (key[5]! << 8) | (key[6]! << 16) | (key[7]! << 24),
      key[8]! | (key[9]! << 8) | (key[10]! << 16) | (key[11]! << 24),
      key[12]! | (key[13]! << 8) | (key[14]! << 16) | (key[15]! << 24),
      key[16]! | (key[17]! << 8) | (key[18]! << 16) | (key[19]! << 24),
      key[20]! | (key[21]! << 8) | (key[22]! << 16) | (key[23]! << 24),
      key[24]! | (key[25]! << 8) | (key[26]! << 16) | (key[27]! << 24),
      key[28]! | (key[29]! << 8) | (key[30]! << 16) | (key[31]! << 24),
    );
  }

  /** lookup() of the key in bucket `bucket` of `other`, without copying it out. */
  lookupBucketOf(other: NSIndex, bucket: number): number {
    const w = other.w;
    const base = bucket * BUCKET_WORDS;
    return this.find(w[base]!, w[base + 1]!, w[base + 2]!, w[base + 3]!, w[base + 4]!, w[base + 5]!, w[base + 6]!, w[base + 7]!);
  }

  /** Segment stored in a used bucket (raw: no MAX_VALUE check). */
  segmentAt(bucket: number): number {
    return this.w[bucket * BUCKET_WORDS + SEG_WORD]! >>> 0;
  }

  offsetAt(bucket: number): number {
    return this.w[bucket * BUCKET_WORDS + SEG_WORD + 1]! >>> 0;
  }

  /** A copy of the key in a bucket. */
  keyAt(bucket: number): Uint8Array {
    return this.buf.slice(bucket * BUCKET_SIZE, bucket * BUCKET_SIZE + NS_KEY_SIZE);
  }

  has(key: Uint8Array): boolean {
    const b = this.lookup(key);
    if (b < 0) return false;
    this.checkedSegment(b);
    return true;
  }

  get(key: Uint8Array): [segment: number, offset: number] | undefined {
    const b = this.lookup(key);
    if (b < 0) return undefined;
    return [this.checkedSegment(b), this.offsetAt(b)];
  }

  set(key: Uint8Array, segment: number, offset: number): void {
    checkKey(key);
    if (!Number.isInteger(segment) || segment < 0 || segment > MAX_VALUE) {
      throw new HashIndexValueError(`segment ${segment} out of range (maximum number of segments reached)`);
    }
    if (!Number.isInteger(offset) || offset < 0 || offset > 0xffffffff) {
      throw new RangeError(`offset ${offset} does not fit in 32 bits`);
    }
    this.insert(
      key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24),
      key[4]! | (key[5]! << 8) | (key[6]! << 16) | (key[7]! << 24),
      key[8]! | (key[9]! << 8) | (key[10]! << 16) | (key[11]! << 24),
      key[12]! | (key[13]! << 8) | (key[14]! << 16) | (key[15]! << 24),
      key[16]! | (key[17]! << 8) | (key[18]! << 16) | (key[19]! << 24),
      key[20]! | (key[21]! << 8) | (key[22]! << 16) | (key[23]! << 24),
      key[24]! | (key[25]! << 8) | (key[26]! << 16) | (key[27]! << 24),
      key[28]! | (key[29]! << 8) | (key[30]! << 16) | (key[31]! << 24),
      segment | 0,
      offset | 0,
    );
  }

  /**
   * false: deletes never shrink the table. For an index rebuilt into a table sized up front
   * (the check's), where shrinking while it is still filling would only resize it twice.
   */
  shrinkOnDelete = true;

  /** Remove `key`; false when it was not there (borg raises KeyError). May shrink the table. */
  delete(key: Uint8Array): boolean {
    const b = this.lookup(key);
    if (b < 0) return false;
    this.w[b * BUCKET_WORDS + SEG_WORD] = DELETED;
    this.nEntries--;
    if (this.nEntries < this.lower && this.shrinkOnDelete) this.resize(shrinkSize(this.nBuckets));
    return true;
  }

  /** First used bucket after `after` (-1 to start), or -1 at the end. */
  nextBucket(after: number): number {
    const w = this.w;
    const n = this.nBuckets;
    for (let b = after + 1; b < n; b++) {
      const v = w[b * BUCKET_WORDS + SEG_WORD]!;
      if (v !== EMPTY && v !== DELETED) return b;
    }
    return -1;
  }

  /**
   * [key, segment, offset] in bucket order (borg's iteritems). With a marker, iteration starts
   * after the marker's bucket; the marker is looked up now (which may move it, as in borg) and
   * must be in the index. Iteration continues by bucket number, so it stays defined if the index
   * changes meanwhile, but a resize reorders everything.
   */
  entries(marker?: Uint8Array | null): IterableIterator<[Uint8Array, number, number]> {
    let b = -1;
    if (marker && marker.length > 0) {
      b = this.lookup(marker);
      if (b < 0) throw new HashIndexKeyError(hexOf(marker));
    }
    return this.entriesAfter(b);
  }

  clone(): NSIndex {
    const buckets = allocBuckets(this.nBuckets);
    buckets.set(this.buf);
    const c = new NSIndex(buckets, this.nEntries, this.nEmpty);
    return c;
  }

  private *entriesAfter(bucket: number): Generator<[Uint8Array, number, number]> {
    let b = bucket;
    while ((b = this.nextBucket(b)) !== -1) {
      yield [this.keyAt(b), this.checkedSegment(b), this.offsetAt(b)];
    }
  }

  private checkedSegment(bucket: number): number {
    const s = this.segmentAt(bucket);
    if (s > MAX_VALUE) throw new HashIndexValueError();
    return s;
  }

  private countEmpty(): number {
    const w = this.w;
    let count = 0;
    for (let i = SEG_WORD; i < w.length; i += BUCKET_WORDS) if (w[i] === EMPTY) count++;
    return count;
  }

  /**
   * hashindex_lookup: probe linearly from key word 0 mod table size. Returns the bucket or -1
   * and then leaves the first tombstone (else the empty bucket) of the chain in startIdx.
   */
  private find(k0: number, k1: number, k2: number, k3: number, k4: number, k5: number, k6: number, k7: number): number {
    const w = this.w;
    const n = this.nBuckets;
    const start = (k0 >>> 0) % n;
    let idx = start;
    let didx = -1;
    for (;;) {
      const base = idx * BUCKET_WORDS;
      const v = w[base + SEG_WORD];
      if (v === EMPTY) break;
      if (v === DELETED) {
        if (didx === -1) didx = idx;
      } else if (
        w[base] === k0 &&
        w[base + 1] === k1 &&
        w[base + 2] === k2 &&
        w[base + 3] === k3 &&
        w[base + 4] === k4 &&
        w[base + 5] === k5 &&
        w[base + 6] === k6 &&
        w[base + 7] === k7
      ) {
        if (didx !== -1) {
          // Move the entry forward into the tombstone so the next lookup is shorter.
          w.copyWithin(didx * BUCKET_WORDS, base, base + BUCKET_WORDS);
          w[base + SEG_WORD] = DELETED;
          idx = didx;
        }
        return idx;
      }
      if (++idx >= n) idx = 0;
      if (idx === start) {
        // A full pass without an empty bucket; the limits keep the table from getting here
        // (borg only asserts). A tombstone seen on the way still proves the key absent.
        if (didx === -1) throw new Error("hash index has no free bucket (corrupted table)");
        break;
      }
    }
    this.startIdx = didx === -1 ? idx : didx;
    return -1;
  }

  /** hashindex_set with the key as words. */
  private insert(
    k0: number,
    k1: number,
    k2: number,
    k3: number,
    k4: number,
    k5: number,
    k6: number,
    k7: number,
    seg: number,
    off: number,
  ): void {
    let idx = this.find(k0, k1, k2, k3, k4, k5, k6, k7);
    if (idx >= 0) {
      const base = idx * BUCKET_WORDS + SEG_WORD;
      this.w[base] = seg;
      this.w[base + 1] = off;
      return;
    }
    if (this.nEntries > this.upper) {
      this.resize(growSize(this.nBuckets));
      this.find(k0, k1, k2, k3, k4, k5, k6, k7);
    }
    idx = this.startIdx;
    if (this.w[idx * BUCKET_WORDS + SEG_WORD] === EMPTY) {
      if (this.nEmpty <= this.minEmpty) {
        // Too many tombstones: rebuild at the same size, which clears them.
        this.resize(this.nBuckets);
        this.find(k0, k1, k2, k3, k4, k5, k6, k7);
        idx = this.startIdx;
      }
      this.nEmpty--;
    }
    const w = this.w;
    const base = idx * BUCKET_WORDS;
    w[base] = k0;
    w[base + 1] = k1;
    w[base + 2] = k2;
    w[base + 3] = k3;
    w[base + 4] = k4;
    w[base + 5] = k5;
    w[base + 6] = k6;
    w[base + 7] = k7;
    w[base + SEG_WORD] = seg;
    w[base + SEG_WORD + 1] = off;
    this.nEntries++;
  }

  /** hashindex_resize: reinsert every entry, in bucket order, into a fresh table. */
  private resize(capacity: number): void {
    const fresh = NSIndex.create(capacity);
    const w = this.w;
    for (let b = this.nextBucket(-1); b !== -1; b = this.nextBucket(b)) {
      const base = b * BUCKET_WORDS;
      fresh.insert(
        w[base]!,
        w[base + 1]!,
        w[base + 2]!,
        w[base + 3]!,
        w[base + 4]!,
        w[base + 5]!,
        w[base + 6]!,
        w[base + 7]!,
        w[base + SEG_WORD]!,
        w[base + SEG_WORD + 1]!,
      );
    }
    this.buf = fresh.buf;
    this.w = fresh.w;
    this.nBuckets = fresh.nBuckets;
    // As in C, num_entries keeps its value (it is what the header said when read from a file).
    this.nEmpty = this.nBuckets - this.nEntries;
    this.lower = fresh.lower;
    this.upper = fresh.upper;
    this.minEmpty = fresh.minEmpty;
  }
}
