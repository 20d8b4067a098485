// The session recorder: turns what a session reports (open, commits, failures, its end) into
// journal lines of the repository it opened, and runs the alert command when the session looks
// destructive or failed. The RPC layer calls it through its SessionObserver interface; this
// file knows nothing of the protocol.
//
// Writing the journal never fails a session: a journal that cannot be written (a read-only
// repository, a full disk) is logged as a warning and the session goes on.

import { createHash, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { userInfo } from "node:os";
import { hostId } from "../lock/host-id.ts";
import { bootId, processStartTicks } from "../lock/liveness.ts";
import { isNoSpace, lendFromReserve } from "../repository/reserve.ts";
import type { RepositoryActivity } from "../rpc/backend.ts";
import type { Logger } from "../util/log.ts";
import { alertReasons, runAlert, type AlertConfig } from "./alerts.ts";
import { appendJournal, JOURNAL_VERSION, type JournalLine } from "./journal.ts";
import { emptyTotals, type Outcome, type SessionRecord, type Totals, type Who } from "./records.ts";

/** The engine's counters, as the RPC layer passes them. */
export type ActivityCounts = RepositoryActivity;

export interface RecorderConfig {
  /** The serving command: serve, socket or pull. */
  command: string;
  who: Who;
  /** The serve options in force (restrictions, permissions, quota, ...). */
  options: Record<string, unknown>;
  alert: AlertConfig | null;
  /** Called with the path of each repository a session opened. */
  onOpened?(path: string): void;
  /** Called with each alert started (tests, and servers that log the command's failure). */
  onAlert?(exited: Promise<number | null>, record: SessionRecord): void;
}

export function totalsOf(a: ActivityCounts | undefined): Totals {
  if (a === undefined) return emptyTotals();
  return {
    objects_at_open: a.objectsAtOpen,
    commits: [...a.commits],
    written: { objects: a.writtenObjects, bytes: a.writtenBytes },
    deleted: { objects: a.deletedObjects, bytes: a.deletedBytes },
    overwritten: { objects: a.overwrittenObjects, bytes: a.overwrittenBytes },
    manifest: a.manifest && { old_size: a.manifest.oldSize, new_size: a.manifest.newSize, rewrites: a.manifest.rewrites },
    compaction: { freed_bytes: a.compactionFreedBytes, segments: a.compactedSegments },
    discarded: {
      written_objects: a.discarded.writtenObjects,
      written_bytes: a.discarded.writtenBytes,
      deleted_objects: a.discarded.deletedObjects,
      overwritten_objects: a.discarded.overwrittenObjects,
    },
  };
}

/** How a session's stream ended, as the RPC layer reports it. */
export interface EndInfo {
  end: string;
  error?: Error;
  /** abort()'s reason ("received SIGTERM", ...). */
  abortReason?: string;
}

export class SessionRecorder {
  private id: string | null = null;
  private repository: string | null = null;
  private clientVersion: string | null = null;
  private firstError: string | null = null;
  private errors = 0;
  private totals: Totals = emptyTotals();
  private broken = false;
  private startTime = "";

  constructor(
    private readonly config: RecorderConfig,
    private readonly logger: Logger,
  ) {}

  negotiated(version: string | null): void {
    this.clientVersion = version;
  }

  /** The session opened (or failed to open, `error` given) the repository at `path`. */
  opened(path: string, error?: unknown): void {
    if (this.id !== null) this.finish({ end: "eof" }); // a second open in one session
    // A failed open is recorded only in a repository (not in a directory a client named).
    if (error !== undefined && !existsSync(join(path, "config"))) return;
    this.id = randomUUID();
    this.repository = path;
    this.firstError = null;
    this.errors = 0;
    this.totals = emptyTotals();
    const begin: JournalLine = {
      v: JOURNAL_VERSION,
      event: "begin",
      session: this.id,
      time: new Date().toISOString(),
      repository: path,
      command: this.config.command,
      host: hostId(),
      pid: process.pid,
      pid_start: processStartTicks(process.pid),
      boot: bootId(),
      who: this.config.who,
      options: this.config.options,
      client_version: this.clientVersion,
    };
    this.startTime = begin.time;
    this.config.onOpened?.(path);
    this.write(begin, false);
  }

  /** A request got an error reply. */
  failed(method: string, error: unknown): void {
    if (this.id === null) return;
    this.errors++;
    if (this.firstError === null) {
      const name = (error as { borgName?: string })?.borgName ?? (error as Error)?.name ?? "Error";
      this.firstError = `${method}: ${name}: ${(error as Error)?.message ?? String(error)}`;
    }
  }

  committed(activity: ActivityCounts | undefined): void {
    if (this.id === null) return;
    this.totals = totalsOf(activity);
    this.write({ ...this.line("commit"), txid: this.totals.commits.at(-1) ?? null, ...this.totals }, true);
  }

  /** The repository was closed (its open transaction rolled back). */
  closed(activity: ActivityCounts | undefined): void {
    if (this.id === null) return;
    if (activity !== undefined) this.totals = totalsOf(activity);
  }

  /** The session is over: write its end line and, if it deserves one, start the alert. */
  ended(info: EndInfo): void {
    if (this.id === null) return;
    this.finish(info);
  }

  private finish(info: EndInfo): void {
    const signal = /\b(SIG[A-Z]+)\b/.exec(info.abortReason ?? "")?.[1] ?? null;
    const t = this.totals;
    let error = this.firstError;
    if (error === null && (info.end === "io-error" || info.end === "protocol-error")) {
      error = `${info.end}: ${info.error?.message ?? "the stream failed"}`;
    }
    const discarded = t.discarded.written_objects + t.discarded.deleted_objects + t.discarded.overwritten_objects;
    const outcome: Outcome =
      signal !== null
        ? "signal"
        : error !== null
          ? "error"
          : discarded > 0
            ? "rolled-back"
            : t.commits.length > 0
              ? "committed"
              : info.end === "connection-lost"
                ? "connection-lost"
                : "read";
    const end: JournalLine = {
      ...this.line("end"),
      outcome,
      session_end: info.end,
      error,
      errors: this.errors,
      signal,
      ...t,
    };
    const id = this.id!;
    const repository = this.repository!;
    this.write(end, true);
    this.id = null;
    const alert = this.config.alert;
    if (alert === null) return;
    const record: SessionRecord = {
      session: id,
      repository,
      command: this.config.command,
      host: hostId(),
      pid: process.pid,
      pid_start: null,
      boot: null,
      start: this.startTime,
      end: end.time,
      outcome,
      who: this.config.who,
      options: this.config.options,
      client_version: this.clientVersion,
      session_end: info.end,
      error,
      errors: this.errors,
      signal,
      ...t,
    };
    const reasons = alertReasons(record, alert.thresholds);
    if (reasons.length === 0) return;
    this.logger.warning(`session ${id} on ${repository}: ${reasons.join("; ")}; running the alert command`);
    const run = runAlert(alert, record, reasons);
    this.config.onAlert?.(run.exited, record);
  }

  private line(event: JournalLine["event"]): JournalLine {
    return { v: JOURNAL_VERSION, event, session: this.id!, time: new Date().toISOString() };
  }

  private write(line: JournalLine, sync: boolean): void {
    if (this.broken) return;
    try {
      try {
        appendJournal(this.repository!, line, { sync });
      } catch (e) {
        // A full disk: what happened to the repository is worth a few blocks of its reserve
        // (a lock borrows the same way; the next writer grows it back).
        if (!isNoSpace(e) || !lendFromReserve(this.repository!)) throw e;
        appendJournal(this.repository!, line, { sync });
      }
    } catch (e) {
      this.broken = true;
      const code = (e as NodeJS.ErrnoException)?.code;
      const msg = `session journal of ${this.repository} not written: ${(e as Error)?.message ?? String(e)}`;
      if (code === "EROFS" || code === "EACCES" || code === "EPERM" || code === "ENOENT") this.logger.debug(msg);
      else this.logger.warning(msg);
    }
  }
}

/** "type SHA256:fingerprint" of each public key in sshd's SSH_USER_AUTH file (ExposeAuthInfo yes). */
export function sshKeysFromAuthInfo(path: string | undefined): string[] | undefined {
  if (!path) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const keys: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== "publickey" || f.length < 3) continue;
    const blob = Buffer.from(f[2]!, "base64");
    const fp = createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
    keys.push(`${f[1]} SHA256:${fp}`);
  }
  return keys;
}

/** Who runs a `burg serve` session, from sshd's environment. */
export function whoFromEnv(env: Record<string, string | undefined>, clientName: string | undefined): Who {
  const who: Who = {};
  if (clientName) who.client_name = clientName;
  if (env.SSH_CONNECTION) who.ssh_connection = env.SSH_CONNECTION;
  if (env.SSH_CLIENT) who.ssh_client = env.SSH_CLIENT;
  const keys = sshKeysFromAuthInfo(env.SSH_USER_AUTH);
  if (keys !== undefined) who.ssh_keys = keys;
  return { ...who, ...localUser() };
}

/** The local user burg runs as, for a record's `who`. */
export function localUser(): Who {
  try {
    return { user: userInfo().username };
  } catch {
    return {}; // no passwd entry
  }
}
