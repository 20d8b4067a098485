// Many serve sessions in one process: each connection a listener accepts becomes its own
// Session (rpc/session.ts) with the server's policy, running concurrently with the others.
//
// The accept side never waits for a session: a connection is handed over and the listener goes
// back to accepting, so a slow or stuck client only ever holds up its own session. Limits and
// shutdown live here:
// - maxSessions: a connection beyond the limit is closed at once without a byte written (the
//   client has no stderr to show a message on); the server logs why.
// - shutdown(timeout): stop accepting, give open sessions `timeout` seconds to finish, then
//   abort them, which rolls back their transactions and releases their locks.
// A client that disappears (killed, cut ssh tunnel) ends its input; the session then rolls
// back and closes its repository like any other end.
//
// Logging: every session gets its own logger that writes plain text lines tagged with the
// connection number to the server's stderr. A session switches its logger to JSON after
// `negotiate` because on stdio that stream goes to the client; here nobody but the operator
// reads it, so the JSON switch is ignored.

import { releaseAllLocks } from "../lock/lock.ts";
import { Session, type SessionConfig, type SessionObserver, type SessionResult, type SessionStream } from "../rpc/session.ts";
import { LEVELS, Logger, type LevelName, type LogSink } from "../util/log.ts";
import { SocketStream } from "./socket-stream.ts";

/** A session's logger: text lines with a connection tag, whatever the session asks for. */
export class ConnectionLogger extends Logger {
  constructor(
    private readonly tag: string,
    base: { level: number; topics: Set<string>; sink: LogSink },
  ) {
    super();
    this.level = base.level;
    this.topics = new Set(base.topics);
    this.sink = base.sink;
  }

  override log(level: LevelName, message: string, _name?: string): void {
    if (LEVELS[level] < this.level) return;
    const prefix = level === "WARNING" ? "Warning: " : level === "ERROR" || level === "CRITICAL" ? "Error: " : "";
    this.sink.write(`${this.tag} ${prefix}${message}\n`);
  }

  override progress(): void {
    // progress lines are for a client's terminal; the operator's log does not want them
  }
}

export interface SocketServerOptions {
  /** Everything a session needs except its logger. */
  session: Omit<SessionConfig, "logger">;
  /** The server's logger (level, topics and sink are copied into every session's logger). */
  logger: Logger;
  /** Name in log lines, e.g. "burg socket". */
  name: string;
  /** At most this many sessions at once; null for no limit. */
  maxSessions: number | null;
  /** The observer (session journal) of the session on this connection. */
  observe?(stream: SocketStream, logger: Logger): SessionObserver;
  /**
   * Awaited after a session ended and before that is logged and reported (a worker waits here
   * for the main thread to have released the session's locks).
   */
  afterSession?(): Promise<void>;
}

/** How long a refused connection may stay open waiting for the client's first bytes. */
const REFUSE_GRACE_MS = 5000;

/**
 * Close a connection we will not serve, without writing anything. We wait for the client's
 * first bytes (borg sends its negotiate request at once) before closing: a client whose
 * connection is closed before it even saw it established gets a connect error from Bun and
 * could not tell this refusal from a stale socket. After that it sees an unanswered close
 * (`burg connect` says so on stderr).
 */
async function closeUnanswered(stream: SessionStream & { end(): Promise<void> }): Promise<void> {
  const input = stream.readable[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([input.next(), new Promise<void>((resolve) => (timer = setTimeout(resolve, REFUSE_GRACE_MS)))]);
  } catch {
    // the client is gone already
  } finally {
    clearTimeout(timer);
  }
  await stream.end();
}

interface Running {
  id: number;
  session: Session;
  stream: { destroy(): void };
  done: Promise<void>;
  started: number;
}

export class SocketServer {
  private nextId = 1;
  private readonly running = new Map<number, Running>();
  private stopping = false;
  private readonly idleWaiters: Array<() => void> = [];
  /** Sessions that ended, by how they ended (for tests and the final log line). */
  readonly ended: Record<SessionResult["end"], number> = { eof: 0, "protocol-error": 0, "connection-lost": 0, "io-error": 0, aborted: 0 };
  refused = 0;

  constructor(private readonly options: SocketServerOptions) {}

  get activeSessions(): number {
    return this.running.size;
  }

  private get log(): Logger {
    return this.options.logger;
  }

