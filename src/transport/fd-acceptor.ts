// Accepting connections on listening sockets we did not create (the file descriptors systemd
// passes with Accept=no).
//
// Bun 1.3 cannot listen on an inherited file descriptor (net.Server.listen({fd}) and Bun.listen
// both refuse), but it can wrap an accepted, connected socket (Bun.connect({fd})). So the
// accepting is done here, by libc's poll(2) and accept4(2) through bun:ffi, on a worker thread
// so that the blocking wait never holds up the event loop: the worker waits for a pending
// connection, accepts it non-blocking and close-on-exec, and posts the new descriptor to the
// main thread. The wait has a short timeout so that stop() is noticed without signals.
//
// accept4 errors: EAGAIN/EINTR/ECONNABORTED are normal races and retried at once; running out of
// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) is reported and retried after a pause
// (the pending connection stays in the backlog); anything else means the descriptor is not a
// listening socket and ends the worker with an error.

/** What the worker posts back. */
type WorkerMessage =
  | { kind: "fd"; fd: number }
  | { kind: "error"; errno: number; fatal: boolean; listenFd: number }
  | { kind: "ready" }
  | { kind: "stopped" };

export interface FdAcceptorEvents {
  onConnection(fd: number): void;
  /** errno of a failed accept4/poll; fatal ones end accepting. */
  onError(listenFd: number, errno: number, fatal: boolean): void;
}

// Plain JavaScript run as a module worker (from a blob URL: it needs no file next to the
// executable). Linux values: POLLIN 1, SOCK_NONBLOCK 0o4000, SOCK_CLOEXEC 0o2000000.
const WORKER_SOURCE = `
import { dlopen, FFIType, ptr, read } from "bun:ffi";
let lib = null;
for (const name of ["libc.so.6", "libc.so"]) {
  try {
    lib = dlopen(name, {
      poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
      accept4: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    break;
  } catch {}
}
const EINTR = 4, EAGAIN = 11, ECONNABORTED = 103, EPROTO = 71;
const TRANSIENT = new Set([24, 23, 105, 12]); // EMFILE ENFILE ENOBUFS ENOMEM
self.onmessage = (ev) => {
  const { fds, stop } = ev.data;
  const flag = new Int32Array(stop);
  if (lib === null) {
    postMessage({ kind: "error", errno: -1, fatal: true, listenFd: fds[0] });
    return;
  }
  const { poll, accept4, __errno_location } = lib.symbols;
  const errno = () => read.i32(__errno_location(), 0);
  const pfds = new Int32Array(fds.length * 2);
  postMessage({ kind: "ready" });
  while (Atomics.load(flag, 0) === 0) {
    for (let i = 0; i < fds.length; i++) { pfds[2 * i] = fds[i]; pfds[2 * i + 1] = 1; }
    const n = poll(ptr(pfds), fds.length, 250);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      postMessage({ kind: "error", errno: e, fatal: true, listenFd: fds[0] });
      break;
    }
    if (n === 0) continue;
    let fatal = false;
    for (let i = 0; i < fds.length && Atomics.load(flag, 0) === 0; i++) {
      const revents = pfds[2 * i + 1] >>> 16;
      if (revents === 0) continue;
      const c = accept4(fds[i], null, null, 0o4000 | 0o2000000);
      if (c >= 0) { postMessage({ kind: "fd", fd: c }); continue; }
      const e = errno();
      if (e === EAGAIN || e === EINTR || e === ECONNABORTED || e === EPROTO) continue;
      if (TRANSIENT.has(e)) {
        postMessage({ kind: "error", errno: e, fatal: false, listenFd: fds[i] });
        Atomics.wait(flag, 0, 0, 200);
        continue;
      }
      postMessage({ kind: "error", errno: e, fatal: true, listenFd: fds[i] });
      fatal = true;
      break;
    }
    if (fatal) break;
  }
  postMessage({ kind: "stopped" });
};
`;

export class FdAcceptor {
  private readonly worker: Worker;
  private readonly stopFlag = new Int32Array(new SharedArrayBuffer(4));
  private stopped = false;
  private readonly ended: Promise<void>;
  private readonly readyPromise: Promise<void>;

  /** Start accepting on `fds` (listening stream sockets). */
  constructor(
    readonly fds: number[],
    private readonly events: FdAcceptorEvents,
  ) {
    const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
    this.worker = new Worker(url);
    let markReady = () => {};
    this.readyPromise = new Promise<void>((resolve) => (markReady = resolve));
    this.ended = new Promise<void>((resolve) => {
      this.worker.onmessage = (ev: MessageEvent<WorkerMessage>) => {
        const msg = ev.data;
        switch (msg.kind) {
          case "ready":
            markReady();
            break;
          case "fd":
            this.events.onConnection(msg.fd);
            break;
          case "error":
            markReady();
            this.events.onError(msg.listenFd, msg.errno, msg.fatal);
            if (msg.fatal) resolve();
            break;
          case "stopped":
            resolve();
            break;
        }
      };
      this.worker.onerror = () => {
        markReady();
        this.events.onError(this.fds[0] ?? -1, -1, true);
        resolve();
      };
    });
    this.worker.postMessage({ fds, stop: this.stopFlag.buffer });
  }

  /** Resolves once the worker runs its accept loop (or failed to start). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Stop accepting; resolves when the worker has left its loop (within one poll timeout). */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      Atomics.store(this.stopFlag, 0, 1);
      Atomics.notify(this.stopFlag, 0);
    }
    await this.ended;
    this.worker.terminate();
  }
}
