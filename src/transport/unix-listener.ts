// The listening side of `burg socket` (and of `burg pull`'s private socket): a UNIX stream
// socket that is either created here at a path, or adopted from systemd (Accept=no). Either
// way the accepting is done by fd-acceptor.ts, which hands every connection to the caller as a
// descriptor (so `burg socket` can pass it to the worker thread that serves it) and recognises
// hand-overs from `burg serve --daemon-socket`; streamEvents() wraps connections as SocketStreams
// for callers that serve them in this thread.
//
// Creating a socket safely:
// - The directory holding it must not be writable by others (not world-writable, owned by us
//   or root), or someone could swap the socket for their own. A missing directory is created
//   0700 (0710 when a group is to reach the socket, with that group).
// - An existing socket file is replaced only when it is stale: nobody accepts on it and the PID
//   file (if any) names no live process. A live listener is refused with a message naming it.
//   Anything that is not a socket is never removed.
// - The socket is bound with umask 0177, so it never exists with more access than owner
//   read/write; then it gets its group and finally the requested mode.
// - The PID file is written after the socket exists; both are removed on close(), each only if
//   it is still ours (same inode, same PID).
//
// Adopted sockets (systemd) belong to the service manager: they are never unlinked or chmod'ed,
// and a PID file is written only when asked for.

import type { FdSocketOptions, Socket } from "bun";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as fsc,
  accessSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  type Stats,
} from "node:fs";
import { dirname } from "node:path";
import { BurgError } from "../errors.ts";
import { pidExists } from "../lock/liveness.ts";
import { closeFd, listenUnix, UnixSocketError } from "../util/unix-socket.ts";
import { FdAcceptor } from "./fd-acceptor.ts";
import { SocketStream, socketHandlers } from "./socket-stream.ts";
import { formatMode } from "./socket-paths.ts";

/** burg's own refusals to start listening: exit code 2 with the message. */
export class ListenerError extends BurgError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super("ListenerError", message, [message], opts);
  }
}

export interface CreateSocketOptions {
  /** Absolute path of the socket. */
  path: string;
  /** Permission bits of the socket (owner needs rw). */
  mode: number;
  /** Group to give the socket (and a directory created for it); null keeps ours. */
  gid: number | null;
  /** PID file to write, or null for none. */
  pidFile: string | null;
}

export interface ListenerEvents {
  /** A new connection, as a descriptor (non-blocking, close-on-exec) that is now the caller's. */
  onConnection(fd: number): void;
  /** A hand-over (hand-over.ts) and the descriptors it carried; without this they are refused. */
  onHandOver?(fd: number, fds: number[], frame: Uint8Array): void;
  onBadHandOver?(reason: string): void;
  /** Trouble accepting (out of descriptors, ...); fatal means no more connections will come. */
  onAcceptError(message: string, fatal: boolean): void;
}

/** Events for a caller that serves connections in this thread, as SocketStreams. */
export function streamEvents(onStream: (stream: SocketStream) => void, onAcceptError: (message: string, fatal: boolean) => void): ListenerEvents {
  const h = handlers(onStream);
  return {
    onConnection(fd) {
      wrapConnection(fd, h).catch((e: unknown) => onAcceptError(`cannot use accepted connection: ${(e as Error).message}`, false));
    },
    onAcceptError,
  };
}

/** Wrap an accepted connection's descriptor in a SocketStream (in the calling thread). */
export function wrapConnection(fd: number, h: ReturnType<typeof handlers>): Promise<void> {
  return connectFd({ fd, socket: h }).then(
    () => undefined,
    (e: unknown) => {
      try {
        closeSync(fd);
      } catch {
        // Bun closed it already
      }
      throw e;
    },
  );
}

