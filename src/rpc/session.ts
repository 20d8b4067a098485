// One client session of the borg 1.x RPC protocol over any duplex byte stream: decoding
// requests, executing them against a repository opened through the RepositoryHandle
// interface, replying in order, and cleaning up (rollback and close) however the session ends.
//
// Reading and executing are decoupled: a reader task keeps decoding the input into a queue
// while the executor works and while replies wait for the client to read them, so a client
// that pipelines requests (borg keeps up to 100 in flight) is never stalled by our writes.
// The queue is bounded in bytes; when it is full the reader stops pulling, which pushes back on
// the client through the stream itself. Requests run one at a time, in order, so replies go
// out in order.
//
// Nothing here knows about stdio, sockets or process signals: transports pass a SessionStream
// and call abort(); one process may run many sessions at once.

import {
  AlreadyExists,
  BurgError,
  CheckNeeded,
  DoesNotExist,
  IntegrityError,
  InvalidRPCMethod,
  ObjectNotFound,
  PathNotAllowed,
  PermissionDenied,
  RepositoryNotOpen,
} from "../errors.ts";
import type { Logger } from "../util/log.ts";
import {
  MsgpackDecodeError,
  MsgpackLimitError,
  StreamDecoder,
  borgUnpackerLimits,
  bytesToString,
  bytesToStringStrict,
  isBytes,
} from "../util/msgpack.ts";
import { objectBuffers } from "../util/buffer-pool.ts";
import { requestHandled, trafficPassed } from "../util/gc.ts";
import { isPeerGone } from "../util/io-errors.ts";
import { VERSION } from "../version.ts";
import type { OpenRepository, RepositoryActivity, RepositoryHandle } from "./backend.ts";
import { GuardedRepository, checkPathAllowed, resolveRepositoryPath, type PathContext, type ServePolicy } from "./policy.ts";
import {
  RECONSTRUCTED,
  RPC_METHODS,
  argBool,
  argBytes,
  argId,
  argInt,
  argNumber,
  argOptBool,
  argOptBytes,
  argOptInt,
  argOptNumber,
  clientVersion,
  encodeError,
  encodeResult,
  filterArgs,
  formatVersion,
  isBadRequest,
  negotiateAnswer,
  parseRequest,
  wireError,
  type Request,
} from "./protocol.ts";

/** The byte stream a session talks over. */
export interface SessionStream {
  /** Bytes from the client, in order; ends when the client closes its side. */
  readable: AsyncIterable<Uint8Array>;
  /**
   * Preferred over `readable` when present: read the next bytes into `buf` (the decoder's own
   * buffer, so input is copied once and its buffers are recycled); resolves with the count, 0 at
   * end of input.
   */
  read?(buf: Uint8Array): Promise<number>;
  /**
   * Send bytes to the client. Resolves when the stream can take more (backpressure) and
   * rejects when the connection is gone. The session does not touch `data` afterwards.
   * `written`, when given, is called once all of `data` has been handed to the operating system
   * (so its buffer may be reused); never if the connection fails first.
   */
  write(data: Uint8Array, written?: () => void): Promise<void>;
  /** Resolves when everything written has been handed to the operating system. */
  flush(): Promise<void>;
  /**
   * Resolves with the error once writing has failed, even while no write() is waiting: output is
   * queued, so a session that is waiting for requests would otherwise not notice until its next
   * reply.
   */
  whenFailed?(): Promise<Error>;
}

/**
 * Told what a session does (the session journal implements it); every method is called after
 * the fact and must not throw.
 */
export interface SessionObserver {
  /** The client's borg version from negotiate ("1.2.4"), null when it sent none. */
  negotiated(version: string | null): void;
  /** A repository was opened at `path` (error: an allowed path failed to open). */
  opened(path: string, error?: unknown): void;
  /** A request got an error reply. */
  failed(method: string, error: unknown): void;
  committed(activity: RepositoryActivity | undefined): void;
  /** The repository was closed; its open transaction, if any, rolled back. */
  closed(activity: RepositoryActivity | undefined): void;
  ended(info: { end: SessionEnd; error?: Error; abortReason?: string }): void;
}

