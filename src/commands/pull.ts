// `burg pull`: a pull-mode backup in one command, run on the backup server.
//
//   burg pull --repo /srv/backup/vps root@vps.example.com -- create --stats ::'{hostname}-{now}' /etc
//
// burg serves --repo on a private socket (a fresh 0700 directory; the same session code as
// `burg socket`, restricted to exactly that repository, --permissions no-delete unless told
// otherwise), opens one ssh connection to the client that forwards the socket to a fresh path
// there, and runs borg on the client with BORG_REPO and BORG_RSH pointing at it (see
// ssh/remote-script.ts). borg's output streams to ours; burg exits with borg's exit code, or 2
// with a message for its own failures (ssh authentication, refused forwarding, borg missing,
// repository not allowed).
//
// The passphrase (BORG_PASSPHRASE, BORG_PASSCOMMAND or BORG_PASSPHRASE_FD here, on the server)
// travels inside the ssh channel: never on a command line or in an environment on either side.
//
// With --borgmatic, borg's arguments are the whole command line (borgmatic's local_path) and the
// settings come from BURG_PULL_HOST, BURG_PULL_REPO and BURG_PULL_OPTIONS.

import type { CAC } from "cac";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { EXIT_ERROR, PasscommandFailure, UsageError } from "../errors.ts";
import { openRepository } from "../repository/repository.ts";
import type { OpenRepository } from "../rpc/backend.ts";
import { shlexSplit } from "../rpc/policy.ts";
import { sshArgv } from "../ssh/argv.ts";
import { classifyPull } from "../ssh/outcome.ts";
import { SshProcess } from "../ssh/process.ts";
import { REMOTE_COMMAND, remoteScript, scriptPreamble } from "../ssh/remote-script.ts";
import { SocketServer } from "../transport/socket-server.ts";
import { MAX_SOCKET_PATH_BYTES } from "../transport/socket-paths.ts";
import { createSocketListener, streamEvents } from "../transport/unix-listener.ts";
import { log } from "../util/log.ts";
import { borgmaticArgv, parsePullArgv, pullRepoUrl, readLocalFile, type PullArgs } from "./pull-args.ts";
import { applyServeSettings, serveContext, type Env } from "./serve-options.ts";

/** After ssh ends, how long sessions may take to finish before they are aborted (seconds). */
const DEFAULT_SESSION_GRACE = 10;
/** After an interrupt, how long borg on the client gets to notice and exit before ssh is ended. */
const INTERRUPT_GRACE_MS = 5000;

/**
 * Variables of ours that borg on the client gets too: answers to borg's questions and
 * behaviour switches, never paths of this machine and never secrets.
 */
export function forwardedEnv(env: Env): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if (
      /^BORG_[A-Z_]*(_IS_OK|_I_KNOW_WHAT_I_AM_DOING)$/.test(k) ||
      ["BORG_DISPLAY_PASSPHRASE", "BORG_FILES_CACHE_TTL", "BORG_FILES_CACHE_SUFFIX", "BORG_HOSTNAME_IS_UNIQUE", "BORG_WORKAROUNDS"].includes(k)
    ) {
      out.push([k, v]);
    }
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The passphrase to give borg on the client, the way borg itself finds one: BORG_PASSPHRASE,
 * else the output of BORG_PASSCOMMAND (run here, without a shell), else what BORG_PASSPHRASE_FD
 * delivers; null when none is set.
 */
export function localPassphrase(env: Env): string | null {
  if (env.BORG_PASSPHRASE !== undefined) return env.BORG_PASSPHRASE;
  if (env.BORG_PASSCOMMAND !== undefined) {
    let argv: string[];
    try {
      argv = shlexSplit(env.BORG_PASSCOMMAND);
    } catch (e) {
      throw new PasscommandFailure((e as Error).message);
    }
    if (argv.length === 0) throw new PasscommandFailure("empty command");
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["inherit", "pipe", "inherit"] });
    if (r.error) throw new PasscommandFailure(r.error.message);
    if (r.status !== 0) throw new PasscommandFailure(`exit status ${r.status ?? r.signal}`);
    return r.stdout.replace(/\n+$/, "");
  }
  if (env.BORG_PASSPHRASE_FD !== undefined) {
    const fd = parseInt(env.BORG_PASSPHRASE_FD, 10);
    if (!Number.isInteger(fd) || fd < 0) return null;
    try {
      return readFileSync(fd, "utf8").replace(/\n+$/, "");
    } catch (e) {
      throw new UsageError(`cannot read the passphrase from BORG_PASSPHRASE_FD=${fd}: ${(e as Error).message}`);
    }
  }
  return null;
}

