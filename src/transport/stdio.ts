// `burg serve` on stdin/stdout, as sshd (or any BORG_RSH wrapper) runs it: one session per
// process. stdout carries the protocol and nothing else, so console output is sent to stderr
// for the whole process. SIGTERM and SIGHUP end the session (rolled back and closed, locks
// released) with exit code 128 + signal number, like borg.
//
// SIGINT is ignored unless stdin is a terminal: the borg client starts its server with SIGINT
// ignored (remote.py: preexec_fn=ignore_sigint) so that a Ctrl-C, which reaches a local
// BORG_RSH wrapper's whole process group, leaves the server alive for the checkpoint the
// client then writes. Python's borg serve inherits that; Bun resets signal dispositions, so we
// ignore it ourselves. Typed at a terminal, Ctrl-C ends the session.

import { releaseAllLocks } from "../lock/lock.ts";
import { Session, type SessionConfig, type SessionStream } from "../rpc/session.ts";
import { fdSessionStream } from "./fd-stream.ts";
import { growPipe } from "../util/libc.ts";

const PIPE_SIZE = 1 << 20;
const BULK = 256 * 1024;

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ["SIGTERM", 15],
  ["SIGHUP", 1],
];

/** Keep anything printed with console.* off the protocol stream. */
function protectStdout(): void {
  const toStderr = (...args: unknown[]) => {
    try {
      process.stderr.write(args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" ") + "\n");
    } catch {
      // stderr gone: nothing to do
    }
  };
  console.log = toStderr;
  console.info = toStderr;
  console.debug = toStderr;
}

/**
 * Big objects cross the pipes in 64 KiB steps by default, each read or write a round trip
 * through the I/O thread pool; 1 MiB pipes (the unprivileged maximum) cut that 16-fold. The
 * pipes are grown once a session has moved BULK bytes, so that short sessions (and start-up)
 * do not pay for loading fcntl through bun:ffi. Sockets and terminals are left alone.
 */
function growingPipes(stream: SessionStream): SessionStream {
  let moved = 0;
  const count = (n: number) => {
    if (moved >= BULK) return;
    moved += n;
    if (moved >= BULK) for (const fd of [0, 1]) growPipe(fd, PIPE_SIZE);
  };
  const read = stream.read!.bind(stream);
  const write = stream.write.bind(stream);
  return Object.assign(stream, {
    read: async (buf: Uint8Array) => {
      const n = await read(buf);
      count(n);
      return n;
    },
    write: (data: Uint8Array, written?: () => void) => {
      count(data.length);
      return write(data, written);
    },
  });
}

/** Run one session on this process's stdio; resolves with the exit code. */
export async function serveStdio(config: SessionConfig): Promise<number> {
  protectStdout();
  const session = new Session(config);
  let signalExit: number | null = null;
  const signals: Array<[NodeJS.Signals, number]> = process.stdin.isTTY ? [...SIGNALS, ["SIGINT", 2]] : SIGNALS;
  const ignoreInterrupt = () => config.logger.debug("SIGINT ignored (the borg client handles Ctrl-C)");
  if (!process.stdin.isTTY) process.on("SIGINT", ignoreInterrupt);
  const handlers = signals.map(([name, num]) => {
    const handler = () => {
      if (signalExit === null) signalExit = 128 + num;
      session.abort(`received ${name}`);
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  try {
    const result = await session.run(growingPipes(fdSessionStream(0, 1)));
    return signalExit ?? result.exitCode;
  } finally {
    releaseAllLocks();
    for (const [name, handler] of handlers) process.off(name, handler);
    process.off("SIGINT", ignoreInterrupt);
  }
}
