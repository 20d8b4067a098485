// `burg socket`: a long-running server on a UNIX socket, the built-in replacement for
// `socat UNIX-LISTEN:…,fork EXEC:"borg serve …"` and for hand-written systemd units around
// `borg serve`. Every connection is its own serve session with this command's restrictions,
// or, handed over by a `burg serve --daemon-socket` forced command, with that command's;
// sessions run concurrently in one process, on worker threads (socket-pool.ts).
//
// The socket comes from systemd when LISTEN_FDS/LISTEN_PID pass one (Accept=no units), else it
// is created at --socket (default: borg 2's runtime-dir convention, see transport/socket-paths.ts).
// SIGTERM/SIGINT/SIGHUP stop accepting at once, let running sessions finish for up to
// --shutdown-timeout seconds and then abort them (rolled back, locks released); a second
// signal aborts them at once.

import type { CAC } from "cac";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { openRepository } from "../repository/repository.ts";
import type { OpenRepository } from "../rpc/backend.ts";
import { checkSocketPath, defaultSocketPath, formatMode, parseMode, pidFileFor } from "../transport/socket-paths.ts";
import { checkListenFds, listenFds, unsetListenEnv } from "../transport/systemd.ts";
import { adoptListeningSockets, createSocketListener, type Listener, type ListenerEvents } from "../transport/unix-listener.ts";
import { availableParallelism } from "node:os";
import { closeFd } from "../util/unix-socket.ts";
import { SessionPool } from "./socket-pool.ts";
import { log } from "../util/log.ts";
import { peerCredentials } from "../util/libc.ts";
import { releaseStartupPages } from "../util/resident.ts";
import { prometheus, repositoryStatus, type RepositoryStatus } from "../journal/status.ts";
import { addServeOptions, applyServeSettings, rawOptions, serveContext, serveOptionsFromArgv, type Env } from "./serve-options.ts";
import type { ServeCliOptions } from "./serve.ts";

/** burg socket's own options (serve's are in `serve`). */
export interface SocketCliOptions {
  serve: ServeCliOptions;
  socket?: string;
  pidFile?: string;
  mode?: string;
  group?: string;
  maxSessions?: string;
  shutdownTimeout?: string;
  metricsListen?: string;
  metricsRepository: string[];
  workers?: string;
}

/** --workers N, or one worker per CPU the process may use. */
export function workerCount(text: string | undefined): number {
  if (text === undefined) return Math.max(1, availableParallelism());
  if (!/^[0-9]+$/.test(text.trim()) || parseInt(text, 10) < 1 || parseInt(text, 10) > 1024) {
    throw new UsageError(`argument --workers: expected a number from 1 to 1024: '${text}'`);
  }
  return parseInt(text, 10);
}

/** Read the options from the words after the program name. */
export function parseSocketArgv(argv: readonly string[]): SocketCliOptions {
  const raw = rawOptions(argv, ["--socket", "--pid-file", "--mode", "--group", "--max-sessions", "--shutdown-timeout", "--metrics-listen", "--workers"]);
  const metricsRepository: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w === "--") break;
    if (w === "--metrics-repository" && argv[i + 1] !== undefined) metricsRepository.push(argv[++i]!);
    else if (w.startsWith("--metrics-repository=")) metricsRepository.push(w.slice("--metrics-repository=".length));
  }
  return {
    serve: serveOptionsFromArgv(argv),
    socket: raw.get("--socket"),
    pidFile: raw.get("--pid-file"),
    mode: raw.get("--mode"),
    group: raw.get("--group"),
    maxSessions: raw.get("--max-sessions"),
    shutdownTimeout: raw.get("--shutdown-timeout"),
    metricsListen: raw.get("--metrics-listen"),
    metricsRepository,
    workers: raw.get("--workers"),
  };
}

export const DEFAULT_SHUTDOWN_TIMEOUT = 30;

