// Power loss: the real borg client runs creates, a delete, a prune, a compact and another
// create through burg serve, and then `burg check --repair` runs, all on a FUSE file system
// (test/support/faultfs.py) that records what a power cut would leave: only data fsync'ed and
// directory entries whose directory was fsync'ed. For every point where that durable state
// changes (each fsync and directory fsync, several hundred), the state a cut right there
// leaves is built and must reopen at a committed state: with plain borg (borg's own
// Repository.check() and archive check pass) and with burg (burg check passes), and its
// archives must be those of the last command that returned or of the one running then, so
// every archive whose create returned success is there and intact.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BORG_PYTHON } from "../support/borg-python.ts";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, run, runAsync, type RunResult } from "../support/env.ts";
import { fakeSsh, remoteBorg } from "../support/fake-ssh.ts";
import { faultFsRequired, faultFsUnavailable, materialize, mountFaultFs, readTrace } from "../support/faultfs.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const canMount = faultFsRequired();
if (!canMount) console.warn(`power-loss tests skipped: ${faultFsUnavailable()}`);

const HOST_ID = "power-loss-test@1";
const BATCH = 50;
/** Rounds of the workload; each gives about 110 crash points. */
const ROUNDS = Number(process.env.BURG_POWER_ROUNDS ?? 5);

/** Per state: borg's repository check, then its archive check, then the archive names. */
const PLAIN_BORG = `
import io, json, os, sys
os.environ['BORG_HOST_ID'] = '${HOST_ID}'
from borg.logger import setup_logging
stream = io.StringIO()
setup_logging(stream=stream, level='warning')
from borg.repository import Repository
from borg.archive import ArchiveChecker
from borg.helpers import Manifest
out = {}
for path in sys.argv[1:]:
    stream.truncate(0); stream.seek(0)
    try:
        with Repository(path, exclusive=True, lock_wait=1) as repo:
            if not repo.check():
                out[path] = {'error': 'repository check: ' + stream.getvalue()[-800:]}
                continue
        with Repository(path, exclusive=True, lock_wait=1) as repo:
            if not ArchiveChecker().check(repo, repair=False, sort_by='ts'):
                out[path] = {'error': 'archive check: ' + stream.getvalue()[-800:]}
                continue
            manifest, key = Manifest.load(repo, (Manifest.Operation.READ,))
            out[path] = {'archives': sorted(manifest.archives)}
    except Exception as e:
        out[path] = {'error': type(e).__name__ + ': ' + str(e) + ' ' + stream.getvalue()[-400:]}
print(json.dumps(out))
`;

