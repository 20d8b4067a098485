// Hand-overs: an ssh forced command (`burg serve --daemon-socket PATH`) passes its connection to a
// running `burg socket` daemon of the same user instead of serving it in a process of its own.
//
// The forced command connects to the daemon's socket and sends one frame with its stdin,
// stdout and stderr attached (SCM_RIGHTS), and, as JSON, its command line words and
// environment: the restrictions it carries. The frame's first byte is 0, which no borg client
// sends first, so the daemon tells the two kinds of connection apart on one socket
// (fd-acceptor.ts). The connection then stays open as the control channel, in JSON lines:
//
//   daemon -> command   {"accept": true}             the daemon will serve the session
//                       {"accept": false, "reason"}  it will not; the command serves it itself
//   command -> daemon   {"go": true}                 the command leaves stdin/stdout alone now
//   daemon -> command   {"exit": N}                  the session is over; exit with N
//
// The "go" makes the switch safe both ways: a command that gave up waiting (or was killed)
// never sends it, and the daemon starts reading the client's input only after it, so at no time
// do two processes read one stdin. A control channel that closes early means the other side is
// gone: the daemon aborts the session (rolled back, locks released), as `burg serve` does on
// SIGTERM; the command exits with 2 and says so.
//
// Trust: the daemon takes hand-overs only from processes of its own uid or root (SO_PEERCRED),
// which could run `burg serve` with any options anyway; the command hands over only to a daemon
// of its own uid or root, so that nobody else can collect sessions by listening at the path.

import { isBytes } from "../util/msgpack.ts";

/** First bytes of a hand-over frame: 0, then "burg-h1". A u32 LE payload length follows. */
export const HAND_OVER_MAGIC = new Uint8Array([0, 0x62, 0x75, 0x72, 0x67, 0x2d, 0x68, 0x31]);
export const HAND_OVER_HEADER = 12;
/** The acceptor refuses longer payloads (fd-acceptor.ts MAX_FRAME). */
export const MAX_HAND_OVER_PAYLOAD = 1 << 20;

/** What a forced command hands over besides its descriptors. */
export interface HandOverPayload {
  /** Its command line words after the program name ("serve", options...). */
  argv: string[];
  /** Its whole environment (SSH_ORIGINAL_COMMAND, SSH_CONNECTION, BORG_* ...). */
  env: Record<string, string>;
  cwd: string;
  /** Its PID, for the daemon's log. */
  pid: number;
  /** Its umask: a daemon with another one cannot create files as the command would. */
  umask: number;
}

export class HandOverError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HandOverError";
  }
}

export function encodeHandOver(payload: HandOverPayload): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(payload));
  if (body.length > MAX_HAND_OVER_PAYLOAD) throw new HandOverError(`hand-over too big (${body.length} bytes of command line and environment)`);
  const frame = new Uint8Array(HAND_OVER_HEADER + body.length);
  frame.set(HAND_OVER_MAGIC);
  new DataView(frame.buffer).setUint32(8, body.length, true);
  frame.set(body, HAND_OVER_HEADER);
  return frame;
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");

/** The payload of a received frame; throws HandOverError for anything malformed. */
export function decodeHandOver(frame: Uint8Array): HandOverPayload {
  if (!isBytes(frame) || frame.length < HAND_OVER_HEADER) throw new HandOverError("hand-over frame too short");
  for (let i = 0; i < HAND_OVER_MAGIC.length; i++) {
    if (frame[i] !== HAND_OVER_MAGIC[i]) throw new HandOverError("not a burg hand-over (bad magic)");
  }
  const len = new DataView(frame.buffer, frame.byteOffset).getUint32(8, true);
  if (len !== frame.length - HAND_OVER_HEADER) throw new HandOverError("hand-over frame length mismatch");
  let p: unknown;
  try {
    p = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(frame.subarray(HAND_OVER_HEADER)));
  } catch (e) {
    throw new HandOverError(`hand-over payload is not JSON: ${(e as Error).message}`);
  }
  const o = p as Partial<HandOverPayload> | null;
  if (
    o === null ||
    typeof o !== "object" ||
    !isStringArray(o.argv) ||
    typeof o.cwd !== "string" ||
    typeof o.pid !== "number" ||
    typeof o.umask !== "number" ||
    typeof o.env !== "object" ||
    o.env === null ||
    !Object.values(o.env).every((v) => typeof v === "string")
  ) {
    throw new HandOverError("hand-over payload has the wrong shape");
  }
  return { argv: o.argv, env: o.env as Record<string, string>, cwd: o.cwd, pid: o.pid, umask: o.umask };
}

/** One message of the control channel. */
export type ControlMessage = { accept: true } | { accept: false; reason: string } | { go: true } | { exit: number };

export function encodeControl(m: ControlMessage): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(m) + "\n");
}

/** Splits control-channel input into messages; unknown lines are ignored. */
export class ControlReader {
  private text = "";
  private readonly decoder = new TextDecoder();

  push(chunk: Uint8Array): ControlMessage[] {
    this.text += this.decoder.decode(chunk, { stream: true });
    if (this.text.length > 65536) this.text = this.text.slice(-65536);
    const out: ControlMessage[] = [];
    let nl: number;
    while ((nl = this.text.indexOf("\n")) >= 0) {
      const line = this.text.slice(0, nl);
      this.text = this.text.slice(nl + 1);
      try {
        const m = JSON.parse(line) as Record<string, unknown>;
        if (m.accept === true) out.push({ accept: true });
        else if (m.accept === false) out.push({ accept: false, reason: String(m.reason ?? "") });
        else if (m.go === true) out.push({ go: true });
        else if (typeof m.exit === "number" && Number.isInteger(m.exit)) out.push({ exit: m.exit });
      } catch {
        // not ours
      }
    }
    return out;
  }
}
