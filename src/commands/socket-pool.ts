// The main thread's side of `burg socket`'s workers (socket-worker.ts is the other side): it
// starts them, gives each new connection or hand-over to the worker with the fewest sessions,
// enforces --max-sessions across all of them, and runs the shutdown.
//
// Why threads and not processes (DESIGN.md): a Bun process costs some 40 MiB before it serves
// anything, a worker thread a few MiB; descriptors pass between threads as plain numbers, with
// no SCM_RIGHTS round trip per connection; and one PID keeps the socket's PID file, systemd's
// MainPID and the operator's signals simple. What a crash would share is limited by design:
// every session runs in a try/catch of its own and an internal error ends only that session.
//
// Locks: on disk a lock names (host, pid, thread 0), the same for every thread, so the workers
// hold theirs through this thread's slots (lock/lock.ts, remote holders): one set of slots for
// the process, as one borg process would hold them.

import { serveWorkerLocks } from "../lock/lock.ts";
import type { SessionResult } from "../rpc/session.ts";
import type { Logger } from "../util/log.ts";
import { closeFd, neutralizeFd } from "../util/unix-socket.ts";
import { workerEntry } from "../util/worker-entry.ts";
import type { Env } from "./serve-options.ts";
import type { FromWorker, ToWorker } from "./socket-worker.ts";

type Ended = Record<SessionResult["end"], number>;

export interface PoolOptions {
  workers: number;
  /** The daemon's command line words ("socket", options...), parsed again by every worker. */
  argv: string[];
  env: Env;
  cwd: string;
  pid: number;
  uid: number;
  maxSessions: number | null;
  logger: Logger;
  /** A session opened a repository (for /metrics). */
  onOpened(path: string): void;
}

interface Slot {
  worker: Worker;
  locks: ReturnType<typeof serveWorkerLocks>;
  running: number;
  /** The descriptors of each session the worker has not reported ended (closed if it fails). */
  sessions: Map<number, number[]>;
  /** The worker's shutdown, once asked for; it resolves when the worker is done. */
  stopped: Promise<void> | null;
  onStopped: (() => void) | null;
}

