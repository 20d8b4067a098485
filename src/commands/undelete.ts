// `burg undelete REPO --since TIME`: undo what sessions since TIME deleted or overwrote, from the
// data the time lock kept (repository/undelete.ts has the rules). --dry-run lists the sessions
// the journal has since TIME and what would come back, without the lock. The undelete itself is
// recorded in the journal as a session of command "undelete".

import type { CAC } from "cac";
import { resolve } from "node:path";
import { EXIT_SUCCESS, EXIT_WARNING, UsageError } from "../errors.ts";
import { hostId } from "../lock/host-id.ts";
import { readJournal } from "../journal/journal.ts";
import { localUser, SessionRecorder } from "../journal/recorder.ts";
import { sessionRecords, type SessionRecord } from "../journal/records.ts";
import { Repository } from "../repository/repository.ts";
import { undelete, type UndeleteReport } from "../repository/undelete.ts";
import { parseTime } from "../util/duration.ts";
import { log } from "../util/log.ts";
import { formatFileSize } from "../util/size.ts";
import { parseSeconds } from "./check.ts";
import { rawOptions } from "./serve-options.ts";

export interface UndeleteOptions {
  repository: string;
  since: string;
  dryRun: boolean;
  json: boolean;
  lockWait: number;
}

export interface UndeleteIO {
  cwd: string;
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Sessions that committed deletes or overwrites at or after `since` (from the journal). */
export function destructiveSessionsSince(path: string, since: number): SessionRecord[] {
  return sessionRecords(readJournal(path), hostId()).filter(
    (r) =>
      r.commits.length > 0 &&
      r.command !== "undelete" &&
      Date.parse(r.end ?? new Date().toISOString()) >= since &&
      r.deleted.objects + r.overwritten.objects > 0,
  );
}

function sessionLine(r: SessionRecord): string {
  const w = r.who;
  const who = w.client_name ?? w.pull_host ?? w.ssh_connection?.split(" ")[0] ?? w.user ?? "-";
  return `  ${r.start.replace(/\.\d+Z$/, "Z")}  ${r.command} (${who}): deleted ${r.deleted.objects} (${formatFileSize(r.deleted.bytes)}), overwrote ${r.overwritten.objects} (${formatFileSize(r.overwritten.bytes)})`;
}

function reportText(path: string, r: UndeleteReport, sessions: SessionRecord[]): string {
  const since = new Date(r.since).toISOString();
  const verb = r.dryRun ? "would bring back" : "brought back";
  const lines = [`${path}: ${sessions.length} session(s) since ${since} deleted or overwrote objects:`];
  for (const s of sessions) lines.push(sessionLine(s));
  lines.push(`${r.dryRun ? "Would restore" : "Restored"} ${r.objects} objects (${formatFileSize(r.bytes)}) from ${r.holds} held entries; ${r.current} already current.`);
  if (r.lost > 0) {
    lines.push(`${r.lost} held objects (${formatFileSize(r.lostBytes)}) are gone (a plain borg compact dropped them, or their segment was lost): ${verb} the rest.`);
  }
  if (r.manifestRemoved) {
    lines.push(
      `The manifest changed since then and ${r.dryRun ? "would be" : "was"} removed: on the client, run \`borg check --repair ${path}\`` +
        " (borg's client, with the key) to rebuild the archive list from every archive in the repository.",
    );
  } else if (r.manifestMissing) {
    lines.push(
      `The repository has no manifest (an earlier undelete removed it, or it was lost): on the client, run \`borg check --repair ${path}\`` +
        " (borg's client, with the key) to rebuild the archive list from every archive in the repository.",
    );
  }
  return lines.join("\n") + "\n";
}

export async function runUndelete(options: UndeleteOptions, io: UndeleteIO): Promise<number> {
  const since = parseTime(options.since);
  if (since === null) throw new UsageError(`argument --since: not an ISO 8601 time (e.g. 2026-11-30T22:00:00+01:00) or a duration ago: '${options.since}'`);
  const path = resolve(io.cwd, options.repository);
  const sessions = destructiveSessionsSince(path, since);
  const recorder = options.dryRun
    ? null
    : new SessionRecorder({ command: "undelete", who: localUser(), options: { since: new Date(since).toISOString() }, alert: null }, log);
  // A dry run only reads (no lock, as burg status); the real one takes the exclusive lock.
  // The operator's undelete is not bound by the clients' storage quota (0: none).
  const repo = await Repository.open(path, options.dryRun ? { lock: false, storageQuota: 0 } : { exclusive: true, lockWait: options.lockWait, storageQuota: 0 });
  let report: UndeleteReport;
  try {
    recorder?.opened(path);
    try {
      report = await undelete(repo, since, { dryRun: options.dryRun });
    } catch (e) {
      recorder?.failed("undelete", e);
      throw e;
    }
    if (recorder && repo.activity().commits.length > 0) recorder.committed(repo.activity());
    recorder?.closed(repo.activity());
  } finally {
    recorder?.ended({ end: "eof" });
    repo.close();
  }
  if (options.json) {
    io.stdout(
      JSON.stringify(
        {
          repository: path,
          since: new Date(since).toISOString(),
          dry_run: report.dryRun,
          restored_objects: report.objects,
          restored_bytes: report.bytes,
          already_current: report.current,
          held_entries: report.holds,
          lost_objects: report.lost,
          lost_bytes: report.lostBytes,
          manifest_removed: report.manifestRemoved,
          manifest_missing: report.manifestMissing,
          next_step: report.manifestMissing ? `borg check --repair ${path}` : null,
          sessions: sessions.map((s) => ({ session: s.session, start: s.start, end: s.end, command: s.command, who: s.who, deleted: s.deleted, overwritten: s.overwritten })),
        },
        null,
        2,
      ) + "\n",
    );
  } else {
    io.stderr(reportText(path, report, sessions));
  }
  return report.lost > 0 ? EXIT_WARNING : EXIT_SUCCESS;
}

export function register(cli: CAC): void {
  cli
    .command("undelete <repository>", "Bring back what sessions since a time deleted or overwrote (needs --keep-deleted)")
    .usage(
      "undelete REPOSITORY --since TIME [--dry-run] [--json] [--lock-wait SECONDS]\n\n" +
        "Every object that sessions since TIME deleted or overwrote gets back the data it had then\n" +
        "(objects first written after TIME get the data they had before they were deleted); objects\n" +
        "written since stay. This needs the data to be still there: sessions under a time lock\n" +
        "(serve/socket/pull --keep-deleted, or `burg config REPO keep_deleted`) keep it.\n\n" +
        "The archive list (borg's manifest) is encrypted and cannot be merged: when it changed since\n" +
        "TIME, it is removed, and the owner runs `borg check --repair REPO` once on the client,\n" +
        "which rebuilds it from every archive in the repository (those of TIME and those made since).\n\n" +
        "TIME is ISO 8601 (2026-11-30T22:00, with or without an offset; without one it is local time)\n" +
        "or a duration ago (36h). --dry-run lists the sessions since TIME from the journal and what\n" +
        "would come back, and changes nothing. The undelete runs under the exclusive lock, as one\n" +
        "transaction (a killed one changes nothing), can be repeated, and is recorded in the journal.\n\n" +
        "Exit codes: 0 done, 1 some held data was gone, 2 error.",
    )
    .option("--since <time>", "undo deletes and overwrites since TIME (ISO 8601, or a duration ago such as 36h)")
    .option("--dry-run", "show what would come back; change nothing")
    .option("--json", "print the result as JSON on stdout")
    .option("--lock-wait <seconds>", "wait at most SECONDS for the repository lock (default: 1)")
    .example("  burg undelete /srv/borg/host1 --since 2026-11-30T22:00:00+01:00 --dry-run")
    .example("  burg undelete /srv/borg/host1 --since 2026-11-30T22:00:00+01:00")
    .action(function (this: CAC, repository: string) {
      const raw = rawOptions(this.rawArgs, ["--since", "--lock-wait"]);
      const since = raw.get("--since");
      if (since === undefined) throw new UsageError("undelete: --since TIME is required");
      return runUndelete(
        { repository: String(repository), since, dryRun: this.rawArgs.includes("--dry-run"), json: this.rawArgs.includes("--json"), lockWait: parseSeconds("lock-wait", raw.get("--lock-wait"), 1) },
        { cwd: process.cwd(), stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
      );
    });
}
