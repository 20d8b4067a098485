// UNIX stream sockets at the level Bun has no API for, through bun:ffi to libc: a listening
// socket whose descriptor is ours (Bun.listen keeps its descriptors to itself, so its
// connections could not be handed to another thread), a connected one, and sendmsg(2) with
// SCM_RIGHTS to pass descriptors to another process.
//
// Struct layouts are Linux LP64 (x86-64 and arm64 alike): sockaddr_un is a 16-bit family and
// 108 bytes of path; msghdr is 56 bytes (name 0, namelen 8, iov 16, iovlen 24, control 32,
// controllen 40, flags 48); cmsghdr is a 64-bit length, level and type, then the data.
// Failures throw UnixSocketError with the errno.

import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { openSync } from "node:fs";

export const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_NOSIGNAL = 0x4000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
/** sun_path's size: longer paths cannot be bound or connected to. */
export const SUN_PATH_MAX = 108;

type Sock = {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  connect(fd: number, addr: Uint8Array, len: number): number;
  sendmsg(fd: number, msg: Uint8Array, flags: number): number;
  close(fd: number): number;
  fcntl(fd: number, cmd: number, arg: number): number;
  dup2(from: number, to: number): number;
  __errno_location(): Pointer;
};

let lib: Sock | null | undefined;

function libc(): Sock {
  if (lib === undefined) {
    lib = null;
    for (const name of ["libc.so.6", "libc.so"]) {
      try {
        lib = dlopen(name, {
          socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
          bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
          listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
          connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
          sendmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i64 },
          close: { args: [FFIType.i32], returns: FFIType.i32 },
          fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
          dup2: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
          __errno_location: { args: [], returns: FFIType.ptr },
        }).symbols as unknown as Sock;
        break;
      } catch {
        // try the next name
      }
    }
  }
  if (lib === null) throw new UnixSocketError("cannot load libc for UNIX socket calls", 0);
  return lib;
}

export class UnixSocketError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
    this.name = "UnixSocketError";
  }

  get code(): string {
    return ERRNO_NAMES[this.errno] ?? `errno ${this.errno}`;
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  9: "EBADF",
  11: "EAGAIN",
  13: "EACCES",
  20: "ENOTDIR",
  24: "EMFILE",
  32: "EPIPE",
  36: "ENAMETOOLONG",
  88: "ENOTSOCK",
  98: "EADDRINUSE",
  104: "ECONNRESET",
  111: "ECONNREFUSED",
};

function errno(): number {
  return read.i32(libc().__errno_location(), 0);
}

function fail(what: string, path?: string, e = errno()): UnixSocketError {
  return new UnixSocketError(`${what}${path !== undefined ? ` ${path}` : ""}: ${ERRNO_NAMES[e] ?? `errno ${e}`}`, e);
}

/** A new UNIX stream socket (close-on-exec, blocking). */
function newSocket(): number {
  const fd = libc().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw fail("socket()");
  return fd;
}

/** Close `fd` after a failed call on it and throw that call's error. */
function failClosing(fd: number, what: string, path: string): never {
  const e = fail(what, path);
  libc().close(fd);
  throw e;
}

function sockaddr(path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length >= SUN_PATH_MAX) {
    throw new UnixSocketError(`socket path is too long (${bytes.length} bytes, at most ${SUN_PATH_MAX - 1}): ${path}`, 36);
  }
  const addr = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(bytes, 2);
  return addr;
}

/** A new listening socket bound at `path` (close-on-exec, blocking: the acceptor polls it). */
export function listenUnix(path: string, backlog = 512): number {
  const c = libc();
  const addr = sockaddr(path);
  const fd = newSocket();
  if (c.bind(fd, addr, addr.length) !== 0) failClosing(fd, "cannot bind", path);
  if (c.listen(fd, backlog) !== 0) failClosing(fd, "cannot listen on", path);
  return fd;
}

/** A socket connected to the listener at `path` (blocking, close-on-exec). */
export function connectUnix(path: string): number {
  const addr = sockaddr(path);
  const fd = newSocket();
  if (libc().connect(fd, addr, addr.length) !== 0) failClosing(fd, "cannot connect to", path);
  return fd;
}

export function closeFd(fd: number): void {
  libc().close(fd);
}

let devNull: number | null = null;

/**
 * Make `fd` refer to /dev/null (dup2), keeping the number taken: reads see end of file, writes
 * vanish. For cutting a connection off while an operation on it may still be under way in
 * another thread: closing the number instead could let it be reused for a new connection,
 * which that operation would then read from or write to. Close it once nothing uses it.
 */
export function neutralizeFd(fd: number): void {
  devNull ??= openSync("/dev/null", "r+");
  dupOnto(devNull, fd);
}

/** dup2(2): `to` becomes a copy of `from` (what `to` was is closed). */
export function dupOnto(from: number, to: number): void {
  if (libc().dup2(from, to) < 0) throw fail("dup2()");
}

/**
 * Make `fd` non-blocking (so Bun's event loop can read it instead of a thread-pool thread), or
 * blocking again (for a program that reads it as its stdin).
 */
export function setNonBlocking(fd: number, nonBlocking = true): void {
  const c = libc();
  const flags = c.fcntl(fd, F_GETFL, 0);
  const wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (flags < 0 || c.fcntl(fd, F_SETFL, wanted) < 0) throw fail("fcntl(O_NONBLOCK)");
}

/**
 * Send all of `data` on the connected socket `fd`, with `fds` attached to the first part
 * (SCM_RIGHTS). The receiver gets its own copies of the descriptors; ours stay open.
 */
export function sendWithFds(fd: number, data: Uint8Array, fds: number[]): void {
  const c = libc();
  const iov = new Uint8Array(16);
  const msg = new Uint8Array(56);
  const space = 16 + Math.ceil((fds.length * 4) / 8) * 8;
  const control = new Uint8Array(space);
  const cv = new DataView(control.buffer);
  cv.setBigUint64(0, BigInt(16 + fds.length * 4), true);
  cv.setInt32(8, SOL_SOCKET, true);
  cv.setInt32(12, SCM_RIGHTS, true);
  fds.forEach((f, i) => cv.setInt32(16 + 4 * i, f, true));
  let offset = 0;
  let first = true;
  while (offset < data.length || first) {
    const part = data.subarray(offset);
    const iv = new DataView(iov.buffer);
    iv.setBigUint64(0, BigInt(part.length > 0 ? ptr(part) : 0), true);
    iv.setBigUint64(8, BigInt(part.length), true);
    const mv = new DataView(msg.buffer);
    mv.setBigUint64(16, BigInt(ptr(iov)), true);
    mv.setBigUint64(24, 1n, true);
    mv.setBigUint64(32, first && fds.length > 0 ? BigInt(ptr(control)) : 0n, true);
    mv.setBigUint64(40, first && fds.length > 0 ? BigInt(space) : 0n, true);
    const n = Number(c.sendmsg(fd, msg, MSG_NOSIGNAL));
    if (n < 0) {
      const e = errno();
      if (e === 4) continue; // EINTR
      throw fail("sendmsg", undefined, e);
    }
    offset += n;
    first = false;
    if (part.length === 0) break;
  }
}
