// `burg check`: the server-side repository check of `borg check --repository-only`, run on
// local repository paths: same procedure, verdicts, messages and exit codes (0 ok, 1 problems
// found, 2 error), repair with the same semantics, partial checks that take turns with borg's.
// What it adds: speed (segment-scan.ts), a progress display, and findings as JSON.
//
// The engine is repository/check.ts; this file parses options, takes the lock as borg does
// for check (exclusive, --lock-wait), asks for the repair confirmation borg asks for, and
// turns reports into text or JSON.

import type { CAC } from "cac";
import { createInterface } from "node:readline";
import { EXIT_ERROR, EXIT_SUCCESS, Interrupted, UsageError } from "../errors.ts";
import { randomUUID } from "node:crypto";
import { appendJournal, JOURNAL_VERSION } from "../journal/journal.ts";
import { checkRepository, exitCodeFor, type CheckReport, type Finding } from "../repository/check.ts";
import { Repository } from "../repository/repository.ts";
import { log, type LogSink } from "../util/log.ts";
import { ProgressDisplay, type ProgressState } from "../util/progress.ts";
import { releaseStartupPages } from "../util/resident.ts";
import { formatFileSize } from "../util/size.ts";

export interface CheckCommandOptions {
  repos: string[];
  repair: boolean;
  json: boolean;
  /** Show progress even when stderr is not a terminal. */
  progress: boolean;
  /** Seconds; 0 = a full check. */
  maxDuration: number;
  /** Seconds to wait for the repository lock. */
  lockWait: number;
  /** Do not lock the repository (borg's --bypass-lock): for read-only repositories. */
  bypassLock?: boolean;
  verbose: boolean;
  debug: boolean;
}

export interface CheckCommandIO {
  stdout(text: string): void;
  stderr(text: string): void;
  /** stderr is a terminal (progress is then shown by default, redrawn in place). */
  isTTY: boolean;
  columns?: number;
  env: Record<string, string | undefined>;
  /** Ask the repair question on a terminal; null when there is nobody to ask. */
  confirm: ((question: string) => Promise<string>) | null;
  signal?: AbortSignal;
}

const REPAIR_WARNING =
  "This is a potentially dangerous function.\n" +
  "check --repair might lead to data loss (for kinds of corruption it is not\n" +
  "capable of dealing with). BE VERY CAREFUL!\n" +
  "\n" +
  "Type 'YES' if you understand this and want to continue: ";

/** borg's confirmation for --repair, with its environment override. */
async function confirmRepair(io: CheckCommandIO): Promise<boolean> {
  const answer = io.env.BORG_CHECK_I_KNOW_WHAT_I_AM_DOING;
  if (answer !== undefined) {
    io.stderr(REPAIR_WARNING + `${answer} (from BORG_CHECK_I_KNOW_WHAT_I_AM_DOING)\n`);
    if (answer === "YES") return true;
    io.stderr("Invalid answer, aborting.\n");
    return false;
  }
  if (!io.confirm) {
    io.stderr(REPAIR_WARNING + "\nNo answer (stdin is not a terminal); set BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES. Aborting.\n");
    return false;
  }
  const reply = (await io.confirm(REPAIR_WARNING)).trim();
  if (reply === "YES") return true;
  io.stderr(reply === "" || /^(n|no)$/i.test(reply) ? "Aborting.\n" : "Invalid answer, aborting.\n");
  return false;
}

function findingJson(f: Finding): Record<string, unknown> {
  return {
    severity: f.severity,
    kind: f.kind,
    message: f.message,
    segment: f.segment,
    offset: f.offset,
    file: f.file,
    id: f.id,
    repaired: f.repaired,
  };
}

function reportJson(r: CheckReport): Record<string, unknown> {
  return {
    repository: r.repository,
    verdict: r.verdict,
    exit_code: exitCodeFor(r),
    error: null,
    mode: r.mode,
    repair: r.repair,
    transaction_id: r.transactionId,
    segments: { ...r.segments },
    objects: { ...r.objects },
    last_segment_checked: r.lastSegmentChecked,
    errors: r.errors,
    warnings: r.warnings,
    seconds: Math.round(r.seconds * 1000) / 1000,
    findings: r.findings.map(findingJson),
  };
}

function failedJson(repository: string, message: string, exitCode: number): Record<string, unknown> {
  return {
    repository,
    verdict: "failed",
    exit_code: exitCode,
    error: message,
    mode: null,
    repair: null,
    transaction_id: null,
    segments: null,
    objects: null,
    last_segment_checked: null,
    errors: 0,
    warnings: 0,
    seconds: 0,
    findings: [],
  };
}

