// `burg compact`: compaction of local repositories on the server, without a client, the way
// `borg compact` compacts them (sparse segments over --threshold are rewritten), except that it
// honours the time lock: data deleted or overwritten less than --keep-deleted ago (or under a
// session's own time lock that has not run out) is kept. Recorded in the session journal.

import type { CAC } from "cac";
import { resolve } from "node:path";
import { EXIT_ERROR, EXIT_SUCCESS, UsageError } from "../errors.ts";
import { localUser, SessionRecorder } from "../journal/recorder.ts";
import { readHolds } from "../repository/holds.ts";
import { Repository } from "../repository/repository.ts";
import { parseDuration } from "../util/duration.ts";
import { log } from "../util/log.ts";
import { ProgressDisplay } from "../util/progress.ts";
import { formatFileSize } from "../util/size.ts";
import { parseSeconds } from "./check.ts";
import { rawOptions } from "./serve-options.ts";

export interface CompactOptions {
  repositories: string[];
  /** Seconds; null: only the holds' own expiry and the repository's setting. */
  keepDeleted: number | null;
  /** 0..1 */
  threshold: number;
  cleanupCommits: boolean;
  lockWait: number;
  json: boolean;
  progress: boolean;
  verbose: boolean;
}

export interface CompactIO {
  cwd: string;
  isTTY: boolean;
  columns?: number;
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface CompactResult {
  repository: string;
  freed_bytes: number;
  segments_compacted: number;
  held_bytes: number;
  held_objects: number;
  held_until: string | null;
  error: string | null;
}

export async function runCompact(options: CompactOptions, io: CompactIO): Promise<number> {
  if (options.repositories.length === 0) throw new UsageError("compact: give at least one REPOSITORY");
  let exitCode = EXIT_SUCCESS;
  const results: CompactResult[] = [];
  for (const given of options.repositories) {
    const path = resolve(io.cwd, given);
    const recorder = new SessionRecorder(
      { command: "compact", who: localUser(), options: { keep_deleted: options.keepDeleted, threshold: options.threshold }, alert: null },
      log,
    );
    let repo: Repository | null = null;
    const showProgress = options.progress || io.isTTY;
    const display = showProgress
      ? new ProgressDisplay({ label: "Compacting", itemName: "segments", sink: { write: io.stderr, isTTY: io.isTTY, columns: io.columns } })
      : null;
    let state = { bytesDone: 0, bytesTotal: 0, itemsDone: 0, itemsTotal: 0 };
    try {
      repo = await Repository.open(path, { exclusive: true, lockWait: options.lockWait, keepDeleted: options.keepDeleted });
      recorder.opened(path);
      if (display) {
        repo.onCompactProgress = (done, total, bytesDone, bytesTotal) => {
          state = { bytesDone, bytesTotal, itemsDone: done, itemsTotal: total };
          display.update(state);
        };
      }
      await repo.commit({ compact: true, threshold: options.threshold, cleanupCommits: options.cleanupCommits });
      display?.finish(state);
      const activity = repo.activity();
      recorder.committed(activity);
      const held = readHolds(path, repo.getIndexTransactionId()).summary(Date.now(), repo.keepDeletedMs);
      const result: CompactResult = {
        repository: path,
        freed_bytes: activity.compactionFreedBytes,
        segments_compacted: activity.compactedSegments,
        held_bytes: held.bytes,
        held_objects: held.records,
        held_until: held.until === null ? null : new Date(held.until).toISOString(),
        error: null,
      };
      results.push(result);
      recorder.closed(activity);
      recorder.ended({ end: "eof" });
      if (!options.json) {
        io.stderr(
          `${path}: freed ${formatFileSize(result.freed_bytes)} (${result.segments_compacted} segments compacted)` +
            (held.records > 0 ? `; ${formatFileSize(held.bytes)} of deleted data (${held.records} entries) kept by the time lock until ${result.held_until}` : "") +
            "\n",
        );
      }
    } catch (e) {
      display?.finish(state);
      const message = e instanceof Error ? e.message : String(e);
      recorder.failed("compact", e);
      recorder.ended({ end: "eof" });
      const code = (e as { exitCode?: number }).exitCode ?? EXIT_ERROR;
      exitCode = Math.max(exitCode, code);
      results.push({ repository: path, freed_bytes: 0, segments_compacted: 0, held_bytes: 0, held_objects: 0, held_until: null, error: message });
      if (!(e instanceof Error) || !("borgName" in e)) throw e;
      log.error(`${path}: ${message}`, "burg.compact");
    } finally {
      repo?.close();
    }
  }
  if (options.json) io.stdout(JSON.stringify(results.length === 1 ? results[0] : results, null, 2) + "\n");
  return exitCode;
}

function parseThreshold(text: string | undefined): number {
  if (text === undefined) return 0.1;
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || Number(text) > 99) throw new UsageError(`argument --threshold: invalid percentage: '${text}' (0-99)`);
  return Number(text) / 100;
}

