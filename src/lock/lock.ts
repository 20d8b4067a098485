// RepositoryLock: borg's shared/exclusive repository lock (locking.py Lock) on `<repo>/lock.*`,
// so that borg processes and burg exclude each other on one repository.
//
// On disk a lock belongs to a process id (host, pid, thread); borg runs one process per
// repository session and never needs more. burg serves many sessions from one process, and two
// of them must not both believe they hold the lock because their holder names are equal. So the
// lock is two-level: per (repository, process id) one Slot owns the on-disk state (none, shared
// or exclusive, as one borg process would hold it), and arbitrates between the RepositoryLock
// objects of this process: any number of shared holders, or one exclusive holder. Disk
// transitions of a slot are serialised (`busy`); the on-disk critical sections (holding
// lock.exclusive while reading and writing the roster) are synchronous, so no other session of
// this process can interleave with one.
//
// Waiting follows borg: lock.exclusive is polled with TimeoutTimer(timeout) (a tenth of the
// timeout, at most 60 s, or 1 s when waiting forever), waiting for readers to leave with 0.2 s
// sleeps. Waiting for another session of this process needs no polling; it is woken directly.
//
// Worker threads (`burg socket`): the slots of a process must be one set, but every thread has
// its own copy of this module. So a thread that is not the main thread holds its locks through
// the main thread's slots (remote holders, at the end of this file): acquire and upgrade are
// requests answered by the main thread, downgrade and release are messages that need no
// answer (their order is kept), and gotExclusiveLock reads the lock files itself.
//
// Release is synchronous and never throws, so exit paths and signal handlers can call it (and
// releaseAllLocks()). Releasing a shared lock needs lock.exclusive for a moment; that wait is
// bounded (RELEASE_WAIT_*) and, when it fails, retried in the background: the leftover roster
// entry names a live process, so nobody else would remove it.

import { realpathSync } from "node:fs";
import { isMainThread } from "node:worker_threads";
import { resolve } from "node:path";
import { LockError, LockErrorT, LockFailed, LockTimeout } from "../errors.ts";
import { log } from "../util/log.ts";
import { EXCLUSIVE, EXCLUSIVE_SUFFIX, ROSTER_SUFFIX, SHARED, lockBasePath, uniqueName } from "./format.ts";
import type { LockRecord, ProcessId, RosterKey } from "./format.ts";
import { ExclusiveLockDir, Reporter } from "./exclusive-lock.ts";
import { hostId, processId } from "./host-id.ts";
import { recordForSelf } from "./liveness.ts";
import { Roster } from "./roster.ts";
import { TimeoutTimer } from "./timer.ts";

export interface LockOptions {
  exclusive: boolean;
  /** Seconds to wait for the lock; null waits forever (borg's lock_wait=None). */
  timeout: number | null;
  /** Seconds between checks while waiting for shared holders to leave (borg's default 0.2). */
  sleep?: number | null;
  /** The holder's (host, pid, thread); this process by default. Other ids are for tools and tests. */
  id?: ProcessId;
}

/** Shortest and longest wait for lock.exclusive when releasing a shared lock (seconds). */
export const RELEASE_WAIT_MIN = 1;
export const RELEASE_WAIT_MAX = 10;
const RELEASE_RETRY_MS = 1000;
const READERS_SLEEP = 0.2;

function releaseWait(timeout: number | null): number {
  return Math.max(RELEASE_WAIT_MIN, Math.min(timeout ?? RELEASE_WAIT_MAX, RELEASE_WAIT_MAX));
}

type DiskState = "none" | "shared" | "exclusive";

/** The record burg writes for a holder: only for this very process (it cannot vouch for others). */
function recordFor(id: ProcessId): LockRecord | null {
  return id[1] === process.pid && id[2] === 0 && id[0] === hostId() ? recordForSelf(id) : null;
}

/** Real path of `<repo>/lock`, so two spellings of one repository share a slot. */
function canonicalBase(base: string): string {
  const cut = base.lastIndexOf("/");
  try {
    return realpathSync(base.slice(0, cut) || "/") + base.slice(cut);
  } catch {
    return base;
  }
}

const slots = new Map<string, Slot>();

