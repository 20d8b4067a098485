// End-to-end benchmark: the real borg client running `borg create -e none -C none` through
// `burg serve` and through `borg serve` (started as ssh would, by a BORG_RSH wrapper), on
// about 1 GiB of incompressible data and on about 20,000 small files, a first run and a second,
// all-duplicate run. Reports wall time and each server's own CPU time and peak RSS. The source
// files are read before every run (page cache), one unmeasured run comes first, and each data
// set is backed up in two rounds in opposite server orders; the table shows each server's best.
// Run: npm run bench:create  (BENCH_SCALE=0.1 for a quick run)

import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { machine, printTable, readUsage, timed, usageFile, type Row } from "./lib.ts";

const ROOT = resolve(import.meta.dir, "..");
const BURG = join(ROOT, "dist/burg");
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "burg-bench-create-"));
type Server = "burg" | "borg";

/** Incompressible bytes (crypto.getRandomValues fills at most 64 KiB per call). */
function noise(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}

function makeData(): { big: string; small: string } {
  const big = join(dir, "big");
  const small = join(dir, "small");
  mkdirSync(big);
  mkdirSync(small);
  const total = Math.round(1024 * SCALE); // MiB
  for (let f = 0; f < Math.ceil(total / 64); f++) {
    writeFileSync(join(big, `file${f}.bin`), noise(Math.min(64, total - f * 64) << 20));
  }
  const files = Math.round(20000 * SCALE);
  for (let i = 0; i < files; i++) {
    const sub = join(small, `d${i % 100}`);
    if (i < 100) mkdirSync(sub);
    writeFileSync(join(sub, `f${i}`), noise(200 + ((i * 7919) % 8000)));
  }
  return { big, small };
}

/**
 * Read every source file, so that each run finds them in the page cache. Without this the
 * first run after writing them paid for reading back what the VM had already evicted, and
 * that was always burg's run.
 */
function warm(src: string): void {
  Bun.spawnSync(["sh", "-c", 'find "$1" -type f -exec cat {} + > /dev/null', "sh", src]);
}

function wrapper(server: Server, usage: string): string {
  const path = join(dir, `${server}-remote`);
  const target = server === "burg" ? BURG : "borg";
  writeFileSync(path, `#!/bin/sh\nexec ${timed([target], usage).map((a) => `'${a}'`).join(" ")} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

async function create(server: Server, repo: string, archive: string, src: string) {
  const usage = usageFile();
  const rsh = join(dir, "fake-ssh");
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: join(dir, `home-${server}`),
    LANG: "C.UTF-8",
    BORG_RSH: rsh,
    BORG_REMOTE_PATH: wrapper(server, usage),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
    BURG_CONFIG_DIR: join(dir, "burg-config"),
  };
  const url = `ssh://bench${repo}`;
  warm(src);
  const t0 = performance.now();
  const p = Bun.spawn(["borg", "create", "-C", "none", `${url}::${archive}`, src], { env, stdout: "ignore", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  const wallMs = performance.now() - t0;
  if (code !== 0) throw new Error(`borg create through ${server} failed (${code}):\n${stderr}`);
  return { wallMs, ...readUsage(usage) };
}

try {
  console.log(`# borg create through burg serve vs borg serve\n\nmachine: ${machine()}\nscale: ${SCALE}`);
  writeFileSync(join(dir, "fake-ssh"), '#!/bin/sh\nshift\nexec "$@"\n');
  chmodSync(join(dir, "fake-ssh"), 0o755);
  const { big, small } = makeData();
  // One unmeasured run, so that the first measured one does not pay for loading borg itself.
  const scratch = join(dir, "scratch-repo");
  Bun.spawnSync(["borg", "init", "-e", "none", scratch], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: join(dir, "home-scratch") } });
  await create("borg", scratch, "warm-up", join(small, "d0"));
  rmSync(scratch, { recursive: true, force: true });
  const rows: Row[] = [];
  for (const [label, src] of [
    [`${Math.round(1024 * SCALE)} MiB incompressible`, big],
    [`${Math.round(20000 * SCALE)} small files`, small],
  ] as const) {
    type Run = Awaited<ReturnType<typeof create>>;
    const results: Record<Server, Array<[Run, Run]>> = { burg: [], borg: [] };
    // Two rounds in opposite orders, best of the two per server: on this VM whichever run goes
    // first on a data set pays for fresh page-cache memory (the host reclaims what the guest
    // frees), and that must not always be the same server.
    for (const order of [["burg", "borg"], ["borg", "burg"]] as const) {
      for (const server of order) {
        const repo = join(dir, `repo-${server}-${label.replace(/\W+/g, "-")}`);
        const init = Bun.spawnSync(["borg", "init", "-e", "none", repo], {
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: join(dir, `home-${server}`) },
        });
        if (init.exitCode !== 0) throw new Error(init.stderr.toString());
        const first = await create(server, repo, "first", src);
        const second = await create(server, repo, "second", src);
        results[server].push([first, second]);
        rmSync(repo, { recursive: true, force: true });
        rmSync(join(dir, `home-${server}`), { recursive: true, force: true });
      }
    }
    const best = (runs: Array<[Run, Run]>, i: number): Run => runs.map((r) => r[i]!).sort((a, b) => a.wallMs - b.wallMs)[0]!;
    for (const [i, run] of ["first run", "second run (all duplicates)"].entries()) {
      const b = best(results.burg, i);
      const o = best(results.borg, i);
      rows.push({ what: `${label}, ${run}: wall`, burg: b.wallMs / 1000, borg: o.wallMs / 1000, unit: "s", lowerIsBetter: true, target: "<= 0.85" });
      rows.push({ what: `  server CPU`, burg: b.cpuMs / 1000, borg: o.cpuMs / 1000, unit: "s", lowerIsBetter: true });
      rows.push({ what: `  server peak RSS`, burg: b.maxRssKiB / 1024, borg: o.maxRssKiB / 1024, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
    }
  }
  printTable("borg create", rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
