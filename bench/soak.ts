// Soak benchmark: one long-lived session per server under borg-like asynchronous load, first
// `burg serve`, then `borg serve`, same workload and seeds, in the same run. It owns the
// workload and the RSS sampling; the load generator is test/support/rpc-client.ts. Per cycle:
// asynchronous puts of objects of 100 B..64 KiB (log-uniform sizes) to ids from a bounded id
// space (later puts overwrite earlier ones, so the repository stays bounded), asynchronous
// deletes of some live ids, their replies and errors collected, then synchronous gets of a
// sample of live objects, checked byte for byte; a synchronous commit (compact, threshold 0.1)
// and a `__len__` check every ~100,000 requests. Each server's run ends after
// BENCH_SOAK_SECONDS (default 600) or BENCH_SOAK_REQUESTS (default 10,000,000) requests,
// whichever comes first. The server's VmRSS is sampled once per second. Any failure (an error
// reply, wrong data, a wrong length, a lost connection) makes the exit status non-zero.
//
// Run: npm run bench:soak  (BENCH_SOAK_SECONDS=20 for a quick run; BENCH_DIR picks the disk)

import { prng as sharedPrng } from "../test/support/data.ts";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { machine, printTable, startBurgSocket, type Row, benchEnv } from "./lib.ts";
import { RpcClient, type ServerUsage } from "../test/support/rpc-client.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const SECONDS = Number(process.env.BENCH_SOAK_SECONDS ?? 600);
const REQUESTS = Number(process.env.BENCH_SOAK_REQUESTS ?? 10_000_000);
if (!(SECONDS > 0) || !(REQUESTS > 0)) throw new Error("BENCH_SOAK_SECONDS and BENCH_SOAK_REQUESTS must be positive numbers");

/** Workload shape, the same for both servers. */
const SEED = 0x50a4;
const ID_SPACE = 50_000;
const PUTS_PER_CYCLE = 1000;
const DELETES_PER_CYCLE = 100;
const GETS_PER_CYCLE = 100;
const COMMIT_EVERY = 100_000;
const MIN_SIZE = 100;
const MAX_SIZE = 64 * 1024;
/** Object data are slices of one pseudo-random pool, at a pseudo-random offset per put. */
const POOL_SIZE = 8 << 20;
const COMMIT = { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false };
/** Failures described in full; later ones are only counted. */
const FAILURE_NOTES = 10;
const PROGRESS_EVERY_S = Math.max(5, Math.min(60, SECONDS / 10));

const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-soak-"));
const env = benchEnv(dir);
type Server = "burg" | "borg";
const CMD: Record<Server, string[]> = { burg: [BURG, "serve"], borg: ["borg", "serve"] };
/** BENCH_SOAK_BURG=socket: burg's side is one session on a `burg socket` daemon (in a worker). */
const VIA_SOCKET = process.env.BENCH_SOAK_BURG === "socket";

/** The shared deterministic PRNG (test/support/data.ts), as 32-bit integers. */
function prng(seed: number): () => number {
  const next = sharedPrng(seed);
  return () => (next() * 2 ** 32) >>> 0;
}

function makePool(): Uint8Array {
  const next = prng(SEED ^ 0x9e3779b9);
  const words = new Uint32Array(POOL_SIZE / 4);
  for (let i = 0; i < words.length; i++) words[i] = next();
  return new Uint8Array(words.buffer);
}

function makeIds(): Uint8Array[] {
  const next = prng(SEED ^ 0x1d);
  const words = new Uint32Array(ID_SPACE * 8);
  for (let i = 0; i < words.length; i++) words[i] = next();
  const bytes = new Uint8Array(words.buffer);
  return Array.from({ length: ID_SPACE }, (_, i) => bytes.subarray(i * 32, i * 32 + 32));
}

const POOL = makePool();
const IDS = makeIds();

/** What the repository should hold: for each live id, where its data lies in the pool. */
class Model {
  readonly offset = new Int32Array(ID_SPACE);
  readonly size = new Int32Array(ID_SPACE).fill(-1);
  private live: number[] = [];
  private pos = new Int32Array(ID_SPACE).fill(-1);