/** One (repository lock, process id) of this process: the on-disk lock as one borg process holds it. */
class Slot {
  readonly key: string;
  readonly base: string;
  readonly id: ProcessId;
  readonly reporter = new Reporter();
  readonly excl: ExclusiveLockDir;
  readonly roster: Roster;
  disk: DiskState = "none";
  readonly shared = new Set<RepositoryLock>();
  exclusive: RepositoryLock | null = null;
  /** A disk transition is in progress (it awaits); everyone else waits for it. */
  busy = false;
  /** Bumped when this process drops the slot's locks wholesale; waiting enters then give up. */
  private generation = 0;
  /** Calls currently inside enterShared/enterExclusive, which keep the slot alive. */
  private users = 0;
  private waiters: Array<() => void> = [];
  private retry: ReturnType<typeof setInterval> | null = null;

  constructor(key: string, base: string, id: ProcessId) {
    this.key = key;
    this.base = base;
    this.id = id;
    const record = recordFor(id);
    this.excl = new ExclusiveLockDir(base + EXCLUSIVE_SUFFIX, id, record, this.reporter);
    this.roster = new Roster(base + ROSTER_SUFFIX, id, record, this.reporter);
  }

  notify(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Sleep until the slot changes or the timer runs out; LockTimeout once it has run out. */
  private waitForChange(timer: TimeoutTimer): Promise<void> {
    if (timer.timedOut()) return Promise.reject(new LockTimeout(this.base));
    return new Promise((resolvePromise) => {
      let deadline: ReturnType<typeof setTimeout> | null = null;
      const wake = () => {
        if (deadline !== null) clearTimeout(deadline);
        resolvePromise();
      };
      this.waiters.push(wake);
      const ms = timer.remainingMs();
      if (ms !== Infinity) {
        deadline = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== wake);
          resolvePromise();
        }, ms + 1);
      }
    });
  }

  async enterShared(lock: RepositoryLock, timer: TimeoutTimer, lockCancelled: () => boolean): Promise<boolean> {
    const generation = this.generation;
    const cancelled = () => lockCancelled() || this.generation !== generation;
    this.users++;
    try {
      for (;;) {
        if (cancelled()) return false;
        if (!this.busy && this.exclusive === null) {
          if (this.disk === "shared") {
            this.shared.add(lock);
            return true;
          }
          this.busy = true;
          try {
            await this.diskAcquireShared(lock.timeout);
            this.disk = "shared";
          } finally {
            this.busy = false;
          }
          if (cancelled()) return false;
          this.shared.add(lock);
          return true;
        }
        await this.waitForChange(timer);
      }
    } finally {
      this.users--;
      this.settle(lock.timeout);
      this.notify();
    }
  }

  async enterExclusive(lock: RepositoryLock, timer: TimeoutTimer, lockCancelled: () => boolean): Promise<boolean> {
    const generation = this.generation;
    const cancelled = () => lockCancelled() || this.generation !== generation;
    this.users++;
    try {
      for (;;) {
        if (cancelled()) return false;
        const otherReaders = [...this.shared].some((l) => l !== lock);
        if (!this.busy && this.exclusive === null && !otherReaders) {
          this.busy = true;
          try {
            // From "shared" either we are upgrading or a failed release left our entry behind.
            await this.diskAcquireExclusive(lock.timeout, lock.sleep, this.disk === "shared" ? SHARED : null);
            this.disk = "exclusive";
          } finally {
            this.busy = false;
          }
          this.shared.delete(lock);
          if (cancelled()) return false;
          this.exclusive = lock;
          return true;
        }
        await this.waitForChange(timer);
      }
    } finally {
      this.users--;
      this.settle(lock.timeout);
      this.notify();
    }
  }

  /** Exclusive holder -> shared holder, synchronously (borg's Lock.downgrade). */
  downgrade(lock: RepositoryLock): void {
    if (this.exclusive !== lock) return;
    this.excl.acquireSync(new TimeoutTimer(releaseWait(lock.timeout)).start());
    try {
      if (!this.roster.modify(EXCLUSIVE, "remove")) this.warnBroken("exclusive roster entry");
      this.roster.modify(SHARED, "add");
    } finally {
      this.excl.release();
    }
    this.disk = "shared";
    this.exclusive = null;
    this.shared.add(lock);
    this.notify();
  }

  /** Drop a holder (no disk access unless it was the last one). */
  leave(lock: RepositoryLock, timeout: number | null): void {
    if (this.exclusive === lock) this.exclusive = null;
    this.shared.delete(lock);
    this.settle(timeout);
    this.notify();
  }

  /** Bring the disk in line with the holders: release what nobody of this process holds any more. */
  settle(timeout: number | null): void {
    if (this.busy || this.exclusive !== null || this.shared.size > 0) return;
    if (this.disk === "exclusive") {
      this.diskReleaseExclusive();
      this.disk = "none";
    } else if (this.disk === "shared") {
      if (this.diskReleaseShared(releaseWait(timeout))) this.disk = "none";
      else this.scheduleRetry();
    }
    if (this.disk === "none") {
      this.stopRetry();
      if (this.users === 0 && slots.get(this.key) === this) slots.delete(this.key);
    }
  }

  private scheduleRetry(): void {
    if (this.retry !== null) return;
    this.retry = setInterval(() => {
      if (this.busy || this.exclusive !== null || this.shared.size > 0 || this.disk !== "shared") {
        if (this.disk !== "shared" || this.shared.size > 0) this.stopRetry();
        return;
      }
      if (this.diskReleaseShared(0, true)) {
        this.disk = "none";
        this.settle(0);
      }
    }, RELEASE_RETRY_MS);
    this.retry.unref?.();
  }

  private stopRetry(): void {
    if (this.retry !== null) clearInterval(this.retry);
    this.retry = null;
  }

  private warnBroken(what: string): void {
    log.warning(
      `Lock ${this.base} (${what} of ${uniqueName(this.id)}) was broken while this process held it; ` +
        "leaving the lock files to whoever holds them now.",
    );
  }

  // --- on-disk transitions, mirroring borg's Lock.acquire / _wait_for_readers_finishing / release

  private async diskAcquireShared(timeout: number | null): Promise<void> {
    await this.excl.acquire(new TimeoutTimer(timeout).start());
    try {
      this.roster.modify(SHARED, "add");
    } finally {
      this.excl.release();
    }
  }

  private async diskAcquireExclusive(timeout: number | null, sleep: number | null, remove: RosterKey | null): Promise<void> {
    const timer = new TimeoutTimer(timeout, sleep || READERS_SLEEP).start();
    for (;;) {
      await this.excl.acquire(new TimeoutTimer(timeout).start());
      let keep = false;
      try {
        if (remove !== null) this.roster.modify(remove, "remove");
        if (this.roster.get(SHARED, true).length === 0) {
          this.roster.modify(EXCLUSIVE, "add");
          keep = true; // we are the only one, and we keep lock.exclusive
          return;
        }
        if (remove !== null) this.roster.modify(remove, "add");
      } finally {
        if (!keep) this.excl.release();
      }
      if (await timer.timedOutOrSleep()) throw new LockTimeout(this.base);
    }
  }

  /** Release the exclusive lock; logs instead of throwing. */
  diskReleaseExclusive(): void {
    try {
      if (!this.excl.byMe()) {
        // Broken (borg break-lock) and maybe taken by someone else: the roster is theirs now.
        this.warnBroken("lock.exclusive");
        return;
      }
      try {
        if (!this.roster.modify(EXCLUSIVE, "remove")) this.warnBroken("exclusive roster entry");
        if (this.roster.empty(EXCLUSIVE, SHARED)) this.roster.remove();
      } finally {
        this.excl.release();
      }
    } catch (e) {
      log.error(`Failed to release the lock ${this.base}: ${(e as Error).message}`);
    }
  }

  /**
   * Remove our shared roster entry, waiting at most `waitSeconds` for lock.exclusive; false when
   * that wait ran out (the entry is still there). Logs instead of throwing.
   */
  diskReleaseShared(waitSeconds: number, quiet = false): boolean {
    try {
      this.excl.acquireSync(new TimeoutTimer(waitSeconds).start());
    } catch (e) {
      if (e instanceof LockTimeout) {
        if (!quiet) {
          log.warning(
            `Could not release the shared lock ${this.base} within ${waitSeconds} s (lock.exclusive is taken); ` +
              "retrying in the background.",
          );
        }
        return false;
      }
      log.error(`Failed to release the lock ${this.base}: ${(e as Error).message}`);
      return true;
    }
    try {
      if (!this.roster.modify(SHARED, "remove")) this.warnBroken("shared roster entry");
      if (this.roster.empty(EXCLUSIVE, SHARED)) this.roster.remove();
    } catch (e) {
      log.error(`Failed to release the lock ${this.base}: ${(e as Error).message}`);
    } finally {
      this.excl.release();
    }
    return true;
  }

  /** Forget everything of this process without touching the disk (the lock was broken). */
  forgetHolders(): void {
    this.generation++;
    for (const l of this.shared) l.forget();
    this.exclusive?.forget();
    this.shared.clear();
    this.exclusive = null;
    this.disk = "none";
    this.stopRetry();
    this.notify();
  }

  /** Release whatever is held on disk, now (exit paths). */
  releaseNow(): void {
    this.generation++;
    for (const l of this.shared) l.forget();
    this.exclusive?.forget();
    this.shared.clear();
    this.exclusive = null;
    if (this.disk === "exclusive") this.diskReleaseExclusive();
    else if (this.disk === "shared") this.diskReleaseShared(releaseWait(null));
    this.disk = "none";
    this.stopRetry();
    this.excl.abandonStaging();
    this.notify();
  }
}