export interface SocketIO {
  env: Env;
  cwd: string;
  argv: string[];
  pid: number;
  uid: number;
  openRepository: OpenRepository;
  /** Lines for the operator (start and stop), whatever the log level. */
  notice(line: string): void;
  /**
   * Resolves with a reason when the server is asked to stop; `onRepeat` is called for a
   * second request while stopping (it aborts the remaining sessions).
   */
  stopRequested(onRepeat: () => void): Promise<string>;
}

function nonNegativeNumber(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text.trim())) throw new UsageError(`argument --${name}: invalid number: '${text}'`);
  return parseFloat(text);
}

/** A group given by name or number, resolved through NSS (getent) or /etc/group. */
export function resolveGroup(group: string): number {
  if (/^[0-9]+$/.test(group)) return parseInt(group, 10);
  const fromLine = (line: string): number | null => {
    const f = line.split(":");
    return f.length >= 3 && f[0] === group && /^[0-9]+$/.test(f[2]!) ? parseInt(f[2]!, 10) : null;
  };
  const r = spawnSync("getent", ["group", group], { encoding: "utf8" });
  if (r.status === 0) {
    const gid = fromLine(r.stdout.trim().split("\n")[0] ?? "");
    if (gid !== null) return gid;
  }
  try {
    for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
      const gid = fromLine(line);
      if (gid !== null) return gid;
    }
  } catch {
    // no group file
  }
  throw new UsageError(`argument --group: no such group: '${group}'`);
}

