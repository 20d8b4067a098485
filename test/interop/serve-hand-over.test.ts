// `burg serve --daemon-socket` as the forced command of a real sshd: every ssh session is handed
// (stdin, stdout, stderr by SCM_RIGHTS, with the forced command's own restrictions) to one
// running `burg socket` daemon. Many concurrent clients, each key's restrictions, the exit
// status sshd reports, a missing daemon, killed processes on either side, and who may hand
// over to whom. Plain borg checks the repositories afterwards.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, requireBurg, run, runAsync, type RunResult } from "../support/env.ts";
import { BORG_PYTHON } from "../support/borg-python.ts";
import { testScope } from "../support/scope.ts";
import { startBurgSocket, waitUntil, type ServerProcess } from "../support/socket-server.ts";
import { startSshd, type PrivateSshd } from "../support/sshd.ts";

const scope = testScope();
let sshd: PrivateSshd;
let home: string;
let repos: string;
let socketPath: string;
let src: string;
let daemon: ServerProcess;
const keys: Record<string, string> = {};

function addForcedKey(name: string, command: string): void {
  keys[name] = sshd.addForcedKey(name, command);
}

const rsh = (key: string) => ["ssh", ...sshd.sshOptions(keys[key])].join(" ");

function borg(key: string, args: string[], extra: Record<string, string> = {}): Promise<RunResult> {
  return runAsync([requireBorg(), ...args], { env: borgEnv(home, { BORG_RSH: rsh(key), ...extra }) });
}

