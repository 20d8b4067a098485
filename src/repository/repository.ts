// The repository: a transactional key-value store in borg 1.x's on-disk format. This file is
// the engine's design document; it follows borg 1.2's repository.py method for method so that
// plain borg and burg can take turns on one repository.
//
// Transactions are a log. The log is a series of numbered segment files (segments.ts), each a
// series of PUT, DELETE and COMMIT entries. A segment ending with a COMMIT is committed; its
// number is the transaction id. On open, segments after the last committed one are deleted:
// what they hold was never committed. A PUT supersedes earlier PUTs of the same id, a DELETE
// hides them; superseded entries make a segment sparse, and compaction copies the live entries
// of sparse segments into new ones and deletes the old files.
//
// Beside the log, each commit writes three files named after the transaction id:
//   index.N      the hashindex id -> (segment, offset) of the current PUT (hashindex.ts)
//   hints.N      msgpack: per-segment live-object counts, freeable bytes, storage quota use and
//                the shadow index (which segments hold PUTs hidden by a DELETE), used by
//                compaction (hints.ts)
//   integrity.N  XXH64 digests of index.N and hints.N (integrity.ts)
// written in borg's order (hints, index, integrity to temp names; integrity renamed first).
// Missing or damaged index/hints files are rebuilt from the segments ("replay"), with borg's
// warnings. The index is only read from disk when needed and dropped on rollback.
//
// Concurrency: one Repository belongs to one client session. Methods that may have to wait for
// a lock (open, and any operation that may need to upgrade a shared lock for a replay) are
// async; plain reads and writes are synchronous file I/O underneath.

import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, statfsSync, unlinkSync, renameSync, appendFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  AlreadyExists,
  AtticRepository,
  BurgError,
  CheckNeeded,
  DoesNotExist,
  FileIntegrityError,
  InsufficientFreeSpaceError,
  IntegrityError,
  InvalidRepository,
  InvalidRepositoryConfig,
  ConcurrentWriteConflict,
  DiskFull,
  LockBreakRefused,
  LockFailed,
  NonceRegression,
  ObjectNotFound,
  ParentPathDoesNotExist,
  PathAlreadyExists,
  StorageQuotaExceeded,
  ValueError,
} from "../errors.ts";
import { RepositoryLock } from "../lock/lock.ts";
import type { CheckOptions, CommitOptions, OpenOptions, RepositoryActivity, RepositoryHandle } from "../rpc/backend.ts";
import { fromHex, toHex, bytesEqual } from "../util/hex.ts";
import { log } from "../util/log.ts";
import { formatFileSize, parseFileSize } from "../util/size.ts";
import { isErrno, saveFileAtomic, syncDir } from "../util/fs.ts";
import { IniConfig, readConfig, readOnlyWriteTolerated, saveConfig } from "./config.ts";
import { holderLine, inspectLock, isLiveLocalHolder } from "../lock/inspect.ts";
import { hostId } from "../lock/host-id.ts";
import {
  ATTIC_MAGIC,
  DEFAULT_MAX_SEGMENT_SIZE,
  DEFAULT_SEGMENTS_PER_DIR,
  HEADER_SIZE,
  isManifestId,
  KEY_SIZE,
  MAX_OBJECT_SIZE,
  MAX_SEGMENT_SIZE_LIMIT,
  PUT_HEADER_SIZE,
  REPOSITORY_README,
  TAG_COMMIT,
  TAG_DELETE,
  TAG_PUT,
} from "./format.ts";
import { FileIndex } from "./file-index.ts";
import { NSIndex } from "./hashindex.ts";
import { type Hints, readHints, writeHintsFile, readIntegrityFile, writeIntegrityFile } from "./hints.ts";
import { latestIndexTransaction, readIndexFile, writeIndexFile, type IntegrityParts } from "./integrity.ts";
import { entryCrcOk, SegmentFull, SegmentStore, type SegmentEntry } from "./segments.ts";
import { runCheck } from "./check.ts";
import { BURG_DIR, HoldTable, HoldsFormatError, holdsFileIds, readHolds, removeOlderHolds, removeUncommittedHolds, writeHolds } from "./holds.ts";
import { repositoryKeepDeleted } from "./settings.ts";
import { ensureReserve, isNoSpace, lendFromReserve, noSpaceReason } from "./reserve.ts";

export interface RepositoryOptions {
  create?: boolean;
  exclusive?: boolean | null;
  lockWait?: number | null;
  lock?: boolean;
  appendOnly?: boolean;
  storageQuota?: number | null;
  makeParentDirs?: boolean;
  checkSegmentMagic?: boolean;
  /**
   * The time lock in seconds (`--keep-deleted`): what a transaction deletes or overwrites stays
   * in the segments, safe from compaction, that long after its commit. The repository's own
   * setting (`burg config REPO keep_deleted`) applies when it is longer.
   */
  keepDeleted?: number | null;
}

const LOGGER = "borg.repository";

export class Repository implements RepositoryHandle {
  path: string;
  id: Uint8Array = new Uint8Array(32);
  config: IniConfig = new IniConfig();
  io: SegmentStore | null = null;
  lock: RepositoryLock | null = null;
  private table: NSIndex | null = null;
  /**
   * The index of a session that has only read so far, answered from index.N on disk
   * (file-index.ts); replaced by the table as soon as anything sets `index`.
   */
  private fileIndex: FileIndex | null = null;
  /** The index as a table in memory (borg's self.index), loaded by whoever needs it whole. */
  get index(): NSIndex | null {
    return this.table;
  }
  set index(value: NSIndex | null) {
    this.fileIndex?.close();
    this.fileIndex = null;
    this.table = value;
  }
  /** Live PUT count per segment (borg's self.segments). */
  segments = new Map<number, number>();
  /** Freeable bytes per segment (borg's self.compact). */
  compact = new Map<number, number>();
  /** hex(id) -> segments holding PUTs of id hidden by a later DELETE (borg's shadow_index). */
  shadowIndex = new Map<string, number[]>();
  activeTxn = false;
  exclusive: boolean | null;
  doLock: boolean;
  /** The committed transaction the open one started from (null: an empty repository). */
  private txnBase: number | null = null;
  appendOnly: boolean;
  storageQuota: number | null;
  storageQuotaUse = 0;
  transactionDoomed: BurgError | null = null;
  /**
   * Set when a write ran out of space: the transaction was rolled back at once (its segments
   * removed, to free the space), and the client's further puts and deletes, which borg sends
   * without waiting for replies, are refused without writing until it rolls back or commits.
   */
  private outOfSpace: DiskFull | null = null;
  /** The lock was taken with space borrowed from burg/reserve. */
  private reserveLent = false;
  /** A transaction was started (only writers tend the reserve; readers change nothing). */
  private startedWriting = false;
  created = false;
  checkSegmentMagic: boolean;
  makeParentDirs: boolean;
  lockWait: number | null;
  maxSegmentSize = DEFAULT_MAX_SEGMENT_SIZE;
  segmentsPerDir = DEFAULT_SEGMENTS_PER_DIR;
  additionalFreeSpace = 0;
  /** What this handle did, for the session journal (committed totals and the open transaction). */
  private readonly counts: RepositoryActivity = emptyActivity();
  private txnCounts = emptyTxnCounts();
  /** The time lock in force for this handle, in ms (0: none; older holds are honoured anyway). */
  keepDeletedMs = 0;
  private readonly keepDeletedOption: number;
  /** Entries this transaction superseded that were committed before it: held once it commits. */
  private pendingHolds: HoldTable | null = null;
  /** The committed holds, read when a commit or compaction needs them. */
  private holds: HoldTable | null = null;
  private holdsDirty = false;
  /** Holds files written by the commit under way (the newest supersedes the rest once it is done). */
  private holdsWritten: number | null = null;
  /** Flags given to holds recorded from now on (burg undelete marks its manifest removal). */
  holdFlags = 0;
  /** Told after each segment compaction looked at: segments and bytes done of the total. */
  onCompactProgress: ((done: number, total: number, bytesDone: number, bytesTotal: number) => void) | null = null;

  constructor(path: string, opts: RepositoryOptions = {}) {
    this.path = resolve(path);
    this.exclusive = opts.exclusive === undefined ? false : opts.exclusive;
    this.doLock = opts.lock ?? true;
    this.appendOnly = opts.appendOnly ?? false;
    this.storageQuota = opts.storageQuota ?? null;
    this.checkSegmentMagic = opts.checkSegmentMagic ?? true;
    this.makeParentDirs = opts.makeParentDirs ?? false;
    this.lockWait = opts.lockWait ?? null;
    this.keepDeletedOption = Math.max(0, opts.keepDeleted ?? 0);
  }