export interface Listener {
  /** For log lines: the socket path, or the adopted descriptors. */
  readonly description: string;
  /** Stop accepting; remove our socket and PID file. Open connections are not touched. */
  close(): Promise<void>;
}

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return null;
    throw new ListenerError(`cannot inspect ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** The PID in a PID file, or null when there is none (missing, empty, garbage). */
export function readPidFile(path: string): number | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
  return /^[0-9]+$/.test(text) ? parseInt(text, 10) : null;
}

/** Whether something accepts connections on the socket at `path` (false: refused or gone). */
export async function isSocketLive(path: string): Promise<boolean> {
  try {
    const s = await Bun.connect({ unix: path, socket: { data() {} } });
    s.end();
    return true;
  } catch {
    return false;
  }
}

/** Make sure the socket's directory exists and cannot be written by others. */
function prepareDirectory(dir: string, gid: number | null, uid: number): void {
  let st = lstatOrNull(dir);
  if (st === null) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (gid !== null) {
        chownSync(dir, -1, gid);
        chmodSync(dir, 0o710);
      }
    } catch (e) {
      throw new ListenerError(
        `cannot create the socket directory ${dir}: ${(e as Error).message}. ` +
          "Create it (not writable by others) or choose another place with --socket.",
        { cause: e },
      );
    }
    st = lstatSync(dir);
  }
  if (!st.isDirectory()) throw new ListenerError(`${dir} is not a directory`);
  if ((st.mode & 0o002) !== 0) {
    throw new ListenerError(
      `refusing to create a socket in ${dir}: the directory is world-writable, so anyone could replace ` +
        "the socket. Use a directory only the server's user (and group) can write, e.g. /run/burg.",
    );
  }
  if (st.uid !== uid && st.uid !== 0) {
    throw new ListenerError(
      `refusing to create a socket in ${dir}: the directory belongs to uid ${st.uid}, not to us (uid ${uid}) or root.`,
    );
  }
}

/** Remove a stale socket file at `path`, or throw when it is in use or not ours to remove. */
async function clearSocketPath(path: string, pidFile: string | null, log: (m: string) => void): Promise<void> {
  const st = lstatOrNull(path);
  if (st === null) return;
  if (!st.isSocket()) {
    throw new ListenerError(`${path} exists and is not a socket; refusing to replace it.`);
  }
  const pid = pidFile === null ? null : readPidFile(pidFile);
  const pidAlive = pid !== null && pid !== process.pid && pidExists(pid);
  try {
    accessSync(path, fsc.W_OK);
  } catch {
    throw new ListenerError(`${path} exists and we may not connect to it; refusing to replace it.`);
  }
  if (await isSocketLive(path)) {
    throw new ListenerError(
      `another server is already listening on ${path}${pidAlive ? ` (PID ${pid})` : ""}. ` +
        "Stop it first, or use another --socket path.",
    );
  }
  if (pidAlive) {
    throw new ListenerError(
      `${path} does not accept connections, but its PID file ${pidFile} names the running process ${pid}. ` +
        "If that process is not a burg listener, remove the PID file and try again.",
    );
  }
  try {
    unlinkSync(path);
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw new ListenerError(`cannot remove the stale socket ${path}: ${(e as Error).message}`, { cause: e });
  }
  log(`removed stale socket ${path}${pid !== null ? ` (left by PID ${pid}, which is gone)` : ""}`);
}

function writePidFile(path: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    throw new ListenerError(`cannot write the PID file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

function removePidFileIfOurs(path: string): void {
  if (readPidFile(path) !== process.pid) return;
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

type Conn = SocketStream | undefined;

/** Bun.connect({ fd }) wraps an accepted socket; bun-types 1.3 lacks this overload. */
const connectFd = Bun.connect as unknown as (options: FdSocketOptions<Conn>) => Promise<Socket<Conn>>;

/** Bun socket handlers that make each opened socket a SocketStream and pass it on. */
export function handlers(onStream: (stream: SocketStream) => void) {
  const base = socketHandlers();
  return {
    ...base,
    open(socket: Socket<Conn>) {
      const stream = new SocketStream(socket as Socket<unknown>);
      socket.data = stream;
      onStream(stream);
    },
  };
}

/** A socket burg created at a path. */
class PathListener implements Listener {
  private closed = false;

  constructor(
    private readonly acceptor: FdAcceptor,
    private readonly listenFd: number,
    private readonly path: string,
    private readonly ino: number,
    private readonly pidFile: string | null,
  ) {}

  get description(): string {
    return this.path;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Unlink first, so a new listener can start while our sessions finish.
    const st = lstatOrNull(this.path);
    if (st !== null && st.ino === this.ino) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
    if (this.pidFile !== null) removePidFileIfOurs(this.pidFile);
    await this.acceptor.stop();
    closeFd(this.listenFd);
  }
}

/**
 * Create a listening socket at opts.path (see the file comment for the rules) and start
 * accepting. `log` receives informational lines (a replaced stale socket).
 */
export async function createSocketListener(
  opts: CreateSocketOptions,
  events: ListenerEvents,
  log: (message: string) => void = () => {},
): Promise<Listener> {
  const uid = process.getuid?.() ?? 0;
  prepareDirectory(dirname(opts.path), opts.gid, uid);
  await clearSocketPath(opts.path, opts.pidFile, log);
  let listenFd: number;
  const oldUmask = process.umask(0o177);
  try {
    listenFd = listenUnix(opts.path);
  } catch (e) {
    const code = e instanceof UnixSocketError ? e.code : errnoCode(e);
    throw new ListenerError(
      code === "EADDRINUSE"
        ? `${opts.path} was created by someone else while we started; another listener is probably starting there.`
        : `cannot listen on ${opts.path}: ${(e as Error).message}`,
      { cause: e },
    );
  } finally {
    process.umask(oldUmask);
  }
  let ino: number;
  try {
    if (opts.gid !== null) chownSync(opts.path, -1, opts.gid);
    chmodSync(opts.path, opts.mode);
    ino = lstatSync(opts.path).ino;
    if (opts.pidFile !== null) writePidFile(opts.pidFile);
  } catch (e) {
    closeFd(listenFd);
    try {
      unlinkSync(opts.path);
    } catch {
      // gone already
    }
    if (e instanceof ListenerError) throw e;
    throw new ListenerError(
      `cannot set up ${opts.path} (mode ${formatMode(opts.mode)}${opts.gid !== null ? `, group ${opts.gid}` : ""}): ${(e as Error).message}`,
      { cause: e },
    );
  }
  const acceptor = new FdAcceptor([listenFd], acceptorEvents(events));
  await acceptor.ready();
  return new PathListener(acceptor, listenFd, opts.path, ino, opts.pidFile);
}

/** Listening sockets handed over by systemd (or anything that speaks LISTEN_FDS). */
class AdoptedListener implements Listener {
  private closed = false;

  constructor(
    private readonly acceptor: FdAcceptor,
    private readonly pidFile: string | null,
    private readonly fds: number[],
  ) {}

  get description(): string {
    return `file descriptor${this.fds.length > 1 ? "s" : ""} ${this.fds.join(", ")} from systemd`;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pidFile !== null) removePidFileIfOurs(this.pidFile);
    await this.acceptor.stop();
  }
}

function errnoName(errno: number): string {
  const names: Record<number, string> = {
    9: "EBADF (not an open descriptor)",
    12: "ENOMEM",
    22: "EINVAL (not a listening socket)",
    23: "ENFILE (too many open files in the system)",
    24: "EMFILE (too many open files)",
    88: "ENOTSOCK (not a socket)",
    95: "EOPNOTSUPP (not a stream socket)",
    105: "ENOBUFS",
  };
  return names[errno] ?? (errno < 0 ? "could not load libc for accept4()" : `errno ${errno}`);
}

function acceptorEvents(events: ListenerEvents): ConstructorParameters<typeof FdAcceptor>[1] {
  return {
    onConnection: (fd) => events.onConnection(fd),
    ...(events.onHandOver ? { onHandOver: events.onHandOver.bind(events) } : {}),
    onBadHandOver: (reason) => events.onBadHandOver?.(reason),
    onError(listenFd, errno, fatal) {
      events.onAcceptError(`accepting on fd ${listenFd} failed: ${errnoName(errno)}`, fatal);
    },
  };
}

/** Accept on sockets passed by systemd. */
export async function adoptListeningSockets(
  fds: number[],
  pidFile: string | null,
  events: ListenerEvents,
): Promise<Listener> {
  let listener: AdoptedListener | null = null;
  const inner = acceptorEvents(events);
  const acceptor = new FdAcceptor(fds, {
    ...inner,
    onConnection(fd) {
      if (listener === null || listener.isClosed) {
        closeSync(fd);
        return;
      }
      inner.onConnection(fd);
    },
  });
  listener = new AdoptedListener(acceptor, pidFile, fds);
  await acceptor.ready();
  if (pidFile !== null) writePidFile(pidFile);
  return listener;
}
