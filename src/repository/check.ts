// The repository check (borg 1.2 Repository.check): verify every segment entry's header and
// CRC32, rebuild the index from the segments and compare it with the committed index; with
// repair, salvage damaged segments, add a missing commit and write a fresh index/hints.
// Partial checks (max_duration) resume from `last_segment_checked` in the config, the same
// resume state borg keeps.

import { IntegrityError, ValueError } from "../errors.ts";
import { log } from "../util/log.ts";
import { toHex } from "../util/hex.ts";
import { saveConfig } from "./config.ts";
import type { Repository } from "./repository.ts";
import type { NSIndex } from "./hashindex.ts";
import type { SegmentEntry } from "./segments.ts";

export interface CheckRunOptions {
  repair: boolean;
  maxDuration: number;
}

const LOGGER = "borg.repository";

export async function runCheck(repo: Repository, opts: CheckRunOptions): Promise<boolean> {
  if (repo.appendOnly && opts.repair) throw new ValueError(`${repo.path} is in append-only mode`);
  const io = repo.io!;
  let errorFound = false;
  const reportError = (msg: string) => {
    errorFound = true;
    log.error(msg, LOGGER);
  };

  log.info("Starting repository check", LOGGER);
  let transactionId: number | null;
  let currentIndex: NSIndex | null;
  try {
    transactionId = await repo.getTransactionId();
    currentIndex = await repo.openIndex(transactionId);
    log.debug(`Read committed index of transaction ${transactionId}`, LOGGER);
  } catch (e) {
    transactionId = io.segmentsTransactionId();
    currentIndex = null;
    log.debug(`Failed to read committed index (${(e as Error).message})`, LOGGER);
  }
  if (transactionId === null) {
    log.debug("No segments transaction found", LOGGER);
    transactionId = repo.getIndexTransactionId();
  }
  if (transactionId === null) {
    log.debug("No index transaction found, trying latest segment", LOGGER);
    transactionId = io.latestSegment();
  }
  if (transactionId === null) {
    reportError("This repository contains no valid data.");
    return false;
  }
  if (opts.repair) io.cleanup(transactionId);
  const segmentsTransactionId = io.segmentsTransactionId();
  log.debug(`Segment transaction is    ${segmentsTransactionId}`, LOGGER);
  log.debug(`Determined transaction is ${transactionId}`, LOGGER);
  await repo.prepareTxn(null);
  const all = io.listSegments();
  log.debug(`Found ${all.length} segments`, LOGGER);

  const partial = opts.maxDuration > 0;
  const mode = partial ? "partial" : "full";
  let lastSegmentChecked: number;
  if (partial) {
    lastSegmentChecked = parseInt(repo.config.get("repository", "last_segment_checked") ?? "-1", 10);
    if (Number.isNaN(lastSegmentChecked)) lastSegmentChecked = -1;
    log.info(`skipping to segments >= ${lastSegmentChecked + 1}`, LOGGER);
  } else {
    lastSegmentChecked = -1;
    repo.config.remove("repository", "last_segment_checked");
    saveConfig(repo.path, repo.config);
  }
  const tStart = performance.now();
  let segment = -1;
  let stoppedEarly = false;
  for (let i = 0; i < all.length; i++) {
    segment = all[i]!;
    log.progress("repository.check", `Checking segments ${((i * 100) / all.length).toFixed(1)}%`, i, all.length);
    if (segment <= lastSegmentChecked) continue;
    if (segment > transactionId) continue;
    log.debug(`checking segment file ${io.segmentFilename(segment)}...`, LOGGER);
    let objects: SegmentEntry[] = [];
    try {
      objects = collect(io.iterObjects(segment));
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e;
      reportError(e.message);
      objects = [];
      if (opts.repair) {
        log.info(`attempting to recover ${io.segmentFilename(segment)}`, LOGGER);
        io.recoverSegment(segment);
        objects = collect(io.iterObjects(segment));
      }
    }
    if (!partial) repo.updateIndex(segment, objects, reportError);
    if (partial && performance.now() > tStart + opts.maxDuration * 1000) {
      log.info(`finished partial segment check, last segment checked is ${segment}`, LOGGER);
      repo.config.set("repository", "last_segment_checked", String(segment));
      saveConfig(repo.path, repo.config);
      stoppedEarly = true;
      break;
    }
  }
  if (!stoppedEarly) {
    log.info(`finished segment check at segment ${segment}`, LOGGER);
    repo.config.remove("repository", "last_segment_checked");
    saveConfig(repo.path, repo.config);
  }
  log.progress("repository.check", null, all.length, all.length, true);

  if (opts.repair && segmentsTransactionId === null) {
    reportError(`Adding commit tag to segment ${transactionId}`);
    io.segment = transactionId + 1;
    io.writeCommit();
  }
  if (!partial) {
    log.info("Starting repository index check", LOGGER);
    const rebuilt = repo.index!;
    if (currentIndex && !opts.repair) {
      if (currentIndex.size !== rebuilt.size) {
        reportError("Index object count mismatch.");
        log.error(`committed index: ${currentIndex.size} objects`, LOGGER);
        log.error(`rebuilt index:   ${rebuilt.size} objects`, LOGGER);
      } else {
        log.info("Index object count match.", LOGGER);
      }
      const fmt = (v: [number, number] | undefined) => (v ? `(${v[0]}, ${v[1]})` : "<not found>");
      for (const [key, s, o] of rebuilt.entries()) {
        const cur = currentIndex.get(key);
        if (!cur || cur[0] !== s || cur[1] !== o) {
          log.warning(`ID: ${toHex(key).padEnd(64)} rebuilt index: ${fmt([s, o]).padEnd(16)} committed index: ${fmt(cur).padEnd(16)}`, LOGGER);
        }
      }
      for (const [key, s, o] of currentIndex.entries()) {
        if (rebuilt.has(key)) continue;
        log.warning(`ID: ${toHex(key).padEnd(64)} rebuilt index: ${"<not found>".padEnd(16)} committed index: ${fmt([s, o]).padEnd(16)}`, LOGGER);
      }
    }
    if (opts.repair) repo.writeIndex();
  }
  repo.rollback();
  if (errorFound) {
    if (opts.repair) log.info(`Finished ${mode} repository check, errors found and repaired.`, LOGGER);
    else log.error(`Finished ${mode} repository check, errors found.`, LOGGER);
  } else {
    log.info(`Finished ${mode} repository check, no problems found.`, LOGGER);
  }
  return !errorFound || opts.repair;
}

/** Materialise an iteration, copying the views the iterator reuses. */
function collect(it: Iterable<SegmentEntry>): SegmentEntry[] {
  const out: SegmentEntry[] = [];
  for (const e of it) out.push({ tag: e.tag, key: e.key ? e.key.slice() : null, offset: e.offset, size: e.size, data: null });
  return out;
}
