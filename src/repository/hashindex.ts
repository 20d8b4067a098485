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
//
// Growing: borg's resize builds a second table and copies every entry into it, so for a moment
// both tables are in memory (10.5 + 17.8 MB at 200,000 objects), and that moment was the peak
// RSS of a session putting that many objects; freed, the old table stays with the allocator for
// a few hundred milliseconds more. Here a table's ArrayBuffer is resizable where it can be: it
// is allocated with room reserved (address space only, no memory) to grow into, and a resize
// grows the buffer where it is and moves the entries within it (rehashInPlace), leaving exactly
// the bytes borg's copy would. Reserved address space comes out of the runtime's 64 GiB cage
// for array buffers and is only given back when the buffer is collected (or the table replaced
// or released), so each thread's tables may reserve at most RESERVE_BUDGET between them, and
// `burg socket`'s workers less; past it a table is a plain buffer and grows by copying.

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

/** Bytes of the ArrayBuffer holding `numBuckets` buckets and the scratch space around them. */
function bufferBytes(numBuckets: number): number {
  return SCRATCH_BEFORE + numBuckets * BUCKET_SIZE + SCRATCH_AFTER;
}

/**
 * Least address space reserved for a table to grow into: enough for 757,607 buckets (568,205
 * objects), so a table that starts empty grows in place through every step up to there.
 */
const MIN_RESERVE = bufferBytes(757607);
/** Address space the tables of one thread may hold in reserve between them (see the top comment). */
const RESERVE_BUDGET = 1 << 30;
/** ... and those of all threads of a process (the cage is 64 GiB and also holds every other buffer). */
const RESERVE_PER_PROCESS = 16 * 2 ** 30;
let reserveBudget = RESERVE_BUDGET;
let reserved = 0;
const reservations = new FinalizationRegistry<number>((bytes) => {
  reserved -= bytes;
});

/** The reserve budget of this thread's tables (0: every table is a plain buffer). */
export function setTableReserveBudget(bytes: number): void {
  reserveBudget = bytes;
}

/** The reserve budget of each of `threads` threads that open repositories in one process. */
export function tableReserveBudgetFor(threads: number): number {
  return Math.min(RESERVE_BUDGET, Math.floor(RESERVE_PER_PROCESS / Math.max(1, threads)));
}

/** Address space this thread's live (not yet collected or released) tables hold in reserve. */
export function tableReserveInUse(): number {
  return reserved;
}

/**
 * A bucket array for `numBuckets` buckets, 8-aligned, with scratch space around it. Its buffer is
 * resizable, with room for two more growth steps (at least MIN_RESERVE), while the budget lasts.
 */
function allocBuckets(numBuckets: number): Uint8Array {
  const len = numBuckets * BUCKET_SIZE;
  const bytes = bufferBytes(numBuckets);
  const max = Math.max(bufferBytes(sizeAt(sizeIdx(numBuckets) + 2)), MIN_RESERVE);
  let ab: ArrayBuffer | null = null;
  if (reserved + max <= reserveBudget) {
    try {
      ab = new ArrayBuffer(bytes, { maxByteLength: max });
      reserved += max;
      reservations.register(ab, max, ab);
    } catch {
      // RangeError: the cage has no room for the reservation; a plain buffer will do.
      ab = null;
    }
  }
  return new Uint8Array(ab ?? new ArrayBuffer(bytes), SCRATCH_BEFORE, len);
}

