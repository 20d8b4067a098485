// `burg serve` on stdin/stdout, as sshd (or any BORG_RSH wrapper) runs it: one session per
// process. stdout carries the protocol and nothing else, so console output is sent to stderr
// for the whole process. SIGTERM, SIGHUP and SIGINT end the session (rolled back and closed,
// locks released) with exit code 128 + signal number, like borg.

import { releaseAllLocks } from "../lock/lock.ts";
import { Session, type SessionConfig } from "../rpc/session.ts";
import { nodeSessionStream } from "./node-stream.ts";

const SIGNALS: Array<[NodeJS.Signals, number]> = [
  ["SIGTERM", 15],
  ["SIGHUP", 1],
  ["SIGINT", 2],
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

/** Run one session on this process's stdio; resolves with the exit code. */
export async function serveStdio(config: SessionConfig): Promise<number> {
  protectStdout();
  const session = new Session(config);
  let signalExit: number | null = null;
  const handlers = SIGNALS.map(([name, num]) => {
    const handler = () => {
      if (signalExit === null) signalExit = 128 + num;
      session.abort(`received ${name}`);
    };
    process.on(name, handler);
    return [name, handler] as const;
  });
  try {
    const result = await session.run(nodeSessionStream(process.stdin, process.stdout));
    return signalExit ?? result.exitCode;
  } finally {
    releaseAllLocks();
    for (const [name, handler] of handlers) process.off(name, handler);
  }
}
