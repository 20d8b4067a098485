// Many clients at once: N concurrent clients, each putting OBJECTS x 64 KiB objects into a
// repository of its own (borg's asynchronous puts: wait=False, nothing limits the requests in
// flight) and committing, against four servers in one run:
//
//   borg serve x N         one `borg serve` per client, on pipes (as sshd starts them)
//   burg serve x N         one `burg serve` per client, on pipes
//   burg socket            one `burg socket` daemon; the clients connect to its socket directly
//   serve --daemon-socket  one `burg serve --daemon-socket` per client on pipes, each handing
//                          its session to one `burg socket` daemon (the ssh forced-command setup)
//
// Aggregate throughput is all clients' payload bytes over the wall time from the first start to
// the last commit. Memory is shown two ways, over every server process of the mode (for the
// hand-over mode: the daemon and every forced command): "sum of peak RSS" adds up each
// process's own peak (its rusage, from GNU time), which counts peaks that never coincide (a
// forced command peaks at start-up, before it hands over and becomes a small shell); "RSS in
// use" is the largest sum of their current RSS, sampled every 50 ms during the run. Each N runs
// in two rounds, A B C D then D C B A, and each mode's better round is kept.
//
// Run: npm run bench:concurrency  (BENCH_CLIENTS=8,32 by default; BENCH_SCALE=0.1 for a quick run)

import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { benchEnv, machine, startBurgSocket } from "./lib.ts";
import { RpcClient } from "../test/support/rpc-client.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const OBJECTS = Math.max(10, Math.round(2000 * SCALE));
const SIZE = 64 * 1024;
const CLIENTS = (process.env.BENCH_CLIENTS ?? "8,32").split(",").map(Number);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-concurrency-"));
const env = benchEnv(dir);

type Mode = "borg serve" | "burg serve" | "burg socket" | "serve --daemon-socket";
const MODES: Mode[] = ["borg serve", "burg serve", "burg socket", "serve --daemon-socket"];

interface Result {
  mode: Mode;
  clients: number;
  wallMs: number;
  mbPerS: number;
  rssMiB: number;
  /** The largest sampled sum of the server processes' current RSS. */
  inUseMiB: number;
  processes: number;
}

/** The processes below `pid` (GNU time's child is the server), and `pid` itself. */
function withDescendants(pids: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  for (const p of pids) walk(p);
  return out;
}

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Samples the summed RSS of the processes `roots()` returns (GNU time itself left out). */
function sampler(roots: () => number[]): { stop(): number } {
  let peak = 0;
  const tick = () => {
    const roots_ = roots();
    let sum = 0;
    for (const p of withDescendants(roots_)) if (!roots_.includes(p) || !isTime(p)) sum += rssKiB(p);
    peak = Math.max(peak, sum);
  };
  const timer = setInterval(tick, 50);
  return {
    stop() {
      clearInterval(timer);
      return peak / 1024;
    },
  };
}

function isTime(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "time";
  } catch {
    return false;
  }
}

const payload = new Uint8Array(SIZE);
crypto.getRandomValues(payload.subarray(0, 65536));

function id(client: number, i: number): Uint8Array {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, client, true);
  dv.setUint32(4, i, true);
  dv.setUint32(8, 0x9e3779b1 ^ (i * 2654435761), true);
  return b;
}

/** One client's work: open a new repository, OBJECTS asynchronous puts, commit, close. */
async function work(c: RpcClient, client: number, repo: string): Promise<void> {
  await c.negotiate();
  await c.open(repo, true);
  for (let i = 0; i < OBJECTS; i++) {
    // every object differs in its first bytes, so nothing is the same as anything before
    const data = new Uint8Array(SIZE);
    data.set(payload);
    new DataView(data.buffer).setUint32(0, client * 1_000_003 + i, true);
    await c.callAsync("put", { id: id(client, i), data, wait: false });
  }
  await c.asyncResponses();
  await c.call("commit", { save_space: false });
}

