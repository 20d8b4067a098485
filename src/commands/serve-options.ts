// The serve options shared by every command that serves sessions (`burg socket`, `burg pull`):
// the same restrictions, permissions, quota, umask, lock wait and log options as `burg serve`,
// registered the same way and turned into a session configuration by serve.ts's own parsing
// (serveSettings), so all serving commands agree on what an option means.
//
// Values are read from the raw command line (serve.ts parseServeArgv, and rawOptions() here for
// each command's own options): cac turns numeric-looking values into numbers ("0600" -> 600)
// and fills absent list options with [undefined], so it is used only for help and to reject
// unknown options.
//
// SSH_ORIGINAL_COMMAND is ignored here: it belongs to an sshd forced command, and these
// commands are never one.

import type { OpenRepository } from "../rpc/backend.ts";
import { normalizeDebugTopic } from "../rpc/policy.ts";
import type { SessionConfig } from "../rpc/session.ts";
import { log } from "../util/log.ts";
import { parseServeArgv, pathContext, recordedOptions, serveSettings, sysinfo, type ServeCliOptions, type ServeSettings } from "./serve.ts";
import { localUser, SessionRecorder } from "../journal/recorder.ts";
import type { Who } from "../journal/records.ts";
import type { Logger } from "../util/log.ts";

/** A long-running server sees its alert commands end: a failure is logged as an error. */
function logAlertFailure(logger: Logger) {
  return (exited: Promise<number | null>, record: { session: string; repository: string }) => {
    void exited.then((code) => {
      if (code !== 0) {
        logger.error(
          `alert command for session ${record.session} on ${record.repository} ${code === null ? "could not be started" : `failed with exit status ${code}`} (see ${record.repository}/burg/alerts.log)`,
        );
      }
    });
  };
}

export type Env = Record<string, string | undefined>;

export { addServeOptions } from "./serve.ts";

/**
 * The last value of each of `names` (long options taking a value, "--name value" or
 * "--name=value") in argv, up to a "--". Options not named are skipped with their word only.
 */
export function rawOptions(argv: readonly string[], names: readonly string[]): Map<string, string> {
  const wanted = new Set(names);
  const found = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") break;
    if (!word.startsWith("--")) continue;
    const eq = word.indexOf("=");
    const name = eq > 0 ? word.slice(0, eq) : word;
    if (!wanted.has(name)) continue;
    const value = eq > 0 ? word.slice(eq + 1) : argv[++i];
    if (value !== undefined) found.set(name, value);
  }
  return found;
}

/** serve's options from the raw words (the part before a "--"). */
export function serveOptionsFromArgv(argv: readonly string[]): ServeCliOptions {
  const end = argv.indexOf("--");
  return parseServeArgv(end < 0 ? argv : argv.slice(0, end));
}

export interface ServeContextIO {
  env: Env;
  cwd: string;
  argv: string[];
  openRepository: OpenRepository;
}

export interface ServeContext {
  settings: ServeSettings;
  /** The journal's observer factory for a session of `who`. */
  recorder(who: Who, onOpened?: (path: string) => void): NonNullable<SessionConfig["observe"]>;
  /** A session configuration without its logger (each session gets its own). */
  session: Omit<SessionConfig, "logger">;
}

/** Parse serve options (UsageError on bad values) into settings and a session configuration. */
export function serveContext(options: ServeCliOptions, io: ServeContextIO, command: string): ServeContext {
  const env: Env = { ...io.env };
  delete env.SSH_ORIGINAL_COMMAND;
  const settings = serveSettings(options, env);
  const info = sysinfo(env, io.argv);
  const options_ = recordedOptions(settings);
  const recorder = (who: Who, onOpened?: (path: string) => void) => (logger: Logger) =>
    new SessionRecorder(
      { command, who: { ...who, ...(settings.journal.clientName ? { client_name: settings.journal.clientName } : {}), ...localUser() }, options: options_, alert: settings.journal.alert, onAlert: logAlertFailure(logger), onOpened },
      logger,
    );
  return {
    settings,
    recorder,
    session: {
      openRepository: io.openRepository,
      policy: settings.policy,
      pathContext: pathContext(env, io.cwd),
      defaultLockWait: settings.lockWait,
      sysinfo: () => info,
    },
  };
}

/** Apply the process-wide parts: umask for repository files, and the log level and topics. */
export function applyServeSettings(settings: ServeSettings): void {
  process.umask(settings.umask);
  log.json = false;
  log.setLevel(settings.logLevel);
  log.topics = new Set(settings.debugTopics.map(normalizeDebugTopic));
}
