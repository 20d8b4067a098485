// Fast sequential verification of segment files: the read-and-CRC half of the repository check.
//
// A ReadPipeline streams a list of segment files in order with several large reads in flight
// (on the I/O thread pool) while the caller parses the chunk it holds, so reading the next bytes
// overlaps with checking the current ones, also across file boundaries. Chunks that are in the
// page cache are read normally; the others with O_DIRECT (util/direct-io.ts), straight from the
// disk into the pipeline's buffers, which is up to three times faster than filling the page
// cache on the VMs measured and leaves the cache to other work. An EntryParser walks
// one segment's entries through those chunks as a state machine: headers and keys that straddle
// a chunk boundary are stitched through small buffers and the CRC32 is carried across chunks
// (Bun.hash.crc32 takes the running value as seed), so no entry is ever copied, however large.
//
// The verdicts and messages are exactly those of borg 1.2's LoggedIO.iter_objects/_read
// (repository.py), including their order (magic, header, size, short read, CRC, tag): the first
// problem ends the walk of that segment, as an IntegrityError from iter_objects does in borg.
// Entries are collected in typed arrays (tag, offset, size, key), not objects per entry.

import { closeSync, fstatSync, openSync, read, constants as fsc } from "node:fs";
import { IntegrityError } from "../errors.ts";
import {
  HEADER_SIZE,
  KEY_SIZE,
  MAGIC,
  MAGIC_LEN,
  MAX_OBJECT_SIZE,
  PUT_HEADER_SIZE,
  TAG_COMMIT,
  TAG_DELETE,
  TAG_PUT,
} from "./format.ts";
import type { SegmentEntry } from "./segments.ts";
import { crc32Of, crc32Range } from "../util/crc32.ts";
import { readFully } from "../util/fs.ts";
import { alignedBuffer, alignUp, DIRECT_ALIGN, directIoAvailable, O_DIRECT, Residency } from "../util/direct-io.ts";

const crc32 = Bun.hash.crc32;

/**
 * Read size and reads in flight (measured with bench/check.ts and by hand, see bench/README.md).
 * Buffered, one 4 MiB read in flight while the previous chunk is checked was best cold and as
 * good as any warm: several concurrent buffered reads of one file defeat the kernel's readahead
 * (cold throughput dropped by a third), and chunks much larger than the CPU caches make the CRC
 * pass slower. Direct reads have no readahead to defeat and need several requests queued to
 * keep the disk busy: four of 4 MiB were best (as fio's queue depth 4 on the same disk).
 */
export const DEFAULT_CHUNK_SIZE = 4 << 20;
export const DEFAULT_READ_DEPTH = 1;
export const DIRECT_READ_DEPTH = 4;
/** Files up to this size are read synchronously when scheduled: a thread-pool round trip costs more. */
const SMALL_FILE = 64 * 1024;

/** The valid entries of one segment, in file order, up to the first problem. */
export class SegmentEntries {
  count = 0;
  tags = new Uint8Array(1024);
  offsets = new Uint32Array(1024);
  sizes = new Uint32Array(1024);
  keys = new Uint8Array(1024 * KEY_SIZE);

  reset(): void {
    this.count = 0;
  }

  /** Make room for entry number `i` (its key bytes may be written before it is complete). */
  reserve(i: number): void {
    if (i < this.tags.length) return;
    const n = this.tags.length * 2;
    const tags = new Uint8Array(n);
    tags.set(this.tags);
    const offsets = new Uint32Array(n);
    offsets.set(this.offsets);
    const sizes = new Uint32Array(n);
    sizes.set(this.sizes);
    const keys = new Uint8Array(n * KEY_SIZE);
    keys.set(this.keys);
    this.tags = tags;
    this.offsets = offsets;
    this.sizes = sizes;
    this.keys = keys;
  }

  key(i: number): Uint8Array {
    return this.keys.subarray(i * KEY_SIZE, (i + 1) * KEY_SIZE);
  }

