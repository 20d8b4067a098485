// SIGKILL to `burg serve` at random moments of real borg client `create`, `delete`, `prune`
// and `compact`. After every trial: the archive list is the one before the command or the one
// after it (the one after when the client reported success), the next client needs no
// break-lock (its commands simply run), and plain borg checks the repository; every 25 trials
// and at the end plain borg checks the archives too, and at the end every archive left
// extracts byte-identical to what was backed up.
//
// BURG_KILL_TRIALS sets the number of trials (default 200, as CI runs it; the README reports
// a run of 1000). Trials run in two lanes, each on its own repository.

import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree, prng } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, run, runAsync, waitReaped, writeExecutable } from "../support/env.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const TRIALS = Number(process.env.BURG_KILL_TRIALS ?? 200);
const LANES = 2;
const HOST_ID = "kill-serve-test@987654321";
type Op = "create" | "delete" | "prune" | "compact";

interface Lane {
  dir: string;
  repo: string;
  data: string;
  pidFile: string;
  env: Record<string, string>;
  /** archive names in the order they were made */
  archives: string[];
  /** milliseconds from the serve's start to the client's exit, per command, when not killed */
  duration: Map<Op, number>;
  kills: number;
  completed: number;
}

function makeLane(n: number): Lane {
  const dir = scope.tempDir(`burg-kill-${n}-`);
  const home = join(dir, "home");
  const data = join(dir, "data");
  mkdirSync(home);
  mkdirSync(data);
  const pidFile = join(dir, "serve.pid");
  const rsh = writeExecutable(join(dir, "rsh"), `#!/bin/sh\nshift\necho $$ > "${pidFile}"\nexec "$@"\n`);
  const env = borgEnv(home, { BORG_RSH: rsh, BORG_REMOTE_PATH: BURG, BORG_HOST_ID: HOST_ID });
  makeSourceTree(join(data, "common"), { seed: 1000 + n, files: 60, totalBytes: 2 << 20 });
  return { dir, repo: join(dir, "repo"), data, pidFile, env, archives: [], duration: new Map(), kills: 0, completed: 0 };
}

const url = (l: Lane, archive?: string) => `ssh://fakehost${l.repo}${archive ? `::${archive}` : ""}`;

async function borg(l: Lane, args: string[]) {
  return runAsync([requireBorg(), ...args], { env: l.env, cwd: l.data });
}

async function listArchives(l: Lane): Promise<string[]> {
  const r = await borg(l, ["list", "--short", url(l)]);
  if (r.code !== 0) throw new Error(`borg list after a trial failed (a stale lock?): ${r.stderr}`);
  return r.stdout.split("\n").filter(Boolean);
}

function plainCheck(l: Lane, full: boolean): void {
  const r = run([requireBorg(), "check", ...(full ? [] : ["--repository-only"]), l.repo], { env: l.env });
  if (r.code !== 0) throw new Error(`plain borg check${full ? "" : " --repository-only"} failed:\n${r.stderr}`);
}

function isZombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

/** One command, with the serve killed after `killAfter` ms (null: not killed). */
async function trial(l: Lane, op: Op, args: string[], killAfter: number | null): Promise<{ code: number; killed: boolean; ms: number }> {
  rmSync(l.pidFile, { force: true });
  const client = Bun.spawn([requireBorg(), ...args], { env: l.env, cwd: l.data, stdout: "ignore", stderr: "pipe" });
  scope.track(client);
  const stderr = new Response(client.stderr).text();
  let pid: number | null = null;
  while (pid === null && client.exitCode === null) {
    if (existsSync(l.pidFile)) pid = Number(readFileSync(l.pidFile, "utf8").trim()) || null;
    if (pid === null) await Bun.sleep(2);
  }
  const started = performance.now();
  // the serve's lifetime, which is what a kill can cut short (the client goes on a little after)
  let ms = 0;
  const serveGone = (async () => {
    while (pid !== null && existsSync(`/proc/${pid}`) && !isZombie(pid)) await Bun.sleep(2);
    ms = performance.now() - started;
  })();
  let killed = false;
  if (killAfter !== null && pid !== null) {
    await Promise.race([serveGone, Bun.sleep(killAfter)]);
    if (existsSync(`/proc/${pid}`) && !isZombie(pid)) {
      try {
        process.kill(pid, "SIGKILL");
        killed = true;
      } catch {}
    }
  }
  const code = await client.exited;
  await serveGone;
  if (pid !== null) await waitReaped([pid], "killed burg serve");
  if (!killed && code !== 0) throw new Error(`${op} failed without a kill (exit ${code}):\n${await stderr}`);
  return { code, killed, ms };
}

