// Scale tier: 1,000,000 objects through the RPC protocol as borg's RemoteRepository sends
// them, through `burg serve`, `burg socket` (via `burg connect`) and `borg serve` side by side:
// asynchronous puts (borg's wait=False: no limit on requests in flight) and a commit, then the
// objects read back with synchronous gets (at most 100 in flight) and compared byte for byte,
// then 500,000 asynchronous deletes and a commit. burg serve reads back all 1,000,000; the
// socket and the borg serve reference read back every 10th (borg serve alone would need minutes
// for all of them). The three servers give the same answers, and plain
// `borg check --repository-only` accepts every repository. Then a session that only reads gets
// the same answers from burg serve as from borg serve, without burg holding the index table.

import { describe, expect, test } from "bun:test";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { BURG, borgEnv, requireBorg, requireBurg, runAsync } from "../support/env.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { testScope } from "../support/scope.ts";
import { startBurgSocket } from "../support/socket-server.ts";

const N = 1_000_000;
const COMMIT = { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false };
const scope = testScope();

function idOf(i: number): Uint8Array {
  const id = new Uint8Array(32);
  const dv = new DataView(id.buffer);
  let x = (i + 1) * 0x9e3779b1;
  for (let w = 0; w < 8; w++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    dv.setUint32(w * 4, x >>> 0, true);
  }
  dv.setUint32(0, i, true); // unique whatever the mixer does
  return id;
}

/** Object i: 16 to 1,024 bytes, its number first, then a byte pattern of it. */
function dataOf(i: number): Uint8Array {
  const size = 16 + ((i * 7919) % 1009);
  const b = new Uint8Array(size).fill((i * 31) & 0xff);
  new DataView(b.buffer).setUint32(0, i, true);
  b[size - 1] = i & 0x7f;
  return b;
}

