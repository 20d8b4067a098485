// `burg socket` processes for interop tests: started directly, or the way systemd starts them
// (a listening socket passed as fd 3 with LISTEN_FDS/LISTEN_PID, Accept=no; or one `burg serve`
// per accepted connection with the connection as stdin and stdout, Accept=yes). The systemd
// stand-ins are small Python programs (python3 comes with borg), so the sockets are made by
// code independent of burg's own. Every process started here is tracked by the test file's
// scope (scope.ts) and killed after the file, also when a test fails.

import type { Subprocess } from "bun";
import { existsSync } from "node:fs";
import { BORG_PYTHON } from "./borg-python.ts";
import { BURG, requireBurg } from "./env.ts";
import type { TestScope } from "./scope.ts";

export interface ServerProcess {
  proc: Subprocess<"ignore", "ignore", "pipe">;
  /** Everything written to stderr so far. */
  log(): string;
  /** Resolves once stderr matches `re`; rejects when the process exits without that. */
  waitForLog(re: RegExp): Promise<void>;
  /** Send a signal and resolve with the exit code and the whole stderr. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number; log: string }>;
  /** Resolves with the exit code once the process ended by itself. */
  exited: Promise<number>;
}

function track(scope: TestScope, proc: Subprocess<"ignore", "ignore", "pipe">): ServerProcess {
  scope.track(proc);
  let text = "";
  let waiters: Array<{ re: RegExp; resolve: () => void; reject: (e: Error) => void }> = [];
  let ended = false;
  const check = () => {
    waiters = waiters.filter((w) => {
      if (w.re.test(text)) w.resolve();
      else if (ended) w.reject(new Error(`process ended without logging ${w.re}; its log:\n${text}`));
      else return true;
      return false;
    });
  };
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) {
      text += decoder.decode(chunk, { stream: true });
      check();
    }
  })();
  const exited = (async () => {
    const code = await proc.exited;
    await reading;
    ended = true;
    check();
    return code;
  })();
  return {
    proc,
    log: () => text,
    waitForLog(re) {
      if (re.test(text)) return Promise.resolve();
      if (ended) return Promise.reject(new Error(`process ended without logging ${re}; its log:\n${text}`));
      return new Promise((resolve, reject) => waiters.push({ re, resolve, reject }));
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const code = await exited;
      return { code, log: text };
    },
    exited,
  };
}

/**
 * Start `argv` in the background (stderr captured as its log), tracked by `scope`; resolves once
 * its log matches `ready` (null: at once), and rejects with the log if it exits first.
 */
async function startServer(
  scope: TestScope,
  argv: string[],
  ready: RegExp | null,
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Promise<ServerProcess> {
  const proc = Bun.spawn(argv, {
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const server = track(scope, proc);
  if (ready) await server.waitForLog(ready);
  return server;
}

/** `dist/burg socket ARGS`, resolved once it listens (rejects with its log if it exits first). */
export async function startBurgSocket(
  scope: TestScope,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; waitUntilListening?: boolean } = {},
): Promise<ServerProcess> {
  requireBurg();
  return startServer(scope, [BURG, "socket", ...args], opts.waitUntilListening === false ? null : /listening on/, opts);
}

/** Quote a word for sh. */
export function shQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** BORG_RSH for a socket: `dist/burg connect SOCKET`. */
export function connectRsh(socketPath: string): string {
  return `${shQuote(BURG)} connect ${shQuote(socketPath)}`;
}

// Accept=no: bind and listen like systemd's socket unit (non-blocking, close-on-exec off for
// the passed copy), put it on fd 3, then exec the service through sh so that LISTEN_PID is the
// service's own pid.
const SYSTEMD_ACCEPT_NO = `
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
s.bind(path)
os.chmod(path, 0o600)
s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.execvp("sh", ["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"'] + sys.argv[2:])
`;

/** `burg socket ARGS` started as systemd starts an Accept=no service for a socket at `socketPath`. */
export async function startSystemdSocketService(
  scope: TestScope,
  socketPath: string,
  args: string[],
  opts: { env?: Record<string, string> } = {},
): Promise<ServerProcess> {
  requireBurg();
  return startServer(scope, [BORG_PYTHON, "-c", SYSTEMD_ACCEPT_NO, socketPath, BURG, "socket", ...args], /listening on/, opts);
}

// Accept=yes: accept connections and start one service process per connection with the
// connection as stdin and stdout (StandardInput=socket), stderr to the service's log file
// (StandardError=journal). Prints "ready" once listening; every service's exit is appended to
// the log as "exit N".
const SYSTEMD_ACCEPT_YES = `
import os, socket, subprocess, sys, threading
path, logfile = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
log = open(logfile, "ab", buffering=0)
print("ready", file=sys.stderr, flush=True)
def watch(p):
    code = p.wait()
    log.write(("exit %d\\n" % code).encode())
while True:
    c, _ = s.accept()
    p = subprocess.Popen(sys.argv[3:], stdin=c.fileno(), stdout=c.fileno(), stderr=log)
    c.close()
    threading.Thread(target=watch, args=(p,), daemon=True).start()
`;

/** A systemd Accept=yes socket at `socketPath` whose service is `burg serve ARGS`. */
export async function startSystemdAcceptYes(
  scope: TestScope,
  socketPath: string,
  logFile: string,
  args: string[],
): Promise<ServerProcess> {
  requireBurg();
  return startServer(scope, [BORG_PYTHON, "-c", SYSTEMD_ACCEPT_YES, socketPath, logFile, BURG, "serve", ...args], /ready/);
}

// A server that is not burg, for the bridge's half-close: reads everything until the client's
// EOF, then answers "got N bytes: <first 20>" and closes.
const HALF_CLOSE_SERVER = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(1)
print("ready", file=sys.stderr, flush=True)
c, _ = s.accept()
data = b""
while True:
    d = c.recv(65536)
    if not d:
        break
    data += d
c.sendall(b"got %d bytes: %s" % (len(data), data[:20]))
c.close()
`;

export async function startHalfCloseServer(scope: TestScope, socketPath: string): Promise<ServerProcess> {
  return startServer(scope, [BORG_PYTHON, "-c", HALF_CLOSE_SERVER, socketPath], /ready/);
}

/** A socket file nobody listens on (bound, never listened, closed): what a killed server leaves. */
export function makeStaleSocket(path: string): void {
  const r = Bun.spawnSync([BORG_PYTHON, "-c", "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
  if (r.exitCode !== 0 || !existsSync(path)) throw new Error(`could not make a stale socket: ${r.stderr.toString()}`);
}

/** Resolves once `cond` holds; throws after `ms` (a hang guard, not a timing assertion). */
export async function waitUntil(cond: () => boolean, what: string, ms = 60000, everyMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}
