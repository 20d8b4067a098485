// The fault-injecting FUSE file system of faultfs.py, mounted over a backing directory: reads
// of chosen byte ranges fail with EIO. Needs /dev/fuse and Debian's python3-fusepy; like the
// small file systems, tests skip only where mounting is impossible here, never in CI.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { run } from "./env.ts";

const SCRIPT = resolve(import.meta.dir, "faultfs.py");
const PYTHON = "/usr/bin/python3";

export interface EioRange {
  /** relative to the backing directory */
  path: string;
  start: number;
  end: number;
}

export interface FaultFs {
  /** where the file system is mounted */
  dir: string;
  setEio(ranges: EioRange[]): void;
  /** With a trace: record that everything before this point has happened (a command returned). */
  mark(label: string): void;
  unmount(): Promise<void>;
}

/** One event of a power-loss trace (faultfs.py with a trace directory). */
export interface TraceEvent {
  i: number;
  ev: "op" | "fsync" | "dirsync" | "mark";
  what?: string;
  path?: string;
  label?: string;
}

export function readTrace(traceDir: string): TraceEvent[] {
  return readFileSync(join(traceDir, "trace.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as TraceEvent);
}

/** Build in outRoot/N, for each N, what a power cut right after event N leaves behind. */
export function materialize(traceDir: string, outRoot: string, points: number[]): void {
  const r = run([PYTHON, SCRIPT, "materialize", traceDir, outRoot, ...points.map(String)]);
  if (r.code !== 0) throw new Error(`faultfs.py materialize failed: ${r.stderr}`);
}

export function faultFsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "mounting a FUSE file system here needs root";
  if (!existsSync("/dev/fuse")) return "no /dev/fuse";
  if (run([PYTHON, "-c", "import fusepy"]).code !== 0) return "python3-fusepy is not installed";
  return null;
}

export function faultFsRequired(): boolean {
  return Boolean(process.env.CI) || faultFsUnavailable() === null;
}

function mounted(dir: string): boolean {
  return readFileSync("/proc/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === dir);
}

/** Mount faultfs.py over `backing`; with `trace`, it records what a power cut would leave there. */
export async function mountFaultFs(backing: string, opts: { trace?: string } = {}): Promise<FaultFs> {
  const home = mkdtempSync(join(tmpdir(), "burg-faultfs-"));
  const dir = join(home, "mnt");
  mkdirSync(dir);
  const faults = join(home, "faults.json");
  writeFileSync(faults, JSON.stringify({ eio: [] }));
  const proc = Bun.spawn([PYTHON, SCRIPT, backing, dir, faults, ...(opts.trace ? [opts.trace] : [])], { stdout: "ignore", stderr: "pipe" });
  const stderr = new Response(proc.stderr).text();
  for (let i = 0; !mounted(dir); i++) {
    if (proc.exitCode !== null || i > 500) {
      proc.kill();
      throw new Error(`faultfs.py did not mount ${dir}: ${await stderr}`);
    }
    await Bun.sleep(10);
  }
  return {
    dir,
    setEio(ranges) {
      // a new mtime makes faultfs.py read the file again
      writeFileSync(faults + ".tmp", JSON.stringify({ eio: ranges }));
      run(["mv", faults + ".tmp", faults]);
    },
    mark(label) {
      existsSync(join(dir, `.faultfs-mark-${label}`));
    },
    async unmount() {
      run(["umount", dir]);
      proc.kill();
      await proc.exited;
      rmSync(home, { recursive: true, force: true });
    },
  };
}
