// `burg serve`: a drop-in for `borg serve` (borg 1.2's options plus borg 2's --permissions),
// speaking borg 1.x's RPC protocol on stdin/stdout for one client, as sshd starts it.
//
// This file turns the command line (and, for ssh forced commands, SSH_ORIGINAL_COMMAND) into a
// session configuration; rpc/ does the protocol and transport/stdio.ts the process plumbing.

import type { CAC, Command } from "cac";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir, hostname, machine, release, type, version as osVersion } from "node:os";
import { UsageError } from "../errors.ts";
import { DEFAULT_THRESHOLDS, type AlertConfig } from "../journal/alerts.ts";
import { SessionRecorder, whoFromEnv } from "../journal/recorder.ts";
import { openRepository } from "../repository/repository.ts";
import { releaseStartupPages } from "../util/resident.ts";
import type { OpenRepository } from "../rpc/backend.ts";
import {
  clientOverrides,
  LEVEL_FLAGS,
  normalizeDebugTopic,
  resolvePermissions,
  type PathContext,
  type ServePolicy,
} from "../rpc/policy.ts";
import type { SessionConfig } from "../rpc/session.ts";
import { handleStopSignals, serveStdio } from "../transport/stdio.ts";
import { handOverToDaemon } from "../transport/hand-over-client.ts";
import { resolve } from "node:path";
import { log, type LevelName } from "../util/log.ts";
import { parseFileSize } from "../util/size.ts";
import { parseDuration } from "../util/duration.ts";
import { COMMIT, VERSION } from "../version.ts";

/**
 * The serve options, read from the raw command line (see parseServeArgv). cac is only used for
 * help and to reject unknown options: its parser turns numeric-looking values into numbers and
 * fills absent list options with [undefined], neither acceptable for paths and modes.
 */
export interface ServeCliOptions {
  restrictToPath?: string[];
  restrictToRepository?: string[];
  appendOnly?: boolean;
  storageQuota?: string;
  keepDeleted?: string;
  umask?: string;
  lockWait?: string;
  permissions?: string;
  debugTopic?: string[];
  clientName?: string;
  alertCommand?: string;
  alertDeleteShare?: string;
  alertManifestShrink?: string;
  /** The last of --critical/--error/--warning/--info/-v/--verbose/--debug, as argparse keeps it. */
  logLevel?: LevelName;
  /** Hand the connection to the `burg socket` daemon at this path when one runs. */
  daemonSocket?: string;
}

/** Everything `burg serve` decided from its command line and environment. */
export interface ServeSettings {
  policy: ServePolicy;
  logLevel: LevelName;
  debugTopics: string[];
  /** Seconds; used for an open() without lock_wait (borg clients always send one). */
  lockWait: number;
  umask: number;
  /** The session journal's settings: who the client is and the alert command. */
  journal: { clientName: string | undefined; alert: AlertConfig | null };
}

const UMASK_DEFAULT = 0o077;
const MIN_STORAGE_QUOTA = 10_000_000; // borg: "At least 10M are required."

/** Whether each value option is a list (repeatable) or keeps its last value. */
const VALUE_OPTIONS: Record<string, { key: keyof ServeCliOptions; list: boolean } | null> = {
  "--restrict-to-path": { key: "restrictToPath", list: true },
  "--restrict-to-repository": { key: "restrictToRepository", list: true },
  "--storage-quota": { key: "storageQuota", list: false },
  "--keep-deleted": { key: "keepDeleted", list: false },
  "--umask": { key: "umask", list: false },
  "--lock-wait": { key: "lockWait", list: false },
  "--permissions": { key: "permissions", list: false },
  "--debug-topic": { key: "debugTopic", list: true },
  "--client-name": { key: "clientName", list: false },
  "--alert-command": { key: "alertCommand", list: false },
  "--alert-delete-share": { key: "alertDeleteShare", list: false },
  "--alert-manifest-shrink": { key: "alertManifestShrink", list: false },
  "--daemon-socket": { key: "daemonSocket", list: false },
  // borg common options with a value that serve accepts and ignores
  "--remote-path": null,
  "--rsh": null,
  "--upload-ratelimit": null,
  "--remote-ratelimit": null,
  "--upload-buffer": null,
  "--remote-buffer": null,
  "--debug-profile": null,
};