  /** Bytes of the file the entries cover (after the magic). */
  bytes(): number {
    let n = 0;
    for (let i = 0; i < this.count; i++) n += this.sizes[i]!;
    return n;
  }

  /**
   * The entries as SegmentEntry views, the shape Repository.updateIndex takes. The iterator
   * reuses one result, one entry object and one key buffer for all of them (read each before the
   * next step): a segment can hold a million entries, and an object per entry or key would be as
   * much garbage.
   */
  iterate(): IterableIterator<SegmentEntry> {
    const entries = this;
    const key = new Uint8Array(KEY_SIZE);
    const kw = new Int32Array(key.buffer);
    const words = new Int32Array(this.keys.buffer, this.keys.byteOffset, this.keys.length >> 2);
    const e: SegmentEntry = { tag: 0, key: null, offset: 0, size: 0, data: null, raw: null, source: null };
    const result: IteratorResult<SegmentEntry> = { value: e, done: false };
    let i = 0;
    return {
      [Symbol.iterator]() {
        return this;
      },
      next(): IteratorResult<SegmentEntry> {
        if (i >= entries.count) return { value: undefined, done: true };
        const tag = entries.tags[i]!;
        e.tag = tag;
        if (tag === TAG_COMMIT) {
          e.key = null;
        } else {
          const w = i * (KEY_SIZE >> 2);
          for (let j = 0; j < KEY_SIZE >> 2; j++) kw[j] = words[w + j]!;
          e.key = key;
        }
        e.offset = entries.offsets[i]!;
        e.size = entries.sizes[i]!;
        i++;
        return result;
      },
    };
  }
}

const enum Phase {
  Magic,
  Header,
  Body,
  Done,
}

/**
 * Walks the entries of one segment fed as consecutive chunks. feed() returns false once the
 * segment is decided (an error was found), so the caller can skip its remaining chunks.
 */
export class EntryParser {
  segment = 0;
  fileSize = 0;
  error: IntegrityError | null = null;
  /** File offset of the entry (or magic/header) the error is about. */
  errorOffset = -1;
  readonly entries: SegmentEntries;

  private phase = Phase.Magic;
  private pos = 0;
  private stitch = new Uint8Array(HEADER_SIZE);
  private stitchLen = 0;
  private entryOffset = 0;
  private entrySize = 0;
  private entryTag = 0;
  private expectedCrc = 0;
  private crc = 0;
  private bodyLeft = 0;
  private keyWant = 0;
  private keyHave = 0;

  constructor(entries: SegmentEntries = new SegmentEntries()) {
    this.entries = entries;
  }

  /** Start a segment of `fileSize` bytes; `offset` > 0 resumes at an entry boundary (no magic check). */
  start(segment: number, fileSize: number, offset = 0): void {
    this.segment = segment;
    this.fileSize = fileSize;
    this.error = null;
    this.errorOffset = -1;
    this.entries.reset();
    this.phase = offset === 0 ? Phase.Magic : Phase.Header;
    this.pos = offset;
    this.entryOffset = offset === 0 ? MAGIC_LEN : offset;
    this.stitchLen = 0;
  }

  get done(): boolean {
    return this.phase === Phase.Done;
  }

  /** Bytes consumed so far (the file position the next chunk must start at). */
  get position(): number {
    return this.pos;
  }

  private fail(message: string, offset: number): false {
    this.error = new IntegrityError(message);
    this.errorOffset = offset;
    this.phase = Phase.Done;
    return false;
  }

  private where(offset: number): string {
    return `[segment ${this.segment}, offset ${offset}]`;
  }

