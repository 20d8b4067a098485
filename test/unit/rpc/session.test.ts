// Session behaviour over an in-memory stream against the fake repository: protocol shapes,
// pipelining and order, errors as borg's client rebuilds them, bad input, and cleanup.

import { describe, expect, test } from "bun:test";
import { mkdirSync, realpathSync } from "node:fs";
import { join } from "node:path";
import type { ServePolicy } from "../../../src/rpc/policy.ts";
import { Session, type SessionConfig } from "../../../src/rpc/session.ts";
import { Logger } from "../../../src/util/log.ts";
import { StreamIoError } from "../../../src/util/io-errors.ts";
import { encode, mapGet } from "../../../src/util/msgpack.ts";
import { tempDir } from "../../support/env.ts";
import { FakeStore } from "../../support/fake-repository.ts";
import { MemoryStream, request } from "../../support/memory-stream.ts";

const ascii = (s: string) => new TextEncoder().encode(s);
const text = (b: unknown) => new TextDecoder().decode(b as Uint8Array);
const id = (n: number) => new Uint8Array(32).fill(n);

interface Setup {
  store: FakeStore;
  stream: MemoryStream;
  session: Session;
  logger: Logger;
  logLines: string[];
  root: string;
  done: Promise<import("../../../src/rpc/session.ts").SessionResult>;
}

function setup(policy: Partial<ServePolicy> = {}): Setup {
  const root = realpathSync(tempDir("burg-session-"));
  mkdirSync(join(root, "repo"));
  const store = new FakeStore();
  store.addRepo(join(root, "repo"));
  const logger = new Logger();
  const logLines: string[] = [];
  logger.sink = { write: (l) => logLines.push(l) };
  logger.setLevel("DEBUG");
  const config: SessionConfig = {
    openRepository: store.open,
    policy: {
      restrictToPaths: [],
      restrictToRepositories: [],
      appendOnly: false,
      storageQuota: null,
      permissions: "all",
      ...policy,
    },
    pathContext: { baseDir: root, home: root, cwd: root, userHome: () => null },
    logger,
    sysinfo: () => "sysinfo text\n",
  };
  const session = new Session(config);
  const stream = new MemoryStream();
  const done = session.run(stream);
  return { store, stream, session, logger, logLines, root, done };
}

function reply(r: unknown): Map<unknown, unknown> {
  expect(r).toBeInstanceOf(Map);
  return r as Map<unknown, unknown>;
}

const NEGOTIATE = request(1, "negotiate", { client_data: new Map([["client_version", [1, 2, 4, -1]]]) });

describe("negotiate and open", () => {
  test("a dict client gets {server_version} and JSON log lines", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    s.stream.end();
    const result = await s.done;
    expect(result).toMatchObject({ end: "eof", exitCode: 0 });
    const [neg, open] = s.stream.replies.map(reply);
    expect(mapGet(neg!, "i")).toBe(1);
    expect(mapGet(mapGet(neg!, "r") as Map<unknown, unknown>, "server_version")).toEqual([1, 2, 4, -1]);
    expect(mapGet(open!, "r")).toEqual(id(0x42));
    expect(s.logger.json).toBe(true);
    expect(JSON.parse(s.logLines.at(-1)!)).toMatchObject({ type: "log_message", levelname: "DEBUG" });
    expect(s.store.opens[0]!.path).toBe(join(s.root, "repo"));
    expect(s.store.handles[0]!.closed).toBe(true);
  });

  test("open passes the client's flags, and serve --append-only except for init", async () => {
    const s = setup({ appendOnly: true, storageQuota: 5e9 });
    s.stream.sendMessages(
      NEGOTIATE,
      request(2, "open", { path: ascii(join(s.root, "repo")), lock_wait: 7, exclusive: true, lock: false, unknown_arg: 1 }),
      request(3, "open", { path: ascii(join(s.root, "new")), create: true, exclusive: null }),
    );
    s.stream.end();
    await s.done;
    expect(s.store.opens.map((o) => o.opts)).toEqual([
      { create: false, exclusive: true, lockWait: 7, lock: false, appendOnly: true, storageQuota: 5e9, keepDeleted: null, makeParentDirs: false },
      { create: true, exclusive: null, lockWait: null, lock: true, appendOnly: false, storageQuota: 5e9, keepDeleted: null, makeParentDirs: false },
    ]);
    // the second open closed the first repository instead of leaking its lock
    expect(s.store.handles[0]!.closed).toBe(true);
  });

  test("a 1.0 client (client_data 2) gets 2 and tuple replies", async () => {
    const s = setup();
    s.stream.sendMessages(
      [1, 1, "negotiate", [2]],
      [1, 2, "open", [ascii(join(s.root, "repo")), false, null, true, false, false]],
      [1, 3, "put", [id(1), ascii("data")]],
      [1, 4, "get", [id(1)]],
      [1, 5, "get", [id(9)]],
    );
    s.stream.end();
    await s.done;
    expect(s.stream.replies).toEqual([
      [1, 1, null, 2],
      [1, 2, null, id(0x42)],
      [1, 3, null, null],
      [1, 4, null, ascii("data")],
      [1, 5, ascii("ObjectNotFound"), ascii("Remote Exception (see remote log for the traceback)")],
    ]);
  });

  test("a path outside --restrict-to-path is refused with PathNotAllowed as borg sends it", async () => {
    const s = setup({ restrictToPaths: ["/nonexistent-allowed"] });
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    s.stream.end();
    await s.done;
    const err = reply(s.stream.replies[1]);
    expect(text(mapGet(err, "exception_class"))).toBe("PathNotAllowed");
    expect((mapGet(err, "exception_args") as unknown[]).map(text)).toEqual([join(s.root, "repo")]);
    expect((mapGet(err, "exception_short") as unknown[]).map(text)).toEqual([
      `Repository path not allowed: ${join(s.root, "repo")}`,
    ]);
    expect(mapGet(err, "exception_trace")).toBe(false);
    expect(text(mapGet(err, "sysinfo"))).toBe("sysinfo text\n");
    expect(s.store.opens).toEqual([]);
  });
});