function sameBytes(a: unknown, b: Uint8Array): boolean {
  return a instanceof Uint8Array && a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

interface Outcome {
  server: string;
  lenAfterPut: unknown;
  gets: number;
  wrongGets: number;
  lenAfterDelete: unknown;
  exitCodes: number[];
}

async function session(cmd: string[], env: Record<string, string>, repo: string, create: boolean, work: (c: RpcClient) => Promise<void>) {
  const c = new RpcClient(cmd, env);
  await c.negotiate();
  await c.open(repo, create);
  await work(c);
  return c.close();
}

async function drive(server: string, cmd: string[], env: Record<string, string>, repo: string, getEvery: number): Promise<Outcome> {
  const out: Outcome = { server, lenAfterPut: null, gets: 0, wrongGets: 0, lenAfterDelete: null, exitCodes: [] };
  // 1. a million asynchronous puts, as borg create sends its chunks, and a commit
  const put = await session(cmd, env, repo, true, async (c) => {
    for (let i = 0; i < N; i++) await c.callAsync("put", { id: idOf(i), data: dataOf(i) });
    await c.asyncResponses();
    await c.call("commit", COMMIT);
    out.lenAfterPut = await c.call("__len__", {});
  });
  // 2. objects back, synchronously (100 in flight), compared as they arrive
  const get = await session(cmd, env, repo, false, async (c) => {
    const replies: Promise<void>[] = [];
    for (let i = 0; i < N; i += getEvery) {
      out.gets++;
      const { reply } = await c.send("get", { id: idOf(i) });
      replies.push(
        reply.then(
          (data) => {
            if (!sameBytes(data, dataOf(i))) out.wrongGets++;
          },
          () => {
            out.wrongGets++;
          },
        ),
      );
    }
    await c.flush();
    await Promise.all(replies);
  });
  // 3. half of them deleted asynchronously, as borg delete and prune send their deletes
  const del = await session(cmd, env, repo, false, async (c) => {
    for (let i = 0; i < N; i += 2) await c.callAsync("delete", { id: idOf(i) });
    await c.asyncResponses();
    await c.call("commit", COMMIT);
    out.lenAfterDelete = await c.call("__len__", {});
  });
  out.exitCodes = [put.exitCode, get.exitCode, del.exitCode];
  return out;
}

describe(`${N.toLocaleString("en")} objects with borg's asynchronous pipelining`, () => {
  test("burg serve, burg socket and borg serve: every object back intact, same answers, plain borg check passes", async () => {
    requireBorg();
    requireBurg();
    const dir = scope.tempDir("burg-scale-million-");
    const env = { ...borgEnv(dir), BURG_CONFIG_DIR: join(dir, "cfg") };
    const sock = join(dir, "burg.sock");
    await startBurgSocket(scope, ["--socket", sock], { env });
    const runs: Array<[string, string[], number]> = [
      ["burg serve", [BURG, "serve"], 1],
      ["burg socket", [BURG, "connect", sock], 10],
      ["borg serve", ["borg", "serve"], 10],
    ];
    const outcomes = await Promise.all(runs.map(([name, cmd, every], k) => drive(name, cmd, env, join(dir, `repo-${k}`), every)));
    const want = (server: string, every: number): Outcome => ({
      server,
      lenAfterPut: N,
      gets: N / every,
      wrongGets: 0,
      lenAfterDelete: N / 2,
      exitCodes: [0, 0, 0],
    });
    expect(outcomes).toEqual(runs.map(([name, , every]) => want(name, every)));
    for (let k = 0; k < runs.length; k++) {
      const r = await runAsync([requireBorg(), "check", "--repository-only", join(dir, `repo-${k}`)], { env });
      expect({ server: runs[k]![0], code: r.code, stderr: r.stderr }).toEqual({ server: runs[k]![0], code: 0, stderr: "" });
    }

    // A session that only reads (as borg list, info and extract open the repository) is answered
    // from index.N on disk, not from the table in memory: the same answers as borg serve on its
    // identical repository, and a peak RSS that does not grow with the index.
    const look = async (cmd: string[], repo: string) => {
      const answers: unknown[] = [];
      const usage = await session(cmd, env, repo, false, async (c) => {
        answers.push(await c.call("__len__", {}));
        for (const i of [1, 3, 999_999]) answers.push(sameBytes(await c.call("get", { id: idOf(i) }), dataOf(i)));
        const listed = (await c.call("list", { limit: 1000, marker: null })) as Uint8Array[];
        answers.push(listed.map((k) => Buffer.from(k).toString("hex")));
        answers.push(((await c.call("list", { limit: 5, marker: listed[999] })) as Uint8Array[]).map((k) => Buffer.from(k).toString("hex")));
      });
      return { answers, rssKiB: usage.maxRssKiB };
    };
    const burgLook = await look([BURG, "serve"], join(dir, "repo-0"));
    const borgLook = await look(["borg", "serve"], join(dir, "repo-2"));
    expect(burgLook.answers).toEqual(borgLook.answers);
    expect(burgLook.answers.slice(0, 4)).toEqual([N / 2, true, true, true]);
    const small = join(dir, "repo-small");
    await session([BURG, "serve"], env, small, true, async (c) => {
      for (let i = 0; i < 10; i++) await c.call("put", { id: idOf(i), data: dataOf(i) });
      await c.call("commit", COMMIT);
    });
    const smallLook = await session([BURG, "serve"], env, small, false, async (c) => {
      await c.call("__len__", {});
      await c.call("get", { id: idOf(1) });
    });
    const indexBytes = readdirSync(join(dir, "repo-0"))
      .filter((f) => /^index\.\d+$/.test(f))
      .map((f) => statSync(join(dir, "repo-0", f)).size)[0]!;
    expect(indexBytes).toBeGreaterThan(40 << 20);
    // with the table in memory the difference would be about indexBytes
    expect((burgLook.rssKiB - smallLook.maxRssKiB) * 1024).toBeLessThan(indexBytes / 4);
  }, 30 * 60_000);
});