  feed(chunk: Uint8Array): boolean {
    const n = chunk.length;
    let p = 0;
    while (p < n) {
      switch (this.phase) {
        case Phase.Done:
          this.pos += n - p;
          return false;
        case Phase.Magic: {
          const take = Math.min(MAGIC_LEN - this.stitchLen, n - p);
          this.stitch.set(chunk.subarray(p, p + take), this.stitchLen);
          this.stitchLen += take;
          p += take;
          this.pos += take;
          if (this.stitchLen < MAGIC_LEN) break;
          this.stitchLen = 0;
          for (let i = 0; i < MAGIC_LEN; i++) {
            if (this.stitch[i] !== MAGIC[i]) return this.fail(`Invalid segment magic ${this.where(0)}`, 0);
          }
          this.phase = Phase.Header;
          break;
        }
        case Phase.Header: {
          let h: Uint8Array;
          let hp: number;
          if (this.stitchLen === 0 && n - p >= HEADER_SIZE) {
            h = chunk;
            hp = p;
            p += HEADER_SIZE;
            this.pos += HEADER_SIZE;
          } else {
            const take = Math.min(HEADER_SIZE - this.stitchLen, n - p);
            this.stitch.set(chunk.subarray(p, p + take), this.stitchLen);
            this.stitchLen += take;
            p += take;
            this.pos += take;
            if (this.stitchLen < HEADER_SIZE) break;
            this.stitchLen = 0;
            h = this.stitch;
            hp = 0;
          }
          if (!this.startEntry(h, hp)) return false;
          // The common case: the whole entry is in this chunk. The key is copied by hand and
          // small bodies are checked by crc32Range: no view is made per small entry.
          if (this.bodyLeft <= n - p) {
            if (this.keyWant) {
              const keys = this.entries.keys;
              const k = this.entries.count * KEY_SIZE;
              for (let j = 0; j < KEY_SIZE; j++) keys[k + j] = chunk[p + j]!;
            }
            this.crc = crc32Of(chunk, p, p + this.bodyLeft, this.crc);
            p += this.bodyLeft;
            this.pos += this.bodyLeft;
            this.bodyLeft = 0;
            if (!this.endEntry()) return false;
          }
          break;
        }
        case Phase.Body: {
          const take = Math.min(this.bodyLeft, n - p);
          if (this.keyHave < this.keyWant) {
            const k = Math.min(this.keyWant - this.keyHave, take);
            this.entries.keys.set(chunk.subarray(p, p + k), this.entries.count * KEY_SIZE + this.keyHave);
            this.keyHave += k;
          }
          this.crc = crc32(chunk.subarray(p, p + take), this.crc);
          p += take;
          this.pos += take;
          this.bodyLeft -= take;
          if (this.bodyLeft === 0 && !this.endEntry()) return false;
          break;
        }
      }
    }
    return this.phase !== Phase.Done;
  }

  /** Header checks in borg's order; the short read is known from the file size up front. */
  private startEntry(h: Uint8Array, hp: number): boolean {
    const offset = this.entryOffset;
    const crc = (h[hp]! | (h[hp + 1]! << 8) | (h[hp + 2]! << 16) | (h[hp + 3]! << 24)) >>> 0;
    const size = (h[hp + 4]! | (h[hp + 5]! << 8) | (h[hp + 6]! << 16) | (h[hp + 7]! << 24)) >>> 0;
    const tag = h[hp + 8]!;
    if (size > MAX_OBJECT_SIZE) {
      return this.fail(`Invalid segment entry size ${size} - too big ${this.where(offset)}`, offset);
    }
    if (size < HEADER_SIZE) {
      return this.fail(`Invalid segment entry size ${size} - too small ${this.where(offset)}`, offset);
    }
    const length = size - HEADER_SIZE;
    const available = this.fileSize - offset - HEADER_SIZE;
    if (available < length) {
      return this.fail(
        `Segment entry data short read ${this.where(offset)}: expected ${length}, got ${available} bytes`,
        offset,
      );
    }
    this.entrySize = size;
    this.entryTag = tag;
    this.expectedCrc = crc;
    this.crc = crc32Range(h, hp + 4, hp + HEADER_SIZE);
    this.bodyLeft = length;
    this.entries.reserve(this.entries.count);
    this.keyWant = (tag === TAG_PUT || tag === TAG_DELETE) && length >= KEY_SIZE ? KEY_SIZE : 0;
    this.keyHave = 0;
    this.phase = Phase.Body;
    return true;
  }

