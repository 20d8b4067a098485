// What `burg pull` runs on the client, built as text (pure; process.ts sends it).
//
// The command line ssh hands to the client's login shell is fixed and harmless in any shell
// (sh, bash, zsh, fish, csh): it starts /bin/sh, which reads a byte count and then exactly that
// many bytes from stdin (dd bs=1 never reads ahead) and evaluates them. Everything variable
// (paths, borg's arguments, the passphrase) therefore travels inside the ssh channel, never on
// a command line, and needs no AcceptEnv on the client. After the script, stdin is the ssh
// channel again and belongs to borg.
//
// The script:
// - removes the forwarded socket on every exit (trap), as sshd does not remove it;
// - checks that the socket arrived (else: forwarding refused), finds borg (else: exit 98), and
//   picks a bridge from borg to the socket: `burg connect`, socat, OpenBSD nc (-N -U), or an
//   inline python3 bridge (else: exit 97 naming what to install);
// - runs borg with BORG_REPO and BORG_RSH pointing at the socket. The passphrase, when there is
//   one, is served once through a FIFO in a private directory and read by
//   BORG_PASSCOMMAND="cat FIFO": it is never in an environment or a command line on the client
//   (the writer is a forked shell running the printf builtin). This also works through sudo,
//   which closes inherited descriptors and resets the environment (the variables borg needs are
//   given to sudo as VAR=value, which sudoers must allow with SETENV).
//
// Exit status: borg's own, or one of the codes below for burg's failures on the client.

/** Exit statuses of the remote script for failures burg reports itself. */
export const REMOTE_EXIT = {
  /** Setting up the passphrase FIFO failed. */
  setup: 95,
  /** The forwarded socket is not there: the client's sshd refused the forwarding. */
  noSocket: 96,
  /** No program on the client can connect borg to the socket. */
  noBridge: 97,
  /** borg is not installed (or not at --remote-borg) on the client. */
  noBorg: 98,
  /** sudo would ask for a password or does not allow borg. */
  sudoRefused: 99,
} as const;

export type Bridge = "burg" | "socat" | "nc" | "python3";
export const BRIDGES: readonly Bridge[] = ["burg", "socat", "nc", "python3"];

export function isBridge(s: string): s is Bridge {
  return (BRIDGES as readonly string[]).includes(s);
}

export interface RemoteScriptOptions {
  /** The forwarded socket on the client. */
  socket: string;
  /** The repository URL borg uses (BORG_REPO). */
  repoUrl: string;
  /** borg's arguments. */
  borgArgs: string[];
  /** The borg program on the client ("borg": looked up in PATH). */
  borg: string;
  /** The burg program on the client, for `burg connect` ("burg": looked up in PATH). */
  burg: string;
  /** Bridges to try, in order. */
  bridges: readonly Bridge[];
  /** Run borg as root through `sudo -n`. */
  sudo: boolean;
  /** Directory to run borg in (null: the login directory). */
  cwd: string | null;
  /** Non-secret variables for borg. */
  env: Array<[string, string]>;
  /** The passphrase to serve to borg, or null for none. */
  passphrase: string | null;
}

/** POSIX sh single-quoting. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** python's shlex.quote, for BORG_RSH (borg splits it with shlex.split). */
export function shlexQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9@%+=:,./_-]+$/.test(s)) return s;
  return shQuote(s);
}

/** The command the client's login shell runs; it reads the script from stdin. */
export const REMOTE_COMMAND = `exec /bin/sh -c 'read -r n && eval "$(dd bs=1 count="$n" 2>/dev/null)"'`;

// A bridge in Python for clients that have nothing else: stdin to the socket (then shut down
// our write side), the socket to stdout until the server closes. No single quotes inside: the
// whole program is one shlex word.
const PYTHON_BRIDGE = [
  "import os, socket, sys, threading",
  "s = socket.socket(socket.AF_UNIX)",
  "s.connect(sys.argv[1])",
  "def up():",
  "    try:",
  "        while True:",
  "            d = os.read(0, 65536)",
  "            if not d:",
  "                break",
  "            s.sendall(d)",
  "        s.shutdown(socket.SHUT_WR)",
  "    except OSError:",
  "        pass",
  "threading.Thread(target=up, daemon=True).start()",
  "while True:",
  "    d = s.recv(65536)",
  "    if not d:",
  "        break",
  "    v = memoryview(d)",
  "    while v:",
  "        v = v[os.write(1, v):]",
].join("\n");

/** BORG_RSH for each bridge (borg appends host and serve arguments; every bridge ignores them). */
export function bridgeRsh(bridge: Bridge, socket: string, burgPath: string): string {
  const sock = shlexQuote(socket);
  switch (bridge) {
    case "burg":
      return `${shlexQuote(burgPath)} connect ${sock}`;
    // socat and nc would choke on the arguments borg appends: sh -c drops them ($0 is the socket).
    case "socat":
      return `sh -c ${shlexQuote('exec socat STDIO "UNIX-CONNECT:$0"')} ${sock}`;
    case "nc":
      return `sh -c ${shlexQuote('exec nc -N -U "$0"')} ${sock}`;
    case "python3":
      return `python3 -c ${shlexQuote(PYTHON_BRIDGE)} ${sock}`;
  }
}

