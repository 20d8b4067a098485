// The borg 1.x RPC wire format, as borg 1.2's remote.py (RepositoryServer.serve and
// RemoteRepository.call_many) defines it: message shapes, the method allowlist with each
// method's parameter names, negotiate's answer, and the error reply borg's client rebuilds
// exceptions from.
//
// Compatibility notes (remote.py's "Protocol compatibility" comment, restated):
// - Requests come in two shapes. Clients since 1.1 send a dict {i: msgid, m: method, a: {args}};
//   1.0 clients send the tuple (1, msgid, method, [positional args]) whose positions COMPAT_MAP
//   names. Replies use the shape of the request: {i, r} / (1, msgid, None, result).
// - Arguments are matched by name; names a method does not know are ignored (the client says
//   that is fine by sending them), missing required ones are a TypeError like python's.
// - Everything is msgpack with raw strings: dict keys, method names, ids and data arrive as
//   bytes; replies pack strings as raw too (util/msgpack.ts).
// - negotiate: client_data 2 means a 1.0 client (answer 2, tuple replies); a dict carries the
//   client version (answer {server_version}, switch logging to JSON lines).

import { objectBuffers } from "../util/buffer-pool.ts";
import { BurgError, InvalidRPCMethod, RpcArgumentError, UnexpectedRPCDataFormatFromClient } from "../errors.ts";
import {
  bytesEqualAscii,
  bytesToString,
  bytesToStringStrict,
  encode,
  encodeParts,
  isBytes,
  isMap,
} from "../util/msgpack.ts";
import { BORG_COMPAT_VERSION, VERSION } from "../version.ts";

export const RPC_PROTOCOL_VERSION = 2;

/**
 * The borg version burg answers in negotiate, in borg's parse_version() tuple form (a final
 * release ends with -1, so 1.2.4 is (1, 2, 4, -1)). Clients only compare it against the
 * versions in which methods and parameters appeared (all at or below 1.2.0a8).
 */
export const SERVER_VERSION: readonly number[] = Object.freeze([...BORG_COMPAT_VERSION, -1]);

/** How many requests borg clients keep in flight at most (remote.py MAX_INFLIGHT). */
export const CLIENT_MAX_INFLIGHT = 100;

interface MethodSpec {
  /** Parameter names of borg's server-side method, in order; the first `required` have no default. */
  params: readonly string[];
  required: number;
}

/**
 * borg 1.2's RepositoryServer.rpc_methods with the signatures of the methods they reach
 * (RepositoryServer.negotiate/open/inject_exception, else Repository's), which borg's
 * filter_args() uses to drop unknown arguments.
 */
export const RPC_METHODS: ReadonlyMap<string, MethodSpec> = new Map<string, MethodSpec>([
  ["__len__", { params: [], required: 0 }],
  ["check", { params: ["repair", "save_space", "max_duration"], required: 0 }],
  ["commit", { params: ["save_space", "compact", "threshold", "cleanup_commits"], required: 0 }],
  ["delete", { params: ["id", "wait"], required: 1 }],
  ["destroy", { params: [], required: 0 }],
  ["get", { params: ["id"], required: 1 }],
  ["list", { params: ["limit", "marker"], required: 0 }],
  ["scan", { params: ["limit", "marker"], required: 0 }],
  ["negotiate", { params: ["client_data"], required: 1 }],
  [
    "open",
    {
      params: ["path", "create", "lock_wait", "lock", "exclusive", "append_only", "make_parent_dirs"],
      required: 1,
    },
  ],
  ["put", { params: ["id", "data", "wait"], required: 2 }],
  ["rollback", { params: [], required: 0 }],
  ["save_key", { params: ["keydata"], required: 1 }],
  ["load_key", { params: [], required: 0 }],
  ["break_lock", { params: [], required: 0 }],
  ["get_free_nonce", { params: [], required: 0 }],
  ["commit_nonce_reservation", { params: ["next_unreserved", "start_nonce"], required: 2 }],
  ["inject_exception", { params: ["kind"], required: 1 }],
]);

/** Positional argument names of the 1.0 tuple format (remote.py compatMap). */
export const COMPAT_MAP: ReadonlyMap<string, readonly string[]> = new Map<string, readonly string[]>([
  ["check", ["repair", "save_space"]],
  ["commit", ["save_space"]],
  ["rollback", []],
  ["destroy", []],
  ["__len__", []],
  ["list", ["limit", "marker"]],
  ["put", ["id", "data"]],
  ["get", ["id"]],
  ["delete", ["id"]],
  ["save_key", ["keydata"]],
  ["load_key", []],
  ["break_lock", []],
  ["negotiate", ["client_data"]],
  ["open", ["path", "create", "lock_wait", "lock", "exclusive", "append_only"]],
  ["get_free_nonce", []],
  ["commit_nonce_reservation", ["next_unreserved", "start_nonce"]],
]);

