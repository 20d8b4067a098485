// The repository index of a session that only reads, answered from index.N on disk instead of
// a table in memory. borg (and NSIndex) read the whole table, 40 bytes per bucket: 88 MB for a
// repository of 1,000,000 objects, held for every `borg list`, `info` or `extract`. Here the
// file is read once through a window to verify its digests (as readIndexFile does), and then
// each lookup reads the buckets of its probe chain with pread(2): the table stays in the page
// cache, shared by every session and process, and out of this process's memory.
//
// It answers exactly as the table NSIndex would load:
// - A table borg would rebuild on loading (too few empty buckets) is not served from the file:
//   open() returns null and the caller loads the table.
// - A lookup that passes a tombstone moves the entry into the first tombstone of its chain, as
//   borg's hashindex_lookup does (it changes the order `list` returns). Moved buckets live in
//   an overlay.
// When the overlay grows past OVERLAY_MAX buckets, the caller takes toTable() instead. However
// many lookups a session makes (a restore makes one per chunk), it stays on the file: a lookup's
// pread costs a few µs, 40-43 µs of server CPU per get of 4 KiB instead of 38 with the table in
// bench/serve.ts (borg serve: 70-78), while the table cost that session 17.8 MB (its peak RSS
// was 86-91 MiB with it, 68 without; borg serve's 78), and 88 MB at 1,000,000 objects.
// Once the session starts a transaction, the repository takes toTable() (the file plus the
// overlay) and goes on with NSIndex.

import { closeSync } from "node:fs";
import { HashIndexKeyError, HashIndexValueError } from "../errors.ts";
import { readFully } from "../util/fs.ts";
import { toHex } from "../util/hex.ts";
import { BUCKET_SIZE as BUCKET, HASH_HEADER_SIZE, MAX_VALUE, NS_KEY_SIZE, NSIndex, minEmptyOf } from "./hashindex.ts";
import { scanIndexFile, type IntegrityParts } from "./integrity.ts";

const SEG = NS_KEY_SIZE; // byte offset of the segment word in a bucket
const EMPTY = 0xffffffff;
const DELETED = 0xfffffffe;
/** Buckets read per pread while probing, and while iterating. */
const PROBE_BUCKETS = 32;
const ITER_BUCKETS = 1638;
/** Moved buckets kept in the overlay before the caller should switch to the whole table. */
export const OVERLAY_MAX = 4096;

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

export class FileIndex {
  /** Bucket number -> its 40 bytes, for buckets lookups have changed. */
  private readonly overlay = new Map<number, Uint8Array>();
  /** Buckets [blockStart, blockStart + blockLen) as read last. */
  private readonly block = new Uint8Array(PROBE_BUCKETS * BUCKET);
  private blockStart = -1;
  private blockLen = 0;
  private closed = false;

  private constructor(
    private readonly fd: number,
    /** The transaction whose index.N this is. */
    readonly transactionId: number,
    readonly size: number,
    readonly numBuckets: number,
  ) {}