function detectBridge(bridge: Bridge, socket: string, burg: string): string {
  switch (bridge) {
    case "burg":
      // The path found in PATH, when it needs no quoting for shlex; else the name as given.
      return [
        `if [ -z "$rsh" ] && p=$(command -v ${shQuote(burg)} 2>/dev/null) && [ -n "$p" ]; then`,
        `  case "$p" in *[!A-Za-z0-9@%+=:,./_-]*) rsh=${shQuote(bridgeRsh("burg", socket, burg))} ;; *) rsh="$p connect ${shlexQuote(socket)}" ;; esac`,
        "fi",
      ].join("\n");
    case "socat":
      return `if [ -z "$rsh" ] && command -v socat >/dev/null 2>&1; then rsh=${shQuote(bridgeRsh("socat", socket, burg))}; fi`;
    case "nc":
      // Only OpenBSD's nc has -U (UNIX sockets) and -N (shut down the socket at end of input;
      // without it the session would never see borg's EOF).
      return [
        `if [ -z "$rsh" ] && command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -e '-U' && nc -h 2>&1 | grep -q -e '-N'; then`,
        `  rsh=${shQuote(bridgeRsh("nc", socket, burg))}`,
        "fi",
      ].join("\n");
    case "python3":
      return `if [ -z "$rsh" ] && command -v python3 >/dev/null 2>&1; then rsh=${shQuote(bridgeRsh("python3", socket, burg))}; fi`;
  }
}

const INSTALL_HINT: Record<Bridge, string> = {
  burg: "burg",
  socat: "socat",
  nc: "netcat-openbsd (nc -N -U)",
  python3: "python3",
};

export function remoteScript(o: RemoteScriptOptions): string {
  const lines: string[] = [];
  const L = (...l: string[]) => lines.push(...l);
  L(
    `sock=${shQuote(o.socket)}`,
    "tmp=",
    "writer=",
    `cleanup() { rm -f "$sock"; if [ -n "$writer" ]; then kill "$writer" 2>/dev/null; fi; if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }`,
    "trap cleanup EXIT",
    "trap 'exit 129' HUP",
    "trap 'exit 130' INT",
    "trap 'exit 143' TERM",
    `say() { printf 'burg pull: %s\\n' "$*" >&2; }`,
    `host=$(uname -n 2>/dev/null || echo client)`,
    `if [ ! -S "$sock" ]; then say "the forwarded socket $sock did not appear on $host: its sshd refused the forwarding (sshd_config: AllowStreamLocalForwarding, AllowTcpForwarding; authorized_keys: 'restrict' without 'port-forwarding')"; exit ${REMOTE_EXIT.noSocket}; fi`,
  );
  if (o.cwd !== null) {
    L(`dir=${shQuote(o.cwd)}`, `cd "$dir" || { say "cannot change to directory $dir on $host"; exit ${REMOTE_EXIT.setup}; }`);
  }
  L(
    `borg=${shQuote(o.borg)}`,
    `if ! p=$(command -v "$borg" 2>/dev/null) || [ -z "$p" ]; then say "borg was not found on $host ($borg; PATH=$PATH): install borgbackup there, or give its path with --remote-borg"; exit ${REMOTE_EXIT.noBorg}; fi`,
    `borg=$p`,
    "rsh=",
  );
  for (const b of o.bridges) L(detectBridge(b, o.socket, o.burg));
  const needs = o.bridges.map((b) => INSTALL_HINT[b]).join(", or ");
  L(
    `if [ -z "$rsh" ]; then say "nothing on $host can connect borg to the forwarded socket: install ${needs}"; exit ${REMOTE_EXIT.noBridge}; fi`,
  );
  const vars: Array<[string, string]> = [
    ["BORG_REPO", o.repoUrl],
    ...o.env,
  ];
  // Variables assigned here and handed to borg (export, or VAR=value words for sudo).
  L(`set -- ${o.borgArgs.map(shQuote).join(" ")}`);
  if (o.passphrase !== null) {
    L(
      `pw=${shQuote(o.passphrase)}`,
      `tmp=$(mktemp -d "\${TMPDIR:-/tmp}/burg-pull.XXXXXXXX") && mkfifo -m 0600 "$tmp/pass" || { say "cannot create a private FIFO for the passphrase on $host"; exit ${REMOTE_EXIT.setup}; }`,
      // The writer blocks until borg's passcommand opens the FIFO; it is killed at exit if
      // borg never asks (unencrypted repository).
      `( printf '%s\\n' "$pw" > "$tmp/pass" ) </dev/null 2>/dev/null &`,
      "writer=$!",
      "pw=",
    );
  }
  if (o.sudo) {
    const words = vars.map(([k, v]) => shQuote(`${k}=${v}`));
    words.push(`"BORG_RSH=$rsh"`);
    if (o.passphrase !== null) words.push(`"BORG_PASSCOMMAND=cat $tmp/pass"`);
    L(
      `if ! sudo -n -l "$borg" >/dev/null 2>&1; then say "sudo on $host does not let $(id -un) run $borg without a password (sudoers: NOPASSWD:SETENV: $borg)"; exit ${REMOTE_EXIT.sudoRefused}; fi`,
      `sudo -n ${words.join(" ")} "$borg" "$@"`,
    );
  } else {
    for (const [k, v] of vars) L(`${k}=${shQuote(v)}; export ${k}`);
    L(`BORG_RSH=$rsh; export BORG_RSH`);
    if (o.passphrase !== null) {
      // Ours must win: borg prefers BORG_PASSPHRASE and the FD variant to the passcommand.
      L("unset BORG_PASSPHRASE BORG_PASSPHRASE_FD", `BORG_PASSCOMMAND="cat $tmp/pass"; export BORG_PASSCOMMAND`);
    }
    L(`"$borg" "$@"`);
  }
  L("exit $?");
  return lines.join("\n") + "\n";
}

/** What burg writes to ssh's stdin before anything else: the byte count line, then the script. */
export function scriptPreamble(script: string): Uint8Array {
  const body = new TextEncoder().encode(script);
  const head = new TextEncoder().encode(`${body.length}\n`);
  const out = new Uint8Array(head.length + body.length);
  out.set(head, 0);
  out.set(body, head.length);
  return out;
}
