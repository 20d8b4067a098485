// Engine benchmark: index load time and memory for 1,000,000 objects, and put+commit
// throughput, burg's engine next to borg 1.2's own Repository/NSIndex on the same machine in
// the same run. Run: npm run bench:engine

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { machine, measure, printTable, type Row } from "./lib.ts";

const here = resolve(import.meta.dir);
const BUN = process.execPath;
const PY = "/usr/bin/python3";
const dir = mkdtempSync(join(tmpdir(), "burg-bench-engine-"));

function parse(out: string): { ms: number } {
  const line = out.trim().split("\n").pop() ?? "{}";
  return JSON.parse(line);
}

async function burg(...args: string[]) {
  const m = await measure([BUN, join(here, "workers/engine-burg.ts"), ...args]);
  if (m.code !== 0) throw new Error(`burg worker ${args.join(" ")} failed:\n${m.stderr}`);
  return { ...m, inner: parse(m.stdout).ms };
}

async function borg(...args: string[]) {
  const m = await measure([PY, join(here, "workers/engine-borg.py"), ...args]);
  if (m.code !== 0) throw new Error(`borg worker ${args.join(" ")} failed:\n${m.stderr}`);
  return { ...m, inner: parse(m.stdout).ms };
}

try {
  console.log(`# burg engine benchmark\n\nmachine: ${machine()}`);
  const rows: Row[] = [];
  const objects = Number(process.env.BENCH_INDEX_OBJECTS ?? 1_000_000);
  const indexFile = join(dir, "index.1");
  await burg("index-make", indexFile, String(objects));
  const bl = await burg("index-load", indexFile);
  const ol = await borg("index-load", indexFile);
  rows.push({ what: `load index of ${objects} objects`, burg: bl.inner, borg: ol.inner, unit: "ms", lowerIsBetter: true });
  rows.push({ what: `peak RSS after loading it`, burg: bl.maxRssKiB / 1024, borg: ol.maxRssKiB / 1024, unit: "MiB", lowerIsBetter: true });
  for (const [count, size] of [
    [20000, 4096],
    [2000, 65536],
    [100, 2 * 1024 * 1024],
  ] as const) {
    const bp = await burg("put", join(dir, `burg-${size}`), String(count), String(size));
    const op = await borg("put", join(dir, `borg-${size}`), String(count), String(size));
    const mb = (count * size) / 1e6;
    rows.push({ what: `put+commit ${count} x ${size / 1024} KiB`, burg: mb / (bp.inner / 1000), borg: mb / (op.inner / 1000), unit: "MB/s", lowerIsBetter: false });
    rows.push({ what: `  CPU time`, burg: bp.cpuMs, borg: op.cpuMs, unit: "ms", lowerIsBetter: true });
    rows.push({ what: `  peak RSS`, burg: bp.maxRssKiB / 1024, borg: op.maxRssKiB / 1024, unit: "MiB", lowerIsBetter: true });
  }
  printTable("engine", rows);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