export interface SessionConfig {
  openRepository: OpenRepository;
  policy: ServePolicy;
  pathContext: PathContext;
  logger: Logger;
  /** Lock wait (seconds) for an open() that carries none; borg clients always send theirs. */
  defaultLockWait?: number | null;
  /** borg's sysinfo() text sent with every error ("" when BORG_SHOW_SYSINFO=no). */
  sysinfo(): string;
  /** Makes the session's observer (the journal), given the session's logger. */
  observe?(logger: Logger): SessionObserver;
  /**
   * Run once, after the reply to the session's first successful open() has gone out (burg
   * serve gives back its start-up pages there: util/resident.ts).
   */
  afterFirstOpen?(): void;
}

/**
 * How a session ended. "connection-lost": the client went away (EPIPE, ECONNRESET, a closed
 * socket). "io-error": reading or writing the stream failed for any other reason, a failure
 * on our side that is logged at ERROR level, never taken for a disconnect.
 */
export type SessionEnd = "eof" | "protocol-error" | "connection-lost" | "io-error" | "aborted";

export interface SessionResult {
  end: SessionEnd;
  /** 0 for a normal end of input, 2 (EXIT_ERROR) otherwise. */
  exitCode: number;
  error?: Error;
}

/**
 * Decoded requests waiting for the executor, with the one it is handling, are capped at this
 * many bytes (one request may exceed it). Enough to keep the executor busy while the client
 * sends; more only costs memory. Counting the request being handled keeps a stream of 8 MiB
 * puts to two input buffers (one being handled, one being read into) instead of three or four.
 */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/**
 * ... and at this many requests: an asynchronous client (borg's deletes, ~60 bytes each) could
 * otherwise have a quarter of a million decoded requests waiting, which the garbage collector
 * then carries into its old generation.
 */
const MAX_QUEUED_REQUESTS = 1024;

/** A one-shot wake-up for tasks waiting on each other. */
class Signal {
  private waiters: Array<() => void> = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

type InputEnd =
  | { kind: "eof" }
  | { kind: "protocol-error"; error: Error }
  | { kind: "connection-lost"; error: Error }
  | { kind: "io-error"; error: Error };

export class Session {
  private readonly decoder = new StreamDecoder(borgUnpackerLimits("server"));
  private readonly queue: Array<{ msg: unknown; size: number; seq: number }> = [];
  private queuedBytes = 0;
  /** Size of the request being handled: it counts against MAX_QUEUED_BYTES too. */
  private handlingBytes = 0;
  private inputEnd: InputEnd | null = null;
  private readonly queueChanged = new Signal();
  private aborted = false;
  private readonly abortSignal = new Signal();
  private repo: RepositoryHandle | null = null;
  private pendingOpen: Promise<RepositoryHandle> | null = null;
  private afterFirstOpen: (() => void) | undefined;
  private clientVersion: number[] | null = null;
  private closed = false;
  /** The stream's write failure, once known. */
  private outputFailure: Error | null = null;
  private abortReason: string | undefined;
  private readonly observer: SessionObserver | undefined;

  constructor(private readonly config: SessionConfig) {
    this.observer = config.observe?.(config.logger);
    this.afterFirstOpen = config.afterFirstOpen;
  }

  /** Call the observer; its failures are logged, never the session's. */
  private tell(f: (o: SessionObserver) => void): void {
    if (this.observer === undefined) return;
    try {
      f(this.observer);
    } catch (e) {
      this.logger.error(`session journal failed: ${(e as Error)?.stack ?? String(e)}`);
    }
  }

  /** Requests received and not yet executed. */
  get pendingRequests(): number {
    return this.queue.length;
  }

  get logger(): Logger {
    return this.config.logger;
  }