/** Read the serve options from argv (the words after the program name; "serve" is skipped). */
export function parseServeArgv(argv: readonly string[]): ServeCliOptions {
  const o: ServeCliOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") break;
    if (!word.startsWith("-")) continue;
    const eq = word.indexOf("=");
    const name = word.startsWith("--") && eq > 0 ? word.slice(0, eq) : word;
    const level = LEVEL_FLAGS[name];
    if (level !== undefined) {
      o.logLevel = level;
      continue;
    }
    if (name === "--append-only") {
      o.appendOnly = true;
      continue;
    }
    if (!(name in VALUE_OPTIONS)) continue;
    const value = eq > 0 && word.startsWith("--") ? word.slice(eq + 1) : argv[++i];
    const spec = VALUE_OPTIONS[name];
    if (spec === null || spec === undefined || value === undefined) continue;
    if (spec.list) ((o[spec.key] as string[] | undefined) ??= []).push(value);
    else (o as Record<string, unknown>)[spec.key] = value;
  }
  return o;
}

/** Turn options and environment into settings; throws UsageError for invalid values. */
export function serveSettings(o: ServeCliOptions, env: Record<string, string | undefined>): ServeSettings {
  let storageQuota: number | null = null;
  const quota = o.storageQuota;
  if (quota !== undefined) {
    try {
      storageQuota = parseFileSize(quota);
    } catch {
      throw new UsageError(`argument --storage-quota: invalid size: '${quota}'`);
    }
    if (storageQuota < MIN_STORAGE_QUOTA) {
      throw new UsageError(`argument --storage-quota: quota is too small (${quota}). At least 10M are required.`);
    }
  }
  let keepDeleted: number | null = null;
  if (o.keepDeleted !== undefined) {
    keepDeleted = parseDuration(o.keepDeleted);
    if (keepDeleted === null) {
      throw new UsageError(`argument --keep-deleted: invalid duration: '${o.keepDeleted}' (e.g. 30d, 12h, 90m, 3600s)`);
    }
  }
  let umask = UMASK_DEFAULT;
  const umaskText = o.umask;
  if (umaskText !== undefined) {
    if (!/^[0-7]+$/.test(umaskText) || parseInt(umaskText, 8) > 0o777) {
      throw new UsageError(`argument --umask: invalid octal value: '${umaskText}'`);
    }
    umask = parseInt(umaskText, 8);
  }
  let lockWait = 1;
  const lockWaitText = o.lockWait;
  if (lockWaitText !== undefined) {
    if (!/^[+-]?\d+$/.test(lockWaitText.trim())) throw new UsageError(`argument --lock-wait: invalid int value: '${lockWaitText}'`);
    lockWait = parseInt(lockWaitText, 10);
  }
  const share = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    if (!/^(0(\.[0-9]+)?|1(\.0*)?|\.[0-9]+)$/.test(text.trim())) throw new UsageError(`argument --${name}: expected a fraction between 0 and 1: '${text}'`);
    return parseFloat(text);
  };
  const thresholds = {
    deleteShare: share("alert-delete-share", o.alertDeleteShare, DEFAULT_THRESHOLDS.deleteShare),
    manifestShrink: share("alert-manifest-shrink", o.alertManifestShrink, DEFAULT_THRESHOLDS.manifestShrink),
  };
  const settings: ServeSettings = {
    policy: {
      restrictToPaths: o.restrictToPath ?? [],
      restrictToRepositories: o.restrictToRepository ?? [],
      appendOnly: o.appendOnly ?? false,
      storageQuota,
      keepDeleted,
      permissions: resolvePermissions(o.permissions, env.BORG_REPO_PERMISSIONS),
    },
    logLevel: o.logLevel ?? "WARNING",
    debugTopics: o.debugTopic ?? [],
    lockWait,
    umask,
    journal: {
      clientName: o.clientName,
      alert: o.alertCommand ? { command: o.alertCommand, thresholds } : null,
    },
  };
  // A forced command (authorized_keys command="burg serve ..."): the client's own command line
  // may only choose the log level, debug topics and lock wait (borg's Archiver.get_args).
  const original = env.SSH_ORIGINAL_COMMAND;
  if (original !== undefined) {
    const client = clientOverrides(original);
    if (client !== null) {
      settings.logLevel = client.logLevel;
      settings.debugTopics = client.debugTopics;
      settings.lockWait = client.lockWait;
    }
  }
  return settings;
}

/** Home directory of a user by name (for "~user/repo"), through NSS when getent is there. */
function userHome(name: string): string | null {
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$/.test(name)) return null;
  const fromLine = (line: string) => {
    const f = line.split(":");
    return f.length >= 7 && f[0] === name ? f[5]! : null;
  };
  const r = spawnSync("getent", ["passwd", name], { encoding: "utf8" });
  if (r.status === 0) return fromLine(r.stdout.trim().split("\n")[0] ?? "");
  if (r.status === 2) return null; // getent: key not found
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const home = fromLine(line);
      if (home !== null) return home;
    }
  } catch {
    // no passwd file: no such user
  }
  return null;
}

export function pathContext(env: Record<string, string | undefined>, cwd: string): PathContext {
  const home = env.HOME || homedir();
  return {
    baseDir: env.BORG_BASE_DIR || env.HOME || (env.USER ? (userHome(env.USER) ?? homedir()) : homedir()),
    home,
    cwd,
    userHome,
  };
}

