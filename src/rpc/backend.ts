// The interface through which the RPC layer sees a repository. `rpc/` never imports the
// engine's internals; `commands/serve.ts` passes an `openRepository` implementation in.
//
// Method names and argument meanings mirror borg 1.2's Repository (repository.py); every
// method may be synchronous or return a Promise. Errors are BurgError subclasses carrying
// borg's exception class names (errors.ts), so they can be sent to the client unchanged.

export interface OpenOptions {
  create: boolean;
  /** borg: exclusive=None means "old client, upgrade the lock when writing". */
  exclusive: boolean | null;
  /** Seconds to wait for the lock; null waits forever (borg's lock_wait=None). */
  lockWait: number | null;
  lock: boolean;
  appendOnly: boolean;
  /** Bytes; null means "use the repository config's value". */
  storageQuota: number | null;
  makeParentDirs: boolean;
  /** The time lock in seconds (`--keep-deleted`), null for none (the repository's own setting still applies). */
  keepDeleted?: number | null;
}

export interface CheckOptions {
  repair: boolean;
  maxDuration: number;
}

export interface CommitOptions {
  compact: boolean;
  threshold: number;
  cleanupCommits: boolean;
}

/**
 * What one handle did, for the session journal: totals of its committed transactions (puts,
 * deletes, overwrites by data size, the manifest's data size before and after, what compaction
 * freed) and what its rolled-back transactions would have done.
 */
export interface RepositoryActivity {
  /** Objects in the repository when this handle first started a transaction. */
  objectsAtOpen: number | null;
  /** Transaction ids committed, in order. */
  commits: number[];
  writtenObjects: number;
  writtenBytes: number;
  deletedObjects: number;
  deletedBytes: number;
  overwrittenObjects: number;
  overwrittenBytes: number;
  /** The manifest, when a committed transaction rewrote it (oldSize null: there was none). */
  manifest: { oldSize: number | null; newSize: number; rewrites: number } | null;
  compactionFreedBytes: number;
  compactedSegments: number;
  discarded: { writtenObjects: number; writtenBytes: number; deletedObjects: number; overwrittenObjects: number };
}

export interface RepositoryHandle {
  /** The repository id (32 bytes), as returned by borg's open(). */
  readonly id: Uint8Array;
  /** Absolute path of the repository. */
  readonly path: string;
  len(): number | Promise<number>;
  check(opts: CheckOptions): boolean | Promise<boolean>;
  commit(opts: CommitOptions): void | Promise<void>;
  rollback(): void | Promise<void>;
  destroy(): void | Promise<void>;
  get(id: Uint8Array): Uint8Array | Promise<Uint8Array>;
  /** Object ids in index order after `marker` (borg's list()). */
  list(limit: number | null, marker: Uint8Array | null): Uint8Array[] | Promise<Uint8Array[]>;
  /** Object ids in on-disk order after `marker` (borg's scan()). */
  scan(limit: number | null, marker: Uint8Array | null): Uint8Array[] | Promise<Uint8Array[]>;
  put(id: Uint8Array, data: Uint8Array): void | Promise<void>;
  delete(id: Uint8Array): void | Promise<void>;
  /** Does an object with this id exist in the current (committed or in-transaction) state? */
  contains(id: Uint8Array): boolean | Promise<boolean>;
  saveKey(keydata: Uint8Array): void | Promise<void>;
  loadKey(): Uint8Array | Promise<Uint8Array>;
  getFreeNonce(): number | bigint | null | Promise<number | bigint | null>;
  commitNonceReservation(nextUnreserved: number | bigint, startNonce: number | bigint | null): void | Promise<void>;
  /**
   * borg's break_lock. Never breaks a lock held by a live process of this host; with
   * `onlyDead`, only locks whose holders are all known to be dead (LockBreakRefused otherwise).
   */
  breakLock(opts?: { onlyDead?: boolean }): void | Promise<void>;
  /** What this handle has done so far, where the implementation keeps count. */
  activity?(): RepositoryActivity | undefined;
  /** Release the lock and files. Must be idempotent; an open transaction is rolled back. */
  close(): void | Promise<void>;
}

export type OpenRepository = (path: string, opts: OpenOptions) => Promise<RepositoryHandle>;
