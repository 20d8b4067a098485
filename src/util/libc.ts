// libc functions Bun has no API for, through bun:ffi, loaded on first use (so commands that do
// not need them do not pay for the dlopen). null when libc cannot be loaded; callers then do
// without (every use here is an optimisation with a plain fallback).

import { dlopen, FFIType, ptr } from "bun:ffi";
import { dupOnto, setNonBlocking } from "./unix-socket.ts";

export type Libc = {
  mmap(addr: null, length: number, prot: number, flags: number, fd: number, offset: number): number | null;
  munmap(addr: number, length: number): number;
  mincore(addr: number, length: number, vec: number): number;
  posix_fadvise(fd: number, offset: number, length: number, advice: number): number;
  getpagesize(): number;
};

type Fcntl = {
  /** fcntl with an int argument (F_GETPIPE_SZ, F_SETPIPE_SZ, ...). */
  fcntl(fd: number, cmd: number, arg: number): number;
};

// Two separate loads: bun:ffi compiles a trampoline per symbol (about a millisecond each), and
// `burg serve` needs only fcntl.
let libc: Libc | null | undefined;
let fcntlLib: Fcntl | null | undefined;

function open<T>(symbols: Parameters<typeof dlopen>[1]): T | null {
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      return dlopen(name, symbols).symbols as unknown as T;
    } catch {
      // try the next name
    }
  }
  return null;
}

export function libcOrNull(): Libc | null {
  if (libc === undefined) {
    libc = open<Libc>({
      mmap: { args: [FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.ptr },
      munmap: { args: [FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
      mincore: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
      posix_fadvise: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.i32], returns: FFIType.i32 },
      getpagesize: { args: [], returns: FFIType.i32 },
    });
  }
  return libc;
}

export function fcntlOrNull(): Fcntl | null {
  if (fcntlLib === undefined) {
    fcntlLib = open<Fcntl>({ fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
  }
  return fcntlLib;
}

type Madvise = { madvise(addr: number | bigint, length: number | bigint, advice: number): number };
let madviseLib: Madvise | null | undefined;

/** madvise(2) (util/resident.ts gives back pages with it); null when libc cannot be loaded. */
export function madviseOrNull(): Madvise | null {
  madviseLib ??= open<Madvise>({ madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
  return madviseLib;
}

const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;

/**
 * Grow the pipe behind `fd` to `bytes` (capped by /proc/sys/fs/pipe-max-size for unprivileged
 * processes; 1 MiB by default). Returns the size it has afterwards, or null when `fd` is not a
 * pipe or nothing could be done.
 */
export function growPipe(fd: number, bytes: number): number | null {
  const c = fcntlOrNull();
  if (!c) return null;
  const before = c.fcntl(fd, F_GETPIPE_SZ, 0);
  if (before < 0) return null; // not a pipe
  if (before >= bytes) return before;
  const after = c.fcntl(fd, F_SETPIPE_SZ, bytes);
  return after < 0 ? before : after;
}

type Sockopt = {
  getsockopt(fd: number, level: number, name: number, value: Uint8Array, len: Uint8Array): number;
};
let sockoptLib: Sockopt | null | undefined;

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

/** The process at the other end of a UNIX socket (SO_PEERCRED); null when it cannot be asked. */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } | null {
  if (sockoptLib === undefined) {
    sockoptLib = open<Sockopt>({
      getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
    });
  }
  if (sockoptLib === null) return null;
  const cred = new Uint8Array(12);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 12, true);
  if (sockoptLib.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) !== 0) return null;
  const dv = new DataView(cred.buffer);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}

type Exec = {
  execve(path: Uint8Array, argv: Uint8Array, envp: Uint8Array): number;
};
let execLib: Exec | null | undefined;

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/** A NULL-terminated array of pointers to `strings` (which must stay referenced during the call). */
function pointerArray(strings: Uint8Array[]): Uint8Array {
  const a = new BigUint64Array(strings.length + 1);
  strings.forEach((s, i) => (a[i] = BigInt(ptr(s))));
  return new Uint8Array(a.buffer);
}

/**
 * Replace this process with `path` (execve(2)), with `stdinFd` as its standard input (dup2 onto
 * descriptor 0; this process's own stdin is given up). Returns false when that failed (no such
 * program, no libc); descriptor 0 may then be the copy of `stdinFd`.
 */
export function execWithStdin(path: string, argv: string[], env: string[], stdinFd: number): boolean {
  execLib ??= open<Exec>({ execve: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 } });
  if (execLib === null) return false;
  try {
    dupOnto(stdinFd, 0);
    // Bun made the descriptor non-blocking; a program reading its stdin expects it blocking
    setNonBlocking(0, false);
  } catch {
    return false;
  }
  const cPath = cString(path);
  const cArgv = argv.map(cString);
  const cEnv = env.map(cString);
  execLib.execve(cPath, pointerArray(cArgv), pointerArray(cEnv));
  return false;
}
