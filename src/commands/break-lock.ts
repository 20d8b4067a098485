// `burg break-lock`: show who holds a repository's lock and remove it, like `borg break-lock`
// but refusing to break a lock that a live process on this host still holds (unless --force),
// and telling apart holders that are dead, alive, or of another host ID. With --show and no
// repository it prints this machine's host ID, the one burg (and borg, when BORG_HOST_ID is the
// same) writes into lock names.

import type { CAC } from "cac";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { DoesNotExist, EXIT_ERROR, EXIT_SUCCESS, InvalidRepository, UsageError } from "../errors.ts";
import { hostIdInfo } from "../lock/host-id.ts";
import type { HostIdOrigin } from "../lock/host-id.ts";
import { holderLine, inspectLock, isLiveLocalHolder } from "../lock/inspect.ts";
import type { HolderReport, LockReport } from "../lock/inspect.ts";
import { RepositoryLock } from "../lock/lock.ts";

export interface BreakLockOptions {
  repos: string[];
  /** Only show the holders (or, without repositories, this host's ID); change nothing. */
  show: boolean;
  /** Break even a lock held by a live process of this host. */
  force: boolean;
  json: boolean;
}

export interface BreakLockIO {
  stdout(text: string): void;
  stderr(text: string): void;
}

type Action = "shown" | "broken" | "refused" | "not-locked" | "error";

interface RepoResult {
  report: LockReport | null;
  repository: string;
  action: Action;
  error: string | null;
}

const ORIGIN_TEXT: Record<HostIdOrigin, string> = {
  env: "from BORG_HOST_ID",
  "machine-id": "derived from /etc/machine-id",
  stored: "stored in",
  generated: "generated and stored in",
  ephemeral: "temporary: it could not be stored; set BORG_HOST_ID",
};

function holderJson(h: HolderReport): Record<string, unknown> {
  return {
    name: h.name,
    host: h.host,
    pid: h.pid,
    thread: h.thread,
    roles: h.roles,
    started: h.started,
    state: h.state,
    reason: h.reason,
    recorded: h.recorded,
  };
}

/** Check that `repo` looks like a repository; returns the error text otherwise. */
function repositoryProblem(repo: string): string | null {
  let isDir = false;
  try {
    isDir = statSync(repo).isDirectory();
  } catch {}
  if (!isDir) return new DoesNotExist(repo).message;
  if (!existsSync(join(repo, "config"))) return new InvalidRepository(repo).message;
  return null;
}

export function runBreakLock(options: BreakLockOptions, io: BreakLockIO): number {
  const host = hostIdInfo();
  if (options.repos.length === 0) {
    if (!options.show) throw new UsageError("break-lock: give at least one REPOSITORY (or --show for this host's ID)");
    if (options.json) {
      io.stdout(JSON.stringify({ host_id: host.id, origin: host.origin, file: host.file }, null, 4) + "\n");
    } else {
      io.stdout(host.id + "\n");
      io.stderr(`(host ID ${ORIGIN_TEXT[host.origin]}${host.file ? " " + host.file : ""})\n`);
    }
    return EXIT_SUCCESS;
  }

  const results: RepoResult[] = [];
  for (const repo of options.repos) {
    const problem = repositoryProblem(repo);
    if (problem !== null) {
      results.push({ report: null, repository: repo, action: "error", error: problem });
      if (!options.json) io.stderr(problem + "\n");
      continue;
    }
    const report = inspectLock(repo);
    let action: Action;
    let error: string | null = null;
    if (!options.json) {
      io.stdout(report.locked ? `${report.repository}: locked\n` : `${report.repository}: not locked\n`);
      for (const h of report.holders) io.stdout(holderLine(h, host.id) + "\n");
    }
    if (options.show) {
      action = "shown";
    } else if (!report.locked) {
      action = "not-locked";
    } else {
      const live = report.holders.filter((h) => isLiveLocalHolder(h, host.id));
      if (live.length > 0 && !options.force) {
        action = "refused";
        const who = live.map((h) => `pid ${h.pid}`).join(", ");
        error =
          `Not breaking the lock of ${report.repository}: it is held by a live process on this host (${who}). ` +
          "Let it finish or stop it; use --force to break the lock anyway.";
        if (!options.json) io.stderr(error + "\n");
      } else {
        try {
          new RepositoryLock(report.repository, { exclusive: true, timeout: 0 }).breakLock();
          action = "broken";
          if (!options.json) io.stdout(`Lock of ${report.repository} broken.\n`);
        } catch (e) {
          action = "error";
          error = `Failed to break the lock of ${report.repository}: ${(e as Error).message}`;
          if (!options.json) io.stderr(error + "\n");
        }
      }
    }
    results.push({ report, repository: report.repository, action, error });
  }

  if (options.json) {
    const out = {
      host_id: host.id,
      repositories: results.map((r) => ({
        repository: r.repository,
        lock_path: r.report?.lockPath ?? null,
        locked: r.report?.locked ?? null,
        holders: r.report?.holders.map(holderJson) ?? [],
        action: r.action,
        error: r.error,
      })),
    };
    io.stdout(JSON.stringify(out, null, 4) + "\n");
  }
  return results.some((r) => r.action === "refused" || r.action === "error") ? EXIT_ERROR : EXIT_SUCCESS;
}

const stdio: BreakLockIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

export function register(cli: CAC): void {
  cli
    .command("break-lock [...repositories]", "Break the repository lock (e.g. in case it was left by a dead borg or burg)")
    .usage(
      "break-lock [--show] [--force] [--json] REPOSITORY...\n\n" +
        "Shows who holds the lock of each REPOSITORY (host ID, PID, thread, start time, and whether\n" +
        "the holder is alive, dead, or of another host ID, which this host cannot check), then\n" +
        "removes the lock files, like `borg break-lock`. A lock held by a live process on this\n" +
        "host is not broken unless --force is given (exit code 2).\n\n" +
        "burg removes stale locks of its own host ID by itself when it takes a lock; break-lock is\n" +
        "for the rest, e.g. locks left under a host ID that has since changed.\n\n" +
        "`burg break-lock --show` without REPOSITORY prints this machine's host ID: BORG_HOST_ID\n" +
        "when set, else derived from /etc/machine-id, else generated once and kept in\n" +
        "$BURG_CONFIG_DIR (or $XDG_CONFIG_HOME/burg, ~/.config/burg), file host-id.\n\n" +
        "Exit codes: 0 success, 2 error or refused.",
    )
    .option("--show", "only show who holds the lock (without REPOSITORY: print this host's ID)")
    .option("--force", "break the lock even if a live process on this host holds it")
    .option("--json", "output the report as JSON")
    .example("  burg break-lock /srv/borg/repo")
    .example("  burg break-lock --show")
    .action((repositories: string[], opts: { show?: boolean; force?: boolean; json?: boolean }) =>
      runBreakLock(
        { repos: repositories ?? [], show: Boolean(opts.show), force: Boolean(opts.force), json: Boolean(opts.json) },
        stdio,
      ),
    );
}
