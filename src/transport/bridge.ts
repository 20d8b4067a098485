// The client side of a socket server: connect to a UNIX socket and copy bytes between it and
// a pair of local streams (stdin/stdout for `burg connect`), in both directions at once.
//
// Closing follows the protocol's needs: when our input ends (borg closed the rsh's stdin) we
// shut down only our write side of the socket and keep copying the server's output until the
// server closes; when the server closes, we are done, whether or not our input has ended. Each
// direction waits for its writer (backpressure), so neither side can make us buffer without
// bound.
//
// Connection failures are explained from the file system (Bun 1.3 reports ECONNREFUSED on a
// UNIX socket as ENOENT, so its error codes cannot tell "missing" from "stale"): missing path,
// not a socket, no permission, or nobody listening.

import type { Socket } from "bun";
import { accessSync, constants as fsc, lstatSync } from "node:fs";
import { BurgError } from "../errors.ts";
import { isPeerGone } from "../util/io-errors.ts";
import { SocketStream, socketHandlers } from "./socket-stream.ts";

/** A connection that could not be made; the message says why in the user's terms. */
export class ConnectError extends BurgError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super("ConnectError", message, [message], opts);
  }
}

/** Why connecting to `path` failed, from what is (or is not) there. */
export function explainConnectFailure(path: string): string {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return `the socket ${path} does not exist: is the server (burg socket, or the ssh -R forwarding) running?`;
    if (code === "EACCES") return `permission denied looking up ${path} (a directory on the way is not accessible to us)`;
    return `cannot reach ${path}: ${(e as Error).message}`;
  }
  if (!st.isSocket()) return `${path} is not a socket`;
  try {
    accessSync(path, fsc.R_OK | fsc.W_OK);
  } catch {
    return `permission denied: ${path} (mode 0${(st.mode & 0o777).toString(8)}, owner uid ${st.uid}, group ${st.gid})`;
  }
  return `nobody accepts connections on ${path}: a stale socket left by a server that is gone`;
}

/** Connect to a UNIX socket; throws ConnectError with an explanation. */
export async function connectUnix(path: string): Promise<SocketStream> {
  let stream: SocketStream | null = null;
  const handlers = socketHandlers();
  try {
    await Bun.connect<SocketStream | undefined>({
      unix: path,
      socket: {
        ...handlers,
        open(socket: Socket<SocketStream | undefined>) {
          stream = new SocketStream(socket as Socket<unknown>);
          socket.data = stream;
        },
      },
    });
  } catch (e) {
    throw new ConnectError(explainConnectFailure(path), { cause: e });
  }
  if (stream === null) throw new ConnectError(explainConnectFailure(path));
  return stream;
}

/** The local side of a bridge: input to send, and output to write what comes back to. */
export interface LocalStreams {
  readable: AsyncIterable<Uint8Array>;
  /** Resolves when more may be written; rejects when the output is gone. */
  write(data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
}

export interface BridgeOutcome {
  /** Bytes sent to the server and received from it. */
  sent: number;
  received: number;
  /** Our input reached its end (and the socket's write side was shut down). */
  inputEnded: boolean;
  /** The local output went away (e.g. the reading process exited) before the server closed. */
  outputLost: boolean;
  /**
   * The connection failed instead of being closed by the server, or reading our input or
   * writing our output failed with anything but the reader or writer going away.
   */
  error: Error | null;
}

/** Copy local input to the socket and the socket's output to local output until the server closes. */
export async function bridge(local: LocalStreams, remote: SocketStream): Promise<BridgeOutcome> {
  const outcome: BridgeOutcome = { sent: 0, received: 0, inputEnded: false, outputLost: false, error: null };

  const upstream = (async () => {
    try {
      for await (const chunk of local.readable) {
        if (remote.isClosed) return;
        await remote.write(chunk);
        outcome.sent += chunk.length;
      }
      outcome.inputEnded = true;
      await remote.shutdownWrite();
    } catch (e) {
      // The socket is gone (downstream sees that), or our input failed: the end of it when the
      // writer went away, an error of ours otherwise.
      if (!remote.isClosed && !isPeerGone(e) && !(e === remote.failure)) {
        outcome.error ??= new Error(`reading stdin failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
      }
      if (!remote.isClosed) {
        outcome.inputEnded = true;
        await remote.shutdownWrite().catch(() => undefined);
      }
    }
  })();

  try {
    for await (const chunk of remote.readable) {
      try {
        await local.write(chunk);
      } catch (e) {
        if (!isPeerGone(e)) outcome.error ??= new Error(`writing stdout failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
        outcome.outputLost = true;
        break;
      }
      outcome.received += chunk.length;
    }
    if (!outcome.outputLost) {
      try {
        await local.flush();
      } catch (e) {
        if (!isPeerGone(e)) outcome.error ??= new Error(`writing stdout failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
        outcome.outputLost = true;
      }
    }
  } catch (e) {
    outcome.error ??= e instanceof Error ? e : new Error(String(e));
  }
  remote.destroy();
  // Upstream stops at its next chunk (or is blocked on input we no longer need); do not wait for it.
  void upstream;
  return outcome;
}
