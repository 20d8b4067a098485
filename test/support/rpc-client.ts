// A small borg 1.x RPC client for tests and benchmarks: starts a server process (`burg serve` or
// `borg serve`) on pipes and talks to it the way borg's RemoteRepository does — dict-format
// messages, up to 100 requests in flight, replies matched by msgid — without borg's Python
// client, so the server's own cost can be measured in isolation. The server's CPU time and
// peak RSS are its own rusage, reported by GNU time when it exits.

import { encode, StreamDecoder, mapGet, isMap, bytesToString } from "../../src/util/msgpack.ts";
import { readUsage, timed, usageFile } from "../../bench/lib.ts";

export const MAX_INFLIGHT = 100;

export interface ServerUsage {
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
  stderr: string;
}

export class RpcClient {
  private proc: ReturnType<typeof Bun.spawn>;
  private decoder = new StreamDecoder();
  private msgid = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private inflight = 0;
  private waiters: Array<() => void> = [];
  private started = performance.now();
  private stderrText: Promise<string>;
  private closed = false;

  private usage = usageFile();

  constructor(cmd: string[], env: Record<string, string>) {
    this.proc = Bun.spawn(timed(cmd, this.usage), { env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    this.stderrText = new Response(this.proc.stderr as ReadableStream).text();
    void this.readLoop();
  }

  /** The process at the other end of the pipes (a wrapper of the server: they share the pipes). */
  get pid(): number {
    return this.proc.pid;
  }

  private async readLoop(): Promise<void> {
    const reader = (this.proc.stdout as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      this.decoder.feed(value);
      for (const msg of this.decoder) this.dispatch(msg);
    }
    for (const p of this.pending.values()) p.reject(new Error("server closed the connection"));
    this.pending.clear();
  }

  private dispatch(msg: unknown): void {
    if (!isMap(msg)) throw new Error("unexpected reply");
    const id = Number(mapGet(msg, "i"));
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.inflight--;
    const w = this.waiters.shift();
    if (w) w();
    const exc = mapGet(msg, "exception_class");
    if (exc !== undefined) {
      const short = mapGet(msg, "exception_short");
      const text = Array.isArray(short) ? short.map((b) => bytesToString(b as Uint8Array)).join("") : "";
      p.reject(new Error(`${bytesToString(exc as Uint8Array)}: ${text}`));
    } else p.resolve(mapGet(msg, "r"));
  }

  private get stdin(): import("bun").FileSink {
    return this.proc.stdin as import("bun").FileSink;
  }

  /**
   * Queue one call without waiting for its reply: resolves, once the call is written, to the
   * promise of its reply. While MAX_INFLIGHT calls are open it first flushes and waits, which is
   * how borg's client pipelines.
   */
  async send(method: string, args: Record<string, unknown>): Promise<{ reply: Promise<unknown> }> {
    while (this.inflight >= MAX_INFLIGHT) {
      await this.stdin.flush();
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const id = ++this.msgid;
    this.inflight++;
    const done = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    done.catch(() => {});
    this.stdin.write(encode(new Map<string, unknown>([["i", id], ["m", method], ["a", new Map(Object.entries(args))]])));
    // wrapped: an async function returning a bare promise would wait for it
    return { reply: done };
  }

  async flush(): Promise<void> {
    await this.stdin.flush();
  }

  /** One call, sent at once; resolves with its result. */
  async call(method: string, args: Record<string, unknown>): Promise<unknown> {
    const { reply } = await this.send(method, args);
    await this.flush();
    return reply;
  }

  /** Many calls of one method, pipelined; resolves when every reply arrived. */
  async pipeline(method: string, argsList: Iterable<Record<string, unknown>>): Promise<unknown[]> {
    const replies: Promise<unknown>[] = [];
    for (const args of argsList) replies.push((await this.send(method, args)).reply);
    await this.flush();
    return Promise.all(replies);
  }

  async negotiate(): Promise<unknown> {
    return this.call("negotiate", { client_data: new Map([["client_version", [1, 2, 4, -1]]]) });
  }

  async open(path: string, create = false): Promise<unknown> {
    return this.call("open", {
      path: new TextEncoder().encode(path),
      create,
      lock_wait: 10,
      lock: true,
      exclusive: true,
      append_only: false,
      make_parent_dirs: false,
    });
  }

  /** Close stdin (what borg's client does) and wait for the server to exit. */
  async close(): Promise<ServerUsage> {
    if (!this.closed) {
      this.closed = true;
      await this.stdin.end();
    }
    await this.proc.exited;
    const wallMs = performance.now() - this.started;
    return { wallMs, ...readUsage(this.usage), stderr: await this.stderrText };
  }
}
