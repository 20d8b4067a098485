// The repository check and repair (borg 1.2 Repository.check), returning structured findings.
//
// The procedure, its verdicts and its log messages are borg's, because borg clients print a
// remote check's messages as "Remote: ..." and scripts read its exit code: determine the last
// committed transaction (replaying or recovering the index exactly where borg does), verify
// every entry of every segment up to it (header, size, CRC32, tag), rebuild the index from the
// segments and compare it with the committed one. With repair, uncommitted segments are
// removed, damaged segments are salvaged (every entry with a valid header and CRC is kept, see
// SegmentStore.recoverSegment), a missing commit is added, and a fresh index, hints and
// integrity file are written. Partial checks (maxDuration) resume from the config's
// `last_segment_checked`, the state borg's own partial checks keep, so the two can take turns.
//
// What is burg's own: (1) segments are verified by segment-scan.ts, which reads ahead with
// large asynchronous reads and checks CRCs natively, instead of entry by entry; (2) before
// borg's procedure, a read-only look at index.N, hints.N and integrity.N (digests, format,
// transaction ids) turns what borg silently rebuilds into findings, and after it the hints'
// per-segment object counts are compared with what the segments say. Those findings are
// warnings: borg's verdict for them is "ok" (the files are caches it rebuilds), so burg's is
// too. Every finding names its segment and offset or its file.

import { DiskFull, EXIT_SUCCESS, EXIT_WARNING, IntegrityError, ValueError } from "../errors.ts";
import { isReadFault, unreadableRanges } from "../util/fs.ts";
import { isNoSpace, noSpaceReason } from "./reserve.ts";
import { log } from "../util/log.ts";
import { toHex } from "../util/hex.ts";
import { PercentSteps } from "../util/progress.ts";
import { saveConfig } from "./config.ts";
import { NS_KEY_SIZE, NS_VALUE_SIZE, NSIndex } from "./hashindex.ts";
import { readHints, readIntegrityFile, type Hints } from "./hints.ts";
import { readIndexFile, type IntegrityParts } from "./integrity.ts";
import type { Repository } from "./repository.ts";
import type { SegmentEntry } from "./segments.ts";
import { scanSegments, type ScanOptions, type SegmentEntries, type SegmentScanResult } from "./segment-scan.ts";

const LOGGER = "borg.repository";
/** Index mismatches kept as findings (borg's log lines are all written regardless). */
const MAX_MISMATCH_FINDINGS = 1000;

export type Severity = "error" | "warning" | "info";

export type FindingKind =
  | "no-valid-data"
  | "segment-damaged"
  | "segment-unreadable"
  | "segment-recovered"
  | "segment-uncommitted"
  | "segment-removed"
  | "segment-missing"
  | "commit-added"
  | "transaction-lost"
  | "index-missing"
  | "index-damaged"
  | "index-behind"
  | "index-count-mismatch"
  | "index-mismatch"
  | "hints-missing"
  | "hints-damaged"
  | "hints-mismatch"
  | "integrity-missing"
  | "integrity-damaged";

export interface Finding {
  severity: Severity;
  kind: FindingKind;
  message: string;
  segment: number | null;
  offset: number | null;
  /** The file concerned, relative to the repository, when it is not a segment (index.9). */
  file: string | null;
  /** The object id (hex) an index mismatch is about. */
  id: string | null;
  /** --repair dealt with it (fixed, rebuilt, or removed what was not committed). */
  repaired: boolean;
  /** The check wrote this message to the log (borg's messages); the others only live here. */
  logged: boolean;
}

export type Verdict = "ok" | "errors" | "repaired";

export interface CheckReport {
  repository: string;
  mode: "full" | "partial";
  repair: boolean;
  verdict: Verdict;
  /** The transaction checked (the last committed one). */
  transactionId: number | null;
  segments: {
    /** Segment files found. */
    total: number;
    /** Segments verified by this run. */
    checked: number;
    /** Bytes of the verified segments. */
    bytes: number;
    damaged: number;
    recovered: number;
  };
  objects: {
    /** Objects in the committed index, when it could be read. */
    committed: number | null;
    /** Objects in the index rebuilt from the segments (full checks only). */
    rebuilt: number | null;
  };
  /** Partial checks: the segment the next partial check continues after; null when the pass is complete. */
  lastSegmentChecked: number | null;
  errors: number;
  warnings: number;
  findings: Finding[];
  seconds: number;
}

