// Small synchronous filesystem helpers with the durability rules borg relies on: directory
// fsync after creating/renaming/removing entries (platform/base.py sync_dir), atomic
// replace-by-rename with fsync (SaveFile), and unlink that survives a full disk (safe_unlink).

import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  constants as fsc,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export function isErrno(e: unknown, code: string): boolean {
  return errnoOf(e) === code;
}

/** fsync a directory so that entries created, renamed or removed in it are durable. */
export function syncDir(path: string): void {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } catch (e) {
    // Some network filesystems refuse fsync on directories with EINVAL; borg ignores that too.
    if (!isErrno(e, "EINVAL")) throw e;
  } finally {
    closeSync(fd);
  }
}

/** Largest single read: read(2) returns at most about 2 GiB anyway; big buffers are filled in pieces. */
const READ_PIECE = 1 << 30;

/**
 * Read into buf[0, length) from `position` until that is full or the file ends, looping over
 * short reads; returns the bytes read (fewer only at the end of the file).
 */
export function readFully(fd: number, buf: Uint8Array, position: number, length = buf.length): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, Math.min(length - got, READ_PIECE), position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** The unit in which rescue reads find the unreadable parts of a file (a page, a disk sector or eight). */
export const RESCUE_BLOCK = 4096;

/** A read failed because the medium could not be read (a bad sector), not for a reason of ours. */
export function isReadFault(e: unknown): boolean {
  return isErrno(e, "EIO");
}

/**
 * readFully as ddrescue reads: where the file cannot be read (EIO), the block of RESCUE_BLOCK
 * bytes around the failure is filled with zeros, reported through `onBad(start, end)` (file
 * offsets) and skipped, and reading goes on after it. Returns the bytes covered (fewer only at
 * the end of the file). A read that returns short before the end of the file is not taken for
 * the end: the next read shows whether it was one.
 */
export function readRescued(fd: number, buf: Uint8Array, position: number, length: number, onBad: (start: number, end: number) => void): number {
  let got = 0;
  while (got < length) {
    let n: number;
    try {
      n = readSync(fd, buf, got, Math.min(length - got, READ_PIECE), position + got);
    } catch (e) {
      if (!isReadFault(e)) throw e;
      const at = position + got;
      const blockEnd = Math.min(position + length, (Math.floor(at / RESCUE_BLOCK) + 1) * RESCUE_BLOCK);
      let m = -1;
      try {
        m = readSync(fd, buf, got, blockEnd - at, at);
      } catch (e2) {
        if (!isReadFault(e2)) throw e2;
      }
      if (m === 0) break;
      if (m < 0) {
        buf.fill(0, got, got + (blockEnd - at));
        onBad(at, blockEnd);
        got += blockEnd - at;
      } else {
        got += m;
      }
      continue;
    }
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** The unreadable byte ranges of a file, merged, as [start, end) pairs. */
export function unreadableRanges(path: string): Array<[number, number]> {
  const fd = openSync(path, fsc.O_RDONLY);
  const ranges: Array<[number, number]> = [];
  try {
    const buf = new Uint8Array(1 << 20);
    for (let pos = 0; ; ) {
      const n = readRescued(fd, buf, pos, buf.length, (start, end) => {
        const last = ranges.at(-1);
        if (last && last[1] === start) last[1] = end;
        else ranges.push([start, end]);
      });
      if (n === 0) break;
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return ranges;
}

/** Write all of `data` to `fd`, looping over short writes. */
export function writeAll(fd: number, data: Uint8Array, position?: number): void {
  let off = 0;
  while (off < data.length) {
    const n = writeSync(fd, data, off, data.length - off, position === undefined ? null : position + off);
    off += n;
  }
}

/**
 * A replacement of `path` written piece by piece: write() appends to a temp file in the same
 * directory; commit() fsyncs it, renames it over `path` and fsyncs the directory, so readers see
 * the old or the new content, never a mix; abort() removes the temp file and leaves `path` alone.
 */
export class AtomicFile {
  readonly path: string;
  private readonly tmp: string;
  private fd: number;

  constructor(path: string, mode = 0o666) {
    this.path = path;
    this.tmp = join(dirname(path), `${basename(path)}-${randomBytes(6).toString("hex")}.tmp`);
    this.fd = openSync(this.tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  }

  write(data: Uint8Array): void {
    writeAll(this.fd, data);
  }

  commit(): void {
    try {
      fdatasyncSync(this.fd);
      closeSync(this.fd);
      this.fd = -1;
      renameSync(this.tmp, this.path);
    } catch (e) {
      this.abort();
      throw e;
    }
    syncDir(dirname(this.path));
  }

  abort(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {}
      this.fd = -1;
    }
    try {
      unlinkSync(this.tmp);
    } catch {}
  }
}

/** Replace `path` atomically with `data` (see AtomicFile). */
export function saveFileAtomic(path: string, data: Uint8Array | string, mode = 0o666): void {
  const f = new AtomicFile(path, mode);
  try {
    f.write(typeof data === "string" ? new TextEncoder().encode(data) : data);
  } catch (e) {
    f.abort();
    throw e;
  }
  f.commit();
}

/**
 * Unlink `path`; if the filesystem is full (ENOSPC while removing the directory entry), truncate
 * the file first to free its blocks and try again, unless another hard link shares the inode.
 */
export function safeUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if (!isErrno(e, "ENOSPC")) throw e;
    const st = statSync(path);
    if (st.nlink > 1) throw e;
    const fd = openSync(path, fsc.O_RDWR);
    try {
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd);
    }
    unlinkSync(path);
  }
}

/** Overwrite a file with random bytes (unless hard-linked elsewhere) and remove it (borg's secure_erase). */
export function secureErase(path: string): void {
  const fd = openSync(path, fsc.O_RDWR);
  try {
    const st = statSync(path);
    if (st.nlink <= 1 && st.size > 0) {
      writeAll(fd, randomBytes(st.size), 0);
      fsyncSync(fd);
    }
  } finally {
    closeSync(fd);
  }
  unlinkSync(path);
}

export function fileSize(path: string): number | null {
  try {
    return statSync(path).size;
  } catch (e) {
    if (isErrno(e, "ENOENT")) return null;
    throw e;
  }
}
