// Shared benchmark helpers: machine description, child-process measurement (wall time, the
// child's own CPU time and peak RSS via /usr/bin/time-style rusage from /proc), and tables of
// burg/borg ratios.

import { cpus, totalmem } from "node:os";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
 * Run a command and measure it. CPU time and peak RSS are the command's own, from the kernel's
 * rusage as GNU time reports it (Bun's Subprocess.resourceUsage() reports the totals of all
 * children so far, so it cannot tell one child from another).
 */
export async function measure(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array } = {}): Promise<Measured> {
  const out = usageFile();
  const t0 = performance.now();
  const p = Bun.spawn(timed(cmd, out), {
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
    stdin: opts.stdin ? new Blob([opts.stdin]) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const wallMs = performance.now() - t0;
  return { wallMs, ...readUsage(out), stdout, stderr, code };
}

export const GNU_TIME = "/usr/bin/time";

/** `cmd` wrapped in GNU time writing "user system maxrss" to `file`. */
export function timed(cmd: string[], file: string): string[] {
  if (!existsSync(GNU_TIME)) throw new Error("the benchmarks need GNU time: apt-get install time");
  return [GNU_TIME, "-o", file, "-f", "%U %S %M", ...cmd];
}

let usageCounter = 0;
export function usageFile(): string {
  return join(tmpdir(), `burg-bench-usage-${process.pid}-${usageCounter++}`);
}

/** CPU milliseconds and peak RSS (KiB) written by `timed`; the file is removed. */
export function readUsage(file: string): { cpuMs: number; maxRssKiB: number } {
  const lines = readFileSync(file, "utf8").trim().split("\n");
  rmSync(file, { force: true });
  const [user, sys, rss] = lines[lines.length - 1]!.split(" ").map(Number);
  return { cpuMs: (user! + sys!) * 1000, maxRssKiB: rss! };
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

/** The environment the servers of a benchmark run in, all of their state under `dir`. */
export function benchEnv(dir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: dir,
    LANG: "C.UTF-8",
    BORG_BASE_DIR: join(dir, "base"),
    BURG_CONFIG_DIR: join(dir, "burg-config"),
  };
}

/**
 * `burg socket --socket SOCKET` under GNU time; resolves once it runs. stop() sends SIGTERM to
 * burg itself (GNU time passes no signals on) and resolves with its CPU time and peak RSS.
 */
export async function startBurgSocket(
  burg: string,
  socket: string,
  env: Record<string, string>,
): Promise<{ pid: number; stop(): Promise<{ cpuMs: number; maxRssKiB: number }> }> {
  const usage = usageFile();
  const p = Bun.spawn(timed([burg, "socket", "--socket", socket], usage), { env, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  const log = new Response(p.stderr).text();
  const pidFile = socket.replace(/\.sock$/, ".pid");
  for (let i = 0; i < 1000 && !existsSync(pidFile); i++) await Bun.sleep(10);
  if (!existsSync(pidFile)) throw new Error(`burg socket did not start: ${await log}`);
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  return {
    pid,
    async stop() {
      process.kill(pid, "SIGTERM");
      const code = await p.exited;
      if (code !== 0) throw new Error(`burg socket exited with ${code}: ${await log}`);
      return readUsage(usage);
    },
  };
}
