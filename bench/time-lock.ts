// Time-lock benchmark, two parts, each side by side in one run. Run: npm run bench:time-lock
//
// 1. The daily cycle with the real borg client (its own pipelining): `borg create` (new data
//    plus unchanged files), `borg prune --keep-daily 3`, `borg compact`, for BENCH_DAYS
//    simulated days (default 8), into two repositories served by `burg serve --permissions all`
//    and by `burg serve --keep-deleted 30d`, the two taking turns in A B B A order each day.
//    Target: the time-locked cycle within 5% of the unlocked one.
// 2. Compaction: a repository of BENCH_COMPACT_MIB (default 1024) of incompressible objects of
//    64 KiB..1 MiB, 40% of them deleted, written with burg's engine and copied, then `burg
//    compact` on one copy and `borg compact` (local, the same threshold) on the other, in
//    alternating order over BENCH_ROUNDS rounds (default 3; each round starts from fresh
//    copies). Target: burg compact at least 2x faster than borg compact.
//
// BENCH_DIR picks the directory (and so the disk); it is removed afterwards. BENCH_ONLY=compact
// or cycle runs one part. Compaction rewrites most of the repository, so on a disk it is bound
// by the disk's write speed for both; BENCH_DIR=/dev/shm shows what each costs in CPU.

import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Repository } from "../src/repository/repository.ts";
import { formatFileSize } from "../src/util/size.ts";
import { prng, randomBytes } from "../test/support/data.ts";
import { benchEnv, machine, measure, printTable, type Measured, type Row } from "./lib.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const DAYS = Number(process.env.BENCH_DAYS ?? Math.max(3, Math.round(8 * SCALE)));
const COMPACT_MIB = Number(process.env.BENCH_COMPACT_MIB ?? Math.max(64, Math.round(1024 * SCALE)));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-timelock-"));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Files of random (incompressible) and repetitive content, `bytes` in all. */
function writeTree(at: string, seed: number, files: number, bytes: number): void {
  mkdirSync(at, { recursive: true });
  const rand = prng(seed);
  for (let i = 0; i < files; i++) writeFileSync(join(at, `f${i}`), randomBytes(rand, Math.floor(bytes / files)));
}