/** One decoded request. `args` holds the arguments by name, not yet filtered. */
export interface Request {
  dictFormat: boolean;
  msgid: unknown;
  method: string;
  args: Map<string, unknown>;
}

/**
 * A message that is a request in shape but cannot be executed (bad method name encoding, bad
 * argument layout): there is a msgid to answer, so the session replies with `error`.
 */
export interface BadRequest {
  dictFormat: boolean;
  msgid: unknown;
  method: string;
  error: BurgError;
}

/**
 * Classify one decoded message. Returns a Request, a BadRequest (answer it with its error), or
 * throws UnexpectedRPCDataFormatFromClient when the message has no usable msgid at all, which
 * borg's server treats as fatal for the connection.
 */
export function parseRequest(unpacked: unknown): Request | BadRequest {
  if (isMap(unpacked)) {
    let msgid: unknown = undefined;
    let rawMethod: unknown = undefined;
    let rawArgs: unknown = undefined;
    for (const [k, v] of unpacked) {
      if (!isBytes(k) || k.length !== 1) continue;
      // Last duplicate wins, as in the python dict borg builds.
      if (k[0] === 0x69) msgid = v; // i
      else if (k[0] === 0x6d) rawMethod = v; // m
      else if (k[0] === 0x61) rawArgs = v; // a
    }
    if (msgid === undefined) throw new UnexpectedRPCDataFormatFromClient(VERSION);
    const method = methodName(rawMethod);
    if (typeof method !== "string") return { dictFormat: true, msgid, method: "?", error: method };
    if (!isMap(rawArgs)) {
      return { dictFormat: true, msgid, method, error: new RpcArgumentError(`${method}() arguments must be a dict`) };
    }
    const args = new Map<string, unknown>();
    for (const [k, v] of rawArgs) {
      if (!isBytes(k)) {
        return { dictFormat: true, msgid, method, error: new RpcArgumentError(`${method}() argument names must be strings`) };
      }
      args.set(bytesToString(k), v);
    }
    return { dictFormat: true, msgid, method, args };
  }
  if (Array.isArray(unpacked) && unpacked.length === 4) {
    const [, msgid, rawMethod, argv] = unpacked;
    const method = methodName(rawMethod);
    if (typeof method !== "string") return { dictFormat: false, msgid, method: "?", error: method };
    if (!RPC_METHODS.has(method)) return { dictFormat: false, msgid, method, error: new InvalidRPCMethod(method) };
    const names = COMPAT_MAP.get(method);
    if (names === undefined) {
      // scan and inject_exception came after the tuple format; borg's positional_to_named fails too.
      return { dictFormat: false, msgid, method, error: new RpcArgumentError(`${method}() has no positional form`) };
    }
    if (!Array.isArray(argv)) {
      return { dictFormat: false, msgid, method, error: new RpcArgumentError(`${method}() arguments must be a list`) };
    }
    // borg < 1.0.7 sends open() with 4 arguments; everything else needs all of them.
    const usable = method === "open" && argv.length === 4 ? names.slice(0, 4) : names;
    if (argv.length < usable.length) {
      return {
        dictFormat: false,
        msgid,
        method,
        error: new RpcArgumentError(`${method}() takes ${usable.length} positional arguments but ${argv.length} were given`),
      };
    }
    const args = new Map<string, unknown>();
    usable.forEach((name, i) => args.set(name, argv[i]));
    return { dictFormat: false, msgid, method, args };
  }
  throw new UnexpectedRPCDataFormatFromClient(VERSION);
}

function methodName(raw: unknown): string | BurgError {
  if (typeof raw === "string") return raw;
  if (!isBytes(raw)) return new UnexpectedRPCDataFormatFromClient(VERSION);
  try {
    return bytesToStringStrict(raw);
  } catch {
    return new InvalidRPCMethod(bytesToString(raw));
  }
}

export function isBadRequest(r: Request | BadRequest): r is BadRequest {
  return (r as BadRequest).error !== undefined;
}

/** The methods borg's RepositoryServer has itself; the others are its Repository's. */
const SERVER_METHODS: ReadonlySet<string> = new Set(["negotiate", "open", "inject_exception"]);

/** The method's __qualname__, as python (3.10 and later) names it in a TypeError. */
function qualifiedName(method: string): string {
  return `${SERVER_METHODS.has(method) ? "RepositoryServer" : "Repository"}.${method}`;
}

/**
 * The arguments a method will be called with: unknown names dropped (borg's filter_args),
 * missing required ones reported like python's TypeError.
 */