function slotFor(base: string, id: ProcessId): Slot {
  const key = canonicalBase(base) + "\0" + uniqueName(id);
  let slot = slots.get(key);
  if (slot === undefined) {
    slot = new Slot(key, base, id);
    slots.set(key, slot);
  }
  return slot;
}

let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // process.exit() and a drained event loop both end here; signals are the serve code's business.
  process.on("exit", releaseAllLocks);
}

/** A repository lock at `<repoPath>/lock.*`, as borg's Lock(…, exclusive, timeout=lock_wait). */
export class RepositoryLock {
  /** `<repo>/lock`, absolute: the prefix of lock.exclusive and lock.roster. */
  readonly path: string;
  /** The repository, absolute. */
  readonly repository: string;
  readonly id: ProcessId;
  readonly timeout: number | null;
  readonly sleep: number | null;
  private exclusiveMode: boolean;
  private held: "none" | "shared" | "exclusive" = "none";
  /** Bumped by release(): an acquire or upgrade still waiting sees it and gives up. */
  private epoch = 0;

  constructor(repoPath: string, opts: LockOptions) {
    if (opts.timeout !== null && !(opts.timeout >= 0)) throw new RangeError("timeout must be >= 0");
    this.repository = resolve(repoPath);
    this.path = lockBasePath(this.repository);
    this.id = opts.id ?? processId();
    this.timeout = opts.timeout;
    this.sleep = opts.sleep ?? null;
    this.exclusiveMode = opts.exclusive;
  }

