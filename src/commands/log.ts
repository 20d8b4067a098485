// `burg log`: the session journal of repositories (journal/), as a table or as JSON lines.

import type { CAC } from "cac";
import { resolve } from "node:path";
import { existsSync } from "node:fs";
import { EXIT_ERROR, EXIT_SUCCESS, UsageError } from "../errors.ts";
import { hostId } from "../lock/host-id.ts";
import { readJournal } from "../journal/journal.ts";
import { sessionRecords, type SessionRecord } from "../journal/records.ts";
import { parseTime } from "../util/duration.ts";
import { rawOptions } from "./serve-options.ts";
import { formatFileSize } from "../util/size.ts";

export interface LogOptions {
  repositories: string[];
  json: boolean;
  since: string | undefined;
}

export interface LogIO {
  cwd: string;
  stdout(text: string): void;
  stderr(text: string): void;
}

function who(r: SessionRecord): string {
  const w = r.who;
  const parts: string[] = [];
  if (w.client_name) parts.push(w.client_name);
  if (w.pull_host) parts.push(`pull ${w.pull_host}`);
  if (w.ssh_connection) parts.push(w.ssh_connection.split(" ")[0]!);
  else if (w.ssh_client) parts.push(w.ssh_client.split(" ")[0]!);
  if (w.peer) parts.push(`pid ${w.peer.pid} uid ${w.peer.uid}`);
  if (parts.length === 0 && w.user) parts.push(`local ${w.user}`);
  return parts.join(", ") || "-";
}

function duration(r: SessionRecord): string {
  if (r.end === null) return "-";
  const s = (Date.parse(r.end) - Date.parse(r.start)) / 1000;
  return s < 60 ? `${s.toFixed(1)}s` : s < 3600 ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s` : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function manifest(r: SessionRecord): string {
  const m = r.manifest;
  if (m === null) return "-";
  return `${m.old_size ?? "new"}->${m.new_size}`;
}

/** The table `burg log` prints for one repository. */
export function formatLog(records: readonly SessionRecord[]): string {
  const head = ["START", "TIME", "OUTCOME", "COMMAND", "WHO", "CLIENT", "WRITTEN", "DELETED", "OVERWRITTEN", "MANIFEST", "COMMITS"];
  const rows = records.map((r) => [
    r.start.replace("T", " ").replace(/\.\d+Z$/, "Z"),
    duration(r),
    r.outcome,
    r.command,
    who(r),
    r.client_version ?? "-",
    `${r.written.objects} (${formatFileSize(r.written.bytes)})`,
    `${r.deleted.objects} (${formatFileSize(r.deleted.bytes)})`,
    String(r.overwritten.objects),
    manifest(r),
    r.commits.length === 0 ? "-" : r.commits.join(","),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ") + "\n";
  let out = line(head);
  for (let i = 0; i < rows.length; i++) {
    out += line(rows[i]!);
    const r = records[i]!;
    if (r.error) out += `    error: ${r.error}\n`;
  }
  return out;
}

export async function runLog(options: LogOptions, io: LogIO): Promise<number> {
  let since: number | null = null;
  if (options.since !== undefined) {
    since = parseTime(options.since);
    if (since === null) throw new UsageError(`argument --since: not an ISO 8601 time or a duration: '${options.since}'`);
  }
  let exitCode = EXIT_SUCCESS;
  const host = hostId();
  for (const repo of options.repositories) {
    const path = resolve(io.cwd, repo);
    if (!existsSync(resolve(path, "config"))) {
      io.stderr(`Repository ${path} does not exist.\n`);
      exitCode = EXIT_ERROR;
      continue;
    }
    let records = sessionRecords(readJournal(path), host);
    if (since !== null) records = records.filter((r) => Date.parse(r.end ?? r.start) >= since!);
    if (options.json) {
      for (const r of records) io.stdout(JSON.stringify(r) + "\n");
    } else {
      if (options.repositories.length > 1) io.stdout(`${path}:\n`);
      io.stdout(records.length === 0 ? "no sessions recorded\n" : formatLog(records));
    }
  }
  return exitCode;
}

export function register(cli: CAC): void {
  cli
    .command("log <...repositories>", "Show the session journal: who did what to a repository, and when")
    .usage(
      "log REPOSITORY... [--json] [--since TIME]\n\n" +
        "Every session burg serve, socket and pull ran on the repository: start, duration, outcome\n" +
        "(committed, read, rolled-back, error, signal, connection-lost, running, unfinished), who\n" +
        "(--client-name, ssh address, socket peer), the client's borg version, objects written,\n" +
        "deleted and overwritten, the manifest's size before and after, and the transactions committed.\n" +
        "--json prints one JSON object per session (the format is in the README).\n" +
        "--since takes an ISO 8601 time (2026-12-01T08:00, 2026-12-01T08:00+01:00) or a duration ago (7d, 12h).\n\n" +
        "Exit codes: 0 success, 2 error.",
    )
    .option("--json", "one JSON object per session on stdout")
    .option("--since <time>", "only sessions that ended at or after TIME")
    .action(function (this: CAC, repositories: string[]) {
      const raw = this.rawArgs;
      const since = rawOptions(raw, ["--since"]).get("--since");
      return runLog(
        { repositories: repositories.map(String), json: raw.includes("--json"), since },
        { cwd: process.cwd(), stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
      );
    });
}