export interface PullIO {
  env: Env;
  cwd: string;
  argv: string[];
  openRepository: OpenRepository;
  /** What borg on the client may read after the script (our stdin). */
  input: AsyncIterable<Uint8Array> | null;
  stderr(chunk: Uint8Array | string): void;
  /** Resolves with a signal name when the user interrupts (SIGINT/SIGTERM/SIGHUP). */
  interrupted(): Promise<NodeJS.Signals>;
}

const SIGNO: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** A directory for the private socket, short enough for sun_path. */
function privateDir(env: Env): string {
  const base = env.TMPDIR && Buffer.byteLength(env.TMPDIR) < MAX_SOCKET_PATH_BYTES - 40 ? env.TMPDIR : tmpdir();
  try {
    return mkdtempSync(join(base, "burg-pull-"));
  } catch {
    return mkdtempSync("/tmp/burg-pull-");
  }
}

export async function runPull(args: PullArgs, io: PullIO): Promise<number> {
  const repo = resolve(io.cwd, args.repo);
  const serve = { ...args.serve, restrictToRepository: [repo] };
  // A pulling server does not let its client delete by default; under a time lock (--keep-deleted)
  // deletes are recoverable, so the client's prune and compact may run as usual.
  if (serve.permissions === undefined && !io.env.BORG_REPO_PERMISSIONS) serve.permissions = serve.keepDeleted ? "all" : "no-delete";
  const ctx = serveContext(serve, io, "pull");
  applyServeSettings(ctx.settings);
  let grace = DEFAULT_SESSION_GRACE;
  if (args.shutdownTimeout !== undefined) {
    if (!/^[0-9]+(\.[0-9]+)?$/.test(args.shutdownTimeout)) {
      throw new UsageError(`argument --shutdown-timeout: invalid number: '${args.shutdownTimeout}'`);
    }
    grace = parseFloat(args.shutdownTimeout);
  }
  const passphrase = localPassphrase(io.env);
  // From here on, an interrupt is ours to handle: the private directory and the client's socket
  // must not be left behind.
  let signal: NodeJS.Signals | null = null;
  const interrupted = io.interrupted().then((s) => {
    signal = s;
    return s;
  });

  const dir = privateDir(io.env);
  try {
    const pullHost = args.target.destination;
    const server = new SocketServer({
      session: ctx.session,
      logger: log,
      name: "burg pull",
      maxSessions: null,
      observe: (_stream, logger) => ctx.recorder({ pull_host: pullHost })(logger),
    });
    const listener = await createSocketListener(
      { path: join(dir, "pull.sock"), mode: 0o600, gid: null, pidFile: null },
      streamEvents(
        (stream) => server.accept(stream),
        (message) => log.error(`burg pull: ${message}`),
      ),
    );
    const remoteSocket = `/tmp/burg-pull-${randomBytes(12).toString("hex")}.sock`;
    const script = remoteScript({
      socket: remoteSocket,
      repoUrl: pullRepoUrl(repo),
      borgArgs: args.borgArgs,
      borg: args.remoteBorg,
      burg: args.remoteBurg,
      bridges: args.bridges,
      sudo: args.sudo,
      cwd: args.remoteCwd,
      env: [...forwardedEnv(io.env), ...args.remoteEnv],
      passphrase,
    });
    const argv = sshArgv({
      ssh: args.sshProgram,
      target: args.target,
      remoteSocket,
      localSocket: join(dir, "pull.sock"),
      remoteCommand: REMOTE_COMMAND,
    });
    log.info(
      `burg pull: serving ${repo} (permissions ${ctx.settings.policy.permissions}) to ${args.target.destination} through ${remoteSocket}`,
    );
    log.debug(`burg pull: ${argv.map((a) => (/^[A-Za-z0-9@%+=:,./_-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")}`);
    if (signal !== null) {
      await listener.close();
      return 128 + (SIGNO[signal as NodeJS.Signals] ?? 0);
    }
    const ssh = new SshProcess({
      argv,
      env: io.env,
      preamble: scriptPreamble(script),
      input: io.input,
      stderr: (chunk) => io.stderr(chunk),
    });

    void interrupted.then((s) => {
      io.stderr(`burg pull: ${s}: stopping the backup (its transaction is rolled back)\n`);
      // Closing borg's connection makes borg on the client give up and exit; if it does not,
      // ssh is ended after a while.
      server.abortAll(`interrupted by ${s}`);
      setTimeout(() => ssh.kill("SIGTERM"), INTERRUPT_GRACE_MS).unref();
    });

    const result = await ssh.done;
    await listener.close();
    await server.shutdown(grace);
    if (signal !== null) return 128 + (SIGNO[signal as NodeJS.Signals] ?? 0);
    if (result.spawnError !== null) {
      io.stderr(`burg pull: cannot run ${args.sshProgram}: ${result.spawnError}\n`);
      return EXIT_ERROR;
    }
    const outcome = classifyPull(result.status, result.stderrTail, args.target.destination, repo);
    if (outcome.message !== null) io.stderr(`burg pull: ${outcome.message}\n`);
    return outcome.exitCode;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handler = (s: NodeJS.Signals) => resolve(s);
    for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, handler);
  });
}