describe.skipIf(!canMount)("power loss", () => {
  test("every durable state of create, delete, prune, compact and check --repair reopens at a committed state", async () => {
    const dir = scope.tempDir("burg-power-");
    const backing = join(dir, "backing");
    const trace = join(dir, "trace");
    const home = join(dir, "home");
    for (const d of [backing, home]) mkdirSync(d);
    const borg = remoteBorg(home, fakeSsh(home));
    const env = { BORG_HOST_ID: HOST_ID };
    const src = join(dir, "src");
    makeSourceTree(join(src, "base"), { seed: 51, files: 30, totalBytes: 600_000 });
    // each round removes the source tree and starts a new one
    expect((await borg.run(["init", "-e", "none", borg.url(join(backing, "repo"))], { env })).code).toBe(0);
    expect((await borg.run(["create", borg.url(join(backing, "repo"), "a0"), "src"], { cwd: dir, env })).code).toBe(0);

    const fs = await mountFaultFs(backing, { trace });
    scope.onCleanup(() => fs.unmount());
    const repo = join(fs.dir, "repo");
    // the archive list after each command, in order; expected[k] holds once k commands returned
    const expected: string[][] = [["a0"]];
    const step = async (label: string, args: string[] | (() => void), archives: string[]) => {
      if (Array.isArray(args)) {
        const r = await borg.run(args, { cwd: dir, env });
        expect({ label, code: r.code, stderr: r.code === 0 ? "" : r.stderr }).toEqual({ label, code: 0, stderr: "" });
      } else {
        args();
      }
      fs.mark(label);
      expected.push([...archives].sort());
    };
    // Rounds of: three creates, a delete, a prune to one archive, a compact, a create.
    let live = ["a0"];
    let seed = 60;
    for (let round = 0; round < ROUNDS; round++) {
      const names = [0, 1, 2, 3].map((k) => `r${round}-${k}`);
      for (const name of names.slice(0, 3)) {
        makeSourceTree(join(src, name), { seed: seed++, files: 12, totalBytes: 300_000 });
        live = [...live, name];
        await step(`create-${name}`, ["create", borg.url(repo, name), "src"], live);
      }
      live = live.filter((a) => a !== names[1]);
      await step(`delete-${names[1]}`, ["delete", borg.url(repo, names[1]!)], live);
      live = [names[2]!];
      await step(`prune-${round}`, ["prune", "--keep-last", "1", borg.url(repo)], live);
      await step(`compact-${round}`, ["compact", "--threshold", "0", borg.url(repo)], live);
      rmSync(join(src), { recursive: true, force: true });
      makeSourceTree(join(src, names[3]!), { seed: seed++, files: 12, totalBytes: 300_000 });
      live = [...live, names[3]!];
      await step(`create-${names[3]}`, ["create", borg.url(repo, names[3]!), "src"], live);
    }
    await step(
      "check-repair",
      () => {
        // a leftover segment of a transaction that never committed, for the repair to remove
        writeFileSync(join(repo, "data", "0", "999"), new Uint8Array(5000).fill(7));
        const r = run([BURG, "check", "--repair", repo], { env: { ...(process.env as Record<string, string>), ...env, BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES" } });
        expect(r.code).toBe(0);
      },
      live,
    );
    await fs.unmount();

    const events = readTrace(trace);
    const marks = events.filter((e) => e.ev === "mark").map((e) => e.i);
    const points = [0, ...events.filter((e) => e.ev === "fsync" || e.ev === "dirsync").map((e) => e.i)];
    console.log(`power loss: ${events.length} events, ${points.length} crash points (${marks.length} commands)`);
    expect(points.length).toBeGreaterThanOrEqual(Math.min(500, ROUNDS * 80));

    const problems: string[] = [];
    const states = join(dir, "states");
    for (let b = 0; b < points.length && problems.length === 0; b += BATCH) {
      const batch = points.slice(b, b + BATCH);
      rmSync(states, { recursive: true, force: true });
      mkdirSync(states);
      const forBorg = join(states, "borg");
      const forBurg = join(states, "burg");
      materialize(trace, forBorg, batch);
      materialize(trace, forBurg, batch);
      // plain borg in one process for the batch, burg checks beside it, two at a time
      const borgRun = runAsync([BORG_PYTHON, "-c", PLAIN_BORG, ...batch.map((n) => join(forBorg, String(n), "repo"))], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" },
      });
      const burgResults = new Map<number, RunResult>();
      const queue = [...batch];
      await Promise.all(
        [0, 1].map(async () => {
          for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
            burgResults.set(n, await runAsync([BURG, "check", join(forBurg, String(n), "repo")], { env: { ...borgEnv(home), ...env } }));
          }
        }),
      );
      const borgResult = await borgRun;
      if (borgResult.code !== 0) throw new Error(`plain borg's check script failed: ${borgResult.stderr}`);
      const plain = JSON.parse(borgResult.stdout);
      for (const n of batch) {
        const done = marks.filter((m) => m <= n).length;
        const allowed = [expected[done]!, expected[Math.min(done + 1, expected.length - 1)]!].map((a) => JSON.stringify(a));
        const got = plain[join(forBorg, String(n), "repo")];
        if (got.error) problems.push(`after event ${n} (${done} commands returned): plain borg: ${got.error}`);
        else if (!allowed.includes(JSON.stringify(got.archives)))
          problems.push(`after event ${n} (${done} commands returned): archives ${JSON.stringify(got.archives)}, expected ${allowed.join(" or ")}`);
        const ours = burgResults.get(n)!;
        if (ours.code !== 0) problems.push(`after event ${n} (${done} commands returned): burg check exit ${ours.code}: ${ours.stderr.slice(-800)}`);
      }
    }
    rmSync(states, { recursive: true, force: true });
    if (problems.length) {
      const around = (n: number) => events.filter((e) => Math.abs(e.i - n) <= 6).map((e) => `${e.i} ${e.ev} ${e.what ?? ""} ${e.path ?? e.label ?? ""}`);
      const first = Number(/after event (\d+)/.exec(problems[0]!)![1]);
      console.log(around(first).join("\n"));
    }
    expect(problems.slice(0, 5)).toEqual([]);
  }, 1_800_000);
});
