// hints.N and integrity.N (borg 1.2 repository.py write_index / prepare_txn / _read_integrity).
//
// hints.N is a msgpack map with raw-string keys, in this order:
//   version: 2, segments: {segment: live PUT count}, compact: {segment: freeable bytes},
//   storage_quota_use: int, shadow_index: {id (32 raw bytes): [segments]}
// (version 1 had no quota/shadow index; its `compact` is only a set of segment numbers).
// integrity.N is a msgpack map {version: 2, hints: <json>, index: <json>} holding the
// IntegrityCheckedFile data (XXH64 digests) of the other two files.

import { readFileSync } from "node:fs";
import { closeSync, fdatasyncSync, openSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { BurgError } from "../errors.ts";
import { fromHex, toHex } from "../util/hex.ts";
import { writeAll, isErrno } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { decode, encode, isBytes, isMap, mapGet, bytesToString } from "../util/msgpack.ts";
import {
  formatIntegrityData,
  parseIntegrityData,
  readCheckedFile,
  writeCheckedFile,
  type IntegrityParts,
} from "./integrity.ts";

export interface Hints {
  version: number;
  segments: Map<number, number>;
  compact: Map<number, number>;
  storageQuotaUse: number;
  /** hex(id) -> segments with shadowed PUTs */
  shadowIndex: Map<string, number[]>;
}

/** A hints file that cannot be understood (borg: msgpack.UnpackException / ValueError). */
export class HintsFormatError extends BurgError {
  constructor(message: string) {
    super("HintsFormatError", message, [message]);
  }
}

function toInt(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "bigint") return Number(v);
  throw new HintsFormatError(`hints: ${what} is not an integer`);
}

function intMap(v: unknown, what: string): Map<number, number> {
  const out = new Map<number, number>();
  if (isMap(v)) {
    for (const [k, val] of v) out.set(toInt(k, what), toInt(val, what));
    return out;
  }
  throw new HintsFormatError(`hints: ${what} is not a map`);
}

export function parseHints(bytes: Uint8Array): Hints {
  let m: unknown;
  try {
    m = decode(bytes);
  } catch (e) {
    throw new HintsFormatError(`hints: ${(e as Error).message}`);
  }
  if (!isMap(m)) throw new HintsFormatError("hints: not a map");
  const version = toInt(mapGet(m, "version"), "version");
  if (version === 1) {
    const compactRaw = mapGet(m, "compact");
    const compact = new Map<number, number>();
    if (Array.isArray(compactRaw)) for (const s of compactRaw) compact.set(toInt(s, "compact"), 0);
    else if (isMap(compactRaw)) for (const k of compactRaw.keys()) compact.set(toInt(k, "compact"), 0);
    return {
      version,
      segments: intMap(mapGet(m, "segments"), "segments"),
      compact,
      storageQuotaUse: 0,
      shadowIndex: new Map(),
    };
  }
  if (version !== 2) throw new HintsFormatError(`Unknown hints file version: ${version}`);
  const shadowIndex = new Map<string, number[]>();
  const si = mapGet(m, "shadow_index");
  if (si !== undefined) {
    if (!isMap(si)) throw new HintsFormatError("hints: shadow_index is not a map");
    for (const [k, v] of si) {
      if (!isBytes(k) || !Array.isArray(v)) throw new HintsFormatError("hints: bad shadow_index entry");
      shadowIndex.set(toHex(k), v.map((x) => toInt(x, "shadow_index")));
    }
  }
  const quota = mapGet(m, "storage_quota_use");
  return {
    version,
    segments: intMap(mapGet(m, "segments"), "segments"),
    compact: intMap(mapGet(m, "compact"), "compact"),
    storageQuotaUse: quota === undefined ? 0 : toInt(quota, "storage_quota_use"),
    shadowIndex,
  };
}

export function serializeHints(h: Hints): Uint8Array {
  const shadow = new Map<Uint8Array, number[]>();
  for (const [hex, segs] of h.shadowIndex) shadow.set(fromHex(hex), segs);
  return encode(
    new Map<string, unknown>([
      ["version", 2],
      ["segments", h.segments],
      ["compact", h.compact],
      ["storage_quota_use", h.storageQuotaUse],
      ["shadow_index", shadow],
    ]),
  );
}

export function readHints(path: string, integrity: IntegrityParts | null): Hints {
  return parseHints(readCheckedFile(path, integrity));
}

/** Write hints to `path` (a .tmp name) hashed as `filename`, fsync'ed; returns its integrity data. */
export function writeHintsFile(path: string, filename: string, hints: Hints): IntegrityParts {
  return writeCheckedFile(path, filename, serializeHints(hints));
}

/** The integrity data for index or hints of a transaction; null when there is no integrity file. */
export function readIntegrityFile(repoPath: string, transactionId: number, key: "index" | "hints"): IntegrityParts | null {
  const name = `integrity.${transactionId}`;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(join(repoPath, name));
  } catch (e) {
    if (isErrno(e, "ENOENT")) return null;
    throw e;
  }
  let m: unknown;
  try {
    m = decode(bytes);
  } catch (e) {
    // borg lets the unpack error propagate; the callers treat it as a damaged index/hints file.
    throw new HintsFormatError(`${name}: ${(e as Error).message}`);
  }
  if (!isMap(m)) throw new HintsFormatError(`${name}: not a map`);
  const version = mapGet(m, "version");
  if (version !== 2) {
    log.warning(`Unknown integrity data version ${String(version)} in ${name}`, "borg.repository");
    return null;
  }
  const data = mapGet(m, key);
  if (!isBytes(data)) throw new HintsFormatError(`${name}: no ${key} entry`);
  return parseIntegrityData(join(repoPath, `${key}.${transactionId}`), bytesToString(data));
}

export function writeIntegrityFile(path: string, parts: { hints: IntegrityParts; index: IntegrityParts }): void {
  const bytes = encode(
    new Map<string, unknown>([
      ["version", 2],
      ["hints", formatIntegrityData(parts.hints)],
      ["index", formatIntegrityData(parts.index)],
    ]),
  );
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o666);
  try {
    writeAll(fd, bytes);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
