// The `lock.exclusive` directory: borg's ExclusiveLock (locking.py), built on rename(2) of a
// staging directory onto the lock path being atomic and failing while the lock directory holds
// a file. It also serves as the mutex around every roster update.
//
// burg writes its LockRecord into the holder file (borg leaves it empty and never reads it), so
// the record lives and dies with the lock: borg's release, break-lock and stale-lock removal
// unlink it together with the lock.
//
// Differences from borg, all on the safe side: a holder whose record proves it dead is removed
// even if its PID is in use again; holders of other host IDs are reported (once per acquire),
// never removed; rename errors other than "already locked" fail at once with LockFailed instead
// of being retried until the timeout.

import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { LockFailed, LockTimeout } from "../errors.ts";
import { log } from "../util/log.ts";
import { parseRecord, parseUniqueName, recordMatches, serializeRecord, uniqueName } from "./format.ts";
import type { LockRecord, ProcessId } from "./format.ts";
import { hostId, killStaleLocks } from "./host-id.ts";
import { judgeHolder } from "./liveness.ts";
import type { Verdict } from "./liveness.ts";
import { errnoCode, osErrorText } from "./os-error.ts";
import type { TimeoutTimer } from "./timer.ts";

export type ReleaseOutcome = "released" | "not-locked" | "not-mine";

/** One file found in lock.exclusive, with what can be said about its holder. */
export interface ExclusiveHolder {
  name: string;
  /** null when the name is malformed. */
  id: ProcessId | null;
  record: LockRecord | null;
}

/** Messages printed at most once per key until `resetReports()` (one acquire = one round). */
export class Reporter {
  private readonly seen = new Set<string>();

  once(key: string, emit: () => void): void {
    if (this.seen.has(key)) return;
    this.seen.add(key);
    emit();
  }

  reset(): void {
    this.seen.clear();
  }
}

/** The hint for a lock this host will not remove by itself. */
export function otherHostHint(lockPath: string, name: string, verdict: Verdict): string {
  const repo = dirname(lockPath);
  return (
    `Lock ${lockPath} is held by ${name} (${verdict.reason}). burg never removes locks of other host IDs ` +
    `automatically; if that holder is gone (e.g. its host ID changed), run "burg break-lock ${repo}".`
  );
}

export class ExclusiveLockDir {
  /** Absolute path of the lock directory, `<repo>/lock.exclusive`. */
  readonly path: string;
  readonly id: ProcessId;
  readonly uniquePath: string;
  /** What goes into our holder file; null writes an empty file, as borg does. */
  readonly record: LockRecord | null;
  readonly reporter: Reporter;
  /** Staging directories of acquires in progress, so exit paths can remove them. */
  private readonly staging = new Set<string>();

  constructor(path: string, id: ProcessId, record: LockRecord | null, reporter = new Reporter()) {
    this.path = path;
    this.id = id;
    this.uniquePath = join(path, uniqueName(id));
    this.record = record;
    this.reporter = reporter;
  }

  private content(): string {
    return this.record === null ? "" : serializeRecord(this.record);
  }

  /** Wait for the lock with borg's timer; throws LockTimeout or LockFailed. */
  async acquire(timer: TimeoutTimer): Promise<void> {
    const staging = this.stage();
    try {
      while (!this.attempt(staging)) {
        if (await timer.timedOutOrSleep()) throw new LockTimeout(this.path);
      }
    } finally {
      this.unstage(staging);
    }
  }

  /** The same, blocking; for synchronous release paths. */
  acquireSync(timer: TimeoutTimer): void {
    const staging = this.stage();
    try {
      while (!this.attempt(staging)) {
        if (timer.timedOutOrSleepSync()) throw new LockTimeout(this.path);
      }
    } finally {
      this.unstage(staging);
    }
  }

  /** A staging directory holding our holder file, named like tempfile.mkdtemp names borg's. */
  private stage(): string {
    const parent = dirname(this.path);
    const prefix = basename(this.path) + ".";
    for (let tries = 0; ; tries++) {
      const staging = join(parent, prefix + randomBytes(6).toString("base64url").slice(0, 8) + ".tmp");
      try {
        mkdirSync(staging, { mode: 0o700 });
        this.staging.add(staging);
      } catch (e) {
        if (errnoCode(e) === "EEXIST" && tries < 100) continue;
        throw new LockFailed(this.path, osErrorText(e, staging), { cause: e });
      }
      try {
        writeFileSync(join(staging, basename(this.uniquePath)), this.content(), { flag: "wx" });
      } catch (e) {
        this.unstage(staging);
        throw new LockFailed(this.path, osErrorText(e), { cause: e });
      }
      return staging;
    }
  }

  private unstage(staging: string): void {
    this.staging.delete(staging);
    // Gone when the rename succeeded; otherwise clean up without ever failing the caller.
    try {
      unlinkSync(join(staging, basename(this.uniquePath)));
    } catch {}
    try {
      rmdirSync(staging);
    } catch {}
  }

