// `burg status`: per repository the last commit and its age, the last session's outcome, size,
// objects, segments, compactable bytes, free space and the last `burg check`, for people
// (default), scripts (--json), Prometheus (--prometheus: node_exporter's textfile format) and
// monitoring checks (--max-age exits 1 when a repository has had no commit for that long).

import type { CAC } from "cac";
import { resolve } from "node:path";
import { EXIT_ERROR, EXIT_SUCCESS, EXIT_WARNING, UsageError } from "../errors.ts";
import { prometheus, repositoryStatus, type RepositoryStatus } from "../journal/status.ts";
import { parseDuration } from "../util/duration.ts";
import { formatDuration } from "../util/progress.ts";
import { formatFileSize } from "../util/size.ts";
import { rawOptions } from "./serve-options.ts";

export interface StatusOptions {
  repositories: string[];
  json: boolean;
  prometheus: boolean;
  maxAge: string | undefined;
}

export interface StatusIO {
  cwd: string;
  now?: number;
  stdout(text: string): void;
  stderr(text: string): void;
}

function size(v: number | null): string {
  return v === null ? "unknown" : formatFileSize(v);
}

export function formatStatus(s: RepositoryStatus): string {
  const lc = s.last_commit;
  const ls = s.last_session;
  const check = s.last_check;
  return [
    `Repository:          ${s.repository}`,
    `Last commit:         ${lc ? `${lc.time} (${formatDuration(lc.age_seconds)} ago), transaction ${s.transaction_id}` : "none"}`,
    `Last session:        ${ls ? `${ls.start} ${ls.command}: ${ls.outcome}${ls.error ? ` (${ls.error})` : ""}` : "none recorded"}`,
    `Sessions recorded:   ${s.sessions}`,
    `Size on disk:        ${formatFileSize(s.size_bytes)} in ${s.segments} segments`,
    `Objects:             ${s.objects ?? "unknown"}`,
    `Compaction can free: ${size(s.compactable_bytes)}`,
    `Held (time lock):    ${s.held === null ? "unknown (holds file damaged)" : s.held.objects === 0 ? "nothing" : `${formatFileSize(s.held.bytes)} in ${s.held.objects} entries, until ${s.held.until}`}${s.keep_deleted_seconds ? ` (repository keep_deleted ${formatDuration(s.keep_deleted_seconds)})` : ""}`,
    `Free disk space:     ${size(s.free_bytes)}`,
    `Last burg check:     ${check ? `${check.time}: ${check.verdict}${check.repair ? " (repair)" : ""}` : "none recorded"}`,
  ].join("\n") + "\n";
}

export async function runStatus(options: StatusOptions, io: StatusIO): Promise<number> {
  let maxAge: number | null = null;
  if (options.maxAge !== undefined) {
    maxAge = parseDuration(options.maxAge);
    if (maxAge === null) throw new UsageError(`argument --max-age: not a duration (e.g. 26h, 7d): '${options.maxAge}'`);
  }
  let exitCode = EXIT_SUCCESS;
  const statuses: RepositoryStatus[] = [];
  const failed: string[] = [];
  for (const repo of options.repositories) {
    const path = resolve(io.cwd, repo);
    try {
      statuses.push(repositoryStatus(path, io.now ?? Date.now()));
    } catch (e) {
      io.stderr(`${(e as Error).message}\n`);
      failed.push(path);
      exitCode = EXIT_ERROR;
    }
  }
  if (options.prometheus) io.stdout(prometheus(statuses, failed));
  else if (options.json) io.stdout(JSON.stringify(statuses.length === 1 && options.repositories.length === 1 ? statuses[0] : statuses, null, 2) + "\n");
  else io.stdout(statuses.map(formatStatus).join("\n"));
  if (maxAge !== null) {
    for (const s of statuses) {
      const age = s.last_commit?.age_seconds ?? null;
      if (age === null || age > maxAge) {
        io.stderr(
          `${s.repository}: ${age === null ? "no commit ever" : `no successful commit for ${formatDuration(age)}`} (--max-age ${options.maxAge})\n`,
        );
        exitCode = Math.max(exitCode, EXIT_WARNING);
      }
    }
  }
  return exitCode;
}

export function register(cli: CAC): void {
  cli
    .command("status <...repositories>", "Show a repository's last commit, last session, size and last check (also for Prometheus)")
    .usage(
      "status REPOSITORY... [--json] [--prometheus] [--max-age DURATION]\n\n" +
        "Reads the last committed index and hints and the session journal without taking a lock.\n" +
        "--prometheus prints node_exporter's textfile format (metrics burg_*, label repository).\n" +
        "--max-age 26h exits 1 when a repository has had no successful commit for that long\n" +
        "(s, m, h, d, w; e.g. 1d12h), for monitoring checks.\n\n" +
        "Exit codes: 0 success, 1 a repository is older than --max-age, 2 error.",
    )
    .option("--json", "print the status as JSON on stdout")
    .option("--prometheus", "print the status in the Prometheus text format")
    .option("--max-age <duration>", "exit 1 when a repository has had no successful commit for DURATION")
    .action(function (this: CAC, repositories: string[]) {
      const raw = this.rawArgs;
      const maxAge = rawOptions(raw, ["--max-age"]).get("--max-age");
      return runStatus(
        { repositories: repositories.map(String), json: raw.includes("--json"), prometheus: raw.includes("--prometheus"), maxAge },
        { cwd: process.cwd(), stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
      );
    });
}
