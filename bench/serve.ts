// Server benchmark, isolated from borg's client: a TypeScript load generator (rpc-client.ts)
// that pipelines like borg drives `burg serve` and `borg serve` with the same work in the same
// run, and reports each server's own CPU time and peak RSS (its rusage) next to throughput.
//
//   1. puts of 4 KiB, 64 KiB and 2 MiB payloads and a commit, then gets of all of them
//   4. start-up: negotiate, open and close on an empty repository
//   5. peak RSS building, and then holding (opening + len), a repository of 1,000,000 objects
//   3. at each scale, burg check against borg check --repository-only of that repository
//   6. scaling of (1), (3) and (5) from 100,000 to 1,000,000 objects
//
// Run: npm run bench:serve  (BENCH_SCALE=0.1 for a quick run)

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { benchEnv, machine, measure, printTable, type Row } from "./lib.ts";
import { RpcClient, type ServerUsage } from "../test/support/rpc-client.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-serve-"));
const env = benchEnv(dir);
type Server = "burg" | "borg";
const CMD: Record<Server, string[]> = { burg: [BURG, "serve"], borg: ["borg", "serve"] };

function ids(n: number, seed: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const buf = new Uint8Array(32 * n);
  // deterministic but well spread ids: a counter through a cheap mixer
  const dv = new DataView(buf.buffer);
  for (let i = 0; i < n; i++) {
    let x = (i + 1) * 0x9e3779b1 + seed;
    for (let w = 0; w < 8; w++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      dv.setUint32(i * 32 + w * 4, x >>> 0, true);
    }
    out.push(buf.subarray(i * 32, i * 32 + 32));
  }
  return out;
}

async function session(server: Server, repo: string, create: boolean, work: (c: RpcClient) => Promise<void>): Promise<ServerUsage> {
  const c = new RpcClient(CMD[server], env);
  await c.negotiate();
  await c.open(repo, create);
  await work(c);
  const u = await c.close();
  return u;
}

async function startup(server: Server, repo: string, rounds: number): Promise<{ wallMs: number; cpuMs: number; maxRssKiB: number }> {
  let wall = 0;
  let cpu = 0;
  let rss = 0;
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const u = await session(server, repo, false, async () => {});
    wall += performance.now() - t0;
    cpu += u.cpuMs;
    rss = Math.max(rss, u.maxRssKiB);
  }
  return { wallMs: wall / rounds, cpuMs: cpu / rounds, maxRssKiB: rss };
}

const COMMIT = { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false };

async function putsAndGets(server: Server, count: number, size: number, base: { cpuMs: number }) {
  const repo = join(dir, `${server}-${size}-${count}`);
  const data = new Uint8Array(size);
  crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
  const keys = ids(count, size);
  const t0 = performance.now();
  const put = await session(server, repo, true, async (c) => {
    await c.pipeline("put", (function* () {
      for (const id of keys) yield { id, data };
    })());
    await c.call("commit", COMMIT);
  });
  const putWall = performance.now() - t0;
  const t1 = performance.now();
  const get = await session(server, repo, false, async (c) => {
    await c.pipeline("get", (function* () {
      for (const id of keys) yield { id };
    })());
  });
  const getWall = performance.now() - t1;
  rmSync(repo, { recursive: true, force: true });
  return {
    putObjPerSec: count / (putWall / 1000),
    putMBs: (count * size) / 1e6 / (putWall / 1000),
    putCpuUsPerObj: ((put.cpuMs - base.cpuMs) * 1000) / count,
    putRss: put.maxRssKiB / 1024,
    getObjPerSec: count / (getWall / 1000),
    getMBs: (count * size) / 1e6 / (getWall / 1000),
    getCpuUsPerObj: ((get.cpuMs - base.cpuMs) * 1000) / count,
    getRss: get.maxRssKiB / 1024,
  };
}

async function manyObjects(server: Server, count: number) {
  const repo = join(dir, `${server}-many-${count}`);
  const keys = ids(count, 7);
  const data = new Uint8Array(64);
  const t0 = performance.now();
  const build = await session(server, repo, true, async (c) => {
    const step = 100_000;
    for (let i = 0; i < count; i += step) {
      await c.pipeline("put", (function* () {
        for (const id of keys.slice(i, i + step)) yield { id, data };
      })());
      await c.call("commit", COMMIT);
    }
  });
  const buildWall = performance.now() - t0;
  const hold = await session(server, repo, false, async (c) => {
    await c.call("__len__", {});
    await c.call("get", { id: keys[count >> 1] });
  });
  // (3) at this scale: the server-side check of the same repository
  const check = await measure(server === "burg" ? [BURG, "check", repo] : ["borg", "check", "--repository-only", repo], { env });
  if (check.code !== 0) throw new Error(`${server} check failed:\n${check.stderr}`);
  rmSync(repo, { recursive: true, force: true });
  return {
    buildWall,
    buildCpu: build.cpuMs,
    buildRss: build.maxRssKiB / 1024,
    holdRss: hold.maxRssKiB / 1024,
    holdWall: hold.wallMs,
    checkWall: check.wallMs,
    checkRss: check.maxRssKiB / 1024,
  };
}

