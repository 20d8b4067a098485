// A SessionStream over raw file descriptors (stdin/stdout of `burg serve`), without Node stream
// objects: input is read straight into the session decoder's buffers (one copy, recycled
// buffers); replies are queued and written with writev(2), many at a time, so a pipelining
// client gets a burst of replies per system call.
//
// A client that sends asynchronous calls (borg's puts and deletes, wait=False) has no limit on
// requests in flight, so thousands of replies can be queued at once. Two rules keep writev
// within its documented limits however many there are: small replies (a put's is 12 bytes) are
// copied into shared staging buffers as they are queued, and no call passes more than IOV_MAX
// iovecs (Linux: 1024; more is EINVAL). Write and read errors reach the session as rejected
// writes and reads carrying the call and errno (StreamIoError), so it can tell a client that
// went away (EPIPE, ECONNRESET) from a failure of ours.

import { read, writev } from "node:fs";
import type { SessionStream } from "../rpc/session.ts";
import { StreamIoError } from "../util/io-errors.ts";
import { growPipe } from "../util/libc.ts";
import { closeFd, neutralizeFd, setNonBlocking } from "../util/unix-socket.ts";

const PIPE_SIZE = 1 << 20;
const BULK = 256 * 1024;

/**
 * Big objects cross pipes in 64 KiB steps by default, each read or write a round trip through
 * the event loop or the I/O thread pool; 1 MiB pipes (the unprivileged maximum) cut that
 * 16-fold. The pipes are grown once a session has moved BULK bytes, so that short sessions (and
 * start-up) do not pay for loading fcntl through bun:ffi. Sockets and terminals are left alone.
 */
export function growingPipes<S extends SessionStream>(stream: S, fds: number[]): S {
  let moved = 0;
  const count = (n: number) => {
    if (moved >= BULK) return;
    moved += n;
    if (moved >= BULK) for (const fd of fds) growPipe(fd, PIPE_SIZE);
  };
  const write = stream.write.bind(stream);
  const wrapped: Partial<SessionStream> = {
    write: (data: Uint8Array, written?: () => void) => {
      count(data.length);
      return write(data, written);
    },
  };
  if (stream.read) {
    const read = stream.read.bind(stream);
    wrapped.read = async (buf: Uint8Array) => {
      const n = await read(buf);
      count(n);
      return n;
    };
  } else {
    const source = stream.readable;
    wrapped.readable = {
      async *[Symbol.asyncIterator]() {
        for await (const chunk of source) {
          count(chunk.length);
          yield chunk;
        }
      },
    };
  }
  return Object.defineProperties(stream, Object.getOwnPropertyDescriptors(wrapped));
}

/** Queued reply bytes above which write() waits for the queue to drain (backpressure). */
const HIGH_WATER_MARK = 4 << 20;
/** writev(2)'s limit on iovecs per call: IOV_MAX (UIO_MAXIOV), 1024 on Linux. */
export const IOV_MAX = 1024;
/** Chunks up to this size are copied into a staging buffer instead of taking an iovec each. */
const COPY_MAX = 2048;
const STAGE_SIZE = 64 * 1024;

/** One read(2) on `fd` into `buf` (in the thread pool); 0 at end of input. */
function readFd(fd: number, buf: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const attempt = () =>
      read(fd, buf, 0, buf.length, null, (err, n) => {
        if (!err) return resolve(n);
        // a non-blocking descriptor handed to us by a parent: wait a moment and try again
        if (err.code === "EAGAIN") return void setTimeout(attempt, 1);
        reject(new StreamIoError("read", fd, err));
      });
    attempt();
  });
}

/**
 * The writev(2) behind the stream; tests pass a recording one to see every call's iovec count.
 * Same contract as node:fs writev.
 */
export type WritevFn = (
  fd: number,
  chunks: Uint8Array[],
  position: null,
  cb: (err: NodeJS.ErrnoException | null, written: number) => void,
) => void;

/**
 * A session stream on descriptors. By default the input is read with read(2) calls in the
 * thread pool, which suits one session per process (`burg serve` on blocking stdio). A process
 * that serves many sessions on pipes must not do that: every blocking read holds a pool thread
 * while its client is quiet, and a few of them starve all file I/O of the process. With
 * `nonBlocking` both descriptors are made non-blocking, the input is read by Bun's event loop,
 * `destroy()` cuts the connection off (the numbers stay taken, see neutralizeFd) and `close()`
 * stops the reader and closes both descriptors.
 */