  private slot(): Slot {
    return slotFor(this.path, this.id);
  }

  /** Take the lock in the mode given to the constructor; LockTimeout when the wait runs out. */
  async acquire(): Promise<this> {
    if (this.held !== "none") return this;
    if (remote !== null) {
      const epoch = this.epoch;
      await remote.request(this, this.exclusiveMode ? "exclusive" : "shared");
      if (this.epoch !== epoch) throw new LockError(this.path);
      this.held = this.exclusiveMode ? "exclusive" : "shared";
      return this;
    }
    installExitHook();
    const slot = this.slot();
    slot.reporter.reset();
    const epoch = this.epoch;
    const cancelled = () => this.epoch !== epoch;
    const timer = new TimeoutTimer(this.timeout).start();
    const ok = this.exclusiveMode
      ? await slot.enterExclusive(this, timer, cancelled)
      : await slot.enterShared(this, timer, cancelled);
    if (!ok) throw new LockError(this.path);
    this.held = this.exclusiveMode ? "exclusive" : "shared";
    return this;
  }

  /** Shared -> exclusive. Like borg, two shared holders upgrading at once wait for each other until timeout. */
  async upgrade(): Promise<void> {
    if (this.held === "exclusive") return;
    if (this.held === "none") {
      // borg's upgrade() of a lock not held takes it exclusively.
      this.exclusiveMode = true;
      await this.acquire();
      return;
    }
    if (remote !== null) {
      const epoch = this.epoch;
      await remote.request(this, "upgrade");
      if (this.epoch !== epoch) throw new LockError(this.path);
      this.held = "exclusive";
      this.exclusiveMode = true;
      return;
    }
    const slot = this.slot();
    slot.reporter.reset();
    const epoch = this.epoch;
    const ok = await slot.enterExclusive(this, new TimeoutTimer(this.timeout).start(), () => this.epoch !== epoch);
    if (!ok) throw new LockError(this.path);
    this.held = "exclusive";
    this.exclusiveMode = true;
  }

