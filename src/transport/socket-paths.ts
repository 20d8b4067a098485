// Where `burg socket` puts its socket and PID file by default, and the small rules about UNIX
// socket paths (length limit, PID file name, mode parsing). Pure functions of the environment,
// so they are unit-tested without touching the file system.
//
// The defaults follow borg 2's `borg serve --socket` convention (helpers/fs.py
// get_runtime_dir/get_socket_filename in borg's history): the runtime directory is
// BORG_RUNTIME_DIR, else $BORG_BASE_DIR/.cache/borg when BORG_BASE_DIR is set, else the XDG
// runtime directory plus "borg" ($XDG_RUNTIME_DIR/borg, or /run/user/UID/borg as platformdirs
// has it); the socket is "borg.sock" in it and the PID file is the socket path with ".sock"
// replaced by ".pid" (or ".pid" appended).

import { isAbsolute, join, resolve } from "node:path";
import { UsageError } from "../errors.ts";

export type Env = Record<string, string | undefined>;

export const DEFAULT_SOCKET_NAME = "borg.sock";

/** sun_path is 108 bytes on Linux, including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

export function runtimeDir(env: Env, uid: number): string {
  if (env.BORG_RUNTIME_DIR) return env.BORG_RUNTIME_DIR;
  if (env.BORG_BASE_DIR) return join(env.BORG_BASE_DIR, ".cache", "borg");
  // platformdirs ignores a relative XDG_RUNTIME_DIR (the XDG spec says it must be absolute).
  const xdg = env.XDG_RUNTIME_DIR?.trim();
  const base = xdg && isAbsolute(xdg) ? xdg : `/run/user/${uid}`;
  return join(base, "borg");
}

export function defaultSocketPath(env: Env, uid: number): string {
  return join(runtimeDir(env, uid), DEFAULT_SOCKET_NAME);
}

/** The PID file that belongs to a socket path: "x.sock" -> "x.pid", anything else -> "x.pid" appended. */
export function pidFileFor(socketPath: string): string {
  return socketPath.endsWith(".sock") ? socketPath.slice(0, -".sock".length) + ".pid" : socketPath + ".pid";
}

/** An absolute socket path that fits into sockaddr_un; throws UsageError otherwise. */
export function checkSocketPath(path: string, cwd: string): string {
  if (path === "") throw new UsageError("the socket path is empty");
  if (path.includes("\0")) throw new UsageError("the socket path contains a NUL byte");
  const abs = resolve(cwd, path);
  const bytes = Buffer.byteLength(abs);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new UsageError(
      `socket path ${abs} is ${bytes} bytes long; UNIX socket paths may have at most ${MAX_SOCKET_PATH_BYTES}. Use a shorter --socket path.`,
    );
  }
  return abs;
}

/** An octal file mode such as "0600", "660" or "0o660"; only permission bits are allowed. */
export function parseMode(text: string): number {
  const t = text.trim().replace(/^0o/i, "");
  if (!/^[0-7]{1,4}$/.test(t)) throw new UsageError(`argument --mode: invalid octal mode: '${text}'`);
  const mode = parseInt(t, 8);
  if (mode > 0o777) throw new UsageError(`argument --mode: only permission bits (at most 0777) are allowed: '${text}'`);
  if ((mode & 0o600) !== 0o600) {
    throw new UsageError(`argument --mode: the owner needs read and write access to the socket: '${text}'`);
  }
  return mode;
}

/** Format a mode the way the options take it. */
export function formatMode(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}
