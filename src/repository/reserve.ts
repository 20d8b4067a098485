// The space reserve: burg/reserve, a file of RESERVE_BYTES that exists so that a repository on a
// full file system can still be locked. Taking the lock writes (a staging directory, lock.roster),
// and a lock that cannot be taken means the client cannot even start the transaction that would
// fail cleanly, roll back and free what a failed backup left. borg's additional_free_space
// guards commits, not locks; this guards the lock.
//
// When the lock fails with ENOSPC or EDQUOT, the file is shortened by RESERVE_LEND and the lock
// tried once more; a session that took a lock grows it back when it closes, from the room the
// lock gave back, so a disk that stays full can be locked again and again (and a missing reserve
// is written again once there is room). Plain borg ignores burg/; a local `borg compact` leaves it.

import { randomBytes } from "node:crypto";
import { closeSync, fdatasyncSync, ftruncateSync, mkdirSync, openSync, renameSync, statSync, statfsSync, truncateSync, unlinkSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { isErrno, syncDir, writeAll } from "../util/fs.ts";
import { BURG_DIR } from "./holds.ts";

const RESERVE_BYTES = 1024 * 1024;
const RESERVE_FILE = "reserve";
/** The reserve is only written when it leaves at least this much free beside it. */
const RESERVE_HEADROOM = 16 * RESERVE_BYTES;

function reservePath(repository: string): string {
  return join(repository, BURG_DIR, RESERVE_FILE);
}

/** ENOSPC ("No space left on device") or EDQUOT ("Disk quota exceeded"). */
export function isNoSpace(e: unknown): boolean {
  return isErrno(e, "ENOSPC") || isErrno(e, "EDQUOT");
}

/** The strerror text of an isNoSpace error. */
export function noSpaceReason(e: unknown): string {
  return isErrno(e, "EDQUOT") ? "Disk quota exceeded" : "No space left on device";
}

/** What one lock that failed for want of space takes from the reserve (a lock needs a few blocks). */
export const RESERVE_LEND = 64 * 1024;

/**
 * Bring the reserve to RESERVE_BYTES: write it when it is missing and the file system has room
 * for it and more, or grow it back to its size after a lock borrowed from it (that needs only
 * the room the lock gave back). Never throws: a repository we may not write, or a disk that is
 * too full, simply has a smaller reserve or none for now. Returns whether it is whole.
 */
export function ensureReserve(repository: string): boolean {
  const file = reservePath(repository);
  let size = -1;
  try {
    size = statSync(file).size;
  } catch {}
  if (size >= RESERVE_BYTES) return true;
  let free: number;
  try {
    const st = statfsSync(repository);
    free = Number(st.bavail) * Number(st.bsize);
  } catch {
    return false;
  }
  if (size >= 0) return growReserve(file, size, free);
  if (free < RESERVE_BYTES + RESERVE_HEADROOM) return false;
  const dir = join(repository, BURG_DIR);
  const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
  let fd = -1;
  try {
    try {
      mkdirSync(dir, 0o700);
    } catch (e) {
      if (!isErrno(e, "EEXIST")) throw e;
    }
    fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    writeNoise(fd, 0, RESERVE_BYTES);
    fdatasyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, file);
    syncDir(dir);
    return true;
  } catch {
    if (fd >= 0) {
      try {
        closeSync(fd);
      } catch {}
    }
    try {
      unlinkSync(tmp);
    } catch {}
    return false;
  }
}

function growReserve(file: string, size: number, free: number): boolean {
  if (free < RESERVE_BYTES - size) return false;
  let fd = -1;
  try {
    fd = openSync(file, fsc.O_WRONLY);
    writeNoise(fd, size, RESERVE_BYTES - size);
    fdatasyncSync(fd);
    return true;
  } catch {
    // a full disk after all: give back what was added, the reserve stays as it was
    try {
      if (fd >= 0) ftruncateSync(fd, size);
    } catch {}
    return false;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/**
 * Random bytes, not zeros: a compressing or deduplicating file system would store zeros in no
 * space at all, and the reserve would free nothing.
 */
function writeNoise(fd: number, position: number, length: number): void {
  const block = crypto.getRandomValues(new Uint8Array(64 * 1024));
  for (let done = 0; done < length; done += block.length) {
    writeAll(fd, block.subarray(0, Math.min(block.length, length - done)), position + done);
  }
}

/**
 * Make room for a lock: shorten the reserve by RESERVE_LEND. True when it had that much to
 * give; the repository's next writer grows it back (ensureReserve).
 */
export function lendFromReserve(repository: string): boolean {
  const file = reservePath(repository);
  try {
    const size = statSync(file).size;
    if (size < RESERVE_LEND) return false;
    truncateSync(file, size - RESERVE_LEND);
    return true;
  } catch {
    return false;
  }
}
