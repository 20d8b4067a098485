// Check benchmark: `burg check` against `borg check --repository-only` on the same repository in
// the same run, with warm and cold page cache, next to plain readers of the segment files as the
// disk's sequential read ceiling: `cat` and `dd`, and cold also `dd iflag=direct` and fio with
// O_DIRECT reads queued 4 and 16 deep (if fio is installed), as buffered reads of a cold file
// can be much slower than the disk. Prints wall time, MB/s, the checking process's CPU time and
// peak RSS (rusage of the child), and the ratios. Run: npm run bench:check
//
// The repository (default 2.2 GiB, BENCH_CHECK_GIB) is written with burg's engine: random,
// incompressible objects, most bytes in objects of 256 KiB..4 MiB and some in 1..64 KiB ones (as
// borg's chunks of large and small files), committed every 256 MiB. BENCH_DIR picks the
// directory (and so the disk); it is removed afterwards unless BENCH_KEEP=1.
//
// Part two (BENCH_CHECK_OBJECTS, default 1,000,000; 0 skips it) checks a repository of that many
// 300-byte objects, once committed every 200,000 objects (several segments) and once in a single
// segment: there the two indexes and the per-segment entry lists dominate time and memory.
//
// Cold runs drop the page cache before each run (`echo 3 > /proc/sys/vm/drop_caches`), which
// needs root; without it the cold rows are skipped and the output says so. After a drop the
// run waits 3 s (see SETTLE_MS). "Warm" means the segment files were read just before the run
// (some VMs reclaim page cache within seconds). Each round runs the tools in a random order;
// the table shows medians.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Repository } from "../src/repository/repository.ts";
import { prng } from "../test/support/data.ts";
import { machine } from "./lib.ts";
import { formatFileSize } from "../src/util/size.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const GIB = Number(process.env.BENCH_CHECK_GIB ?? 2.2);
const WARM_RUNS = Number(process.env.BENCH_WARM_RUNS ?? 5);
const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 5);
const SETTLE_MS = 3000;
/** Part two: a repository of this many small objects, where the indexes dominate memory. */
const MANY = Number(process.env.BENCH_CHECK_OBJECTS ?? 1_000_000);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-check-"));
const repoPath = join(dir, "repo");
const env: Record<string, string> = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: dir,
  LANG: "C.UTF-8",
  BORG_BASE_DIR: join(dir, "borg-base"),
  BURG_CONFIG_DIR: join(dir, "burg-config"),
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
};

interface Measured {
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
}


/** Wall time here; CPU time (user + system) and peak RSS of the command from /usr/bin/time. */
async function measure(cmd: string[]): Promise<Measured> {
  const out = join(dir, "time.out");
  const t0 = performance.now();
  const p = Bun.spawn(["/usr/bin/time", "-o", out, "-f", "%U %S %M", ...cmd], { env, stdout: "ignore", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  const wallMs = performance.now() - t0;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}):\n${stderr}`);
  const [user, sys, rss] = readFileSync(out, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  return { wallMs, cpuMs: (user! + sys!) * 1000, maxRssKiB: rss! };
}

/** `count` objects of 300 random bytes, committed every `commitEvery` objects. */
async function buildSmallObjects(path: string, count: number, commitEvery: number): Promise<void> {
  const repo = await Repository.open(path, { create: true, exclusive: true, lockWait: 1 });
  const id = new Uint8Array(32);
  const data = new Uint8Array(300);
  try {
    for (let i = 1; i <= count; i++) {
      crypto.getRandomValues(id);
      crypto.getRandomValues(data);
      await repo.put(id, data);
      if (i % commitEvery === 0) await repo.commit({ compact: false });
    }
    await repo.commit({ compact: false });
  } finally {
    repo.close();
  }
}

async function manySmallObjects(): Promise<void> {
  const runs = Math.max(1, Math.min(WARM_RUNS, 3));
  console.log(`\n## ${MANY.toLocaleString("en")} objects of 300 bytes (warm, median of ${runs} runs)\n`);
  console.log("| layout | burg check | borg check --repository-only | burg/borg | burg peak RSS | borg peak RSS | burg/borg RSS |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const [layout, every] of [["committed every 200,000 objects", 200_000], ["one segment", MANY]] as const) {
    const path = join(dir, `many-${every}`);
    await buildSmallObjects(path, MANY, every);
    const files = [...new Bun.Glob("data/*/*").scanSync({ cwd: path })].map((f) => join(path, f));
    const m = { burg: [] as Measured[], borg: [] as Measured[] };
    for (let i = 0; i < runs; i++) {
      warm(files);
      m.burg.push(await measure([BURG, "check", path]));
      warm(files);
      m.borg.push(await measure(["borg", "check", "--repository-only", path]));
    }
    const wall = (xs: Measured[]) => median(xs.map((x) => x.wallMs)) / 1000;
    const rss = (xs: Measured[]) => Math.max(...xs.map((x) => x.maxRssKiB)) / 1024;
    console.log(
      `| ${layout} | ${wall(m.burg).toFixed(2)} s | ${wall(m.borg).toFixed(2)} s | ${(wall(m.burg) / wall(m.borg)).toFixed(2)} | ` +
        `${rss(m.burg).toFixed(0)} MiB | ${rss(m.borg).toFixed(0)} MiB | ${(rss(m.burg) / rss(m.borg)).toFixed(2)} |`,
    );
    rmSync(path, { recursive: true, force: true });
  }
}

