// `burg socket` and `burg connect` with the real borg client: many clients through one
// listener at once, clients that vanish mid-backup, the session limit, shutdown, the socket
// files (modes, stale and live sockets, cleanup), systemd socket activation (Accept=no with a
// passed fd, Accept=yes with `burg serve` on the connection) and `burg connect` as BORG_RSH on
// a PATH without socat or nc. Plain `borg check` on the repositories afterwards.

import { describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree, dirBytes } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, requireBurg, run, runAsync, type RunResult } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import {
  connectRsh,
  makeStaleSocket,
  startBurgSocket,
  startHalfCloseServer,
  startSystemdAcceptYes,
  startSystemdSocketService,
  waitUntil,
} from "../support/socket-server.ts";

const TIMEOUT = 300_000;

const scope = testScope();
/** borg processes started in the background, killed with their children when the file ends. */
const background = new Set<Subprocess>();
scope.onCleanup(() => {
  for (const p of background) {
    if (p.exitCode !== null || p.signalCode !== null) continue;
    for (const kid of run(["pgrep", "-P", String(p.pid)]).stdout.split("\n").filter(Boolean)) {
      try {
        process.kill(Number(kid), "SIGKILL");
      } catch {}
    }
    try {
      p.kill("SIGKILL");
    } catch {}
  }
  background.clear();
});

