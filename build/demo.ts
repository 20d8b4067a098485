// `npm run demo`: burg's main job, for real and in a minute. A pull-mode backup over ssh to
// 127.0.0.1 into a fresh, encrypted repository under a temporary directory: a private sshd
// (test/support/sshd.ts: generated keys, loopback port, this user) stands in for the client
// machine; `burg pull` backs up a small data set there, lists the archive, extracts it back and
// compares, and `burg check` checks the repository here. Where no private sshd can run, the same
// backup goes through `burg socket` and `burg connect` locally instead, and the demo says so.
//
//   npm run demo            # builds dist/burg first
//   bun build/demo.ts --keep   # keep the temporary directory to look around
//   bun build/demo.ts --local  # the burg socket + burg connect variant, without sshd

import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { assertSameTree, makeSourceTree } from "../test/support/data.ts";
import { sshdUnavailable, startSshd, type PrivateSshd } from "../test/support/sshd.ts";

const root = resolve(import.meta.dir, "..");
const burg = join(root, "dist", "burg");
const keep = process.argv.includes("--keep");
const localOnly = process.argv.includes("--local");
const PASSPHRASE = "burg demo passphrase";

/** The private sshd runs but cannot be used (login or forwarding refused): use the local variant. */
class SshUnusable extends Error {}

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

function shown(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9@%+=:,./_{}-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}

