// The session journal: what every session did to a repository, kept with the repository in
// `<repo>/burg/`, where plain borg never looks (borg reads only config, data/, index.N, hints.N,
// integrity.N, nonce and its lock files, and removes only those).
//
// Format: JSON lines in `burg/journal.jsonl`, appended one whole line per write(2) with
// O_APPEND, so lines of concurrent sessions never interleave and a killed process leaves at
// most one torn last line, which readers skip (and the next writer starts after a newline).
// A session writes a "begin" line when it has opened the repository, a "commit" line (with its
// totals so far) after each commit, fdatasync'ed, and an "end" line when it is over. A session
// without an "end" line is shown as running while its process lives, else as unfinished.
// `burg check` appends "check" lines.
//
// Bounded: once journal.jsonl is over MAX_JOURNAL_BYTES it is renamed to
// journal.<unix-ms>.jsonl and a new one is started; the KEEP_ROTATED newest rotated files are
// kept, older ones are removed (about 16 MiB in all, some ten thousand sessions). Unique names
// make concurrent rotations harmless: a second rotation at worst rotates a short file.
// Readers need no lock: they read the rotated files and the current one, oldest first.

import { closeSync, existsSync, fdatasyncSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

export const JOURNAL_DIR = "burg";
export const JOURNAL_FILE = "journal.jsonl";
export const MAX_JOURNAL_BYTES = 4 * 1024 * 1024;
export const KEEP_ROTATED = 3;
export const JOURNAL_VERSION = 1;

/** One line of the journal: an event of a session (or of `burg check`). */
export interface JournalLine {
  v: number;
  event: "begin" | "commit" | "end" | "check";
  /** Session id (random, unique per session). */
  session: string;
  /** ISO 8601 UTC time of the event. */
  time: string;
  [field: string]: unknown;
}

export function journalDir(repository: string): string {
  return join(repository, JOURNAL_DIR);
}

/** Journal files of a repository, oldest first. */
export function journalFiles(repository: string): string[] {
  const dir = journalDir(repository);
  let rotated: string[];
  try {
    rotated = journalFilesIn(dir);
  } catch {
    return [];
  }
  return existsSync(join(dir, JOURNAL_FILE)) ? [...rotated, join(dir, JOURNAL_FILE)] : rotated;
}

export interface AppendOptions {
  /** fdatasync the line before returning (commit and end lines). */
  sync?: boolean;
  maxBytes?: number;
}

/**
 * Append one line. Throws on failure (the caller decides how loud to be); never damages earlier
 * lines: a torn previous line is ended with a newline first.
 */
export function appendJournal(repository: string, line: JournalLine, opts: AppendOptions = {}): void {
  const dir = journalDir(repository);
  try {
    mkdirSync(dir, 0o700); // never the repository itself: a vanished repository gets no journal
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code !== "EEXIST") throw e;
  }
  const path = join(dir, JOURNAL_FILE);
  rotateIfFull(dir, path, opts.maxBytes ?? MAX_JOURNAL_BYTES);
  const fd = openSync(path, "a", 0o600);
  try {
    let text = JSON.stringify(line) + "\n";
    const size = fstatSync(fd).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      if (readLastByte(path, size, last) && last[0] !== 0x0a) text = "\n" + text;
    }
    const bytes = Buffer.from(text, "utf8");
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    if (opts.sync) fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function readLastByte(path: string, size: number, out: Buffer): boolean {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return false;
  }
  try {
    return readSync(fd, out, 0, 1, size - 1) === 1;
  } finally {
    closeSync(fd);
  }
}

function rotateIfFull(dir: string, path: string, maxBytes: number): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return;
  }
  if (size <= maxBytes) return;
  try {
    renameSync(path, join(dir, `journal.${Date.now()}.jsonl`));
  } catch {
    return; // another session rotated it first
  }
  const rotated = journalFilesIn(dir);
  for (const old of rotated.slice(0, Math.max(0, rotated.length - KEEP_ROTATED))) {
    try {
      unlinkSync(old);
    } catch {
      // already gone
    }
  }
}

function journalFilesIn(dir: string): string[] {
  return readdirSync(dir)
    .map((n) => /^journal\.(\d+)\.jsonl$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => join(dir, m[0]));
}

/** Every well-formed line of a repository's journal, oldest first; torn or foreign lines are skipped. */
export function readJournal(repository: string): JournalLine[] {
  const out: JournalLine[] = [];
  for (const file of journalFiles(repository)) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue; // rotated away meanwhile
    }
    for (const raw of text.split("\n")) {
      if (raw === "") continue;
      try {
        const v = JSON.parse(raw) as JournalLine;
        if (v && typeof v === "object" && typeof v.event === "string" && typeof v.session === "string" && typeof v.time === "string") out.push(v);
      } catch {
        // a torn line (a process killed while writing it)
      }
    }
  }
  return out;
}