  /** Remove the staging directories of acquires still waiting (exit paths; those acquires then fail). */
  abandonStaging(): void {
    for (const staging of [...this.staging]) this.unstage(staging);
  }

  /** One try: true when we hold the lock afterwards. */
  private attempt(staging: string): boolean {
    // A stale lock we just removed is retried at once; borg sleeps a lock-wait tick first
    // (a tenth of --lock-wait), which only delays the recovery it was meant to allow.
    for (let retry = 0; ; retry++) {
      try {
        renameSync(staging, this.path);
        return true;
      } catch (e) {
        const code = errnoCode(e);
        if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "EBUSY") {
          throw new LockFailed(this.path, osErrorText(e), { cause: e });
        }
      }
      if (retry > 0 || this.byMe() || !this.killStaleLock()) break;
    }
    if (this.byMe()) {
      // A holder file with our name: ours from an earlier release that failed halfway, or left by
      // a dead process whose PID we now have. Either way borg treats it as ours; refresh the record.
      if (this.record !== null) {
        try {
          writeFileSync(this.uniquePath, this.content());
        } catch {}
      }
      return true;
    }
    return false;
  }

  isLocked(): boolean {
    return existsSync(this.path);
  }

  byMe(): boolean {
    return existsSync(this.uniquePath);
  }

  /** Release; never throws for a lock that is gone or was taken over (the caller decides what to say). */
  release(): ReleaseOutcome {
    if (!this.isLocked()) return "not-locked";
    try {
      unlinkSync(this.uniquePath);
    } catch (e) {
      if (errnoCode(e) === "ENOENT") return "not-mine";
      throw e;
    }
    try {
      rmdirSync(this.path);
    } catch (e) {
      const code = errnoCode(e);
      // Not empty or gone: somebody else got in between, which is fine.
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOENT") throw e;
    }
    return "released";
  }

  /** The holder files in the lock directory (empty when not locked). */
  holders(): ExclusiveHolder[] {
    let names: string[];
    try {
      names = readdirSync(this.path);
    } catch {
      return [];
    }
    return names.sort().map((name) => {
      const id = parseUniqueName(name);
      let record: LockRecord | null = null;
      if (id !== null) {
        try {
          const r = parseRecord(readFileSync(join(this.path, name), "utf8"));
          if (recordMatches(r, id)) record = r;
        } catch {}
      }
      return { name, id, record };
    });
  }

  /**
   * borg's kill_stale_lock: remove holder files of dead processes of this host, then try to
   * remove the directory. Returns true when the directory is gone.
   */
  killStaleLock(): boolean {
    const ourHost = hostId();
    for (const holder of this.holders()) {
      if (holder.id === null) {
        this.reporter.once(`malformed:${holder.name}`, () =>
          log.error(`Found malformed lock ${holder.name} in ${this.path}. Please check/fix manually.`),
        );
        return false;
      }
      const verdict = judgeHolder(holder.id, holder.record, ourHost);
      if (verdict.state === "other-host") {
        this.reporter.once(`other:${holder.name}`, () => log.warning(otherHostHint(this.path, holder.name, verdict)));
        return false;
      }
      if (verdict.state === "alive") return false;
      if (!killStaleLocks()) {
        this.reporter.once(`keep:${holder.name}`, () =>
          log.warning(`Found stale lock ${holder.name}, but not deleting because BORG_HOSTNAME_IS_UNIQUE=no.`),
        );
        return false;
      }
      try {
        unlinkSync(join(this.path, holder.name));
        log.warning(`Killed stale lock ${holder.name} (${verdict.reason}).`);
      } catch (e) {
        if (errnoCode(e) === "ENOENT") continue; // someone else removed it meanwhile
        this.reporter.once(`unlink:${holder.name}`, () =>
          log.error(`Found stale lock ${holder.name}, but cannot delete due to ${osErrorText(e)}`),
        );
        return false;
      }
    }
    try {
      rmdirSync(this.path);
    } catch (e) {
      const code = errnoCode(e);
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOENT") {
        log.error(`Failed to remove lock dir: ${osErrorText(e)}`);
      }
      return false;
    }
    return true;
  }

  /** borg's break_lock: remove every holder file and the directory, whoever holds it. */
  breakLock(): void {
    let names: string[];
    try {
      names = readdirSync(this.path);
    } catch (e) {
      if (errnoCode(e) === "ENOENT") return;
      throw e;
    }
    for (const name of names) {
      try {
        unlinkSync(join(this.path, name));
      } catch (e) {
        if (errnoCode(e) !== "ENOENT") throw e;
      }
    }
    try {
      rmdirSync(this.path);
    } catch (e) {
      const code = errnoCode(e);
      // ENOTEMPTY: a new holder renamed its directory in right after we emptied ours; it is a
      // legitimate holder now, not part of the lock we were asked to break.
      if (code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOENT") throw e;
    }
  }
}