/** borg's sysinfo(): sent with every error so the client can show where it happened. */
export function sysinfo(env: Record<string, string | undefined>, argv: string[]): string {
  if ((env.BORG_SHOW_SYSINFO ?? "yes").toLowerCase() === "no") return "";
  const original = env.SSH_ORIGINAL_COMMAND;
  return [
    `Platform: ${type()} ${hostname()} ${release()} ${osVersion()} ${machine()}`,
    `Burg: ${VERSION} (${COMMIT})  Bun: ${Bun.version}`,
    `PID: ${process.pid}  CWD: ${process.cwd()}`,
    `sys.argv: ${JSON.stringify(argv)}`,
    `SSH_ORIGINAL_COMMAND: ${original === undefined ? "None" : JSON.stringify(original)}`,
    "",
  ].join("\n");
}

export interface ServeIO {
  env: Record<string, string | undefined>;
  cwd: string;
  argv: string[];
  openRepository: OpenRepository;
  /** Runs the session; transport/stdio.ts's serveStdio outside of tests. */
  serve(config: SessionConfig): Promise<number>;
}

/**
 * --daemon-socket: pass stdin/stdout/stderr, this command line and environment to the daemon
 * and wait for the session's exit status. null when the session was not handed over (no
 * daemon, a refusal, ...): then this process serves it.
 */
async function tryHandOver(path: string, settings: ServeSettings, io: ServeIO): Promise<number | null> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(io.env)) if (v !== undefined) env[k] = v;
  let stop: ((code: number) => void) | null = null;
  let signalled: number | null = null;
  const removeHandlers = handleStopSignals((_name, exitCode) => {
    signalled ??= exitCode;
    stop?.(exitCode);
  });
  try {
    const r = await handOverToDaemon(
      resolve(io.cwd, path),
      { argv: io.argv.slice(2), env, cwd: io.cwd, pid: process.pid, umask: settings.umask },
      {
        uid: process.getuid?.() ?? 0,
        waiter: existsSync("/bin/sh") ? "/bin/sh" : null,
        onRunning: (abort) => {
          stop = abort;
          if (signalled !== null) abort(signalled);
        },
      },
    );
    if (r.handedOver) {
      if (r.lost !== undefined) log.error(`${r.lost}; its session was cut off`);
      return r.exitCode;
    }
    if (signalled !== null) return signalled;
    log.log(r.level === "debug" ? "DEBUG" : r.level === "info" ? "INFO" : "WARNING", `not handed over: ${r.reason}; serving the session here`);
    return null;
  } finally {
    removeHandlers();
  }
}

export async function runServe(options: ServeCliOptions, io: ServeIO): Promise<number> {
  const settings = serveSettings(options, io.env);
  if (options.daemonSocket !== undefined) {
    log.serveText = true;
    log.setLevel(settings.logLevel);
    const code = await tryHandOver(options.daemonSocket, settings, io);
    if (code !== null) return code;
  }
  process.umask(settings.umask);
  log.json = false;
  log.serveText = true;
  log.setLevel(settings.logLevel);
  log.topics = new Set(settings.debugTopics.map(normalizeDebugTopic));
  const info = sysinfo(io.env, io.argv);
  const who = whoFromEnv(io.env, settings.journal.clientName);
  const recorded = recordedOptions(settings);
  return io.serve({
    observe: (logger) => new SessionRecorder({ command: "serve", who, options: recorded, alert: settings.journal.alert }, logger),
    openRepository: io.openRepository,
    policy: settings.policy,
    pathContext: pathContext(io.env, io.cwd),
    logger: log,
    defaultLockWait: settings.lockWait,
    sysinfo: () => info,
    afterFirstOpen: releaseStartupPages,
  });
}

/** The serve options a journal record keeps. */
export function recordedOptions(settings: ServeSettings): Record<string, unknown> {
  const p = settings.policy;
  return {
    restrict_to_paths: p.restrictToPaths,
    restrict_to_repositories: p.restrictToRepositories,
    append_only: p.appendOnly,
    storage_quota: p.storageQuota,
    permissions: p.permissions,
    ...(p.keepDeleted ? { keep_deleted: p.keepDeleted } : {}),
  };
}

