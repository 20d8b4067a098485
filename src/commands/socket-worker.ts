// One worker thread of `burg socket` (the main thread is in socket.ts): it serves the sessions
// the main thread passes to it, as descriptors, until told to stop.
//
// A worker builds its own serve configuration from the daemon's command line (the same words,
// the same code as the main thread), so nothing but descriptors, numbers and strings crosses
// threads. Each worker is, to the lock files, its own holder: (host, pid, thread id), as if it
// were a separate borg process; sessions in one worker share their repository slots
// (lock/lock.ts) as the sessions of one process always did.
//
// Hand-overs from `burg serve --daemon-socket` (transport/hand-over.ts) get the restrictions of
// the forced command that sent them: its command line and environment go through the same
// serveSettings() as in `burg serve`, and its session logs to its own stderr, in serve's
// format, so that the borg client sees "Remote: ..." lines as before. Only the umask is
// process-wide; a hand-over asking for another umask than the daemon's is refused, and the
// forced command serves that session itself.

import type { Socket } from "bun";
import { SessionRecorder, whoFromEnv } from "../journal/recorder.ts";
import { locksSettled, releaseAllLocks, useMainThreadLocks, type LockReply, type LockRequest } from "../lock/lock.ts";
import { setTableReserveBudget, tableReserveBudgetFor } from "../repository/hashindex.ts";
import { openRepository } from "../repository/repository.ts";
import { normalizeDebugTopic } from "../rpc/policy.ts";
import type { SessionResult } from "../rpc/session.ts";
import { fdSessionStream, growingPipes } from "../transport/fd-stream.ts";
import { ControlReader, decodeHandOver, encodeControl, type HandOverPayload } from "../transport/hand-over.ts";
import { SocketServer } from "../transport/socket-server.ts";
import { handlers, wrapConnection } from "../transport/unix-listener.ts";
import { Logger, log, type LogSink } from "../util/log.ts";
import { peerCredentials } from "../util/libc.ts";
import { closeFd } from "../util/unix-socket.ts";
import { writeSync } from "node:fs";
import { parseServeArgv, pathContext, recordedOptions, serveSettings, sysinfo } from "./serve.ts";
import { applyServeSettings, serveContext, type Env } from "./serve-options.ts";
import { parseSocketArgv } from "./socket.ts";

/** Messages from the main thread. */
export type ToWorker =
  | { kind: "init"; argv: string[]; env: Env; cwd: string; pid: number; uid: number; workers: number }
  | { kind: "connection"; id: number; fd: number; running: number; refuse?: string }
  | { kind: "handover"; id: number; fd: number; fds: number[]; frame: Uint8Array; running: number; refuse?: string }
  | { kind: "shutdown"; timeout: number }
  | { kind: "abort"; reason: string }
  | LockReply;

/** Messages to the main thread. */
export type FromWorker =
  | { kind: "ready" }
  | { kind: "failed"; message: string }
  | { kind: "ended"; id: number; end: SessionResult["end"] | null }
  | { kind: "opened"; path: string }
  | { kind: "stopped" }
  | LockRequest;

const post = (m: FromWorker) => postMessage(m);

/** A logger whose lines go to another process's stderr (a hand-over's fd 2). */
function fdSink(fd: number): LogSink {
  return {
    write(line: string) {
      try {
        writeSync(fd, line);
      } catch {
        // the client's stderr is gone; the session notices on its own stream
      }
    },
  };
}

/** The daemon side of a hand-over's control channel. */
class Control {
  private readonly reader = new ControlReader();
  private socket: Socket<Control> | null = null;
  private goWaiter: ((go: boolean) => void) | null = null;
  private closed = false;
  onLost: () => void = () => {};

  static async open(fd: number): Promise<Control> {
    const c = new Control();
    const connect = Bun.connect as unknown as (o: unknown) => Promise<Socket<Control>>;
    c.socket = await connect({
      fd,
      data: c,
      socket: {
        data: (s: Socket<Control>, chunk: Uint8Array) => s.data.onData(chunk),
        close: (s: Socket<Control>) => s.data.onClose(),
        end: (s: Socket<Control>) => s.data.onClose(),
        error: (s: Socket<Control>) => s.data.onClose(),
      },
    });
    return c;
  }

  private onData(chunk: Uint8Array): void {
    for (const m of this.reader.push(chunk)) if ("go" in m) this.goWaiter?.(true);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.goWaiter?.(false);
    this.onLost();
  }

  /** Offer to take the session; resolves with whether the command let go of its stdio. */
  accept(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.goWaiter = (go) => {
        clearTimeout(timer);
        this.goWaiter = null;
        resolve(go);
      };
      this.send({ accept: true });
    });
  }

  send(m: Parameters<typeof encodeControl>[0]): void {
    if (this.closed) return;
    this.socket?.write(encodeControl(m));
    this.socket?.flush();
  }

  end(): void {
    this.closed = true;
    this.socket?.end();
  }
}