export function register(cli: CAC): void {
  cli
    .command("compact [...repositories]", "Compact repositories on the server, honouring the time lock (--keep-deleted)")
    .usage(
      "compact [--keep-deleted DURATION] [--threshold PERCENT] [--progress] [--json] REPOSITORY...\n\n" +
        "Frees the space of deleted and superseded data in local repositories, as `borg compact` does\n" +
        "(segments with more than --threshold percent freeable space are rewritten), without a client\n" +
        "and under the repository's exclusive lock. What a session under a time lock deleted or\n" +
        "overwrote stays until its time is up; --keep-deleted keeps, in addition, everything deleted\n" +
        "within DURATION. A plain `borg compact` on the server drops held data at once: that is the\n" +
        "way to give it up early.\n\n" +
        "Exit codes: 0 done, 2 error (e.g. the repository is locked).",
    )
    .option("--keep-deleted <duration>", "keep data deleted or overwritten within DURATION (e.g. 30d)")
    .option("--threshold <percent>", "compact segments with more than PERCENT freeable space (default 10)")
    .option("--cleanup-commits", "also remove commit-only segment files (borg compact --cleanup-commits)")
    .option("--lock-wait <seconds>", "wait at most SECONDS for the repository lock (default: 1)")
    .option("--progress", "show progress on stderr (default when stderr is a terminal)")
    .option("--json", "print the result as JSON on stdout")
    .option("-v, --verbose", "show borg's info messages")
    .option("--info", "same as --verbose")
    .example("  burg compact /srv/borg/*")
    .example("  burg compact --keep-deleted 30d /srv/borg/host1")
    .action(function (this: CAC, repositories: string[] | undefined, opts: Record<string, unknown>) {
      const raw = rawOptions(this.rawArgs, ["--keep-deleted", "--threshold", "--lock-wait"]);
      let keepDeleted: number | null = null;
      const kd = raw.get("--keep-deleted");
      if (kd !== undefined) {
        keepDeleted = parseDuration(kd);
        if (keepDeleted === null) throw new UsageError(`argument --keep-deleted: invalid duration: '${kd}' (e.g. 30d, 12h)`);
      }
      const verbose = Boolean(opts.verbose || opts.info);
      if (verbose) log.setLevel("INFO");
      return runCompact(
        {
          repositories: (repositories ?? []).map(String),
          keepDeleted,
          threshold: parseThreshold(raw.get("--threshold")),
          cleanupCommits: Boolean(opts.cleanupCommits),
          lockWait: parseSeconds("lock-wait", raw.get("--lock-wait"), 1),
          json: Boolean(opts.json),
          progress: Boolean(opts.progress),
          verbose,
        },
        {
          cwd: process.cwd(),
          isTTY: Boolean(process.stderr.isTTY),
          columns: process.stderr.columns,
          stdout: (t) => process.stdout.write(t),
          stderr: (t) => process.stderr.write(t),
        },
      );
    });
}
