// libc functions Bun has no API for, through bun:ffi, loaded on first use (so commands that do
// not need them do not pay for the dlopen). null when libc cannot be loaded; callers then do
// without (every use here is an optimisation with a plain fallback).

import { dlopen, FFIType } from "bun:ffi";

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