  /** Serve the stream until the client is done, the protocol breaks or abort() is called. */
  async run(stream: SessionStream): Promise<SessionResult> {
    void this.readInput(stream);
    // A client that went away is noticed by reading (EOF) or by the next write; a failure of
    // our own ends the session at once.
    void stream.whenFailed?.().then((e) => {
      if (isPeerGone(e)) return;
      this.outputFailure ??= e;
      this.abort(`writing to the client failed: ${e.message}`);
    });
    let result: SessionResult;
    try {
      result = await this.execute(stream);
    } finally {
      await this.closeRepository();
    }
    this.tell((o) => o.ended({ end: result.end, error: result.error, abortReason: this.abortReason }));
    if (result.end !== "connection-lost" && result.end !== "io-error") {
      try {
        await stream.flush();
      } catch {
        // The client is gone; the session's outcome stands.
      }
    }
    return result;
  }

  /**
   * Stop: no further requests run (the one running finishes, except an open() still waiting
   * for its lock), and run() resolves after rolling back and closing the repository.
   */
  abort(reason: string): void {
    if (this.aborted) return;
    this.logger.debug(`session aborted: ${reason}`);
    this.aborted = true;
    this.abortReason = reason;
    this.abortSignal.notify();
    this.queueChanged.notify();
  }

  /** Input chunks: straight into the decoder's buffer when the stream can, else as it yields them. */
  private async *chunks(stream: SessionStream): AsyncGenerator<Uint8Array | null> {
    if (stream.read) {
      for (;;) {
        const n = await stream.read(this.decoder.reserve());
        if (n === 0) return;
        this.decoder.wrote(n);
        trafficPassed(n);
        yield null;
      }
    }
    for await (const chunk of stream.readable) {
      trafficPassed(chunk.length);
      yield chunk;
    }
  }

  /**
   * Decode buffered requests into the queue until it is full; true when it is (more may be
   * buffered), false when the decoder needs more input.
   */
  private decodeQueued(): boolean {
    let before = this.decoder.consumed;
    while (this.queue.length < MAX_QUEUED_REQUESTS && this.queuedBytes + this.handlingBytes <= MAX_QUEUED_BYTES) {
      const r = this.decoder.next();
      if (r.done) return false;
      const size = this.decoder.consumed - before;
      before = this.decoder.consumed;
      this.queue.push({ msg: r.value, size, seq: this.decoder.returned });
      this.queuedBytes += size;
    }
    return true;
  }

  private async readInput(stream: SessionStream): Promise<void> {
    try {
      for await (const chunk of this.chunks(stream)) {
        if (this.aborted) return;
        if (chunk !== null) this.decoder.feed(chunk);
        // Full: wait for room before decoding (and reading) more. Undecoded requests are a few
        // bytes each; decoded ones are objects that would crowd the heap.
        while (this.decodeQueued()) {
          this.queueChanged.notify();
          await this.queueChanged.wait();
          if (this.aborted) return;
        }
        this.queueChanged.notify();
      }
      if (this.decoder.inMessage) {
        this.logger.debug(`connection closed inside a message (${this.decoder.buffered} bytes of it received)`);
      }
      this.inputEnd = { kind: "eof" };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this.inputEnd =
        e instanceof MsgpackDecodeError || e instanceof MsgpackLimitError
          ? { kind: "protocol-error", error: err }
          : isPeerGone(e)
            ? { kind: "connection-lost", error: err }
            : { kind: "io-error", error: err };
      // stop executing what is queued: with its input broken the session cannot go on
      if (this.inputEnd.kind === "io-error") this.abort(`reading the client's requests failed: ${err.message}`);
    }
    this.queueChanged.notify();
  }

  private async nextMessage(): Promise<{ msg: unknown; seq: number } | typeof END> {
    for (;;) {
      if (this.aborted) return END;
      const item = this.queue.shift();
      if (item !== undefined) {
        this.queuedBytes -= item.size;
        this.handlingBytes = item.size;
        this.queueChanged.notify(); // the reader may be waiting for room
        return item;
      }
      if (this.inputEnd !== null) return END;
      await this.queueChanged.wait();
    }
  }