  /** Create (when asked) and open a repository, like borg's `with Repository(...)`. */
  static async open(path: string, opts: RepositoryOptions = {}): Promise<Repository> {
    const repo = new Repository(path, opts);
    if (opts.create) {
      repo.create(repo.path);
      repo.created = true;
    }
    await repo.openPath(repo.path, Boolean(repo.exclusive), repo.lockWait, repo.doLock);
    return repo;
  }

  // ---- creating, opening, closing ---------------------------------------------------------------

  static isRepository(path: string): boolean {
    try {
      const head = readFileSync(join(path, "README")).subarray(0, 100).toString("latin1");
      return head.includes("Borg Backup repository") || head.includes("Borg repository");
    } catch {
      return false;
    }
  }

  /** Refuse to create inside an existing repository, or over a non-empty directory or a file. */
  static checkCanCreateRepository(path: string): void {
    let st;
    try {
      st = statSync(path);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
    }
    if (st) {
      if (Repository.isRepository(path)) throw new AlreadyExists(path);
      if (!st.isDirectory() || readdirSync(path).length > 0) throw new PathAlreadyExists(path);
    }
    let p = path;
    for (;;) {
      const parent = dirname(p);
      if (parent === p) break;
      p = parent;
      if (Repository.isRepository(p)) throw new AlreadyExists(p);
    }
  }

  create(path: string): void {
    Repository.checkCanCreateRepository(path);
    if (this.makeParentDirs) mkdirSync(dirname(path), { recursive: true });
    if (!existsSync(path)) {
      try {
        mkdirSync(path);
      } catch (e) {
        if (isErrno(e, "ENOENT")) throw new ParentPathDoesNotExist(path);
        throw e;
      }
    }
    saveFileAtomic(join(path, "README"), REPOSITORY_README);
    mkdirSync(join(path, "data"));
    const config = new IniConfig();
    config.set("repository", "version", "1");
    config.set("repository", "segments_per_dir", String(DEFAULT_SEGMENTS_PER_DIR));
    config.set("repository", "max_segment_size", String(DEFAULT_MAX_SEGMENT_SIZE));
    config.set("repository", "append_only", String(Number(this.appendOnly)));
    config.set("repository", "storage_quota", String(this.storageQuota ?? 0));
    config.set("repository", "additional_free_space", "0");
    config.set("repository", "id", toHex(crypto.getRandomValues(new Uint8Array(32))));
    saveConfig(path, config);
    ensureReserve(path);
  }