async function dailyCycle(): Promise<Row[]> {
  const home = join(dir, "cycle");
  mkdirSync(home);
  const rsh = join(home, "fake-ssh");
  writeFileSync(rsh, '#!/bin/sh\nshift\nexec "$@"\n', { mode: 0o755 });
  const modes = {
    all: { serve: `${BURG} serve --permissions all`, repo: join(home, "repo-all") },
    locked: { serve: `${BURG} serve --keep-deleted 30d`, repo: join(home, "repo-locked") },
  };
  const src = join(home, "src");
  writeTree(join(src, "common"), 1, 400, 200 * 2 ** 20 * Math.min(1, SCALE));
  const wrappers: Record<string, string> = {};
  for (const [name, m] of Object.entries(modes)) {
    const w = join(home, `serve-${name}`);
    writeFileSync(w, `#!/bin/sh\nshift\nexec ${m.serve} "$@"\n`, { mode: 0o755 });
    wrappers[name] = w;
  }
  const env = (name: string) => ({
    ...benchEnv(join(home, `home-${name}`)),
    BORG_RSH: wrappers[name]!,
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
  });
  const borg = async (name: keyof typeof modes, args: string[]): Promise<Measured> => {
    const m = await measure(["borg", ...args], { env: env(name), cwd: home });
    if (m.code !== 0) throw new Error(`borg ${args.join(" ")} (${name}) failed: ${m.stderr}`);
    return m;
  };
  const url = (name: keyof typeof modes, archive?: string) => `ssh://x${modes[name].repo}${archive ? `::${archive}` : ""}`;
  for (const name of ["all", "locked"] as const) await borg(name, ["init", "-e", "none", url(name)]);
  const wall: Record<string, number[]> = { all: [], locked: [] };
  const start = Date.now() - 40 * 86400_000;
  for (let day = 0; day < DAYS; day++) {
    rmSync(join(src, "daily"), { recursive: true, force: true });
    writeTree(join(src, "daily"), 100 + day, 40, 40 * 2 ** 20 * Math.min(1, SCALE));
    const ts = new Date(start + day * 86400_000).toISOString().slice(0, 19);
    const order: Array<keyof typeof modes> = day % 2 === 0 ? ["all", "locked", "locked", "all"] : ["locked", "all", "all", "locked"];
    // A B B A: each mode runs twice a day, once early and once late; the second run of a mode
    // backs up the same day again (prune keeps the latest of the day).
    for (const name of order) {
      let ms = 0;
      ms += (await borg(name, ["create", "--timestamp", ts, url(name, `d${day}-${wall[name]!.length}`), "src"])).wallMs;
      ms += (await borg(name, ["prune", "--keep-daily", "3", url(name)])).wallMs;
      ms += (await borg(name, ["compact", url(name)])).wallMs;
      wall[name]!.push(ms);
    }
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const status = Bun.spawnSync([BURG, "status", "--json", modes.locked.repo]);
  const held = JSON.parse(status.stdout.toString()).held?.bytes ?? 0;
  console.log(`daily cycle: ${DAYS} days x 2 runs per mode; held by the time lock at the end: ${formatFileSize(held)}`);
  return [
    {
      what: `create + prune + compact, ${wall.all!.length} cycles (burg: --keep-deleted 30d, "borg" column: burg --permissions all)`,
      burg: sum(wall.locked!) / 1000,
      borg: sum(wall.all!) / 1000,
      unit: "s",
      lowerIsBetter: true,
      target: "<= 1.05",
    },
  ];
}

async function compaction(): Promise<Row[]> {
  const base = join(dir, "compact-base");
  const repo = await Repository.open(base, { create: true, exclusive: true });
  const rand = prng(7);
  const ids: Uint8Array[] = [];
  let written = 0;
  const target = COMPACT_MIB * 2 ** 20;
  let n = 0;
  while (written < target) {
    const size = 65536 + Math.floor(rand() * (2 ** 20 - 65536));
    const id = new Uint8Array(32);
    new DataView(id.buffer).setUint32(0, ++n);
    await repo.put(id, randomBytes(rand, size));
    ids.push(id);
    written += size;
    if (n % 200 === 0) await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
  }
  await repo.put(new Uint8Array(32), new TextEncoder().encode("manifest"));
  await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
  for (let i = 0; i < ids.length; i++) if (rand() < 0.4) await repo.delete(ids[i]!);
  await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
  repo.close();
  const env = { ...benchEnv(join(dir, "compact-home")), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes" };
  const times: Record<string, number[]> = { burg: [], borg: [] };
  const rss: Record<string, number[]> = { burg: [], borg: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ["burg", "borg"] : ["borg", "burg"];
    for (const who of order) {
      const copy = join(dir, `compact-${who}`);
      rmSync(copy, { recursive: true, force: true });
      cpSync(base, copy, { recursive: true });
      const cmd = who === "burg" ? [BURG, "compact", "--threshold", "10", copy] : ["borg", "compact", "--threshold", "10", copy];
      const m = await measure(cmd, { env });
      if (m.code !== 0) throw new Error(`${cmd.join(" ")} failed: ${m.stderr}`);
      times[who]!.push(m.wallMs / 1000);
      rss[who]!.push(m.maxRssKiB / 1024);
    }
  }
  console.log(`compaction: ${(written / 2 ** 20).toFixed(0)} MiB in ${ids.length} objects, 40% deleted; ${ROUNDS} rounds, medians`);
  // The floor: writing what compaction must copy (the live 60%) with one fdatasync, by dd.
  const liveMiB = Math.round((written * 0.6) / 2 ** 20);
  const dd = await measure(["dd", "if=/dev/zero", `of=${join(dir, "dd.out")}`, "bs=1M", `count=${liveMiB}`, "conv=fdatasync", "status=none"]);
  rmSync(join(dir, "dd.out"), { force: true });
  console.log(`floor: dd writes the ${liveMiB} MiB compaction copies (conv=fdatasync) in ${(dd.wallMs / 1000).toFixed(2)} s`);
  return [
    { what: `compact ${(written / 2 ** 20).toFixed(0)} MiB, 40% deleted (wall)`, burg: median(times.burg!), borg: median(times.borg!), unit: "s", lowerIsBetter: true, target: "<= 0.5" },
    { what: "compact, peak RSS", burg: median(rss.burg!), borg: median(rss.borg!), unit: "MiB", lowerIsBetter: true },
  ];
}

try {
  console.log(`machine: ${machine()}`);
  const only = process.env.BENCH_ONLY; // "compact" or "cycle"
  if (only !== "cycle") printTable(`Time lock: burg compact vs borg compact (${dir})`, await compaction());
  if (only !== "compact") printTable("Time lock: the daily cycle with the real borg client", await dailyCycle());
} finally {
  rmSync(dir, { recursive: true, force: true });
}
