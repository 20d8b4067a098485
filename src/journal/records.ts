// Session records: the journal's lines of one session merged into the record `burg log` shows
// and an alert command receives. The totals are those of the last line written (commit lines
// carry them too, so a killed session still shows what it committed).

import { bootId, processStartTicks } from "../lock/liveness.ts";
import type { JournalLine } from "./journal.ts";

/** Who opened the session, as far as the server can tell. */
export interface Who {
  /** The operator's name for the client (--client-name). */
  client_name?: string;
  /** SSH_CONNECTION: "client-ip client-port server-ip server-port". */
  ssh_connection?: string;
  ssh_client?: string;
  /** Keys sshd says were used to log in (ExposeAuthInfo yes / SSH_USER_AUTH): "type SHA256:…". */
  ssh_keys?: string[];
  /** The connecting process of a UNIX-socket session (SO_PEERCRED). */
  peer?: { pid: number; uid: number; gid: number };
  /** `burg pull`: the host backed up. */
  pull_host?: string;
  /** The local user burg runs as. */
  user?: string;
}

export interface Totals {
  objects_at_open: number | null;
  commits: number[];
  written: { objects: number; bytes: number };
  deleted: { objects: number; bytes: number };
  overwritten: { objects: number; bytes: number };
  manifest: { old_size: number | null; new_size: number; rewrites: number } | null;
  compaction: { freed_bytes: number; segments: number };
  discarded: { written_objects: number; written_bytes: number; deleted_objects: number; overwritten_objects: number };
}

export type Outcome = "committed" | "read" | "rolled-back" | "error" | "signal" | "connection-lost" | "running" | "unfinished";

export interface SessionRecord extends Totals {
  session: string;
  repository: string;
  command: string;
  host: string;
  pid: number;
  /** Start time of the process (clock ticks since boot) and the boot id: to tell it is still alive. */
  pid_start: string | null;
  boot: string | null;
  start: string;
  end: string | null;
  outcome: Outcome;
  who: Who;
  options: Record<string, unknown>;
  client_version: string | null;
  /** How the stream ended (eof, connection-lost, io-error, protocol-error, aborted). */
  session_end: string | null;
  /** The first error of the session, as the client was told it. */
  error: string | null;
  errors: number;
  signal: string | null;
}

export function emptyTotals(): Totals {
  return {
    objects_at_open: null,
    commits: [],
    written: { objects: 0, bytes: 0 },
    deleted: { objects: 0, bytes: 0 },
    overwritten: { objects: 0, bytes: 0 },
    manifest: null,
    compaction: { freed_bytes: 0, segments: 0 },
    discarded: { written_objects: 0, written_bytes: 0, deleted_objects: 0, overwritten_objects: 0 },
  };
}

const TOTAL_KEYS = Object.keys(emptyTotals()) as Array<keyof Totals>;

/** Merge journal lines into session records, oldest start first. `host` is this host's name. */
export function sessionRecords(lines: readonly JournalLine[], host: string): SessionRecord[] {
  const byId = new Map<string, SessionRecord>();
  for (const line of lines) {
    if (line.event === "check") continue;
    let r = byId.get(line.session);
    if (r === undefined) {
      if (line.event !== "begin") continue; // its begin line was rotated away
      r = {
        session: line.session,
        repository: String(line.repository ?? ""),
        command: String(line.command ?? ""),
        host: String(line.host ?? ""),
        pid: Number(line.pid ?? 0),
        pid_start: (line.pid_start as string | null) ?? null,
        boot: (line.boot as string | null) ?? null,
        start: line.time,
        end: null,
        outcome: "unfinished",
        who: (line.who as Who) ?? {},
        options: (line.options as Record<string, unknown>) ?? {},
        client_version: (line.client_version as string | null) ?? null,
        session_end: null,
        error: null,
        errors: 0,
        signal: null,
        ...emptyTotals(),
      };
      byId.set(line.session, r);
      continue;
    }
    for (const k of TOTAL_KEYS) if (k in line) (r as unknown as Record<string, unknown>)[k] = line[k];
    if (line.client_version) r.client_version = line.client_version as string;
    if (line.event === "end") {
      r.end = line.time;
      r.outcome = line.outcome as Outcome;
      r.session_end = (line.session_end as string | null) ?? null;
      r.error = (line.error as string | null) ?? null;
      r.errors = Number(line.errors ?? 0);
      r.signal = (line.signal as string | null) ?? null;
    }
  }
  const records = [...byId.values()];
  for (const r of records) {
    if (r.end === null && isRunning(r, host)) r.outcome = "running";
  }
  return records;
}

function isRunning(r: SessionRecord, host: string): boolean {
  if (r.host !== host || r.pid <= 0) return false;
  if (r.boot !== null && r.boot !== bootId()) return false;
  const ticks = processStartTicks(r.pid);
  return ticks !== null && (r.pid_start === null || ticks === r.pid_start);
}

/** The "check" lines: what `burg check` found, oldest first. */
export function checkRecords(lines: readonly JournalLine[]): JournalLine[] {
  return lines.filter((l) => l.event === "check");
}

/** Did the session destroy or fail nothing (for status: "last session's outcome")? */
export function isSuccess(outcome: Outcome): boolean {
  return outcome === "committed" || outcome === "read";
}
