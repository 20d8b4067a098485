// Alerts: after a session that looks destructive or failed, run the operator's command once with
// the session's record as JSON on its stdin.
//
// Conditions (each with an option, defaults below):
// - deleted: the session's committed deletes and overwrites (the manifest's own rewrite not
//   counted) are more than --alert-delete-share (0.25) of the objects the repository had when
//   the session began;
// - manifest: a committed manifest is smaller than --alert-manifest-shrink (0.5) of the one it
//   replaced. The encrypted manifest's size follows the number of archives, so a mass archive
//   deletion shows without the key;
// - error: the session ended in an error (a request failed, the stream broke) or by a signal.
//
// The command runs detached (its own session, stdin a private copy of the record, stdout and
// stderr appended to `<repo>/burg/alerts.log`), so it never holds up the session or the end of
// `burg serve`'s process, which sshd and the client wait for. A non-zero exit is written to
// alerts.log by the wrapper shell; a long-running server also logs it as an error.

import { closeSync, mkdirSync, openSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { journalDir } from "./journal.ts";
import type { SessionRecord } from "./records.ts";

export interface AlertThresholds {
  deleteShare: number;
  manifestShrink: number;
}

export const DEFAULT_THRESHOLDS: AlertThresholds = { deleteShare: 0.25, manifestShrink: 0.5 };

export interface AlertConfig {
  command: string;
  thresholds: AlertThresholds;
}

/** Why a session deserves an alert (empty: it does not). */
export function alertReasons(r: SessionRecord, t: AlertThresholds): string[] {
  const reasons: string[] = [];
  const base = r.objects_at_open ?? 0;
  const destroyed = r.deleted.objects + r.overwritten.objects - (r.manifest?.rewrites ?? 0);
  if (base > 0 && destroyed / base > t.deleteShare) {
    reasons.push(
      `deleted or overwrote ${destroyed} of ${base} objects (${((destroyed * 100) / base).toFixed(1)}%, threshold ${(t.deleteShare * 100).toFixed(0)}%)`,
    );
  }
  const m = r.manifest;
  if (m !== null && m.old_size !== null && m.old_size > 0 && m.new_size < m.old_size * t.manifestShrink) {
    reasons.push(`rewrote the manifest from ${m.old_size} to ${m.new_size} bytes (threshold ${(t.manifestShrink * 100).toFixed(0)}% of its size)`);
  }
  if (r.outcome === "error") reasons.push(`ended in an error: ${r.error ?? r.session_end ?? "unknown"}`);
  if (r.outcome === "signal") reasons.push(`ended by ${r.signal ?? "a signal"}`);
  return reasons;
}

export interface AlertRun {
  /** Resolves with the command's exit code (null when it could not be started). */
  exited: Promise<number | null>;
}

/** Run the alert command, detached; never throws. */
export function runAlert(config: AlertConfig, record: SessionRecord, reasons: string[]): AlertRun {
  const payload = JSON.stringify({ ...record, alert_reasons: reasons }) + "\n";
  let input: string | null = null;
  try {
    input = join(tmpdir(), `burg-alert-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(input, payload, { mode: 0o600 });
    let logFd: number | "ignore" = "ignore";
    try {
      mkdirSync(journalDir(record.repository), { recursive: true });
      logFd = openSync(join(journalDir(record.repository), "alerts.log"), "a", 0o600);
    } catch {
      // no log file: the command's output is dropped
    }
    // The wrapper reads the record from a file it removes at once, so nothing is left behind
    // however long the command runs, and records a failure in alerts.log.
    const script =
      'exec <"$2"; rm -f "$2"; /bin/sh -c "$1"; rc=$?; ' +
      '[ "$rc" -eq 0 ] || echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) burg: alert command failed with exit status $rc: $1" >&2; exit "$rc"';
    const proc = Bun.spawn(["setsid", "/bin/sh", "-c", script, "burg-alert", config.command, input], {
      stdin: "ignore",
      stdout: logFd,
      stderr: logFd,
      env: { ...process.env, BURG_ALERT_REASONS: reasons.join("; "), BURG_REPOSITORY: record.repository, BURG_SESSION: record.session },
    });
    if (typeof logFd === "number") closeSync(logFd);
    proc.unref();
    return { exited: proc.exited.then((c) => c) };
  } catch {
    if (input !== null) {
      try {
        unlinkSync(input);
      } catch {
        // never written
      }
    }
    return { exited: Promise.resolve(null) };
  }
}