async function runMode(mode: Mode, n: number, round: number): Promise<Result> {
  const base = join(dir, `${mode.replace(/[^a-z]+/g, "-")}-${n}-${round}`);
  mkdirSync(base, { recursive: true });
  const socket = join(base, "run", "burg.sock");
  mkdirSync(join(base, "run"), { mode: 0o700 });
  const daemon = mode === "burg socket" || mode === "serve --daemon-socket" ? await startBurgSocket(BURG, socket, env) : null;
  const cmd: string[] | null =
    mode === "borg serve" ? ["borg", "serve"] : mode === "burg serve" ? [BURG, "serve"] : mode === "serve --daemon-socket" ? [BURG, "serve", "--daemon-socket", socket] : null;
  const t0 = performance.now();
  const clients = await Promise.all(Array.from({ length: n }, () => (cmd === null ? RpcClient.connect(socket) : Promise.resolve(new RpcClient(cmd, env)))));
  const sampling = sampler(() => [...(daemon !== null ? [daemon.pid] : []), ...(cmd === null ? [] : clients.map((c) => c.pid))]);
  await Promise.all(clients.map((c, i) => work(c, i, join(base, `repo${i}`))));
  const inUseMiB = sampling.stop();
  const usages = await Promise.all(clients.map((c) => c.close()));
  const wallMs = performance.now() - t0;
  let totalKiB = 0;
  let processes = 0;
  for (const u of usages) {
    if (u.exitCode !== 0) throw new Error(`${mode}: a server exited with ${u.exitCode}: ${u.stderr}`);
    if (Number.isFinite(u.maxRssKiB)) {
      totalKiB += u.maxRssKiB;
      processes++;
    }
  }
  if (daemon !== null) {
    totalKiB += (await daemon.stop()).maxRssKiB;
    processes++;
  }
  rmSync(base, { recursive: true, force: true });
  return { mode, clients: n, wallMs, mbPerS: (n * OBJECTS * SIZE) / 1e6 / (wallMs / 1000), rssMiB: totalKiB / 1024, inUseMiB, processes };
}

console.log(`# Concurrency benchmark\n\n${machine()}\n${OBJECTS} x 64 KiB asynchronous puts and a commit per client, each client its own repository\n`);
for (const n of CLIENTS) {
  const best = new Map<Mode, Result>();
  const order = [...MODES, ...[...MODES].reverse()];
  for (let k = 0; k < order.length; k++) {
    const mode = order[k]!;
    const r = await runMode(mode, n, k);
    console.error(`  N=${n} ${mode}: ${r.mbPerS.toFixed(0)} MB/s, peaks ${r.rssMiB.toFixed(0)} MiB, in use ${r.inUseMiB.toFixed(0)} MiB, ${r.processes} processes`);
    const prev = best.get(mode);
    const keep = prev === undefined || r.mbPerS > prev.mbPerS ? r : prev;
    best.set(mode, { ...keep, rssMiB: Math.min(r.rssMiB, prev?.rssMiB ?? Infinity), inUseMiB: Math.min(r.inUseMiB, prev?.inUseMiB ?? Infinity) });
  }
  const borg = best.get("borg serve")!;
  const serve = best.get("burg serve")!;
  console.log(`\n## N = ${n} concurrent clients\n`);
  console.log("| server | aggregate throughput | x borg | x N burg serve | sum of peak RSS | x borg | RSS in use | x borg | processes |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const m of MODES) {
    const r = best.get(m)!;
    console.log(
      `| ${m === "borg serve" || m === "burg serve" ? `${n} x ${m}` : m} | ${r.mbPerS.toFixed(0)} MB/s | ${(r.mbPerS / borg.mbPerS).toFixed(2)} | ${(r.mbPerS / serve.mbPerS).toFixed(2)} | ${r.rssMiB.toFixed(0)} MiB | ${(r.rssMiB / borg.rssMiB).toFixed(3)} | ${r.inUseMiB.toFixed(0)} MiB | ${(r.inUseMiB / borg.inUseMiB).toFixed(3)} | ${r.processes} |`,
    );
  }
  const socket = best.get("burg socket")!;
  // the daemon's cost per session: its peak with N clients against its peak with one
  const one = await runMode("burg socket", 1, 99);
  const perSession = (socket.rssMiB - one.rssMiB) / (n - 1);
  console.log(
    `\nburg socket against the targets: throughput ${(socket.mbPerS / borg.mbPerS).toFixed(2)} x borg (>= 1.5) and ${(socket.mbPerS / serve.mbPerS).toFixed(2)} x N burg serve (>= 1); ` +
      `total peak RSS ${(socket.rssMiB / borg.rssMiB).toFixed(3)} x borg (<= 0.35); each session beyond the first ${perSession.toFixed(1)} MiB ` +
      `(peak with 1 client: ${one.rssMiB.toFixed(0)} MiB), ${(perSession / (borg.rssMiB / n)).toFixed(3)} x one borg serve (<= 0.25)`,
  );
}
rmSync(dir, { recursive: true, force: true });
