// The time lock's bookkeeping (`--keep-deleted`): which superseded entries of the log must
// survive compaction, and until when. A "hold" is a PUT entry that was live before a
// transaction and that the transaction deleted or overwrote; it stays in the segment files
// (where plain borg sees an ordinary superseded entry, so a plain `borg compact` drops it) and
// burg's compaction copies it forward instead of dropping it until the hold expires.
//
// File: `<repo>/burg/holds.N`, N the transaction id whose commit made it valid; written before
// that commit's COMMIT entry (fsync'ed, renamed into place), so a committed delete is never
// without its hold. Readers take the highest N not above the committed transaction id; files
// above it belong to a transaction that never committed and are removed by the next one.
// Layout (little-endian):
//   magic "BURGHOLD", u32 version (1), u32 count,
//   count x 64-byte records: id[32], u32 segment, u32 offset, u32 entry size (header included),
//     u32 flags, f64 deletedAt (ms since the epoch), f64 until (ms: the hold's own expiry),
//   u64 XXH64 of everything before it.
// A record's location is where the entry is now: compaction that copies a held entry updates it.

import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { isErrno, syncDir, writeAll } from "../util/fs.ts";

/** burg's own directory inside a repository (shared with the session journal). */
export const BURG_DIR = "burg";
const MAGIC = new TextEncoder().encode("BURGHOLD");
const VERSION = 1;
const HEADER = 16;
export const HOLD_RECORD_SIZE = 64;
const TRAILER = 8;

/**
 * `burg undelete` superseded the entry (garbage it overwrote, the manifest it removed): a later
 * undelete does not bring it back, and a manifest whose last change was such a removal was
 * rebuilt since and is left alone.
 */
export const HOLD_BY_UNDELETE = 1;

export class HoldsFormatError extends Error {}

/** A table of holds in parallel typed arrays (hundreds of thousands of records are common). */
export class HoldTable {
  count = 0;
  ids = new Uint8Array(0);
  segment = new Uint32Array(0);
  offset = new Uint32Array(0);
  size = new Uint32Array(0);
  flags = new Uint32Array(0);
  deletedAt = new Float64Array(0);
  until = new Float64Array(0);
  /** The transaction id of the file it was read from (null: none existed). */
  readonly txid: number | null;

  constructor(txid: number | null = null, capacity = 0) {
    this.txid = txid;
    this.grow(capacity);
  }