  private endEntry(): boolean {
    const offset = this.entryOffset;
    if (this.crc >>> 0 !== this.expectedCrc) {
      return this.fail(`Segment entry checksum mismatch ${this.where(offset)}`, offset);
    }
    const tag = this.entryTag;
    if (tag !== TAG_PUT && tag !== TAG_DELETE && tag !== TAG_COMMIT) {
      return this.fail(`Invalid segment entry header, did not get acceptable tag ${this.where(offset)}`, offset);
    }
    if (tag !== TAG_COMMIT && this.entrySize < PUT_HEADER_SIZE) {
      // borg would carry on with a short key and fail later in the index; a PUT or DELETE
      // without a whole key is damage, so it is reported here.
      return this.fail(
        `Segment entry key short read ${this.where(offset)}: expected ${KEY_SIZE}, got ${this.entrySize - HEADER_SIZE} bytes`,
        offset,
      );
    }
    const e = this.entries;
    const i = e.count;
    e.tags[i] = tag;
    e.offsets[i] = offset;
    e.sizes[i] = this.entrySize;
    e.count = i + 1;
    this.entryOffset = offset + this.entrySize;
    this.phase = Phase.Header;
    return true;
  }

  /** The file ended (after fileSize bytes, or early when it shrank while being read). */
  finish(): void {
    if (this.phase === Phase.Done) return;
    if (this.phase === Phase.Magic) {
      this.fail(`Invalid segment magic ${this.where(0)}`, 0);
    } else if (this.phase === Phase.Header && this.stitchLen > 0) {
      this.fail(
        `Invalid segment entry header ${this.where(this.entryOffset)}: unpack requires a buffer of ${HEADER_SIZE} bytes`,
        this.entryOffset,
      );
    } else if (this.phase === Phase.Body) {
      const length = this.entrySize - HEADER_SIZE;
      this.fail(
        `Segment entry data short read ${this.where(this.entryOffset)}: expected ${length}, got ${length - this.bodyLeft} bytes`,
        this.entryOffset,
      );
    } else {
      this.phase = Phase.Done;
    }
  }
}

/** One piece of a file in the pipeline. `bytes` is valid until the next call to next(). */
export interface Chunk {
  /** Index into the file list. */
  file: number;
  /** Size of the file when it was opened. */
  fileSize: number;
  /** File position of bytes[0]. */
  position: number;
  bytes: Uint8Array;
  /** The last chunk of this file (also set when the file turned out shorter than fileSize). */
  last: boolean;
  /** An open or read error; the file's remaining chunks are dropped. */
  error: NodeJS.ErrnoException | null;
}

interface OpenFile {
  index: number;
  path: string;
  fd: number;
  /** The same file opened with O_DIRECT: -1 until the first direct read. */
  directFd: number;
  /** Page-cache residency; undefined until asked, null when unknown. */
  residency: Residency | null | undefined;
  /** How the chunk at `decidedAt` is to be read (decided once, scheduled maybe later). */
  decidedAt: number;
  direct: boolean;
  size: number;
  /** Next position to schedule a read at. */
  scheduled: number;
  /** Jobs of this file not yet consumed or settled after being dropped. */
  pending: number;
  /** No more reads will be scheduled (all scheduled, or the file was skipped). */
  complete: boolean;
}

interface Job {
  file: OpenFile | null;
  index: number;
  fileSize: number;
  position: number;
  length: number;
  last: boolean;
  buf: Uint8Array | null;
  result: Promise<number> | number;
  error: NodeJS.ErrnoException | null;
}

