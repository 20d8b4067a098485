// BORG_RSH wrappers that stand in for ssh in interop tests, so the real borg client starts
// `burg serve` (or `borg serve`) as it would on a remote host, without an sshd:
// - plain: drops the host argument and runs the rest (`<remote-path> serve --info ...`);
// - forced: like sshd with an authorized_keys command="...": it puts the client's command
//   into SSH_ORIGINAL_COMMAND (joined with spaces, as sshd does) and runs the fixed command
//   through /bin/sh -c instead.
// Repository URLs for these look like ssh://fakehost/abs/path/to/repo.

import { join } from "node:path";
import { BURG, borgEnv, requireBorg, requireBurg, runAsync, writeExecutable, type RunResult } from "./env.ts";

/** Writes the plain wrapper into `dir` and returns its path. */
export function fakeSsh(dir: string): string {
  return writeExecutable(join(dir, "fake-ssh"), '#!/bin/sh\nshift\nexec "$@"\n');
}

/** Writes a forced-command wrapper running `command` (a shell command line) into `dir`. */
export function forcedSsh(dir: string, command: string, name = "forced-ssh"): string {
  const quoted = `'${command.replace(/'/g, `'\\''`)}'`;
  return writeExecutable(
    join(dir, name),
    `#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND="$*"\nexport SSH_ORIGINAL_COMMAND\nexec /bin/sh -c ${quoted}\n`,
  );
}

export interface RemoteBorg {
  /** Runs the borg client with BORG_RSH=rsh and BORG_REMOTE_PATH=remotePath. */
  run(args: string[], opts?: { env?: Record<string, string>; input?: string; cwd?: string }): Promise<RunResult>;
  /** The environment `run` gives borg (to spawn it some other way). */
  env(extra?: Record<string, string>): Record<string, string>;
  url(repoPath: string, archive?: string): string;
}

/**
 * A borg client talking to `remotePath` (dist/burg by default; "borg" for the reference) through
 * the wrapper `rsh`, with its config and cache under `home`.
 */
export function remoteBorg(home: string, rsh: string, remotePath: string = BURG): RemoteBorg {
  const borg = requireBorg();
  if (remotePath === BURG) requireBurg();
  const env = (extra: Record<string, string> = {}) => borgEnv(home, { BORG_RSH: rsh, BORG_REMOTE_PATH: remotePath, ...extra });
  return {
    run: (args, opts = {}) => runAsync([borg, ...args], { env: env(opts.env), input: opts.input, cwd: opts.cwd }),
    env,
    url: (repoPath, archive) => `ssh://fakehost${repoPath}${archive === undefined ? "" : `::${archive}`}`,
  };
}
