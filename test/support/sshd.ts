// A private sshd on 127.0.0.1 for pull tests and the demo: generated host and user keys, an
// authorized_keys file of its own, a free loopback port, running as the current user (root in
// CI, where it also needs sshd's privilege separation directory /run/sshd).
//
// Three user keys: `ok` may log in and forward sockets; `restricted` may log in, but its
// authorized_keys line says `restrict` (no forwarding); `unknown` is not authorized at all.
//
// No bun:test imports here: the demo (build/demo.ts) uses this too. Callers stop() it; tests
// register that in afterAll.

import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const SSHD = "/usr/sbin/sshd";

export interface PrivateSshd {
  port: number;
  user: string;
  /** user@127.0.0.1 */
  destination: string;
  dir: string;
  keys: { ok: string; restricted: string; unknown: string };
  knownHosts: string;
  /** ssh options (as burg pull takes them) for logging in with `key`; nothing from ~/.ssh is used. */
  sshOptions(key?: string): string[];
  /**
   * A new key whose authorized_keys line forces `command` (with `restrict`); returns the private
   * key's path.
   */
  addForcedKey(name: string, command: string): string;
  /** sshd's own log (-E). */
  log(): string;
  pid: number;
  stop(): Promise<void>;
}

function sh(argv: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

/** Why a private sshd cannot run here, or null when it can. */
export function sshdUnavailable(): string | null {
  if (!existsSync(SSHD)) return `${SSHD} is missing (install openssh-server)`;
  if (!Bun.which("ssh")) return "ssh is missing (install openssh-client)";
  if (!Bun.which("ssh-keygen")) return "ssh-keygen is missing (install openssh-client)";
  // sshd runs the remote command with the user's login shell.
  const name = sh(["id", "-un"]).out.trim();
  const entry = sh(["getent", "passwd", name]).out.trim().split(":");
  const shell = entry.length >= 7 ? entry[6]! : "";
  if (/(^|\/)(nologin|false)$/.test(shell)) return `the login shell of ${name} is ${shell}, which runs no commands`;
  if (process.getuid?.() === 0 && !existsSync("/run/sshd")) {
    // sshd running as root chroots its unprivileged child here.
    try {
      mkdirSync("/run/sshd", { mode: 0o755 });
    } catch (e) {
      return `sshd as root needs /run/sshd, which cannot be created: ${(e as Error).message}`;
    }
  }
  return null;
}

async function freePort(): Promise<number> {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

function keygen(path: string, type = "ed25519", comment = "burg-test"): string {
  const r = sh(["ssh-keygen", "-q", "-t", type, "-N", "", "-C", comment, "-f", path]);
  if (r.code !== 0) throw new Error(`ssh-keygen failed: ${r.err}`);
  return readFileSync(`${path}.pub`, "utf8").trim();
}

/** Start a private sshd with its files under `dir` (which must exist). */
export async function startSshd(dir: string, opts: { extraConfig?: string[] } = {}): Promise<PrivateSshd> {
  const why = sshdUnavailable();
  if (why !== null) throw new Error(`cannot start a private sshd: ${why}`);
  const hostKey = join(dir, "ssh_host_ed25519_key");
  const hostPub = keygen(hostKey);
  const keys = { ok: join(dir, "id_ok"), restricted: join(dir, "id_restricted"), unknown: join(dir, "id_unknown") };
  const okPub = keygen(keys.ok);
  const restrictedPub = keygen(keys.restricted);
  keygen(keys.unknown);
  const authorized = join(dir, "authorized_keys");
  writeFileSync(authorized, `${okPub}\nrestrict ${restrictedPub}\n`, { mode: 0o600 });
  // os.userInfo() may not know the name (Bun reports "unknown" in some containers); id(1) does.
  const user = sh(["id", "-un"]).out.trim();
  if (user === "") throw new Error("cannot tell the current user's name (id -un)");
  const config = join(dir, "sshd_config");

  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${authorized}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        // Keys and config live in a temp dir: do not insist on its ownership and modes.
        "StrictModes no",
        "PermitRootLogin yes",
        "AllowStreamLocalForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "PermitUserEnvironment no",
        "LogLevel VERBOSE",
        "MaxStartups 100:30:200",
        // sshd runs commands with the user's login shell, and Debian's bash sources ~/.bashrc
        // when started by sshd at shell level 1: whatever the test machine's .bashrc does
        // (pyenv's rehash, racing itself over concurrent logins, printing on stderr) would
        // become part of every session. At level 2 bash runs no start-up files.
        "SetEnv SHLVL=1",
        ...(opts.extraConfig ?? []),
        "",
      ].join("\n"),
    );
    const proc: Subprocess<"ignore", "ignore", "pipe"> = Bun.spawn([SSHD, "-D", "-e", "-f", config], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    let text = "";
    const reader = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of proc.stderr) {
        text += dec.decode(chunk, { stream: true });
      }
    })();
    // Ready when it says so; a port taken in the meantime means another try.
    while (!/Server listening on 127\.0\.0\.1 port/.test(text)) {
      if (proc.exitCode !== null || proc.signalCode !== null) break;
      await Bun.sleep(10);
    }
    if (proc.exitCode !== null || proc.signalCode !== null) {
      await reader;
      if (/Address already in use/.test(text) && attempt < 5) continue;
      throw new Error(`sshd did not start:\n${text}`);
    }
    writeFileSync(join(dir, "known_hosts"), `[127.0.0.1]:${port} ${hostPub}\n`);
    const knownHosts = join(dir, "known_hosts");
    return {
      port,
      user,
      destination: `${user}@127.0.0.1`,
      dir,
      keys,
      knownHosts,
      pid: proc.pid,
      sshOptions: (key = keys.ok) => [
        "-F",
        "/dev/null",
        "-p",
        String(port),
        "-i",
        key,
        "-o",
        `UserKnownHostsFile=${knownHosts}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
      ],
      addForcedKey(name, command) {
        const key = join(dir, `id_forced_${name}`);
        const pub = keygen(key, "ed25519", name);
        appendFileSync(authorized, `command="${command}",restrict ${pub}\n`);
        return key;
      },
      log: () => text,
      async stop() {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
        await proc.exited;
        await reader;
      },
    };
  }
}