async function buildRepository(): Promise<{ bytes: number; objects: number }> {
  const pool = new Uint8Array(64 << 20);
  for (let i = 0; i < pool.length; i += 65536) crypto.getRandomValues(pool.subarray(i, i + 65536));
  const rand = prng(42);
  const repo = await Repository.open(repoPath, { create: true, exclusive: true, lockWait: 1 });
  const target = GIB * 2 ** 30;
  let bytes = 0;
  let objects = 0;
  let sinceCommit = 0;
  const id = new Uint8Array(32);
  try {
    while (bytes < target) {
      const small = rand() < 0.6;
      const size = small ? 1024 + Math.floor(rand() * 63 * 1024) : 256 * 1024 + Math.floor(rand() * 3.75 * 1024 * 1024);
      const at = Math.floor(rand() * (pool.length - size));
      const data = pool.subarray(at, at + size);
      crypto.getRandomValues(id);
      await repo.put(id, data);
      bytes += size;
      sinceCommit += size;
      objects++;
      if (sinceCommit >= 256 << 20) {
        await repo.commit({ compact: false });
        sinceCommit = 0;
      }
    }
    await repo.commit({ compact: false });
  } finally {
    repo.close();
  }
  return { bytes, objects };
}

function segmentFiles(): string[] {
  const out: string[] = [];
  for (const s of new Bun.Glob("data/*/*").scanSync({ cwd: repoPath })) out.push(join(repoPath, s));
  return out.sort((a, b) => Number(a.split("/").pop()) - Number(b.split("/").pop()));
}

let canDrop: boolean | null = null;
function dropCaches(): boolean {
  if (canDrop === false) return false;
  Bun.spawnSync(["sync"]);
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    canDrop = true;
  } catch {
    canDrop = false;
  }
  return canDrop;
}

function warm(files: string[]): void {
  Bun.spawnSync(["sh", "-c", 'cat "$@" > /dev/null', "sh", ...files]);
}

type Tool =
  | "burg check"
  | "borg check --repository-only"
  | "cat"
  | "dd bs=16M"
  | "dd bs=16M iflag=direct"
  | "fio direct bs=4M qd=4"
  | "fio direct bs=4M qd=16";

/** The readers that measure the disk (and page cache) rather than check anything. */
const REFERENCES: readonly Tool[] = ["cat", "dd bs=16M", "dd bs=16M iflag=direct", "fio direct bs=4M qd=4", "fio direct bs=4M qd=16"];
/** Readers that bypass the page cache: only meaningful cold. */
const DIRECT_ONLY: readonly Tool[] = ["dd bs=16M iflag=direct", "fio direct bs=4M qd=4", "fio direct bs=4M qd=16"];