const USAGE =
  "pull [options] [ssh options] [user@]client -- BORG_COMMAND [ARGS...]\n" +
  "  $ burg pull --borgmatic BORG_COMMAND [ARGS...]\n\n" +
  "Run on the backup server: back up (or list, extract, prune, check ...) the client over one\n" +
  "ssh connection, the client's borg talking to --repo on this machine. In borg's arguments,\n" +
  "refer to the repository as '::archive' (or leave it out): BORG_REPO is set on the client.\n\n" +
  "  burg pull --repo /srv/backup/vps root@vps.example.com -- create --stats '::{hostname}-{now}' /etc /home\n\n" +
  "Options:\n" +
  "  --repo PATH            the repository on this machine (required); only it is served\n" +
  "  --permissions MODE     all, no-delete (default), write-only or read-only (see burg serve)\n" +
  "  --keep-deleted DUR     time lock: deletes stay recoverable for DUR (burg undelete); the default\n" +
  "                         permissions are then all, so the client's prune and compact work\n" +
  "  --remote-borg PATH     borg on the client (default: borg in its PATH)\n" +
  "  --remote-burg PATH     burg on the client, used as the bridge when present (default: burg)\n" +
  "  --bridge LIST          bridges to try on the client, in order: burg,socat,nc,python3 (default auto)\n" +
  "  --sudo                 run borg as root with sudo -n (sudoers: NOPASSWD:SETENV: /usr/bin/borg)\n" +
  "  --remote-cwd DIR       directory to run borg in on the client (e.g. for extract)\n" +
  "  --remote-env NAME=VAL  set a variable for borg on the client (repeatable; not for secrets)\n" +
  "  --shutdown-timeout S   after ssh ends, how long sessions may take to finish (default 10)\n" +
  "  --ssh PROGRAM          the ssh client (default ssh)\n" +
  "  -o OPTION, -p PORT, -i FILE, -F FILE, -J JUMP   passed to ssh\n" +
  "  --client-name NAME     the client's name in the session journal (default: none; the host is recorded)\n" +
  "  --alert-command CMD    run CMD after a destructive or failed session (see burg serve, README)\n" +
  "  serve options          --append-only, --storage-quota, --umask, --lock-wait, --info, --debug ...\n\n" +
  "Secrets: the passphrase is taken from BORG_PASSPHRASE, BORG_PASSCOMMAND or BORG_PASSPHRASE_FD\n" +
  "here and sent inside the ssh channel; on the client borg reads it once from a private FIFO\n" +
  "(BORG_PASSCOMMAND=\"cat FIFO\"). It is never on a command line or in an environment there, and\n" +
  "the client's sshd needs no AcceptEnv. Answers such as BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK\n" +
  "are passed on to the client's borg.\n\n" +
  "The client needs borg, and one of burg, socat, OpenBSD nc (-N -U) or python3 to reach the\n" +
  "socket; its sshd must allow stream-local forwarding (authorized_keys: restrict,port-forwarding).\n\n" +
  "borgmatic: point local_path at a script that sets BURG_PULL_HOST, BURG_PULL_REPO (the\n" +
  "repository path as in borgmatic's config) and optionally BURG_PULL_OPTIONS, then runs\n" +
  "`exec burg pull --borgmatic \"$@\"` (see contrib/borgmatic/).\n\n" +
  "Exit codes: borg's (0 success, 1 warning, 2 error); 2 with a message for burg's own failures\n" +
  "(ssh authentication, refused forwarding, borg missing on the client, repository not allowed);\n" +
  "128+N when interrupted by signal N.";

export function register(cli: CAC): void {
  cli
    .command("pull [...args]", "Pull-mode backup: run borg on a client over ssh into a repository here")
    .usage(USAGE)
    .allowUnknownOptions()
    .action(function (this: CAC) {
      const words = this.rawArgs.slice(3); // burg, burg, pull
      const env = process.env;
      let args: PullArgs;
      if (words[0] === "--borgmatic") {
        args = parsePullArgv(borgmaticArgv(env, words.slice(1), readLocalFile));
      } else {
        args = parsePullArgv(words);
      }
      return runPull(args, {
        env,
        cwd: process.cwd(),
        argv: process.argv,
        openRepository,
        input: process.stdin as AsyncIterable<Uint8Array>,
        stderr: (chunk) => {
          try {
            process.stderr.write(chunk);
          } catch {
            // stderr gone: the exit code still tells
          }
        },
        interrupted: stopSignal,
      });
    });
}
