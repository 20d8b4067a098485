// An in-memory SessionStream for unit tests: the test pushes client bytes and reads the
// server's replies back as decoded messages; the connection can be cut in either direction.

import type { SessionStream } from "../../src/rpc/session.ts";
import { StreamDecoder, encode } from "../../src/util/msgpack.ts";

export class MemoryStream implements SessionStream {
  private chunks: Uint8Array[] = [];
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly replyDecoder = new StreamDecoder();
  readonly replies: unknown[] = [];
  private replyWaiters: Array<{ n: number; resolve: () => void }> = [];
  /** When set, write() rejects with EPIPE (the client went away). */
  broken = false;
  /** When set, write() rejects with this (a failure that is not the client going away). */
  writeError: Error | null = null;
  /** When set, write() waits for this before resolving (a client that does not read). */
  writeGate: Promise<void> | null = null;

  readonly readable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        for (;;) {
          if (this.inputError !== null) throw this.inputError;
          const c = this.chunks.shift();
          if (c !== undefined) return { done: false, value: c };
          if (this.ended) return { done: true, value: undefined };
          await new Promise<void>((r) => (this.wake = r));
        }
      },
    }),
  };

  private inputError: Error | null = null;

  /** Reading the client's bytes fails with `e`. */
  readError(e: Error): void {
    this.inputError = e;
    this.wake?.();
  }

  /** Client -> server bytes. */
  send(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.wake?.();
  }

  /** Send msgpack-encoded values as one chunk. */
  sendMessages(...values: unknown[]): void {
    const parts = values.map((v) => encode(v));
    this.send(new Uint8Array(Buffer.concat(parts)));
  }

  /** The client closes its side. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.broken) throw Object.assign(new Error("EPIPE: broken pipe, writev"), { code: "EPIPE" });
    if (this.writeError) throw this.writeError;
    this.replyDecoder.feed(data.slice());
    for (const m of this.replyDecoder) this.replies.push(m);
    for (const w of this.replyWaiters.splice(0)) {
      if (this.replies.length >= w.n) w.resolve();
      else this.replyWaiters.push(w);
    }
    if (this.writeGate) await this.writeGate;
  }

  async flush(): Promise<void> {}

  /** Resolves once at least n replies arrived. */
  waitForReplies(n: number): Promise<void> {
    if (this.replies.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.replyWaiters.push({ n, resolve }));
  }
}

/** A dict-format request as borg 1.1+ clients send it. */
export function request(msgid: number, method: string, args: Record<string, unknown> = {}): Map<string, unknown> {
  return new Map<string, unknown>([
    ["i", msgid],
    ["m", method],
    ["a", new Map(Object.entries(args))],
  ]);
}
