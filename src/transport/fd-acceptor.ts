// Accepting connections on listening sockets whose descriptors we hold: the ones systemd
// passes with Accept=no, and the ones `burg socket` binds itself (util/unix-socket.ts).
//
// Bun 1.3 cannot listen on an inherited file descriptor (net.Server.listen({fd}) and Bun.listen
// both refuse), but it can wrap an accepted, connected socket (Bun.connect({fd})). So the
// accepting is done here, by libc's poll(2) and accept4(2) through bun:ffi, on a worker thread
// so that the blocking wait never holds up the event loop: the worker waits for a pending
// connection, accepts it non-blocking and close-on-exec, and posts the new descriptor to the
// main thread. The wait has a short timeout so that stop() is noticed without signals.
//
// Hand-overs (transport/hand-over.ts): a `burg serve --daemon-socket` passes its stdin, stdout
// and stderr over the same socket with SCM_RIGHTS, in a frame whose first byte is 0, which no
// borg client sends first (its requests are msgpack maps or arrays). So each new connection
// waits here, in the same poll, until its first byte arrives; then it is posted either as a
// connection (the byte stays unread, MSG_PEEK) or, after its whole frame was received with
// recvmsg(2), as a hand-over with the descriptors it carried. A connection that sends nothing
// for IDLE_MS is posted as a connection anyway, so idle peers do not pile up here.
//
// accept4 errors: EAGAIN/EINTR/ECONNABORTED are normal races and retried at once; running out of
// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) is reported and retried after a pause
// (the pending connection stays in the backlog); anything else means the descriptor is not a
// listening socket and ends the worker with an error.

import { closeFd } from "../util/unix-socket.ts";

/** What the worker posts back. */
type WorkerMessage =
  | { kind: "fd"; fd: number }
  | { kind: "handover"; fd: number; fds: number[]; frame: Uint8Array }
  | { kind: "bad-handover"; fd: number; reason: string }
  | { kind: "error"; errno: number; fatal: boolean; listenFd: number }
  | { kind: "ready" }
  | { kind: "stopped" };

export interface FdAcceptorEvents {
  onConnection(fd: number): void;
  /**
   * A hand-over frame (header and payload, see hand-over.ts) arrived on connection `fd` with the
   * descriptors `fds`. Without this handler hand-overs are closed as bad.
   */
  onHandOver?(fd: number, fds: number[], frame: Uint8Array): void;
  /** A connection that started a hand-over and broke it (closed, too big, no descriptors). */
  onBadHandOver?(reason: string): void;
  /** errno of a failed accept4/poll; fatal ones end accepting. */
  onError(listenFd: number, errno: number, fatal: boolean): void;
}

