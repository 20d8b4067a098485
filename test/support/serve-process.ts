// A `burg serve` (or `borg serve`) process driven with hand-made msgpack frames: tests write
// raw bytes to its stdin, read decoded replies from its stdout, and see stderr, the exit code
// and signals. The process is killed when the test file ends, also on failure.

import { afterAll } from "bun:test";
import type { Subprocess } from "bun";
import { StreamDecoder, encode } from "../../src/util/msgpack.ts";

const live = new Set<Subprocess>();
afterAll(() => {
  for (const p of live) p.kill("SIGKILL");
  live.clear();
});

export interface ServeProcess {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  /** Raw reply bytes, in order. */
  raw: Uint8Array[];
  replies: unknown[];
  send(bytes: Uint8Array): void;
  sendMessages(...values: unknown[]): void;
  /** Resolves once n replies arrived; rejects if the process exits first. */
  waitForReplies(n: number): Promise<void>;
  /** Close stdin (the client is done). */
  end(): void;
  /** Resolves with the exit code (or 128+signal) and everything the process wrote to stderr. */
  finished: Promise<{ code: number; stderr: string }>;
}

export function startServe(argv: string[], env: Record<string, string>): ServeProcess {
  const proc = Bun.spawn(argv, { stdin: "pipe", stdout: "pipe", stderr: "pipe", env });
  live.add(proc);
  const decoder = new StreamDecoder();
  const raw: Uint8Array[] = [];
  const replies: unknown[] = [];
  let waiters: Array<{ n: number; resolve: () => void; reject: (e: Error) => void }> = [];
  let exited = false;
  const wake = () => {
    waiters = waiters.filter((w) => {
      if (replies.length >= w.n) w.resolve();
      else if (exited) w.reject(new Error(`serve exited after ${replies.length} replies, ${w.n} expected`));
      else return true;
      return false;
    });
  };
  const stdoutDone = (async () => {
    for await (const chunk of proc.stdout) {
      const bytes = new Uint8Array(chunk);
      raw.push(bytes);
      decoder.feed(bytes);
      for (const m of decoder) replies.push(m);
      wake();
    }
  })();
  const stderrText = new Response(proc.stderr).text();
  const finished = (async () => {
    const code = await proc.exited;
    await stdoutDone;
    exited = true;
    wake();
    live.delete(proc);
    const signal = proc.signalCode ? signalNumber(proc.signalCode) : null;
    return { code: signal !== null ? 128 + signal : code, stderr: await stderrText };
  })();
  return {
    proc,
    raw,
    replies,
    send(bytes) {
      proc.stdin.write(bytes);
      void proc.stdin.flush();
    },
    sendMessages(...values) {
      for (const v of values) proc.stdin.write(encode(v));
      void proc.stdin.flush();
    },
    waitForReplies(n) {
      if (replies.length >= n) return Promise.resolve();
      if (exited) return Promise.reject(new Error(`serve exited after ${replies.length} replies`));
      return new Promise((resolve, reject) => {
        waiters.push({ n, resolve, reject });
      });
    },
    end() {
      void proc.stdin.end();
    },
    finished,
  };
}

function signalNumber(name: string): number | null {
  const table: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };
  return table[name] ?? null;
}

/** A dict-format request as borg 1.1+ clients send it. */
export function rpc(msgid: number, method: string, args: Record<string, unknown> = {}): Map<string, unknown> {
  return new Map<string, unknown>([
    ["i", msgid],
    ["m", method],
    ["a", new Map(Object.entries(args))],
  ]);
}

/** The negotiate request of a borg 1.2.4 client (which sends it in the 1.0 tuple shape). */
export const NEGOTIATE_1_2 = [1, 1, "negotiate", [new Map([["client_version", [1, 2, 4, -1]]])]];