  /** Exclusive -> shared. */
  downgrade(): void {
    if (this.held !== "exclusive") {
      if (this.held === "none") this.exclusiveMode = false;
      return;
    }
    if (remote !== null) remote.send(this, "downgrade");
    else this.slot().downgrade(this);
    this.held = "shared";
    this.exclusiveMode = false;
  }

  /** borg's got_exclusive_lock(): exclusive, and lock.exclusive really holds our name. */
  gotExclusiveLock(): boolean {
    if (this.held !== "exclusive") return false;
    if (remote !== null) {
      const excl = new ExclusiveLockDir(this.path + EXCLUSIVE_SUFFIX, this.id, null, new Reporter());
      return excl.isLocked() && excl.byMe();
    }
    const slot = slots.get(canonicalBase(this.path) + "\0" + uniqueName(this.id));
    return slot !== undefined && slot.excl.isLocked() && slot.excl.byMe();
  }

  /** The mode: exclusive once acquired or upgraded exclusively (borg's is_exclusive). */
  isExclusive(): boolean {
    return this.exclusiveMode;
  }

  /** Whether this object currently holds the lock (shared or exclusive). */
  isHeld(): boolean {
    return this.held !== "none";
  }

  /** Release; synchronous, idempotent, never throws. Also cancels an acquire still waiting. */
  release(): void {
    this.epoch++;
    const wasHeld = this.held !== "none";
    this.held = "none";
    if (remote !== null) {
      remote.send(this, "release");
      return;
    }
    const slot = slots.get(canonicalBase(this.path) + "\0" + uniqueName(this.id));
    if (slot === undefined) return;
    if (wasHeld || slot.shared.has(this) || slot.exclusive === this) slot.leave(this, this.timeout);
    else slot.notify();
  }

  /** Remove all lock files of this repository, whoever holds them (borg's Lock.break_lock). */
  breakLock(): void {
    const reporter = new Reporter();
    new Roster(this.path + ROSTER_SUFFIX, this.id, null, reporter).remove();
    new ExclusiveLockDir(this.path + EXCLUSIVE_SUFFIX, this.id, null, reporter).breakLock();
    if (remote !== null) {
      remote.send(this, "forget");
      return;
    }
    const prefix = canonicalBase(this.path) + "\0";
    for (const slot of [...slots.values()]) {
      if (!slot.key.startsWith(prefix)) continue;
      slot.forgetHolders();
      if (!slot.busy) slots.delete(slot.key);
    }
  }

  /** Internal: the slot dropped this holder without a release (break or releaseAllLocks). */
  forget(): void {
    this.epoch++;
    this.held = "none";
  }
}

/**
 * Resolves once every release this thread made has taken effect on disk: at once on the main
 * thread; in a worker, once the main thread has handled the releases sent before.
 */
export function locksSettled(): Promise<void> {
  return remote === null ? Promise.resolve() : remote.sync();
}

/**
 * Release every lock this process holds, synchronously; for exit paths and signal handlers.
 * Acquires still waiting are cancelled.
 */
export function releaseAllLocks(): void {
  if (remote !== null) remote.releaseAll();
  for (const slot of [...slots.values()]) {
    try {
      slot.releaseNow();
    } catch (e) {
      log.error(`Failed to release the lock ${slot.base}: ${(e as Error).message}`);
    }
    slots.delete(slot.key);
  }
}

/** How many locks this process holds on disk (for tests and diagnostics). */
export function heldLockCount(): number {
  let n = 0;
  for (const slot of slots.values()) if (slot.disk !== "none") n++;
  return n;
}

// --- remote holders: the locks of worker threads, held by the main thread's slots

/** What a worker asks of the main thread. */
export type LockRequest =
  | { kind: "lock"; op: "shared" | "exclusive" | "upgrade"; holder: number; req: number; repository: string; timeout: number | null; sleep: number | null }
  | { kind: "lock"; op: "downgrade" | "release" | "forget"; holder: number; repository: string }
  | { kind: "lock"; op: "release-all" }
  | { kind: "lock"; op: "sync"; req: number };

/** The main thread's answer to an acquire or upgrade. */
export type LockReply = { kind: "lock-reply"; req: number; error: null | { name: string; args: string[] } };

