// The space reserve: burg/reserve, a file of RESERVE_BYTES that exists so that a repository on a
// full file system can still be locked. Taking the lock writes (a staging directory, lock.roster),
// and a lock that cannot be taken means the client cannot even start the transaction that would
// fail cleanly, roll back and free what a failed backup left. borg's additional_free_space
// guards commits, not locks; this guards the lock.
//
// When the lock fails with ENOSPC or EDQUOT the file is removed and the lock tried once more; it
// is written again after a commit and after a transaction rolled back for want of space, whenever
// the file system has room for it. Plain borg ignores burg/; a local `borg compact` leaves it.

import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, renameSync, statfsSync, unlinkSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { isErrno, syncDir, writeAll } from "../util/fs.ts";
import { BURG_DIR } from "./holds.ts";

export const RESERVE_BYTES = 1024 * 1024;
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

export function hasReserve(repository: string): boolean {
  return existsSync(reservePath(repository));
}

/**
 * Write the reserve if it is missing and the file system has room for it. Never throws: a
 * repository we may not write, or a disk that is too full, simply has no reserve for now.
 * Returns whether the reserve exists afterwards.
 */
export function ensureReserve(repository: string): boolean {
  const file = reservePath(repository);
  if (existsSync(file)) return true;
  try {
    const st = statfsSync(repository);
    if (Number(st.bavail) * Number(st.bsize) < RESERVE_BYTES + RESERVE_HEADROOM) return false;
  } catch {
    return false;
  }
  const dir = join(repository, BURG_DIR);
  const tmp = `${file}.tmp`;
  let fd = -1;
  try {
    try {
      mkdirSync(dir, 0o700);
    } catch (e) {
      if (!isErrno(e, "EEXIST")) throw e;
    }
    fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    // Random bytes, not zeros: a compressing or deduplicating file system would store zeros in
    // no space at all, and the reserve would free nothing.
    const block = crypto.getRandomValues(new Uint8Array(64 * 1024));
    for (let done = 0; done < RESERVE_BYTES; done += block.length) writeAll(fd, block);
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

/** Remove the reserve to make room; true when there was one to remove. */
export function releaseReserve(repository: string): boolean {
  try {
    unlinkSync(reservePath(repository));
    return true;
  } catch {
    return false;
  }
}
