// A SessionStream over Node-style streams (process stdio, net.Socket, child pipes): reads by
// async iteration, writes with backpressure ('drain'), reports a dead peer as a rejected
// write, and flushes by waiting for the last write's callback.

import type { SessionStream } from "../rpc/session.ts";

export function nodeSessionStream(readable: NodeJS.ReadableStream, writable: NodeJS.WritableStream): SessionStream {
  let failure: Error | null = null;
  let lastWrite: Promise<void> = Promise.resolve();
  const drainWaiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();

  const fail = (e: Error) => {
    if (failure === null) failure = e;
    for (const w of drainWaiters) w.reject(failure);
    drainWaiters.clear();
  };
  writable.on("error", (e: Error) => fail(e));
  writable.on("close", () => fail(new Error("output stream closed")));
  writable.on("drain", () => {
    for (const w of drainWaiters) w.resolve();
    drainWaiters.clear();
  });

  return {
    readable: readable as AsyncIterable<Uint8Array>,
    write(data: Uint8Array, written?: () => void): Promise<void> {
      if (failure !== null) return Promise.reject(failure);
      let ok: boolean;
      lastWrite = new Promise<void>((resolve) => {
        ok = writable.write(data, (err?: Error | null) => {
          if (err) fail(err);
          else written?.();
          resolve();
        });
      });
      if (ok!) return Promise.resolve();
      return new Promise<void>((resolve, reject) => drainWaiters.add({ resolve, reject }));
    },
    async flush(): Promise<void> {
      await lastWrite;
      if (failure !== null) throw failure;
    },
  };
}