  async openPath(path: string, exclusive: boolean, lockWait: number | null, lock: boolean): Promise<void> {
    this.path = path;
    let st;
    try {
      st = statSync(path);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new DoesNotExist(path);
      throw e;
    }
    if (!st.isDirectory()) throw new InvalidRepository(path);
    if (lock) {
      this.lock = await this.acquireLock(path, exclusive, lockWait);
    } else {
      this.lock = null;
    }
    try {
      this.config = readConfig(path);
      if (!this.config.hasSection("repository")) {
        throw new InvalidRepositoryConfig(path, "no repository section found");
      }
      const version = parseInt(this.config.get("repository", "version") ?? "", 10);
      if (version !== 1) {
        throw new InvalidRepositoryConfig(path, `repository version ${version} is not supported by this borg version`);
      }
      this.maxSegmentSize = parseFileSize(this.config.get("repository", "max_segment_size") ?? "");
      if (this.maxSegmentSize >= MAX_SEGMENT_SIZE_LIMIT) {
        throw new InvalidRepositoryConfig(path, `max_segment_size >= ${MAX_SEGMENT_SIZE_LIMIT}`);
      }
      this.segmentsPerDir = parseInt(this.config.get("repository", "segments_per_dir") ?? "", 10);
      if (!(this.segmentsPerDir > 0)) throw new InvalidRepositoryConfig(path, "segments_per_dir must be > 0");
      this.additionalFreeSpace = parseFileSize(this.config.get("repository", "additional_free_space") ?? "0");
      this.appendOnly = this.appendOnly || parseBool(this.config.get("repository", "append_only"));
      if (this.storageQuota === null) {
        this.storageQuota = parseFileSize(this.config.get("repository", "storage_quota") ?? "0");
      }
      const idHex = (this.config.get("repository", "id") ?? "").trim();
      try {
        this.id = fromHex(idHex);
      } catch {
        throw new InvalidRepositoryConfig(path, "invalid repository id");
      }
      this.keepDeletedMs =
        Math.max(this.keepDeletedOption, repositoryKeepDeleted(path, (msg) => log.warning(msg, LOGGER))) * 1000;
      this.io = new SegmentStore(path, this.maxSegmentSize, this.segmentsPerDir);
      if (this.checkSegmentMagic) {
        const latest = this.io.latestSegment();
        if (latest !== null && bytesEqual(this.io.segmentMagic(latest), ATTIC_MAGIC)) {
          throw new AtticRepository(path);
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * Take the lock; on a file system too full to write it, borrow from the space reserve
   * (burg/reserve) and try once more, so that the session can at least roll back what a failed
   * backup left. close() gives the space back.
   */
  private async acquireLock(path: string, exclusive: boolean, lockWait: number | null): Promise<RepositoryLock> {
    try {
      return await new RepositoryLock(path, { exclusive, timeout: lockWait }).acquire();
    } catch (e) {
      if (!(e instanceof LockFailed && isNoSpace(e.cause)) || !lendFromReserve(path)) throw e;
      log.warning(`No space left on device for the lock of ${path}: using the space reserve (burg/reserve) to take it`, LOGGER);
      this.reserveLent = true;
      return await new RepositoryLock(path, { exclusive, timeout: lockWait }).acquire();
    }
  }

  close(): void {
    const opened = this.io !== null;
    this.settleCounts(null); // an open transaction is discarded
    if (this.io) {
      if (this.activeTxn) this.io.abandonSegment();
      this.io.close();
    }
    this.io = null;
    this.index = null;
    this.activeTxn = false;
    if (this.lock) {
      this.lock.release();
      this.lock = null;
      // The space reserve is made whole again for the next session (after the lock, whose
      // blocks it may have borrowed, is gone).
      if (opened && (this.reserveLent || this.startedWriting) && !this.created) ensureReserve(this.path);
    }
  }

  destroy(): void {
    if (this.appendOnly) throw new ValueError(`${this.path} is in append-only mode`);
    const lockedUntil = this.timeLockedUntil();
    if (lockedUntil !== null) {
      throw new ValueError(
        `${this.path} is under a time lock (--keep-deleted): its deleted data is kept until ${new Date(lockedUntil).toISOString()}, so it cannot be destroyed`,
      );
    }
    this.close();
    unlinkSync(join(this.path, "config"));
    rmSync(this.path, { recursive: true, force: true });
  }

  /** While a time lock is in force or holds are unexpired: until when (ms); else null. */
  private timeLockedUntil(): number | null {
    const now = Date.now();
    if (this.keepDeletedMs > 0) return now + this.keepDeletedMs;
    let holds: HoldTable;
    try {
      holds = readHolds(this.path, this.io?.segmentsTransactionId() ?? null);
    } catch (e) {
      if (e instanceof HoldsFormatError) return Infinity;
      throw e;
    }
    return holds.summary(now).until;
  }

  get idStr(): string {
    return toHex(this.id);
  }

  private get segIO(): SegmentStore {
    if (!this.io) throw new BurgError("AssertionError", "repository is not open", ["repository is not open"]);
    return this.io;
  }

  // ---- keys and nonces --------------------------------------------------------------------------

  saveKey(keydata: Uint8Array): void {
    this.config.set("repository", "key", new TextDecoder().decode(keydata));
    saveConfig(this.path, this.config, { readOnlyOk: !this.doLock });
  }

  loadKey(): Uint8Array {
    return new TextEncoder().encode((this.config.get("repository", "key") ?? "").trim());
  }

  private requireExclusive(): void {
    if (this.doLock && !this.lock?.gotExclusiveLock()) {
      throw new BurgError("AssertionError", "bug in code, exclusive lock should exist here", [
        "bug in code, exclusive lock should exist here",
      ]);
    }
  }

  getFreeNonce(): bigint | null {
    this.requireExclusive();
    try {
      const text = readFileSync(join(this.path, "nonce"), "utf8").trim();
      return BigInt("0x" + (text || "0"));
    } catch (e) {
      if (isErrno(e, "ENOENT")) return null;
      throw e;
    }
  }

  commitNonceReservation(nextUnreserved: number | bigint, startNonce: number | bigint | null): void {
    this.requireExclusive();
    const current = this.getFreeNonce();
    const start = startNonce === null ? null : BigInt(startNonce);
    if (current !== start) {
      throw new BurgError("Exception", "nonce space reservation with mismatched previous state", [
        "nonce space reservation with mismatched previous state",
      ]);
    }
    const next = BigInt(nextUnreserved);
    // Hardening beyond borg: a nonce counter that goes backwards would let the client reuse
    // AES-CTR nonces. Never lower it.
    if (current !== null && next < current) {
      throw new NonceRegression(
        `refusing to lower the repository nonce from ${current.toString(16)} to ${next.toString(16)}`,
      );
    }
    if (next < 0n || next >= 1n << 64n) throw new NonceRegression(`nonce ${next} out of range`);
    const noncePath = join(this.path, "nonce");
    try {
      saveFileAtomic(noncePath, next.toString(16).padStart(16, "0"));
    } catch (e) {
      if (!readOnlyWriteTolerated(e, noncePath, !this.doLock)) throw e;
    }
  }

  /**
   * borg's break_lock, made safe: never the lock of a live process on this host (a writer in
   * the middle of its transaction, or another session of this burg socket); with `onlyDead`
   * (restricted clients) nothing but locks whose every holder is known to be dead. Refusals
   * throw LockBreakRefused naming the holders, as `burg break-lock` shows them.
   */
  breakLock(opts: { onlyDead?: boolean } = {}): void {
    const report = inspectLock(this.path);
    const ourHost = hostId();
    const live = report.holders.filter((h) => isLiveLocalHolder(h, ourHost));
    if (live.length > 0) {
      throw new LockBreakRefused(
        report.lockPath,
        "a live process on this host holds it (let it finish; `burg break-lock --force` on the server breaks it anyway)",
        live.map((h) => holderLine(h, ourHost)),
      );
    }
    const unproven = opts.onlyDead ? report.holders.filter((h) => h.state !== "dead") : [];
    if (unproven.length > 0) {
      throw new LockBreakRefused(
        report.lockPath,
        "this client may only break locks of holders that are known to be dead",
        unproven.map((h) => holderLine(h, ourHost)),
      );
    }
    new RepositoryLock(this.path, { exclusive: true, timeout: 0 }).breakLock();
  }

  // ---- transaction ids --------------------------------------------------------------------------

  getIndexTransactionId(): number | null {
    return latestIndexTransaction(this.path);
  }

  async checkTransaction(): Promise<void> {
    const indexTid = this.getIndexTransactionId();
    const segmentsTid = this.segIO.segmentsTransactionId();
    if (indexTid !== null && segmentsTid === null) {
      // An index but no committed segment at all: many segment files were lost.
      throw new CheckNeeded(`${this.path}" - although likely this is "beyond repair`);
    }
    if (indexTid !== segmentsTid) {
      const replayFrom = indexTid !== null && indexTid > segmentsTid! ? null : indexTid;
      await this.replaySegments(replayFrom, segmentsTid!);
    }
  }

  async getTransactionId(): Promise<number | null> {
    // a closed (or destroyed) repository: "repository is not open", not ENOENT from its files
    if (!this.io) throw new BurgError("AssertionError", "repository is not open", ["repository is not open"]);
    await this.checkTransaction();
    return this.getIndexTransactionId();
  }

  // ---- index and hints --------------------------------------------------------------------------

  private integrityFor(transactionId: number, key: "index" | "hints"): IntegrityParts | null {
    return readIntegrityFile(this.path, transactionId, key);
  }

  async openIndex(transactionId: number | null, autoRecover = true): Promise<NSIndex> {
    return this.loadIndex(transactionId, autoRecover, readIndexFile);
  }

  /**
   * openIndex with a given reader of index.N: a damaged or missing file is reported and
   * recovered from (by replaying the segments, as borg does) whichever reads it.
   */
  private async loadIndex<T extends NSIndex | FileIndex>(
    transactionId: number | null,
    autoRecover: boolean,
    read: (path: string, integrity: IntegrityParts | null) => T,
  ): Promise<T | NSIndex> {
    if (transactionId === null) return NSIndex.create();
    const indexPath = join(this.path, `index.${transactionId}`);
    try {
      return read(indexPath, this.integrityFor(transactionId, "index"));
    } catch (e) {
      if (!isIndexReadError(e)) throw e;
      log.warning(`Repository index missing or corrupted, trying to recover from: ${describe(e)}`, LOGGER);
      try {
        unlinkSync(indexPath);
      } catch (u) {
        if (!isErrno(u, "ENOENT")) throw u;
      }
      if (!autoRecover) throw e;
      await this.prepareTxn(await this.getTransactionId());
      await this.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
      return this.openIndex(await this.getTransactionId());
    }
  }

  /**
   * Start a transaction from `transactionId`. A failure leaves no transaction open (borg leaves
   * _active_txn set, and the client's next put then meets a transaction without an index).
   */
  async prepareTxn(transactionId: number | null, doCleanup = true): Promise<void> {
    try {
      await this.prepareTxnInner(transactionId, doCleanup);
    } catch (e) {
      this.activeTxn = false;
      throw e;
    }
  }

  private async prepareTxnInner(transactionId: number | null, doCleanup: boolean): Promise<void> {
    this.activeTxn = true;
    this.startedWriting = true;
    this.txnBase = transactionId;
    if (this.doLock && !this.lock!.gotExclusiveLock()) {
      if (this.exclusive !== null) {
        // a client that opened with exclusive=False and then writes (borg's message)
        throw new BurgError("AssertionError", "bug in code, exclusive lock should exist here", [
          "bug in code, exclusive lock should exist here",
        ]);
      }
      // an old client (exclusive=None) or a replay: upgrade the shared lock.
      await this.lock!.upgrade();
    }
    // what a reading session has seen of index.N (lookups move entries, as in borg's table)
    if (!this.index && this.fileIndex && this.fileIndex.transactionId === transactionId) {
      this.index = this.fileIndex.toTable();
      log.debug(`Loaded the index table (${this.index.numBuckets} buckets) to write`, LOGGER);
    }
    if (!this.index || transactionId === null) {
      try {
        this.index = await this.openIndex(transactionId, false);
      } catch (e) {
        if (!isIndexReadError(e)) throw e;
        log.warning(`Checking repository transaction due to previous error: ${describe(e)}`, LOGGER);
        await this.checkTransaction();
        this.index = await this.openIndex(transactionId, false);
      }
    }
    this.counts.objectsAtOpen ??= this.index.size;
    if (transactionId === null) {
      this.segments = new Map();
      this.compact = new Map();
      this.storageQuotaUse = 0;
      this.shadowIndex.clear();
      // (check rebuilds from an empty index: holds of the committed segments stay valid)
      if (doCleanup) removeUncommittedHolds(this.path, this.segIO.segmentsTransactionId());
      return;
    }
    if (doCleanup) {
      this.segIO.cleanup(transactionId);
      removeUncommittedHolds(this.path, this.segIO.segmentsTransactionId());
    }
    const hintsPath = join(this.path, `hints.${transactionId}`);
    const indexPath = join(this.path, `index.${transactionId}`);
    let hints: Hints;
    try {
      hints = readHints(hintsPath, this.integrityFor(transactionId, "hints"));
    } catch (e) {
      if (!isHintsReadError(e)) throw e;
      log.warning(`Repository hints file missing or corrupted, trying to recover: ${describe(e)}`, LOGGER);
      if (!isErrno(e, "ENOENT")) {
        try {
          unlinkSync(hintsPath);
        } catch {}
      }
      try {
        unlinkSync(indexPath);
      } catch {}
      await this.checkTransaction();
      await this.prepareTxnInner(transactionId, true);
      return;
    }
    if (hints.version === 1) {
      log.debug(`Upgrading from v1 hints.${transactionId}`, LOGGER);
      this.segments = hints.segments;
      this.compact = new Map();
      this.storageQuotaUse = 0;
      this.shadowIndex = new Map();
      for (const segment of [...hints.compact.keys()].sort((a, b) => a - b)) {
        log.debug(`Rebuilding sparse info for segment ${segment}`, LOGGER);
        this.rebuildSparse(segment);
      }
      log.debug("Upgrade to v2 hints complete", LOGGER);
    } else {
      this.segments = hints.segments;
      this.compact = hints.compact;
      this.storageQuotaUse = hints.storageQuotaUse;
      this.shadowIndex = hints.shadowIndex;
    }
    this.logStorageQuota();
    // Drop uncommitted segments from the shadow index.
    for (const shadowed of this.shadowIndex.values()) {
      for (let i = shadowed.length - 1; i >= 0; i--) if (shadowed[i]! > transactionId) shadowed.splice(i, 1);
    }
  }

  writeIndex(): void {
    const io = this.segIO;
    const transactionId = io.segmentsTransactionId();
    if (transactionId === null) throw new BurgError("AssertionError", "no committed segment", ["no committed segment"]);
    if (this.appendOnly) {
      const ts = new Date().toISOString().replace("Z", "").padEnd(26, "0");
      appendFileSync(join(this.path, "transactions"), `transaction ${transactionId}, UTC time ${ts}\n`);
    }
    const hintsName = `hints.${transactionId}`;
    const indexName = `index.${transactionId}`;
    const integrityName = `integrity.${transactionId}`;
    try {
      const hintsIntegrity = writeHintsFile(join(this.path, hintsName + ".tmp"), hintsName, {
        version: 2,
        segments: this.segments,
        compact: this.compact,
        storageQuotaUse: this.storageQuotaUse,
        shadowIndex: this.shadowIndex,
      });
      const indexIntegrity = writeIndexFile(join(this.path, indexName + ".tmp"), indexName, this.index!);
      writeIntegrityFile(join(this.path, integrityName + ".tmp"), { hints: hintsIntegrity, index: indexIntegrity });
    } catch (e) {
      // Half-written temporary files would only take space; the files of the last commit stay.
      for (const name of [hintsName, indexName, integrityName]) {
        try {
          unlinkSync(join(this.path, name + ".tmp"));
        } catch {}
      }
      throw e;
    }
    renameSync(join(this.path, integrityName + ".tmp"), join(this.path, integrityName));
    syncDir(this.path);
    renameSync(join(this.path, hintsName + ".tmp"), join(this.path, hintsName));
    renameSync(join(this.path, indexName + ".tmp"), join(this.path, indexName));
    syncDir(this.path);
    const current = `.${transactionId}`;
    for (const name of readdirSync(this.path)) {
      if (!(name.startsWith("index.") || name.startsWith("hints.") || name.startsWith("integrity."))) continue;
      if (name.endsWith(current)) continue;
      unlinkSync(join(this.path, name));
    }
    this.index = null;
  }

  checkFreeSpace(): void {
    let required = this.index!.byteSize() * 4;
    required += this.segments.size * 10 + this.compact.size * 10 + 4096;
    required += this.additionalFreeSpace;
    if (!this.appendOnly) {
      const fullSegmentSize = this.maxSegmentSize + MAX_OBJECT_SIZE;
      if (this.compact.size < 10) {
        // Compaction copies held entries (the time lock) as it copies live ones, so what it
        // writes is the live and the held bytes of the segments it rewrites.
        const held = this.heldBytesBySegment();
        let working = 0;
        for (const [segment, free] of this.compact) {
          try {
            working += this.segIO.segmentSize(segment) - free + (held.get(segment) ?? 0);
          } catch (e) {
            if (!isErrno(e, "ENOENT")) throw e;
          }
        }
        required += Math.min(working, fullSegmentSize);
      } else {
        required += fullSegmentSize;
      }
    }
    let free: number;
    try {
      const st = statfsSync(this.path);
      free = Number(st.bavail) * Number(st.bsize);
    } catch (e) {
      log.warning(`Failed to check free space before committing: ${describe(e)}`, LOGGER);
      return;
    }
    log.debug(`check_free_space: required bytes ${required}, free bytes ${free}`, LOGGER);
    if (free < required) {
      if (this.created) {
        log.error("Not enough free space to initialize repository at this location.", LOGGER);
        this.destroy();
      } else {
        this.rollbackInternal(true);
      }
      throw new InsufficientFreeSpaceError(formatFileSize(required), formatFileSize(free));
    }
  }

  logStorageQuota(): void {
    if (this.storageQuota) {
      log.info(
        `Storage quota: ${formatFileSize(this.storageQuotaUse)} out of ${formatFileSize(this.storageQuota)} used.`,
        LOGGER,
      );
    }
  }

  // ---- commit, rollback -------------------------------------------------------------------------

  async commit(opts: Partial<CommitOptions> = {}): Promise<void> {
    const compact = opts.compact ?? true;
    const threshold = opts.threshold ?? 0.1;
    if (this.outOfSpace) {
      const e = this.outOfSpace;
      this.rollback();
      throw e;
    }
    if (this.transactionDoomed) {
      const e = this.transactionDoomed;
      this.rollback();
      throw e;
    }
    if (!this.activeTxn) {
      // borg's commit assumes prepare_txn ran (a put or delete did it); a bare commit still
      // writes a commit entry and new index/hints, so load the transaction state first.
      await this.prepareTxn(await this.getTransactionId());
    }
    this.checkFreeSpace();
    this.logStorageQuota();
    this.checkSoleWriter();
    try {
      await this.commitChecked(compact, threshold, opts.cleanupCommits ?? false);
    } catch (e) {
      if (!isNoSpace(e)) throw e;
      // Whether the COMMIT became durable decides: before it, nothing of this transaction stands.
      if (this.segIO.segmentsTransactionId() === this.txnBase) throw this.ranOutOfSpace(e, "commit");
      this.committedOutOfSpace(e);
      return;
    }
    ensureReserve(this.path);
  }

  /** commit() after its checks: the COMMIT, compaction, the index. */
  private async commitChecked(compact: boolean, threshold: number, cleanupCommits: boolean): Promise<void> {
    const io = this.segIO;
    const now = Date.now();
    const pending = this.pendingHolds;
    const compacting = compact && !this.appendOnly;
    if ((pending && pending.count > 0) || compacting) this.loadHolds();
    if (pending && pending.count > 0) {
      // The holds go to disk before the COMMIT: a committed delete is never without its hold.
      const holds = this.holds!;
      for (let i = 0; i < pending.count; i++) {
        holds.add(pending.id(i), pending.segment[i]!, pending.offset[i]!, pending.size[i]!, now, now + this.keepDeletedMs, pending.flags[i]!);
      }
      this.pendingHolds = null;
      this.holdsDirty = true;
    }
    if (this.holdsDirty) this.saveHolds(io.commitSegment());
    const segment = io.writeCommit();
    if (!this.segments.has(segment)) this.segments.set(segment, 0);
    this.compact.set(segment, (this.compact.get(segment) ?? 0) + HEADER_SIZE);
    if (compact && !this.appendOnly) {
      if (cleanupCommits) {
        for (const s of io.listSegments()) {
          if (io.segmentSize(s) === 17) {
            this.segments.set(s, 0);
            this.compact.set(s, HEADER_SIZE);
          }
        }
      }
      await this.compactSegments(threshold, now);
    }
    this.writeIndex();
    if (this.holdsWritten !== null) removeOlderHolds(this.path, this.holdsWritten);
    this.settleCounts(this.getIndexTransactionId());
    this.rollback();
  }

  /**
   * A write of the open transaction ran out of space (borg does the same cleanup when its local
   * repository meets ENOSPC): roll back, removing the uncommitted segments to give the space
   * back, refuse the client's further writes until it rolls back, and return the error to send.
   */
  private ranOutOfSpace(e: unknown, during: string): DiskFull {
    const reason = noSpaceReason(e);
    log.warning(`${reason}, cleaning up partial transaction to free space.`, LOGGER);
    const err = new DiskFull(this.path, during, reason, { cause: e });
    try {
      this.rollbackInternal(true);
    } catch (cleanupError) {
      log.error(`rolling back after running out of space failed: ${describe(cleanupError)}`, LOGGER);
    }
    this.outOfSpace = err;
    return err;
  }

  /**
   * Out of space after the COMMIT was durable: in compaction or while writing the index. The
   * transaction stands, so the client is told it succeeded. What compaction wrote after its last
   * COMMIT is removed; the index files of the last commit stay, and the next open rebuilds the
   * index from the segments (which needs the space for it, or fails at that commit's free-space
   * check with borg's InsufficientFreeSpaceError).
   */
  private committedOutOfSpace(e: unknown): void {
    const tid = this.segIO.segmentsTransactionId();
    log.warning(
      `No space left on device after transaction ${tid} was committed (${describe(e)}): compaction or the index was left unfinished; the index will be rebuilt from the segments at the next open.`,
      LOGGER,
    );
    this.settleCounts(tid);
    try {
      this.rollbackInternal(true);
    } catch (cleanupError) {
      log.error(`cleaning up after running out of space failed: ${describe(cleanupError)}`, LOGGER);
    }
  }

  /**
   * The committed holds (read once per transaction). A damaged holds file cannot say what is
   * held: it is renamed to holds.N.damaged, the sessions go on with a fresh table (so backups and
   * new time-locked deletes keep working), and compaction stops while a damaged file is there,
   * so that nothing it may have held is dropped (see compactionBlockedBy).
   */
  loadHolds(): HoldTable {
    if (this.holds) return this.holds;
    const committed = this.segIO.segmentsTransactionId();
    try {
      this.holds = readHolds(this.path, committed);
    } catch (e) {
      if (!(e instanceof HoldsFormatError)) throw e;
      const n = holdsFileIds(this.path).filter((i) => committed !== null && i <= committed).at(-1)!;
      const file = join(this.path, BURG_DIR, `holds.${n}`);
      renameSync(file, `${file}.damaged`);
      log.error(
        `${file} is damaged (${e.message}); renamed to holds.${n}.damaged. Compaction is stopped until it is removed (removing it gives up what it held); new deletes are held as before.`,
        LOGGER,
      );
      this.holds = new HoldTable(null);
      this.holdsDirty = true;
    }
    return this.holds;
  }

  /** A damaged holds file that stops compaction, or null. */
  private compactionBlockedBy(): string | null {
    try {
      const name = readdirSync(join(this.path, BURG_DIR)).find((n) => /^holds\.\d+\.damaged$/.test(n));
      return name ? join(this.path, BURG_DIR, name) : null;
    } catch (e) {
      if (isErrno(e, "ENOENT")) return null;
      throw e;
    }
  }

  /** Give up the holds for which `release(i)` is true (at the next commit; burg undelete after restoring them). */
  releaseHolds(release: (i: number) => boolean): number {
    const holds = this.loadHolds();
    const n = holds.filter((i) => !release(i));
    if (n > 0) this.holdsDirty = true;
    return n;
  }

  /** Write the holds for the commit about to go into segment `txid`. */
  private saveHolds(txid: number): void {
    writeHolds(this.path, txid, this.holds!);
    this.holdsWritten = txid;
    this.holdsDirty = false;
  }

  /** Entry bytes held now per segment (committed holds and this transaction's). */
  private heldBytesBySegment(): Map<number, number> {
    let out = new Map<number, number>();
    if (this.keepDeletedMs > 0 || holdsFileIds(this.path).length > 0) {
      try {
        out = this.loadHolds().heldBytesBySegment(Date.now(), this.keepDeletedMs);
      } catch {
        // a damaged holds file stops compaction altogether (compactionBlockedBy)
      }
    }
    const p = this.pendingHolds;
    if (p) for (let i = 0; i < p.count; i++) out.set(p.segment[i]!, (out.get(p.segment[i]!) ?? 0) + p.size[i]!);
    return out;
  }

  /** Entry bytes held now (committed holds and this transaction's), for the quota message. */
  private heldBytes(): { bytes: number; until: number | null } {
    let bytes = 0;
    let until: number | null = null;
    try {
      const s = this.loadHolds().summary(Date.now(), this.keepDeletedMs);
      bytes = s.bytes;
      until = s.until;
    } catch {
      // a damaged holds file: the quota message goes without the detail
    }
    const p = this.pendingHolds;
    if (p) {
      for (let i = 0; i < p.count; i++) bytes += p.size[i]!;
      if (p.count > 0) until = Math.max(until ?? 0, Date.now() + this.keepDeletedMs);
    }
    return { bytes, until };
  }

  /**
   * Before a commit: no other writer committed since this transaction began, and none removed
   * a segment it wrote (both happen only when the lock was broken from outside). Otherwise the
   * transaction is rolled back (without cleanup: the other writer may still be at work) and
   * ConcurrentWriteConflict thrown; the other writer's commits stay as they are.
   */
  private checkSoleWriter(): void {
    const newer: number[] = [];
    for (const name of readdirSync(this.path)) {
      const m = /^(?:index|hints)\.(\d+)$/.exec(name);
      if (m && (this.txnBase === null || Number(m[1]) > this.txnBase)) newer.push(Number(m[1]));
    }
    const lost = this.segIO.lostSegment();
    if (newer.length === 0 && lost === null) return;
    const detail =
      newer.length > 0
        ? `transaction ${Math.max(...newer)} was committed after ${this.txnBase ?? "none"}, which this one started from`
        : `segment ${lost}, written by this session, was removed`;
    const e = new ConcurrentWriteConflict(this.path, detail);
    log.error(e.message, LOGGER);
    this.rollback();
    throw e;
  }

  rollbackInternal(cleanup: boolean): void {
    this.settleCounts(null);
    this.pendingHolds = null;
    this.holds = null;
    this.holdsDirty = false;
    this.holdsWritten = null;
    this.io?.forgetCreated();
    if (this.io && this.activeTxn) this.io.abandonSegment();
    if (cleanup && this.io) {
      const tid = this.io.segmentsTransactionId();
      if (tid !== null) this.io.cleanup(tid);
    }
    this.index = null;
    this.activeTxn = false;
    this.transactionDoomed = null;
  }

  rollback(): void {
    this.outOfSpace = null;
    this.rollbackInternal(false);
  }

  // ---- compaction -------------------------------------------------------------------------------

  async compactSegments(threshold: number, now = Date.now()): Promise<void> {
    if (this.compact.size === 0) {
      log.debug("nothing to do: compact empty", LOGGER);
      return;
    }
    const io = this.segIO;
    const index = this.index!;
    // The time lock: held entries are copied forward like live ones, and are not freeable.
    const holds = this.loadHolds();
    const blocked = this.compactionBlockedBy();
    if (blocked !== null) {
      log.warning(`compaction skipped: ${blocked} may hold deleted data that must not be dropped (remove it to allow compaction)`, LOGGER);
      return;
    }
    const keepMs = this.keepDeletedMs;
    if (holds.filter((i) => io.segmentExists(holds.segment[i]!)) > 0) this.holdsDirty = true;
    const heldBytes = holds.heldBytesBySegment(now, keepMs);
    const heldAt = holds.bySegment();
    const expired = new Set<number>();
    const quotaUseBefore = this.storageQuotaUse;
    const indexTransactionId = this.getIndexTransactionId();
    const segments = this.segments;
    let unused: number[] = [];

    const completeXfer = (intermediate = true) => {
      if (!intermediate && expired.size > 0) {
        holds.filter((i) => !expired.has(i));
        this.holdsDirty = true;
      }
      if (this.holdsDirty) this.saveHolds(io.commitSegment(intermediate));
      const segment = io.writeCommit(intermediate);
      if (!segments.has(segment)) segments.set(segment, 0);
      this.compact.set(segment, (this.compact.get(segment) ?? 0) + HEADER_SIZE);
      log.debugTopic("repository.compaction", `complete_xfer: wrote ${intermediate ? "intermediate " : ""}commit at segment ${segment}`, LOGGER);
      for (const s of unused) {
        log.debugTopic("repository.compaction", `complete_xfer: deleting unused segment ${s}`, LOGGER);
        const count = segments.get(s);
        segments.delete(s);
        if (count !== 0) {
          throw new CheckNeeded(`${this.path}" - Corrupted segment reference count - corrupted index or hints`);
        }
        io.deleteSegment(s);
        this.compact.delete(s);
        this.txnCounts.compactedSegments++;
      }
      unused = [];
    };

    log.debug(`Compaction started (threshold is ${Math.trunc(threshold * 100)}%).`, LOGGER);
    const work = [...this.compact.entries()].sort((a, b) => a[0] - b[0]);
    const keyScratch = new Uint8Array(KEY_SIZE);
    let done = 0;
    const tell = this.onCompactProgress;
    let bytesTotal = 0;
    let bytesDone = 0;
    if (tell) for (const [s] of work) if (io.segmentExists(s)) bytesTotal += io.segmentSize(s);
    for (const [segment, freeable] of work) {
      if (tell) {
        tell(done, work.length, bytesDone, bytesTotal);
        if (io.segmentExists(segment)) bytesDone += io.segmentSize(segment);
      }
      done++;
      if (log.progressEnabled) {
        log.progress("repository.compact_segments", `Compacting segments ${Math.round(((done - 1) * 100) / work.length)}%`, done, work.length);
      }
      if (!io.segmentExists(segment)) {
        log.warning(`segment ${segment} not found, but listed in compaction data`, LOGGER);
        this.compact.delete(segment);
        continue;
      }
      const segmentSize = io.segmentSize(segment);
      const ratio = (freeable - (heldBytes.get(segment) ?? 0)) / segmentSize;
      if (!(ratio > threshold)) {
        log.debugTopic("repository.compaction", 
          `not compacting segment ${segment} (maybe freeable: ${(ratio * 100).toFixed(2)}% [${freeable} bytes])`,
          LOGGER,
        );
        continue;
      }
      if (!segments.has(segment)) segments.set(segment, 0);
      log.debugTopic("repository.compaction", 
        `compacting segment ${segment} with usage count ${segments.get(segment)} (maybe freeable: ${(ratio * 100).toFixed(2)}% [${freeable} bytes])`,
        LOGGER,
      );
      const here = heldAt.has(segment) ? this.matchHolds(holds, heldAt.get(segment)!, segment) : null;
      // Entries are read only when they are copied (or are DELETEs): what is dropped is never
      // read. The key is copied out: reading an entry moves the iteration's window.
      for (const e of io.iterObjects(segment, { copying: true })) {
        if (e.tag === TAG_COMMIT) continue;
        const key = keyScratch;
        key.set(e.key!);
        const bucket = index.lookup(key);
        const inIndex = bucket >= 0;
        const isIndexObject = inIndex && index.segmentAt(bucket) === segment && index.offsetAt(bucket) === e.offset;
        if (e.tag === TAG_PUT && isIndexObject) {
          let newSegment: number, newOffset: number;
          try {
            [newSegment, newOffset] = io.copyPut(e, segment, true);
          } catch (err) {
            if (!(err instanceof SegmentFull)) throw err;
            completeXfer();
            [newSegment, newOffset] = io.copyPut(e, segment);
          }
          index.set(key, newSegment, newOffset);
          segments.set(newSegment, (segments.get(newSegment) ?? 0) + 1);
          segments.set(segment, segments.get(segment)! - 1);
        } else if (e.tag === TAG_PUT && !isIndexObject) {
          const h = here?.get(e.offset);
          if (h !== undefined) {
            if (holds.isHeld(h, now, keepMs)) this.copyHeld(holds, h, key, e, segment, completeXfer);
            else expired.add(h);
          }
          // A superseded PUT: gone once this segment is deleted, so drop it from the shadow index
          // (keeping an empty list, which the DELETE branch below still needs).
          const shadowed = this.shadowIndex.get(toHex(key));
          if (shadowed) {
            const i = shadowed.indexOf(segment);
            if (i >= 0) shadowed.splice(i, 1);
          }
          this.storageQuotaUse -= e.size;
        } else if (e.tag === TAG_DELETE && !inIndex) {
          if (!entryCrcOk(io.entryView(e, segment))) {
            throw new IntegrityError(`Segment entry checksum mismatch [segment ${segment}, offset ${e.offset}]`);
          }
          const hex = toHex(key);
          const shadowed = this.shadowIndex.get(hex);
          const keyNotInShadowIndex = shadowed === undefined;
          const shadowedPutExists = keyNotInShadowIndex || shadowed.some((s) => s < segment);
          const deleteIsNotStable = indexTransactionId === null || segment > indexTransactionId;
          if (shadowedPutExists || deleteIsNotStable) {
            // Keep the DELETE (write it into a current segment): an older PUT may still exist, or
            // a crash between commit and segment deletion could otherwise resurrect the object.
            let newSegment: number, size: number;
            try {
              [newSegment, size] = io.writeDelete(key, true);
            } catch (err) {
              if (!(err instanceof SegmentFull)) throw err;
              completeXfer();
              [newSegment, size] = io.writeDelete(key);
            }
            this.compact.set(newSegment, (this.compact.get(newSegment) ?? 0) + size);
            if (!segments.has(newSegment)) segments.set(newSegment, 0);
          } else {
            log.debugTopic("repository.compaction", `dropping DEL for id ${hex} - seg ${segment}, iti ${indexTransactionId}`, LOGGER);
            if (shadowed && shadowed.length === 0) this.shadowIndex.delete(hex);
          }
        }
      }
      if (segments.get(segment) !== 0) {
        throw new CheckNeeded(`${this.path}" - Corrupted segment reference count - corrupted index or hints`);
      }
      unused.push(segment);
    }
    log.progress("repository.compact_segments", null, work.length, work.length, true);
    tell?.(work.length, work.length, bytesTotal, bytesTotal);
    completeXfer(false);
    this.txnCounts.compactionFreedBytes += quotaUseBefore - this.storageQuotaUse;
    log.info(
      `compaction freed about ${formatFileSize(quotaUseBefore - this.storageQuotaUse)} repository space.`,
      LOGGER,
    );
    log.debug("compaction completed.", LOGGER);
  }

  /**
   * Which superseded PUT of `segment` each of its holds (`recorded`: offset -> hold) is: the
   * entry at the recorded offset when it is a PUT of that id; else (a repair rewrote the
   * segment, keeping its valid entries in order at new offsets) the next superseded PUT of that
   * id not taken by another hold, in order. Returns offset -> hold.
   */
  private matchHolds(holds: HoldTable, recorded: Map<number, number>, segment: number): Map<number, number> {
    const index = this.index!;
    const out = new Map<number, number>();
    const matched = new Set<number>();
    const free: Array<{ offset: number; hex: string }> = [];
    for (const e of this.segIO.iterObjects(segment, { readData: false })) {
      if (e.tag !== TAG_PUT) continue;
      const b = index.lookup(e.key!);
      if (b >= 0 && index.segmentAt(b) === segment && index.offsetAt(b) === e.offset) continue;
      const h = recorded.get(e.offset);
      if (h !== undefined && bytesEqual(holds.id(h), e.key!)) {
        out.set(e.offset, h);
        matched.add(h);
      } else {
        free.push({ offset: e.offset, hex: toHex(e.key!) });
      }
    }
    if (matched.size === recorded.size) return out;
    const lost = new Map<string, number[]>();
    for (const h of [...recorded.values()].filter((h) => !matched.has(h)).sort((a, b) => holds.offset[a]! - holds.offset[b]!)) {
      const hex = toHex(holds.id(h));
      const l = lost.get(hex);
      if (l) l.push(h);
      else lost.set(hex, [h]);
    }
    for (const f of free) {
      const l = lost.get(f.hex);
      if (!l || l.length === 0) continue;
      const h = l.shift()!;
      out.set(f.offset, h);
      holds.offset[h] = f.offset;
      this.holdsDirty = true;
    }
    return out;
  }

  /**
   * Copy held entry `h` (id `key`, entry `e` of segment `from`) into the current compaction segment so that it
   * survives its old segment. Replay must still end where it ends now, so the copy is followed
   * in the same segment (no commit between them) by a DELETE, or, when the id is live, by a copy
   * of the live entry; plain borg sees superseded entries there, which its compaction drops.
   */
  private copyHeld(holds: HoldTable, h: number, key: Uint8Array, e: SegmentEntry, from: number, completeXfer: () => void): void {
    const io = this.segIO;
    const index = this.index!;
    const segments = this.segments;
    const size = e.size;
    let seg: number, off: number;
    try {
      [seg, off] = io.copyPut(e, from, true, { plain: true });
    } catch (err) {
      if (!(err instanceof SegmentFull)) throw err;
      completeXfer();
      [seg, off] = io.copyPut(e, from, false, { plain: true });
    }
    this.storageQuotaUse += size;
    this.compact.set(seg, (this.compact.get(seg) ?? 0) + size);
    if (!segments.has(seg)) segments.set(seg, 0);
    const b = index.lookup(key);
    if (b >= 0) {
      const liveSegment = index.segmentAt(b);
      io.flushWrites(); // the live entry may be in the segment being written
      const live = io.read(liveSegment, index.offsetAt(b), key) as Uint8Array;
      const [s2, o2] = io.writePut(key, live, false, { sameSegment: true });
      const liveSize = live.length + PUT_HEADER_SIZE;
      index.set(key, s2, o2);
      segments.set(s2, (segments.get(s2) ?? 0) + 1);
      segments.set(liveSegment, (segments.get(liveSegment) ?? 0) - 1);
      this.compact.set(liveSegment, (this.compact.get(liveSegment) ?? 0) + liveSize);
      this.storageQuotaUse += liveSize;
    } else {
      const [s2, delSize] = io.writeDelete(key, false, { sameSegment: true });
      this.compact.set(s2, (this.compact.get(s2) ?? 0) + delSize);
      const hex = toHex(key);
      const list = this.shadowIndex.get(hex);
      if (list) list.push(seg);
      else this.shadowIndex.set(hex, [seg]);
    }
    holds.segment[h] = seg;
    holds.offset[h] = off;
    this.holdsDirty = true;
  }

  // ---- replay and index rebuilding -------------------------------------------------------------

  async replaySegments(indexTransactionId: number | null, segmentsTransactionId: number): Promise<void> {
    const rememberExclusive = this.exclusive;
    this.exclusive = null;
    try {
      await this.prepareTxn(indexTransactionId, false);
      const io = this.segIO;
      const all = io.listSegments();
      let i = 0;
      for (const segment of all) {
        i++;
        if (log.progressEnabled) {
          log.progress("repository.replay_segments", `Replaying segments ${Math.round(((i - 1) * 100) / all.length)}%`, i, all.length);
        }
        if (indexTransactionId !== null && segment <= indexTransactionId) continue;
        if (segment > segmentsTransactionId) break;
        this.updateIndex(segment, io.iterObjects(segment));
      }
      log.progress("repository.replay_segments", null, all.length, all.length, true);
      this.writeIndex();
    } finally {
      this.exclusive = rememberExclusive;
      this.rollback();
    }
  }

  /** Apply one segment's entries to index/segments/compact (shared by replay and check). */
  updateIndex(segment: number, objects: Iterable<SegmentEntry>, report?: (msg: string) => void): void {
    const io = this.segIO;
    const index = this.index!;
    this.segments.set(segment, 0);
    for (const e of objects) {
      if (e.tag === TAG_PUT) {
        const key = e.key!;
        const b = index.lookup(key);
        if (b >= 0) {
          const s = index.segmentAt(b);
          this.compact.set(s, (this.compact.get(s) ?? 0) + e.size);
          this.segments.set(s, (this.segments.get(s) ?? 0) - 1);
        }
        index.set(key, segment, e.offset);
        this.segments.set(segment, this.segments.get(segment)! + 1);
        this.storageQuotaUse += e.size;
      } else if (e.tag === TAG_DELETE) {
        const key = e.key!;
        const b = index.lookup(key);
        if (b >= 0) {
          const s = index.segmentAt(b);
          const off = index.offsetAt(b);
          index.delete(key);
          if (io.segmentExists(s)) {
            this.segments.set(s, (this.segments.get(s) ?? 0) - 1);
            const size = io.read(s, off, key, false);
            this.compact.set(s, (this.compact.get(s) ?? 0) + size);
          }
        }
      } else if (e.tag === TAG_COMMIT) {
        continue;
      } else {
        const msg = `Unexpected tag ${e.tag} in segment ${segment}`;
        if (report) report(msg);
        else throw new CheckNeeded(msg);
      }
    }
    if (this.segments.get(segment) === 0) this.compact.set(segment, io.segmentSize(segment));
  }

  rebuildSparse(segment: number): void {
    const io = this.segIO;
    let size: number;
    try {
      size = io.segmentSize(segment);
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
      this.segments.delete(segment);
      return;
    }
    if (this.segments.get(segment) === 0) {
      this.compact.set(segment, size);
      return;
    }
    let freeable = 0;
    for (const e of io.iterObjects(segment, { readData: false })) {
      if (e.tag === TAG_PUT) {
        const b = this.index!.lookup(e.key!);
        if (b < 0 || this.index!.segmentAt(b) !== segment || this.index!.offsetAt(b) !== e.offset) freeable += e.size;
      } else if (e.tag === TAG_DELETE) {
        freeable += e.size;
      }
    }
    this.compact.set(segment, freeable);
  }

  // ---- check ------------------------------------------------------------------------------------

  async check(opts: Partial<CheckOptions> = {}): Promise<boolean> {
    return runCheck(this, { repair: opts.repair ?? false, maxDuration: opts.maxDuration ?? 0 });
  }

  // ---- reading ----------------------------------------------------------------------------------

  /**
   * The index for reading: the table when one is loaded, else index.N on disk (FileIndex), else
   * the table (an empty repository, or a table borg rebuilds on loading). A damaged or missing
   * file is reported and recovered from as openIndex does. Once lookups have moved many entries
   * of the FileIndex, the table takes over.
   */
  private async readableIndex(): Promise<NSIndex | FileIndex> {
    if (this.index) return this.index;
    if (this.fileIndex) {
      if (!this.fileIndex.outgrown) return this.fileIndex;
      const changed = this.fileIndex.overlayBuckets;
      this.index = this.fileIndex.toTable();
      log.debug(`Loaded the index table (${this.index.numBuckets} buckets): lookups had changed ${changed} of its buckets`, LOGGER);
      return this.index;
    }
    const tid = await this.getTransactionId();
    const index = await this.loadIndex(tid, true, (path, integrity) => FileIndex.open(path, integrity, tid!) ?? readIndexFile(path, integrity));
    if (index instanceof FileIndex) this.fileIndex = index;
    else this.index = index;
    return index;
  }

  async len(): Promise<number> {
    return (await this.readableIndex()).size;
  }

  async contains(id: Uint8Array): Promise<boolean> {
    return (await this.readableIndex()).has(id);
  }

  /** Up to `limit` ids after `marker`, in index (pseudo-random) order. */
  async list(limit: number | null, marker: Uint8Array | null): Promise<Uint8Array[]> {
    const index = await this.readableIndex();
    const out: Uint8Array[] = [];
    if (limit !== null && limit <= 0) return out;
    for (const [key] of index.entries(marker)) {
      out.push(key);
      if (limit !== null && out.length >= limit) break;
    }
    return out;
  }

  /** Up to `limit` ids of current objects after `marker`, in on-disk order. */
  async scan(limit: number | null, marker: Uint8Array | null): Promise<Uint8Array[]> {
    if (limit !== null && limit < 1) throw new ValueError("please use limit > 0 or limit = None");
    const index = await this.readableIndex();
    const io = this.segIO;
    let startSegment = 0;
    let startOffset = 0;
    if (marker !== null) {
      const b = index.lookup(marker);
      if (b < 0) throw new BurgError("KeyError", toHex(marker), [toHex(marker)]);
      startSegment = index.segmentAt(b);
      startOffset = index.offsetAt(b);
    }
    const result: Uint8Array[] = [];
    for (const segment of io.listSegments({ start: startSegment })) {
      try {
        for (const e of io.iterObjects(segment, { offset: startOffset, readData: false })) {
          if (startOffset > 0) {
            // the marker's own entry was returned by the previous call
            startOffset = 0;
            continue;
          }
          if (e.tag !== TAG_PUT) continue;
          const b = index.lookup(e.key!);
          if (b >= 0 && index.segmentAt(b) === segment && index.offsetAt(b) === e.offset) {
            result.push(e.key!.slice());
            if (limit !== null && result.length === limit) return result;
          }
        }
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        // cannot seek past a damaged header: go on with the next segment
      }
      startOffset = 0;
    }
    return result;
  }

  async get(id: Uint8Array): Promise<Uint8Array> {
    const index = await this.readableIndex();
    const b = index.lookup(id);
    if (b < 0) throw new ObjectNotFound(toHex(id), this.path);
    return this.segIO.read(index.segmentAt(b), index.offsetAt(b), id);
  }

  // ---- writing ----------------------------------------------------------------------------------

  async put(id: Uint8Array, data: Uint8Array): Promise<void> {
    await this.inWriteTransaction("put", () => this.putInternal(id, data));
  }

  /**
   * A put or delete: in the open transaction (started when there is none, which may replay the
   * log and write an index), refused after the transaction ran out of space, and DiskFull when
   * this one does.
   */
  private async inWriteTransaction(during: string, op: () => void): Promise<void> {
    if (this.outOfSpace) throw this.outOfSpace;
    try {
      if (!this.activeTxn) await this.prepareTxn(await this.getTransactionId());
      op();
    } catch (e) {
      if (isNoSpace(e)) throw this.ranOutOfSpace(e, during);
      throw e;
    }
  }

  private putInternal(id: Uint8Array, data: Uint8Array): void {
    const index = this.index!;
    const io = this.segIO;
    const b = index.lookup(id);
    const t = this.txnCounts;
    if (b >= 0) {
      const oldSegment = index.segmentAt(b);
      const oldOffset = index.offsetAt(b);
      const oldEntrySize = this.deleteInternal(id, oldSegment, oldOffset, false);
      this.recordHold(id, oldSegment, oldOffset, oldEntrySize);
      const oldSize = oldEntrySize - PUT_HEADER_SIZE;
      t.overwrittenObjects++;
      t.overwrittenBytes += oldSize;
      if (isManifestId(id) && t.manifestOldSize === null) t.manifestOldSize = oldSize;
    }
    const [segment, offset] = io.writePut(id, data);
    t.writtenObjects++;
    t.writtenBytes += data.length;
    if (isManifestId(id)) {
      t.manifestNewSize = data.length;
      t.manifestOldSize ??= -1;
    }
    this.storageQuotaUse += data.length + PUT_HEADER_SIZE;
    this.segments.set(segment, (this.segments.get(segment) ?? 0) + 1);
    index.set(id, segment, offset);
    if (this.storageQuota && this.storageQuotaUse > this.storageQuota) {
      const held = this.heldBytes();
      const usage =
        held.bytes > 0
          ? `${formatFileSize(this.storageQuotaUse)}, of which ${formatFileSize(held.bytes)} is deleted data the server keeps until ${new Date(held.until!).toISOString().replace(/\.\d+Z$/, "Z")} (time lock, --keep-deleted)`
          : formatFileSize(this.storageQuotaUse);
      this.transactionDoomed = new StorageQuotaExceeded(formatFileSize(this.storageQuota), usage);
      throw this.transactionDoomed;
    }
  }

  async delete(id: Uint8Array): Promise<void> {
    await this.inWriteTransaction("delete", () => this.deleteObject(id));
  }

  private deleteObject(id: Uint8Array): void {
    const index = this.index!;
    const b = index.lookup(id);
    if (b < 0) throw new ObjectNotFound(toHex(id), this.path);
    const segment = index.segmentAt(b);
    const offset = index.offsetAt(b);
    index.delete(id);
    const size = this.deleteInternal(id, segment, offset, true);
    this.recordHold(id, segment, offset, size);
    this.txnCounts.deletedObjects++;
    this.txnCounts.deletedBytes += size - PUT_HEADER_SIZE;
  }

  /** Returns the size of the entry deleted (header included). */
  private deleteInternal(id: Uint8Array, segment: number, offset: number, updateShadowIndex: boolean): number {
    const io = this.segIO;
    if (updateShadowIndex) {
      const hex = toHex(id);
      const list = this.shadowIndex.get(hex);
      if (list) list.push(segment);
      else this.shadowIndex.set(hex, [segment]);
    }
    this.segments.set(segment, (this.segments.get(segment) ?? 0) - 1);
    const size = io.read(segment, offset, id, false);
    this.compact.set(segment, (this.compact.get(segment) ?? 0) + size);
    const [newSegment, delSize] = io.writeDelete(id);
    this.compact.set(newSegment, (this.compact.get(newSegment) ?? 0) + delSize);
    if (!this.segments.has(newSegment)) this.segments.set(newSegment, 0);
    return size;
  }

  /** Under a time lock, an entry committed before this transaction that it supersedes is held. */
  private recordHold(id: Uint8Array, segment: number, offset: number, entrySize: number): void {
    if (this.keepDeletedMs <= 0 || this.txnBase === null || segment > this.txnBase) return;
    (this.pendingHolds ??= new HoldTable()).add(id, segment, offset, entrySize, 0, 0, this.holdFlags);
  }

  /** What this handle has done so far (a copy). */
  activity(): RepositoryActivity {
    const c = this.counts;
    return { ...c, commits: [...c.commits], discarded: { ...c.discarded }, manifest: c.manifest && { ...c.manifest } };
  }

  /** A transaction ended: its counts go to the committed totals (txid given) or are discarded. */
  private settleCounts(committedTxid: number | null): void {
    const t = this.txnCounts;
    this.txnCounts = emptyTxnCounts();
    const c = this.counts;
    if (committedTxid === null) {
      c.discarded.writtenObjects += t.writtenObjects;
      c.discarded.writtenBytes += t.writtenBytes;
      c.discarded.deletedObjects += t.deletedObjects;
      c.discarded.overwrittenObjects += t.overwrittenObjects;
      return;
    }
    c.commits.push(committedTxid);
    c.writtenObjects += t.writtenObjects;
    c.writtenBytes += t.writtenBytes;
    c.deletedObjects += t.deletedObjects;
    c.deletedBytes += t.deletedBytes;
    c.overwrittenObjects += t.overwrittenObjects;
    c.overwrittenBytes += t.overwrittenBytes;
    c.compactionFreedBytes += t.compactionFreedBytes;
    c.compactedSegments += t.compactedSegments;
    if (t.manifestNewSize !== null) {
      const old = t.manifestOldSize === null || t.manifestOldSize < 0 ? null : t.manifestOldSize;
      c.manifest = { oldSize: c.manifest ? c.manifest.oldSize : old, newSize: t.manifestNewSize, rewrites: (c.manifest?.rewrites ?? 0) + 1 };
    }
  }
}

interface TxnCounts {
  writtenObjects: number;
  writtenBytes: number;
  deletedObjects: number;
  deletedBytes: number;
  overwrittenObjects: number;
  overwrittenBytes: number;
  /** Data size of the manifest this transaction replaced; -1 when there was none. */
  manifestOldSize: number | null;
  manifestNewSize: number | null;
  compactionFreedBytes: number;
  compactedSegments: number;
}

function emptyTxnCounts(): TxnCounts {
  return {
    writtenObjects: 0,
    writtenBytes: 0,
    deletedObjects: 0,
    deletedBytes: 0,
    overwrittenObjects: 0,
    overwrittenBytes: 0,
    manifestOldSize: null,
    manifestNewSize: null,
    compactionFreedBytes: 0,
    compactedSegments: 0,
  };
}

function emptyActivity(): RepositoryActivity {
  return {
    objectsAtOpen: null,
    commits: [],
    writtenObjects: 0,
    writtenBytes: 0,
    deletedObjects: 0,
    deletedBytes: 0,
    overwrittenObjects: 0,
    overwrittenBytes: 0,
    manifest: null,
    compactionFreedBytes: 0,
    compactedSegments: 0,
    discarded: { writtenObjects: 0, writtenBytes: 0, deletedObjects: 0, overwrittenObjects: 0 },
  };
}

function parseBool(v: string | undefined): boolean {
  if (v === undefined) return false;
  const t = v.trim().toLowerCase();
  if (["1", "yes", "true", "on"].includes(t)) return true;
  if (["0", "no", "false", "off", ""].includes(t)) return false;
  throw new InvalidRepositoryConfig("config", `not a boolean: ${v}`);
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The errors borg's open_index treats as "index missing or corrupted" (ValueError, OSError, FileIntegrityError). */
function isIndexReadError(e: unknown): boolean {
  if (e instanceof FileIntegrityError) return true;
  if (e instanceof BurgError) return e.borgName === "HashIndexFormatError" || e.borgName === "ValueError";
  return typeof (e as NodeJS.ErrnoException)?.code === "string";
}

/** The errors borg's prepare_txn treats as "hints missing or corrupted". */
function isHintsReadError(e: unknown): boolean {
  if (e instanceof FileIntegrityError) return true;
  if (e instanceof BurgError) return e.borgName === "HintsFormatError";
  return isErrno(e, "ENOENT");
}

/** The RepositoryHandle factory `burg serve` uses. */
export async function openRepository(path: string, opts: OpenOptions): Promise<Repository> {
  return Repository.open(path, {
    create: opts.create,
    exclusive: opts.exclusive,
    lockWait: opts.lockWait,
    lock: opts.lock,
    appendOnly: opts.appendOnly,
    storageQuota: opts.storageQuota,
    makeParentDirs: opts.makeParentDirs,
    keepDeleted: opts.keepDeleted,
  });
}
