// What a failed read or write on a session's byte stream means. Only a few errors say that the
// peer went away (EOF is not an error at all): EPIPE and ECONNRESET, and a socket closed under
// us. Everything else (EINVAL, EBADF, EIO, ENOSPC, EFAULT, ...) is a failure on our side and must
// be reported as one, with the call and errno, never taken for an ordinary disconnect.

/** errno names that mean the other end of a connection is gone. */
const PEER_GONE = new Set(["EPIPE", "ECONNRESET"]);

/** The connection was closed by the peer (a socket's close event, a write refused after it). */
export class ConnectionClosedError extends Error {
  constructor(message = "connection closed") {
    super(message);
    this.name = "ConnectionClosedError";
  }
}

/** A system call on a session's stream failed: names the call, the descriptor and errno. */
export class StreamIoError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly fd: number,
    cause: unknown,
  ) {
    const code = errorCode(cause) ?? "EUNKNOWN";
    const detail = (cause as Error)?.message ?? String(cause);
    super(`${syscall}(2) on fd ${fd} failed: ${code} (${detail})`, { cause });
    this.name = "StreamIoError";
    this.code = code;
  }
}

export function errorCode(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** True when `e` says the peer went away; false for every failure of our own. */
export function isPeerGone(e: unknown): boolean {
  if (e instanceof ConnectionClosedError) return true;
  const code = errorCode(e);
  return code !== undefined && PEER_GONE.has(code);
}
