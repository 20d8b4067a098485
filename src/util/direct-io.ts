// Direct I/O for reading large files that are not in the page cache.
//
// A buffered read of a cold file makes the kernel allocate page-cache pages, read into them and
// copy them out; on virtual machines the allocation also costs host page faults, and on the
// 2-vCPU test VM a buffered `cat` of cold segment files reads at a third of what the disk
// delivers (bench/README.md). With O_DIRECT the disk writes straight into our (reused) buffers.
// But O_DIRECT never uses the page cache, so data that is already cached would be read from
// the disk again: residency() asks the kernel (mincore(2) on a read-only shared mapping of the
// file, which touches no page) whether a range is cached, so the reader can pick per chunk.
//
// Everything here goes through libc with bun:ffi (util/libc.ts). When that fails, or the
// kernel would not tell (since Linux 5.0 mincore reports page-cache state only for files the
// caller owns or may write; for others every unmapped page looks uncached), callers get null and
// fall back to plain buffered reads.

import { ptr } from "bun:ffi";
import { accessSync, fstatSync, constants as fsc } from "node:fs";
import { libcOrNull } from "./libc.ts";

/** Buffer address, file offset and length alignment used for O_DIRECT (covers 512 and 4Kn disks). */
export const DIRECT_ALIGN = 4096;

/** fs.constants.O_DIRECT for this platform (its value differs between x86-64 and arm64). */
export const O_DIRECT: number = fsc.O_DIRECT ?? 0;

const PROT_READ = 1;
const MAP_SHARED = 1;
const POSIX_FADV_DONTNEED = 4;

/** Is direct I/O possible at all here (O_DIRECT known and libc reachable for aligned buffers)? */
export function directIoAvailable(): boolean {
  return O_DIRECT !== 0 && libcOrNull() !== null;
}

/**
 * A buffer of `size` bytes whose address is a multiple of DIRECT_ALIGN (a view into a slightly
 * larger allocation; typed-array storage does not move, so the alignment holds for its life).
 */
export function alignedBuffer(size: number): Uint8Array {
  const raw = new Uint8Array(size + DIRECT_ALIGN);
  const skew = ptr(raw) % DIRECT_ALIGN;
  const start = skew === 0 ? 0 : DIRECT_ALIGN - skew;
  return raw.subarray(start, start + size);
}

/** Round `n` up to a multiple of DIRECT_ALIGN. */
export function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;
}

/**
 * Page-cache residency of one open file. Maps the file (address space only, no page is read)
 * once and answers per range; close() unmaps it.
 */
export class Residency {
  private addr = 0;
  private readonly length: number;
  private readonly page: number;
  private vec = new Uint8Array(0);

  private constructor(addr: number, length: number, page: number) {
    this.addr = addr;
    this.length = length;
    this.page = page;
  }

  /**
   * null when the answer could not be trusted (a file we neither own nor may write) or the file
   * cannot be mapped (empty, special, no libc).
   */
  static open(fd: number, size: number, path: string): Residency | null {
    const c = libcOrNull();
    if (!c || size <= 0 || !mayInspect(fd, path)) return null;
    const addr = c.mmap(null, size, PROT_READ, MAP_SHARED, fd, 0);
    // MAP_FAILED is (void *)-1, which arrives as 2**64 rounded to a double.
    if (addr === null || addr === 0 || addr >= 2 ** 63) return null;
    return new Residency(addr, size, c.getpagesize() || 4096);
  }

  /**
   * Whether every page of [offset, offset + length) is in the page cache; null when the kernel
   * would not say. `offset` must be a multiple of the page size.
   */
  cached(offset: number, length: number): boolean | null {
    if (this.addr === 0 || offset % this.page !== 0) return null;
    const end = Math.min(offset + length, this.length);
    if (end <= offset) return true;
    const pages = Math.ceil((end - offset) / this.page);
    if (this.vec.length < pages) this.vec = new Uint8Array(pages);
    if (libcOrNull()!.mincore(this.addr + offset, end - offset, ptr(this.vec)) !== 0) return null;
    const v = this.vec;
    for (let i = 0; i < pages; i++) if ((v[i]! & 1) === 0) return false;
    return true;
  }

  close(): void {
    if (this.addr !== 0) {
      libcOrNull()!.munmap(this.addr, this.length);
      this.addr = 0;
    }
  }
}

/** The rule of mm/mincore.c (can_do_mincore): owner, writer, or privileged. */
function mayInspect(fd: number, path: string): boolean {
  const euid = process.geteuid?.() ?? -1;
  if (euid === 0) return true;
  try {
    if (fstatSync(fd).uid === euid) return true;
    accessSync(path, fsc.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Ask the kernel to drop clean pages of a file (from `offset`, `length` bytes; 0 = to the end)
 * from the page cache (POSIX_FADV_DONTNEED).
 */
export function dropFromPageCache(fd: number, offset = 0, length = 0): boolean {
  const c = libcOrNull();
  return c !== null && c.posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED) === 0;
}
