// End-to-end benchmark: the real borg client running `borg create -e none -C none` through
// `burg serve` and through `borg serve` (started as ssh would, by a BORG_RSH wrapper), on
// about 1 GiB of incompressible data and on about 20,000 small files, a first run and a second,
// all-duplicate run. Reports wall time and each server's own CPU time and peak RSS.
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

function rand(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function makeData(): { big: string; small: string } {
  const big = join(dir, "big");
  const small = join(dir, "small");
  mkdirSync(big);
  mkdirSync(small);
  const total = Math.round(1024 * SCALE); // MiB
  const chunk = new Uint8Array(1 << 20);
  const r = rand(1);
  for (let f = 0; f < Math.ceil(total / 64); f++) {
    const parts: Uint8Array[] = [];
    for (let m = 0; m < Math.min(64, total - f * 64); m++) {
      const dv = new DataView(chunk.buffer);
      for (let i = 0; i < chunk.length; i += 4) dv.setUint32(i, r());
      parts.push(chunk.slice());
    }
    writeFileSync(join(big, `file${f}.bin`), Buffer.concat(parts));
  }
  const files = Math.round(20000 * SCALE);
  const r2 = rand(2);
  for (let i = 0; i < files; i++) {
    const sub = join(small, `d${i % 100}`);
    if (i < 100) mkdirSync(sub);
    const n = 200 + (r2() % 8000);
    const b = new Uint8Array(n);
    const dv = new DataView(b.buffer);
    for (let j = 0; j + 4 <= n; j += 4) dv.setUint32(j, r2());
    writeFileSync(join(sub, `f${i}`), b);
  }
  return { big, small };
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
  const rows: Row[] = [];
  for (const [label, src] of [
    [`${Math.round(1024 * SCALE)} MiB incompressible`, big],
    [`${Math.round(20000 * SCALE)} small files`, small],
  ] as const) {
    const results: Record<Server, Array<Awaited<ReturnType<typeof create>>>> = { burg: [], borg: [] };
    for (const server of ["burg", "borg"] as const) {
      const repo = join(dir, `repo-${server}-${label.replace(/\W+/g, "-")}`);
      const init = Bun.spawnSync(["borg", "init", "-e", "none", repo], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: join(dir, `home-${server}`) },
      });
      if (init.exitCode !== 0) throw new Error(init.stderr.toString());
      results[server].push(await create(server, repo, "first", src));
      results[server].push(await create(server, repo, "second", src));
      rmSync(repo, { recursive: true, force: true });
      rmSync(join(dir, `home-${server}`), { recursive: true, force: true });
    }
    for (const [i, run] of ["first run", "second run (all duplicates)"].entries()) {
      const b = results.burg[i]!;
      const o = results.borg[i]!;
      rows.push({ what: `${label}, ${run}: wall`, burg: b.wallMs / 1000, borg: o.wallMs / 1000, unit: "s", lowerIsBetter: true, target: "<= 0.85" });
      rows.push({ what: `  server CPU`, burg: b.cpuMs / 1000, borg: o.cpuMs / 1000, unit: "s", lowerIsBetter: true });
      rows.push({ what: `  server peak RSS`, burg: b.maxRssKiB / 1024, borg: o.maxRssKiB / 1024, unit: "MiB", lowerIsBetter: true, target: "<= 0.5" });
    }
  }
  printTable("borg create", rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
