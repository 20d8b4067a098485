// `burg undelete`: bring back what sessions since a point in time deleted or overwrote, from the
// entries the time lock held (holds.ts).
//
// Each object with a hold from a delete or overwrite at or after `since` gets back the data of
// its earliest such hold: the data it had at `since` when it existed then, else the first data
// it had afterwards (so archives made after `since` and deleted since come back as well).
// Objects nothing deleted or overwrote since then are left as they are, new ones included.
//
// The manifest is the exception: it is encrypted, so the archive lists of two versions cannot be
// merged, and an older manifest would be refused by clients (borg's manifest replay check). If
// it changed since `since`, it is removed instead, and `borg check --repair` on the client
// rebuilds it from every archive in the repository. What the undelete itself replaces or removes
// is held like any other delete and marked (HOLD_BY_UNDELETE): a repeated undelete neither
// brings that back nor removes a manifest rebuilt after it.
//
// Restored objects are written as new entries; the held entries they came from are released
// and compacted away in the same commit, so the space an undelete needs is about that of the
// largest segments it rewrites, not of everything it brings back.
//
// Runs as one transaction under the exclusive lock: a killed undelete leaves the repository at
// its last commit, and running it again does the same work; objects already holding the data
// are skipped.

import { IntegrityError } from "../errors.ts";
import { bytesEqual, toHex } from "../util/hex.ts";
import { log } from "../util/log.ts";
import { MANIFEST_ID, PUT_HEADER_SIZE } from "./format.ts";
import { HOLD_BY_UNDELETE, HoldTable, HoldsFormatError, readHolds } from "./holds.ts";
import type { Repository } from "./repository.ts";

/** What undelete itself replaces or removes is held at least this long (ms). */
export const UNDELETE_HOLD_MS = 7 * 86400 * 1000;

export interface UndeleteReport {
  /** ms since the epoch */
  since: number;
  /** Objects brought back (or that would be, on a dry run), and their data bytes. */
  objects: number;
  bytes: number;
  /** Objects that already hold the data they would get. */
  current: number;
  /** Held entries whose data is gone (a plain `borg compact` dropped it, or a segment was lost). */
  lost: number;
  lostBytes: number;
  /** The manifest changed since `since` and is (or would be) removed. */
  manifestRemoved: boolean;
  /**
   * After this undelete (or the one a dry run describes) the repository has no manifest: removed
   * now, or earlier (an undelete killed after its commit, a repair not yet run).
   */
  manifestMissing: boolean;
  /** Holds from deletes and overwrites since `since` (several per object when it changed often). */
  holds: number;
  dryRun: boolean;
}

export async function undelete(repo: Repository, since: number, opts: { dryRun: boolean }): Promise<UndeleteReport> {
  const txid = await repo.getTransactionId();
  // Read-only first: a damaged holds file is an error here, never set aside as a commit does.
  let holds: HoldTable;
  try {
    holds = readHolds(repo.path, txid);
  } catch (e) {
    if (!(e instanceof HoldsFormatError)) throw e;
    throw new IntegrityError(`${repo.path}/burg/holds.* is damaged (${e.message}): burg undelete cannot tell what is held`);
  }
  if (!opts.dryRun) holds = repo.loadHolds(); // the table the commit writes back
  const io = repo.io!;
  const report: UndeleteReport = {
    since,
    objects: 0,
    bytes: 0,
    current: 0,
    lost: 0,
    lostBytes: 0,
    manifestRemoved: false,
    manifestMissing: false,
    holds: 0,
    dryRun: opts.dryRun,
  };
  // For each object, its earliest hold since `since`.
  const chosen = new Map<string, number>();
  let lastManifestHold = -1;
  let manifestChanged = false;
  for (let i = 0; i < holds.count; i++) {
    const id = holds.id(i);
    if (bytesEqual(id, MANIFEST_ID)) {
      if (lastManifestHold < 0 || holds.deletedAt[i]! >= holds.deletedAt[lastManifestHold]!) lastManifestHold = i;
      if (holds.deletedAt[i]! >= since) {
        manifestChanged = true;
        report.holds++;
      }
      continue;
    }
    if (holds.deletedAt[i]! < since || (holds.flags[i]! & HOLD_BY_UNDELETE) !== 0) continue;
    report.holds++;
    const hex = toHex(id);
    const prev = chosen.get(hex);
    if (prev === undefined || holds.deletedAt[i]! < holds.deletedAt[prev]!) chosen.set(hex, i);
  }
  // A manifest whose last change was an undelete's removal was rebuilt since: leave it.
  const rebuiltSince = lastManifestHold >= 0 && (holds.flags[lastManifestHold]! & HOLD_BY_UNDELETE) !== 0;
  const hasManifest = await repo.contains(MANIFEST_ID);
  report.manifestRemoved = manifestChanged && !rebuiltSince && hasManifest;
  report.manifestMissing = report.manifestRemoved || !hasManifest;

  if (!opts.dryRun) {
    repo.keepDeletedMs = Math.max(repo.keepDeletedMs, UNDELETE_HOLD_MS);
    repo.holdFlags = HOLD_BY_UNDELETE;
  }
  let done = 0;
  const restored = new Set<number>();
  for (const h of chosen.values()) {
    done++;
    if (log.progressEnabled && done % 1000 === 0) {
      log.progress("burg.undelete", `Restoring objects ${Math.round((done * 100) / chosen.size)}%`, done, chosen.size);
    }
    const id = holds.id(h);
    let data: Uint8Array;
    try {
      data = io.read(holds.segment[h]!, holds.offset[h]!, id) as Uint8Array;
    } catch (e) {
      if (!(e instanceof IntegrityError) && (e as NodeJS.ErrnoException)?.code !== "ENOENT") throw e;
      report.lost++;
      report.lostBytes += holds.size[h]! - PUT_HEADER_SIZE;
      continue;
    }
    if (await repo.contains(id)) {
      const now = await repo.get(id);
      if (bytesEqual(now, data)) {
        report.current++;
        continue;
      }
    }
    report.objects++;
    report.bytes += data.length;
    if (!opts.dryRun) {
      await repo.put(id, data);
      restored.add(h);
    }
  }
  log.progress("burg.undelete", null, chosen.size, chosen.size, true);
  if (opts.dryRun) return report;
  if (report.manifestRemoved) await repo.delete(MANIFEST_ID);
  if (report.objects > 0 || report.manifestRemoved) {
    // What came back lives in new entries now: its held copies go, and compaction frees them,
    // so that an undelete does not need the space of what it restores twice.
    repo.releaseHolds((i) => restored.has(i));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false });
  }
  repo.holdFlags = 0;
  return report;
}