/** A borg client with its own home, talking to the socket through `burg connect`. */
function client(base: string, name: string, socketPath: string, extraEnv: Record<string, string> = {}) {
  const borg = requireBorg();
  const home = join(base, `home-${name}`);
  mkdirSync(home, { recursive: true });
  const env = borgEnv(home, { BORG_RSH: connectRsh(socketPath), ...extraEnv });
  return {
    home,
    env,
    run: (args: string[], opts: { cwd?: string } = {}): Promise<RunResult> => runAsync([borg, ...args], { env, cwd: opts.cwd }),
    spawn: (args: string[]): Subprocess<"ignore", "pipe", "pipe"> => {
      const p = Bun.spawn([borg, ...args], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      background.add(p);
      return p;
    },
  };
}

const url = (repo: string, archive?: string) => `ssh://burg${repo}${archive === undefined ? "" : `::${archive}`}`;

function ok(r: RunResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed with exit code ${r.code}:\n${r.stderr}`);
}

function plainCheck(repo: string, home: string): RunResult {
  return run([requireBorg(), "check", repo], { env: borgEnv(home) });
}

function lockFiles(repo: string): string[] {
  return readdirSync(repo).filter((n) => n.startsWith("lock."));
}

function fresh(prefix: string) {
  requireBorg();
  requireBurg();
  const dir = scope.tempDir(prefix);
  const run = join(dir, "run");
  mkdirSync(run, { mode: 0o700 });
  return { dir, sock: join(run, "burg.sock") };
}

/** A borg process that holds a repository session open until `release()`. */
async function holdSession(c: ReturnType<typeof client>, repo: string, dir: string, name: string) {
  const flag = join(dir, `${name}.release`);
  const proc = c.spawn(["with-lock", url(repo), "sh", "-c", `while [ ! -e '${flag}' ]; do sleep 0.05; done`]);
  await waitUntil(() => existsSync(join(repo, "lock.exclusive")) || proc.exitCode !== null, "with-lock to take the lock");
  if (proc.exitCode !== null) throw new Error(`with-lock ended early: ${await new Response(proc.stderr).text()}`);
  return {
    proc,
    async release(): Promise<number> {
      writeFileSync(flag, "");
      return await proc.exited;
    },
  };
}

async function initRepo(c: ReturnType<typeof client>, repo: string): Promise<void> {
  ok(await c.run(["init", "-e", "none", url(repo)]), `borg init ${repo}`);
}

describe("burg socket serves many borg clients", () => {
  test(
    "four clients back up in parallel: three repositories, two clients on the same one serialise on its lock",
    async () => {
      const { dir, sock } = fresh("burg-socket-par-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--info"]);
      try {
        const repos = ["a", "b", "c"].map((n) => join(dir, `repo-${n}`));
        const setup = client(dir, "setup", sock);
        for (const r of repos) await initRepo(setup, r);
        const srcs = [0, 1, 2, 3].map((i) => {
          const src = join(dir, `src${i}`);
          makeSourceTree(src, { seed: 100 + i, files: 24, totalBytes: 6_000_000 });
          return src;
        });
        const targets = [repos[0]!, repos[1]!, repos[2]!, repos[2]!];
        const clients = targets.map((_, i) => client(dir, `c${i}`, sock));
        const results = await Promise.all(
          clients.map((c, i) =>
            c.run(["create", "--lock-wait", "120", url(targets[i]!, `arch${i}`), `src${i}`], { cwd: dir }),
          ),
        );
        results.forEach((r, i) => ok(r, `client ${i}`));

        const listC = await setup.run(["list", "--short", url(repos[2]!)]);
        ok(listC, "list c");
        expect(listC.stdout.trim().split("\n").sort()).toEqual(["arch2", "arch3"]);
        for (const [i, r] of repos.slice(0, 2).entries()) {
          const l = await setup.run(["list", "--short", url(r)]);
          expect(l.stdout.trim()).toBe(`arch${i}`);
        }
        // What went in comes out, and plain borg accepts every repository.
        const out = join(dir, "out");
        mkdirSync(out);
        ok(await setup.run(["extract", url(repos[2]!, "arch3")], { cwd: out }), "extract");
        assertSameTree(srcs[3]!, join(out, "src3"));
        for (const r of repos) {
          const chk = plainCheck(r, setup.home);
          expect({ repo: r, code: chk.code, err: chk.stderr }).toEqual({ repo: r, code: 0, err: "" });
          expect(lockFiles(r)).toEqual([]);
        }
      } finally {
        const { code, log } = await server.stop();
        expect({ code, log }).toMatchObject({ code: 0 });
      }
    },
    TIMEOUT,
  );

  test(
    "sessions are independent: while one session holds its repository open, others come and go",
    async () => {
      const { dir, sock } = fresh("burg-socket-indep-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--info"]);
      try {
        const a = join(dir, "repo-a");
        const b = join(dir, "repo-b");
        const c = client(dir, "c", sock);
        await initRepo(c, a);
        await initRepo(c, b);
        const holder = await holdSession(client(dir, "holder", sock), a, dir, "a");

        // A connection that says nothing and one stuck in the middle of a message.
        const idle = await Bun.connect({ unix: sock, socket: { data() {} } });
        const stuck = await Bun.connect({ unix: sock, socket: { data() {} } });
        stuck.write(new Uint8Array([0x94, 0x01])); // a 4-element array, one element sent

        makeSourceTree(join(dir, "src"), { seed: 7, files: 10, totalBytes: 1_000_000 });
        ok(await c.run(["create", url(b, "x"), "src"], { cwd: dir }), "create on b while a is held");
        ok(await c.run(["list", url(b)]), "list b");
        // The held session is still there and finishes normally.
        expect(holder.proc.exitCode).toBeNull();
        expect(await holder.release()).toBe(0);
        idle.end();
        stuck.end();
        expect(plainCheck(a, c.home).code).toBe(0);
        expect(plainCheck(b, c.home).code).toBe(0);
      } finally {
        expect((await server.stop()).code).toBe(0);
      }
    },
    TIMEOUT,
  );

  test(
    "a client killed mid-backup: its transaction is rolled back, its lock released; the next backup and borg check pass",
    async () => {
      const { dir, sock } = fresh("burg-socket-kill-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--info"]);
      try {
        const repo = join(dir, "repo");
        const c = client(dir, "c", sock);
        await initRepo(c, repo);
        const fifo = join(dir, "stream");
        expect(run(["mkfifo", fifo]).code).toBe(0);
        const segBytes = () => dirBytes(join(repo, "data"));
        const before = segBytes();
        const borg = c.spawn(["create", "--read-special", url(repo, "killed"), fifo]);
        const writer = Bun.spawn(["sh", "-c", `exec head -c 200000000 /dev/urandom > '${fifo}'`], {
          stdin: "ignore",
          stdout: "ignore",
          stderr: "ignore",
        });
        background.add(writer);
        try {
          // Mid-backup: locked, and data is arriving in the repository's segments.
          await waitUntil(
            () => borg.exitCode !== null || (existsSync(join(repo, "lock.exclusive")) && segBytes() > before + 8_000_000),
            "the backup to be under way",
          );
          expect(borg.exitCode).toBeNull();
          borg.kill("SIGKILL");
          await borg.exited;
        } finally {
          writer.kill("SIGKILL");
          await writer.exited;
        }
        await server.waitForLog(/connection 2 (closed by the client|lost)/);
        expect(lockFiles(repo)).toEqual([]);

        makeSourceTree(join(dir, "src"), { seed: 3, files: 8, totalBytes: 500_000 });
        ok(await c.run(["create", "--lock-wait", "30", url(repo, "next"), "src"], { cwd: dir }), "next backup");
        const list = await c.run(["list", "--short", url(repo)]);
        expect(list.stdout.trim()).toBe("next");
        const chk = plainCheck(repo, c.home);
        expect({ code: chk.code, err: chk.stderr }).toEqual({ code: 0, err: "" });
      } finally {
        expect((await server.stop()).code).toBe(0);
      }
    },
    TIMEOUT,
  );

  test(
    "--max-sessions: a connection beyond the limit is closed unanswered and logged; the client says why",
    async () => {
      const { dir, sock } = fresh("burg-socket-max-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--max-sessions", "1", "--info"]);
      try {
        const repo = join(dir, "repo");
        const c = client(dir, "c", sock);
        await initRepo(c, repo);
        const holder = await holdSession(client(dir, "holder", sock), repo, dir, "h");
        const refused = await c.run(["list", url(repo)]);
        expect(refused.code).toBe(2);
        expect(refused.stderr).toContain("closed the connection without answering");
        expect(server.log()).toContain("refused: 1 sessions are running (--max-sessions 1)");
        expect(await holder.release()).toBe(0);
        await server.waitForLog(/connection 2 closed by the client/);
        ok(await c.run(["list", url(repo)]), "list after the holder left");
      } finally {
        expect((await server.stop()).code).toBe(0);
      }
    },
    TIMEOUT,
  );
});

describe("burg socket shutdown", () => {
  test(
    "SIGTERM stops accepting at once and lets a running session finish",
    async () => {
      const { dir, sock } = fresh("burg-socket-term-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--shutdown-timeout", "300"]);
      const repo = join(dir, "repo");
      const c = client(dir, "c", sock);
      await initRepo(c, repo);
      const holder = await holdSession(client(dir, "holder", sock), repo, dir, "h");
      server.proc.kill("SIGTERM");
      await server.waitForLog(/not accepting new connections/);
      await waitUntil(() => !existsSync(sock), "the socket file to go");
      const late = await c.run(["list", url(repo)]);
      expect(late.code).toBe(2);
      expect(late.stderr).toContain("does not exist");
      expect(server.proc.exitCode).toBeNull();
      expect(await holder.release()).toBe(0);
      const { code, log } = await server.stop();
      expect(code).toBe(0);
      expect(log).toContain("stopped (2 sessions ended normally, 0 aborted");
      expect(lockFiles(repo)).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    "sessions still running at the shutdown timeout are aborted: rolled back, locks released",
    async () => {
      const { dir, sock } = fresh("burg-socket-abort-");
      const server = await startBurgSocket(scope, ["--socket", sock, "--shutdown-timeout", "0.5"]);
      const repo = join(dir, "repo");
      const c = client(dir, "c", sock);
      await initRepo(c, repo);
      const holder = await holdSession(client(dir, "holder", sock), repo, dir, "h");
      const { code, log } = await server.stop("SIGTERM");
      expect(code).toBe(0);
      expect(log).toContain("aborting connection 2: shutdown timeout reached");
      expect(log).toContain("1 aborted");
      expect(lockFiles(repo)).toEqual([]);
      expect(existsSync(sock)).toBe(false);
      // The client lost its server.
      expect(await holder.release()).not.toBe(0);
      expect(plainCheck(repo, c.home).code).toBe(0);
    },
    TIMEOUT,
  );
});

describe("burg socket files", () => {
  test("the socket is created 0600 by default, with --mode and --group when asked, and both files go on exit", async () => {
    const { dir, sock } = fresh("burg-socket-mode-");
    const server = await startBurgSocket(scope, ["--socket", sock]);
    expect(statSync(sock).isSocket()).toBe(true);
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    const pidFile = join(dir, "run", "burg.pid");
    expect(readFileSync(pidFile, "utf8").trim()).toBe(String(server.proc.pid));
    expect((await server.stop("SIGINT")).code).toBe(0);
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);

    const gid = process.getgid!();
    const sock2 = join(dir, "run", "group.sock");
    const s2 = await startBurgSocket(scope, ["--socket", sock2, "--mode", "0660", "--group", String(gid), "--pid-file", join(dir, "g.pid")]);
    expect(statSync(sock2).mode & 0o777).toBe(0o660);
    expect(statSync(sock2).gid).toBe(gid);
    expect(existsSync(join(dir, "g.pid"))).toBe(true);
    expect((await s2.stop()).code).toBe(0);
    expect(existsSync(join(dir, "g.pid"))).toBe(false);
  });

  test("default socket and PID file follow borg 2: BORG_RUNTIME_DIR, else XDG_RUNTIME_DIR/borg; a missing directory is made 0700", async () => {
    const { dir } = fresh("burg-socket-default-");
    const runtime = join(dir, "rt");
    const s1 = await startBurgSocket(scope, [], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", BORG_RUNTIME_DIR: runtime } });
    expect(statSync(join(runtime, "borg.sock")).isSocket()).toBe(true);
    expect(statSync(runtime).mode & 0o777).toBe(0o700);
    expect(existsSync(join(runtime, "borg.pid"))).toBe(true);
    expect(s1.log()).toContain(`listening on ${join(runtime, "borg.sock")}`);
    expect((await s1.stop()).code).toBe(0);

    const xdg = join(dir, "xdg");
    mkdirSync(xdg, { mode: 0o700 });
    const s2 = await startBurgSocket(scope, [], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", XDG_RUNTIME_DIR: xdg } });
    expect(statSync(join(xdg, "borg", "borg.sock")).isSocket()).toBe(true);
    expect((await s2.stop()).code).toBe(0);
  });

  test("a world-writable directory is refused", async () => {
    const { dir } = fresh("burg-socket-ww-");
    const open = join(dir, "open");
    mkdirSync(open);
    chmodSync(open, 0o1777);
    const r = run([BURG, "socket", "--socket", join(open, "x.sock")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("world-writable");
    expect(existsSync(join(open, "x.sock"))).toBe(false);
  });

  test("a live listener is refused, a stale socket left by a killed one is replaced, other files are never removed", async () => {
    const { dir, sock } = fresh("burg-socket-stale-");
    const first = await startBurgSocket(scope, ["--socket", sock]);
    const second = run([BURG, "socket", "--socket", sock]);
    expect(second.code).toBe(2);
    expect(second.stderr).toContain(`another server is already listening on ${sock} (PID ${first.proc.pid})`);

    // Killed without a chance to clean up: socket and PID file stay behind.
    first.proc.kill("SIGKILL");
    await first.exited;
    expect(existsSync(sock)).toBe(true);
    const third = await startBurgSocket(scope, ["--socket", sock, "--info"]);
    expect(third.log()).toContain(`removed stale socket ${sock} (left by PID ${first.proc.pid}, which is gone)`);
    const c = client(dir, "c", sock);
    const repo = join(dir, "repo");
    await initRepo(c, repo);
    expect((await third.stop()).code).toBe(0);

    // A stale socket without a PID file (e.g. from socat) is replaced too.
    const other = join(dir, "run", "other.sock");
    makeStaleSocket(other);
    const fourth = await startBurgSocket(scope, ["--socket", other]);
    expect((await fourth.stop()).code).toBe(0);

    const plain = join(dir, "run", "plain.sock");
    writeFileSync(plain, "not a socket");
    const fifth = run([BURG, "socket", "--socket", plain]);
    expect(fifth.code).toBe(2);
    expect(fifth.stderr).toContain("exists and is not a socket");
    expect(readFileSync(plain, "utf8")).toBe("not a socket");
  });
});

describe("systemd socket activation", () => {
  test(
    "Accept=no: the listening socket passed as fd 3 (LISTEN_FDS=1, LISTEN_PID) is served and left in place",
    async () => {
      const { dir, sock } = fresh("burg-socket-sd-");
      const server = await startSystemdSocketService(scope, sock, ["--info", "--restrict-to-path", dir]);
      try {
        expect(server.log()).toContain("listening on file descriptor 3 from systemd");
        const repo = join(dir, "repo");
        const c = client(dir, "c", sock);
        await initRepo(c, repo);
        makeSourceTree(join(dir, "src"), { seed: 11, files: 12, totalBytes: 2_000_000 });
        const clients = [0, 1].map((i) => client(dir, `p${i}`, sock));
        const results = await Promise.all(
          clients.map((cl, i) => cl.run(["create", "--lock-wait", "60", url(repo, `s${i}`), "src"], { cwd: dir })),
        );
        results.forEach((r, i) => ok(r, `systemd client ${i}`));
        const outside = await c.run(["init", "-e", "none", url(join(dir, "..", "elsewhere"))]);
        expect(outside.code).toBe(2);
        expect(outside.stderr).toContain("not allowed");
        expect(plainCheck(repo, c.home).code).toBe(0);
      } finally {
        const { code } = await server.stop();
        expect(code).toBe(0);
      }
      // The socket belongs to the service manager: burg does not remove it.
      expect(statSync(sock).isSocket()).toBe(true);
    },
    TIMEOUT,
  );

  test(
    "Accept=yes: `burg serve` with the connection as stdin and stdout keeps its logs on stderr",
    async () => {
      const { dir, sock } = fresh("burg-socket-acc-");
      const logFile = join(dir, "journal.log");
      const server = await startSystemdAcceptYes(scope, sock, logFile, ["--debug"]);
      // On failure, show what the services logged (the journal's part of the story).
      const journalOnFailure = (e: unknown) => {
        const journal = existsSync(logFile) ? readFileSync(logFile, "utf8") : "(no log)";
        throw new Error(`${(e as Error).message}\n--- services' stderr:\n${journal.slice(-4000)}`);
      };
      try {
        const repo = join(dir, "repo");
        const c = client(dir, "c", sock);
        await initRepo(c, repo);
        makeSourceTree(join(dir, "src"), { seed: 12, files: 12, totalBytes: 2_000_000 });
        ok(await c.run(["create", url(repo, "a"), "src"], { cwd: dir }), "create");
        const out = join(dir, "out");
        mkdirSync(out);
        ok(await c.run(["extract", url(repo, "a")], { cwd: out }), "extract");
        assertSameTree(join(dir, "src"), join(out, "src"));
        await waitUntil(() => (readFileSync(logFile, "utf8").match(/exit \d+/g) ?? []).length >= 3, "the services to exit");
        const journal = readFileSync(logFile, "utf8");
        expect(journal).toContain("Initialized logging system for JSON-based protocol");
        expect(journal.match(/exit (\d+)/g)).toEqual(["exit 0", "exit 0", "exit 0"]);
      } catch (e) {
        journalOnFailure(e);
      } finally {
        await server.stop("SIGKILL");
      }
    },
    TIMEOUT,
  );
});

