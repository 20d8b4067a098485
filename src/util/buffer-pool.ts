// Recycled buffers for object data read from segments and sent to a client (serve's get).
//
// A fresh buffer of megabytes costs a page fault per 4 KiB page on first touch, and the garbage
// waits for the collector: for big objects that dominated the server's CPU time and memory.
// take() lends a view of a pooled buffer (power-of-two capacity); whoever knows that nobody
// holds the view any more (the session, once the reply's bytes are in the kernel) gives it
// back. A view that is never given back is ordinary garbage, so lending is always safe; giving
// back a view still in use is the one mistake to avoid.

export class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();
  private readonly lent = new WeakMap<Uint8Array, Uint8Array>();
  private pooledBytes = 0;

  /**
   * @param minSize requests below this are plain allocations (small ones are cheap)
   * @param maxBytes buffers kept for reuse, in total
   */
  constructor(
    readonly minSize: number,
    readonly maxBytes: number,
  ) {}

  /** A buffer of exactly `n` bytes (contents undefined). */
  take(n: number): Uint8Array {
    if (n < this.minSize) return new Uint8Array(n);
    const capacity = 2 ** Math.ceil(Math.log2(n));
    const list = this.free.get(capacity);
    let whole = list?.pop();
    if (whole) this.pooledBytes -= capacity;
    else whole = new Uint8Array(capacity);
    const view = whole.subarray(0, n);
    this.lent.set(view, whole);
    return view;
  }

  /** Whether `view` came from take() and has not been given back. */
  owns(view: Uint8Array): boolean {
    return this.lent.has(view);
  }

  /** `view` (from take()) is no longer used by anyone: its buffer may be lent again. */
  give(view: Uint8Array): void {
    const whole = this.lent.get(view);
    if (!whole) return;
    this.lent.delete(view);
    if (this.pooledBytes + whole.length > this.maxBytes) return;
    let list = this.free.get(whole.length);
    if (!list) this.free.set(whole.length, (list = []));
    list.push(whole);
    this.pooledBytes += whole.length;
  }
}

/**
 * Object data read for clients and the encoded replies around it, from 1 KiB (smaller ones
 * are cheap to allocate); up to 32 MiB kept. The session gives a get's data back right after
 * encoding when it was copied into the reply (up to PART_INLINE_MAX, msgpack.ts), or once
 * written when it is a part of its own, and every reply part once written.
 */
export const objectBuffers = new BufferPool(1024, 32 << 20);