export class SessionPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private running = 0;
  private stopping = false;
  private terminated = false;
  readonly ended: Ended = { eof: 0, "protocol-error": 0, "connection-lost": 0, "io-error": 0, aborted: 0 };
  refused = 0;

  private constructor(private readonly options: PoolOptions) {}

  /** Start the workers; rejects when one cannot set itself up (bad options, ...). */
  static async start(options: PoolOptions): Promise<SessionPool> {
    const pool = new SessionPool(options);
    const ready: Array<Promise<void>> = [];
    for (let i = 0; i < options.workers; i++) {
      const slot: Slot = { worker: null as unknown as Worker, locks: null as unknown as Slot["locks"], running: 0, sessions: new Map(), stopped: null, onStopped: null };
      pool.slots.push(slot);
      ready.push(pool.spawn(slot, i + 1));
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const s of pool.slots) s.worker.terminate();
      throw e;
    }
    return pool;
  }

  /**
   * Start the worker of `slot`; resolves once it is set up. A worker that fails later (an
   * uncaught error: a bug) takes its sessions with it; its locks are released here, it is
   * logged with its cause, and a new worker takes its place.
   */
  private spawn(slot: Slot, n: number): Promise<void> {
    const worker = new Worker(workerEntry());
    slot.worker = worker;
    slot.locks = serveWorkerLocks((reply) => worker.postMessage(reply satisfies ToWorker));
    let isReady = false;
    return new Promise<void>((resolve, reject) => {
      worker.onmessage = (ev: MessageEvent<FromWorker>) => {
        if (slot.worker !== worker) return;
        const m = ev.data;
        if (m.kind === "ready") {
          isReady = true;
          resolve();
        } else if (m.kind === "failed") reject(new Error(m.message));
        else this.fromWorker(slot, m);
      };
      worker.onerror = (ev: ErrorEvent) => {
        if (slot.worker !== worker) return;
        const message = ev.error instanceof Error ? (ev.error.stack ?? ev.error.message) : ev.message || String(ev.error);
        if (!isReady) return reject(new Error(message));
        this.options.logger.error(
          `burg socket: internal error in worker ${n}; its ${slot.running} session(s) ended, their locks are released: ${message}`,
        );
        worker.terminate();
        slot.locks.releaseAll();
        // its clients (and forced commands) see their connections closed instead of hanging
        for (const fds of slot.sessions.values()) {
          for (const fd of fds) {
            neutralizeFd(fd);
            closeFd(fd);
          }
        }
        slot.sessions.clear();
        this.running -= slot.running;
        slot.running = 0;
        if (this.stopping) {
          slot.onStopped?.();
          return;
        }
        void this.spawn(slot, n).catch((e: unknown) => this.options.logger.error(`burg socket: worker ${n} could not be restarted: ${(e as Error).message}`));
      };
      const init: ToWorker = { kind: "init", argv: this.options.argv, env: this.options.env, cwd: this.options.cwd, pid: this.options.pid, uid: this.options.uid, workers: this.options.workers };
      worker.postMessage(init);
    });
  }

  get activeSessions(): number {
    return this.running;
  }

  private fromWorker(slot: Slot, m: FromWorker): void {
    switch (m.kind) {
      case "ended":
        slot.sessions.delete(m.id);
        slot.running--;
        this.running--;
        if (m.end !== null) this.ended[m.end]++;
        break;
      case "opened":
        this.options.onOpened(m.path);
        break;
      case "stopped":
        slot.onStopped?.();
        break;
      case "lock":
        slot.locks.handle(m);
        break;
    }
  }

  /** The reason a new session is not taken now, if any (counted and logged). */
  private refusal(id: number, handOver: boolean): string | undefined {
    if (this.stopping) return "shutting down";
    const max = this.options.maxSessions;
    if (max !== null && this.running >= max) {
      this.refused++;
      this.options.logger.warning(
        `burg socket: connection ${id} refused: ${this.running} sessions are running (--max-sessions ${max}); ` +
          (handOver ? "the forced command serves it itself" : "the client sees the connection closed"),
      );
      return `${this.running} sessions are running (--max-sessions ${max})`;
    }
    return undefined;
  }

  private pick(): Slot {
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.running < best.running) best = s;
    return best;
  }

  /** A new connection (a descriptor now ours): served by a worker, or refused there. */
  connection(fd: number): void {
    this.dispatch((id, running, refuse) => ({ kind: "connection", id, fd, running, ...(refuse !== undefined ? { refuse } : {}) }), [fd]);
  }

  /** A hand-over from `burg serve --daemon-socket` (its frame is checked by the worker). */
  handOver(fd: number, fds: number[], frame: Uint8Array): void {
    this.dispatch((id, running, refuse) => ({ kind: "handover", id, fd, fds, frame, running, ...(refuse !== undefined ? { refuse } : {}) }), [fd, ...fds]);
  }

  private dispatch(make: (id: number, running: number, refuse: string | undefined) => ToWorker, fds: number[]): void {
    const id = this.nextId++;
    const refuse = this.refusal(id, fds.length > 1);
    if (this.terminated) {
      for (const fd of fds) closeFd(fd);
      return;
    }
    const slot = this.pick();
    slot.running++;
    this.running++;
    slot.sessions.set(id, fds);
    slot.worker.postMessage(make(id, this.running, refuse));
  }

  /**
   * Stop taking sessions, let the running ones finish for up to `timeout` seconds, then abort the
   * rest; resolves when every worker is done (locks released) and has been terminated.
   */
  async shutdown(timeout: number): Promise<void> {
    this.stopping = true;
    if (this.running > 0) {
      this.options.logger.warning(`burg socket: waiting up to ${timeout} s for ${this.running} running session(s) to finish`);
    }
    const all = this.slots.map((slot) => {
      slot.stopped ??= new Promise<void>((resolve) => {
        slot.onStopped = resolve;
        slot.worker.postMessage({ kind: "shutdown", timeout } satisfies ToWorker);
      });
      return slot.stopped;
    });
    await Promise.all(all);
    this.terminated = true;
    for (const s of this.slots) {
      s.worker.terminate();
      s.locks.releaseAll();
    }
  }

  /** Abort every running session now (a second stop request). */
  abortAll(reason: string): void {
    for (const s of this.slots) s.worker.postMessage({ kind: "abort", reason } satisfies ToWorker);
  }
}
