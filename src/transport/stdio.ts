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
import { Session, type SessionConfig } from "../rpc/session.ts";
import { fdSessionStream, growingPipes } from "./fd-stream.ts";

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
 * The signals that end a serve process, as serveStdio handles them: SIGTERM and SIGHUP (and
 * SIGINT when stdin is a terminal) call `onSignal` with the exit code 128 + N; otherwise SIGINT
 * is ignored (`onIgnoredInterrupt` is told). Returns the function that removes the handlers.
 */
export function handleStopSignals(onSignal: (name: NodeJS.Signals, exitCode: number) => void, onIgnoredInterrupt: () => void = () => {}): () => void {
  const signals: Array<[NodeJS.Signals, number]> = process.stdin.isTTY ? [...SIGNALS, ["SIGINT", 2]] : SIGNALS;
  if (!process.stdin.isTTY) process.on("SIGINT", onIgnoredInterrupt);
  const handlers = signals.map(([name, num]) => {
    const handler = () => onSignal(name, 128 + num);
    process.on(name, handler);
    return [name, handler] as const;
  });
  return () => {
    for (const [name, handler] of handlers) process.off(name, handler);
    process.off("SIGINT", onIgnoredInterrupt);
  };
}

/** Run one session on this process's stdio; resolves with the exit code. */
export async function serveStdio(config: SessionConfig): Promise<number> {
  protectStdout();
  const session = new Session(config);
  let signalExit: number | null = null;
  const removeHandlers = handleStopSignals(
    (name, exitCode) => {
      if (signalExit === null) signalExit = exitCode;
      session.abort(`received ${name}`);
    },
    () => config.logger.debug("SIGINT ignored (the borg client handles Ctrl-C)"),
  );
  try {
    const result = await session.run(growingPipes(fdSessionStream(0, 1), [0, 1]));
    return signalExit ?? result.exitCode;
  } finally {
    releaseAllLocks();
    removeHandlers();
  }
}
