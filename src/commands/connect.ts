// `burg connect SOCKET`: the client side of `burg socket`, as borg's rsh. With
// BORG_RSH="burg connect /run/burg/repo.sock" and a repository URL like ssh://burg/srv/borg/repo,
// borg runs `burg connect /run/burg/repo.sock burg borg serve …` and speaks its protocol over our
// stdin/stdout; we carry it to the socket and back, without socat or nc.
//
// borg appends ssh-style arguments (an optional -p PORT, [user@]host, the remote borg path,
// "serve" and its options): all of them are accepted and ignored. Messages go to stderr, which
// borg shows as "Remote: …" lines.

import type { CAC } from "cac";
import { ConnectError, bridge, connectUnix, type LocalStreams } from "../transport/bridge.ts";
import { nodeSessionStream } from "../transport/node-stream.ts";
import { EXIT_ERROR, EXIT_SUCCESS } from "../errors.ts";

export interface ConnectIO {
  /** stdin/stdout as a stream pair. */
  local: LocalStreams;
  error(line: string): void;
  /**
   * Called after an error message, before exiting (and so closing stdout). borg reads the rsh's
   * stdout before its stderr, and gives up at stdout's EOF; a moment with stdout still open lets
   * it show our message as "Remote: …" first.
   */
  linger(): Promise<void>;
}

/** How long to keep stdout open after an error message (see ConnectIO.linger). */
export const ERROR_LINGER_MS = 300;

export async function runConnect(socketPath: string, io: ConnectIO): Promise<number> {
  let remote;
  try {
    remote = await connectUnix(socketPath);
  } catch (e) {
    if (e instanceof ConnectError) {
      io.error(`burg connect: ${e.message}`);
      await io.linger();
      return EXIT_ERROR;
    }
    throw e;
  }
  const outcome = await bridge(io.local, remote);
  if (outcome.error !== null) {
    io.error(`burg connect: connection to ${socketPath} failed: ${outcome.error.message}`);
    await io.linger();
    return EXIT_ERROR;
  }
  if (outcome.received === 0 && outcome.sent > 0 && !outcome.outputLost) {
    // A server that hangs up before answering anything refused us: at its session limit,
    // shutting down, or broken. It cannot tell the client itself (no stderr on a socket).
    io.error(
      `burg connect: the server on ${socketPath} closed the connection without answering ` +
        "(at its --max-sessions limit or shutting down? its log says why)",
    );
    await io.linger();
    return EXIT_ERROR;
  }
  return EXIT_SUCCESS;
}

/** stdin and stdout, with backpressure on stdout. */
function stdio(): LocalStreams {
  const out = nodeSessionStream(process.stdin, process.stdout);
  return {
    readable: process.stdin as AsyncIterable<Uint8Array>,
    write: (data) => out.write(data),
    flush: () => out.flush(),
  };
}

export function register(cli: CAC): void {
  cli
    .command("connect <socket> [...ignored]", "Connect stdin/stdout to a burg socket (use as BORG_RSH)")
    .usage(
      "connect SOCKET [ignored arguments]\n\n" +
        "The client side of `burg socket`, for use as borg's rsh:\n\n" +
        "  BORG_RSH=\"burg connect /run/burg/repo.sock\" borg list ssh://burg/srv/borg/repo\n\n" +
        "The URL must be an ssh:// URL so that borg uses the rsh; its host is ignored, its path is the\n" +
        "repository path on the server. The arguments borg appends (host, borg, serve, options) are\n" +
        "ignored. When stdin ends, the socket's write side is shut down and the server's remaining\n" +
        "output is still delivered; the command ends when the server closes the connection.\n\n" +
        "Exit codes: 0 when the server closed the connection, 2 when the socket is missing, refuses\n" +
        "the connection, or hangs up without answering.",
    )
    .allowUnknownOptions()
    .action((socket: string) =>
      runConnect(String(socket), {
        local: stdio(),
        error: (line) => {
          try {
            process.stderr.write(line + "\n");
          } catch {
            // no stderr: the exit code still tells
          }
        },
        linger: () => Bun.sleep(ERROR_LINGER_MS),
      }),
    );
}
