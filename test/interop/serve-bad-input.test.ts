// dist/burg serve driven directly with hand-made msgpack frames: the answers borg's client
// relies on are byte-identical to borg serve's, and bad input (malformed, truncated or
// oversized frames, unknown methods, calls before open), signals and cut connections end in a
// clear error or a clean exit, never a crash or a hang, with the transaction rolled back and
// the lock released.

import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BURG, borgEnv, requireBorg, requireBurg, run, tempDir } from "../support/env.ts";
import { repoContents } from "../support/repo-contents.ts";
import { NEGOTIATE_1_2, rpc, startServe, type ServeProcess } from "../support/serve-process.ts";
import { encode, mapGet } from "../../src/util/msgpack.ts";

const TIMEOUT = 120_000;
const ascii = (s: string) => new TextEncoder().encode(s);
const text = (b: unknown) => new TextDecoder().decode(b as Uint8Array);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const objId = (n: number) => new Uint8Array(32).fill(n);

function newRepo(): { dir: string; repo: string; env: Record<string, string> } {
  const dir = tempDir("burg-badinput-");
  const env = borgEnv(dir);
  const repo = join(dir, "repo");
  const r = run([requireBorg(), "init", "-e", "none", repo], { env });
  if (r.code !== 0) throw new Error(r.stderr);
  return { dir, repo, env };
}

function burg(env: Record<string, string>, ...args: string[]): ServeProcess {
  return startServe([requireBurg(), "serve", ...args], env);
}

function lockFiles(repo: string): string[] {
  return readdirSync(repo).filter((n) => n.startsWith("lock."));
}

function field(reply: unknown, name: string): unknown {
  return mapGet(reply as Map<unknown, unknown>, name);
}

/** What borg's client uses of an error reply (exception_full and sysinfo differ by nature). */
function errorShape(reply: unknown): unknown {
  return {
    i: field(reply, "i"),
    exception_class: text(field(reply, "exception_class")),
    exception_args: (field(reply, "exception_args") as unknown[]).map((a) => (a instanceof Uint8Array ? text(a) : a)),
    exception_short: (field(reply, "exception_short") as unknown[]).map(text),
    exception_trace: field(reply, "exception_trace"),
    keys: [...(reply as Map<unknown, unknown>).keys()].map(text),
  };
}

async function openSession(p: ServeProcess, repo: string): Promise<void> {
  p.sendMessages(NEGOTIATE_1_2, rpc(2, "open", { path: ascii(repo), create: false, lock_wait: 1, lock: true, exclusive: true }));
  await p.waitForReplies(2);
  expect(field(p.replies[1], "r")).toBeInstanceOf(Uint8Array);
}

describe("burg serve answers like borg serve", () => {
  test(
    "negotiate, open and the errors the client rebuilds are the same bytes or fields",
    async () => {
      const { repo, env } = newRepo();
      const script = (p: ServeProcess) => {
        p.sendMessages(
          NEGOTIATE_1_2,
          rpc(2, "open", { path: ascii(repo), create: false, lock_wait: 1, lock: true, exclusive: false }),
          rpc(3, "frobnicate", {}),
          rpc(4, "get", { id: objId(7) }),
          rpc(5, "open", { path: ascii(join(repo, "nope")), create: false, lock_wait: 1, lock: true, exclusive: false }),
          rpc(6, "inject_exception", { kind: ascii("PathNotAllowed") }),
          rpc(7, "inject_exception", { kind: ascii("ObjectNotFound") }),
          rpc(8, "inject_exception", { kind: ascii("CheckNeeded") }),
          // not borg's Error classes: exception_short as python's format_exception_only
          rpc(9, "inject_exception", { kind: ascii("divide") }),
          rpc(10, "put", { id: objId(3) }),
          rpc(11, "inject_exception", { kind: ascii("IntegrityError") }),
        );
        p.end();
      };
      const ref = startServe([requireBorg(), "serve"], env);
      script(ref);
      const refEnd = await ref.finished;
      const ours = burg(env);
      script(ours);
      const oursEnd = await ours.finished;
      expect(oursEnd.code).toBe(refEnd.code);
      expect(ours.replies.length).toBe(11);
      // negotiate and open: byte for byte
      expect(hex(encode(ours.replies[0]))).toBe(hex(encode(ref.replies[0])));
      expect(hex(encode(ours.replies[1]))).toBe(hex(encode(ref.replies[1])));
      for (const i of [2, 3, 4, 5, 6, 7, 8, 9, 10]) expect(errorShape(ours.replies[i])).toEqual(errorShape(ref.replies[i]));
      expect(errorShape(ours.replies[8])).toMatchObject({ exception_short: ["ZeroDivisionError: integer division or modulo by zero\n"] });
    },
    TIMEOUT,
  );

  test(
    "a 20 MiB object goes in and comes back unchanged; calls before open get a clear error",
    async () => {
      const { repo, env } = newRepo();
      const p = burg(env);
      p.sendMessages(NEGOTIATE_1_2, rpc(2, "get", { id: objId(1) }));
      await p.waitForReplies(2);
      expect(text(field(p.replies[1], "exception_class"))).toBe("RepositoryNotOpen");
      p.sendMessages(rpc(3, "open", { path: ascii(repo), create: false, lock_wait: 1, lock: true, exclusive: true }));
      const big = new Uint8Array(20 * 1024 * 1024 - 41).map((_, i) => (i * 31 + (i >> 12)) & 0xff);
      p.sendMessages(rpc(4, "put", { id: objId(9), data: big }), rpc(5, "commit", { compact: false }), rpc(6, "get", { id: objId(9) }));
      await p.waitForReplies(6);
      expect(Buffer.compare(field(p.replies[5], "r") as Uint8Array, big)).toBe(0);
      p.end();
      expect((await p.finished).code).toBe(0);
      expect(repoContents(repo).ids).toContain(hex(objId(9)));
      expect(lockFiles(repo)).toEqual([]);
    },
    TIMEOUT,
  );
});

