// Shared benchmark helpers: machine description, child-process measurement (wall time, the
// child's own CPU time and peak RSS via /usr/bin/time-style rusage from /proc), and tables of
// burg/borg ratios.

import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";

export interface Measured {
  wallMs: number;
  cpuMs: number;
  maxRssKiB: number;
  stdout: string;
  stderr: string;
  code: number;
}

export function machine(): string {
  const c = cpus();
  let disk = "";
  try {
    disk = readFileSync("/proc/mounts", "utf8").split("\n").find((l) => l.split(" ")[1] === "/")?.split(" ").slice(0, 3).join(" ") ?? "";
  } catch {}
  return `${c.length} x ${c[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM, root fs: ${disk}, bun ${Bun.version}`;
}

/**
 * Run a command and measure it. CPU time and peak RSS come from the kernel's rusage for the
 * child (Bun.spawn's resourceUsage), so a client's CPU is never counted for a server.
 */
export async function measure(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array } = {}): Promise<Measured> {
  const t0 = performance.now();
  const p = Bun.spawn(cmd, {
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
    stdin: opts.stdin ? new Blob([opts.stdin]) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const wallMs = performance.now() - t0;
  const ru = p.resourceUsage();
  const cpuMs = ru ? Number(ru.cpuTime.user + ru.cpuTime.system) / 1000 : NaN;
  const maxRssKiB = ru ? Number(ru.maxRSS) : NaN;
  return { wallMs, cpuMs, maxRssKiB, stdout, stderr, code };
}

export interface Row {
  what: string;
  burg: number;
  borg: number;
  unit: string;
  /** true when a smaller number is better (time, memory) */
  lowerIsBetter: boolean;
  target?: string;
}

export function ratio(r: Row): number {
  return r.burg / r.borg;
}

export function printTable(title: string, rows: Row[]): void {
  console.log(`\n## ${title}\n`);
  console.log("| measurement | burg | borg | burg/borg | target |");
  console.log("| --- | ---: | ---: | ---: | --- |");
  for (const r of rows) {
    console.log(`| ${r.what} | ${fmt(r.burg)} ${r.unit} | ${fmt(r.borg)} ${r.unit} | ${ratio(r).toFixed(3)} | ${r.target ?? ""} |`);
  }
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}