function summaryLine(r: CheckReport): string {
  const what = r.verdict === "ok" ? "no problems found" : r.verdict === "repaired" ? "errors found and repaired" : "errors found";
  return (
    `${r.repository}: ${r.mode} check, ${what}: ${r.segments.checked} segments (${formatFileSize(r.segments.bytes)}) checked` +
    `, ${r.errors} errors, ${r.warnings} warnings, ${r.seconds.toFixed(2)} s`
  );
}

/** A seconds option (--lock-wait, --max-duration): a non-negative number, or `fallback` when absent. */
export function parseSeconds(name: string, v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === true) return fallback;
  const text = String(Array.isArray(v) ? v[v.length - 1] : v).trim();
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`argument --${name}: invalid value: '${text}' (seconds expected)`);
  return Number(text);
}

/** The check's verdict as a "check" line of the session journal (burg status shows the last). */
function recordCheck(path: string, report: CheckReport, options: CheckCommandOptions, started: number): void {
  try {
    appendJournal(
      path,
      {
        v: JOURNAL_VERSION,
        event: "check",
        session: randomUUID(),
        time: new Date().toISOString(),
        verdict: report.verdict,
        repair: options.repair,
        partial: options.maxDuration > 0,
        duration_seconds: (Date.now() - started) / 1000,
        findings: report.findings.filter((f) => f.severity === "error").length,
      },
      { sync: true },
    );
  } catch (e) {
    log.debug(`check not recorded in the journal: ${(e as Error).message}`, "burg.check");
  }
}

/** Check each repository in turn; the exit code is the worst of them. */
export async function runCheckCommand(options: CheckCommandOptions, io: CheckCommandIO): Promise<number> {
  if (options.repos.length === 0) throw new UsageError("check: give at least one REPOSITORY");
  if (options.repair && options.maxDuration > 0) {
    throw new UsageError("--repair does not allow --max-duration argument.");
  }
  if (options.repair && !(await confirmRepair(io))) return EXIT_ERROR;

  log.json = false;
  log.setLevel(options.debug ? "DEBUG" : options.verbose ? "INFO" : "WARNING");
  const showProgress = options.progress || io.isTTY;
  const results: Record<string, unknown>[] = [];
  let exitCode = EXIT_SUCCESS;
  /** Start-up pages are given back once, when the first repository is open. */
  let startupPagesReleased = false;
  const originalSink = log.sink;
  try {
    for (const path of options.repos) {
      let display: ProgressDisplay | null = null;
      let state: ProgressState = { bytesDone: 0, bytesTotal: 0, itemsDone: 0, itemsTotal: 0 };
      if (showProgress) {
        const d = new ProgressDisplay({
          label: "Checking segments",
          itemName: "segments",
          sink: { write: (t) => io.stderr(t), isTTY: io.isTTY, columns: io.columns },
        });
        display = d;
        // Log lines must not land in the middle of a redrawn progress line.
        const sink: LogSink = { write: (line) => (d.clear(), io.stderr(line)) };
        log.sink = sink;
      } else {
        log.sink = { write: (line) => io.stderr(line) };
      }
      let repo: Repository | null = null;
      const started = Date.now();
      try {
        repo = await Repository.open(path, { exclusive: true, lockWait: options.lockWait, lock: !options.bypassLock });
        if (!startupPagesReleased) {
          // see util/resident.ts: ~10 MiB of the executable that the check will not touch again
          startupPagesReleased = true;
          releaseStartupPages();
        }
        const report = await checkRepository(repo, {
          repair: options.repair,
          maxDuration: options.maxDuration,
          signal: io.signal,
          onProgress: display
            ? (p) => {
                state = { bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, itemsDone: p.segmentsDone, itemsTotal: p.segmentsTotal };
                display!.update(state);
              }
            : undefined,
        });
        display?.finish(state);
        exitCode = Math.max(exitCode, exitCodeFor(report));
        recordCheck(repo.path, report, options, started);
        if (options.json) {
          results.push(reportJson(report));
        } else {
          // borg's messages were logged as they happened; the findings only burg makes follow.
          for (const f of report.findings) {
            if (f.logged) continue;
            if (f.severity === "warning") log.warning(f.message + (f.repaired ? " (repaired)" : ""), "burg.check");
            else if (f.severity === "info") log.info(f.message, "burg.check");
            else log.error(f.message, "burg.check");
          }
          if (options.verbose || options.debug) io.stderr(summaryLine(report) + "\n");
        }
      } catch (e) {
        display?.finish(state);
        if (io.signal?.aborted) throw io.signal.reason instanceof Error ? io.signal.reason : e;
        const code = (e as { exitCode?: number }).exitCode ?? EXIT_ERROR;
        const message = e instanceof Error ? e.message : String(e);
        exitCode = Math.max(exitCode, code);
        if (options.json) results.push(failedJson(path, message, code));
        if (!(e instanceof Error) || !("borgName" in e)) throw e;
        log.error(message, "burg.check");
      } finally {
        repo?.close();
      }
    }
  } finally {
    log.sink = originalSink;
  }
  if (options.json) {
    const verdicts = results.map((r) => r.verdict);
    const verdict = verdicts.includes("failed")
      ? "failed"
      : verdicts.includes("errors")
        ? "errors"
        : verdicts.includes("repaired")
          ? "repaired"
          : "ok";
    io.stdout(JSON.stringify({ verdict, exit_code: exitCode, repositories: results }, null, 2) + "\n");
  }
  return exitCode;
}

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ["SIGINT", 2],
  ["SIGTERM", 15],
  ["SIGHUP", 1],
];

