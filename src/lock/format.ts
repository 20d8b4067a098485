// The on-disk lock format, written down once: file names, the unique holder name, the roster
// JSON and burg's liveness record. It matches borg 1.2's locking.py byte for byte where borg
// writes the same thing, so a local borg and burg exclude each other on one repository.
//
//   <repo>/lock.exclusive/               directory; exists while someone holds the exclusive lock
//   <repo>/lock.exclusive/<host>.<pid>-<thread hex>
//                                        one file naming the holder. borg creates it empty and
//                                        never reads it; burg writes its LockRecord into it.
//   <repo>/lock.exclusive.<random>.tmp/  staging directory renamed onto lock.exclusive
//   <repo>/lock.roster                   JSON {"shared": [[host, pid, thread], …], "exclusive": […]}
//                                        plus burg's records under the key "burg" (borg loads the
//                                        whole object and dumps it back, so it keeps that key).

export const EXCLUSIVE_SUFFIX = ".exclusive";
export const ROSTER_SUFFIX = ".roster";
/** Key in lock.roster under which burg keeps LockRecords of roster entries (borg ignores it). */
export const ROSTER_RECORDS_KEY = "burg";
export const SHARED = "shared";
export const EXCLUSIVE = "exclusive";
export type RosterKey = typeof SHARED | typeof EXCLUSIVE;

/** borg's process id tuple (platform.get_process_id): host id, pid, thread id (always 0). */
export type ProcessId = [host: string, pid: number, thread: number];

/** The base path of a repository's lock: `<repo>/lock` (repository.py Repository.open). */
export function lockBasePath(repoPath: string): string {
  return repoPath.replace(/\/+$/, "") + "/lock";
}

/** borg's ExclusiveLock.unique_name basename: "%s.%d-%x" % (host, pid, thread). */
export function uniqueName([host, pid, thread]: ProcessId): string {
  return `${host}.${pid}-${thread.toString(16)}`;
}

/**
 * Parse a holder file name the way borg's kill_stale_lock does (rsplit on the last "-", then on
 * the last "."); null when malformed. Stricter than Python's int() about digits, which only
 * makes burg call more names malformed (and so leave them alone).
 */
export function parseUniqueName(name: string): ProcessId | null {
  const dash = name.lastIndexOf("-");
  if (dash < 0) return null;
  const hostPid = name.slice(0, dash);
  const threadText = name.slice(dash + 1);
  const dot = hostPid.lastIndexOf(".");
  if (dot < 0) return null;
  const host = hostPid.slice(0, dot);
  const pidText = hostPid.slice(dot + 1);
  if (!/^[0-9]+$/.test(pidText) || !/^[0-9a-fA-F]+$/.test(threadText)) return null;
  const pid = Number(pidText);
  const thread = Number.parseInt(threadText, 16);
  if (!Number.isSafeInteger(pid) || !Number.isSafeInteger(thread)) return null;
  return [host, pid, thread];
}

/**
 * What burg records about a lock holder so that a dead lock cannot look alive: the process start
 * time (field 22 of /proc/PID/stat, clock ticks since boot) tells a reused PID apart, the boot id
 * tells a reboot. `started` is a human-readable rendering of the start time, for break-lock.
 */
export interface LockRecord {
  host: string;
  pid: number;
  thread: number;
  start_ticks: string | null;
  boot_id: string | null;
  started: string | null;
}

/** Parse a LockRecord from JSON text; null for empty (borg's holder files) or anything odd. */
export function parseRecord(text: string): LockRecord | null {
  if (text.trim() === "") return null;
  try {
    return recordFromJson(JSON.parse(text));
  } catch {
    return null;
  }
}

export function recordFromJson(v: unknown): LockRecord | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.host !== "string" || !Number.isSafeInteger(o.pid) || !Number.isSafeInteger(o.thread)) return null;
  const optText = (x: unknown) => (typeof x === "string" && x !== "" ? x : null);
  return {
    host: o.host,
    pid: o.pid as number,
    thread: o.thread as number,
    start_ticks: optText(o.start_ticks),
    boot_id: optText(o.boot_id),
    started: optText(o.started),
  };
}

/** Does this record describe exactly this holder? A record naming someone else is ignored. */
export function recordMatches(record: LockRecord | null, id: ProcessId): record is LockRecord {
  return record !== null && record.host === id[0] && record.pid === id[1] && record.thread === id[2];
}

export function serializeRecord(record: LockRecord): string {
  return pythonJsonDumps(record);
}

/** The roster as borg keeps it: a JSON object whose unknown keys survive a load/save cycle. */
export type RosterData = Record<string, unknown>;

/** Parse lock.roster text like borg's LockRoster.load: corrupt or non-object means empty. */
export function parseRoster(text: string): RosterData {
  try {
    const v = JSON.parse(text);
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as RosterData;
  } catch {
    // borg: "no or corrupt/empty roster file?" -> {}
  }
  return {};
}

/**
 * The entries under "shared" or "exclusive". borg unpacks each entry as (host, pid, thread) and
 * treats the whole file as empty when one does not fit; burg skips only the odd entry instead.
 */
export function rosterEntries(data: RosterData, key: RosterKey): ProcessId[] {
  const list = data[key];
  if (!Array.isArray(list)) return [];
  const out: ProcessId[] = [];
  for (const e of list) {
    if (
      Array.isArray(e) &&
      e.length === 3 &&
      typeof e[0] === "string" &&
      Number.isSafeInteger(e[1]) &&
      Number.isSafeInteger(e[2])
    ) {
      out.push([e[0], e[1], e[2]]);
    }
  }
  return out;
}

/** burg's records kept in the roster, keyed by the holder's unique name. */
export function rosterRecords(data: RosterData): Map<string, LockRecord> {
  const out = new Map<string, LockRecord>();
  const raw = data[ROSTER_RECORDS_KEY];
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return out;
  for (const [key, value] of Object.entries(raw)) {
    const r = recordFromJson(value);
    if (r !== null && key === uniqueName([r.host, r.pid, r.thread])) out.set(key, r);
  }
  return out;
}

/**
 * JSON text exactly as Python's json.dumps writes it with default arguments (borg's roster
 * save): ", " and ": " separators and ensure_ascii, i.e. every character outside printable ASCII
 * escaped as \uXXXX per UTF-16 unit.
 */
export function pythonJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`cannot write ${value} as JSON`);
    return String(value);
  }
  if (typeof value === "string") {
    return JSON.stringify(value).replace(
      /[^\x20-\x7e]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    );
  }
  if (Array.isArray(value)) return "[" + value.map(pythonJsonDumps).join(", ") + "]";
  if (typeof value === "object") {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined) continue;
      parts.push(pythonJsonDumps(k) + ": " + pythonJsonDumps(v));
    }
    return "{" + parts.join(", ") + "}";
  }
  throw new TypeError(`cannot write ${typeof value} as JSON`);
}