// Plain JavaScript run as a module worker (from a blob URL: it needs no file next to the
// executable and is small: every worker of the whole program costs memory). Linux values:
// POLLIN 1, SOCK_NONBLOCK 0o4000, SOCK_CLOEXEC 0o2000000, MSG_PEEK 2, MSG_DONTWAIT 0x40,
// MSG_CMSG_CLOEXEC 0x40000000, SOL_SOCKET 1, SCM_RIGHTS 1; msghdr/cmsghdr as in unix-socket.ts.
const WORKER_SOURCE = `
import { dlopen, FFIType, ptr, read } from "bun:ffi";
let lib = null;
for (const name of ["libc.so.6", "libc.so"]) {
  try {
    lib = dlopen(name, {
      poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
      accept4: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
      recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64 },
      recvmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    break;
  } catch {}
}
const EINTR = 4, EAGAIN = 11, ECONNABORTED = 103, EPROTO = 71;
const TRANSIENT = new Set([24, 23, 105, 12]); // EMFILE ENFILE ENOBUFS ENOMEM
const HEADER = 12, MAX_FRAME = 1 << 20, MAX_FDS = 8, IDLE_MS = 10000, MAX_PENDING = 4096;
self.onmessage = (ev) => {
  const { fds, stop } = ev.data;
  const flag = new Int32Array(stop);
  if (lib === null) {
    postMessage({ kind: "error", errno: -1, fatal: true, listenFd: fds[0] });
    return;
  }
  const { poll, accept4, recv, recvmsg, close, __errno_location } = lib.symbols;
  const errno = () => read.i32(__errno_location(), 0);
  // connections waiting for their first byte (frame === null) or for the rest of a hand-over
  const pending = new Map(); // fd -> { since, frame: Uint8Array|null, got, fds }
  const peek = new Uint8Array(1);
  const iov = new Uint8Array(16), msg = new Uint8Array(56), control = new Uint8Array(16 + MAX_FDS * 4);
  const passOn = (fd) => { pending.delete(fd); postMessage({ kind: "fd", fd }); };
  const drop = (fd, p, reason) => {
    pending.delete(fd);
    for (const f of p.fds) close(f);
    postMessage({ kind: "bad-handover", fd, reason });
  };
  // read what is there of a hand-over frame; the first read also takes the descriptors
  const readFrame = (fd, p) => {
    for (;;) {
      const want = p.frame.length - p.got;
      if (want === 0) break;
      const part = p.frame.subarray(p.got);
      let n;
      if (p.got === 0) {
        const iv = new DataView(iov.buffer), mv = new DataView(msg.buffer);
        iv.setBigUint64(0, BigInt(ptr(part)), true); iv.setBigUint64(8, BigInt(want), true);
        mv.setBigUint64(16, BigInt(ptr(iov)), true); mv.setBigUint64(24, 1n, true);
        mv.setBigUint64(32, BigInt(ptr(control)), true); mv.setBigUint64(40, BigInt(control.length), true);
        n = Number(recvmsg(fd, ptr(msg), 0x40 | 0x40000000));
        if (n > 0) {
          const controllen = Number(mv.getBigUint64(40, true));
          const cv = new DataView(control.buffer);
          let off = 0;
          while (off + 16 <= controllen) {
            const len = Number(cv.getBigUint64(off, true));
            if (len < 16) break;
            if (cv.getInt32(off + 8, true) === 1 && cv.getInt32(off + 12, true) === 1) {
              for (let i = 16; i + 4 <= len; i += 4) p.fds.push(cv.getInt32(off + i, true));
            }
            off += Math.ceil(len / 8) * 8;
          }
          if ((mv.getInt32(48, true) & 0x8) !== 0) return "descriptors were cut off (MSG_CTRUNC)";
        }
      } else {
        n = Number(recv(fd, ptr(part), want, 0x40));
      }
      if (n < 0) { const e = errno(); if (e === EAGAIN || e === EINTR) return null; return "receive failed (errno " + e + ")"; }
      if (n === 0) return "connection closed inside the hand-over";
      p.got += n;
      if (p.got === HEADER && p.frame.length === HEADER) {
        const len = new DataView(p.frame.buffer).getUint32(8, true);
        if (len > MAX_FRAME) return "hand-over frame too big (" + len + " bytes)";
        const full = new Uint8Array(HEADER + len);
        full.set(p.frame);
        p.frame = full;
      }
    }
    pending.delete(fd);
    postMessage({ kind: "handover", fd, fds: p.fds, frame: p.frame });
    return null;
  };
  const onReadable = (fd, p) => {
    if (p.frame === null) {
      const n = Number(recv(fd, ptr(peek), 1, 0x2 | 0x40));
      if (n < 0 && (errno() === EAGAIN || errno() === EINTR)) return;
      if (n !== 1 || peek[0] !== 0) return passOn(fd); // a client's first byte, its EOF or its error
      p.frame = new Uint8Array(HEADER);
    }
    const bad = readFrame(fd, p);
    if (bad !== null) drop(fd, p, bad);
  };
  postMessage({ kind: "ready" });
  while (Atomics.load(flag, 0) === 0) {
    const waiting = [...pending.keys()];
    const pfds = new Int32Array((fds.length + waiting.length) * 2);
    for (let i = 0; i < fds.length; i++) { pfds[2 * i] = fds[i]; pfds[2 * i + 1] = 1; }
    for (let i = 0; i < waiting.length; i++) { pfds[2 * (fds.length + i)] = waiting[i]; pfds[2 * (fds.length + i) + 1] = 1; }
    const n = poll(ptr(pfds), fds.length + waiting.length, 250);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      postMessage({ kind: "error", errno: e, fatal: true, listenFd: fds[0] });
      break;
    }
    const now = Date.now();
    for (let i = 0; i < waiting.length; i++) {
      const fd = waiting[i], p = pending.get(fd);
      if (p === undefined) continue;
      if ((pfds[2 * (fds.length + i) + 1] >>> 16) !== 0) onReadable(fd, p);
      else if (now - p.since > IDLE_MS) {
        if (p.frame === null) passOn(fd);
        else drop(fd, p, "hand-over not completed within " + IDLE_MS / 1000 + " s");
      }
    }
    if (n === 0) continue;
    let fatal = false;
    for (let i = 0; i < fds.length && Atomics.load(flag, 0) === 0; i++) {
      const revents = pfds[2 * i + 1] >>> 16;
      if (revents === 0) continue;
      if (pending.size >= MAX_PENDING) break; // the oldest are passed on within IDLE_MS
      const c = accept4(fds[i], null, null, 0o4000 | 0o2000000);
      if (c >= 0) { pending.set(c, { since: Date.now(), frame: null, got: 0, fds: [] }); continue; }
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
  for (const [fd, p] of pending) { for (const f of p.fds) close(f); close(fd); }
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
          case "handover":
            if (this.events.onHandOver) this.events.onHandOver(msg.fd, msg.fds, msg.frame);
            else {
              for (const f of [...msg.fds, msg.fd]) closeFd(f);
              this.events.onBadHandOver?.("hand-overs are not accepted here");
            }
            break;
          case "bad-handover":
            closeFd(msg.fd);
            this.events.onBadHandOver?.(msg.reason);
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
