// A byte stream over one connected Bun socket (UNIX stream socket): the SessionStream the
// listener hands to each session, and the socket side of `burg connect`'s bridge.
//
// Bun delivers socket input by callback and takes output with a non-blocking write() that may
// accept only part of a buffer. This file turns that into what a session expects: input as an
// async iterable that pushes back on the peer (the socket is paused while unread input exceeds
// a high-water mark, so a fast client cannot fill our memory), and output as a promise-based
// write that queues what the kernel did not take and resolves once the queue is short again.
//
// Known limit of Bun 1.3 (oven-sh/bun#13217): on a UNIX socket Bun closes the connection as soon
// as the peer shuts down its write side, so nothing can be sent after the peer's EOF. borg
// clients only close their side after the last reply has arrived, so sessions are not affected;
// the client side (`burg connect`) half-closes itself and keeps reading, which Bun supports.

import type { Socket, SocketHandler } from "bun";
import type { SessionStream } from "../rpc/session.ts";
import { ConnectionClosedError } from "../util/io-errors.ts";

/** Pause reading from the peer while this many received bytes wait to be consumed. */
export const READ_HIGH_WATER = 4 * 1024 * 1024;
/** Resume reading once the backlog fell to this. */
const READ_LOW_WATER = 1024 * 1024;
/** write() resolves at once while fewer bytes than this wait for the kernel. */
const WRITE_HIGH_WATER = 1024 * 1024;
/**
 * Writes up to this size are copied into a staging buffer and sent together after the current
 * burst of replies: an asynchronous client (borg's puts and deletes) can have thousands of 12-byte
 * replies due at once, which would otherwise cost a system call and a queue entry each.
 */
const COPY_MAX = 2048;
const STAGE_SIZE = 64 * 1024;

type Waiter = { resolve: () => void; reject: (e: Error) => void };

/**
 * One connection. Create it in the socket's open() handler (or right after Bun.connect) and
 * route the socket's data/drain/end/close/error events to the methods of the same name;
 * `socketHandlers()` does that for sockets whose `data` is a SocketStream.
 */
export class SocketStream implements SessionStream {
  private readonly inbox: Uint8Array[] = [];
  private inboxBytes = 0;
  private paused = false;
  private inputEnded = false;
  private inputError: Error | null = null;
  private readWaiter: (() => void) | null = null;

  private readonly outbox: Uint8Array[] = [];
  /** written() callbacks of the outbox chunks, by position. */
  private readonly outboxDone: Array<(() => void) | undefined> = [];
  private outboxBytes = 0;
  private failureError: Error | null = null;
  private writeWaiters: Waiter[] = [];
  private flushWaiters: Waiter[] = [];
  private closed = false;
  /** Staging buffer for small writes; the outbox's last entry is stage[stageTailStart, stageEnd) while stageTail. */
  private stage: Uint8Array | null = null;
  private stageEnd = 0;
  private stageTailStart = 0;
  private stageTail = false;
  private pumpScheduled = false;
  private failureWaiters: Array<(e: Error) => void> = [];
  private readonly closedWaiters: Array<() => void> = [];

  constructor(private readonly socket: Socket<unknown>) {}

  /** The connection's file descriptor (for SO_PEERCRED), when Bun exposes it. */
  get fd(): number | undefined {
    const fd = (this.socket as unknown as { fd?: unknown }).fd;
    return typeof fd === "number" && fd >= 0 ? fd : undefined;
  }

  // ------------------------------------------------------------------ events from Bun

  onData(chunk: Uint8Array): void {
    if (this.inputEnded) return;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    if (!this.paused && this.inboxBytes > READ_HIGH_WATER) {
      this.paused = true;
      this.socket.pause();
    }
    this.wakeReader();
  }

  onDrain(): void {
    this.pump();
  }

  /** The peer shut down its write side. */
  onEnd(): void {
    this.inputEnded = true;
    this.wakeReader();
  }

  onError(error: Error): void {
    if (!this.inputEnded) this.inputError = error;
    this.inputEnded = true;
    this.fail(error);
    this.wakeReader();
  }

  onClose(): void {
    this.closed = true;
    this.inputEnded = true;
    this.fail(new ConnectionClosedError());
    this.wakeReader();
    for (const w of this.closedWaiters.splice(0)) w();
  }

  // ------------------------------------------------------------------ input

