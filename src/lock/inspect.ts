// Who holds a repository's lock, as far as this host can tell: the holder files in
// lock.exclusive and the roster entries, each judged like stale-lock removal judges them
// (liveness.ts). Read-only; it is what `burg break-lock` shows before it removes anything.

import { resolve } from "node:path";
import { EXCLUSIVE_SUFFIX, ROSTER_SUFFIX, lockBasePath, uniqueName } from "./format.ts";
import type { LockRecord, ProcessId } from "./format.ts";
import { ExclusiveLockDir } from "./exclusive-lock.ts";
import { hostId } from "./host-id.ts";
import { judgeHolder, processStartTicks, startTicksToIso } from "./liveness.ts";
import type { HolderState } from "./liveness.ts";
import { Roster } from "./roster.ts";

/** Where a holder appears: the lock.exclusive directory or a roster list. */
export type HolderRole = "lock.exclusive" | "roster:exclusive" | "roster:shared";

export interface HolderReport {
  /** The holder's unique name, "<host>.<pid>-<thread hex>" (or the malformed file name). */
  name: string;
  host: string | null;
  pid: number | null;
  thread: number | null;
  roles: HolderRole[];
  /** When the holder process started (burg's record, or /proc for a running process of this host). */
  started: string | null;
  state: HolderState | "malformed";
  reason: string;
  /** Whether burg recorded start time and boot id for this holder (a borg holder has none). */
  recorded: boolean;
}

export interface LockReport {
  repository: string;
  /** `<repo>/lock`, the prefix of lock.exclusive and lock.roster. */
  lockPath: string;
  locked: boolean;
  holders: HolderReport[];
}

function startedOf(host: string, pid: number, record: LockRecord | null, state: HolderState, ourHost: string): string | null {
  if (record?.started) return record.started;
  if (host !== ourHost || state !== "alive") return null;
  const ticks = processStartTicks(pid);
  return ticks === null ? null : startTicksToIso(ticks);
}

/** Describe the lock of the repository at `repoPath`. */
export function inspectLock(repoPath: string): LockReport {
  const repository = resolve(repoPath);
  const base = lockBasePath(repository);
  const ourHost = hostId();
  // Only read through these; the id they are given is never written anywhere.
  const viewer: ProcessId = [ourHost, process.pid, 0];
  const excl = new ExclusiveLockDir(base + EXCLUSIVE_SUFFIX, viewer, null);
  const roster = new Roster(base + ROSTER_SUFFIX, viewer, null);

  const byName = new Map<string, HolderReport>();
  const add = (name: string, role: HolderRole, id: ProcessId | null, record: LockRecord | null) => {
    const known = byName.get(name);
    if (known !== undefined) {
      if (!known.roles.includes(role)) known.roles.push(role);
      if (!known.recorded && record !== null) {
        const verdict = judgeHolder(id!, record, ourHost);
        Object.assign(known, {
          recorded: true,
          state: verdict.state,
          reason: verdict.reason,
          started: startedOf(id![0], id![1], record, verdict.state, ourHost),
        });
      }
      return;
    }
    if (id === null) {
      byName.set(name, {
        name,
        host: null,
        pid: null,
        thread: null,
        roles: [role],
        started: null,
        state: "malformed",
        reason: "not a holder name borg or burg writes; check manually",
        recorded: false,
      });
      return;
    }
    const verdict = judgeHolder(id, record, ourHost);
    byName.set(name, {
      name,
      host: id[0],
      pid: id[1],
      thread: id[2],
      roles: [role],
      started: startedOf(id[0], id[1], record, verdict.state, ourHost),
      state: verdict.state,
      reason: verdict.reason,
      recorded: record !== null,
    });
  };

  for (const h of excl.holders()) add(h.name, "lock.exclusive", h.id, h.record);
  for (const h of roster.holders()) {
    add(uniqueName(h.id), h.key === "shared" ? "roster:shared" : "roster:exclusive", h.id, h.record);
  }
  const holders = [...byName.values()];
  return { repository, lockPath: base, locked: holders.length > 0 || excl.isLocked(), holders };
}

/** One holder, as `burg break-lock` and a refused break_lock request describe it. */
export function holderLine(h: HolderReport, ourHost: string): string {
  if (h.host === null) return `  ${h.name} [${h.roles.join(", ")}]: malformed (${h.reason})`;
  const where = h.host === ourHost ? " (this host)" : "";
  const started = h.started ? ` started ${h.started}` : "";
  return `  host ${h.host}${where} pid ${h.pid} thread ${h.thread} [${h.roles.join(", ")}]${started}: ${h.state} (${h.reason})`;
}

/** A holder whose lock must not be broken without --force: alive as far as this host knows. */
export function isLiveLocalHolder(h: HolderReport, ourHost: string): boolean {
  return h.host === ourHost && h.state === "alive";
}