  private grow(want: number): void {
    if (want <= this.segment.length) return;
    const cap = Math.max(want, this.segment.length * 2, 64);
    const more = <T extends Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a.subarray(0, this.count) as never);
      return b;
    };
    const ids = new Uint8Array(cap * 32);
    ids.set(this.ids.subarray(0, this.count * 32));
    this.ids = ids;
    this.segment = more(this.segment, (n) => new Uint32Array(n));
    this.offset = more(this.offset, (n) => new Uint32Array(n));
    this.size = more(this.size, (n) => new Uint32Array(n));
    this.flags = more(this.flags, (n) => new Uint32Array(n));
    this.deletedAt = more(this.deletedAt, (n) => new Float64Array(n));
    this.until = more(this.until, (n) => new Float64Array(n));
  }

  add(id: Uint8Array, segment: number, offset: number, size: number, deletedAt: number, until: number, flags = 0): number {
    this.grow(this.count + 1);
    const i = this.count++;
    this.ids.set(id.subarray(0, 32), i * 32);
    this.segment[i] = segment;
    this.offset[i] = offset;
    this.size[i] = size;
    this.flags[i] = flags;
    this.deletedAt[i] = deletedAt;
    this.until[i] = until;
    return i;
  }

  id(i: number): Uint8Array {
    return this.ids.subarray(i * 32, i * 32 + 32);
  }

  /** Is record i still held at `now`, by its own expiry or by a time lock of `keepMs` in force now? */
  isHeld(i: number, now: number, keepMs: number): boolean {
    return now < Math.max(this.until[i]!, this.deletedAt[i]! + keepMs);
  }

  /** Keep only the records for which `keep(i)` is true (order preserved). */
  filter(keep: (i: number) => boolean): number {
    let w = 0;
    for (let r = 0; r < this.count; r++) {
      if (!keep(r)) continue;
      if (w !== r) {
        this.ids.copyWithin(w * 32, r * 32, r * 32 + 32);
        this.segment[w] = this.segment[r]!;
        this.offset[w] = this.offset[r]!;
        this.size[w] = this.size[r]!;
        this.flags[w] = this.flags[r]!;
        this.deletedAt[w] = this.deletedAt[r]!;
        this.until[w] = this.until[r]!;
      }
      w++;
    }
    const dropped = this.count - w;
    this.count = w;
    return dropped;
  }

  /** segment -> (offset -> record index), for the segments in `only` (all when omitted). */
  bySegment(only?: ReadonlySet<number>): Map<number, Map<number, number>> {
    const out = new Map<number, Map<number, number>>();
    for (let i = 0; i < this.count; i++) {
      const s = this.segment[i]!;
      if (only && !only.has(s)) continue;
      let m = out.get(s);
      if (!m) out.set(s, (m = new Map()));
      m.set(this.offset[i]!, i);
    }
    return out;
  }

  /** Entry bytes held at `now` per segment. */
  heldBytesBySegment(now: number, keepMs: number): Map<number, number> {
    const out = new Map<number, number>();
    for (let i = 0; i < this.count; i++) {
      if (!this.isHeld(i, now, keepMs)) continue;
      const s = this.segment[i]!;
      out.set(s, (out.get(s) ?? 0) + this.size[i]!);
    }
    return out;
  }

  /** Entry bytes and records held at `now`, and the latest expiry among them. */
  summary(now: number, keepMs = 0): { records: number; bytes: number; until: number | null } {
    let records = 0;
    let bytes = 0;
    let until: number | null = null;
    for (let i = 0; i < this.count; i++) {
      if (!this.isHeld(i, now, keepMs)) continue;
      records++;
      bytes += this.size[i]!;
      const u = Math.max(this.until[i]!, this.deletedAt[i]! + keepMs);
      if (until === null || u > until) until = u;
    }
    return { records, bytes, until };
  }

  encode(): Uint8Array {
    const out = new Uint8Array(HEADER + this.count * HOLD_RECORD_SIZE + TRAILER);
    const dv = new DataView(out.buffer);
    out.set(MAGIC, 0);
    dv.setUint32(8, VERSION, true);
    dv.setUint32(12, this.count, true);
    for (let i = 0; i < this.count; i++) {
      const p = HEADER + i * HOLD_RECORD_SIZE;
      out.set(this.id(i), p);
      dv.setUint32(p + 32, this.segment[i]!, true);
      dv.setUint32(p + 36, this.offset[i]!, true);
      dv.setUint32(p + 40, this.size[i]!, true);
      dv.setUint32(p + 44, this.flags[i]!, true);
      dv.setFloat64(p + 48, this.deletedAt[i]!, true);
      dv.setFloat64(p + 56, this.until[i]!, true);
    }
    const end = out.length - TRAILER;
    dv.setBigUint64(end, Bun.hash.xxHash64(out.subarray(0, end), 0n), true);
    return out;
  }

  static decode(bytes: Uint8Array, txid: number | null): HoldTable {
    if (bytes.length < HEADER + TRAILER) throw new HoldsFormatError("holds file too short");
    for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) throw new HoldsFormatError("not a holds file (bad magic)");
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const version = dv.getUint32(8, true);
    if (version !== VERSION) throw new HoldsFormatError(`holds file version ${version} is not supported`);
    const count = dv.getUint32(12, true);
    if (bytes.length !== HEADER + count * HOLD_RECORD_SIZE + TRAILER) throw new HoldsFormatError("holds file has the wrong size");
    const end = bytes.length - TRAILER;
    if (dv.getBigUint64(end, true) !== Bun.hash.xxHash64(bytes.subarray(0, end), 0n)) {
      throw new HoldsFormatError("holds file digest mismatch");
    }
    const t = new HoldTable(txid, count);
    for (let i = 0; i < count; i++) {
      const p = HEADER + i * HOLD_RECORD_SIZE;
      t.add(
        bytes.subarray(p, p + 32),
        dv.getUint32(p + 32, true),
        dv.getUint32(p + 36, true),
        dv.getUint32(p + 40, true),
        dv.getFloat64(p + 48, true),
        dv.getFloat64(p + 56, true),
        dv.getUint32(p + 44, true),
      );
    }
    return t;
  }
}

function burgDir(repository: string): string {
  return join(repository, BURG_DIR);
}

/** Transaction ids of the holds files present, ascending. */
export function holdsFileIds(repository: string): number[] {
  let names: string[];
  try {
    names = readdirSync(burgDir(repository));
  } catch (e) {
    if (isErrno(e, "ENOENT")) return [];
    throw e;
  }
  const ids: number[] = [];
  for (const name of names) {
    const m = /^holds\.(\d+)$/.exec(name);
    if (m) ids.push(Number(m[1]));
  }
  return ids.sort((a, b) => a - b);
}

/**
 * The holds valid at committed transaction `txid` (the newest file not above it); an empty
 * table when there is none. A damaged file throws HoldsFormatError: the caller decides.
 */
export function readHolds(repository: string, txid: number | null): HoldTable {
  if (txid === null) return new HoldTable(null);
  const ids = holdsFileIds(repository).filter((n) => n <= txid);
  if (ids.length === 0) return new HoldTable(null);
  const n = ids[ids.length - 1]!;
  return HoldTable.decode(new Uint8Array(readFileSync(join(burgDir(repository), `holds.${n}`))), n);
}

/** Write holds.N durably (temp file, fsync, rename, directory fsync). */
export function writeHolds(repository: string, txid: number, table: HoldTable): void {
  const dir = burgDir(repository);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (!isErrno(e, "EEXIST")) throw e;
  }
  const final = join(dir, `holds.${txid}`);
  const tmp = `${final}.tmp`;
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
  try {
    writeAll(fd, table.encode());
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, final);
  syncDir(dir);
}

/** Remove holds files that do not belong to the committed state: above `committed` (never committed; all when null). */
export function removeUncommittedHolds(repository: string, committed: number | null): void {
  for (const n of holdsFileIds(repository)) if (committed === null || n > committed) unlinkHoldsFile(repository, n);
}

/** Remove holds files below `keep` (superseded by it). */
export function removeOlderHolds(repository: string, keep: number): void {
  for (const n of holdsFileIds(repository)) if (n < keep) unlinkHoldsFile(repository, n);
}

function unlinkHoldsFile(repository: string, n: number): void {
  try {
    unlinkSync(join(burgDir(repository), `holds.${n}`));
  } catch (e) {
    if (!isErrno(e, "ENOENT")) throw e;
  }
}