async function runTool(tool: Tool, files: string[]): Promise<Measured> {
  let cmd: string[];
  if (tool === "burg check") cmd = [BURG, "check", repoPath];
  else if (tool === "borg check --repository-only") cmd = ["borg", "check", "--repository-only", repoPath];
  else if (tool === "cat") cmd = ["sh", "-c", 'cat "$@" > /dev/null', "sh", ...files];
  else if (tool.startsWith("dd")) {
    const flags = tool.endsWith("iflag=direct") ? " iflag=direct" : "";
    cmd = ["sh", "-c", `for f; do dd if="$f" of=/dev/null bs=16M${flags} status=none; done`, "sh", ...files];
  } else {
    // fio reads the files one after the other (file_service_type=sequential) with `qd` 4 MiB
    // O_DIRECT reads queued through libaio: what the disk delivers to a reader that keeps it busy.
    const qd = tool.split("qd=")[1]!;
    cmd = ["fio", "--name=seq", "--rw=read", "--bs=4M", "--direct=1", "--ioengine=libaio", `--iodepth=${qd}`,
      "--file_service_type=sequential", `--filename=${files.join(":")}`, "--output=/dev/null"];
  }
  return measure(cmd);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

interface Result {
  tool: Tool;
  cache: "warm" | "cold";
  wallMs: number;
  cpuMs: number;
  rssMiB: number;
  runs: number[];
}

async function series(tool: Tool, cache: "warm" | "cold", runs: number, files: string[]): Promise<Result> {
  const ms: Measured[] = [];
  for (let i = 0; i < runs; i++) {
    if (cache === "warm") warm(files);
    ms.push(await runTool(tool, files));
  }
  return {
    tool,
    cache,
    wallMs: median(ms.map((m) => m.wallMs)),
    cpuMs: median(ms.map((m) => m.cpuMs)),
    rssMiB: Math.max(...ms.map((m) => m.maxRssKiB)) / 1024,
    runs: ms.map((m) => m.wallMs),
  };
}

try {
  if (!existsSync(BURG)) throw new Error("dist/burg is missing: run `npm run build` first");
  if (Bun.spawnSync(["borg", "--version"]).exitCode !== 0) throw new Error("borg is not installed");
  if (!existsSync("/usr/bin/time")) throw new Error("/usr/bin/time is missing (apt-get install time)");
  console.log(`# burg check benchmark\n\nmachine: ${machine()}`);
  const t0 = performance.now();
  const { bytes, objects } = await buildRepository();
  const files = segmentFiles();
  const total = files.reduce((n, f) => n + Bun.file(f).size, 0);
  console.log(
    `repository: ${repoPath}: ${objects} objects, ${formatFileSize(bytes)} of data, ${files.length} segment files, ` +
      `${formatFileSize(total)} (${(total / 2 ** 30).toFixed(2)} GiB) on disk; built in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  console.log(`runs: median of ${WARM_RUNS} warm and ${COLD_RUNS} cold runs per row; load average before: ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);

  const hasFio = Bun.spawnSync(["fio", "--version"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  if (!hasFio) console.log("fio is not installed: the cold disk ceiling comes from cat and dd only (apt-get install fio)");
  const tools: Tool[] = [
    "burg check",
    "borg check --repository-only",
    "cat",
    "dd bs=16M",
    "dd bs=16M iflag=direct",
    ...(hasFio ? (["fio direct bs=4M qd=4", "fio direct bs=4M qd=16"] as Tool[]) : []),
  ];
  const results: Result[] = [];
  const order = prng(7);
  // Rounds with the tools in a new random order each time, so drifts and bursts of load from
  // elsewhere do not always hit the same tool.
  const rounds = async (cache: "warm" | "cold", n: number) => {
    const runs = new Map<Tool, Result[]>();
    const these = cache === "warm" ? tools.filter((t) => !DIRECT_ONLY.includes(t)) : tools;
    for (let i = 0; i < n; i++) {
      const shuffled = [...these].sort(() => order() - 0.5);
      for (const t of shuffled) {
        if (cache === "cold") {
          dropCaches();
          // On VMs the host takes freed pages back a moment after the drop (free page
          // reporting); without this wait a run is fast or slow depending on its timing.
          await Bun.sleep(SETTLE_MS);
        }
        runs.set(t, [...(runs.get(t) ?? []), await series(t, cache, 1, files)]);
      }
    }
    for (const t of these) results.push(merge(runs.get(t)!));
  };
  await rounds("warm", WARM_RUNS);
  dropCaches();
  if (canDrop) await rounds("cold", COLD_RUNS);
  else console.log("\ncold runs skipped: cannot write /proc/sys/vm/drop_caches (needs root)");

  console.log("\n| tool | cache | wall time | throughput | CPU time | peak RSS | vs borg | vs disk ceiling |");
  console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of results) {
    const borg = results.find((x) => x.cache === r.cache && x.tool === "borg check --repository-only")!;
    const ceiling = Math.min(...results.filter((x) => x.cache === r.cache && REFERENCES.includes(x.tool)).map((x) => x.wallMs));
    const isCheck = r.tool.includes("check");
    console.log(
      `| ${r.tool} | ${r.cache} | ${(r.wallMs / 1000).toFixed(3)} s | ${(total / (r.wallMs / 1000) / 1e6).toFixed(0)} MB/s | ` +
        `${(r.cpuMs / 1000).toFixed(3)} s | ${r.rssMiB.toFixed(0)} MiB | ` +
        `${isCheck ? `${(borg.wallMs / r.wallMs).toFixed(2)}x` : ""} | ${(((total / r.wallMs) / (total / ceiling)) * 100).toFixed(0)}% |`,
    );
  }
  console.log(`\nload average after: ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  console.log("vs borg: borg's wall time / this tool's (higher is faster); vs disk ceiling: this tool's throughput / the fastest plain reader (cat, dd, and cold also O_DIRECT dd and fio).");
  console.log("all runs (s):");
  for (const r of results) console.log(`  ${r.tool} ${r.cache}: ${r.runs.map((x) => (x / 1000).toFixed(3)).join(" ")}`);

  if (MANY > 0) await manySmallObjects();
} finally {
  if (process.env.BENCH_KEEP !== "1") rmSync(dir, { recursive: true, force: true });
  else console.log(`kept ${dir}`);
}

function merge(rs: Result[]): Result {
  const runs = rs.flatMap((r) => r.runs);
  return {
    tool: rs[0]!.tool,
    cache: rs[0]!.cache,
    wallMs: median(runs),
    cpuMs: median(rs.map((r) => r.cpuMs)),
    rssMiB: Math.max(...rs.map((r) => r.rssMiB)),
    runs,
  };
}