/** Run a step with its output on our terminal; stop the demo when it fails. */
function step(argv: string[], env: Record<string, string>, opts: { cwd?: string; display?: string[] } = {}): void {
  process.stdout.write(`$ ${shown(opts.display ?? argv)}\n`);
  const r = Bun.spawnSync(argv, { env, cwd: opts.cwd, stdin: "ignore", stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`this step failed with exit code ${r.exitCode}`);
}

function requireTools(): void {
  if (!existsSync(burg)) throw new Error("dist/burg is missing: run `npm run build` (npm run demo does)");
  if (!Bun.which("borg")) throw new Error("borg is missing: install borgbackup (apt-get install borgbackup)");
}

async function viaSsh(dir: string, data: string, repo: string, baseEnv: Record<string, string>): Promise<void> {
  mkdirSync(join(dir, "sshd"));
  let sshd: PrivateSshd | null = null;
  try {
    sshd = await startSshd(join(dir, "sshd"));
    // Logging in and forwarding a socket must work before the demo relies on them.
    const probe = Bun.spawnSync(
      ["ssh", ...sshd.sshOptions(), "-T", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-R", `${join(dir, "probe-remote.sock")}:${join(dir, "probe-local.sock")}`, sshd.destination, "true"],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    if (probe.exitCode !== 0) {
      throw new SshUnusable(`ssh to the private sshd failed: ${probe.stderr.toString().trim() || `exit code ${probe.exitCode}`}`);
    }
    say(`A private sshd on 127.0.0.1:${sshd.port} plays the client machine (${sshd.destination})`);
    const clientHome = join(dir, "client-home");
    mkdirSync(clientHome);
    // What a real setup would put in ~/.ssh/config: the key and the host key of the client.
    const sshOpts = sshd.sshOptions();
    const pull = (borgArgs: string[], extra: string[] = []) => [
      burg,
      "pull",
      "--repo",
      repo,
      ...sshOpts,
      "--remote-env",
      `BORG_BASE_DIR=${clientHome}`,
      ...extra,
      sshd!.destination,
      "--",
      ...borgArgs,
    ];
    const short = (borgArgs: string[], extra: string[] = []) => ["burg", "pull", "--repo", repo, ...extra, sshd!.destination, "--", ...borgArgs];
    const env = { ...baseEnv, BORG_PASSPHRASE: PASSPHRASE, BORG_DISPLAY_PASSPHRASE: "no" };
    process.stdout.write(
      `(ssh options used below, shortened in the listing: ${shown(sshOpts)} --remote-env BORG_BASE_DIR=${clientHome})\n` +
        `BORG_PASSPHRASE is set here, on the backup server; burg pull sends it inside the ssh channel.\n`,
    );

    say("Create the repository (borg init runs on the client, the repository is here)");
    step(pull(["init", "--encryption", "repokey"]), env, { display: short(["init", "--encryption", "repokey"]) });

    say("Back up the client's data");
    const create = ["create", "--stats", "::demo-{now}", data];
    step(pull(create), env, { display: short(create) });

    say("List the repository");
    step(pull(["list"]), env, { display: short(["list"]) });

    say("Restore into a fresh directory on the client and compare");
    const out = join(dir, "restore");
    mkdirSync(out);
    const archive = `::${capture(pull(["list", "--short", "--last", "1"]), env).trim()}`;
    const extract = ["extract", archive];
    step(pull(extract, ["--remote-cwd", out]), env, { display: short(extract, ["--remote-cwd", out]) });
    assertSameTree(data, join(out, data.slice(1)));
    process.stdout.write("restored files are byte-identical to the originals\n");
  } finally {
    await sshd?.stop();
  }
}

/** Run a command and return its stdout (stderr goes to ours). */
function capture(argv: string[], env: Record<string, string>): string {
  const r = Bun.spawnSync(argv, { env, stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`${shown(argv.slice(0, 2))} failed with exit code ${r.exitCode}`);
  return r.stdout.toString();
}

async function viaLocalSocket(dir: string, data: string, repo: string, baseEnv: Record<string, string>): Promise<void> {
  const run = join(dir, "run");
  mkdirSync(run, { mode: 0o700 });
  const sock = join(run, "burg.sock");
  say(`burg socket on ${sock}, borg connecting with BORG_RSH="burg connect ${sock}"`);
  const server = Bun.spawn([burg, "socket", "--socket", sock, "--restrict-to-repository", repo, "--info"], {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    env: baseEnv,
  });
  try {
    while (!existsSync(sock)) {
      if (server.exitCode !== null) throw new Error("burg socket did not start");
      await Bun.sleep(20);
    }
    const env = { ...baseEnv, BORG_PASSPHRASE: PASSPHRASE, BORG_DISPLAY_PASSPHRASE: "no", BORG_RSH: `${burg} connect ${sock}` };
    const url = `ssh://burg${repo}`;
    say("Create the repository");
    step(["borg", "init", "--encryption", "repokey", url], env);
    say("Back up");
    step(["borg", "create", "--stats", `${url}::demo-{now}`, data], env);
    say("List the repository");
    step(["borg", "list", url], env);
    say("Restore and compare");
    const out = join(dir, "restore");
    mkdirSync(out);
    const archive = capture(["borg", "list", "--short", "--last", "1", url], env).trim();
    step(["borg", "extract", `${url}::${archive}`], env, { cwd: out });
    assertSameTree(data, join(out, data.slice(1)));
    process.stdout.write("restored files are byte-identical to the originals\n");
  } finally {
    server.kill("SIGTERM");
    await server.exited;
  }
}

async function main(): Promise<number> {
  requireTools();
  const dir = mkdtempSync(join(tmpdir(), "burg-demo-"));
  try {
    const repo = join(dir, "repo");
    const data = join(dir, "client-data");
    makeSourceTree(data, { seed: 2024, files: 40, totalBytes: 4_000_000 });
    cpSync(join(root, "README.md"), join(data, "README.md"));
    const home = join(dir, "server-home");
    mkdirSync(home);
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: home,
      BORG_BASE_DIR: home,
      LANG: process.env.LANG ?? "C.UTF-8",
    };
    process.stdout.write(`burg demo in ${dir}\nclient data: ${data}\nrepository:  ${repo}\n`);
    const why = localOnly ? "--local was given" : sshdUnavailable();
    let fallback: string | null = why;
    if (why === null) {
      try {
        await viaSsh(dir, data, repo, baseEnv);
      } catch (e) {
        if (!(e instanceof SshUnusable)) throw e;
        fallback = e.message;
      }
    }
    if (fallback !== null) {
      say(`No private sshd here (${fallback}): the same backup through burg socket and burg connect, locally`);
      await viaLocalSocket(dir, data, repo, baseEnv);
    }
    say("Check the repository on the server side");
    step([burg, "check", "-v", repo], { ...baseEnv }, { display: ["burg", "check", "-v", repo] });
    say("What every session did, from the journal kept with the repository, and the repository's status");
    step([burg, "log", repo], { ...baseEnv }, { display: ["burg", "log", repo] });
    step([burg, "status", repo], { ...baseEnv }, { display: ["burg", "status", repo] });
    say(
      fallback === null
        ? "Done: a pull-mode backup with one command, no socat, no AcceptEnv, no wrapper scripts"
        : "Done (locally through burg socket and burg connect; with an sshd, burg pull does the same over ssh)",
    );
    return 0;
  } catch (e) {
    process.stderr.write(`\ndemo failed: ${(e as Error).message}\n`);
    return 1;
  } finally {
    if (keep) process.stdout.write(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
