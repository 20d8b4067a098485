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
import { closeFd } from "../util/unix-socket.ts";
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
  stopped: Promise<Ended> | null;
  onStopped: ((e: Ended) => void) | null;
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
      const worker = new Worker(workerEntry());
      const locks = serveWorkerLocks((reply) => worker.postMessage(reply satisfies ToWorker));
      const slot: Slot = { worker, locks, running: 0, stopped: null, onStopped: null };
      pool.slots.push(slot);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.onmessage = (ev: MessageEvent<FromWorker>) => {
            const m = ev.data;
            if (m.kind === "ready") resolve();
            else if (m.kind === "failed") reject(new Error(m.message));
            else pool.fromWorker(slot, m);
          };
          worker.onerror = (ev: ErrorEvent) => {
            const message = ev.message || String(ev.error);
            reject(new Error(message));
            options.logger.error(`burg socket: worker ${i + 1} failed: ${message}`);
          };
        }),
      );
      const init: ToWorker = { kind: "init", argv: options.argv, env: options.env, cwd: options.cwd, pid: options.pid, uid: options.uid };
      worker.postMessage(init);
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const s of pool.slots) s.worker.terminate();
      throw e;
    }
    return pool;
  }

  get activeSessions(): number {
    return this.running;
  }

  private fromWorker(slot: Slot, m: FromWorker): void {
    switch (m.kind) {
      case "ended":
        slot.running--;
        this.running--;
        if (m.end !== null) this.ended[m.end]++;
        break;
      case "opened":
        this.options.onOpened(m.path);
        break;
      case "stopped":
        slot.onStopped?.(m.ended);
        break;
      case "lock":
        slot.locks.handle(m);
        break;
    }
  }

  /** The reason a new session is not taken now, if any (counted and logged). */
  private refusal(id: number): string | undefined {
    if (this.stopping) return "shutting down";
    const max = this.options.maxSessions;
    if (max !== null && this.running >= max) {
      this.refused++;
      this.options.logger.warning(
        `burg socket: connection ${id} refused: ${this.running} sessions are running (--max-sessions ${max}); the client sees the connection closed`,
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
    const refuse = this.refusal(id);
    if (this.terminated) {
      for (const fd of fds) closeFd(fd);
      return;
    }
    const slot = this.pick();
    slot.running++;
    this.running++;
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
      slot.stopped ??= new Promise<Ended>((resolve) => {
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