  private async execute(stream: SessionStream): Promise<SessionResult> {
    for (;;) {
      const item = await this.nextMessage();
      if (item === END) break;
      let reply: Uint8Array[];
      try {
        reply = await this.handle(item.msg);
        // Nothing the request decoded into outlives its handling (the engine copies what it
        // keeps), so the decoder may reuse the input buffers it lived in.
        this.decoder.release(item.seq);
        this.handlingBytes = 0;
        this.queueChanged.notify();
      } catch (e) {
        // Only a message without a msgid gets here: nothing to answer, the stream is unusable.
        const err = e instanceof Error ? e : new Error(String(e));
        this.logger.error(`${err.message} Closing the connection.`);
        return { end: "protocol-error", exitCode: 2, error: err };
      }
      try {
        for (const part of reply) {
          // Reply parts and a get's data are pooled buffers: back to the pool once sent.
          await stream.write(part, objectBuffers.owns(part) ? () => objectBuffers.give(part) : undefined);
          trafficPassed(part.length);
        }
        requestHandled();
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        if (isPeerGone(err)) {
          this.abort("connection lost while replying");
          this.logger.debug(`connection lost while replying: ${err.message}`);
          return { end: "connection-lost", exitCode: 2, error: err };
        }
        this.abort("sending a reply failed");
        return this.ioError("sending a reply", err);
      }
    }
    if (this.inputEnd?.kind === "io-error") return this.ioError("reading the requests", this.inputEnd.error);
    if (this.outputFailure !== null) return this.ioError("sending a reply", this.outputFailure);
    if (this.aborted) return { end: "aborted", exitCode: 2 };
    const end = this.inputEnd ?? { kind: "eof" };
    if (end.kind === "protocol-error") {
      this.logger.error(
        `Borg ${VERSION}: Got unexpected RPC data format from client: ${end.error.message}. Closing the connection.`,
      );
      return { end: "protocol-error", exitCode: 2, error: end.error };
    }
    if (end.kind === "connection-lost") {
      this.logger.debug(`connection lost: ${end.error.message}`);
      return { end: "connection-lost", exitCode: 2, error: end.error };
    }
    if (this.repo === null) this.logger.debug(`Borg ${VERSION}: Got connection close before repository was opened.`);
    return { end: "eof", exitCode: 0 };
  }

  /** A failure of our own on the stream: an ERROR line the client shows as "Remote: ...". */
  private ioError(what: string, err: Error): SessionResult {
    this.logger.error(
      `burg internal error (StreamIoError) while ${what}: ${err.message}. ` +
        "The transaction is rolled back and the session closed.",
    );
    return { end: "io-error", exitCode: 2, error: err };
  }

  /** Execute one decoded message and return the encoded reply (in parts). Throws only when there is no msgid. */
  private async handle(msg: unknown): Promise<Uint8Array[]> {
    const req = parseRequest(msg);
    if (isBadRequest(req)) return [this.errorReply(req, req.error)];
    try {
      if (!RPC_METHODS.has(req.method)) throw new InvalidRPCMethod(req.method);
      const args = filterArgs(req.method, req.args);
      const result = await this.dispatch(req.method, args);
      const reply = encodeResult(req, result);
      // A get's data that was small enough to be copied into the reply is free at once.
      if (result instanceof Uint8Array && objectBuffers.owns(result) && !reply.includes(result)) objectBuffers.give(result);
      return reply;
    } catch (e) {
      if (req.method !== "inject_exception") this.tell((o) => o.failed(req.method, e));
      return [this.errorReply(req, e)];
    }
  }

