// systemd socket activation (sd_listen_fds(3)): which listening sockets the service manager
// passed to this process.
//
// systemd (and compatible launchers) set LISTEN_PID to the pid of the process the sockets are
// for and LISTEN_FDS to their count; the sockets are file descriptors 3, 4, ... The variables
// are only valid when LISTEN_PID is our own pid: a child that inherited them must not take
// sockets that were meant for its parent. Like sd_listen_fds(1) we remove them from the
// environment once taken, so processes we start never see them.
//
// Accept=yes units need nothing from here: systemd accepts the connection itself and starts
// `burg serve` with the connection as stdin and stdout.

import { fstatSync } from "node:fs";
import { UsageError } from "../errors.ts";

/** SD_LISTEN_FDS_START */
export const LISTEN_FDS_START = 3;

export type Env = Record<string, string | undefined>;

/**
 * The passed file descriptors, or null when the environment passes none to this process.
 * Throws UsageError when the variables are meant for us but malformed.
 */
export function listenFds(env: Env, pid: number): number[] | null {
  const pidText = env.LISTEN_PID;
  const countText = env.LISTEN_FDS;
  if (pidText === undefined || countText === undefined) return null;
  if (!/^[0-9]+$/.test(pidText.trim()) || parseInt(pidText, 10) !== pid) return null;
  if (!/^[0-9]+$/.test(countText.trim())) throw new UsageError(`LISTEN_FDS is not a number: '${countText}'`);
  const count = parseInt(countText, 10);
  if (count === 0) return null;
  if (count > 1024) throw new UsageError(`LISTEN_FDS is implausibly large: ${count}`);
  return Array.from({ length: count }, (_, i) => LISTEN_FDS_START + i);
}

/** sd_listen_fds(unset_environment=1): the variables are consumed. */
export function unsetListenEnv(env: Env): void {
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
}

/** Throws UsageError unless every fd is an open socket (a unit with ListenStream= passes those). */
export function checkListenFds(fds: number[]): void {
  for (const fd of fds) {
    let isSocket: boolean;
    try {
      isSocket = fstatSync(fd).isSocket();
    } catch (e) {
      throw new UsageError(`LISTEN_FDS names fd ${fd}, which is not open: ${(e as Error).message}`);
    }
    if (!isSocket) throw new UsageError(`LISTEN_FDS names fd ${fd}, which is not a socket (use ListenStream= with a path)`);
  }
}