describe("burg connect", () => {
  test(
    'BORG_RSH="dist/burg connect SOCKET" needs neither socat nor nc',
    async () => {
      const { dir, sock } = fresh("burg-connect-path-");
      const bin = join(dir, "bin");
      mkdirSync(bin);
      symlinkSync(requireBorg(), join(bin, "borg"));
      expect(Bun.which("socat", { PATH: bin })).toBeNull();
      expect(Bun.which("nc", { PATH: bin })).toBeNull();
      const server = await startBurgSocket(scope, ["--socket", sock]);
      try {
        const c = client(dir, "c", sock, { PATH: bin });
        const repo = join(dir, "repo");
        await initRepo(c, repo);
        makeSourceTree(join(dir, "src"), { seed: 5, files: 16, totalBytes: 3_000_000 });
        ok(await c.run(["create", "--stats", url(repo, "one"), "src"], { cwd: dir }), "create");
        const out = join(dir, "out");
        mkdirSync(out);
        ok(await c.run(["extract", url(repo, "one")], { cwd: out }), "extract");
        assertSameTree(join(dir, "src"), join(out, "src"));
      } finally {
        expect((await server.stop()).code).toBe(0);
      }
    },
    TIMEOUT,
  );

  test("stdin EOF shuts down only the write side: the server's answer after our EOF still arrives", async () => {
    const { sock } = fresh("burg-connect-half-");
    const server = await startHalfCloseServer(scope, sock);
    const payload = "x".repeat(300_000);
    const r = run([BURG, "connect", sock, "-p", "22", "host", "borg", "serve", "--info", "--debug-topic=x"], {
      input: payload,
    });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toBe(`got 300000 bytes: ${"x".repeat(20)}`);
    expect(await server.exited).toBe(0);
  });

  test("a missing socket, a stale one and a non-socket give exit code 2 and say which", async () => {
    const { dir } = fresh("burg-connect-err-");
    const missing = run([BURG, "connect", join(dir, "run", "none.sock"), "host", "borg", "serve"], { input: "x" });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`the socket ${join(dir, "run", "none.sock")} does not exist`);

    const stale = join(dir, "run", "stale.sock");
    makeStaleSocket(stale);
    const r2 = run([BURG, "connect", stale], { input: "x" });
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(`nobody accepts connections on ${stale}`);

    const file = join(dir, "file");
    writeFileSync(file, "");
    const r3 = run([BURG, "connect", file], { input: "x" });
    expect(r3.code).toBe(2);
    expect(r3.stderr).toContain(`${file} is not a socket`);

    // borg shows the reason as a Remote: line and fails with its own error.
    const c = client(dir, "c", join(dir, "run", "none.sock"));
    const viaBorg = await c.run(["list", url(join(dir, "repo"))]);
    expect(viaBorg.code).toBe(2);
    expect(viaBorg.stderr).toContain("Remote: burg connect: the socket");
  });
});