function askOnTerminal(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      resolve(answer);
    });
    rl.on("close", () => resolve(""));
  });
}

export function register(cli: CAC): void {
  cli
    .command("check [...repositories]", "Verify the segments, index and hints of repositories (borg check --repository-only)")
    .usage(
      "check [--repair] [--json] [--progress] [--max-duration SECONDS] [--lock-wait SECONDS] REPOSITORY...\n\n" +
        "Checks local repositories the way `borg check --repository-only` does, on the server, without\n" +
        "a client: every segment entry's header and CRC32, the commits, the segments after the last\n" +
        "commit, and the index (and hints and integrity file) against what the segments say. Problems\n" +
        "are reported with segment and offset. The repository lock is taken exclusively, as borg does.\n\n" +
        "--repair salvages damaged segments (every entry with a valid header and CRC32 is kept, only\n" +
        "damaged bytes are dropped), removes uncommitted segments, adds a missing commit and writes a\n" +
        "fresh index, hints and integrity file: the same result as `borg check --repository-only\n" +
        "--repair`. It asks for confirmation unless BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES.\n\n" +
        "--max-duration checks only for about that long and continues there next time; borg's own\n" +
        "partial checks keep the same state, so `borg check --repository-only --max-duration` and\n" +
        "burg take turns.\n\n" +
        "Exit codes: 0 no problems found (or all repaired), 1 problems found, 2 error (e.g. the\n" +
        "repository does not exist or is locked).",
    )
    .option("--repair", "attempt to repair any inconsistencies found")
    .option("--json", "print the result as JSON on stdout")
    .option("--progress", "show progress on stderr (default when stderr is a terminal)")
    .option("--max-duration <seconds>", "partial check: stop after about SECONDS, continue there next time")
    .option("--lock-wait <seconds>", "wait at most SECONDS for the repository lock (default: 1)")
    .option("--bypass-lock", "do not lock the repository (a read-only one); the check must then be the only writer")
    .option("-v, --verbose", "show borg's info messages and a summary")
    .option("--info", "same as --verbose")
    .option("--debug", "show debug messages")
    .example("  burg check /srv/borg/repo")
    .example("  burg check --max-duration 3600 /srv/borg/repo    # a slice a night")
    .example("  BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES burg check --repair /srv/borg/repo")
    .action(async (repositories: string[], opts: Record<string, unknown>) => {
      // cac declares a hyphenated flag to its parser under the camel-case name only, so
      // `--bypass-lock REPO` arrives as bypassLock = "REPO": give the word back.
      if (typeof opts.bypassLock === "string") {
        repositories = [opts.bypassLock, ...(repositories ?? [])];
        opts.bypassLock = true;
      }
      const controller = new AbortController();
      const handlers = SIGNALS.map(([name, signo]) => {
        const h = () => controller.abort(new Interrupted(name, signo));
        process.on(name, h);
        return [name, h] as const;
      });
      try {
        return await runCheckCommand(
          {
            repos: repositories ?? [],
            repair: Boolean(opts.repair),
            json: Boolean(opts.json),
            progress: Boolean(opts.progress),
            maxDuration: parseSeconds("max-duration", opts.maxDuration, 0),
            lockWait: parseSeconds("lock-wait", opts.lockWait, 1),
            bypassLock: Boolean(opts.bypassLock),
            verbose: Boolean(opts.verbose || opts.info),
            debug: Boolean(opts.debug),
          },
          {
            stdout: (t) => process.stdout.write(t),
            stderr: (t) => process.stderr.write(t),
            isTTY: Boolean(process.stderr.isTTY),
            columns: process.stderr.columns,
            env: process.env,
            confirm: process.stdin.isTTY ? askOnTerminal : null,
            signal: controller.signal,
          },
        );
      } finally {
        for (const [name, h] of handlers) process.off(name, h);
      }
    });
}