export async function runSocket(options: SocketCliOptions, io: SocketIO): Promise<number> {
  const ctx = serveContext(options.serve, io, "socket");
  const metricsAddress = options.metricsListen === undefined ? null : parseListenAddress(options.metricsListen);
  // Repositories whose status /metrics reports: those named, and every one a session opened.
  const served = new Set(options.metricsRepository.map((p) => resolve(io.cwd, p)));
  const mode = parseMode(options.mode ?? "0600");
  const groupText = options.group;
  const gid = groupText === undefined ? null : resolveGroup(groupText);
  const maxText = options.maxSessions;
  let maxSessions: number | null = null;
  if (maxText !== undefined) {
    if (!/^[0-9]+$/.test(maxText.trim()) || parseInt(maxText, 10) < 1) {
      throw new UsageError(`argument --max-sessions: expected a positive integer: '${maxText}'`);
    }
    maxSessions = parseInt(maxText, 10);
  }
  const shutdownTimeout = nonNegativeNumber("shutdown-timeout", options.shutdownTimeout, DEFAULT_SHUTDOWN_TIMEOUT);
  const pidFileOption = options.pidFile;
  const fds = listenFds(io.env, io.pid);
  applyServeSettings(ctx.settings);

  const workers = workerCount(options.workers);
  const pool = await SessionPool.start({
    workers,
    argv: io.argv.slice(2),
    env: io.env,
    cwd: io.cwd,
    pid: io.pid,
    uid: io.uid,
    maxSessions,
    logger: log,
    onOpened: (path) => served.add(path),
  });
  // Listen for stop requests before the socket exists: a signal during start-up must not kill
  // the process with the socket file left behind.
  let stopping = false;
  const stopRequest = io.stopRequested(() => {
    if (stopping) pool.abortAll("second stop request");
  });
  let fatalAccept: ((reason: string) => void) | null = null;
  const fatalAcceptPromise = new Promise<string>((resolve) => (fatalAccept = resolve));
  const events: ListenerEvents = {
    onConnection: (fd) => pool.connection(fd),
    onHandOver(fd, fds, frame) {
      const peer = peerCredentials(fd);
      if (peer === null || (peer.uid !== io.uid && peer.uid !== 0)) {
        log.warning(
          `burg socket: hand-over refused: it comes from ${peer === null ? "an unknown process" : `PID ${peer.pid}, uid ${peer.uid}`}; only uid ${io.uid} and root may hand over sessions`,
        );
        for (const f of [...fds, fd]) closeFd(f);
        return;
      }
      pool.handOver(fd, fds, frame);
    },
    onBadHandOver: (reason) => log.warning(`burg socket: broken hand-over: ${reason}`),
    onAcceptError(message: string, fatal: boolean) {
      log.error(`burg socket: ${message}${fatal ? "; no longer accepting connections" : ""}`);
      if (fatal) fatalAccept?.(message);
    },
  };

  let listener: Listener;
  if (fds !== null) {
    unsetListenEnv(io.env);
    checkListenFds(fds);
    if (options.socket !== undefined) log.warning("--socket is ignored: systemd passed the listening socket");
    const pidFile = pidFileOption === undefined ? null : resolve(io.cwd, pidFileOption);
    listener = await adoptListeningSockets(fds, pidFile, events);
  } else {
    const path = checkSocketPath(options.socket ?? defaultSocketPath(io.env, io.uid), io.cwd);
    const pidFile = pidFileOption === undefined ? pidFileFor(path) : resolve(io.cwd, pidFileOption);
    listener = await createSocketListener({ path, mode, gid, pidFile }, events, (m) => log.warning(`burg socket: ${m}`));
  }
  const limits = [
    fds === null ? `mode ${formatMode(mode)}${gid !== null ? `, group ${gid}` : ""}` : null,
    maxSessions !== null ? `at most ${maxSessions} sessions` : null,
    `${workers} worker${workers === 1 ? "" : "s"}`,
    `permissions ${ctx.settings.policy.permissions}`,
  ].filter((x) => x !== null);
  io.notice(`burg socket: PID ${io.pid}, listening on ${listener.description} (${limits.join(", ")})`);

  let metrics: { stop(): void } | null = null;
  if (metricsAddress !== null) {
    try {
      metrics = serveMetrics(metricsAddress, () => [...served].sort());
    } catch (e) {
      await listener.close();
      await pool.shutdown(0);
      throw new UsageError(`argument --metrics-listen: cannot listen on ${options.metricsListen}: ${(e as Error).message}`);
    }
    io.notice(`burg socket: metrics on http://${metricsAddress.hostname.includes(":") ? `[${metricsAddress.hostname}]` : metricsAddress.hostname}:${metricsAddress.port}/metrics`);
  }

  // the daemon's start-up is over: give back what only it touched (see util/resident.ts)
  releaseStartupPages();

  const reason = await Promise.race([stopRequest, fatalAcceptPromise]);
  metrics?.stop();
  stopping = true;
  io.notice(`burg socket: ${reason}; not accepting new connections`);
  await listener.close();
  await pool.shutdown(shutdownTimeout);
  const ended = pool.ended;
  io.notice(`burg socket: stopped (${ended.eof} sessions ended normally, ${ended.aborted} aborted, ${ended["connection-lost"]} lost, ${ended["io-error"]} failed)`);
  return 0;
}

/** "[HOST:]PORT" (HOST defaults to localhost; "[::1]:9469" for IPv6). */
export function parseListenAddress(text: string): { hostname: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new UsageError(`argument --metrics-listen: expected [HOST:]PORT, e.g. 9469 or 127.0.0.1:9469: '${text}'`);
  const host = m[1] === undefined ? "127.0.0.1" : m[1].replace(/^\[|\]$/g, "");
  return { hostname: host === "localhost" ? "127.0.0.1" : host, port };
}

