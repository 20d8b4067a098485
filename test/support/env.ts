// Shared test helpers: temp dirs cleaned up after each file, the built binary, the real borg.
//
// Tests that need borg call requireBorg(): when borg is missing they fail with a clear
// "install borgbackup" message. They never skip.

import { afterAll } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const BURG = join(ROOT, "dist/burg");

const tempDirs: string[] = [];
function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
// bun runs every test file in one process and evaluates this module once, so an afterAll here
// would only belong to the first file that imports it: clean up when the process ends too.
afterAll(removeTempDirs);
process.on("exit", removeTempDirs);

/** A fresh temporary directory, removed when the test file finishes. */
export function tempDir(prefix = "burg-test-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

let borgPath: string | null | undefined;

/**
 * Path of the real borg client: BURG_TEST_BORG when set (the test runs for another borg
 * version, see build/prereqs.sh), else borg on the PATH; throws a clear error when there is none.
 */
export function requireBorg(): string {
  if (borgPath === undefined) borgPath = process.env.BURG_TEST_BORG || Bun.which("borg");
  if (!borgPath) {
    throw new Error("this test needs the real borg client: install borgbackup (apt-get install borgbackup)");
  }
  return borgPath;
}

/** The process below `pid` (itself included) running dist/burg, as under a wrapper; null if none. */
export function findBurg(pid: number): number | null {
  const argv0 = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
  if (argv0 === BURG) return pid;
  for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)) {
    if (!child) continue;
    const found = findBurg(Number(child));
    if (found !== null) return found;
  }
  return null;
}

/** Path of dist/burg; throws when it was not built. */
export function requireBurg(): string {
  if (!existsSync(BURG)) throw new Error("dist/burg is missing: run `npm run build` first");
  return BURG;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Environment for running borg non-interactively in tests, isolated from the user's borg dirs. */
export function borgEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    BORG_BASE_DIR: home,
    BORG_PASSPHRASE: "",
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
    BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES",
    BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: "YES",
    BORG_DISPLAY_PASSPHRASE: "no",
    ...extra,
  };
}

export function run(cmd: string[], opts: { env?: Record<string, string>; cwd?: string; input?: string | Uint8Array } = {}): RunResult {
  const r = Bun.spawnSync(cmd, {
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
    stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Run a command asynchronously (so a test can run servers in the same process meanwhile). */
export async function runAsync(
  cmd: string[],
  opts: { env?: Record<string, string>; cwd?: string; input?: string | Uint8Array } = {},
): Promise<RunResult> {
  const p = Bun.spawn(cmd, {
    env: opts.env ?? (process.env as Record<string, string>),
    cwd: opts.cwd,
    stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

export function writeExecutable(path: string, content: string): string {
  writeFileSync(path, content);
  chmodSync(path, 0o755);
  return path;
}

/**
 * Wait until each process is gone from /proc, not only exited: a process whose parent did not
 * wait for it stays a zombie until PID 1 reaps it (on some VMs a second or two later), and
 * plain borg's kill(pid, 0) takes a zombie's lock for a live one. sshd reaps its children, so
 * this is the test harness's gap, not a user's.
 */
export async function waitReaped(pids: readonly number[], what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (const pid of pids) {
    while (existsSync(`/proc/${pid}`)) {
      if (Date.now() > end) throw new Error(`${what}: process ${pid} was never reaped`);
      await Bun.sleep(20);
    }
  }
}

/** SIGKILL every process whose command line matches `pattern` (pgrep -f), then wait until they are reaped. */
export async function killAndReap(pattern: string): Promise<number[]> {
  const pids = run(["pgrep", "-f", pattern]).stdout.split("\n").filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  await waitReaped(pids, `killed ${pattern}`);
  return pids;
}