interface RemoteLocks {
  request(lock: RepositoryLock, op: "shared" | "exclusive" | "upgrade"): Promise<void>;
  sync(): Promise<void>;
  send(lock: RepositoryLock, op: "downgrade" | "release" | "forget"): void;
  releaseAll(): void;
}

let remote: RemoteLocks | null = null;

function lockErrorFrom(e: { name: string; args: string[] }): Error {
  const [path = "", reason = ""] = e.args;
  switch (e.name) {
    case "LockTimeout":
      return new LockTimeout(path);
    case "LockFailed":
      return new LockFailed(path, reason);
    case "LockErrorT":
      return new LockErrorT(path);
    default:
      return new LockError(path);
  }
}

/**
 * In a worker thread: hold every lock through the main thread. `post` sends a message to it;
 * the returned function takes its LockReply messages.
 */
export function useMainThreadLocks(post: (m: LockRequest) => void): (reply: LockReply) => void {
  if (isMainThread) throw new Error("the main thread holds its locks itself");
  const holders = new WeakMap<RepositoryLock, number>();
  let nextHolder = 1;
  let nextReq = 1;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const holderOf = (lock: RepositoryLock) => {
    let h = holders.get(lock);
    if (h === undefined) holders.set(lock, (h = nextHolder++));
    return h;
  };
  remote = {
    request(lock, op) {
      const req = nextReq++;
      return new Promise<void>((resolve, reject) => {
        pending.set(req, { resolve, reject });
        post({ kind: "lock", op, holder: holderOf(lock), req, repository: lock.repository, timeout: lock.timeout, sleep: lock.sleep });
      });
    },
    send(lock, op) {
      post({ kind: "lock", op, holder: holderOf(lock), repository: lock.repository });
    },
    releaseAll() {
      post({ kind: "lock", op: "release-all" });
    },
    sync() {
      const req = nextReq++;
      return new Promise<void>((resolve, reject) => {
        pending.set(req, { resolve, reject });
        post({ kind: "lock", op: "sync", req });
      });
    },
  };
  return (reply) => {
    const p = pending.get(reply.req);
    if (p === undefined) return;
    pending.delete(reply.req);
    if (reply.error === null) p.resolve();
    else p.reject(lockErrorFrom(reply.error));
  };
}

/**
 * On the main thread: serve one worker's lock requests with this thread's slots. `reply`
 * answers acquires and upgrades. Returns the handler for that worker's LockRequests, and
 * `releaseAll` for when the worker is gone.
 */
export function serveWorkerLocks(reply: (r: LockReply) => void): { handle(m: LockRequest): void; releaseAll(): void } {
  const locks = new Map<number, RepositoryLock>();
  const releaseAll = () => {
    for (const l of locks.values()) l.release();
    locks.clear();
  };
  return {
    releaseAll,
    handle(m) {
      if (m.op === "release-all") return releaseAll();
      // every message before this one has been handled (releases are synchronous here)
      if (m.op === "sync") return reply({ kind: "lock-reply", req: m.req, error: null });
      let lock = locks.get(m.holder);
      if (m.op === "shared" || m.op === "exclusive" || m.op === "upgrade") {
        if (lock === undefined || m.op !== "upgrade") {
          lock = new RepositoryLock(m.repository, { exclusive: m.op === "exclusive" || m.op === "upgrade", timeout: m.timeout, sleep: m.sleep });
          locks.set(m.holder, lock);
        }
        const l = lock;
        (m.op === "upgrade" ? l.upgrade() : l.acquire().then(() => undefined)).then(
          () => reply({ kind: "lock-reply", req: m.req, error: null }),
          (e: unknown) => {
            const err = e as { name?: string; borgArgs?: unknown[] };
            const args = Array.isArray(err.borgArgs) ? err.borgArgs.map(String) : [lockBasePath(m.repository)];
            reply({ kind: "lock-reply", req: m.req, error: { name: String(err.name ?? "LockError"), args } });
          },
        );
        return;
      }
      if (lock === undefined) return;
      if (m.op === "downgrade") lock.downgrade();
      else if (m.op === "release") {
        lock.release();
        locks.delete(m.holder);
      } else if (m.op === "forget") {
        lock.breakLock();
        locks.delete(m.holder);
      }
    },
  };
}