  readonly readable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          const chunk = this.inbox.shift();
          if (chunk !== undefined) {
            this.inboxBytes -= chunk.length;
            if (this.paused && this.inboxBytes <= READ_LOW_WATER && !this.closed) {
              this.paused = false;
              this.socket.resume();
            }
            return { done: false, value: chunk };
          }
          if (this.inputError !== null) throw this.inputError;
          if (this.inputEnded) return { done: true, value: undefined };
          await new Promise<void>((resolve) => (this.readWaiter = resolve));
        }
      },
      return: async (): Promise<IteratorResult<Uint8Array>> => ({ done: true, value: undefined }),
    }),
  };

  private wakeReader(): void {
    const w = this.readWaiter;
    this.readWaiter = null;
    w?.();
  }

  // ------------------------------------------------------------------ output

  write(data: Uint8Array, written?: () => void): Promise<void> {
    if (this.failureError !== null) return Promise.reject(this.failureError);
    if (data.length === 0) {
      written?.();
      return Promise.resolve();
    }
    this.outboxBytes += data.length;
    if (data.length <= COPY_MAX) {
      this.stageSmall(data);
      written?.(); // copied: the caller's buffer is free again
      this.schedulePump();
    } else {
      this.stageTail = false;
      this.outbox.push(data);
      this.outboxDone.push(written);
      this.pump();
    }
    if (this.failureError !== null) return Promise.reject(this.failureError);
    if (this.outboxBytes < WRITE_HIGH_WATER) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.writeWaiters.push({ resolve, reject }));
  }

  flush(): Promise<void> {
    if (this.failureError !== null) return Promise.reject(this.failureError);
    if (this.outboxBytes === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.flushWaiters.push({ resolve, reject }));
  }

  private stageSmall(data: Uint8Array): void {
    const n = data.length;
    if (this.stageTail && this.stage!.length - this.stageEnd >= n) {
      this.stage!.set(data, this.stageEnd);
      this.stageEnd += n;
      this.outbox[this.outbox.length - 1] = this.stage!.subarray(this.stageTailStart, this.stageEnd);
      return;
    }
    if (this.stage === null || this.stage.length - this.stageEnd < n) {
      this.stage = new Uint8Array(STAGE_SIZE);
      this.stageEnd = 0;
    }
    this.stageTailStart = this.stageEnd;
    this.stage.set(data, this.stageEnd);
    this.stageEnd += n;
    this.outbox.push(this.stage.subarray(this.stageTailStart, this.stageEnd));
    this.outboxDone.push(undefined);
    this.stageTail = true;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Hand queued output to the kernel until it takes no more (then Bun calls drain). */
  private pump(): void {
    // what is queued from now on starts a new entry: the current tail may be partly written
    this.stageTail = false;
    while (this.outbox.length > 0 && this.failureError === null) {
      const head = this.outbox[0]!;
      const n = this.socket.write(head);
      if (n < 0) {
        this.fail(new ConnectionClosedError("connection closed while writing"));
        return;
      }
      this.outboxBytes -= n;
      if (n < head.length) {
        this.outbox[0] = head.subarray(n);
        break;
      }
      this.outbox.shift();
      this.outboxDone.shift()?.();
    }
    if (this.outboxBytes < WRITE_HIGH_WATER) {
      for (const w of this.writeWaiters.splice(0)) w.resolve();
    }
    if (this.outboxBytes === 0) {
      for (const w of this.flushWaiters.splice(0)) w.resolve();
    }
  }

  private fail(error: Error): void {
    if (this.failureError !== null) return;
    // Output nobody will ever read: drop it, and let writers and flushers know.
    this.failureError = error;
    for (const w of this.failureWaiters.splice(0)) w(error);
    this.stageTail = false;
    this.outbox.length = 0;
    this.outboxDone.length = 0;
    this.outboxBytes = 0;
    for (const w of this.writeWaiters.splice(0)) w.reject(error);
    for (const w of this.flushWaiters.splice(0)) w.reject(error);
  }

  // ------------------------------------------------------------------ closing

  /** Send what is queued, then shut down our write side; the peer sees EOF, we keep reading. */
  async shutdownWrite(): Promise<void> {
    await this.flush();
    // shutdown() without an argument is shutdown(fd, SHUT_WR) in Bun 1.3; its `halfClose`
    // argument does not do what bun-types says (true stops our reading instead).
    if (!this.closed) this.socket.shutdown();
  }

  /** Flush (briefly, best effort) and close the connection. */
  async end(): Promise<void> {
    try {
      await this.flush();
    } catch {
      // the peer is gone; closing is all that is left
    }
    if (!this.closed) this.socket.end();
  }

  /** Close at once, dropping queued output. */
  destroy(): void {
    if (!this.closed) this.socket.terminate();
  }

  /** Received bytes not yet consumed (bounded by the read high-water mark plus one delivery). */
  get bufferedInputBytes(): number {
    return this.inboxBytes;
  }

  whenFailed(): Promise<Error> {
    if (this.failureError !== null) return Promise.resolve(this.failureError);
    return new Promise((resolve) => this.failureWaiters.push(resolve));
  }

  /** Why writes fail, once they do. */
  get failure(): Error | null {
    return this.failureError;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves once the socket is closed (by either side). */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.closedWaiters.push(resolve));
  }
}

/** Socket event handlers for sockets whose `data` is their SocketStream. */
export function socketHandlers(): SocketHandler<SocketStream | undefined> {
  return {
    data(socket, chunk) {
      socket.data?.onData(chunk);
    },
    drain(socket) {
      socket.data?.onDrain();
    },
    end(socket) {
      socket.data?.onEnd();
    },
    close(socket) {
      socket.data?.onClose();
    },
    error(socket, error) {
      socket.data?.onError(error);
    },
  };
}