export function fdSessionStream(
  inFd: number,
  outFd: number,
  writevFn: WritevFn = writev,
  opts: { nonBlocking?: boolean } = {},
): SessionStream & { close(): Promise<void>; destroy(): Promise<void> } {
  if (opts.nonBlocking) {
    setNonBlocking(inFd);
    setNonBlocking(outFd);
  }
  let reader: ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>> | null = null;
  let closed = false;
  let queue: Uint8Array[] = [];
  /** written() callbacks of the queued chunks, by position. */
  let callbacks: Array<(() => void) | undefined> = [];
  let queuedBytes = 0;
  let writing = false;
  let scheduled = false;
  let failure: Error | null = null;
  let waiters: Array<{ resolve: () => void; reject: (e: Error) => void; drainOnly: boolean }> = [];
  /** Small chunks are copied here; [stageStart, stageEnd) is not in the queue yet. */
  let stage: Uint8Array | null = null;
  let stageStart = 0;
  let stageEnd = 0;
  let onFailure: (e: Error) => void = () => undefined;
  const failed = new Promise<Error>((resolve) => (onFailure = resolve));

  /** Queue the staged bytes as one chunk (they keep their place before what is queued next). */
  const cutStage = () => {
    if (stage === null || stageEnd === stageStart) return;
    queue.push(stage.subarray(stageStart, stageEnd));
    callbacks.push(undefined);
    stageStart = stageEnd;
  };

  const settle = () => {
    const idle = !writing && queue.length === 0 && stageEnd === stageStart;
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
    cutStage();
    if (writing || failure !== null || queue.length === 0) return settle();
    writing = true;
    // at most IOV_MAX iovecs per call; the rest waits for the next round
    let chunks: Uint8Array[];
    let done: Array<(() => void) | undefined>;
    if (queue.length <= IOV_MAX) {
      chunks = queue;
      done = callbacks;
      queue = [];
      callbacks = [];
    } else {
      chunks = queue.splice(0, IOV_MAX);
      done = callbacks.splice(0, IOV_MAX);
    }
    writevFn(outFd, chunks, null, (err, written) => {
      writing = false;
      if (err && err.code !== "EAGAIN") {
        failure = new StreamIoError("writev", outFd, err);
        onFailure(failure);
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
      if (rest.length > 0) {
        queue = rest.concat(queue);
        callbacks = restDone.concat(callbacks);
      }
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

  const eventLoopInput = (): AsyncIterable<Uint8Array> => {
    const r = (reader ??= Bun.file(inFd).stream().getReader() as ReadableStreamDefaultReader<Uint8Array<ArrayBuffer>>);
    return {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const { value, done } = await r.read();
          if (done) return;
          if (value.length > 0) yield value;
        }
      },
    };
  };
  /**
   * Stop Bun's reader, then `action` on each descriptor. The reader must let go of a descriptor
   * before it is closed: a closed number can come back as another file, which it would then poll.
   */
  const letGo = async (action: (fd: number) => void) => {
    try {
      await reader?.cancel();
    } catch {
      // already done
    }
    for (const fd of new Set([inFd, outFd])) {
      try {
        action(fd);
      } catch {
        // not open
      }
    }
  };
  return {
    ...(opts.nonBlocking ? {} : { read: (buf: Uint8Array) => readFd(inFd, buf) }),
    get readable(): AsyncIterable<Uint8Array> {
      if (opts.nonBlocking) return eventLoopInput();
      return Bun.file(inFd).stream() as unknown as AsyncIterable<Uint8Array>;
    },
    async destroy(): Promise<void> {
      // cut off at once, but keep the numbers until close(): a write may still be under way
      await letGo(neutralizeFd);
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await letGo(closeFd);
      reader = null;
    },
    async write(data: Uint8Array, written?: () => void): Promise<void> {
      if (failure !== null) throw failure;
      if (data.length <= COPY_MAX) {
        if (stage === null || stage.length - stageEnd < data.length) {
          cutStage();
          stage = new Uint8Array(STAGE_SIZE);
          stageStart = stageEnd = 0;
        }
        stage.set(data, stageEnd);
        stageEnd += data.length;
        written?.(); // copied: the caller's buffer is free again
      } else {
        cutStage();
        queue.push(data);
        callbacks.push(written);
      }
      queuedBytes += data.length;
      schedule();
      if (queuedBytes >= HIGH_WATER_MARK) await wait(true);
    },
    async flush(): Promise<void> {
      if (failure !== null) throw failure;
      if (!writing) pump();
      await wait(false);
    },
    whenFailed: () => failed,
  };
}
