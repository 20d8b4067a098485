// A small borg 1.x RPC client for tests and benchmarks: starts a server process (`burg serve` or
// `borg serve`) on pipes and talks to it the way borg's RemoteRepository does, without borg's
// Python client, so the server's own cost can be measured in isolation. Dict-format messages,
// replies matched by msgid, and borg's two modes of calling (remote.py call_many):
//
// - synchronous calls (`call`, `send`, `pipeline`; borg's wait=True): at most MAX_INFLIGHT = 100
//   requests in flight, the sender waits for replies beyond that;
// - asynchronous calls (`callAsync`; borg's wait=False, which `put` and `delete` use): no limit
//   on requests in flight at all. Their replies are read as they arrive and dropped, except
//   errors (and non-None results), which are kept as borg keeps its async_responses and
//   reported by `asyncResponses()`. The only brake is the pipe itself: like borg's select loop,
//   the sender waits while the server does not read, and goes on reading replies meanwhile.
//
// The server's CPU time and peak RSS are its own rusage, reported by GNU time when it exits.

import { encode, StreamDecoder, mapGet, isMap, bytesToString } from "../../src/util/msgpack.ts";
import { readUsage, timed, usageFile } from "../../bench/lib.ts";

export const MAX_INFLIGHT = 100;
/** Buffered request bytes after which an asynchronous sender waits for the pipe (1 MiB, a big pipe). */
const ASYNC_FLUSH_BYTES = 1 << 20;

function replyText(msg: Map<unknown, unknown>): string {
  const short = mapGet(msg, "exception_short");
  return Array.isArray(short) ? short.map((b) => bytesToString(b as Uint8Array)).join("") : "";
}

export interface ServerUsage {
  /** The server's exit code (GNU time passes it on). */
  exitCode: number;
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
  stderr: string;
}

/** The byte stream under a client: a server process's pipes, or a UNIX socket connection. */
interface Wire {
  write(bytes: Uint8Array): void;
  flush(): Promise<void>;
  end(): Promise<void>;
  input: AsyncIterable<Uint8Array>;
}

export class RpcClient {
  private proc: ReturnType<typeof Bun.spawn> | null = null;
  private wire: Wire;
  private decoder = new StreamDecoder();
  private msgid = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private inflight = 0;
  /** Asynchronous calls whose reply has not arrived yet (borg's ignore_responses). */
  private asyncOpen = new Set<number>();
  /** Errors and non-None results of asynchronous calls (borg's async_responses). */
  private asyncReplies: unknown[] = [];
  private asyncWaiters: Array<() => void> = [];
  /** Bytes written to the server's stdin since the last flush. */
  private unflushed = 0;
  /** Replies received (sync and async). */
  repliesReceived = 0;
  private connectionClosed = false;
  private waiters: Array<() => void> = [];
  private started = performance.now();
  private stderrText: Promise<string>;
  private closed = false;

  private usage = usageFile();

  constructor(cmd: string[] | Wire, env: Record<string, string> = {}) {
    if (Array.isArray(cmd)) {
      const proc = Bun.spawn(timed(cmd, this.usage), { env, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      this.proc = proc;
      this.stderrText = new Response(proc.stderr as ReadableStream).text();
      const sink = proc.stdin as import("bun").FileSink;
      this.wire = {
        write: (b) => void sink.write(b),
        flush: async () => void (await sink.flush()),
        end: async () => void (await sink.end()),
        input: proc.stdout as unknown as AsyncIterable<Uint8Array>,
      };
    } else {
      this.wire = cmd;
      this.stderrText = Promise.resolve("");
    }
    void this.readLoop();
  }

  /**
   * A client on a connection to a UNIX socket (`burg socket`) instead of a server process of its
   * own: no usage figures, the server is measured as a whole.
   */
  static async connect(path: string): Promise<RpcClient> {
    const { SocketStream, socketHandlers } = await import("../../src/transport/socket-stream.ts");
    let stream: InstanceType<typeof SocketStream> | null = null;
    const socket = await Bun.connect<InstanceType<typeof SocketStream> | undefined>({ unix: path, socket: socketHandlers() });
    stream = new SocketStream(socket as never);
    socket.data = stream;
    let last: Promise<void> = Promise.resolve();
    const s = stream;
    return new RpcClient({
      write: (b) => {
        last = s.write(b);
      },
      flush: async () => {
        await last;
        await s.flush();
      },
      end: () => s.end(),
      input: s.readable,
    });
  }

  /** The process at the other end of the pipes (a wrapper of the server: they share the pipes). */
  get pid(): number {
    if (this.proc === null) throw new Error("a socket client has no server process");
    return this.proc.pid;
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const value of this.wire.input) {
        this.decoder.feed(value);
        for (const msg of this.decoder) this.dispatch(msg);
      }
    } catch {
      // the connection broke: same as closed
    }
    this.connectionClosed = true;
    for (const p of this.pending.values()) p.reject(new Error("server closed the connection"));
    this.pending.clear();
    for (const w of this.asyncWaiters.splice(0)) w();
  }