function readAsync(fd: number, buf: Uint8Array, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/**
 * How chunks are read: "auto" reads cached ones buffered and the others with O_DIRECT (where the
 * file system allows it); "buffered" and "direct" force one way (tests, benchmarks).
 */
export type ReadMode = "auto" | "buffered" | "direct";

export interface PipelineOptions {
  chunkSize?: number;
  /** Reads in flight; default DIRECT_READ_DEPTH while reading directly, else DEFAULT_READ_DEPTH. */
  depth?: number;
  io?: ReadMode;
  /** Opens a file for direct reads (a seam for tests: a file system that refuses O_DIRECT). */
  openDirect?: (path: string) => number;
}

/**
 * Reads a list of files front to back in chunks of `chunkSize` with `depth` reads in flight.
 * Every file yields at least one chunk (an empty one for an empty file) and exactly one
 * chunk with `last` set, so a consumer always learns where each file ends.
 */
export class ReadPipeline {
  private readonly paths: readonly string[];
  private readonly chunkSize: number;
  private readonly depthOption: number | undefined;
  private readonly mode: ReadMode;
  /** Direct reads are possible: aligned chunks, O_DIRECT known, not refused by the file system. */
  private direct: boolean;
  private readonly openDirect: (path: string) => number;
  /** Bytes read each way by the thread pool (for tests and benchmarks). */
  readonly stats = { directBytes: 0, bufferedBytes: 0 };
  private readonly free: Uint8Array[] = [];
  private readonly queue: Job[] = [];
  private nextFile = 0;
  /** The file reads are being scheduled for. */
  private current: OpenFile | null = null;
  private held: Uint8Array | null = null;
  private closed = false;
  private readonly settling = new Set<Promise<unknown>>();

  constructor(paths: readonly string[], opts: PipelineOptions = {}) {
    this.paths = paths;
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.depthOption = opts.depth === undefined ? undefined : Math.max(1, opts.depth);
    this.mode = opts.io ?? "auto";
    this.openDirect = opts.openDirect ?? ((path) => openSync(path, fsc.O_RDONLY | O_DIRECT));
    this.direct = this.mode !== "buffered" && this.chunkSize % DIRECT_ALIGN === 0 && directIoAvailable();
  }

  private get depth(): number {
    return this.depthOption ?? (this.direct ? DIRECT_READ_DEPTH : DEFAULT_READ_DEPTH);
  }

  private buffer(): Uint8Array {
    return this.free.pop() ?? (this.direct ? alignedBuffer(this.chunkSize) : new Uint8Array(this.chunkSize));
  }

  private release(f: OpenFile): void {
    if (f.complete && f.pending === 0 && f.fd >= 0) {
      closeSync(f.fd);
      f.fd = -1;
      if (f.directFd >= 0) closeSync(f.directFd);
      f.directFd = -1;
      f.residency?.close();
      f.residency = null;
    }
  }

  /** Read [position, position + length) of `f` directly unless it is all in the page cache. */
  private wantDirect(f: OpenFile, position: number, length: number): boolean {
    if (!this.direct) return false;
    if (this.mode === "direct") return true;
    if (f.residency === undefined) f.residency = Residency.open(f.fd, f.size, f.path);
    return f.residency !== null && f.residency.cached(position, length) === false;
  }

  /**
   * One direct read (the length rounded up to the alignment; the file's end makes it short).
   * A file system that refuses O_DIRECT (EINVAL, e.g. tmpfs) turns direct reads off for the
   * rest of the pipeline, and this read is done buffered.
   */
  private async readDirect(f: OpenFile, buf: Uint8Array, length: number, position: number): Promise<number> {
    let n: number;
    try {
      if (f.directFd < 0) f.directFd = this.openDirect(f.path);
      n = Math.min(length, await readAsync(f.directFd, buf, alignUp(length), position));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
      this.direct = false;
      return this.readBuffered(f, buf, length, position);
    }
    this.stats.directBytes += n;
    return n;
  }

  private async readBuffered(f: OpenFile, buf: Uint8Array, length: number, position: number): Promise<number> {
    const n = await readAsync(f.fd, buf, length, position);
    this.stats.bufferedBytes += n;
    return n;
  }

  /** Queue reads until `depth` are in flight or all files are scheduled. */
  private fill(): void {
    while (!this.closed && this.queue.length < this.depth) {
      let f = this.current;
      if (!f) {
        if (this.nextFile >= this.paths.length) return;
        const index = this.nextFile++;
        let fd: number;
        let size: number;
        try {
          fd = openSync(this.paths[index]!, fsc.O_RDONLY);
        } catch (e) {
          this.queue.push(errorJob(index, e as NodeJS.ErrnoException));
          continue;
        }
        try {
          size = fstatSync(fd).size;
        } catch (e) {
          closeSync(fd);
          this.queue.push(errorJob(index, e as NodeJS.ErrnoException));
          continue;
        }
        f = {
          index,
          path: this.paths[index]!,
          fd,
          directFd: -1,
          residency: undefined,
          decidedAt: -1,
          direct: false,
          size,
          scheduled: 0,
          pending: 0,
          complete: false,
        };
        if (size <= Math.min(SMALL_FILE, this.chunkSize)) {
          const buf = this.buffer();
          const job: Job = { file: f, index, fileSize: size, position: 0, length: size, last: true, buf, result: 0, error: null };
          try {
            job.result = size === 0 ? 0 : readFully(fd, buf, 0, size);
          } catch (e) {
            job.error = e as NodeJS.ErrnoException;
          }
          f.complete = true;
          f.pending = 1;
          this.queue.push(job);
          continue;
        }
        this.current = f;
      }
      const length = Math.min(this.chunkSize, f.size - f.scheduled);
      const last = f.scheduled + length >= f.size;
      if (f.decidedAt !== f.scheduled) {
        f.decidedAt = f.scheduled;
        f.direct = this.wantDirect(f, f.scheduled, length);
      }
      // Cached chunks are copied by the kernel at memory speed: one read in flight keeps up, and
      // more only add threads competing for the same cores (and buffers).
      if (!f.direct && this.depthOption === undefined && this.queue.length >= DEFAULT_READ_DEPTH) return;
      const buf = this.buffer();
      const result = f.direct ? this.readDirect(f, buf, length, f.scheduled) : this.readBuffered(f, buf, length, f.scheduled);
      // A rejected read is looked at when the job is consumed; mark it handled meanwhile.
      result.catch(() => {});
      this.queue.push({ file: f, index: f.index, fileSize: f.size, position: f.scheduled, length, last, buf, result, error: null });
      f.pending++;
      f.scheduled += length;
      if (last) {
        f.complete = true;
        this.current = null;
      }
    }
  }

  /** The next chunk in file order, or null when all files are read. */
  async next(): Promise<Chunk | null> {
    if (this.held) {
      this.free.push(this.held);
      this.held = null;
    }
    this.fill();
    const job = this.queue.shift();
    if (!job) return null;
    let n = 0;
    let error = job.error;
    if (!error) {
      try {
        n = await job.result;
      } catch (e) {
        error = e as NodeJS.ErrnoException;
      }
    }
    if (!error && job.file && job.buf && n < job.length && job.position + n < job.fileSize) {
      // Short before the end of the file: a file system that reads up to a bad sector returns
      // what it has. Read on from there; an unreadable sector is then the chunk's error, after
      // the bytes that could be read.
      try {
        n += readFully(job.file.fd, job.buf.subarray(n), job.position + n, job.length - n);
      } catch (e) {
        error = e as NodeJS.ErrnoException;
      }
    }
    const last = job.last || error !== null || n < job.length;
    if (job.file) {
      job.file.pending--;
      if (last) this.skipFile(job.index);
      this.release(job.file);
    }
    this.fill();
    this.held = job.buf;
    return {
      file: job.index,
      fileSize: job.fileSize,
      position: job.position,
      bytes: job.buf ? job.buf.subarray(0, n) : new Uint8Array(0),
      last,
      error,
    };
  }

  /** Forget the rest of file `index`: its queued chunks are dropped and no more are read. */
  skipFile(index: number): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const job = this.queue[i]!;
      if (job.index === index) {
        this.queue.splice(i, 1);
        this.drop(job);
      }
    }
    const f = this.current;
    if (f && f.index === index) {
      f.complete = true;
      this.current = null;
      this.release(f);
    }
  }

  /** A queued job nobody will consume: recycle its buffer and release its file once the read settled. */
  private drop(job: Job): void {
    const settle: Promise<void> = Promise.resolve(job.result)
      .catch(() => 0)
      .then(() => {
        this.settling.delete(settle);
        if (job.file) {
          job.file.pending--;
          this.release(job.file);
        }
        if (job.buf && !this.closed) this.free.push(job.buf);
      });
    this.settling.add(settle);
  }

  /** Stop: drop queued reads and close every file once its reads settled. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) this.drop(job);
    const f = this.current;
    if (f) {
      f.complete = true;
      this.current = null;
      this.release(f);
    }
    await Promise.all([...this.settling]);
    this.held = null;
    this.free.length = 0;
  }
}

function errorJob(index: number, error: NodeJS.ErrnoException): Job {
  return { file: null, index, fileSize: 0, position: 0, length: 0, last: true, buf: null, result: 0, error };
}

/** The outcome of verifying one segment file. `entries` is reused: read it before the next step. */
export interface SegmentScanResult {
  segment: number;
  /** File size as found (0 when the file could not be opened). */
  fileSize: number;
  entries: SegmentEntries;
  /** The first integrity problem; the entries before it are valid, nothing after it was read. */
  error: IntegrityError | null;
  errorOffset: number;
  /** An I/O error (open or read), as opposed to damaged content. */
  ioError: NodeJS.ErrnoException | null;
}