/** Give a bucket array's memory and reserved address space back now instead of at collection. */
function releaseBuckets(buckets: Uint8Array): void {
  const ab = buckets.buffer as ArrayBuffer;
  if (!ab.resizable || ab.detached) return;
  if (reservations.unregister(ab)) reserved -= ab.maxByteLength;
  ab.transferToFixedLength(0);
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

  /**
   * Give the table's memory (and the address space reserved for it) back now rather than when
   * it is collected. The index is unusable afterwards: lookups and changes throw.
   */
  release(): void {
    const old = this.buf;
    this.buf = new Uint8Array(0);
    this.w = new Int32Array(0);
    this.nBuckets = 0;
    this.nEntries = 0;
    this.nEmpty = 0;
    releaseBuckets(old);
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
    if (n === 0) throw new Error("hash index used after release()");
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

  /**
   * hashindex_resize: reinsert every entry, in bucket order, into a fresh table of `capacity`
   * buckets. In place when the buffer can hold both sizes; otherwise into a new buffer, and the
   * old one is given back at once.
   */
  private resize(capacity: number): void {
    const ab = this.buf.buffer as ArrayBuffer;
    if (ab.resizable && this.buf.byteOffset === SCRATCH_BEFORE && ab.maxByteLength >= bufferBytes(Math.max(capacity, this.nBuckets))) {
      this.rehashInPlace(capacity);
      return;
    }
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
    const old = this.buf;
    this.adopt(fresh.buf);
    releaseBuckets(old);
  }

  /**
   * resize() within this table's own (resizable) buffer. Inserting the entries in bucket order
   * into an empty table puts each into the first free bucket from its home, so a pass over an
   * occupancy map of the new size tells where each entry ends up. The entries are then moved
   * along the cycles of that mapping (each move may displace one entry not yet moved, which is
   * carried on), and every bucket left unused gets an empty bucket's bytes: zeros and the empty
   * marker, as in borg's calloc'ed table. Extra memory: 4 bytes per old bucket and 1 per new one.
   */
  private rehashInPlace(capacity: number): void {
    const oldN = this.nBuckets;
    const ab = this.buf.buffer as ArrayBuffer;
    if (capacity > oldN) ab.resize(bufferBytes(capacity)); // the new bytes are zeros
    const w = new Int32Array(ab, SCRATCH_BEFORE, Math.max(oldN, capacity) * BUCKET_WORDS);
    // Where each entry goes (-1: no entry, or already moved) and which buckets end up used.
    const dest = new Int32Array(oldN);
    const used = new Uint8Array(capacity);
    for (let b = 0; b < oldN; b++) {
      const base = b * BUCKET_WORDS;
      const v = w[base + SEG_WORD]!;
      if (v === EMPTY || v === DELETED) {
        dest[b] = -1;
        continue;
      }
      let p = (w[base]! >>> 0) % capacity;
      while (used[p] === 1) if (++p === capacity) p = 0;
      used[p] = 1;
      dest[b] = p;
    }
    const carry = new Int32Array(BUCKET_WORDS);
    for (let b = 0; b < oldN; b++) {
      let d = dest[b]!;
      if (d < 0) continue;
      dest[b] = -1;
      if (d === b) continue;
      const from = b * BUCKET_WORDS;
      for (let k = 0; k < BUCKET_WORDS; k++) carry[k] = w[from + k]!;
      for (;;) {
        const to = d * BUCKET_WORDS;
        // The destination still holds an entry that has not moved: take it along.
        const next = d < oldN ? dest[d]! : -1;
        for (let k = 0; k < BUCKET_WORDS; k++) {
          const t = w[to + k]!;
          w[to + k] = carry[k]!;
          carry[k] = t;
        }
        if (next < 0) break;
        dest[d] = -1;
        d = next;
      }
    }
    for (let p = 0; p < capacity; p++) {
      if (used[p] === 1) continue;
      const base = p * BUCKET_WORDS;
      w.fill(0, base, base + BUCKET_WORDS);
      w[base + SEG_WORD] = EMPTY;
    }
    if (capacity < oldN) ab.resize(bufferBytes(capacity));
    this.adopt(new Uint8Array(ab, SCRATCH_BEFORE, capacity * BUCKET_SIZE));
  }

  /** Take `buckets` (a fresh or rehashed table) as this table's; num_entries keeps its value. */
  private adopt(buckets: Uint8Array): void {
    this.buf = buckets;
    this.w = new Int32Array(buckets.buffer, buckets.byteOffset, buckets.length / 4);
    this.nBuckets = buckets.length / BUCKET_SIZE;
    // As in C, num_entries keeps its value (it is what the header said when read from a file).
    this.nEmpty = this.nBuckets - this.nEntries;
    this.lower = lowerLimit(this.nBuckets);
    this.upper = upperLimit(this.nBuckets);
    this.minEmpty = minEmptyOf(this.nBuckets);
  }
}
