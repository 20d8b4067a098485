// Whether a lock holder (host, pid, thread) is still alive, as far as this machine can tell.
//
// borg's rule (platform/posix.pyx process_alive): a holder of another host ID, or with a thread id
// other than 0, counts as alive; otherwise it is alive when kill(pid, 0) does not fail with
// ESRCH. burg adds what it records when it takes a lock (format.ts LockRecord): if the holder's
// recorded boot id is not this boot's, or the process now running under that PID started at a
// different time, the PID was reused and the holder is dead.
//
// One case keeps the record from being trusted: borg "adopts" a lock file carrying its own
// unique name (ExclusiveLock.by_me) and merges roster entries by (host, pid, thread). So if the
// PID of a dead burg holder was reused by a borg process, that borg may be the lock's rightful
// holder now while the record still describes the dead burg. When the process behind a refuted
// record looks like borg (or its command line cannot be read), the holder stays alive.

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import type { LockRecord, ProcessId } from "./format.ts";

/** Linux USER_HZ, the unit of /proc/PID/stat start times: 100 on every architecture Bun runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * kill(pid, 0): ESRCH means gone; any other error (EPERM) means someone else's live process.
 * A zombie (exited, not yet reaped: its parent went away and PID 1 of a container or VM may
 * never reap it) still answers kill(pid, 0), but it holds nothing and will never run again.
 */
export function pidExists(pid: number): boolean {
  // kill() with pid <= 0 addresses process groups; such a "holder" is never ours to judge.
  if (!Number.isSafeInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== "ESRCH";
  }
  return !hasExited(pid);
}

/** Fields 3 on of /proc/PID/stat (after the command name, which may itself contain ") "). */
function statFields(pid: number): string[] | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  const close = text.lastIndexOf(")");
  return close < 0 ? null : text.slice(close + 2).split(" ");
}

/** Whether /proc says the process has exited: state Z (zombie) or X (dead). False when unreadable. */
export function hasExited(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state === "Z" || state === "X";
}

/**
 * Field 22 of /proc/PID/stat: start time in clock ticks after boot; null when unreadable or
 * when the process has exited (a zombie keeps its start time but is no longer running).
 */
export function processStartTicks(pid: number): string | null {
  const fields = statFields(pid);
  if (fields === null || fields[0] === "Z" || fields[0] === "X") return null;
  const start = fields[22 - 3];
  return start !== undefined && /^[0-9]+$/.test(start) ? start : null;
}

let cachedBootId: string | null | undefined;

/** This boot's id (/proc/sys/kernel/random/boot_id); null when the kernel does not offer it. */
export function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      const id = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
      cachedBootId = id === "" ? null : id;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

let cachedBootTime: number | null | undefined;

function bootTimeSeconds(): number | null {
  if (cachedBootTime === undefined) {
    cachedBootTime = null;
    try {
      const m = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "latin1"));
      if (m) cachedBootTime = Number(m[1]);
    } catch {
      // not Linux, or /proc hidden
    }
  }
  return cachedBootTime;
}

/** Wall-clock time (ISO 8601, seconds) of a start time in ticks after this boot. */
export function startTicksToIso(ticks: string): string | null {
  const btime = bootTimeSeconds();
  if (btime === null || !/^[0-9]+$/.test(ticks)) return null;
  const seconds = btime + Math.floor(Number(ticks) / CLOCK_TICKS_PER_SECOND);
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

/**
 * Whether the process behind `pid` looks like borg (python running borg, or a borg binary):
 * true, false, or null when its command line cannot be read (hidepid, race with its exit).
 */
export function looksLikeBorg(pid: number): boolean | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return null;
  }
  const args = raw.split("\0").filter((a) => a !== "");
  return args.slice(0, 3).some((a) => /^borg/i.test(basename(a)));
}

let ownRecord: LockRecord | null = null;

/** The record burg writes for a lock held by this process. */
export function recordForSelf(id: ProcessId): LockRecord {
  if (ownRecord === null || ownRecord.host !== id[0] || ownRecord.pid !== id[1] || ownRecord.thread !== id[2]) {
    const startTicks = processStartTicks(id[1]);
    ownRecord = {
      host: id[0],
      pid: id[1],
      thread: id[2],
      start_ticks: startTicks,
      boot_id: bootId(),
      started: startTicks === null ? null : startTicksToIso(startTicks),
    };
  }
  return ownRecord;
}

export type HolderState = "alive" | "dead" | "other-host";

export interface Verdict {
  state: HolderState;
  /** Why, in words for a log line or break-lock's report. */
  reason: string;
}

/**
 * Judge one holder. `record` is burg's LockRecord for exactly this holder, or null (borg's
 * holders, or burg's from a process that could not record). `ourHost` is this machine's host ID.
 */
export function judgeHolder([host, pid, thread]: ProcessId, record: LockRecord | null, ourHost: string): Verdict {
  if (host !== ourHost) {
    return { state: "other-host", reason: "held under another host ID; this host cannot tell whether it is alive" };
  }
  if (thread !== 0) return { state: "alive", reason: "thread id is not 0, which borg never treats as stale" };
  if (!Number.isSafeInteger(pid) || pid <= 0) return { state: "alive", reason: "not a process id this host can check" };
  if (!pidExists(pid)) return { state: "dead", reason: hasExited(pid) ? "the process has exited (a zombie not yet reaped)" : "no such process" };
  if (record === null) return { state: "alive", reason: "process is running" };

  let refuted: string | null = null;
  const boot = bootId();
  if (record.boot_id !== null && boot !== null && record.boot_id !== boot) {
    refuted = `it was recorded before a reboot (boot id ${record.boot_id}, now ${boot})`;
  } else {
    const now = processStartTicks(pid);
    if (record.start_ticks !== null && now !== null && now !== record.start_ticks) {
      refuted = `pid ${pid} was reused (holder started at tick ${record.start_ticks}, the running process at tick ${now})`;
    }
  }
  if (refuted === null) return { state: "alive", reason: "process is running" };
  if (looksLikeBorg(pid) !== false) {
    return {
      state: "alive",
      reason: `${refuted}, but pid ${pid} now runs borg (or cannot be inspected), which may have taken the lock over`,
    };
  }
  return { state: "dead", reason: refuted };
}