/** Register serve's policy and log options on a command (serve, socket, pull share them). */
export function addServeOptions(command: Command): Command {
  return command
    .option("--restrict-to-path <path>", "restrict repository access to PATH (repeatable; sub-directories included)", {
      type: [String],
    })
    .option("--restrict-to-repository <path>", "restrict repository access to the repository at PATH (repeatable)", {
      type: [String],
    })
    .option("--append-only", "only allow appending to repository segment files (borg's append-only mode)")
    .option("--storage-quota <quota>", "override the repository's storage quota (e.g. 5G, 1.5T; at least 10M)")
    .option("--keep-deleted <duration>", "time lock: what clients delete or overwrite stays recoverable this long (e.g. 30d, 12h; see burg undelete)")
    .option("--permissions <mode>", "all, no-delete, write-only or read-only (default: $BORG_REPO_PERMISSIONS or all)")
    .option("--umask <mask>", "set umask to M (octal, default 0077)")
    .option("--lock-wait <seconds>", "lock wait for clients that send none (borg clients send theirs; default 1)")
    .option("--client-name <name>", "name of the client in the session journal (e.g. in each forced command)")
    .option("--alert-command <cmd>", "run CMD (sh -c) after a destructive or failed session, its journal record as JSON on stdin")
    .option("--alert-delete-share <f>", `alert when a session deletes or overwrites more than this share of the objects (default ${DEFAULT_THRESHOLDS.deleteShare})`)
    .option("--alert-manifest-shrink <f>", `alert when the manifest shrinks below this share of its size (default ${DEFAULT_THRESHOLDS.manifestShrink})`)
    .option("--critical", "log level CRITICAL")
    .option("--error", "log level ERROR")
    .option("--warning", "log level WARNING (default)")
    .option("--info", "log level INFO")
    .option("-v, --verbose", "log level INFO")
    .option("--debug", "log level DEBUG")
    .option("--debug-topic <topic>", "enable a debug topic, e.g. repository.compaction (repeatable)", { type: [String] });
}

export function register(cli: CAC): void {
  const command = cli
    .command("serve", "Serve a repository to a borg 1.x client on stdin/stdout (like `borg serve`)")
    .usage(
      "serve [options]\n\n" +
        "Started by the borg client through ssh (BORG_RSH / --rsh, --remote-path burg), usually from\n" +
        "an authorized_keys forced command. The client chooses the repository; the options here\n" +
        "restrict what it may do.\n\n" +
        "--permissions (or BORG_REPO_PERMISSIONS; the option wins):\n" +
        "  all         everything is allowed (default)\n" +
        "  no-delete   read and write; objects committed before the session are never deleted or\n" +
        "              overwritten, commits never compact, so earlier manifests stay restorable\n" +
        "  write-only  no-delete, and stored data cannot be read back (only manifest and key)\n" +
        "  read-only   read only; every write fails\n" +
        "--append-only keeps borg's meaning: deletes are allowed but only logged in the segment\n" +
        "files, so an earlier state can be restored by hand; it is not the same as no-delete.\n\n" +
        "With SSH_ORIGINAL_COMMAND set (ssh forced command), only the log level, --debug-topic and\n" +
        "--lock-wait are taken from the client's command; VAR=value words in it are ignored.\n\n" +
        "Exit codes: 0 when the client closed the connection, 2 on errors, 128+N on signal N.",
    );
  addServeOptions(command);
  command
    // borg common options a client or an old forced command may pass; they do not apply to serve.
    .option("--log-json", "(accepted for borg compatibility; serve logs JSON lines after negotiate)")
    .option("-p, --progress", "(accepted for borg compatibility, no effect)")
    .option("--iec", "(accepted for borg compatibility, no effect)")
    .option("--show-rc", "(accepted for borg compatibility, no effect)")
    .option("--show-version", "(accepted for borg compatibility, no effect)")
    .option("--bypass-lock", "(accepted for borg compatibility, no effect)")
    .option("--consider-part-files", "(accepted for borg compatibility, no effect)")
    .option("--remote-path <path>", "(accepted for borg compatibility, no effect)")
    .option("--rsh <rsh>", "(accepted for borg compatibility, no effect)")
    .option("--upload-ratelimit <rate>", "(accepted for borg compatibility, no effect)")
    .option("--remote-ratelimit <rate>", "(accepted for borg compatibility, no effect)")
    .option("--upload-buffer <mib>", "(accepted for borg compatibility, no effect)")
    .option("--remote-buffer <mib>", "(accepted for borg compatibility, no effect)")
    .option("--debug-profile <file>", "(accepted for borg compatibility, no effect)")
    .option("--daemon-socket <path>", "hand the connection to the `burg socket` daemon listening at PATH (same user or root), with these restrictions; serve it here when none runs")
    .example("  command=\"burg serve --restrict-to-repository /srv/borg/alice --permissions no-delete\",restrict ssh-ed25519 AAAA...")
    .action(function (this: CAC) {
      // cac has validated the options; their values are taken from the raw words.
      return runServe(parseServeArgv(this.rawArgs.slice(2)), {
        env: process.env,
        cwd: process.cwd(),
        argv: process.argv,
        openRepository,
        serve: serveStdio,
      });
    });
}
