// Helpers for lock tests: processes that hold locks (burg's lock-holder.ts, `borg with-lock`),
// live and dead PIDs, borg's own locking code run through Python, and a log capture.
//
// Every process started here, and every directory made by lockTempDir(), goes away in
// cleanupLockTests(), which each test file using these helpers registers with afterAll: a hook
// registered in this module would only run for the first test file that imports it, since Bun
// evaluates it once per run. Process exit is the safety net.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { afterAll, beforeAll } from "bun:test";
import { resetHostIdCache } from "../../src/lock/host-id.ts";
import { releaseAllLocks } from "../../src/lock/lock.ts";
import { log } from "../../src/util/log.ts";
import type { LogSink } from "../../src/util/log.ts";
import { BORG_PYTHON } from "./borg-python.ts";
import { ROOT, borgEnv, requireBorg, run } from "./env.ts";

const children = new Set<Subprocess>();

const dirs: string[] = [];

/** A fresh temporary directory, removed by cleanupLockTests(). */
/**
 * Run the calling test file with BORG_HOST_ID set to `hostId`; afterwards every lock is
 * released and the previous value restored. Call it at the top level of a test file.
 */
export function useHostId(hostId: string): void {
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env.BORG_HOST_ID;
    process.env.BORG_HOST_ID = hostId;
    resetHostIdCache();
  });
  afterAll(() => {
    releaseAllLocks();
    if (saved === undefined) delete process.env.BORG_HOST_ID;
    else process.env.BORG_HOST_ID = saved;
    resetHostIdCache();
  });
}

/** SIGKILL a borg process and the command it runs, leaving borg's lock behind. */
export async function killBorg(proc: { pid: number; kill(sig?: number | NodeJS.Signals): void; exited: Promise<number> }) {
  const kids = run(["pgrep", "-P", String(proc.pid)]).stdout.trim().split("\n").filter(Boolean);
  proc.kill("SIGKILL");
  await proc.exited;
  for (const k of kids) {
    try {
      process.kill(Number(k), "SIGKILL");
    } catch {}
  }
}

export function lockTempDir(prefix = "burg-lock-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** Kill every process these helpers started that still runs, and remove the temp dirs. */
export function cleanupLockTests(): void {
  for (const p of children) {
    try {
      p.kill("SIGKILL");
    } catch {}
  }
  children.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

process.on("exit", cleanupLockTests);

function track<T extends Subprocess>(p: T): T {
  children.add(p);
  p.exited.then(() => children.delete(p));
  return p;
}

/** A PID that no process has right now (a child that ran and was reaped). */
export function deadPid(): number {
  const p = Bun.spawnSync(["true"]);
  return p.pid;
}

/** A live process that is not borg (sleep), killed after the test file. */
export function liveProcess(argv: string[] = ["sleep", "600"]): Subprocess {
  return track(Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "ignore" }));
}

async function waitFor(cond: () => boolean, what: string, ms = 20000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

async function readLine(stream: ReadableStream<Uint8Array>, reader = stream.getReader()): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
    if (text.includes("\n")) break;
  }
  reader.releaseLock();
  return text.trim();
}

export interface Holder {
  proc: Subprocess<"pipe", "pipe", "pipe">;
  pid: number;
  /** SIGTERM: release the lock and exit. */
  stop(): Promise<number>;
  /** SIGKILL: die and leave the lock behind. */
  kill(): Promise<void>;
}

/** A child bun process holding the lock of `repo` through burg's lock module. */
export async function burgHolder(
  repo: string,
  mode: "exclusive" | "shared",
  env: Record<string, string | undefined> = {},
): Promise<Holder> {
  const proc = track(
    Bun.spawn([process.execPath, join(ROOT, "test/support/lock-holder.ts"), repo, mode, "10"], {
      env: { ...process.env, ...env } as Record<string, string>,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  const line = await readLine(proc.stdout);
  if (line !== "locked") {
    const err = await new Response(proc.stderr).text();
    throw new Error(`lock-holder did not lock: ${line}\n${err}`);
  }
  return {
    proc,
    pid: proc.pid,
    async stop() {
      proc.kill("SIGTERM");
      return await proc.exited;
    },
    async kill() {
      proc.kill("SIGKILL");
      await proc.exited;
    },
  };
}

/** `borg with-lock REPO sleep SECONDS`, resolved once borg holds the lock. */
export async function borgWithLock(
  repo: string,
  home: string,
  seconds: number,
  extraEnv: Record<string, string> = {},
): Promise<Subprocess<"ignore", "pipe", "pipe">> {
  const proc = track(
    Bun.spawn([requireBorg(), "with-lock", repo, "sleep", String(seconds)], {
      env: borgEnv(home, extraEnv),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  await waitFor(() => existsSync(join(repo, "lock.exclusive")) || proc.exitCode !== null, "borg with-lock");
  if (proc.exitCode !== null) {
    throw new Error(`borg with-lock exited ${proc.exitCode}: ${await new Response(proc.stderr).text()}`);
  }
  // with-lock also runs `sleep`; wait until that child exists so the lock is fully taken.
  await waitFor(() => run(["pgrep", "-P", String(proc.pid)]).code === 0, "borg's child");
  return proc;
}

/** `borg init -e none REPO`. */
export function borgInit(repo: string, home: string): void {
  const r = run([requireBorg(), "init", "-e", "none", repo], { env: borgEnv(home) });
  if (r.code !== 0) throw new Error(`borg init failed: ${r.stderr}`);
}

/** Run Python code with borg's modules and the given environment (e.g. BORG_HOST_ID). */
export function borgPy(script: string, args: string[] = [], env: Record<string, string> = {}): string {
  requireBorg();
  const r = Bun.spawnSync([BORG_PYTHON, "-c", script, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8", ...env },
  });
  if (r.exitCode !== 0) throw new Error(`borg python snippet failed (exit ${r.exitCode}):\n${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** Collect log lines (text mode) until the returned stop() is called. */
export function captureLog(): { lines: string[]; stop(): void } {
  const lines: string[] = [];
  const saved: LogSink = log.sink;
  const savedJson = log.json;
  log.json = false;
  log.sink = { write: (line: string) => lines.push(line.replace(/\n$/, "")) };
  return {
    lines,
    stop() {
      log.sink = saved;
      log.json = savedJson;
    },
  };
}