  get count(): number {
    return this.live.length;
  }
  put(i: number, offset: number, size: number): void {
    this.offset[i] = offset;
    this.size[i] = size;
    if (this.pos[i] === -1) {
      this.pos[i] = this.live.length;
      this.live.push(i);
    }
  }
  delete(i: number): void {
    const p = this.pos[i]!;
    const last = this.live.pop()!;
    if (last !== i) {
      this.live[p] = last;
      this.pos[last] = p;
    }
    this.pos[i] = -1;
    this.size[i] = -1;
  }
  randomLive(r: number): number {
    return this.live[r % this.live.length]!;
  }
  data(i: number): Uint8Array {
    return POOL.subarray(this.offset[i]!, this.offset[i]! + this.size[i]!);
  }
}

interface Sample {
  t: number;
  kib: number;
}

interface Result {
  server: Server;
  requests: number;
  puts: number;
  deletes: number;
  gets: number;
  commits: number;
  lens: number;
  putBytes: number;
  failures: number;
  notes: string[];
  lost: boolean;
  seconds: number;
  samples: Sample[];
  usage: ServerUsage | null;
  /** CPU time of this process, the load generator, during the run. */
  clientCpuMs: number;
}

/** The server itself: the child of the GNU time wrapper RpcClient spawned. */
async function serverPid(wrapper: number): Promise<number> {
  const file = `/proc/${wrapper}/task/${wrapper}/children`;
  for (let i = 0; i < 500; i++) {
    try {
      const first = readFileSync(file, "utf8").trim().split(/\s+/)[0];
      if (first) return Number(first);
    } catch {}
    await Bun.sleep(10);
  }
  throw new Error(`no child process under ${wrapper}`);
}

function vmRssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function isLost(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.includes("server closed the connection") || /EPIPE|ECONNRESET|closed/i.test(msg);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

async function soak(server: Server): Promise<Result> {
  const res: Result = {
    server, requests: 0, puts: 0, deletes: 0, gets: 0, commits: 0, lens: 0, putBytes: 0,
    failures: 0, notes: [], lost: false, seconds: 0, samples: [], usage: null, clientCpuMs: 0,
  };
  const fail = (what: string): void => {
    res.failures++;
    if (res.notes.length < FAILURE_NOTES) res.notes.push(what);
  };
  const repo = join(dir, server);
  const rng = prng(SEED);
  const model = new Model();
  const daemon = server === "burg" && VIA_SOCKET ? await startBurgSocket(BURG, join(dir, "burg.sock"), env) : null;
  const c = daemon !== null ? await RpcClient.connect(join(dir, "burg.sock")) : new RpcClient(CMD[server], env);
  let timer: ReturnType<typeof setInterval> | undefined;
  let t0 = performance.now();
  let cpu0 = process.cpuUsage();
  try {
    await c.negotiate();
    await c.open(repo, true);
    const pid = daemon !== null ? daemon.pid : await serverPid(c.pid);
    t0 = performance.now();
    cpu0 = process.cpuUsage();
    const sample = (): void => {
      const kib = vmRssKiB(pid);
      if (kib !== null) res.samples.push({ t: (performance.now() - t0) / 1000, kib });
    };
    sample();
    timer = setInterval(sample, 1000);
    let sinceCommit = 0;
    let nextProgress = PROGRESS_EVERY_S;

    const commit = async (): Promise<void> => {
      res.requests += 2;
      res.commits++;
      res.lens++;
      sinceCommit = 0;
      try {
        await c.call("commit", COMMIT);
      } catch (e) {
        if (isLost(e)) throw e;
        fail(`commit: ${(e as Error).message}`);
      }
      try {
        const n = Number(await c.call("__len__", {}));
        if (n !== model.count) fail(`__len__ after commit ${res.commits}: ${n}, expected ${model.count}`);
      } catch (e) {
        if (isLost(e)) throw e;
        fail(`__len__: ${(e as Error).message}`);
      }
    };

    for (;;) {
      const elapsed = (performance.now() - t0) / 1000;
      if (elapsed >= SECONDS || res.requests >= REQUESTS) break;
      if (elapsed >= nextProgress) {
        nextProgress += PROGRESS_EVERY_S;
        const last = res.samples[res.samples.length - 1];
        console.error(`${server}: ${elapsed.toFixed(0)} s, ${res.requests} requests, ${res.failures} failures, RSS ${last ? (last.kib / 1024).toFixed(1) : "?"} MiB`);
      }
      let budget = REQUESTS - res.requests;

      // asynchronous puts, then deletes (borg's wait=False)
      const puts = Math.min(PUTS_PER_CYCLE, budget);
      for (let k = 0; k < puts; k++) {
        const i = rng() % ID_SPACE;
        const size = Math.floor(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** (rng() / 2 ** 32));
        const offset = rng() % (POOL_SIZE - size + 1);
        model.put(i, offset, size);
        await c.callAsync("put", { id: IDS[i], data: model.data(i) });
        res.putBytes += size;
      }
      res.puts += puts;
      budget -= puts;
      const deletes = Math.min(DELETES_PER_CYCLE, budget, model.count);
      for (let k = 0; k < deletes; k++) {
        const i = model.randomLive(rng());
        model.delete(i);
        await c.callAsync("delete", { id: IDS[i] });
      }
      res.deletes += deletes;
      budget -= deletes;
      res.requests += puts + deletes;
      sinceCommit += puts + deletes;
      // every reply in, every error counted (asyncResponses throws one at a time)
      for (;;) {
        try {
          await c.asyncResponses();
          break;
        } catch (e) {
          if (isLost(e)) throw e;
          fail(`async put/delete: ${(e as Error).message}`);
        }
      }

      // synchronous gets of live objects, pipelined up to 100 in flight, checked byte for byte
      const gets = Math.min(GETS_PER_CYCLE, budget, model.count);
      const want: number[] = [];
      const replies: Promise<unknown>[] = [];
      for (let k = 0; k < gets; k++) {
        const i = model.randomLive(rng());
        want.push(i);
        replies.push((await c.send("get", { id: IDS[i] })).reply);
      }
      await c.flush();
      const settled = await Promise.allSettled(replies);
      for (let k = 0; k < gets; k++) {
        const s = settled[k]!;
        const i = want[k]!;
        if (s.status === "rejected") {
          if (isLost(s.reason)) throw s.reason;
          fail(`get id #${i}: ${(s.reason as Error).message}`);
        } else if (!(s.value instanceof Uint8Array) || !sameBytes(s.value, model.data(i))) {
          const got = s.value instanceof Uint8Array ? `${s.value.length} bytes` : typeof s.value;
          fail(`get id #${i}: wrong data (${got}, expected ${model.size[i]} bytes)`);
        }
      }
      res.gets += gets;
      res.requests += gets;
      sinceCommit += gets;

      if (sinceCommit >= COMMIT_EVERY) await commit();
    }
    await commit();
    sample();
  } catch (e) {
    res.lost = true;
    fail(`lost the connection: ${(e as Error).message}`);
  } finally {
    clearInterval(timer);
    res.seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    res.clientCpuMs = (cpu.user + cpu.system) / 1000;
  }
  try {
    res.usage = await c.close();
    if (daemon !== null) res.usage = { ...res.usage, ...(await daemon.stop()) };
  } catch (e) {
    fail(`closing: ${(e as Error).message}`);
  }
  rmSync(repo, { recursive: true, force: true });
  return res;
}

/** RSS (MiB) of the sample nearest to `f` of the run. */
function rssAt(r: Result, f: number): number {
  const t = f * r.seconds;
  let best = r.samples[0];
  for (const s of r.samples) if (best === undefined || Math.abs(s.t - t) < Math.abs(best.t - t)) best = s;
  return best ? best.kib / 1024 : NaN;
}

function maxRss(r: Result): number {
  return Math.max(...r.samples.map((s) => s.kib)) / 1024;
}

function growth(r: Result): { mib: number; pct: number } {
  const mib = rssAt(r, 1) - rssAt(r, 0.25);
  return { mib, pct: (100 * mib) / rssAt(r, 0.25) };
}

function n(x: number): string {
  return Math.round(x).toLocaleString("en-US");
}

function row2(what: string, f: (r: Result) => string, b: Result, o: Result): void {
  console.log(`| ${what} | ${f(b)} | ${f(o)} |`);
}

const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

let failed = false;
try {
  if (!existsSync(BURG)) throw new Error(`${BURG} is missing: npm run build`);
  console.log(`# ${VIA_SOCKET ? "burg socket" : "burg serve"} vs borg serve, soak\n\nmachine: ${machine()}`);
  console.log(`load: ${uptimeLoad()}`);
  console.log(
    `limits per server: ${SECONDS} s or ${n(REQUESTS)} requests; per cycle ${PUTS_PER_CYCLE} async puts ` +
      `(${MIN_SIZE} B..${MAX_SIZE / 1024} KiB, log-uniform) to ${n(ID_SPACE)} ids, ${DELETES_PER_CYCLE} async deletes, ` +
      `${GETS_PER_CYCLE} checked gets; commit + __len__ every ~${n(COMMIT_EVERY)} requests`,
  );
  const b = await soak("burg");
  const o = await soak("borg");
  console.log(`load after: ${uptimeLoad()}`);

  console.log(`\n## requests\n`);
  console.log("| | burg | borg |");
  console.log("| --- | ---: | ---: |");
  row2("requests", (r) => n(r.requests), b, o);
  row2("  put / delete / get", (r) => `${n(r.puts)} / ${n(r.deletes)} / ${n(r.gets)}`, b, o);
  row2("  commit / \\_\\_len\\_\\_", (r) => `${n(r.commits)} / ${n(r.lens)}`, b, o);
  row2("put payload", (r) => `${(r.putBytes / 1e9).toFixed(2)} GB`, b, o);
  row2("run time", (r) => `${r.seconds.toFixed(1)} s`, b, o);
  row2("failures", (r) => String(r.failures), b, o);
  row2("RSS samples", (r) => String(r.samples.length), b, o);

  const rows: Row[] = [
    { what: "requests/s", burg: b.requests / b.seconds, borg: o.requests / o.seconds, unit: "/s", lowerIsBetter: false },
    { what: "put payload MB/s", burg: b.putBytes / 1e6 / b.seconds, borg: o.putBytes / 1e6 / o.seconds, unit: "MB/s", lowerIsBetter: false },
    ...[0.1, 0.25, 0.5, 0.75, 1].map((f): Row => ({ what: `RSS at ${f * 100}% of the run`, burg: rssAt(b, f), borg: rssAt(o, f), unit: "MiB", lowerIsBetter: true })),
    { what: "max RSS (1 s samples)", burg: maxRss(b), borg: maxRss(o), unit: "MiB", lowerIsBetter: true, target: "<= 0.5" },
    {
      what: "peak RSS (rusage)", burg: (b.usage?.maxRssKiB ?? NaN) / 1024, borg: (o.usage?.maxRssKiB ?? NaN) / 1024,
      unit: "MiB", lowerIsBetter: true, target: "<= 0.5",
    },
    { what: "server CPU per request", burg: ((b.usage?.cpuMs ?? NaN) * 1000) / b.requests, borg: ((o.usage?.cpuMs ?? NaN) * 1000) / o.requests, unit: "µs", lowerIsBetter: true },
    { what: "load generator CPU per request", burg: (b.clientCpuMs * 1000) / b.requests, borg: (o.clientCpuMs * 1000) / o.requests, unit: "µs", lowerIsBetter: true },
  ];
  printTable("throughput and server RSS", rows);

  console.log(`\n## growth after warm-up (RSS at the end minus RSS at 25% of the run)\n`);
  console.log("| | burg | borg |");
  console.log("| --- | ---: | ---: |");
  row2("MiB", (r) => `${growth(r).mib >= 0 ? "+" : ""}${growth(r).mib.toFixed(1)} MiB`, b, o);
  row2("%", (r) => `${growth(r).pct >= 0 ? "+" : ""}${growth(r).pct.toFixed(1)} %`, b, o);
  row2("levelled off (< 10 %)", (r) => (growth(r).pct < 10 ? "yes" : "no"), b, o);

  for (const r of [b, o]) {
    const tenths = Array.from({ length: 11 }, (_, k) => rssAt(r, k / 10).toFixed(0)).join(" ");
    console.log(`\n${r.server} RSS (MiB) at 0%, 10%, ..., 100% of the run: ${tenths}`);
    if (r.failures) console.log(`${r.server} failures (${r.failures}):\n  ${r.notes.join("\n  ")}`);
    // borg serve sends its compaction progress as JSON lines; only other output is of interest
    const stderr = (r.usage?.stderr ?? "").split("\n").filter((l) => l.trim() && !l.includes('"type": "progress_percent"')).join("\n");
    if (stderr) console.log(`${r.server} stderr:\n${stderr.slice(0, 2000)}`);
  }
  failed = b.failures + o.failures > 0;
  console.log(failed ? "\nFAILED: see the failures above" : "\nno failures");
} finally {
  cleanup();
}
process.exit(failed ? 1 : 0);

function uptimeLoad(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}