  /**
   * Take over one accepted connection. Returns at once; the session runs on its own. By default
   * it gets the server's session configuration and a connection logger; `opts` lets a caller
   * that decides these itself (`burg socket`'s workers: the number across all workers, a
   * hand-over's own restrictions and log) pass them, and learn how the session ended.
   */
  accept(
    stream: SessionStream & { end(): Promise<void>; destroy(): void },
    opts: {
      id?: number;
      /** Sessions running in the whole server, this one included (for the log line). */
      running?: number;
      session?: Omit<SessionConfig, "logger">;
      logger?: Logger;
      /** The connection is refused with this reason (counted and logged by the caller). */
      refuse?: string;
      onEnd?(result: SessionResult | null): void;
    } = {},
  ): { abort(reason: string): void } | null {
    const id = opts.id ?? this.nextId++;
    if (opts.refuse !== undefined || this.stopping) {
      if (opts.refuse === undefined) this.log.info(`${this.options.name}: connection ${id} closed: shutting down`);
      opts.onEnd?.(null);
      void closeUnanswered(stream);
      return null;
    }
    const max = this.options.maxSessions;
    if (max !== null && this.running.size >= max) {
      this.refused++;
      this.log.warning(
        `${this.options.name}: connection ${id} refused: ${this.running.size} sessions are running (--max-sessions ${max}); the client sees the connection closed`,
      );
      opts.onEnd?.(null);
      void closeUnanswered(stream);
      return null;
    }
    const tag = `[connection ${id}]`;
    const logger = opts.logger ?? new ConnectionLogger(tag, this.log);
    const observe = this.options.observe;
    const config = opts.session ?? this.options.session;
    const session = new Session({
      ...config,
      logger,
      ...(opts.session === undefined && observe && stream instanceof SocketStream ? { observe: (l: Logger) => observe(stream, l) } : {}),
    });
    const started = Date.now();
    this.log.info(`${this.options.name}: connection ${id} accepted (${opts.running ?? this.running.size + 1} running)`);
    let result: SessionResult | null = null;
    const done = session
      .run(stream)
      .then(async (r) => {
        await this.options.afterSession?.().catch(() => undefined);
        return r;
      })
      .then(
        (r) => {
          result = r;
          this.finished(id, r, started);
        },
        (e: unknown) => {
          this.log.error(`${tag} session failed: ${(e as Error)?.stack ?? String(e)}`);
        },
      )
      .then(() => stream.end())
      .finally(() => {
        this.running.delete(id);
        opts.onEnd?.(result);
        if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
    this.running.set(id, { id, session, stream, done, started });
    return {
      abort(reason: string) {
        session.abort(reason);
        stream.destroy();
      },
    };
  }

  private finished(id: number, result: SessionResult, started: number): void {
    this.ended[result.end]++;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const what = `${this.options.name}: connection ${id}`;
    switch (result.end) {
      case "eof":
        this.log.info(`${what} closed by the client after ${secs} s`);
        break;
      case "aborted":
        this.log.warning(`${what} aborted after ${secs} s; its transaction was rolled back`);
        break;
      case "connection-lost":
        this.log.warning(
          `${what} lost after ${secs} s (${result.error?.message ?? "client gone"}); uncommitted changes were rolled back`,
        );
        break;
      case "io-error":
        this.log.error(
          `${what} failed after ${secs} s: ${result.error?.message ?? "I/O error"}; uncommitted changes were rolled back`,
        );
        break;
      case "protocol-error":
        this.log.warning(`${what} ended after ${secs} s: the client broke the protocol (${result.error?.message ?? ""})`);
        break;
    }
  }

  private whenIdle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Refuse new connections, wait up to `timeoutSeconds` for running sessions to finish, then
   * abort the rest and wait for their cleanup. Locks still held afterwards are released.
   */
  async shutdown(timeoutSeconds: number): Promise<void> {
    this.stopping = true;
    if (this.running.size > 0) {
      this.log.warning(
        `${this.options.name}: waiting up to ${timeoutSeconds} s for ${this.running.size} running session(s) to finish`,
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        this.whenIdle().then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutSeconds * 1000))),
      ]);
      clearTimeout(timer);
      if (timedOut) this.abortAll("shutdown timeout reached");
      await this.whenIdle();
    }
    releaseAllLocks();
  }

  /** Abort every running session now (rolled back, locks released) and close its connection. */
  abortAll(reason: string): void {
    for (const r of this.running.values()) {
      this.log.warning(`${this.options.name}: aborting connection ${r.id}: ${reason}`);
      r.session.abort(reason);
      // The session may be waiting for input that will not come; closing ends that wait.
      r.stream.destroy();
    }
  }
}