async function runLane(l: Lane, n: number, trials: number): Promise<void> {
  const rand = prng(4242 + n);
  const init = await borg(l, ["init", "-e", "repokey", url(l)]);
  expect(init.code).toBe(0);
  for (let t = 0; t < trials; t++) {
    const before = [...l.archives];
    let op: Op;
    const r = rand();
    if (before.length < 2 || r < 0.4) op = "create";
    else if (r < 0.6) op = "delete";
    else if (r < 0.8) op = "prune";
    else op = "compact";
    let args: string[];
    let after: string[];
    let snap: string | null = null;
    if (op === "create") {
      const name = `t${t}`;
      snap = `snap-${name}`;
      cpSync(join(l.data, "common"), join(l.data, snap, "common"), { recursive: true });
      makeSourceTree(join(l.data, snap, "own"), { seed: n * 100_000 + t, files: 20, totalBytes: 1 << 20 });
      args = ["create", url(l, name), snap];
      after = [...before, name];
    } else if (op === "delete") {
      const victim = before[Math.floor(rand() * before.length)]!;
      args = ["delete", url(l, victim)];
      after = before.filter((a) => a !== victim);
    } else if (op === "prune") {
      const keep = 1 + Math.floor(rand() * (before.length - 1));
      // --keep-last keeps the newest archives: ours were made in list order
      args = ["prune", "--keep-last", String(keep), url(l)];
      after = before.slice(before.length - keep);
    } else {
      args = ["compact", url(l)];
      after = before;
    }
    // The first run of each command is timed, not killed; later ones are killed at a random
    // moment within the serve's lifetime the last time it ran to the end (some finish first,
    // which is part of the test too).
    const typical = l.duration.get(op);
    const killAfter = typical === undefined ? null : rand() * typical;
    const res = await trial(l, op, args, killAfter);
    if (res.killed) l.kills++;
    else l.completed++;
    if (!res.killed) l.duration.set(op, res.ms);

    const now = await listArchives(l);
    const sorted = (a: string[]) => [...a].sort();
    const which = JSON.stringify(sorted(now)) === JSON.stringify(sorted(after)) ? "after" : JSON.stringify(sorted(now)) === JSON.stringify(sorted(before)) ? "before" : "neither";
    if (which === "neither" || (res.code === 0 && which !== "after")) {
      throw new Error(
        `lane ${n} trial ${t}: ${args.join(" ")} (exit ${res.code}, ${res.killed ? `killed after ${Math.round(killAfter!)} ms` : "not killed"}) left ${JSON.stringify(now)}; before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
      );
    }
    // keep the archive order of creation
    l.archives = which === "after" ? after : before;
    if (snap && which === "before") rmSync(join(l.data, snap), { recursive: true, force: true });
    for (const gone of before.filter((a) => !l.archives.includes(a))) rmSync(join(l.data, `snap-${gone}`), { recursive: true, force: true });
    plainCheck(l, t % 25 === 24);
  }
  plainCheck(l, true);
  for (const name of l.archives) {
    const out = join(l.dir, `extract-${name}`);
    mkdirSync(out);
    const r = await runAsync([requireBorg(), "extract", url(l, name)], { env: l.env, cwd: out });
    expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: "" });
    assertSameTree(join(l.data, `snap-${name}`), join(out, `snap-${name}`));
    rmSync(out, { recursive: true, force: true });
  }
}

describe("SIGKILL to burg serve during real borg commands", () => {
  test(
    `${TRIALS} trials: committed archives intact, plain borg check passes, no break-lock needed`,
    async () => {
      const lanes = Array.from({ length: LANES }, (_, n) => makeLane(n));
      const per = Math.ceil(TRIALS / LANES);
      await Promise.all(lanes.map((l, n) => runLane(l, n, n === LANES - 1 ? TRIALS - per * (LANES - 1) : per)));
      const kills = lanes.reduce((s, l) => s + l.kills, 0);
      console.log(`kill-serve: ${TRIALS} trials, ${kills} killed mid-command, ${TRIALS - kills} completed first`);
      // most trials must really cut a command short
      expect(kills).toBeGreaterThan(TRIALS * 0.5);
    },
    3_600_000,
  );
});
