// `burg pull` end to end: a private sshd on 127.0.0.1 (test/support/sshd.ts), this machine
// playing the client, the real borg there and dist/burg here. Backups, listings, byte-identical
// extraction, prune under no-delete and all, every bridge, borg's stdin through the channel, the
// passphrase kept out of every command line and environment on the client, interrupted and
// killed pulls leaving no socket and no lock behind, each failure with its message and exit
// code, and the borgmatic wrapper with the arguments borgmatic passes.

import { beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { assertSameTree, makeSourceTree, dirBytes } from "../support/data.ts";
import { BURG, ROOT, borgEnv, requireBorg, requireBurg, run, runAsync, type RunResult } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import { waitUntil } from "../support/socket-server.ts";
import { startSshd, sshdUnavailable, type PrivateSshd } from "../support/sshd.ts";

const TIMEOUT = 300_000;
const PASS = "correct horse 'battery' $staple \"🐎\"";

const scope = testScope();
const tempDir = (prefix: string) => scope.tempDir(prefix);
let sshd: PrivateSshd;
let base: string;
/** The client's borg keeps its cache and config here (BORG_BASE_DIR on the client). */
let clientHome: string;
const background = new Set<Subprocess>();

beforeAll(async () => {
  requireBorg();
  requireBurg();
  const why = sshdUnavailable();
  if (why !== null) throw new Error(`the pull tests need a private sshd on 127.0.0.1: ${why}`);
  base = tempDir("burg-pull-it-");
  mkdirSync(join(base, "sshd"));
  sshd = await startSshd(join(base, "sshd"));
  clientHome = join(base, "client-home");
  mkdirSync(clientHome);
});

// Before the scope removes the directories: stop what still runs in them.
scope.onCleanup(async () => {
  for (const p of background) {
    try {
      p.kill("SIGKILL");
    } catch {}
  }
  await sshd?.stop();
});

interface PullOpts {
  key?: string;
  extra?: string[];
  env?: Record<string, string>;
  input?: string | Uint8Array;
  cwd?: string;
}

function pullArgv(repo: string, borgArgs: string[], o: PullOpts = {}): string[] {
  return [
    BURG,
    "pull",
    "--repo",
    repo,
    ...sshd.sshOptions(o.key),
    "--remote-env",
    `BORG_BASE_DIR=${clientHome}`,
    "--remote-burg",
    BURG,
    // the client's borg is the one under test (BURG_TEST_BORG: borg 1.4 in test:borg14)
    "--remote-borg",
    requireBorg(),
    ...(o.extra ?? []),
    sshd.destination,
    "--",
    ...borgArgs,
  ];
}

function serverEnv(extra: Record<string, string> = {}): Record<string, string> {
  const home = join(base, "server-home");
  mkdirSync(home, { recursive: true });
  return borgEnv(home, extra);
}

function pull(repo: string, borgArgs: string[], o: PullOpts = {}): Promise<RunResult> {
  return runAsync(pullArgv(repo, borgArgs, o), { env: serverEnv(o.env), input: o.input, cwd: o.cwd });
}

function spawnPull(repo: string, borgArgs: string[], o: PullOpts = {}): Subprocess<"ignore", "pipe", "pipe"> {
  const p = Bun.spawn(pullArgv(repo, borgArgs, o), { env: serverEnv(o.env), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  background.add(p);
  return p;
}

function ok(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`${what} failed with exit code ${r.code}:\n${r.stderr}`);
  return r;
}

function lockFiles(repo: string): string[] {
  return existsSync(repo) ? readdirSync(repo).filter((n) => n.startsWith("lock.")) : [];
}

function plainCheck(repo: string, env: Record<string, string> = {}): RunResult {
  return run([requireBorg(), "check", repo], { env: serverEnv(env) });
}

// ------------------------------------------------------------------ processes through /proc

function ppidOf(pid: number): number | null {
  try {
    const m = /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function allPids(): number[] {
  return readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number);
}

function isDescendant(pid: number, ancestor: number): boolean {
  let p: number | null = pid;
  for (let i = 0; i < 64 && p !== null && p > 1; i++) {
    p = ppidOf(p);
    if (p === ancestor) return true;
  }
  return false;
}

function readProc(pid: number, file: "cmdline" | "environ"): Buffer | null {
  try {
    return readFileSync(`/proc/${pid}/${file}`);
  } catch {
    return null;
  }
}

function cmdline(pid: number): string[] {
  const b = readProc(pid, "cmdline");
  return b === null ? [] : b.toString("utf8").split("\0").filter(Boolean);
}

/** ssh's -R argument of a running burg pull: [remote socket, local socket]. */
async function forwardingOf(pullPid: number): Promise<[string, string]> {
  let found: [string, string] | null = null;
  await waitUntil(() => {
    for (const pid of allPids()) {
      if (ppidOf(pid) !== pullPid) continue;
      const argv = cmdline(pid);
      const i = argv.indexOf("-R");
      if (i >= 0) {
        const [remote, local] = argv[i + 1]!.split(":");
        found = [remote!, local!];
        return true;
      }
    }
    return false;
  }, "burg pull's ssh process");
  return found!;
}

/** A FIFO that a writer fills with `bytes` random bytes once borg opens it. */
function feedingFifo(dir: string, bytes: number): { fifo: string; writer: Subprocess } {
  const fifo = join(dir, `stream-${Math.random().toString(36).slice(2)}`);
  expect(run(["mkfifo", fifo]).code).toBe(0);
  const writer = Bun.spawn(["sh", "-c", `exec head -c ${bytes} /dev/urandom > '${fifo}'`], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "ignore",
  });
  background.add(writer);
  return { fifo, writer };
}

async function midBackup(repo: string, p: Subprocess<"ignore", "pipe", "pipe">, before: number): Promise<void> {
  await waitUntil(
    () => p.exitCode !== null || (existsSync(join(repo, "lock.exclusive")) && dirBytes(join(repo, "data")) > before + 8_000_000),
    "the backup to be under way",
  );
  if (p.exitCode !== null) throw new Error(`burg pull ended early (${p.exitCode}): ${await new Response(p.stderr).text()}`);
}

// ------------------------------------------------------------------ tests

describe("burg pull over ssh to 127.0.0.1", () => {
  test(
    "init, create, list and a byte-identical extract of an encrypted repository; plain borg check agrees",
    async () => {
      const dir = tempDir("burg-pull-main-");
      const repo = join(dir, "repo");
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 41, files: 30, totalBytes: 5_000_000 });
      const env = { BORG_PASSPHRASE: PASS };
      ok(await pull(repo, ["init", "-e", "repokey"], { env }), "init");
      const first = ok(await pull(repo, ["create", "--stats", "::first", src], { env }), "create first");
      expect(first.stderr).toContain("Archive name: first");
      writeFileSync(join(src, "d0", "e0", "new-file"), "added between the backups\n");
      ok(await pull(repo, ["create", "::second", src], { env }), "create second");
      const list = ok(await pull(repo, ["list", "--short"], { env }), "list");
      expect(list.stdout.trim().split("\n")).toEqual(["first", "second"]);
      const out = join(dir, "out");
      mkdirSync(out);
      ok(await pull(repo, ["extract", "::second"], { env, extra: ["--remote-cwd", out] }), "extract");
      assertSameTree(src, join(out, src.slice(1)));
      expect(lockFiles(repo)).toEqual([]);
      const chk = plainCheck(repo, env);
      expect({ code: chk.code, err: chk.stderr }).toEqual({ code: 0, err: "" });
      expect(run([BURG, "check", repo]).code).toBe(0);
      // the journal names the host pulled from, for every session of the pull
      const log = run([BURG, "log", "--json", repo]).stdout.trim().split("\n").map((l) => JSON.parse(l));
      expect(log.map((r) => r.outcome)).toEqual(["committed", "committed", "committed", "read", "read"]);
      for (const r of log) {
        expect(r.command).toBe("pull");
        expect(r.who.pull_host).toMatch(/127\.0\.0\.1/);
      }
    },
    TIMEOUT,
  );

  test(
    "prune: refused under the default --permissions no-delete (nothing is lost), done under --permissions all",
    async () => {
      const dir = tempDir("burg-pull-prune-");
      const repo = join(dir, "repo");
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 42, files: 10, totalBytes: 1_000_000 });
      ok(await pull(repo, ["init", "-e", "none"]), "init");
      ok(await pull(repo, ["create", "::a", src]), "create a");
      ok(await pull(repo, ["create", "::b", src]), "create b");
      const refused = await pull(repo, ["prune", "--keep-last", "1"]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("Permission denied");
      expect(ok(await pull(repo, ["list", "--short"]), "list").stdout.trim().split("\n")).toEqual(["a", "b"]);
      expect(plainCheck(repo).code).toBe(0);
      ok(await pull(repo, ["prune", "--keep-last", "1"], { extra: ["--permissions", "all"] }), "prune with all");
      expect(ok(await pull(repo, ["list", "--short"]), "list").stdout.trim()).toBe("b");
      expect(plainCheck(repo).code).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "--keep-deleted: the client's prune and compact work (permissions default to all), and burg undelete brings the archives back",
    async () => {
      const dir = tempDir("burg-pull-keep-");
      const repo = join(dir, "repo");
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 43, files: 10, totalBytes: 1_000_000 });
      const keep = { extra: ["--keep-deleted", "1h"] };
      ok(await pull(repo, ["init", "-e", "none"], keep), "init");
      ok(await pull(repo, ["create", "::a", src], keep), "create a");
      makeSourceTree(join(src, "more"), { seed: 44, files: 5, totalBytes: 500_000 });
      ok(await pull(repo, ["create", "::b", src], keep), "create b");
      const since = new Date().toISOString();
      await Bun.sleep(1100);
      ok(await pull(repo, ["prune", "--keep-last", "1"], keep), "prune");
      ok(await pull(repo, ["compact"], keep), "compact");
      expect(ok(await pull(repo, ["list", "--short"], keep), "list").stdout.trim()).toBe("b");
      const undo = await runAsync([BURG, "undelete", repo, "--since", since, "--json"], { env: serverEnv() });
      expect(JSON.parse(undo.stdout).manifest_removed).toBe(true);
      ok(await pull(repo, ["check", "--repair"], { ...keep, env: { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES" } }), "check --repair");
      expect(ok(await pull(repo, ["list", "--short"], keep), "list").stdout.trim().split("\n").sort()).toEqual(["a", "b"]);
      expect(plainCheck(repo).code).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "every bridge on the client works: burg connect, socat, python3 (and nc when OpenBSD nc is there)",
    async () => {
      const dir = tempDir("burg-pull-bridges-");
      const repo = join(dir, "repo");
      ok(await pull(repo, ["init", "-e", "none"], { extra: ["--bridge", "burg"] }), "init through burg connect");
      for (const bridge of ["burg", "socat", "python3"]) {
        const r = await pull(repo, ["list"], { extra: ["--bridge", bridge, "--debug"] });
        expect({ bridge, code: r.code, err: r.code === 0 ? "" : r.stderr }).toEqual({ bridge, code: 0, err: "" });
      }
      const nc = Bun.which("nc");
      const ncUsable = nc !== null && /-N/.test(run([nc, "-h"]).stderr + run([nc, "-h"]).stdout);
      const r = await pull(repo, ["list"], { extra: ["--bridge", "nc"] });
      if (ncUsable) expect(r.code).toBe(0);
      else {
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("install netcat-openbsd (nc -N -U)");
      }
    },
    TIMEOUT,
  );

  test(
    "--sudo runs the client's borg through the real sudo, with the passphrase and settings borg needs",
    async () => {
      const sudo = Bun.which("sudo");
      if (!sudo) throw new Error("this test needs sudo on the client: install sudo (apt-get install sudo)");
      const probe = run([sudo, "-n", "-l", requireBorg()]);
      if (probe.code !== 0) throw new Error(`sudo must allow this user to run borg without a password:\n${probe.stderr}`);
      const dir = tempDir("burg-pull-sudo-");
      const repo = join(dir, "repo");
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 44, files: 8, totalBytes: 400_000 });
      const env = { BORG_PASSPHRASE: PASS };
      ok(await pull(repo, ["init", "-e", "repokey"], { env, extra: ["--sudo"] }), "init with --sudo");
      ok(await pull(repo, ["create", "::via-sudo", src], { env, extra: ["--sudo"] }), "create with --sudo");
      const list = ok(await pull(repo, ["list", "--short"], { env, extra: ["--sudo"] }), "list with --sudo");
      expect(list.stdout.trim()).toBe("via-sudo");
      expect(plainCheck(repo, env).code).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "borg's stdin is ours once the script is read: create from stdin and extract --stdout round-trip",
    async () => {
      const dir = tempDir("burg-pull-stdin-");
      const repo = join(dir, "repo");
      ok(await pull(repo, ["init", "-e", "none"]), "init");
      const data = new Uint8Array(3_000_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
      ok(await pull(repo, ["create", "::piped", "-"], { input: data }), "create from stdin");
      const p = Bun.spawn(pullArgv(repo, ["extract", "--stdout", "::piped"]), { env: serverEnv(), stdout: "pipe", stderr: "pipe" });
      const got = new Uint8Array(await new Response(p.stdout).arrayBuffer());
      expect(await p.exited).toBe(0);
      expect(Buffer.compare(Buffer.from(got), Buffer.from(data))).toBe(0);
    },
    TIMEOUT,
  );

  test(
    "the passphrase is in no command line and no environment of any process on the client during a backup",
    async () => {
      const dir = tempDir("burg-pull-secret-");
      const repo = join(dir, "repo");
      const env = { BORG_PASSPHRASE: PASS };
      ok(await pull(repo, ["init", "-e", "repokey"], { env }), "init");
      const needle = Buffer.from(PASS, "utf8");
      const { fifo, writer } = feedingFifo(dir, 60_000_000);
      const before = dirBytes(join(repo, "data"));
      const p = spawnPull(repo, ["create", "--read-special", "::secret", fifo], { env });
      const seen = new Set<string>();
      let scans = 0;
      let sawSsh = false;
      const leaks: string[] = [];
      const scan = () => {
        scans++;
        for (const pid of allPids()) {
          const client = isDescendant(pid, sshd.pid);
          // Here on the server only ssh is looked at: burg pull itself holds the passphrase by
          // design (it is where it lives), and a child caught between fork and exec still shows
          // burg's own command line and environment.
          const ours = isDescendant(pid, p.pid) && (cmdline(pid)[0] ?? "").split("/").pop() === "ssh";
          if (!client && !ours) continue;
          for (const file of ["cmdline", "environ"] as const) {
            const b = readProc(pid, file);
            if (b !== null && b.includes(needle)) leaks.push(`${client ? "client" : "server"} pid ${pid} ${file}: ${cmdline(pid).join(" ")}`);
          }
          if (client) seen.add(cmdline(pid).slice(0, 3).join(" "));
          if (ours) sawSsh = true;
        }
      };
      try {
        await waitUntil(() => {
          scan();
          return p.exitCode !== null || (existsSync(join(repo, "lock.exclusive")) && dirBytes(join(repo, "data")) > before + 8_000_000);
        }, "the backup to be under way");
        for (let i = 0; i < 20; i++) {
          scan();
          await Bun.sleep(25);
        }
      } finally {
        await writer.exited;
      }
      const code = await p.exited;
      expect({ code, err: code === 0 ? "" : await new Response(p.stderr).text() }).toEqual({ code: 0, err: "" });
      expect(leaks).toEqual([]);
      // The scans did see the client's borg at work.
      expect([...seen].some((c) => /borg/.test(c) && /create/.test(c))).toBe(true);
      expect(scans).toBeGreaterThan(20);
      expect(sawSsh).toBe(true);
      const list = ok(await pull(repo, ["list", "--short"], { env }), "list");
      expect(list.stdout.trim()).toBe("secret");
    },
    TIMEOUT,
  );

  test(
    "a pull interrupted mid-backup (SIGTERM) leaves no socket on either side and no lock; the next pull works",
    async () => {
      const dir = tempDir("burg-pull-term-");
      const repo = join(dir, "repo");
      ok(await pull(repo, ["init", "-e", "none"]), "init");
      const { fifo, writer } = feedingFifo(dir, 400_000_000);
      const before = dirBytes(join(repo, "data"));
      const p = spawnPull(repo, ["create", "--read-special", "::interrupted", fifo]);
      const [remoteSock, localSock] = await forwardingOf(p.pid);
      try {
        await midBackup(repo, p, before);
        expect(existsSync(remoteSock)).toBe(true);
        p.kill("SIGTERM");
        expect(await p.exited).toBe(143);
      } finally {
        writer.kill("SIGKILL");
        await writer.exited;
      }
      expect(existsSync(remoteSock)).toBe(false);
      expect(existsSync(dirname(localSock))).toBe(false);
      expect(lockFiles(repo)).toEqual([]);
      expect(plainCheck(repo).code).toBe(0);
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 43, files: 5, totalBytes: 200_000 });
      ok(await pull(repo, ["create", "::after", src]), "the next pull");
      expect(ok(await pull(repo, ["list", "--short"]), "list").stdout.trim()).toBe("after");
    },
    TIMEOUT,
  );

  test(
    "borg killed on the client mid-backup: exit code 2 with a message, socket removed, transaction rolled back",
    async () => {
      const dir = tempDir("burg-pull-kill-");
      const repo = join(dir, "repo");
      ok(await pull(repo, ["init", "-e", "none"]), "init");
      const { fifo, writer } = feedingFifo(dir, 400_000_000);
      const before = dirBytes(join(repo, "data"));
      const p = spawnPull(repo, ["create", "--read-special", "::killed", fifo]);
      const [remoteSock] = await forwardingOf(p.pid);
      try {
        await midBackup(repo, p, before);
        const borgPid = allPids().find((pid) => isDescendant(pid, sshd.pid) && cmdline(pid).some((a) => a.endsWith("borg")) && cmdline(pid).includes("create"));
        expect(borgPid).toBeDefined();
        process.kill(borgPid!, "SIGKILL");
        const code = await p.exited;
        const stderr = await new Response(p.stderr).text();
        expect({ code, stderr }).toMatchObject({ code: 2 });
        expect(stderr).toContain("was killed by signal 9");
      } finally {
        writer.kill("SIGKILL");
        await writer.exited;
      }
      expect(existsSync(remoteSock)).toBe(false);
      expect(lockFiles(repo)).toEqual([]);
      expect(plainCheck(repo).code).toBe(0);
      expect(ok(await pull(repo, ["list", "--short"]), "list").stdout.trim()).toBe("");
    },
    TIMEOUT,
  );

  describe("burg's own failures: exit code 2 and a message", () => {
    test(
      "ssh authentication failed",
      async () => {
        const r = await pull(join(tempDir("burg-pull-auth-"), "repo"), ["list"], { key: sshd.keys.unknown });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`burg pull: ssh authentication to ${sshd.destination} failed`);
      },
      TIMEOUT,
    );

    test(
      "forwarding refused by the client (authorized_keys says restrict)",
      async () => {
        const r = await pull(join(tempDir("burg-pull-fwd-"), "repo"), ["list"], { key: sshd.keys.restricted });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("could not forward burg's socket");
      },
      TIMEOUT,
    );

    test(
      "borg missing on the client",
      async () => {
        const r = await pull(join(tempDir("burg-pull-noborg-"), "repo"), ["list"], { extra: ["--remote-borg", "/nonexistent/borg"] });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("borg was not found on");
        expect(r.stderr).toContain("burg pull: borg is missing on");
      },
      TIMEOUT,
    );

    test("the ssh program cannot be run", async () => {
      const r = await pull(join(tempDir("burg-pull-nossh-"), "repo"), ["list"], { extra: ["--ssh", "/nonexistent/ssh"] });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("burg pull: cannot run /nonexistent/ssh");
    });

    test("a failing BORG_PASSCOMMAND here stops before anything runs there", async () => {
      const env = serverEnv({ BORG_PASSCOMMAND: "false" });
      delete env.BORG_PASSPHRASE; // it would win over the passcommand, as in borg
      const r = await runAsync(pullArgv(join(tempDir("burg-pull-passcmd-"), "repo"), ["list"]), { env });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("passcommand supplied in BORG_PASSCOMMAND failed");
    });

    test(
      "a repository other than --repo is not allowed",
      async () => {
        const dir = tempDir("burg-pull-path-");
        const repo = join(dir, "repo");
        ok(await pull(repo, ["init", "-e", "none"]), "init");
        const other = join(dir, "other");
        const r = await pull(repo, ["init", "-e", "none", `ssh://burg-pull${other}`]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`asked for a repository other than ${repo}`);
        expect(existsSync(other)).toBe(false);
      },
      TIMEOUT,
    );
  });

  test(
    "borgmatic: the wrapper in contrib/borgmatic with the argument lists borgmatic passes",
    async () => {
      const dir = tempDir("burg-pull-borgmatic-");
      const repo = join(dir, "repo");
      const src = join(dir, "src");
      makeSourceTree(src, { seed: 44, files: 12, totalBytes: 800_000 });
      writeFileSync(join(src, "skip.tmp"), "excluded by pattern\n");
      const bin = join(dir, "bin");
      mkdirSync(bin);
      cpSync(BURG, join(bin, "burg"));
      const wrapper = join(dir, "burg-pull-borg");
      cpSync(join(ROOT, "contrib/borgmatic/burg-pull-borg"), wrapper);
      chmodSync(wrapper, 0o755);
      const env = {
        PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        BURG_PULL_HOST: sshd.destination,
        BURG_PULL_REPO: repo,
        BURG_PULL_OPTIONS: [...sshd.sshOptions(), "--remote-env", `BORG_BASE_DIR=${clientHome}`, "--remote-burg", BURG, "--remote-borg", requireBorg()]
          .map((w) => `'${w}'`)
          .join(" "),
        BORG_PASSPHRASE: PASS,
      };
      const w = (args: string[]) => runAsync([wrapper, ...args], { env: serverEnv(env) });
      const version = ok(await w(["--version"]), "--version");
      expect(version.stdout).toMatch(/^borg 1\.\d+\.\d+/);
      ok(await w(["init", "--encryption", "repokey", repo]), "init");
      // borgmatic writes exclude patterns to a temporary file on the server and passes its name.
      const excludes = join(dir, "borgmatic-excludes");
      writeFileSync(excludes, "# written by borgmatic\n*.tmp\n");
      ok(await w(["create", "--exclude-from", excludes, "--stats", `${repo}::host-2026-01-01`, src]), "create");
      ok(await w(["prune", "--keep-daily", "7", "--glob-archives", "host-*", repo]), "prune");
      const list = JSON.parse(ok(await w(["list", "--json", repo]), "list --json").stdout);
      expect(list.archives.map((a: { name: string }) => a.name)).toEqual(["host-2026-01-01"]);
      const info = JSON.parse(ok(await w(["info", "--json", repo]), "info --json").stdout);
      expect(info.repository.location).toBe(`ssh://burg-pull${repo}`);
      const files = ok(await w(["list", "--short", `${repo}::host-2026-01-01`]), "list archive").stdout;
      expect(files).toContain("f1.bin");
      expect(files).not.toContain("skip.tmp");
      ok(await w(["check", repo]), "check");

      // The example configuration names the wrapper and the repository consistently.
      const config = Bun.YAML.parse(readFileSync(join(ROOT, "contrib/borgmatic/config-1.8.yaml"), "utf8")) as Record<string, unknown>;
      expect(config.local_path).toBe("/usr/local/bin/burg-pull-borg");
      const wrapperText = readFileSync(join(ROOT, "contrib/borgmatic/burg-pull-borg"), "utf8");
      const repoPath = (config.repositories as Array<{ path: string }>)[0]!.path;
      expect(wrapperText).toContain(`BURG_PULL_REPO:=${repoPath}`);
      const sectioned = Bun.YAML.parse(readFileSync(join(ROOT, "contrib/borgmatic/config.yaml"), "utf8")) as {
        location: { local_path: string; repositories: string[] };
      };
      expect(sectioned.location.local_path).toBe(config.local_path as string);
      expect(sectioned.location.repositories).toEqual([repoPath]);
    },
    TIMEOUT,
  );
});