/** GET /metrics: `burg status --prometheus` of the repositories, computed per request. */
function serveMetrics(address: { hostname: string; port: number }, repositories: () => string[]): { stop(): void } {
  const server = Bun.serve({
    hostname: address.hostname,
    port: address.port,
    fetch(req) {
      const url = new URL(req.url);
      if (url.pathname !== "/metrics") return new Response("burg socket: see /metrics\n", { status: 404 });
      if (req.method !== "GET" && req.method !== "HEAD") return new Response("method not allowed\n", { status: 405 });
      const statuses: RepositoryStatus[] = [];
      const failed: string[] = [];
      for (const path of repositories()) {
        try {
          statuses.push(repositoryStatus(path));
        } catch {
          failed.push(path);
        }
      }
      return new Response(prometheus(statuses, failed), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
    },
  });
  return { stop: () => void server.stop(true) };
}

/** SIGTERM/SIGINT/SIGHUP as stop requests (the process stays alive until the shutdown is done). */
export function signalStop(onRepeat: () => void): Promise<string> {
  return new Promise((resolve) => {
    let first = true;
    const handler = (signal: NodeJS.Signals) => {
      if (first) {
        first = false;
        resolve(`received ${signal}`);
      } else {
        onRepeat();
      }
    };
    for (const s of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(s, handler);
  });
}

export function register(cli: CAC): void {
  const command = cli
    .command("socket", "Serve repositories on a UNIX socket, one session per connection (like socat + borg serve)")
    .usage(
      "socket [--socket PATH] [--pid-file PATH] [--mode 0600] [--group G] [serve options]\n\n" +
        "A long-running server: every connection is a `burg serve` session with the options given\n" +
        "here. Clients connect with BORG_RSH=\"burg connect PATH\" and an ssh:// URL with any host,\n" +
        "e.g. borg list ssh://burg/srv/borg/repo (or through `ssh -R` from another machine).\n" +
        "Sessions run on --workers threads (default: one per CPU).\n\n" +
        "ssh forced commands `burg serve --daemon-socket PATH ...` of the same user (or root) hand\n" +
        "their sessions to this server, which serves each with that command's own restrictions.\n\n" +
        "Default socket: $BORG_RUNTIME_DIR/borg.sock, else $BORG_BASE_DIR/.cache/borg/borg.sock, else\n" +
        "$XDG_RUNTIME_DIR/borg/borg.sock (/run/user/UID/borg/borg.sock); the PID file is next to it\n" +
        "(.sock replaced by .pid). The directory must not be writable by others. A stale socket left\n" +
        "by a dead listener is replaced; a live one is refused. Both files are removed on exit.\n\n" +
        "systemd: with LISTEN_FDS/LISTEN_PID (a socket unit with Accept=no) the passed socket is\n" +
        "served and nothing is created. For Accept=yes units use `burg serve` as the service.\n\n" +
        "SIGTERM/SIGINT stop accepting, let sessions finish for --shutdown-timeout seconds, then\n" +
        "abort them (rolled back, locks released); a second signal aborts at once.\n\n" +
        "Exit codes: 0 after a stop request, 2 on errors.",
    )
    .option("--socket <path>", "socket path (default: borg's runtime dir, see above)")
    .option("--pid-file <path>", "PID file (default: the socket path with .pid instead of .sock)")
    .option("--mode <mode>", "permission bits of the socket (octal, default 0600)")
    .option("--group <group>", "group owning the socket (name or number); use with --mode 0660")
    .option("--max-sessions <n>", "serve at most N sessions at once; further connections are closed and logged")
    .option("--workers <n>", "serve sessions on N worker threads (default: one per CPU)")
    .option("--shutdown-timeout <seconds>", `on SIGTERM/SIGINT wait this long for sessions to finish (default ${DEFAULT_SHUTDOWN_TIMEOUT})`)
    .option("--metrics-listen <[host:]port>", "serve `burg status --prometheus` of the repositories at http://HOST:PORT/metrics (HOST: localhost)")
    .option("--metrics-repository <path>", "a repository to report on /metrics before any session opened it (repeatable)", { type: [String] });
  addServeOptions(command)
    .example("  burg socket --socket /run/burg/repo.sock --restrict-to-repository /srv/borg/repo --permissions no-delete")
    .action(function (this: CAC) {
      // cac has validated the options; their values are taken from the raw words.
      return runSocket(parseSocketArgv(this.rawArgs.slice(2)), {
        env: process.env,
        cwd: process.cwd(),
        argv: process.argv,
        pid: process.pid,
        uid: process.getuid?.() ?? 0,
        openRepository,
        notice: (line) => {
          try {
            process.stderr.write(line + "\n");
          } catch {
            // stderr gone: keep serving
          }
        },
        stopRequested: signalStop,
      });
    });
}
