// The forced command's side of a hand-over (protocol in hand-over.ts): connect to the daemon,
// check who it is, pass stdin/stdout/stderr with the command line and environment, and wait
// for the session's exit status.
//
// Any trouble before the daemon took the session (no socket, nobody listening, a daemon of
// another user, a refusal, a daemon that does not answer within ACCEPT_TIMEOUT_MS) is reported
// as "not handed over" with the reason, and the caller serves the session itself: a client
// is never turned away because of the daemon. Once the daemon took it, the command only waits;
// SIGTERM/SIGHUP close the control channel (the daemon aborts the session, as burg serve does on
// those signals) and the command exits with 128 + the signal number.

import type { Socket } from "bun";
import { writeSync } from "node:fs";
import { execWithStdin, peerCredentials } from "../util/libc.ts";
import { closeFd, connectUnix, sendWithFds, UnixSocketError } from "../util/unix-socket.ts";
import { ControlReader, encodeControl, encodeHandOver, type HandOverPayload } from "./hand-over.ts";

export const ACCEPT_TIMEOUT_MS = 30_000;

/**
 * What waits for the exit status once the daemon took the session: a shell reading the
 * control channel, so that an ssh session served by the daemon costs a process of a megabyte
 * rather than a whole Bun runtime. It behaves as this process would: exits with the status the
 * daemon reports, exits with 2 and says why when the daemon goes away, dies of SIGTERM/SIGHUP
 * (closing the channel, which makes the daemon abort the session), ignores SIGINT unless stdin
 * was a terminal. The channel is its stdin; $1 is "tty" when our stdin was a terminal, $2 the
 * socket path.
 */
const WAIT_SCRIPT = [
  `[ "$1" = tty ] || trap '' INT`,
  `while IFS= read -r l; do`,
  `  case $l in *'"exit":'*) n=\${l#*'"exit":'}; n=\${n%%[!0-9]*}; exit "\${n:-2}";; esac`,
  `done`,
  `printf '%s\\n' '$LOG ERROR borg.repository Remote: the daemon at '"$2"' went away before the session ended; its session was cut off' >&2`,
  `exit 2`,
].join("\n");

export type HandOverResult =
  | {
      handedOver: true;
      exitCode: number;
      /** Set when the daemon went away before it reported the session's end. */
      lost?: string;
    }
  | {
      handedOver: false;
      reason: string;
      /**
       * How loudly to log it: "debug" for no daemon at all (the normal case without one),
       * "info" for a refusal, "warning" for what may be an attack or a broken daemon.
       */
      level: "debug" | "info" | "warning";
    };

type Ctl = { onData(socket: Socket<Ctl>, chunk: Uint8Array): void; onClose(): void };

const connectFd = Bun.connect as unknown as (options: {
  fd: number;
  socket: {
    data(socket: Socket<Ctl>, chunk: Uint8Array): void;
    close(socket: Socket<Ctl>): void;
    end(socket: Socket<Ctl>): void;
    error(socket: Socket<Ctl>, e: Error): void;
  };
  data: Ctl;
}) => Promise<Socket<Ctl>>;

export interface HandOverOptions {
  /** Our uid: the daemon must have it, or be root. */
  uid: number;
  /** Descriptors to pass: stdin, stdout, stderr. */
  fds?: [number, number, number];
  acceptTimeoutMs?: number;
  /** Called with a stop function once the daemon has taken the session (signal handling). */
  onRunning?(abort: (exitCode: number) => void): void;
  /**
   * A POSIX shell to wait in once the daemon took the session (see WAIT_SCRIPT); null, or a
   * shell that cannot be started, makes this process wait itself.
   */
  waiter?: string | null;
}

export async function handOverToDaemon(path: string, payload: HandOverPayload, opts: HandOverOptions): Promise<HandOverResult> {
  let fd: number;
  try {
    fd = connectUnix(path);
  } catch (e) {
    const code = e instanceof UnixSocketError ? e.code : "";
    return { handedOver: false, reason: `no daemon at ${path} (${(e as Error).message})`, level: code === "ENOENT" || code === "ECONNREFUSED" ? "debug" : "warning" };
  }
  const peer = peerCredentials(fd);
  if (peer === null || (peer.uid !== opts.uid && peer.uid !== 0)) {
    closeFd(fd);
    return {
      handedOver: false,
      reason: peer === null ? `cannot tell who listens at ${path} (SO_PEERCRED failed)` : `the daemon at ${path} runs as uid ${peer.uid}, not as us (uid ${opts.uid}) or root`,
      level: "warning",
    };
  }
  try {
    sendWithFds(fd, encodeHandOver(payload), opts.fds ?? [0, 1, 2]);
  } catch (e) {
    closeFd(fd);
    return { handedOver: false, reason: `hand-over to ${path} failed: ${(e as Error).message}`, level: "warning" };
  }

  return new Promise<HandOverResult>((resolve) => {
    const reader = new ControlReader();
    let accepted = false;
    let settled = false;
    let socket: Socket<Ctl> | null = null;
    const settle = (r: HandOverResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        socket?.end();
      } catch {
        // closed already
      }
      resolve(r);
    };
    const timer = setTimeout(
      () => settle({ handedOver: false, reason: `the daemon at ${path} did not answer within ${(opts.acceptTimeoutMs ?? ACCEPT_TIMEOUT_MS) / 1000} s`, level: "warning" }),
      opts.acceptTimeoutMs ?? ACCEPT_TIMEOUT_MS,
    );
    const ctl: Ctl = {
      onData(s, chunk) {
        socket = s;
        for (const m of reader.push(chunk)) {
          if ("accept" in m && !accepted) {
            if (!m.accept) return settle({ handedOver: false, reason: `the daemon at ${path} refused: ${m.reason}`, level: "info" });
            accepted = true;
            clearTimeout(timer);
            try {
              writeSync(fd, encodeControl({ go: true }));
            } catch {
              return; // the daemon is gone already: onClose reports it
            }
            if (opts.waiter) {
              const tty = process.stdin.isTTY ? "tty" : "no-tty";
              execWithStdin(opts.waiter, ["sh", "-c", WAIT_SCRIPT, "sh", tty, path], ["PATH=/usr/bin:/bin"], fd);
            }
            opts.onRunning?.((exitCode) => settle({ handedOver: true, exitCode }));
          } else if ("exit" in m && accepted) {
            settle({ handedOver: true, exitCode: m.exit });
          }
        }
      },
      onClose() {
        if (accepted) settle({ handedOver: true, exitCode: 2, lost: `the daemon at ${path} went away before the session ended` });
        else settle({ handedOver: false, reason: `the daemon at ${path} closed the connection before taking the session`, level: "warning" });
      },
    };
    connectFd({
      fd,
      data: ctl,
      socket: {
        data: (s, chunk) => s.data.onData(s, chunk),
        close: (s) => s.data.onClose(),
        end: (s) => s.data.onClose(),
        error: (s) => s.data.onClose(),
      },
    }).then(
      (s) => {
        socket = s;
        if (settled) s.end();
      },
      (e: unknown) => {
        closeFd(fd);
        settle({ handedOver: false, reason: `hand-over to ${path} failed: ${(e as Error).message}`, level: "warning" });
      },
    );
  });
}
