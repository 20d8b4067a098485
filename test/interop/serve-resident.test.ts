// burg serve gives back the pages of its executable that start-up touched once the session's
// repository is open (util/resident.ts), and goes on serving from the pages it maps back;
// burg check does the same, and burg socket once it listens.

import { describe, expect, test } from "bun:test";
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { mappingsOf } from "../../src/util/resident.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { BURG, borgEnv, findBurg, requireBorg, requireBurg, run, tempDir } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import { startBurgSocket } from "../support/socket-server.ts";

const scope = testScope();

/** KiB of `pid`'s executable resident in its memory. */
function executableRssKiB(pid: number): number {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  return mappingsOf(exe, readFileSync(`/proc/${pid}/smaps`, "utf8")).reduce((sum, m) => sum + m.rssKiB, 0);
}

function id(i: number): Uint8Array {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, i);
  dv.setUint32(8, Math.imul(i, 0x9e3779b1));
  return b;
}

const COUNT = 50_000;

describe("the executable's start-up pages", () => {
  test(`given back after open; then ${COUNT} pipelined puts, a commit and gets all come back intact, borg check and burg check pass`, async () => {
    requireBurg();
    requireBorg();
    const home = tempDir();
    const repo = join(home, "repo");
    const env = borgEnv(home);
    const c = new RpcClient([BURG, "serve"], env);
    try {
      await c.negotiate();
      const burg = findBurg(c.pid)!;
      expect(burg).not.toBeNull();
      const before = executableRssKiB(burg);
      await c.open(repo, true);
      // the pages go once the open's reply is out: wait for it (well under a second)
      let after = executableRssKiB(burg);
      for (let i = 0; i < 100 && after > before * 0.75; i++) {
        await Bun.sleep(20);
        after = executableRssKiB(burg);
      }
      expect(after).toBeLessThan(before * 0.75);

      // borg's way of storing: puts with wait=False, no limit on requests in flight
      const data = (i: number) => new Uint8Array(4096).fill(i & 0xff);
      await c.pipelineAsync("put", (function* () {
        for (let i = 0; i < COUNT; i++) yield { id: id(i), data: data(i) };
      })());
      await c.asyncResponses();
      await c.call("commit", { save_space: false });
      const got = (await c.pipeline("get", (function* () {
        for (let i = 0; i < COUNT; i++) yield { id: id(i) };
      })())) as Uint8Array[];
      let wrong = 0;
      for (let i = 0; i < COUNT; i++) {
        const g = got[i]!;
        if (g.length !== 4096 || g[0] !== (i & 0xff) || g[4095] !== (i & 0xff)) wrong++;
      }
      expect(wrong).toBe(0);
    } finally {
      const u = await c.close();
      expect(u.exitCode).toBe(0);
    }
    const check = run(["borg", "check", "--repository-only", repo], { env });
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);

    // burg check gives them back too, once its repository is open, and checks as before
    const burgCheck = run([BURG, "check", "--debug", repo], { env });
    expect(burgCheck.code).toBe(0);
    const released = /gave back (\d+) KiB of start-up pages/.exec(burgCheck.stderr);
    expect(released).not.toBeNull();
    expect(Number(released![1])).toBeGreaterThan(5 * 1024);
    expect(burgCheck.stderr).toContain("Index object count match.");
    expect(burgCheck.stderr).toContain("no problems found");
  }, 120_000);

  test("burg socket gives them back once it listens; then 4 clients of 10,000 puts and gets each, and borg check passes", async () => {
    requireBurg();
    requireBorg();
    const dir = scope.tempDir("burg-resident-");
    const env = borgEnv(dir);
    const sock = join(dir, "burg.sock");
    const server = await startBurgSocket(scope, ["--socket", sock, "--debug"], { env });
    await server.waitForLog(/gave back \d+ KiB of start-up pages/);
    const released = Number(/gave back (\d+) KiB of start-up pages/.exec(server.log())![1]);
    expect(released).toBeGreaterThan(5 * 1024);

    const per = 10_000;
    await Promise.all(
      [0, 1, 2, 3].map(async (k) => {
        const c = await RpcClient.connect(sock);
        await c.negotiate();
        await c.open(join(dir, `repo${k}`), true);
        await c.pipelineAsync("put", (function* () {
          for (let i = 0; i < per; i++) yield { id: id(k * per + i), data: new Uint8Array(4096).fill(k) };
        })());
        await c.asyncResponses();
        await c.call("commit", { save_space: false });
        const got = (await c.pipeline("get", (function* () {
          for (let i = 0; i < per; i++) yield { id: id(k * per + i) };
        })())) as Uint8Array[];
        expect(got.filter((g) => g.length !== 4096 || g[0] !== k || g[4095] !== k).length).toBe(0);
        await c.close();
      }),
    );
    const { code } = await server.stop();
    expect(code).toBe(0);
    for (const k of [0, 1, 2, 3]) {
      const check = run(["borg", "check", "--repository-only", join(dir, `repo${k}`)], { env });
      expect(check.stderr).toBe("");
      expect(check.code).toBe(0);
    }
  }, 120_000);
});

describe("the index table of a session that reads", () => {
  const OBJECTS = 200_000;
  test(`${OBJECTS} pipelined gets are answered from index.N on disk; the table is loaded once the session writes`, async () => {
    requireBurg();
    requireBorg();
    const home = tempDir();
    const repo = join(home, "repo");
    const env = borgEnv(home);
    const data = (i: number) => new Uint8Array(64).fill(i & 0xff);
    const w = new RpcClient([BURG, "serve", "--debug"], env);
    await w.negotiate();
    await w.open(repo, true);
    await w.pipelineAsync("put", (function* () {
      for (let i = 0; i < OBJECTS; i++) yield { id: id(i), data: data(i) };
    })());
    await w.asyncResponses();
    await w.call("commit", { save_space: false });
    expect((await w.close()).exitCode).toBe(0);

    // a restore: every object once, many requests in flight
    const r = new RpcClient([BURG, "serve", "--debug"], env);
    await r.negotiate();
    await r.open(repo, false);
    const got = (await r.pipeline("get", (function* () {
      for (let i = 0; i < OBJECTS; i++) yield { id: id(i) };
    })())) as Uint8Array[];
    let wrong = 0;
    for (let i = 0; i < OBJECTS; i++) if (got[i]!.length !== 64 || got[i]![63] !== (i & 0xff)) wrong++;
    expect(wrong).toBe(0);
    expect(await r.call("__len__", {})).toBe(OBJECTS);
    const read = await r.close();
    expect(read.exitCode).toBe(0);
    expect(read.stderr).not.toContain("Loaded the index table");

    // reading first, then writing: the table is loaded for the transaction
    const rw = new RpcClient([BURG, "serve", "--debug"], env);
    await rw.negotiate();
    await rw.open(repo, false);
    expect((await rw.call("get", { id: id(7) })) as Uint8Array).toEqual(data(7));
    await rw.call("put", { id: id(OBJECTS), data: data(OBJECTS) });
    await rw.call("commit", { save_space: false });
    const written = await rw.close();
    expect(written.exitCode).toBe(0);
    expect(written.stderr).toMatch(/Loaded the index table \(445649 buckets\) to write/);

    const check = run(["borg", "check", "--repository-only", repo], { env });
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);
  }, 300_000);
});