  /** The error reply borg's serve() sends, with the same server-side logging. */
  private errorReply(req: Pick<Request, "dictFormat" | "msgid" | "method">, e: unknown): Uint8Array {
    const w = wireError(e);
    const reconstructed = RECONSTRUCTED.has(w.exceptionClass);
    if (!(e instanceof BurgError)) {
      // Not a borg condition but a bug in burg: always worth the operator's attention.
      this.logger.error(`burg internal error (BurgInternalError) in ${req.method}(): ${(e as Error)?.stack ?? String(e)}`);
    }
    if (req.dictFormat) {
      if (!reconstructed) this.logger.debug(w.full.join("\n"));
      return encodeError(req, w, this.config.sysinfo());
    }
    if (!reconstructed) {
      const message = e instanceof BurgError ? e.message : `${w.exceptionClass} Exception in RPC call`;
      this.logger.error(message);
      this.logger.log(w.trace ? "ERROR" : "DEBUG", `${w.full.join("")}\n${this.config.sysinfo()}`);
    }
    return encodeError(req, w, "");
  }

  private async dispatch(method: string, args: Map<string, unknown>): Promise<unknown> {
    switch (method) {
      case "negotiate":
        return this.negotiate(args.get("client_data"));
      case "open":
        return this.open(args);
      case "inject_exception":
        return injectException(argBytes(method, args, "kind"));
    }
    const repo = this.repo;
    if (repo === null) throw new RepositoryNotOpen(method);
    switch (method) {
      case "__len__":
        return await repo.len();
      case "check":
        return await repo.check({
          repair: argBool(args, "repair", false),
          maxDuration: argNumber(method, args, "max_duration", 0),
        });
      case "commit":
        await repo.commit({
          compact: argBool(args, "compact", true),
          threshold: argNumber(method, args, "threshold", 0.1),
          cleanupCommits: argBool(args, "cleanup_commits", false),
        });
        this.tell((o) => o.committed(repo.activity?.()));
        return null;
      case "rollback":
        await repo.rollback();
        return null;
      case "destroy":
        await repo.destroy();
        // The handle is closed and the repository gone: later calls get RepositoryNotOpen.
        this.repo = null;
        return null;
      case "get":
        return await repo.get(argId(method, args));
      case "list":
      case "scan": {
        const limit = argOptNumber(method, args, "limit");
        const marker = argOptBytes(method, args, "marker");
        return method === "list" ? await repo.list(limit, marker) : await repo.scan(limit, marker);
      }
      case "put":
        await repo.put(argId(method, args), argBytes(method, args, "data"));
        return null;
      case "delete":
        await repo.delete(argId(method, args));
        return null;
      case "save_key":
        await repo.saveKey(argBytes(method, args, "keydata"));
        return null;
      case "load_key":
        return await repo.loadKey();
      case "break_lock":
        await repo.breakLock();
        return null;
      case "get_free_nonce":
        return await repo.getFreeNonce();
      case "commit_nonce_reservation":
        await repo.commitNonceReservation(
          argInt(method, args, "next_unreserved"),
          argOptInt(method, args, "start_nonce"),
        );
        return null;
    }
    throw new InvalidRPCMethod(method);
  }

  private negotiate(clientData: unknown): unknown {
    const { answer, json } = negotiateAnswer(clientData);
    this.clientVersion = clientVersion(clientData);
    if (json) {
      this.logger.json = true;
      this.logger.debug("Initialized logging system for JSON-based protocol");
    }
    if (this.clientVersion !== null) this.logger.debug(`client version: ${formatVersion(this.clientVersion)}`);
    const version = this.clientVersion === null ? null : formatVersion(this.clientVersion);
    this.tell((o) => o.negotiated(version));
    return answer;
  }