export interface ScanOptions extends PipelineOptions {
  /** Called with the number of file bytes just verified (for progress displays). */
  onBytes?: (n: number) => void;
  signal?: AbortSignal;
}

/**
 * Verify the given segments in order, yielding one result per segment. Reading runs ahead of
 * the consumer by up to `depth` chunks, so the next segment is usually in memory by the time
 * the consumer asks for it.
 */
export async function* scanSegments(
  segments: readonly number[],
  filename: (segment: number) => string,
  opts: ScanOptions = {},
): AsyncGenerator<SegmentScanResult> {
  const pipeline = new ReadPipeline(segments.map(filename), opts);
  const parser = new EntryParser();
  const onBytes = opts.onBytes;
  try {
    let current = -1;
    for (;;) {
      opts.signal?.throwIfAborted();
      const chunk = await pipeline.next();
      if (!chunk) break;
      if (chunk.file !== current) {
        current = chunk.file;
        parser.start(segments[current]!, chunk.fileSize);
      }
      if (chunk.error) {
        if (!parser.done && chunk.bytes.length > 0) parser.feed(chunk.bytes);
        parser.finish();
        yield {
          segment: segments[current]!,
          fileSize: chunk.fileSize,
          entries: parser.entries,
          error: null,
          errorOffset: chunk.position + chunk.bytes.length,
          ioError: chunk.error,
        };
        continue;
      }
      if (!parser.done) parser.feed(chunk.bytes);
      if (onBytes) onBytes(chunk.bytes.length);
      if (parser.done && !chunk.last) {
        // Decided early (damage): the rest of this file is not needed.
        if (onBytes) onBytes(Math.max(0, chunk.fileSize - chunk.position - chunk.bytes.length));
        pipeline.skipFile(current);
      } else if (!chunk.last) {
        continue;
      }
      parser.finish();
      yield {
        segment: segments[current]!,
        fileSize: chunk.fileSize,
        entries: parser.entries,
        error: parser.error,
        errorOffset: parser.errorOffset,
        ioError: null,
      };
    }
  } finally {
    await pipeline.close();
  }
}