export function filterArgs(method: string, args: Map<string, unknown>): Map<string, unknown> {
  const spec = RPC_METHODS.get(method);
  if (spec === undefined) throw new InvalidRPCMethod(method);
  const out = new Map<string, unknown>();
  for (const name of spec.params) if (args.has(name)) out.set(name, args.get(name));
  const missing = spec.params.slice(0, spec.required).filter((n) => !out.has(n));
  if (missing.length > 0) {
    const list = missing.map((n) => `'${n}'`).join(missing.length === 2 ? " and " : ", ");
    throw new RpcArgumentError(
      `${qualifiedName(method)}() missing ${missing.length} required positional argument${missing.length > 1 ? "s" : ""}: ${list}`,
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Replies

/**
 * A result reply, as parts to be written in order: a big byte string (the data of a get) is
 * its own part, the caller's bytes, not copied into the reply; the rest is copied into pooled
 * buffers (util/buffer-pool.ts).
 */
export function encodeResult(req: { dictFormat: boolean; msgid: unknown }, result: unknown): Uint8Array[] {
  const msg = req.dictFormat ? new Map<string, unknown>([["i", req.msgid], ["r", result]]) : [1, req.msgid, null, result];
  return encodeParts(msg, takeObjectBuffer);
}

/** Reply parts come from the pool the session gives them back to once written (small ones are plain). */
const takeObjectBuffer = (n: number) => (n < objectBuffers.minSize ? null : objectBuffers.take(n));

/** What borg sends for an exception, before packing. */
export interface WireError {
  exceptionClass: string;
  args: unknown[];
  full: string[];
  short: string[];
  /** exception_trace: the client prints `full` instead of `short`. */
  trace: boolean;
}

/** Classes borg's client rebuilds as local exceptions; the server keeps their traceback quiet. */
export const RECONSTRUCTED = new Set(["DoesNotExist", "AlreadyExists", "PathNotAllowed"]);

/** Turn anything thrown while executing a request into borg's exception fields. */
/**
 * Python's own exception classes among the names burg raises under. borg serve sends
 * exception_short as [e.get_message()] for borg's Error classes only; for everything else it is
 * traceback.format_exception_only(): ["ZeroDivisionError: integer division or modulo by zero\n"].
 */
export const PYTHON_EXCEPTIONS: ReadonlySet<string> = new Set([
  "Exception",
  "AssertionError",
  "KeyError",
  "TypeError",
  "ValueError",
  "ZeroDivisionError",
]);

/**
 * The class name a bug in burg goes over as: one name to search for (with "burg"), whatever
 * JavaScript error it was; the JavaScript name stays in the message.
 */
export const INTERNAL_ERROR_CLASS = "BurgInternalError";

/** traceback.format_exception_only(): "Name: message\n", or "Name\n" without a message. */
function exceptionOnly(name: string, message: string): string {
  return message === "" ? `${name}\n` : `${name}: ${message}\n`;
}

export function wireError(e: unknown): WireError {
  if (e instanceof BurgError) {
    return {
      exceptionClass: e.borgName,
      args: [...e.borgArgs],
      full: pythonishTraceback(e, e.borgName, e.message),
      short: [PYTHON_EXCEPTIONS.has(e.borgName) ? exceptionOnly(e.borgName, e.message) : e.message],
      trace: e.traceback,
    };
  }
  // Anything else is a bug or an unexpected condition: like a non-borg python exception, it
  // goes over with a class name, a message and a traceback the client prints.
  const err = e instanceof Error ? e : new Error(String(e));
  const message = `${err.name || "Error"}: ${err.message}`;
  return {
    exceptionClass: INTERNAL_ERROR_CLASS,
    args: [message],
    full: pythonishTraceback(err, INTERNAL_ERROR_CLASS, message),
    short: [exceptionOnly(INTERNAL_ERROR_CLASS, message)],
    trace: true,
  };
}

/** A traceback in the shape of python's traceback.format_exception(), from a JS stack. */
function pythonishTraceback(err: Error, name: string, message: string): string[] {
  const frames = (err.stack ?? "")
    .split("\n")
    .filter((l) => l.trimStart().startsWith("at "))
    .map((l) => `  ${l.trim()}\n`);
  return ["Traceback (most recent call last):\n", ...frames.reverse(), `${name}: ${message}\n`];
}

/** The reply for a failed request, in the request's shape (remote.py serve()). */
export function encodeError(req: { dictFormat: boolean; msgid: unknown }, w: WireError, sysinfo: string): Uint8Array {
  if (!req.dictFormat) {
    return encode([1, req.msgid, w.exceptionClass, "Remote Exception (see remote log for the traceback)"]);
  }
  const args = w.args.map((a) =>
    a === null || typeof a === "string" || typeof a === "number" || typeof a === "bigint" || isBytes(a) ? a : null,
  );
  return encode(
    new Map<string, unknown>([
      ["i", req.msgid],
      ["exception_class", w.exceptionClass],
      ["exception_args", args],
      ["exception_full", w.full],
      ["exception_short", w.short],
      ["exception_trace", w.trace],
      ["sysinfo", sysinfo],
    ]),
  );
}

/** negotiate(): 2 for a 1.0 client, else {server_version}; `json` says whether to log JSON lines. */
export function negotiateAnswer(clientData: unknown): { answer: unknown; dictFormat: boolean; json: boolean } {
  if (clientData === RPC_PROTOCOL_VERSION) return { answer: RPC_PROTOCOL_VERSION, dictFormat: false, json: false };
  return {
    answer: new Map<string, unknown>([["server_version", [...SERVER_VERSION]]]),
    dictFormat: true,
    json: isMap(clientData),
  };
}

/** The client's version tuple from negotiate's client_data, if it sent one. */
export function clientVersion(clientData: unknown): number[] | null {
  if (!isMap(clientData)) return null;
  for (const [k, v] of clientData) {
    if (isBytes(k) && bytesEqualAscii(k, "client_version") && Array.isArray(v)) {
      return v.filter((x): x is number => typeof x === "number");
    }
  }
  return null;
}

/** borg's format_version(): (1, 2, 0, -4, 8) -> "1.2.0a8". */
export function formatVersion(v: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < v.length; i++) {
    const p = v[i]!;
    if (p >= 0) parts.push(String(p));
    else if (p === -1) break;
    else {
      const tag = p === -2 ? "rc" : p === -3 ? "b" : p === -4 ? "a" : "?";
      parts[parts.length - 1] += tag + String(v[i + 1] ?? "");
      break;
    }
  }
  return parts.join(".");
}

// ---------------------------------------------------------------------------------------------
// Argument conversion: python's duck typing made explicit.

/** python truthiness of a decoded value (borg tests flags with `if create:`). */
export function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === 0n) return false;
  if (isBytes(v) || Array.isArray(v)) return v.length > 0;
  if (isMap(v)) return v.size > 0;
  return true;
}