try {
  console.log(`# burg serve vs borg serve, isolated server path\n\nmachine: ${machine()}\nscale: ${SCALE}`);
  const emptyRepo = join(dir, "empty");
  await session("burg", emptyRepo, true, async () => {});
  const rows: Row[] = [];
  const st: Record<Server, Awaited<ReturnType<typeof startup>>> = {
    burg: await startup("burg", emptyRepo, 10),
    borg: await startup("borg", emptyRepo, 10),
  };
  rows.push({ what: "negotiate + open + close (wall)", burg: st.burg.wallMs, borg: st.borg.wallMs, unit: "ms", lowerIsBetter: true, target: "<= 0.1" });
  rows.push({ what: "  server CPU", burg: st.burg.cpuMs, borg: st.borg.cpuMs, unit: "ms", lowerIsBetter: true });
  rows.push({ what: "  server peak RSS", burg: st.burg.maxRssKiB / 1024, borg: st.borg.maxRssKiB / 1024, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
  printTable("start-up", rows);

  for (const n of [100_000, 1_000_000].map((x) => Math.max(1000, Math.round(x * SCALE)))) {
    const rows: Row[] = [];
    for (const [count, size] of [
      [Math.round(n / 5), 4096],
      [Math.round(n / 50), 65536],
      [Math.max(50, Math.round(n / 2000)), 2 * 1024 * 1024],
    ] as const) {
      const b = await putsAndGets("burg", count, size, st.burg);
      const o = await putsAndGets("borg", count, size, st.borg);
      const label = `${count} x ${size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`}`;
      rows.push({ what: `put ${label}: objects/s`, burg: b.putObjPerSec, borg: o.putObjPerSec, unit: "/s", lowerIsBetter: false });
      rows.push({ what: `  MB/s`, burg: b.putMBs, borg: o.putMBs, unit: "MB/s", lowerIsBetter: false });
      rows.push({ what: `  server CPU per object`, burg: b.putCpuUsPerObj, borg: o.putCpuUsPerObj, unit: "µs", lowerIsBetter: true, target: "<= 0.25" });
      rows.push({ what: `  server peak RSS`, burg: b.putRss, borg: o.putRss, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
      rows.push({ what: `get ${label}: objects/s`, burg: b.getObjPerSec, borg: o.getObjPerSec, unit: "/s", lowerIsBetter: false });
      rows.push({ what: `  MB/s`, burg: b.getMBs, borg: o.getMBs, unit: "MB/s", lowerIsBetter: false });
      rows.push({ what: `  server CPU per object`, burg: b.getCpuUsPerObj, borg: o.getCpuUsPerObj, unit: "µs", lowerIsBetter: true, target: "<= 0.25" });
      rows.push({ what: `  server peak RSS`, burg: b.getRss, borg: o.getRss, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
    }
    const mb = await manyObjects("burg", n);
    const mo = await manyObjects("borg", n);
    rows.push({ what: `build ${n} objects (64 B), commit per 100k: wall`, burg: mb.buildWall / 1000, borg: mo.buildWall / 1000, unit: "s", lowerIsBetter: true });
    rows.push({ what: `  server CPU`, burg: mb.buildCpu / 1000, borg: mo.buildCpu / 1000, unit: "s", lowerIsBetter: true });
    rows.push({ what: `  server peak RSS`, burg: mb.buildRss, borg: mo.buildRss, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
    rows.push({ what: `hold ${n} objects (open, len, get): peak RSS`, burg: mb.holdRss, borg: mo.holdRss, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
    rows.push({ what: `check of those ${n} objects (burg check / borg check --repository-only): wall`, burg: mb.checkWall / 1000, borg: mo.checkWall / 1000, unit: "s", lowerIsBetter: true, target: "<= 0.5" });
    rows.push({ what: `  peak RSS`, burg: mb.checkRss, borg: mo.checkRss, unit: "MiB", lowerIsBetter: true });
    printTable(`${n} objects`, rows);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
