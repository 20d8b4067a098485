// The ssh command line of `burg pull`, built as data (no spawning here, see process.ts): one
// connection to the client that forwards burg's private socket to a fresh socket path on the
// client (-R remote_socket:local_socket) and runs the remote script there.
//
// Option order matters because ssh keeps the first value it sees for each option:
// 1. options burg relies on and the user may not change: -T (no tty: stdin carries the script
//    and the passphrase, a tty would echo them), ExitOnForwardFailure=yes (no forwarding, no
//    backup), StreamLocalBindUnlink=yes (replace a leftover socket where sshd honours it; for -R
//    that is the client's sshd_config, so burg also uses a fresh path and removes it itself);
// 2. the user's -o/-p/-i/-F/-J;
// 3. defaults the user may override: BatchMode=yes (never hang on a prompt), keepalives so a
//    dead client ends the session (and its lock) in about a minute.

export interface SshTarget {
  /** [user@]host as given. */
  destination: string;
  port?: string;
  identities: string[];
  configFile?: string;
  jump?: string;
  /** -o values, e.g. "UserKnownHostsFile=/x". */
  options: string[];
}

export interface SshCommand {
  /** The ssh program. */
  ssh: string;
  target: SshTarget;
  /** The forwarded socket's path on the client. */
  remoteSocket: string;
  /** burg's private socket on this machine. */
  localSocket: string;
  /** The command the client's shell runs. */
  remoteCommand: string;
}

export const FIXED_OPTIONS = ["ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes"];
export const DEFAULT_OPTIONS = ["BatchMode=yes", "ServerAliveInterval=15", "ServerAliveCountMax=4"];

/** A destination ssh would not mistake for an option; throws with a message otherwise. */
export function checkDestination(destination: string): string {
  if (destination === "" || destination.startsWith("-")) {
    throw new Error(`not a valid ssh destination: '${destination}'`);
  }
  if (/[\s]/.test(destination)) throw new Error(`an ssh destination cannot contain white space: '${destination}'`);
  return destination;
}

export function sshArgv(cmd: SshCommand): string[] {
  const t = cmd.target;
  const argv = [cmd.ssh, "-T"];
  for (const o of FIXED_OPTIONS) argv.push("-o", o);
  if (t.configFile !== undefined) argv.push("-F", t.configFile);
  if (t.port !== undefined) argv.push("-p", t.port);
  for (const i of t.identities) argv.push("-i", i);
  if (t.jump !== undefined) argv.push("-J", t.jump);
  for (const o of t.options) argv.push("-o", o);
  for (const o of DEFAULT_OPTIONS) argv.push("-o", o);
  argv.push("-R", `${cmd.remoteSocket}:${cmd.localSocket}`);
  argv.push("--", checkDestination(t.destination), cmd.remoteCommand);
  return argv;
}