  private dispatch(msg: unknown): void {
    if (!isMap(msg)) throw new Error("unexpected reply");
    const id = Number(mapGet(msg, "i"));
    this.repliesReceived++;
    if (this.asyncOpen.delete(id)) {
      const r = mapGet(msg, "r");
      if (mapGet(msg, "exception_class") !== undefined || (r !== null && r !== undefined)) this.asyncReplies.push(msg);
      if (this.asyncOpen.size === 0) for (const w of this.asyncWaiters.splice(0)) w();
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    this.inflight--;
    const w = this.waiters.shift();
    if (w) w();
    const exc = mapGet(msg, "exception_class");
    if (exc !== undefined) {
      p.reject(new Error(`${bytesToString(exc as Uint8Array)}: ${replyText(msg)}`));
    } else p.resolve(mapGet(msg, "r"));
  }

  private get stdin(): Wire {
    return this.wire;
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
    this.unflushed = 0;
    await this.stdin.flush();
  }

  /**
   * One asynchronous call (borg's wait=False): written at once, never waited for. Resolves as
   * soon as the server has room for more input, which is the only limit on calls in flight.
   */
  async callAsync(method: string, args: Record<string, unknown>): Promise<void> {
    if (this.connectionClosed) throw new Error("server closed the connection");
    const id = ++this.msgid;
    this.asyncOpen.add(id);
    const bytes = encode(new Map<string, unknown>([["i", id], ["m", method], ["a", new Map(Object.entries(args))]]));
    this.stdin.write(bytes);
    this.unflushed += bytes.length;
    // The pipe is the brake: once a pipe's worth is buffered, wait until the server took it.
    if (this.unflushed >= ASYNC_FLUSH_BYTES) await this.flush();
  }

  /** Asynchronous calls whose replies have not arrived. */
  get asyncInFlight(): number {
    return this.asyncOpen.size;
  }

  /**
   * Wait for every asynchronous reply (borg's async_responses with async_wait) and throw the
   * first error among them, as borg raises it.
   */
  async asyncResponses(): Promise<void> {
    await this.flush();
    while (this.asyncOpen.size > 0 && !this.connectionClosed) {
      await new Promise<void>((r) => this.asyncWaiters.push(r));
    }
    const first = this.asyncReplies.shift();
    if (first !== undefined) {
      const exc = mapGet(first as Map<unknown, unknown>, "exception_class");
      if (exc !== undefined) throw new Error(`${bytesToString(exc as Uint8Array)}: ${replyText(first as Map<unknown, unknown>)}`);
    }
    if (this.asyncOpen.size > 0) throw new Error(`server closed the connection with ${this.asyncOpen.size} asynchronous calls unanswered`);
  }

  /** Many asynchronous calls of one method, as borg's prune sends its deletes. */
  async pipelineAsync(method: string, argsList: Iterable<Record<string, unknown>>): Promise<void> {
    for (const args of argsList) await this.callAsync(method, args);
    await this.flush();
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
    if (this.proc === null) {
      while (!this.connectionClosed) await Bun.sleep(5);
      return { exitCode: 0, wallMs: performance.now() - this.started, cpuMs: NaN, maxRssKiB: NaN, stderr: "" };
    }
    const exitCode = await this.proc.exited;
    const wallMs = performance.now() - this.started;
    return { exitCode, wallMs, ...readUsage(this.usage), stderr: await this.stderrText };
  }
}