export interface CheckProgress {
  bytesDone: number;
  bytesTotal: number;
  segmentsDone: number;
  segmentsTotal: number;
}

export interface CheckRunOptions {
  repair: boolean;
  /** Seconds; > 0 makes a partial check that stops after this long and resumes next time. */
  maxDuration: number;
}

export interface CheckOptions extends CheckRunOptions {
  onProgress?: (p: CheckProgress) => void;
  signal?: AbortSignal;
  /** Read size and reads in flight of the segment scan (segment-scan.ts defaults). */
  chunkSize?: number;
  depth?: number;
}

/** The RPC entry point (Repository.check): borg's return value, true unless errors remain. */
export async function runCheck(repo: Repository, opts: CheckRunOptions): Promise<boolean> {
  const report = await checkRepository(repo, opts);
  return report.verdict !== "errors";
}

/** borg check's exit code for a report: 0 ok or repaired, 1 errors found (archiver.do_check). */
export function exitCodeFor(report: CheckReport): number {
  return report.verdict === "errors" ? EXIT_WARNING : EXIT_SUCCESS;
}

type Where = { segment?: number | null; offset?: number | null; file?: string | null; id?: string | null };

class Findings {
  readonly list: Finding[] = [];
  errorFound = false;
  unrepaired = 0;
  mismatches = 0;

  add(severity: Severity, kind: FindingKind, message: string, where: Where = {}, logged = false): Finding {
    const f: Finding = {
      severity,
      kind,
      message,
      segment: where.segment ?? null,
      offset: where.offset ?? null,
      file: where.file ?? null,
      id: where.id ?? null,
      repaired: false,
      logged,
    };
    this.list.push(f);
    return f;
  }

  /** borg's report_error: logged as an error, makes the check fail (unless repaired). */
  error(kind: FindingKind, message: string, where: Where = {}): Finding {
    this.errorFound = true;
    log.error(message, LOGGER);
    return this.add("error", kind, message, where, true);
  }
}