export function argBool(args: Map<string, unknown>, name: string, dflt: boolean): boolean {
  return args.has(name) ? truthy(args.get(name)) : dflt;
}

/** A nullable boolean (open's exclusive: None means "old client, decide when writing"). */
export function argOptBool(args: Map<string, unknown>, name: string, dflt: boolean | null): boolean | null {
  if (!args.has(name)) return dflt;
  const v = args.get(name);
  return v === null ? null : truthy(v);
}

export function argBytes(method: string, args: Map<string, unknown>, name: string): Uint8Array {
  const v = args.get(name);
  if (isBytes(v)) return v;
  if (typeof v === "string") return new TextEncoder().encode(v);
  throw new RpcArgumentError(`${method}() argument '${name}' must be bytes, not ${pyTypeName(v)}`);
}

export function argOptBytes(method: string, args: Map<string, unknown>, name: string): Uint8Array | null {
  const v = args.get(name);
  return v === undefined || v === null ? null : argBytes(method, args, name);
}

/** A 32-byte object id (borg's hashindex asserts the key size). */
export function argId(method: string, args: Map<string, unknown>, name = "id"): Uint8Array {
  const v = argBytes(method, args, name);
  if (v.length !== 32) throw new RpcArgumentError(`${method}() argument '${name}' must be 32 bytes, not ${v.length}`);
  return v;
}

export function argNumber(method: string, args: Map<string, unknown>, name: string, dflt: number): number {
  if (!args.has(name)) return dflt;
  const v = args.get(name);
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  if (v && typeof v === "object" && "value" in v && typeof (v as { value: unknown }).value === "number") {
    return (v as { value: number }).value;
  }
  throw new RpcArgumentError(`${method}() argument '${name}' must be a number, not ${pyTypeName(v)}`);
}

export function argOptNumber(method: string, args: Map<string, unknown>, name: string): number | null {
  const v = args.get(name);
  return v === undefined || v === null ? null : argNumber(method, args, name, 0);
}

/** An integer that may exceed 2**53 (nonces). */
export function argInt(method: string, args: Map<string, unknown>, name: string): number | bigint {
  const v = args.get(name);
  if (typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v))) return v;
  throw new RpcArgumentError(`${method}() argument '${name}' must be an integer, not ${pyTypeName(v)}`);
}

export function argOptInt(method: string, args: Map<string, unknown>, name: string): number | bigint | null {
  const v = args.get(name);
  return v === undefined || v === null ? null : argInt(method, args, name);
}

function pyTypeName(v: unknown): string {
  if (v === null || v === undefined) return "NoneType";
  if (isBytes(v)) return "bytes";
  if (Array.isArray(v)) return "tuple";
  if (isMap(v)) return "dict";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "boolean") return "bool";
  return typeof v;
}