  /**
   * Open and verify index.N (the errors of readIndexFile); null when borg would rebuild the
   * table on loading it, which only the whole table can do.
   */
  static open(path: string, integrity: IntegrityParts | null, transactionId: number): FileIndex | null {
    let empty = 0;
    const { fd, numEntries, numBuckets } = scanIndexFile(path, integrity, (buckets) => {
      for (let at = SEG; at < buckets.length; at += BUCKET) if (u32(buckets, at) === EMPTY) empty++;
    });
    if (empty < minEmptyOf(numBuckets)) {
      closeSync(fd);
      return null;
    }
    return new FileIndex(fd, transactionId, numEntries, numBuckets);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  get overlayBuckets(): number {
    return this.overlay.size;
  }

  /** Whether the caller should take toTable() now (see OVERLAY_MAX). */
  get outgrown(): boolean {
    return this.overlay.size > OVERLAY_MAX;
  }

  /** Read `count` buckets from bucket `first` on into `into`. */
  private readBuckets(into: Uint8Array, first: number, count: number): void {
    const n = readFully(this.fd, into, HASH_HEADER_SIZE + first * BUCKET, count * BUCKET);
    if (n !== count * BUCKET) throw new Error(`index file shorter than when it was verified (bucket ${first})`);
  }

  /** Bucket `b`'s bytes (a view valid until the next call). */
  private bucket(b: number): Uint8Array {
    const moved = this.overlay.get(b);
    if (moved) return moved;
    if (b < this.blockStart || b >= this.blockStart + this.blockLen) {
      const len = Math.min(PROBE_BUCKETS, this.numBuckets - b);
      this.readBuckets(this.block, b, len);
      this.blockStart = b;
      this.blockLen = len;
    }
    const at = (b - this.blockStart) * BUCKET;
    return this.block.subarray(at, at + BUCKET);
  }

  /** hashindex_lookup, with borg's move into the first tombstone of the chain. */
  lookup(key: Uint8Array): number {
    if (key.length !== NS_KEY_SIZE) throw new RangeError(`hash index keys are ${NS_KEY_SIZE} bytes, got ${key.length}`);
    const n = this.numBuckets;
    const start = u32(key, 0) % n;
    let idx = start;
    let didx = -1;
    for (;;) {
      const bk = this.bucket(idx);
      const seg = u32(bk, SEG);
      if (seg === EMPTY) return -1;
      if (seg === DELETED) {
        if (didx === -1) didx = idx;
      } else {
        let same = true;
        for (let i = 0; i < NS_KEY_SIZE; i++) {
          if (bk[i] !== key[i]) {
            same = false;
            break;
          }
        }
        if (same) {
          if (didx === -1) return idx;
          const entry = bk.slice();
          const tomb = bk.slice();
          tomb[SEG] = 0xfe;
          tomb[SEG + 1] = tomb[SEG + 2] = tomb[SEG + 3] = 0xff;
          this.overlay.set(didx, entry);
          this.overlay.set(idx, tomb);
          return didx;
        }
      }
      if (++idx >= n) idx = 0;
      if (idx === start) {
        if (didx === -1) throw new Error("hash index has no free bucket (corrupted table)");
        return -1;
      }
    }
  }

  segmentAt(b: number): number {
    return u32(this.bucket(b), SEG);
  }

  offsetAt(b: number): number {
    return u32(this.bucket(b), SEG + 4);
  }

  has(key: Uint8Array): boolean {
    const b = this.lookup(key);
    if (b < 0) return false;
    if (this.segmentAt(b) > MAX_VALUE) throw new HashIndexValueError();
    return true;
  }

  /** NSIndex.entries: [key, segment, offset] in bucket order, after `marker`'s bucket. */
  entries(marker?: Uint8Array | null): IterableIterator<[Uint8Array, number, number]> {
    let b = -1;
    if (marker && marker.length > 0) {
      b = this.lookup(marker);
      if (b < 0) throw new HashIndexKeyError(toHex(marker));
    }
    return this.entriesAfter(b);
  }

  private *entriesAfter(bucket: number): Generator<[Uint8Array, number, number]> {
    const chunk = new Uint8Array(ITER_BUCKETS * BUCKET);
    for (let first = bucket + 1; first < this.numBuckets; first += ITER_BUCKETS) {
      const len = Math.min(ITER_BUCKETS, this.numBuckets - first);
      this.readBuckets(chunk, first, len);
      for (let i = 0; i < len; i++) {
        const bk = this.overlay.get(first + i) ?? chunk.subarray(i * BUCKET, (i + 1) * BUCKET);
        const seg = u32(bk, SEG);
        if (seg === EMPTY || seg === DELETED) continue;
        if (seg > MAX_VALUE) throw new HashIndexValueError();
        yield [bk.slice(0, NS_KEY_SIZE), seg, u32(bk, SEG + 4)];
      }
    }
  }

  /** The whole table as NSIndex would have it now: the file's buckets with the overlay applied. */
  toTable(): NSIndex {
    const buckets = NSIndex.allocateBuckets(this.numBuckets);
    this.readBuckets(buckets, 0, this.numBuckets);
    for (const [b, bytes] of this.overlay) buckets.set(bytes, b * BUCKET);
    return NSIndex.fromBuckets(buckets, this.size);
  }
}
