// Giving back the pages of the executable that start-up touched and serving does not use.
//
// A compiled burg is a ~95 MB executable; starting the runtime touches ~37 MiB of it (the
// JavaScript engine's initialisation, the bundled modules, tables of its read-only data), and
// every touched page counts in the process's RSS for as long as it lives. A session maps back
// about two thirds of them. madvise(MADV_DONTNEED) on a private mapping of a file that was never
// written to unmaps its pages: they stay in the page cache (shared with every other burg
// process), and a page that is needed again is mapped back by the next access (a minor fault,
// or a read of the file if the kernel dropped it meanwhile). A mapping with anonymous pages
// (relocated read-only data, copied on write) is left alone: DONTNEED would throw away the
// copies and bring back the file's unrelocated bytes.

import { readFileSync, readlinkSync } from "node:fs";
import { madviseOrNull } from "./libc.ts";
import { log } from "./log.ts";

const MADV_DONTNEED = 4;

export interface FileMapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  /** Rss of the mapping, KiB. */
  rssKiB: number;
  /** Anonymous (copied-on-write) KiB of the mapping. */
  anonymousKiB: number;
}

/** The mappings of /proc/self/smaps (or of `text`) whose file is `path`. */
export function mappingsOf(path: string, text: string): FileMapping[] {
  const out: FileMapping[] = [];
  let cur: FileMapping | null = null;
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      cur = head[4] === path ? { start: BigInt("0x" + head[1]), end: BigInt("0x" + head[2]), perms: head[3], path, rssKiB: 0, anonymousKiB: 0 } : null;
      if (cur !== null) out.push(cur);
      continue;
    }
    if (cur === null) continue;
    const field = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (field === null) continue;
    if (field[1] === "Rss") cur.rssKiB = Number(field[2]);
    else cur.anonymousKiB = Number(field[2]);
  }
  return out;
}

/** Mappings whose pages can be dropped and mapped back from the file unchanged. */
export function releasable(mappings: FileMapping[]): FileMapping[] {
  return mappings.filter((m) => m.perms[1] !== "w" && m.perms[3] === "p" && m.anonymousKiB === 0 && m.rssKiB > 0);
}

/**
 * Drop this process's resident pages of its own executable (see above). Returns the KiB that
 * were resident in the mappings it released; 0 when nothing could be done (no /proc, no libc).
 * Under `bun` (tests) the executable is bun's own, released the same way.
 */
export function releaseExecutablePages(): number {
  let exe: string;
  let smaps: string;
  try {
    exe = readlinkSync("/proc/self/exe");
    smaps = readFileSync("/proc/self/smaps", "utf8");
  } catch {
    return 0;
  }
  const targets = releasable(mappingsOf(exe, smaps));
  if (targets.length === 0) return 0;
  const c = madviseOrNull();
  if (c === null) return 0;
  let released = 0;
  for (const m of targets) {
    if (c.madvise(m.start, m.end - m.start, MADV_DONTNEED) === 0) released += m.rssKiB;
  }
  return released;
}

/** releaseExecutablePages(), said at debug level; never throws (it only saves memory). */
export function releaseStartupPages(): void {
  try {
    const kib = releaseExecutablePages();
    log.debug(`gave back ${kib} KiB of start-up pages of the executable`);
  } catch (e) {
    log.debug(`could not give back start-up pages: ${e instanceof Error ? e.message : String(e)}`);
  }
}
