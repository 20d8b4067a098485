// A SessionStream over raw file descriptors (stdin/stdout of `burg serve`), without Node stream
// objects: input is read straight into the session decoder's buffers (one copy, recycled
// buffers); replies are queued and written with writev(2), many at a time, so a pipelining
// client gets a burst of replies per system call. Write errors (EPIPE when the client has gone)
// reach the session as rejected writes.

import { read, writev } from "node:fs";
import type { SessionStream } from "../rpc/session.ts";

/** Queued reply bytes above which write() waits for the queue to drain (backpressure). */
const HIGH_WATER_MARK = 4 << 20;

/** One read(2) on `fd` into `buf` (in the thread pool); 0 at end of input. */
function readFd(fd: number, buf: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const attempt = () =>
      read(fd, buf, 0, buf.length, null, (err, n) => {
        if (!err) return resolve(n);
        // a non-blocking descriptor handed to us by a parent: wait a moment and try again
        if (err.code === "EAGAIN") return void setTimeout(attempt, 1);
        reject(err);
      });
    attempt();
  });
}

export function fdSessionStream(inFd: number, outFd: number): SessionStream {
  let queue: Uint8Array[] = [];
  /** written() callbacks of the queued chunks, by position. */
  let callbacks: Array<(() => void) | undefined> = [];
  let queuedBytes = 0;
  let writing = false;
  let scheduled = false;
  let failure: Error | null = null;
  let waiters: Array<{ resolve: () => void; reject: (e: Error) => void; drainOnly: boolean }> = [];

  const settle = () => {
    const idle = !writing && queue.length === 0;
    const keep: typeof waiters = [];
    for (const w of waiters) {
      if (failure !== null) w.reject(failure);
      else if (idle || (w.drainOnly && queuedBytes < HIGH_WATER_MARK)) w.resolve();
      else keep.push(w);
    }
    waiters = keep;
  };

  const pump = () => {
    scheduled = false;
    if (writing || failure !== null || queue.length === 0) return settle();
    writing = true;
    const chunks = queue;
    const done = callbacks;
    queue = [];
    callbacks = [];
    writev(outFd, chunks, null, (err, written) => {
      writing = false;
      if (err && err.code !== "EAGAIN") {
        failure = err;
        return settle();
      }
      // put back what a short write (or EAGAIN) left over, in order
      let n = err ? 0 : written;
      const rest: Uint8Array[] = [];
      const restDone: Array<(() => void) | undefined> = [];
      for (let i = 0; i < chunks.length; i++) {
        const c = chunks[i]!;
        if (n >= c.length) {
          n -= c.length;
          done[i]?.();
        } else {
          rest.push(n > 0 ? c.subarray(n) : c);
          restDone.push(done[i]);
          n = 0;
        }
      }
      queuedBytes -= err ? 0 : written;
      queue = rest.concat(queue);
      callbacks = restDone.concat(callbacks);
      settle();
      if (err) setTimeout(pump, 1);
      else pump();
    });
  };

  const schedule = () => {
    if (scheduled || writing) return;
    scheduled = true;
    // after the requests queued right now have been answered, send all replies in one go
    setImmediate(pump);
  };

  const wait = (drainOnly: boolean) =>
    new Promise<void>((resolve, reject) => {
      waiters.push({ resolve, reject, drainOnly });
      settle();
    });

  return {
    read: (buf: Uint8Array) => readFd(inFd, buf),
    get readable(): AsyncIterable<Uint8Array> {
      return Bun.file(inFd).stream() as unknown as AsyncIterable<Uint8Array>;
    },
    async write(data: Uint8Array, written?: () => void): Promise<void> {
      if (failure !== null) throw failure;
      queue.push(data);
      callbacks.push(written);
      queuedBytes += data.length;
      schedule();
      if (queuedBytes >= HIGH_WATER_MARK) await wait(true);
    },
    async flush(): Promise<void> {
      if (failure !== null) throw failure;
      if (!writing) pump();
      await wait(false);
    },
  };
}