function spawnBorg(key: string, args: string[]): Subprocess<"ignore", "pipe", "pipe"> {
  const p = Bun.spawn([requireBorg(), ...args], { env: borgEnv(home, { BORG_RSH: rsh(key) }), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  scope.track(p);
  return p;
}

/** ssh with this key and raw bytes on stdin; the exit status sshd reports. */
async function sshRaw(key: string, input: Uint8Array): Promise<RunResult> {
  return runAsync(["ssh", ...sshd.sshOptions(keys[key]), sshd.destination, "borg", "serve"], { input });
}

const url = (path: string, archive?: string) => `ssh://${sshd.destination}${path}${archive ? `::${archive}` : ""}`;
const handOvers = () => (daemon.log().match(/\(hand-over\) from PID/g) ?? []).length;

function ok(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed with exit code ${r.code}:\n${r.stderr}`);
}

async function startDaemon(extra: string[] = []): Promise<ServerProcess> {
  return startBurgSocket(scope, ["--socket", socketPath, "--info", ...extra]);
}

beforeAll(async () => {
  requireBurg();
  requireBorg();
  home = scope.tempDir("burg-hand-over-");
  const sshdDir = join(home, "sshd");
  mkdirSync(sshdDir);
  sshd = await startSshd(sshdDir, { extraConfig: ["ExposeAuthInfo yes"] });
  repos = join(home, "repos");
  mkdirSync(repos);
  mkdirSync(join(home, "run"), { mode: 0o700 });
  socketPath = join(home, "run", "burg.sock");
  src = join(home, "src");
  makeSourceTree(src, { seed: 11, files: 40, totalBytes: 4_000_000 });
  const via = `${BURG} serve --daemon-socket ${socketPath}`;
  addForcedKey("all", `${via} --restrict-to-path ${repos}`);
  addForcedKey("alice", `${via} --restrict-to-repository ${join(repos, "alice")}`);
  addForcedKey("readonly", `${via} --restrict-to-repository ${join(repos, "alice")} --permissions read-only`);
  addForcedKey("nodelete", `${via} --restrict-to-repository ${join(repos, "alice")} --permissions no-delete`);
  addForcedKey("umask", `${via} --restrict-to-path ${repos} --umask 0027`);
  addForcedKey("plain", `${BURG} serve --restrict-to-path ${repos}`);
  daemon = await startDaemon();
}, 60_000);

afterAll(async () => {
  await daemon?.stop();
  await sshd?.stop();
});

describe("burg serve --daemon-socket through a real sshd", () => {
  test(
    "16 concurrent borg clients, each its own ssh session, are all served by one daemon; plain borg check passes",
    async () => {
      const before = handOvers();
      const names = Array.from({ length: 16 }, (_, i) => `client${i}`);
      for (const n of names) ok(await borg("all", ["init", "-e", "none", url(join(repos, n))]), `init ${n}`);
      const creates = names.map((n) => spawnBorg("all", ["create", url(join(repos, n), "a"), src]));
      const codes = await Promise.all(creates.map(async (p) => ({ code: await p.exited, err: await new Response(p.stderr).text() })));
      for (const c of codes) expect(c).toEqual({ code: 0, err: "" });
      // init, create: two sessions per client, every one of them in the daemon
      expect(handOvers() - before).toBe(32);
      const peak = Math.max(...[...daemon.log().matchAll(/accepted \((\d+) running\)/g)].map((m) => Number(m[1])));
      expect(peak).toBeGreaterThanOrEqual(4);
      for (const n of names.slice(0, 4)) {
        const extract = join(home, `x-${n}`);
        mkdirSync(extract);
        ok(await runAsync([requireBorg(), "extract", url(join(repos, n), "a")], { env: borgEnv(home, { BORG_RSH: rsh("all") }), cwd: extract }), `extract ${n}`);
        assertSameTree(src, join(extract, src));
      }
      for (const n of names) ok(run([requireBorg(), "check", join(repos, n)], { env: borgEnv(home) }), `plain borg check ${n}`);
      // the journal names the ssh connection of each session, as with a plain forced command
      const log = await runAsync([BURG, "log", "--json", join(repos, "client0")]);
      const records = log.stdout.trim().split("\n").map((l) => JSON.parse(l));
      expect(records.length).toBe(3); // init, create, extract
      for (const r of records) {
        expect(r.command).toBe("serve");
        expect(r.who.ssh_connection).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+$/);
        expect(r.options.restrict_to_paths).toEqual([repos]);
      }
    },
    300_000,
  );

  test(
    "each key keeps its own restrictions: repository, permissions; the client's own command cannot widen them",
    async () => {
      const alice = join(repos, "alice");
      ok(await borg("alice", ["init", "-e", "none", url(alice)]), "init alice");
      ok(await borg("alice", ["create", url(alice, "one"), src]), "create");
      const elsewhere = await borg("alice", ["list", url(join(repos, "client0"))]);
      expect(elsewhere.code).toBe(2);
      expect(elsewhere.stderr).toContain("not allowed");
      const widen = { BORG_REMOTE_PATH: "BORG_REPO_PERMISSIONS=all burg --permissions all --restrict-to-path /" };
      const list = await borg("readonly", ["list", "--short", url(alice)], widen);
      expect(list.code).toBe(0);
      expect(list.stdout.trim()).toBe("one");
      const create = await borg("readonly", ["create", url(alice, "two"), src], widen);
      expect(create.code).toBe(2);
      expect(create.stderr).toContain("Permission denied");
      const del = await borg("nodelete", ["delete", url(alice, "one")], widen);
      expect(del.code).toBe(2);
      expect((await borg("alice", ["list", "--short", url(alice)])).stdout.trim()).toBe("one");
      // the client's log level passes through, and the server's lines reach it as "Remote: ..."
      const debug = await borg("readonly", ["--debug", "list", url(alice)]);
      expect(debug.code).toBe(0);
      expect(debug.stderr).toMatch(/Remote: .*[Rr]epository/);
      expect(daemon.log()).not.toContain("not handed over");
      ok(run([requireBorg(), "check", alice], { env: borgEnv(home) }), "plain borg check");
    },
    120_000,
  );

  test(
    "sshd reports the exit status a plain burg serve forced command would give",
    async () => {
      const before = handOvers();
      const inputs: Array<[string, Uint8Array]> = [
        ["nothing", new Uint8Array(0)],
        ["garbage", new Uint8Array([0xc1, 0xc1, 0xc1, 0xc1])],
        ["a cut-off request", new Uint8Array([0x82, 0xa1, 0x69])],
      ];
      const seen: number[] = [];
      for (const [what, input] of inputs) {
        const viaDaemon = await sshRaw("all", input);
        const plain = await sshRaw("plain", input);
        expect({ what, code: viaDaemon.code }).toEqual({ what, code: plain.code });
        seen.push(viaDaemon.code);
      }
      expect(seen).toContain(0);
      expect(seen.some((c) => c !== 0)).toBe(true);
      expect(handOvers() - before).toBe(inputs.length);
    },
    60_000,
  );

  test(
    "a forced command killed mid-backup aborts its session in the daemon; a killed daemon makes the command exit 2",
    async () => {
      const repo = join(repos, "killed");
      ok(await borg("all", ["init", "-e", "none", url(repo)]), "init");
      const big = join(home, "big");
      makeSourceTree(big, { seed: 12, files: 4, totalBytes: 200_000_000 });
      const seen = handOvers();
      const p = spawnBorg("all", ["create", url(repo, "cut"), big]);
      await waitUntil(() => existsSync(join(repo, "lock.exclusive")) && handOvers() > seen, "the backup's lock", 30_000);
      const m = [...daemon.log().matchAll(/connection (\d+) \(hand-over\) from PID (\d+)/g)].at(-1)!;
      // the forced command waits as a shell of a megabyte or two, not as a whole burg (it execs
      // right after telling the daemon to go, so the session may be under way a moment before)
      await waitUntil(() => readFileSync(`/proc/${m[2]}/comm`, "utf8").trim() === "sh", "the forced command to wait as sh", 10_000);
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${m[2]}/status`, "utf8"))![1]);
      expect(rssKiB).toBeLessThan(8 * 1024);
      process.kill(Number(m[2]), "SIGTERM");
      await daemon.waitForLog(new RegExp(`connection ${m[1]} \\(hand-over\\): the forced command \\(PID ${m[2]}\\) ended; aborting`));
      await daemon.waitForLog(new RegExp(`connection ${m[1]} (lost|aborted|failed|ended)`));
      expect(await p.exited).not.toBe(0);
      await waitUntil(() => readdirSync(repo).every((n) => !n.startsWith("lock.")), "the lock to go", 10_000);
      ok(run([requireBorg(), "check", repo], { env: borgEnv(home) }), "plain borg check after the aborted session");
      expect((await borg("all", ["list", "--short", url(repo)])).stdout.trim()).toBe("");

      // now the daemon dies under a running session
      const q = spawnBorg("all", ["create", url(repo, "cut2"), big]);
      await waitUntil(() => existsSync(join(repo, "lock.exclusive")), "the second backup's lock", 30_000);
      daemon.proc.kill("SIGKILL");
      expect(await q.exited).not.toBe(0);
      daemon = await startDaemon();
      // the forced command itself: a session waiting for input when the daemon dies
      const waiting = Bun.spawn([BURG, "serve", "--daemon-socket", socketPath], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      scope.track(waiting);
      await daemon.waitForLog(/\(hand-over\) from PID/);
      daemon.proc.kill("SIGKILL");
      expect(await waiting.exited).toBe(2);
      expect(await new Response(waiting.stderr).text()).toContain("went away before the session ended; its session was cut off");
      daemon = await startDaemon();
      // the dead daemon's lock is stale (its process is gone): the next session gets past it
      ok(await borg("all", ["create", url(repo, "after"), src]), "create after the daemon was killed");
      ok(run([requireBorg(), "check", repo], { env: borgEnv(home) }), "plain borg check");
    },
    300_000,
  );

  test(
    "without a daemon the forced command serves the session itself; a hand-over it cannot honour too",
    async () => {
      await daemon.stop();
      const repo = join(repos, "solo");
      ok(await borg("all", ["init", "-e", "none", url(repo)]), "init without a daemon");
      ok(await borg("all", ["create", url(repo, "a"), src]), "create without a daemon");
      daemon = await startDaemon(["--max-sessions", "1"]);
      // another umask than the daemon's: refused there, served by the command
      ok(await borg("umask", ["create", url(repo, "b"), src]), "create with --umask 0027");
      await daemon.waitForLog(/refused: it asks for umask 0027, the daemon runs with 0077/);
      // beyond --max-sessions: served by the command, nobody is turned away
      const flag = join(home, "holding");
      const holder = spawnBorg("all", ["with-lock", url(repo), "sh", "-c", `touch ${flag}; sleep 5`]);
      await waitUntil(() => existsSync(flag), "the first session's lock", 30_000);
      const second = join(repos, "second");
      ok(await borg("all", ["init", "-e", "none", url(second)]), "init beyond the session limit");
      await daemon.waitForLog(/refused: .*--max-sessions 1/);
      expect(await holder.exited).toBe(0);
      expect((await borg("all", ["list", "--short", url(repo)])).stdout.trim().split("\n")).toEqual(["a", "b"]);
      for (const r of [repo, second]) ok(run([requireBorg(), "check", r], { env: borgEnv(home) }), `plain borg check ${r}`);
      await daemon.stop();
      daemon = await startDaemon();
    },
    300_000,
  );

  test(
    "broken hand-overs are logged and dropped; the daemon goes on serving",
    async () => {
      const send = async (bytes: Uint8Array, closeAfterMs = 300) => {
        const socket = await Bun.connect({ unix: socketPath, socket: { data() {} } });
        socket.write(bytes);
        await Bun.sleep(closeAfterMs);
        socket.end();
      };
      const header = (len: number) => {
        const h = new Uint8Array(12);
        h.set([0, 0x62, 0x75, 0x72, 0x67, 0x2d, 0x68, 0x31]);
        new DataView(h.buffer).setUint32(8, len, true);
        return h;
      };
      await send(header(64 << 20));
      await daemon.waitForLog(/broken hand-over: hand-over frame too big \(67108864 bytes\)/);
      await send(new Uint8Array([0, 1, 2]), 50);
      await daemon.waitForLog(/broken hand-over: connection closed inside the hand-over/);
      // a whole frame, but no descriptors with it (and a payload that is not JSON)
      const body = new TextEncoder().encode("not json");
      const frame = new Uint8Array(12 + body.length);
      frame.set(header(body.length));
      frame.set(body, 12);
      await send(frame);
      await daemon.waitForLog(/refused: it carried 0 descriptors, not 3/);
      const repo = join(repos, "after-broken");
      ok(await borg("all", ["init", "-e", "none", url(repo)]), "init after the broken hand-overs");
      ok(await borg("all", ["create", url(repo, "a"), src]), "create after the broken hand-overs");
      expect(daemon.log()).not.toMatch(/internal error|session failed/);
    },
    60_000,
  );

  test.skipIf(process.getuid?.() !== 0 && !process.env.CI)(
    "nothing is handed to a daemon of another user, and the daemon takes no hand-over from another user",
    async () => {
      // a listener of uid 65534 at the path: the command must not pass it anything
      const foreign = scope.tempDir("burg-foreign-");
      chmodSync(foreign, 0o777);
      const fake = join(foreign, "fake.sock");
      const record = join(foreign, "got");
      const listener = Bun.spawn(
        [
          "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BORG_PYTHON, "-c",
          `import socket,sys\ns=socket.socket(socket.AF_UNIX);s.bind(sys.argv[1]);s.listen(5)\nwhile True:\n c,_=s.accept()\n d=c.recv(65536)\n open(sys.argv[2],'ab').write(b'%d bytes\\n'%len(d))\n c.close()`,
          fake, record,
        ],
        { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
      );
      scope.track(listener);
      await waitUntil(() => existsSync(fake), "the foreign listener", 10_000);
      const repo = join(repos, "foreign");
      const r = await runAsync([BURG, "serve", "--daemon-socket", fake, "--restrict-to-path", repos, "--info"], {
        input: new Uint8Array(0),
      });
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("runs as uid 65534, not as us (uid 0) or root; serving the session here");
      await Bun.sleep(200);
      // it connected (to ask SO_PEERCRED) and sent nothing
      expect(existsSync(record) ? readFileSync(record, "utf8") : "").toMatch(/^(0 bytes\n)?$/);
      listener.kill("SIGKILL");

      // a command of uid 65534 handing over to root's daemon: refused and logged
      const open = scope.tempDir("burg-open-");
      chmodSync(open, 0o755);
      const openSocket = join(open, "burg.sock");
      const openDaemon = await startBurgSocket(scope, ["--socket", openSocket, "--mode", "0666", "--info"]);
      const nobody = await runAsync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BURG, "serve", "--daemon-socket", openSocket, "--debug"], {
        input: new Uint8Array(0),
      });
      expect(nobody.stderr).toContain("closed the connection before taking the session");
      await openDaemon.waitForLog(/hand-over refused: it comes from PID \d+, uid 65534; only uid 0 and root may hand over/);
      await openDaemon.stop();
      expect(existsSync(repo)).toBe(false);
    },
    60_000,
  );
});