  private async open(args: Map<string, unknown>): Promise<Uint8Array> {
    const { policy, pathContext } = this.config;
    const rawPath = args.get("path");
    let path: string;
    if (isBytes(rawPath)) {
      try {
        path = bytesToStringStrict(rawPath);
      } catch {
        throw new PathNotAllowed(bytesToString(rawPath));
      }
    } else if (typeof rawPath === "string") {
      path = rawPath;
    } else {
      throw new PathNotAllowed(String(rawPath));
    }
    this.logger.debug(`Resolving repository path ${JSON.stringify(path)}`);
    const resolved = resolveRepositoryPath(path, pathContext);
    this.logger.debug(`Resolved repository path to ${JSON.stringify(resolved)}`);
    checkPathAllowed(resolved, policy, pathContext.cwd);
    const create = argBool(args, "create", false);
    if (create && policy.permissions === "read-only") {
      throw new PermissionDenied("Permission denied: creating a repository is not allowed (burg serve --permissions read-only).");
    }
    // `borg init` through `serve --append-only` does not make an append-only repository, while
    // `borg init --append-only` does (remote.py RepositoryServer.open).
    const appendOnly = (!create && policy.appendOnly) || argBool(args, "append_only", false);
    const lockWait = args.has("lock_wait")
      ? argOptNumber("open", args, "lock_wait")
      : (this.config.defaultLockWait ?? null);
    if (this.repo !== null || this.pendingOpen !== null) await this.closeRepository();
    this.closed = false;
    const opening = this.config.openRepository(resolved, {
      create,
      exclusive: argOptBool(args, "exclusive", null),
      lockWait,
      lock: argBool(args, "lock", true),
      appendOnly,
      storageQuota: policy.storageQuota,
      keepDeleted: policy.keepDeleted ?? null,
      makeParentDirs: argBool(args, "make_parent_dirs", false),
    });
    this.pendingOpen = opening;
    // Waiting for a lock must not outlive an abort: race it, and close what arrives late.
    let handle: RepositoryHandle | null;
    try {
      handle = await Promise.race([opening, this.abortSignal.wait().then(() => null)]);
    } catch (e) {
      this.pendingOpen = null;
      this.tell((o) => o.opened(resolved, e));
      throw e;
    }
    this.pendingOpen = null;
    if (handle === null) {
      void opening.then(
        (h) => h.close(),
        () => undefined,
      );
      throw new BurgError("SessionAborted", "session aborted while opening the repository");
    }
    if (this.aborted) {
      await handle.close();
      throw new BurgError("SessionAborted", "session aborted while opening the repository");
    }
    this.repo = policy.permissions === "all" ? handle : new GuardedRepository(handle, policy.permissions, this.logger);
    this.tell((o) => o.opened(handle.path));
    const after = this.afterFirstOpen;
    if (after !== undefined) {
      this.afterFirstOpen = undefined;
      setTimeout(after, 0);
    }
    return handle.id;
  }

  /** Roll back and close; idempotent. */
  private async closeRepository(): Promise<void> {
    const repo = this.repo;
    this.repo = null;
    if (this.pendingOpen !== null) {
      void this.pendingOpen.then(
        (h) => h.close(),
        () => undefined,
      );
      this.pendingOpen = null;
    }
    if (repo === null || this.closed) return;
    this.closed = true;
    try {
      await repo.close();
    } catch (e) {
      this.logger.error(`closing the repository failed: ${(e as Error)?.message ?? String(e)}`);
    }
    this.tell((o) => o.closed(repo.activity?.()));
  }
}

const END: unique symbol = Symbol("session.end");

/** borg's RepositoryServer.inject_exception, a test hook in the method allowlist. */
function injectException(kindBytes: Uint8Array): null {
  const kind = bytesToString(kindBytes);
  const s1 = "test string";
  const s2 = "test string2";
  switch (kind) {
    case "DoesNotExist":
      throw new DoesNotExist(s1);
    case "AlreadyExists":
      throw new AlreadyExists(s1);
    case "CheckNeeded":
      throw new CheckNeeded(s1);
    case "IntegrityError":
      throw new IntegrityError(s1);
    case "PathNotAllowed":
      throw new PathNotAllowed("foo");
    case "ObjectNotFound":
      throw new ObjectNotFound(s1, s2);
    case "InvalidRPCMethod":
      throw new InvalidRPCMethod(s1);
    case "divide":
      throw new BurgError("ZeroDivisionError", "integer division or modulo by zero", ["integer division or modulo by zero"], {
        traceback: true,
      });
  }
  return null;
}