describe("requests", () => {
  test("pipelined requests are answered in order, ids and data stay bytes", async () => {
    const s = setup();
    const reqs: unknown[] = [NEGOTIATE, request(2, "open", { path: ascii("/~/repo") })];
    const binary = (n: number) => new Uint8Array(1000 + n).map((_, i) => (i * 7 + n) & 0xff);
    for (let n = 0; n < 100; n++) reqs.push(request(10 + n, "put", { id: id(n), data: binary(n), wait: false }));
    for (let n = 0; n < 100; n++) reqs.push(request(200 + n, "get", { id: id(99 - n) }));
    reqs.push(request(400, "__len__"), request(401, "commit", { compact: true, threshold: 0.1 }));
    s.stream.sendMessages(...reqs);
    s.stream.end();
    await s.done;
    const replies = s.stream.replies.map(reply);
    expect(replies.map((r) => mapGet(r, "i"))).toEqual(reqs.map((r) => mapGet(r as Map<unknown, unknown>, "i")));
    for (let n = 0; n < 100; n++) expect(mapGet(replies[102 + n]!, "r")).toEqual(binary(99 - n));
    expect(mapGet(replies[202]!, "r")).toBe(100);
    expect(s.store.repos.get(join(s.root, "repo"))!.committed.size).toBe(100);
  });

  test("a reply the client does not read yet does not stop reading requests", async () => {
    const s = setup();
    let release!: () => void;
    s.stream.writeGate = new Promise((r) => (release = r));
    s.stream.sendMessages(NEGOTIATE);
    await s.stream.waitForReplies(1);
    for (let n = 0; n < 50; n++) s.stream.sendMessages(request(10 + n, "negotiate", { client_data: 2 }));
    // the executor is stuck writing reply 1; the reader still takes all 50 requests in (a
    // reader that stalled would leave this loop spinning until the test times out)
    while (s.session.pendingRequests < 50) await Bun.sleep(1);
    expect(s.stream.replies.length).toBe(1);
    s.stream.writeGate = null;
    release();
    s.stream.end();
    await s.done;
    expect(s.stream.replies.length).toBe(51);
  });

  test("thousands of small requests in one read: at most 1024 wait decoded, all are answered in order", async () => {
    const s = setup();
    let release!: () => void;
    s.stream.writeGate = new Promise((r) => (release = r));
    s.stream.sendMessages(NEGOTIATE);
    await s.stream.waitForReplies(1);
    // as borg sends its asynchronous deletes: 20,000 requests arrive at once
    s.stream.sendMessages(...Array.from({ length: 20_000 }, (_, n) => request(10 + n, "negotiate", { client_data: 2 })));
    let most = 0;
    for (let t = 0; t < 50; t++) {
      most = Math.max(most, s.session.pendingRequests);
      await Bun.sleep(1);
    }
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(1024);
    s.stream.writeGate = null;
    release();
    s.stream.end();
    await s.done;
    expect(s.stream.replies.length).toBe(20_001);
    expect(s.stream.replies.map((r) => Number(mapGet(reply(r), "i")))).toEqual([1, ...Array.from({ length: 20_000 }, (_, n) => 10 + n)]);
  });

  test("while a request over the limit on bytes in flight is handled, no further request is decoded", async () => {
    // borg create's 8 MiB chunks: one being handled and one being read into is all the input
    // memory a session needs; decoding the next ones meanwhile held three or four such buffers.
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.stream.waitForReplies(2);
    const handle = s.store.handles[0]!;
    const put = handle.put.bind(handle);
    const waiting: number[] = [];
    handle.put = (key, data) => {
      waiting.push(s.session.pendingRequests);
      put(key, data);
    };
    const big = (n: number) => new Uint8Array(5 << 20).fill(n);
    const small = (n: number) => new Uint8Array(100_000).fill(n);
    s.stream.sendMessages(
      ...[1, 2, 3, 4].map((n) => request(10 + n, "put", { id: id(n), data: big(n), wait: false })),
      ...[5, 6, 7, 8].map((n) => request(10 + n, "put", { id: id(n), data: small(n), wait: false })),
    );
    s.stream.end();
    await s.done;
    // the small ones still queue up behind each other
    expect(waiting).toEqual([0, 0, 0, 0, 3, 2, 1, 0]);
    expect(s.stream.replies.map((r) => mapGet(reply(r), "i"))).toEqual([1, 2, 11, 12, 13, 14, 15, 16, 17, 18]);
  });

  test("errors carry borg's fields; unknown arguments are ignored, missing ones are a TypeError", async () => {
    const s = setup();
    s.stream.sendMessages(
      NEGOTIATE,
      request(2, "get", { id: id(1) }),
      request(3, "open", { path: ascii("/~/repo") }),
      request(4, "get", { id: id(1), future_arg: true }),
      request(5, "put", { id: id(1) }),
      request(6, "frobnicate"),
      request(7, "get", { id: ascii("short") }),
      request(8, "inject_exception", { kind: ascii("IntegrityError") }),
      request(9, "inject_exception", { kind: ascii("divide") }),
    );
    s.stream.end();
    await s.done;
    const r = s.stream.replies.map(reply);
    const cls = (x: Map<unknown, unknown>) => text(mapGet(x, "exception_class"));
    const short = (x: Map<unknown, unknown>) => (mapGet(x, "exception_short") as unknown[]).map(text).join("\n");
    expect(cls(r[1]!)).toBe("RepositoryNotOpen");
    expect(short(r[1]!)).toBe("Repository is not open: call open() before get().");
    expect(cls(r[3]!)).toBe("ObjectNotFound");
    expect((mapGet(r[3]!, "exception_args") as unknown[]).map(text)).toEqual(["01".repeat(32), join(s.root, "repo")]);
    expect(mapGet(r[3]!, "exception_trace")).toBe(true);
    expect(cls(r[4]!)).toBe("TypeError");
    expect(short(r[4]!)).toBe("TypeError: Repository.put() missing 1 required positional argument: 'data'\n");
    expect(cls(r[5]!)).toBe("InvalidRPCMethod");
    expect((mapGet(r[5]!, "exception_args") as unknown[]).map(text)).toEqual(["frobnicate"]);
    expect(cls(r[6]!)).toBe("TypeError");
    expect(cls(r[7]!)).toBe("IntegrityError");
    expect((mapGet(r[7]!, "exception_args") as unknown[]).map(text)).toEqual(["test string"]);
    expect(cls(r[8]!)).toBe("ZeroDivisionError");
    const full = (mapGet(r[8]!, "exception_full") as unknown[]).map(text);
    expect(full[0]).toBe("Traceback (most recent call last):\n");
    expect(full.at(-1)).toBe("ZeroDivisionError: integer division or modulo by zero\n");
    expect(short(r[8]!)).toBe("ZeroDivisionError: integer division or modulo by zero\n");
  });

  test("a bug in burg (not a borg error) goes over as BurgInternalError, and is logged as an error", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.stream.waitForReplies(2);
    s.store.handles[0]!.lenError = new TypeError("undefined is not an object");
    s.stream.sendMessages(request(3, "__len__"));
    s.stream.end();
    await s.done;
    const r = s.stream.replies.map(reply)[2]!;
    expect(text(mapGet(r, "exception_class"))).toBe("BurgInternalError");
    expect((mapGet(r, "exception_short") as unknown[]).map(text)).toEqual(["BurgInternalError: TypeError: undefined is not an object\n"]);
    expect(mapGet(r, "exception_trace")).toBe(true);
    const errors = s.logLines.map((l) => JSON.parse(l)).filter((l) => l.levelname === "ERROR");
    expect(errors[0].message).toContain("burg internal error (BurgInternalError) in __len__(): TypeError: undefined is not an object");
  });

  test("end of input rolls back the open transaction and closes the repository", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }), request(3, "put", { id: id(5), data: ascii("x") }));
    s.stream.end();
    await s.done;
    const h = s.store.handles[0]!;
    expect(h.closed).toBe(true);
    expect(h.state.committed.size).toBe(0);
  });
});