describe("bad input and interruptions", () => {
  test(
    "a malformed frame: clear error, exit 2, uncommitted data rolled back, lock released",
    async () => {
      const { repo, env } = newRepo();
      const p = burg(env);
      await openSession(p, repo);
      expect(lockFiles(repo).length).toBeGreaterThan(0);
      p.sendMessages(rpc(3, "put", { id: objId(3), data: ascii("uncommitted") }));
      await p.waitForReplies(3);
      p.send(new Uint8Array([0xc1, 0x00, 0x00]));
      const end = await p.finished;
      expect(end.code).toBe(2);
      expect(end.stderr).toContain("unexpected RPC data format from client");
      expect(end.stderr).toContain("0xc1");
      expect(lockFiles(repo)).toEqual([]);
      expect(repoContents(repo).ids).not.toContain(hex(objId(3)));
      expect(run([requireBorg(), "check", repo], { env }).code).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "a frame over borg's limits is refused from its header, without waiting for the data",
    async () => {
      const { repo, env } = newRepo();
      const p = burg(env);
      await openSession(p, repo);
      // a put whose data claims 100 MB (borg's limit is MAX_OBJECT_SIZE, 20 MiB); stdin stays open
      p.send(new Uint8Array([0x83, 0xa1, 0x69, 0x03, 0xa1, 0x6d, 0xa3, 0x70, 0x75, 0x74, 0xa1, 0x61, 0x81, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xdb, 0x05, 0xf5, 0xe1, 0x00]));
      const end = await p.finished;
      expect(end.code).toBe(2);
      expect(end.stderr).toContain("exceeds max_str_len(20971520)");
      expect(lockFiles(repo)).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    "a message that is no request, and a truncated one at end of input",
    async () => {
      const { env } = newRepo();
      const a = burg(env);
      a.sendMessages(NEGOTIATE_1_2, [1, 2, 3]);
      expect((await a.finished).code).toBe(2);
      const b = burg(env);
      b.sendMessages(NEGOTIATE_1_2);
      b.send(encode(rpc(2, "open", { path: ascii("/x") })).slice(0, 9));
      b.end();
      const endB = await b.finished;
      expect(endB.code).toBe(0);
      expect(b.replies.length).toBe(1);
    },
    TIMEOUT,
  );

  for (const [signal, code] of [
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const) {
    test(
      `${signal} in the middle of a transaction: rolled back, lock released, exit ${code}`,
      async () => {
        const { repo, env } = newRepo();
        const p = burg(env);
        await openSession(p, repo);
        p.sendMessages(rpc(3, "put", { id: objId(4), data: ascii("never committed") }));
        await p.waitForReplies(3);
        p.proc.kill(signal);
        const end = await p.finished;
        expect(end.code).toBe(code);
        expect(lockFiles(repo)).toEqual([]);
        expect(repoContents(repo).ids).not.toContain(hex(objId(4)));
        expect(run([requireBorg(), "check", repo], { env }).code).toBe(0);
      },
      TIMEOUT,
    );
  }

  test(
    "SIGINT is ignored (the borg client starts its server so; Ctrl-C is the client's to handle)",
    async () => {
      const { repo, env } = newRepo();
      const p = burg(env);
      await openSession(p, repo);
      p.proc.kill("SIGINT");
      p.sendMessages(rpc(3, "put", { id: objId(8), data: ascii("after SIGINT") }), rpc(4, "commit", { compact: false }));
      await p.waitForReplies(4);
      expect(field(p.replies[3], "exception_class")).toBeUndefined();
      p.end();
      expect((await p.finished).code).toBe(0);
      expect(repoContents(repo).ids).toContain(hex(objId(8)));
    },
    TIMEOUT,
  );

  test(
    "the client goes away (end of input) in the middle of a transaction: rolled back, exit 0",
    async () => {
      const { repo, env } = newRepo();
      const p = burg(env);
      await openSession(p, repo);
      p.sendMessages(rpc(3, "put", { id: objId(5), data: ascii("never committed") }));
      await p.waitForReplies(3);
      p.end();
      expect((await p.finished).code).toBe(0);
      expect(lockFiles(repo)).toEqual([]);
      expect(repoContents(repo).ids).not.toContain(hex(objId(5)));
    },
    TIMEOUT,
  );

  test(
    "nobody reads the replies any more (broken pipe): the server notices and cleans up",
    async () => {
      const { dir, repo, env } = newRepo();
      // `head` takes the first bytes of the replies and exits, closing the pipe under burg
      const p = startServe(["/bin/sh", "-c", `"$0" serve | head -c 100 >/dev/null`, BURG], env);
      p.sendMessages(NEGOTIATE_1_2, rpc(2, "open", { path: ascii(repo), create: false, lock_wait: 1, lock: true, exclusive: true }));
      const chunk = new Uint8Array(1 << 20).fill(1);
      p.sendMessages(rpc(3, "put", { id: objId(6), data: chunk }));
      for (let i = 0; i < 20; i++) p.sendMessages(rpc(10 + i, "get", { id: objId(6) }));
      await p.finished; // sh returns once burg has exited too
      expect(lockFiles(repo)).toEqual([]);
      expect(existsSync(join(dir, "repo", "config"))).toBe(true);
      expect(repoContents(repo).ids).not.toContain(hex(objId(6)));
    },
    TIMEOUT,
  );
});