export function socketWorkerMain(): void {
  let server: SocketServer | null = null;
  const lockReply = useMainThreadLocks((m) => post(m));
  let daemonUmask = 0;
  const served = new Set<string>();
  const opened = (path: string) => {
    if (served.has(path)) return;
    served.add(path);
    post({ kind: "opened", path });
  };
  const h = (id: number, running: number, refuse: string | undefined) =>
    handlers((stream) =>
      server!.accept(stream, { id, running, ...(refuse !== undefined ? { refuse } : {}), onEnd: (r) => post({ kind: "ended", id, end: r?.end ?? null }) }),
    );

  const handOver = async (m: Extract<ToWorker, { kind: "handover" }>) => {
    const { id } = m;
    const tag = `burg socket: connection ${id} (hand-over)`;
    let control: Control;
    try {
      control = await Control.open(m.fd);
    } catch (e) {
      for (const f of [...m.fds, m.fd]) closeFd(f);
      log.warning(`${tag}: cannot use its control connection: ${(e as Error).message}`);
      return post({ kind: "ended", id, end: null });
    }
    const refuse = (reason: string, level: "warning" | "info" = "warning") => {
      log[level](`${tag} refused: ${reason}; the forced command serves it itself`);
      control.send({ accept: false, reason });
      control.end();
      for (const f of m.fds) closeFd(f);
      post({ kind: "ended", id, end: null });
    };
    let payload: HandOverPayload;
    let settings: ReturnType<typeof serveSettings>;
    try {
      if (m.fds.length !== 3) throw new Error(`it carried ${m.fds.length} descriptors, not 3 (stdin, stdout, stderr)`);
      payload = decodeHandOver(m.frame);
      settings = serveSettings(parseServeArgv(payload.argv.slice(1)), payload.env);
    } catch (e) {
      return refuse((e as Error).message);
    }
    if (m.refuse !== undefined) return refuse(m.refuse, "info");
    if (payload.umask !== settings.umask || settings.umask !== daemonUmask) {
      const octal = (n: number) => n.toString(8).padStart(4, "0");
      return refuse(`it asks for umask ${octal(settings.umask)}, the daemon runs with ${octal(daemonUmask)}`);
    }
    const [inFd, outFd, errFd] = m.fds as [number, number, number];
    if (!(await control.accept(10_000))) {
      for (const f of m.fds) closeFd(f);
      control.end();
      log.info(`${tag}: the forced command (PID ${payload.pid}) went away before the session started`);
      return post({ kind: "ended", id, end: null });
    }
    const logger = new Logger();
    logger.sink = fdSink(errFd);
    logger.serveText = true;
    logger.setLevel(settings.logLevel);
    logger.topics = new Set(settings.debugTopics.map(normalizeDebugTopic));
    const who = whoFromEnv(payload.env, settings.journal.clientName);
    const recorded = recordedOptions(settings);
    const info = sysinfo(payload.env, [process.argv[0] ?? "burg", ...payload.argv]);
    const fdStream = growingPipes(fdSessionStream(inFd, outFd, undefined, { nonBlocking: true }), [inFd, outFd]);
    const stream = Object.assign(fdStream, {
      end: async () => {
        try {
          await fdStream.flush();
        } catch {
          // the client is gone
        }
        await fdStream.close();
        closeFd(errFd);
      },
      destroy: () => void fdStream.destroy(),
    });
    log.info(`${tag} from PID ${payload.pid}${payload.env.SSH_CONNECTION ? ` (${payload.env.SSH_CONNECTION})` : ""}`);
    let ended = false;
    let running: { abort(reason: string): void } | null = null;
    control.onLost = () => {
      if (!ended) {
        log.warning(`${tag}: the forced command (PID ${payload.pid}) ended; aborting its session`);
        running?.abort("the forced command ended");
      }
    };
    running = server!.accept(stream, {
      id,
      running: m.running,
      logger,
      session: {
        openRepository,
        policy: settings.policy,
        pathContext: pathContext(payload.env, payload.cwd),
        defaultLockWait: settings.lockWait,
        sysinfo: () => info,
        observe: (l) => new SessionRecorder({ command: "serve", who, options: recorded, alert: settings.journal.alert, onOpened: opened }, l),
      },
      onEnd: (r) => {
        ended = true;
        control.send({ exit: r?.exitCode ?? 2 });
        control.end();
        post({ kind: "ended", id, end: r?.end ?? null });
      },
    });
  };

  (globalThis as unknown as { onmessage: (ev: MessageEvent<ToWorker>) => void }).onmessage = (ev: MessageEvent<ToWorker>) => {
    const m = ev.data;
    switch (m.kind) {
      case "init": {
        try {
          // The workers share one process's address space for array buffers (hashindex.ts).
          setTableReserveBudget(tableReserveBudgetFor(m.workers));
          const options = parseSocketArgv(m.argv.slice(1));
          const ctx = serveContext(options.serve, { env: m.env, cwd: m.cwd, argv: [process.argv[0] ?? "burg", ...m.argv], openRepository }, "socket");
          applyServeSettings(ctx.settings);
          daemonUmask = ctx.settings.umask;
          server = new SocketServer({
            session: ctx.session,
            logger: log,
            name: "burg socket",
            maxSessions: null,
            // a session's end is logged (and its exit status sent) once its locks are released
            afterSession: locksSettled,
            observe: (stream, logger) => {
              const peer = stream.fd === undefined ? null : peerCredentials(stream.fd);
              return ctx.recorder(peer === null ? {} : { peer }, opened)(logger);
            },
          });
          post({ kind: "ready" });
        } catch (e) {
          post({ kind: "failed", message: (e as Error).message });
        }
        break;
      }
      case "connection":
        wrapConnection(m.fd, h(m.id, m.running, m.refuse)).catch((e: unknown) => {
          log.error(`burg socket: cannot use accepted connection ${m.id}: ${(e as Error).message}`);
          post({ kind: "ended", id: m.id, end: null });
        });
        break;
      case "handover":
        void handOver(m).catch((e: unknown) => {
          log.error(`burg socket: hand-over ${m.id} failed: ${(e as Error)?.stack ?? String(e)}`);
          post({ kind: "ended", id: m.id, end: null });
        });
        break;
      case "shutdown":
        void (server?.shutdown(m.timeout) ?? Promise.resolve()).then(() => {
          releaseAllLocks();
          post({ kind: "stopped" });
        });
        break;
      case "abort":
        server?.abortAll(m.reason);
        break;
      case "lock-reply":
        lockReply(m);
        break;
    }
  };
}