describe("bad input", () => {
  test("malformed msgpack: earlier requests still run, then the session ends with an error and closes", async () => {
    const s = setup();
    s.stream.send(
      new Uint8Array([
        ...encode(NEGOTIATE),
        ...encode(request(2, "open", { path: ascii("/~/repo") })),
        ...encode(request(3, "put", { id: id(5), data: ascii("x") })),
        ...encode(request(4, "commit")),
        0xc1,
        ...encode(request(5, "put", { id: id(6), data: ascii("y") })),
      ]),
    );
    const result = await s.done;
    expect(result.end).toBe("protocol-error");
    expect(result.exitCode).toBe(2);
    expect(s.stream.replies.length).toBe(4);
    expect(s.store.handles[0]!.closed).toBe(true);
    expect([...s.store.handles[0]!.state.committed.keys()]).toEqual(["05".repeat(32)]);
    expect(s.logLines.some((l) => l.includes("unexpected RPC data format") && l.includes("0xc1"))).toBe(true);
  });

  test("a frame over borg's size limits is refused from its header", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE);
    // {i: 2, m: "put", a: {data: <str32 claiming 100 MB>}} without the data
    s.stream.send(new Uint8Array([0x83, 0xa1, 0x69, 0x02, 0xa1, 0x6d, 0xa3, 0x70, 0x75, 0x74, 0xa1, 0x61, 0x81, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xdb, 0x05, 0xf5, 0xe1, 0x00]));
    const result = await s.done; // no end(): the session must not wait for the 100 MB
    expect(result.end).toBe("protocol-error");
    expect(result.error!.message).toContain("exceeds max_str_len(20971520)");
  });

  test("a message that is not a request (no msgid) ends the session", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }), [1, 2, 3]);
    const result = await s.done;
    expect(result.end).toBe("protocol-error");
    expect(s.store.handles[0]!.closed).toBe(true);
  });

  test("a truncated message at end of input is dropped quietly", async () => {
    const s = setup();
    const full = encode(request(2, "open", { path: ascii("/~/repo") }));
    s.stream.sendMessages(NEGOTIATE);
    s.stream.send(full.slice(0, 10));
    s.stream.end();
    const result = await s.done;
    expect(result.end).toBe("eof");
    expect(s.stream.replies.length).toBe(1);
  });

  test("a client that goes away while we reply: rolled back and closed", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.stream.waitForReplies(2);
    s.stream.broken = true;
    s.stream.sendMessages(request(3, "put", { id: id(5), data: ascii("x") }));
    const result = await s.done;
    expect(result.end).toBe("connection-lost");
    expect(s.store.handles[0]!.closed).toBe(true);
    expect(s.store.handles[0]!.state.committed.size).toBe(0);
  });

  test("a failed write that is not the client going away: an ERROR naming the call and errno, rolled back, exit 2", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.stream.waitForReplies(2);
    s.stream.writeError = new StreamIoError("writev", 1, Object.assign(new Error("EINVAL: invalid argument, writev"), { code: "EINVAL" }));
    s.stream.sendMessages(request(3, "put", { id: id(5), data: ascii("x") }), request(4, "put", { id: id(6), data: ascii("y") }));
    const result = await s.done;
    expect(result.end).toBe("io-error");
    expect(result.exitCode).toBe(2);
    expect(s.store.handles[0]!.closed).toBe(true);
    expect(s.store.handles[0]!.state.committed.size).toBe(0);
    const errors = s.logLines.map((l) => JSON.parse(l)).filter((l) => l.levelname === "ERROR");
    expect(errors.length).toBe(1);
    expect(errors[0].message).toContain("writev(2) on fd 1 failed: EINVAL");
  });

  test("a failed read that is not the client going away: an ERROR, rolled back, exit 2", async () => {
    const s = setup();
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.stream.waitForReplies(2);
    s.stream.readError(new StreamIoError("read", 0, Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" })));
    const result = await s.done;
    expect(result.end).toBe("io-error");
    expect(result.exitCode).toBe(2);
    expect(s.store.handles[0]!.closed).toBe(true);
    const errors = s.logLines.map((l) => JSON.parse(l)).filter((l) => l.levelname === "ERROR");
    expect(errors.map((e) => e.message).join("\n")).toContain("read(2) on fd 0 failed: EIO");
  });

  test("abort while open() waits for a lock ends the session; the late handle gets closed", async () => {
    const s = setup();
    let unlock!: () => void;
    s.store.openGate = new Promise((r) => (unlock = r));
    s.stream.sendMessages(NEGOTIATE, request(2, "open", { path: ascii("/~/repo") }));
    await s.store.waitForOpenCalls(1);
    s.session.abort("SIGTERM");
    const result = await s.done;
    expect(result.end).toBe("aborted");
    unlock();
    await s.store.pending[0]; // the session's close() handler was attached before this await
    expect(s.store.handles[0]!.closed).toBe(true);
  });
});