/** Run `fn` with the log muted: the read-only look must not repeat warnings borg's procedure logs. */
function quietly<T>(fn: () => T): T {
  const level = log.level;
  log.level = Number.POSITIVE_INFINITY;
  try {
    return fn();
  } finally {
    log.level = level;
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Diagnosis {
  segmentsTid: number | null;
  indexTid: number | null;
  /**
   * The committed index file, when it belongs to the last commit and was read and verified
   * against integrity.N: its shape, and how to read it again (it is not held meanwhile).
   */
  index: { size: number; numBuckets: number; read: () => NSIndex } | null;
  hints: Hints | null;
}

/**
 * Read-only: what index.N, hints.N and integrity.N look like, and how they relate to the
 * commits in the segments. Records findings; borg's procedure afterwards does the recovering.
 */
function diagnose(repo: Repository, all: readonly number[], findings: Findings): Diagnosis {
  const io = repo.io!;
  const segmentsTid = io.segmentsTransactionId();
  const indexTid = repo.getIndexTransactionId();
  const diag: Diagnosis = { segmentsTid, indexTid, index: null, hints: null };
  const latest = all.length ? all[all.length - 1]! : null;

  if (latest !== null && (segmentsTid === null || latest > segmentsTid)) {
    const first = all.find((s) => segmentsTid === null || s > segmentsTid)!;
    const count = all.filter((s) => segmentsTid === null || s > segmentsTid).length;
    const msg =
      segmentsTid === null
        ? `No segment ends with a valid commit: ${count} segments (${first}..${latest}) hold no committed transaction.`
        : `${count} segments after the last commit (segment ${segmentsTid}) are not committed (${first}..${latest}); ` +
          "they are ignored, and removed by --repair or the next write.";
    findings.add("info", "segment-uncommitted", msg, { segment: first });
  }
  if (indexTid !== null && (segmentsTid === null || indexTid > segmentsTid)) {
    findings.add(
      "warning",
      "transaction-lost",
      `index.${indexTid} belongs to transaction ${indexTid}, but the last valid commit in the segments is ` +
        `${segmentsTid === null ? "none" : `segment ${segmentsTid}`}: the commit of transaction ${indexTid} is missing or damaged, ` +
        "so the repository rolls back to the last valid commit.",
      { segment: indexTid, file: `index.${indexTid}` },
    );
  }
  if (indexTid === null) {
    if (segmentsTid !== null) {
      findings.add("warning", "index-missing", `No index file: index.${segmentsTid} will be rebuilt from the segments.`, {
        file: `index.${segmentsTid}`,
      });
    }
    return diag;
  }
  if (segmentsTid !== null && indexTid < segmentsTid) {
    findings.add(
      "warning",
      "index-behind",
      `index.${indexTid} is older than the last commit (segment ${segmentsTid}): segments ${indexTid + 1}..${segmentsTid} are replayed into it.`,
      { file: `index.${indexTid}`, segment: indexTid + 1 },
    );
  }

  let indexIntegrity: IntegrityParts | null = null;
  let hintsIntegrity: IntegrityParts | null = null;
  const integrityFile = `integrity.${indexTid}`;
  let integrityUsable = true;
  try {
    indexIntegrity = quietly(() => readIntegrityFile(repo.path, indexTid, "index"));
    hintsIntegrity = quietly(() => readIntegrityFile(repo.path, indexTid, "hints"));
    if (indexIntegrity === null && hintsIntegrity === null) {
      findings.add(
        "warning",
        "integrity-missing",
        `${integrityFile} is missing (or of an unknown version): index.${indexTid} and hints.${indexTid} cannot be verified.`,
        { file: integrityFile },
      );
    }
  } catch (e) {
    integrityUsable = false;
    findings.add("warning", "integrity-damaged", `${integrityFile} is damaged: ${describe(e)}`, { file: integrityFile });
  }

  const indexFile = `index.${indexTid}`;
  if (integrityUsable) {
    try {
      const read = () => quietly(() => readIndexFile(`${repo.path}/${indexFile}`, indexIntegrity));
      const index = read();
      if (indexTid === segmentsTid) diag.index = { size: index.size, numBuckets: index.numBuckets, read };
    } catch (e) {
      findings.add("warning", "index-damaged", `${indexFile} is damaged: ${describe(e)}`, { file: indexFile });
    }
  }

  const hintsFile = `hints.${indexTid}`;
  try {
    diag.hints = quietly(() => readHints(`${repo.path}/${hintsFile}`, integrityUsable ? hintsIntegrity : null));
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException)?.code === "ENOENT";
    findings.add(
      "warning",
      missing ? "hints-missing" : "hints-damaged",
      missing ? `${hintsFile} is missing.` : `${hintsFile} is damaged: ${describe(e)}`,
      { file: hintsFile },
    );
  }
  return diag;
}

/** Verify one segment on its own (after it was rewritten by a recovery). */
async function scanOne(repo: Repository, segment: number, opts: CheckOptions): Promise<SegmentScanResult> {
  const io = repo.io!;
  const scanOpts: ScanOptions = { chunkSize: opts.chunkSize, depth: opts.depth, signal: opts.signal };
  // The result (and its entries) stays valid: this generator is not stepped again.
  for await (const r of scanSegments([segment], (s) => io.segmentFilename(s), scanOpts)) return r;
  throw new Error(`segment ${segment} was not scanned`);
}

function formatPos(v: [number, number] | undefined): string {
  return v ? `(${v[0]}, ${v[1]})` : "<not found>";
}

/**
 * Check (and with opts.repair, repair) an open repository; it must hold the exclusive lock.
 * Running out of space is DiskFull: a repair writes each recovered segment to a temporary file
 * first, so what it could not finish is left as it was.
 */
export async function checkRepository(repo: Repository, opts: CheckOptions): Promise<CheckReport> {
  try {
    return await checkAndRepair(repo, opts);
  } catch (e) {
    if (!isNoSpace(e)) throw e;
    repo.rollback();
    const reason = noSpaceReason(e);
    throw new DiskFull(repo.path, opts.repair ? "check --repair" : "check", reason, {
      cause: e,
      outcome: "the check stopped there; a segment being recovered is left as it was, and what was repaired before stays repaired",
    });
  }
}

async function checkAndRepair(repo: Repository, opts: CheckOptions): Promise<CheckReport> {
  if (repo.appendOnly && opts.repair) throw new ValueError(`${repo.path} is in append-only mode`);
  if (opts.repair && opts.maxDuration > 0) throw new ValueError("--repair does not allow --max-duration argument.");
  const io = repo.io!;
  const started = performance.now();
  const findings = new Findings();
  const partial = opts.maxDuration > 0;
  const report: CheckReport = {
    repository: repo.path,
    mode: partial ? "partial" : "full",
    repair: opts.repair,
    verdict: "ok",
    transactionId: null,
    segments: { total: 0, checked: 0, bytes: 0, damaged: 0, recovered: 0 },
    objects: { committed: null, rebuilt: null },
    lastSegmentChecked: null,
    errors: 0,
    warnings: 0,
    findings: findings.list,
    seconds: 0,
  };
  const finish = (): CheckReport => {
    report.errors = findings.list.filter((f) => f.severity === "error").length;
    report.warnings = findings.list.filter((f) => f.severity === "warning").length;
    if (findings.errorFound) report.verdict = opts.repair && findings.unrepaired === 0 ? "repaired" : "errors";
    report.seconds = (performance.now() - started) / 1000;
    return report;
  };

  log.info("Starting repository check", LOGGER);
  const diag = diagnose(repo, io.listSegments(), findings);

  // borg's determination of the transaction, including its recoveries (replay, index rebuild).
  // Memory: with millions of objects each index is tens of MB. The committed one, when it came
  // straight from its verified file, is not held during the scan but read again for the
  // comparison, so the two indexes are held together only at the end, not while segment
  // entries and read buffers are held too. The rebuilt one gets the committed one's table size
  // up front: growing it step by step would leave every smaller table behind as garbage.
  let transactionId: number | null;
  let currentIndex: NSIndex | null = null;
  let committed: { size: number; numBuckets: number } | null = null;
  try {
    if (diag.index !== null) {
      // The committed index was just read and verified: what borg's calls would return.
      transactionId = diag.indexTid;
      committed = diag.index;
      // Let the copy diagnose() read go before the rebuilt one is allocated (a full collection
      // takes milliseconds; only worth it for a big table).
      if (committed.numBuckets * (NS_KEY_SIZE + NS_VALUE_SIZE) > 16 << 20) Bun.gc(true);
    } else {
      transactionId = await repo.getTransactionId();
      currentIndex = await repo.openIndex(transactionId);
      committed = { size: currentIndex.size, numBuckets: currentIndex.numBuckets };
    }
    log.debug(`Read committed index of transaction ${transactionId}`, LOGGER);
  } catch (e) {
    transactionId = io.segmentsTransactionId();
    currentIndex = committed = null;
    log.debug(`Failed to read committed index (${describe(e)})`, LOGGER);
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
    findings.error("no-valid-data", "This repository contains no valid data.");
    findings.unrepaired++;
    return finish();
  }
  report.transactionId = transactionId;
  report.objects.committed = committed ? committed.size : null;
  if (opts.repair) {
    for (const s of io.listSegments({ start: transactionId + 1 })) {
      findings.add("info", "segment-removed", `Removed segment ${s}: it is not part of a committed transaction.`, {
        segment: s,
      }).repaired = true;
    }
    io.cleanup(transactionId);
  }
  const segmentsTransactionId = io.segmentsTransactionId();
  log.debug(`Segment transaction is    ${segmentsTransactionId}`, LOGGER);
  log.debug(`Determined transaction is ${transactionId}`, LOGGER);
  await repo.prepareTxn(null);
  if (committed) {
    const rebuilt = NSIndex.create(committed.numBuckets);
    rebuilt.shrinkOnDelete = false;
    repo.index = rebuilt;
  }
  const all = io.listSegments();
  report.segments.total = all.length;
  log.debug(`Found ${all.length} segments`, LOGGER);

  let lastSegmentChecked: number;
  if (partial) {
    lastSegmentChecked = parseInt(repo.config.get("repository", "last_segment_checked") ?? "-1", 10);
    if (Number.isNaN(lastSegmentChecked)) lastSegmentChecked = -1;
    log.info(`skipping to segments >= ${lastSegmentChecked + 1}`, LOGGER);
  } else {
    lastSegmentChecked = -1;
    repo.config.remove("repository", "last_segment_checked");
    saveConfig(repo.path, repo.config, { readOnlyOk: !repo.doLock });
  }

  const toCheck = all.filter((s) => s > lastSegmentChecked && s <= transactionId);
  const position = new Map<number, number>();
  all.forEach((s, i) => position.set(s, i));
  const progress: CheckProgress = { bytesDone: 0, bytesTotal: 0, segmentsDone: 0, segmentsTotal: toCheck.length };
  for (const s of toCheck) {
    try {
      progress.bytesTotal += io.segmentSize(s);
    } catch {
      // vanished: the scan reports it
    }
  }
  const steps = new PercentSteps(all.length, 0.1);
  let shown = 0;
  const showUpTo = (index: number) => {
    for (; shown <= index && shown < all.length; shown++) {
      const pct = steps.next(shown);
      if (pct !== null) {
        log.progress("repository.check", `Checking segments ${pct.toFixed(1).padStart(3)}%`, shown + 1, all.length);
      }
    }
  };
  const onProgress = opts.onProgress;
  const scanOpts: ScanOptions = {
    chunkSize: opts.chunkSize,
    depth: opts.depth,
    signal: opts.signal,
    onBytes: (n: number) => {
      progress.bytesDone += n;
      if (onProgress) onProgress(progress);
    },
  };

  const tStart = performance.now();
  let segment = all.length ? all[all.length - 1]! : -1;
  let stoppedAt: number | null = null;
  for await (const r of scanSegments(toCheck, (s) => io.segmentFilename(s), scanOpts)) {
    const seg = r.segment;
    showUpTo(position.get(seg)!);
    log.debug(`checking segment file ${io.segmentFilename(seg)}...`, LOGGER);
    let entries: SegmentEntries | null = r.entries;
    let readable: SegmentEntry[] | null = null;
    report.segments.checked++;
    report.segments.bytes += r.fileSize;
    if (r.ioError) {
      report.segments.damaged++;
      entries = null;
      // Bad sectors: every unreadable range is reported, and a repair keeps every entry
      // outside them (ddrescue, then borg check --repair, in one step).
      const ranges = isReadFault(r.ioError) ? unreadableRanges(io.segmentFilename(seg)) : [];
      const found: Finding[] = [];
      if (ranges.length === 0) {
        found.push(
          findings.error("segment-unreadable", `Segment file unreadable [segment ${seg}, offset ${r.errorOffset}]: ${r.ioError.message}`, {
            segment: seg,
            offset: r.errorOffset,
          }),
        );
      }
      for (const [start, end] of ranges) {
        found.push(
          findings.error(
            "segment-unreadable",
            `Segment file unreadable [segment ${seg}, offset ${start}]: ${end - start} bytes cannot be read (${r.ioError.code ?? r.ioError.message})`,
            { segment: seg, offset: start },
          ),
        );
      }
      if (opts.repair && ranges.length > 0) {
        log.info(`attempting to recover ${io.segmentFilename(seg)} around its unreadable parts`, LOGGER);
        io.recoverSegment(seg);
        const again = await scanOne(repo, seg, opts);
        if (again.error || again.ioError) {
          throw again.error ?? new IntegrityError(`segment ${seg} unreadable after recovery: ${again.ioError!.message}`);
        }
        entries = again.entries;
        for (const f of found) f.repaired = true;
        report.segments.recovered++;
        const lost = ranges.reduce((n, [a, b]) => n + (b - a), 0);
        findings.add(
          "info",
          "segment-recovered",
          `Recovered segment ${seg}: kept ${entries.count} entries (${entries.bytes()} bytes); ${lost} unreadable bytes and the entries they were in are gone.`,
          { segment: seg, offset: ranges[0]![0] },
        ).repaired = true;
      } else {
        findings.unrepaired++;
        // Not repairing: the entries outside the unreadable blocks still go into the rebuilt
        // index, so the comparison below names exactly the objects that cannot be read.
        if (ranges.length > 0 && !partial) {
          readable = [];
          for (const e of io.recoverableEntries(seg)) {
            readable.push({ ...e, key: e.key && Uint8Array.from(e.key), raw: null });
          }
        }
      }
    } else if (r.error) {
      report.segments.damaged++;
      const f = findings.error("segment-damaged", r.error.message, { segment: seg, offset: r.errorOffset });
      entries = null;
      if (opts.repair) {
        const filename = io.segmentFilename(seg);
        log.info(`attempting to recover ${filename}`, LOGGER);
        io.recoverSegment(seg);
        const again = await scanOne(repo, seg, opts);
        if (again.error || again.ioError) {
          // recover_segment keeps only verified entries, so this cannot happen short of the
          // file changing under us; borg would stop with the IntegrityError.
          throw again.error ?? new IntegrityError(`segment ${seg} unreadable after recovery: ${again.ioError!.message}`);
        }
        entries = again.entries;
        f.repaired = true;
        report.segments.recovered++;
        const dropped = r.fileSize - again.fileSize;
        findings.add(
          "info",
          "segment-recovered",
          `Recovered segment ${seg}: kept ${entries.count} entries (${entries.bytes()} bytes), dropped ${dropped} damaged bytes.`,
          { segment: seg, offset: r.errorOffset },
        ).repaired = true;
      }
    }
    if (!partial) {
      repo.updateIndex(seg, entries ? entries.iterate() : (readable ?? []), (msg) => {
        findings.error("segment-damaged", msg, { segment: seg });
      });
    }
    progress.segmentsDone++;
    if (onProgress) onProgress(progress);
    if (partial && performance.now() > tStart + opts.maxDuration * 1000) {
      segment = seg;
      stoppedAt = seg;
      break;
    }
  }
  if (stoppedAt !== null) {
    log.info(`finished partial segment check, last segment checked is ${segment}`, LOGGER);
    repo.config.set("repository", "last_segment_checked", String(segment));
    saveConfig(repo.path, repo.config, { readOnlyOk: !repo.doLock });
    report.lastSegmentChecked = segment;
  } else {
    showUpTo(all.length - 1);
    log.info(`finished segment check at segment ${segment}`, LOGGER);
    repo.config.remove("repository", "last_segment_checked");
    saveConfig(repo.path, repo.config, { readOnlyOk: !repo.doLock });
  }
  log.progress("repository.check", null, all.length, all.length, true);

  if (opts.repair && segmentsTransactionId === null) {
    findings.error("commit-added", `Adding commit tag to segment ${transactionId}`, { segment: transactionId + 1 }).repaired =
      true;
    io.segment = transactionId + 1;
    io.writeCommit();
  }

  if (!partial) {
    log.info("Starting repository index check", LOGGER);

    const rebuilt = repo.index!;
    report.objects.rebuilt = rebuilt.size;
    if (!currentIndex && diag.index && diag.index.size > 0 && !opts.repair) currentIndex = diag.index.read();
    if (currentIndex && currentIndex.size > 0 && !opts.repair) {
      compareIndexes(currentIndex, rebuilt, findings);
      reportMissingSegments(currentIndex, diag.hints, new Set(all), findings);
    }
    if (!opts.repair && !findings.errorFound && diag.hints && diag.indexTid === transactionId) {
      compareHints(diag.hints, repo.segments, transactionId, findings);
    }
    if (opts.repair) {
      repo.writeIndex();
      for (const f of findings.list) {
        if (/^(index|hints|integrity|transaction)-|^segment-uncommitted$/.test(f.kind)) f.repaired = true;
      }
    }
  }
  repo.rollback();
  const mode = report.mode;
  if (findings.errorFound) {
    if (opts.repair && findings.unrepaired === 0) {
      log.info(`Finished ${mode} repository check, errors found and repaired.`, LOGGER);
    } else {
      log.error(`Finished ${mode} repository check, errors found.`, LOGGER);
    }
  } else {
    log.info(`Finished ${mode} repository check, no problems found.`, LOGGER);
  }
  return finish();
}

/** borg's comparison of the committed index with the one rebuilt from the segments. */
function compareIndexes(current: NSIndex, rebuilt: NSIndex, findings: Findings): void {
  if (current.size !== rebuilt.size) {
    findings.error("index-count-mismatch", "Index object count mismatch.");
    log.error(`committed index: ${current.size} objects`, LOGGER);
    log.error(`rebuilt index:   ${rebuilt.size} objects`, LOGGER);
  } else {
    log.info("Index object count match.", LOGGER);
  }
  const mismatch = (key: Uint8Array, value: [number, number] | undefined, committed: [number, number] | undefined) => {
    const hex = toHex(key);
    const line = `ID: ${hex.padEnd(64)} rebuilt index: ${formatPos(value).padEnd(16)} committed index: ${formatPos(committed).padEnd(16)}`;
    log.warning(line, LOGGER);
    if (findings.mismatches++ < MAX_MISMATCH_FINDINGS) {
      const at = committed ?? value!;
      findings.add("warning", "index-mismatch", line.trimEnd(), { segment: at[0], offset: at[1], id: hex }, true);
    }
  };
  // Bucket by bucket over the tables themselves, looking each key up straight from the other
  // table's words: with millions of objects, even a key view per entry is hundreds of MiB of
  // garbage. Only mismatches copy their key. Lookups in the other index may move its buckets
  // (tombstone swaps), never the one walked.
  for (let b = rebuilt.nextBucket(-1); b !== -1; b = rebuilt.nextBucket(b)) {
    const s = rebuilt.segmentAt(b);
    const o = rebuilt.offsetAt(b);
    const c = current.lookupBucketOf(rebuilt, b);
    if (c < 0) mismatch(rebuilt.keyAt(b), [s, o], undefined);
    else if (current.segmentAt(c) !== s || current.offsetAt(c) !== o) {
      mismatch(rebuilt.keyAt(b), [s, o], [current.segmentAt(c), current.offsetAt(c)]);
    }
  }
  for (let b = current.nextBucket(-1); b !== -1; b = current.nextBucket(b)) {
    if (rebuilt.lookupBucketOf(current, b) < 0) mismatch(current.keyAt(b), undefined, [current.segmentAt(b), current.offsetAt(b)]);
  }
  if (findings.mismatches > MAX_MISMATCH_FINDINGS) {
    findings.add(
      "warning",
      "index-mismatch",
      `... and ${findings.mismatches - MAX_MISMATCH_FINDINGS} more index mismatches (all of them are in the log).`,
    );
  }
}

/** Segments the committed index or the hints refer to that are not on disk. */
function reportMissingSegments(current: NSIndex, hints: Hints | null, present: Set<number>, findings: Findings): void {
  const missing = new Map<number, number>();
  for (let b = current.nextBucket(-1); b !== -1; b = current.nextBucket(b)) {
    const s = current.segmentAt(b);
    if (!present.has(s)) missing.set(s, (missing.get(s) ?? 0) + 1);
  }
  if (hints) for (const [s, n] of hints.segments) if (n > 0 && !present.has(s) && !missing.has(s)) missing.set(s, 0);
  for (const [s, n] of [...missing].sort((a, b) => a[0] - b[0])) {
    findings.add(
      "warning",
      "segment-missing",
      n > 0
        ? `Segment ${s} is missing: the committed index has ${n} objects in it.`
        : `Segment ${s} is missing: the hints count live objects in it.`,
      { segment: s },
    );
  }
}

/** The hints' live-object count per segment against the counts rebuilt from the segments. */
function compareHints(hints: Hints, rebuilt: Map<number, number>, transactionId: number, findings: Findings): void {
  const segments = new Set<number>();
  for (const [s, n] of hints.segments) if (n !== 0 && s <= transactionId) segments.add(s);
  for (const [s, n] of rebuilt) if (n !== 0) segments.add(s);
  let shown = 0;
  for (const s of [...segments].sort((a, b) => a - b)) {
    const want = rebuilt.get(s) ?? 0;
    const got = hints.segments.get(s) ?? 0;
    if (want === got) continue;
    if (shown++ >= MAX_MISMATCH_FINDINGS) continue;
    findings.add(
      "warning",
      "hints-mismatch",
      `hints.${transactionId}: segment ${s} holds ${want} live objects, the hints say ${got}.`,
      { segment: s, file: `hints.${transactionId}` },
    );
  }
}
