// Corruption helpers for check and repair tests: flip bits, truncate, zero blocks, and find
// where the entries of a repository's segments are, so damage lands where a case wants it
// (an entry header, its data, a commit tag).

import { cpSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HEADER_SIZE, MAGIC_LEN, TAG_COMMIT, TAG_DELETE, TAG_PUT } from "../../src/repository/format.ts";

export interface EntryInfo {
  tag: number;
  offset: number;
  size: number;
}

export interface SegmentInfo {
  segment: number;
  path: string;
  size: number;
  entries: EntryInfo[];
}

/** Segment files of a repository with their entries (parsed from the headers, no CRC check). */
export function segmentLayout(repo: string): SegmentInfo[] {
  const out: SegmentInfo[] = [];
  const data = join(repo, "data");
  for (const dir of readdirSync(data).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(a) - Number(b))) {
    for (const name of readdirSync(join(data, dir)).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b))) {
      const path = join(data, dir, name);
      const bytes = readFileSync(path);
      const entries: EntryInfo[] = [];
      let p = MAGIC_LEN;
      while (p + HEADER_SIZE <= bytes.length) {
        const size = bytes.readUInt32LE(p + 4);
        const tag = bytes[p + 8]!;
        if (size < HEADER_SIZE || p + size > bytes.length) break;
        entries.push({ tag, offset: p, size });
        p += size;
      }
      out.push({ segment: Number(name), path, size: bytes.length, entries });
    }
  }
  return out;
}

export function isCommitOnly(s: SegmentInfo): boolean {
  return s.entries.length === 1 && s.entries[0]!.tag === TAG_COMMIT;
}

/** The segment with the most bytes in PUT entries. */
export function biggestDataSegment(layout: SegmentInfo[]): SegmentInfo {
  let best: SegmentInfo | null = null;
  for (const s of layout) if (s.entries.some((e) => e.tag === TAG_PUT) && (!best || s.size > best.size)) best = s;
  if (!best) throw new Error("no segment with PUT entries");
  return best;
}

/** The segment holding the most DELETE entries. */
export function deleteSegment(layout: SegmentInfo[]): SegmentInfo {
  let best: SegmentInfo | null = null;
  let most = 0;
  for (const s of layout) {
    const n = s.entries.filter((e) => e.tag === TAG_DELETE).length;
    if (n > most) {
      most = n;
      best = s;
    }
  }
  if (!best) throw new Error("no segment with DELETE entries");
  return best;
}

export function flipBit(path: string, offset: number, bit = 0): void {
  const b = readFileSync(path);
  if (offset < 0 || offset >= b.length) throw new Error(`flipBit: offset ${offset} outside ${path} (${b.length} bytes)`);
  b[offset]! ^= 1 << bit;
  writeFileSync(path, b);
}

export function zeroRange(path: string, offset: number, length: number): void {
  const b = readFileSync(path);
  b.fill(0, offset, Math.min(b.length, offset + length));
  writeFileSync(path, b);
}

export function truncateTo(path: string, size: number): void {
  writeFileSync(path, readFileSync(path).subarray(0, size));
}

export function appendBytes(path: string, bytes: Uint8Array): void {
  writeFileSync(path, Buffer.concat([readFileSync(path), bytes]));
}

export function copyRepo(from: string, to: string): string {
  cpSync(from, to, { recursive: true });
  return to;
}

/** The transaction id of the index file in a repository (index.N), or null. */
export function indexTransaction(repo: string): number | null {
  const ids = readdirSync(repo)
    .filter((n) => /^index\.\d+$/.test(n) && statSync(join(repo, n)).size > 0)
    .map((n) => Number(n.slice(6)));
  return ids.length ? Math.max(...ids) : null;
}
