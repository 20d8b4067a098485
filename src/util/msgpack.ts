// msgpack with borg 1.x semantics: an encoder that writes exactly the bytes python-msgpack
// writes with use_bin_type=False, and decoders (one-shot and streaming) that behave like
// python-msgpack's Unpacker(raw=True) including borg's get_limited_unpacker() limits.
//
// borg 1.x packs every byte string *and* every str as msgpack "raw" (the str family, from the
// pre-2013 spec) and unpacks with raw=True, so ids, chunk data, method names and dict keys all
// arrive as bytes. We do not use msgpackr here: it decodes raw str into JS strings (replacing
// invalid UTF-8 with U+FFFD, which destroys binary ids and data) and packs Uint8Array as bin,
// which borg's limited unpackers reject (max_bin_len=0). Checked with msgpackr 1.11.5.
//
// Decoded byte strings are zero-copy `subarray` views. Lifetime: a view points either into a
// chunk given to `feed()`/`decode()` (the caller hands that chunk over and must not modify it
// afterwards) or into a buffer the StreamDecoder owns and never writes again below its write
// position, so views stay valid forever. A small view keeps its whole backing buffer alive;
// `.slice()` what you keep for long (e.g. ids held in a set for a whole session).
//
// These error classes live here, not in errors.ts, because util sits below errors in the
// dependency order; the RPC layer turns them into borg's exceptions.

import { trafficPassed } from "./gc.ts";

/** Malformed msgpack (reserved byte 0xc1, trailing data after a one-shot message, …). */
export class MsgpackDecodeError extends Error {
  constructor(message: string) {
    super(`msgpack: ${message}`);
    this.name = "MsgpackDecodeError";
  }
}

/** Input that is well-formed but exceeds a configured limit (length, nesting, buffer size). */
export class MsgpackLimitError extends Error {
  constructor(message: string) {
    super(`msgpack: ${message}`);
    this.name = "MsgpackLimitError";
  }
}

/** A value the encoder cannot represent (a function, a symbol, an integer beyond 64 bits, …). */
export class MsgpackEncodeError extends Error {
  constructor(message: string) {
    super(`msgpack: ${message}`);
    this.name = "MsgpackEncodeError";
  }
}

/** A msgpack extension value (python's ExtType); also what the timestamp type (-1) decodes to. */
export class Ext {
  constructor(
    readonly type: number,
    readonly data: Uint8Array,
  ) {}
}

/**
 * Forces float64 encoding for a number that happens to be integral (python `1.0`); decoders
 * return floats wrapped in this class when asked to (`floatsAsFloat64`), for exact round trips.
 */
export class Float64 {
  constructor(readonly value: number) {}
}

// borg's constants.py, as used by helpers/msgpack.py get_limited_unpacker().
export const BORG_MAX_OBJECT_SIZE = 20 * 1024 * 1024;
export const BORG_BUFSIZE = 10 * 1024 * 1024;
export const BORG_LIST_SCAN_LIMIT = 100000;

export interface DecodeLimits {
  /** Largest message in bytes (python's max_buffer_size; checked per message, not per chunk). */
  maxBufferSize: number;
  maxStrLen: number;
  maxBinLen: number;
  maxArrayLen: number;
  maxMapLen: number;
  maxExtLen: number;
  /** Container nesting depth (python-msgpack's C unpacker stops at 1024). */
  maxDepth: number;
}

export interface DecodeOptions extends Partial<DecodeLimits> {
  /** Return float32/float64 values as Float64 instances instead of numbers (default false). */
  floatsAsFloat64?: boolean;
}

const UNLIMITED = 2 ** 32 - 1;

export const DEFAULT_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxBufferSize: Number.MAX_SAFE_INTEGER,
  maxStrLen: UNLIMITED,
  maxBinLen: UNLIMITED,
  maxArrayLen: UNLIMITED,
  maxMapLen: UNLIMITED,
  maxExtLen: UNLIMITED,
  maxDepth: 1024,
});

/**
 * The limits of borg's get_limited_unpacker(kind): what a borg 1.2 server ("server") accepts
 * from clients and what a client ("client") accepts from servers. max_bin_len and max_ext_len
 * are 0 because borg never sends those types.
 */
export function borgUnpackerLimits(kind: "server" | "client"): DecodeLimits {
  return {
    maxBufferSize: 3 * Math.max(BORG_BUFSIZE, BORG_MAX_OBJECT_SIZE),
    maxStrLen: BORG_MAX_OBJECT_SIZE,
    maxBinLen: 0,
    maxExtLen: 0,
    maxArrayLen: kind === "server" ? 100 : BORG_LIST_SCAN_LIMIT,
    maxMapLen: 100,
    maxDepth: DEFAULT_LIMITS.maxDepth,
  };
}

// ---------------------------------------------------------------------------------------------
// Encoding

const textEncoder = new TextEncoder();
const BIG_RESULT = 1 << 20;
/** encodeParts: byte strings up to this size are copied into the encoding, longer ones are parts. */
export const PART_INLINE_MAX = 16 * 1024;
const TWO_32 = 2 ** 32;

/**
 * A reusable encoder writing into one growable buffer. `encode()` returns a view that stays
 * valid only until the next `encode()` on the same Encoder; use the module-level `encode()`
 * for an owned result.
 */
export class Encoder {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  /** While encodeParts() runs: the parts so far and where the current copied part starts. */
  private parts: Uint8Array[] | null = null;
  private partStart = 0;
  private inlineMax = 0;
  private alloc: ((n: number) => Uint8Array | null) | null = null;

  constructor(initialSize = 64 * 1024) {
    this.buf = new Uint8Array(initialSize);
    this.view = new DataView(this.buf.buffer);
  }

  encode(value: unknown): Uint8Array {
    this.pos = 0;
    this.write(value, 0);
    return this.buf.subarray(0, this.pos);
  }

  /**
   * Encode for writing out (writev) without copying big byte strings: the result is a list of
   * parts whose concatenation is the encoding. Byte strings longer than `inlineMax` are not
   * copied but appear as parts of their own (the caller's views: they must stay unchanged until
   * written); everything between them is copied into owned parts.
   */
  encodeParts(value: unknown, inlineMax = PART_INLINE_MAX, alloc?: (n: number) => Uint8Array | null): Uint8Array[] {
    this.pos = 0;
    this.partStart = 0;
    this.parts = [];
    this.inlineMax = inlineMax;
    this.alloc = alloc ?? null;
    try {
      this.write(value, 0);
      this.endPart();
      return this.parts;
    } finally {
      this.parts = null;
      this.alloc = null;
    }
  }

  /** Copy the bytes encoded since the last part into a part of their own. */
  private endPart(): void {
    const n = this.pos - this.partStart;
    if (n === 0) return;
    const into = this.alloc ? this.alloc(n) : null;
    if (into) into.set(this.buf.subarray(this.partStart, this.pos));
    this.parts!.push(into ?? this.buf.slice(this.partStart, this.pos));
    this.partStart = this.pos;
  }

  /** Encode and hand the bytes over: large results take the buffer, small ones are copied. */
  encodeOwned(value: unknown): Uint8Array {
    const out = this.encode(value);
    if (out.length < BIG_RESULT) return out.slice();
    this.buf = new Uint8Array(64 * 1024);
    this.view = new DataView(this.buf.buffer);
    return out;
  }

  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  private write(v: unknown, depth: number): void {
    if (depth > 512) throw new MsgpackEncodeError("value nested too deeply (cycle?)");
    switch (typeof v) {
      case "number":
        if (Number.isSafeInteger(v)) this.writeInt(v);
        else if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 64) this.writeBigInt(BigInt(v));
        else this.writeFloat(v);
        return;
      case "string":
        this.writeString(v);
        return;
      case "boolean":
        this.ensure(1);
        this.buf[this.pos++] = v ? 0xc3 : 0xc2;
        return;
      case "bigint":
        if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) this.writeInt(Number(v));
        else this.writeBigInt(v);
        return;
      case "undefined":
        this.ensure(1);
        this.buf[this.pos++] = 0xc0;
        return;
      case "object":
        break;
      default:
        throw new MsgpackEncodeError(`cannot encode a ${typeof v}`);
    }
    if (v === null) {
      this.ensure(1);
      this.buf[this.pos++] = 0xc0;
    } else if (v instanceof Uint8Array) {
      this.writeRaw(v);
    } else if (Array.isArray(v)) {
      this.writeArrayHeader(v.length);
      for (let i = 0; i < v.length; i++) this.write(v[i], depth + 1);
    } else if (v instanceof Map) {
      this.writeMapHeader(v.size);
      for (const [k, val] of v) {
        this.write(k, depth + 1);
        this.write(val, depth + 1);
      }
    } else if (v instanceof Float64) {
      this.writeFloat(v.value);
    } else if (v instanceof Ext) {
      this.writeExt(v);
    } else if (ArrayBuffer.isView(v)) {
      this.writeRaw(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    } else if (v instanceof ArrayBuffer) {
      this.writeRaw(new Uint8Array(v));
    } else if (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null) {
      const keys = Object.keys(v);
      this.writeMapHeader(keys.length);
      for (const k of keys) {
        this.writeString(k);
        this.write((v as Record<string, unknown>)[k], depth + 1);
      }
    } else {
      throw new MsgpackEncodeError(`cannot encode an instance of ${v.constructor?.name ?? "unknown class"}`);
    }
  }

  // The smallest encoding, in the same order of tests as msgpack-c's pack_template.h
  // (msgpack_pack_real_int64), which python-msgpack uses for every int.
  private writeInt(n: number): void {
    this.ensure(9);
    const b = this.buf;
    const dv = this.view;
    let p = this.pos;
    if (n >= 0) {
      if (n < 0x80) b[p++] = n;
      else if (n < 0x100) {
        b[p++] = 0xcc;
        b[p++] = n;
      } else if (n < 0x10000) {
        b[p++] = 0xcd;
        dv.setUint16(p, n);
        p += 2;
      } else if (n < TWO_32) {
        b[p++] = 0xce;
        dv.setUint32(p, n);
        p += 4;
      } else {
        b[p++] = 0xcf;
        dv.setUint32(p, Math.floor(n / TWO_32));
        dv.setUint32(p + 4, n >>> 0);
        p += 8;
      }
    } else {
      if (n >= -32) b[p++] = n & 0xff;
      else if (n >= -128) {
        b[p++] = 0xd0;
        dv.setInt8(p, n);
        p += 1;
      } else if (n >= -32768) {
        b[p++] = 0xd1;
        dv.setInt16(p, n);
        p += 2;
      } else if (n >= -(2 ** 31)) {
        b[p++] = 0xd2;
        dv.setInt32(p, n);
        p += 4;
      } else {
        b[p++] = 0xd3;
        dv.setBigInt64(p, BigInt(n));
        p += 8;
      }
    }
    this.pos = p;
  }

  private writeBigInt(n: bigint): void {
    this.ensure(9);
    if (n >= 0n) {
      if (n >= 1n << 64n) throw new MsgpackEncodeError(`integer ${n} does not fit in 64 bits`);
      this.buf[this.pos] = 0xcf;
      this.view.setBigUint64(this.pos + 1, n);
    } else {
      if (n < -(1n << 63n)) throw new MsgpackEncodeError(`integer ${n} does not fit in 64 bits`);
      this.buf[this.pos] = 0xd3;
      this.view.setBigInt64(this.pos + 1, n);
    }
    this.pos += 9;
  }

  private writeFloat(x: number): void {
    this.ensure(9);
    this.buf[this.pos] = 0xcb;
    this.view.setFloat64(this.pos + 1, x);
    this.pos += 9;
  }

  // Raw headers as msgpack-c writes them without use_bin_type: fixraw, raw16, raw32 — never
  // str8 (0xd9), which the old spec did not have.
  private writeRawHeader(n: number): void {
    this.ensure(5);
    const b = this.buf;
    if (n < 32) b[this.pos++] = 0xa0 | n;
    else if (n < 0x10000) {
      b[this.pos] = 0xda;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else if (n < TWO_32) {
      b[this.pos] = 0xdb;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    } else {
      throw new MsgpackEncodeError(`byte string of ${n} bytes is too long`);
    }
  }

  private writeRaw(data: Uint8Array): void {
    this.writeRawHeader(data.length);
    if (this.parts !== null && data.length > this.inlineMax) {
      this.endPart();
      this.parts.push(data);
      return;
    }
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  private writeString(s: string): void {
    const len = s.length;
    if (len < 32) {
      // Short ASCII strings (dict keys, method names) skip TextEncoder.
      this.ensure(1 + len);
      const b = this.buf;
      const start = this.pos;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[start + 1 + i] = c;
      }
      if (i === len) {
        b[start] = 0xa0 | len;
        this.pos = start + 1 + len;
        return;
      }
    }
    // Encode after a worst-case 5-byte header gap, then close the gap if the header is shorter.
    this.ensure(5 + len * 3);
    const start = this.pos;
    const { written } = textEncoder.encodeInto(s, this.buf.subarray(start + 5));
    const n = written ?? 0;
    const headerLen = n < 32 ? 1 : n < 0x10000 ? 3 : 5;
    this.writeRawHeader(n);
    if (headerLen !== 5) this.buf.copyWithin(start + headerLen, start + 5, start + 5 + n);
    this.pos = start + headerLen + n;
  }

  private writeArrayHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      this.buf[this.pos] = 0xdc;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else {
      this.buf[this.pos] = 0xdd;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    }
  }

  private writeMapHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else if (n < 0x10000) {
      this.buf[this.pos] = 0xde;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else {
      this.buf[this.pos] = 0xdf;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    }
  }

  private writeExt(e: Ext): void {
    const n = e.data.length;
    if (!Number.isInteger(e.type) || e.type < -128 || e.type > 127) {
      throw new MsgpackEncodeError(`ext type ${e.type} is not in -128..127`);
    }
    this.ensure(6 + n);
    const b = this.buf;
    const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
    const f = fixed[n];
    if (f !== undefined) b[this.pos++] = f;
    else if (n < 0x100) {
      b[this.pos++] = 0xc7;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos] = 0xc8;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else if (n < TWO_32) {
      b[this.pos] = 0xc9;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    } else {
      throw new MsgpackEncodeError(`ext of ${n} bytes is too long`);
    }
    this.view.setInt8(this.pos++, e.type);
    b.set(e.data, this.pos);
    this.pos += n;
  }
}

const sharedEncoder = new Encoder();

/** Encode one value; the result is owned by the caller. */
export function encode(value: unknown): Uint8Array {
  return sharedEncoder.encodeOwned(value);
}

/**
 * Encoder.encodeParts on the shared encoder: big byte strings are not copied; the other parts
 * are copied into buffers from `alloc`, or fresh ones where it returns null or is not given.
 */
export function encodeParts(value: unknown, alloc?: (n: number) => Uint8Array | null): Uint8Array[] {
  return sharedEncoder.encodeParts(value, PART_INLINE_MAX, alloc);
}

// ---------------------------------------------------------------------------------------------
// Decoding
//
// One resumable parser serves both the one-shot and the streaming decoder. Containers being
// filled live on an explicit stack, so a message split over many chunks is never parsed
// twice: when a token is incomplete the parser stops at the token's first byte and resumes
// there after the next feed. That keeps the work per byte constant however the input is cut.

const NEED_MORE: unique symbol = Symbol("msgpack.needMore");

interface Frame {
  /** The array being filled, or null for a map. */
  arr: unknown[] | null;
  map: Map<unknown, unknown> | null;
  /** Items (arrays) or key/value slots (maps, 2 per entry) still missing. */
  left: number;
  index: number;
  key: unknown;
}

class Parser {
  buf: Uint8Array = new Uint8Array(0);
  view: DataView = new DataView(new ArrayBuffer(0));
  pos = 0;
  end = 0;
  /** When the last parse ran out of data: how many bytes past `pos` it needs at least. */
  need = 0;
  readonly stack: Frame[] = [];

  constructor(
    readonly limits: DecodeLimits,
    readonly wrapFloats: boolean,
  ) {}

  setSource(buf: Uint8Array, pos: number, end: number): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
    this.end = end;
  }

  /** Parse (or continue parsing) one message; NEED_MORE leaves `pos` at an incomplete token. */
  parse(): unknown {
    const b = this.buf;
    const dv = this.view;
    const end = this.end;
    const lim = this.limits;
    const stack = this.stack;
    for (;;) {
      let p = this.pos;
      if (p >= end) {
        this.need = 1;
        return NEED_MORE;
      }
      const t = b[p]!;
      let value: unknown;
      let size = 1; // bytes of this token including its payload
      let container = -1; // -1: scalar; else item count of a new array (isMap false) or map
      let isMap = false;
      if (t < 0x80) value = t;
      else if (t >= 0xe0) value = t - 0x100;
      else if (t < 0x90) {
        container = t & 0x0f;
        isMap = true;
      } else if (t < 0xa0) {
        container = t & 0x0f;
      } else if (t < 0xc0) {
        const n = t & 0x1f;
        if (n > lim.maxStrLen) throw this.tooLong("str", n, lim.maxStrLen);
        size = 1 + n;
        if (p + size > end) return this.needMore(size);
        value = b.subarray(p + 1, p + size);
      } else {
        // Types with a length or value after the type byte: first make sure the fixed part
        // (up to 4 length bytes or 8 value bytes) is there.
        const fixed = FIXED_TAIL[t - 0xc0]!;
        if (fixed < 0) throw new MsgpackDecodeError(`reserved type byte 0x${t.toString(16)} at offset ${p}`);
        if (p + 1 + fixed > end) return this.needMore(1 + fixed);
        const q = p + 1;
        switch (t) {
          case 0xc0:
            value = null;
            break;
          case 0xc2:
            value = false;
            break;
          case 0xc3:
            value = true;
            break;
          case 0xc4:
          case 0xc5:
          case 0xc6:
          case 0xd9:
          case 0xda:
          case 0xdb: {
            const n = t === 0xc4 || t === 0xd9 ? b[q]! : t === 0xc5 || t === 0xda ? dv.getUint16(q) : dv.getUint32(q);
            const isBin = t <= 0xc6;
            if (isBin ? n > lim.maxBinLen : n > lim.maxStrLen) {
              throw this.tooLong(isBin ? "bin" : "str", n, isBin ? lim.maxBinLen : lim.maxStrLen);
            }
            size = 1 + fixed + n;
            if (p + size > end) return this.needMore(size);
            value = b.subarray(q + fixed, p + size);
            break;
          }
          case 0xc7:
          case 0xc8:
          case 0xc9: {
            const n = t === 0xc7 ? b[q]! : t === 0xc8 ? dv.getUint16(q) : dv.getUint32(q);
            if (n > lim.maxExtLen) throw this.tooLong("ext", n, lim.maxExtLen);
            size = 1 + fixed + 1 + n;
            if (p + size > end) return this.needMore(size);
            value = new Ext(dv.getInt8(q + fixed), b.subarray(q + fixed + 1, p + size));
            break;
          }
          case 0xd4:
          case 0xd5:
          case 0xd6:
          case 0xd7:
          case 0xd8: {
            const n = fixed - 1;
            if (n > lim.maxExtLen) throw this.tooLong("ext", n, lim.maxExtLen);
            size = 1 + fixed;
            value = new Ext(dv.getInt8(q), b.subarray(q + 1, q + fixed));
            break;
          }
          case 0xca:
            value = this.wrapFloats ? new Float64(dv.getFloat32(q)) : dv.getFloat32(q);
            size = 5;
            break;
          case 0xcb:
            value = this.wrapFloats ? new Float64(dv.getFloat64(q)) : dv.getFloat64(q);
            size = 9;
            break;
          case 0xcc:
            value = b[q];
            size = 2;
            break;
          case 0xcd:
            value = dv.getUint16(q);
            size = 3;
            break;
          case 0xce:
            value = dv.getUint32(q);
            size = 5;
            break;
          case 0xcf: {
            const hi = dv.getUint32(q);
            value = hi < 0x200000 ? hi * TWO_32 + dv.getUint32(q + 4) : dv.getBigUint64(q);
            size = 9;
            break;
          }
          case 0xd0:
            value = dv.getInt8(q);
            size = 2;
            break;
          case 0xd1:
            value = dv.getInt16(q);
            size = 3;
            break;
          case 0xd2:
            value = dv.getInt32(q);
            size = 5;
            break;
          case 0xd3: {
            const hi = dv.getInt32(q);
            value =
              hi >= -0x200000 && hi < 0x200000 ? hi * TWO_32 + dv.getUint32(q + 4) : dv.getBigInt64(q);
            size = 9;
            break;
          }
          case 0xdc:
          case 0xdd:
            container = t === 0xdc ? dv.getUint16(q) : dv.getUint32(q);
            size = 1 + fixed;
            break;
          case 0xde:
          case 0xdf:
            container = t === 0xde ? dv.getUint16(q) : dv.getUint32(q);
            isMap = true;
            size = 1 + fixed;
            break;
          default:
            throw new MsgpackDecodeError(`unhandled type byte 0x${t.toString(16)}`);
        }
      }
      p += size;
      this.pos = p;

      if (container >= 0) {
        if (isMap ? container > lim.maxMapLen : container > lim.maxArrayLen) {
          throw this.tooLong(isMap ? "map" : "array", container, isMap ? lim.maxMapLen : lim.maxArrayLen);
        }
        if (container > 0) {
          if (stack.length >= lim.maxDepth) {
            throw new MsgpackLimitError(`nesting deeper than ${lim.maxDepth} at offset ${p - size}`);
          }
          // A length word can claim billions of items; never allocate more than the bytes
          // present could possibly hold (every item takes at least one byte).
          stack.push({
            arr: isMap ? null : new Array(Math.min(container, end - p)),
            map: isMap ? new Map() : null,
            left: isMap ? container * 2 : container,
            index: 0,
            key: undefined,
          });
          continue;
        }
        value = isMap ? new Map() : [];
      }

      // Attach the finished value to its container; finished containers attach upward.
      for (;;) {
        const top = stack[stack.length - 1];
        if (top === undefined) return value;
        if (top.arr !== null) {
          top.arr[top.index++] = value;
        } else if ((top.left & 1) === 0) {
          top.key = value;
        } else {
          top.map!.set(top.key, value);
          top.key = undefined;
        }
        if (--top.left > 0) break;
        stack.pop();
        value = top.arr ?? top.map;
      }
    }
  }

  private needMore(tokenSize: number): typeof NEED_MORE {
    this.need = tokenSize;
    return NEED_MORE;
  }

  private tooLong(kind: string, n: number, max: number): MsgpackLimitError {
    return new MsgpackLimitError(`${kind} length ${n} exceeds max_${kind}_len(${max}) at offset ${this.pos}`);
  }
}

// Bytes following the type byte that must be present before the type can be interpreted
// (the length word, or the whole value for fixed-size types); -1 marks 0xc1 (never used).
const FIXED_TAIL = new Int8Array([
  0, -1, 0, 0, // c0 nil, c1, c2 false, c3 true
  1, 2, 4, // c4-c6 bin8/16/32
  1, 2, 4, // c7-c9 ext8/16/32
  4, 8, // ca float32, cb float64
  1, 2, 4, 8, // cc-cf uint
  1, 2, 4, 8, // d0-d3 int
  2, 3, 5, 9, 17, // d4-d8 fixext 1/2/4/8/16 (type byte + data)
  1, 2, 4, // d9-db str8/16/32
  2, 4, // dc-dd array16/32
  2, 4, // de-df map16/32
]);

function limitsOf(options: DecodeOptions): DecodeLimits {
  const lim = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as Array<keyof DecodeLimits>) {
    const v = options[k];
    if (v !== undefined) lim[k] = v;
  }
  return lim;
}

/**
 * Decode exactly one message (python's unpackb): truncated input and trailing bytes are
 * errors. Byte strings in the result are views into `bytes`.
 */
export function decode(bytes: Uint8Array, options: DecodeOptions = {}): unknown {
  const lim = limitsOf(options);
  if (bytes.length > lim.maxBufferSize) {
    throw new MsgpackLimitError(`message of ${bytes.length} bytes exceeds max_buffer_size(${lim.maxBufferSize})`);
  }
  const parser = new Parser(lim, options.floatsAsFloat64 ?? false);
  parser.setSource(bytes, 0, bytes.length);
  const value = parser.parse();
  if (value === NEED_MORE) throw new MsgpackDecodeError(`truncated input (${bytes.length} bytes)`);
  if (parser.pos !== bytes.length) {
    throw new MsgpackDecodeError(`extra data after the message at offset ${parser.pos} of ${bytes.length}`);
  }
  return value;
}

/**
 * Incremental decoder for a byte stream carrying consecutive messages (python's
 * Unpacker.feed + iteration). Truncated input waits for more; malformed or oversized input
 * throws from `next()`, after which the decoder stays failed (the stream has no resync point).
 */
/**
 * Released input buffers a StreamDecoder keeps for reuse (the biggest). With the session's
 * limit on requests in flight, one buffer is being read into and one holds the request being
 * handled; a third, kept, takes the next big request without a new allocation.
 */
const POOL_BUFFERS = 1;
/**
 * Buffers for a token over BIG_MIN bytes are at least BIG_BUFFER_SIZE: borg's chunks are up to
 * 8 MiB (its default chunker's maximum), so one size fits them all and a kept buffer always
 * fits the next one. Growing buffers step by step instead (a 2 MiB chunk, then 3, then 8) left
 * each outgrown one to the collector, and the allocator hands freed memory back to the system
 * only later: a 1 GiB create peaked 8-40 MiB higher.
 */
const BIG_MIN = 1 << 20;
const BIG_BUFFER_SIZE = (8 << 20) + (64 << 10);
/** Smallest buffer reserve() sets up for reading. */
const READ_BUFFER_SIZE = 256 * 1024;

export class StreamDecoder implements Iterable<unknown> {
  private readonly parser: Parser;
  private readonly limits: DecodeLimits;
  /** The bytes being parsed: a caller's chunk (not owned) or our own growable buffer. */
  private buf: Uint8Array = new Uint8Array(0);
  private owned = false;
  private start = 0; // first unconsumed byte in buf
  private end = 0; // end of valid data in buf
  /** Stream offsets: of buf[start], and of the first byte of the message being parsed. */
  private startAbs = 0;
  private msgStartAbs = 0;
  private failed: Error | null = null;
  /** Messages returned so far; message n (1-based) is the n-th one next() returned. */
  private returnedCount = 0;
  /** Owned buffers we moved away from, with the number of the last message that may point into them. */
  private retired: Array<{ buf: Uint8Array; lastMessage: number }> = [];
  /** Buffers no message points into any more, ready to be written again. */
  private pool: Uint8Array[] = [];

  constructor(options: DecodeOptions = {}) {
    this.limits = limitsOf(options);
    this.parser = new Parser(this.limits, options.floatsAsFloat64 ?? false);
  }

  /** How many messages next() has returned (the number of the last one). */
  get returned(): number {
    return this.returnedCount;
  }

  /**
   * The caller is done with messages 1..n (nothing it keeps points into them): buffers that only
   * they used may be reused for later input. Fresh large buffers cost page faults on first
   * touch, which dominates the cost of receiving big objects; recycling avoids that. Callers
   * that never call this get fresh buffers, as before.
   */
  release(n: number): void {
    while (this.retired.length > 0 && this.retired[0]!.lastMessage <= n) {
      const { buf } = this.retired.shift()!;
      // keep the biggest: they fit every request, and a few serve a stream of any sizes
      let i = this.pool.length;
      while (i > 0 && this.pool[i - 1]!.length > buf.length) i--;
      this.pool.splice(i, 0, buf);
      // what is dropped is garbage holding memory: it brings the next collection nearer
      if (this.pool.length > POOL_BUFFERS) trafficPassed(this.pool.shift()!.length);
    }
  }

  /**
   * Space to read the next input into directly, at least `min` bytes, at the end of a buffer
   * the decoder owns; call wrote(n) with the number of bytes placed at its start. This saves
   * the copy feed() makes of chunks that continue a message, and lets input buffers be
   * recycled (see release()).
   */
  reserve(min = 64 * 1024): Uint8Array {
    if (this.failed) throw this.failed;
    if (this.owned && this.buf.length - this.end >= min) return this.buf.subarray(this.end);
    const pending = this.end - this.start;
    const next = this.allocate(Math.max(pending + min, this.parser.need), pending + min);
    next.set(this.buf.subarray(this.start, this.end));
    this.retire();
    this.buf = next;
    this.owned = true;
    this.start = 0;
    this.end = pending;
    return next.subarray(pending);
  }

  /** `n` bytes were read into the space reserve() returned. */
  wrote(n: number): void {
    if (n < 0 || this.end + n > this.buf.length || !this.owned) throw new Error("StreamDecoder.wrote() without reserve()");
    this.end += n;
  }

  /**
   * We are moving away from the current buffer: it may be reused once the messages in it are
   * released. A message still being parsed counts too: the resumable parser already holds views
   * of its earlier parts into this buffer.
   */
  private retire(): void {
    if (!this.owned) return;
    const partial = this.parser.stack.length > 0 ? 1 : 0;
    this.retired.push({ buf: this.buf, lastMessage: this.returnedCount + partial });
  }

  /**
   * A buffer for at least `want` bytes (never less than `least`): the smallest pooled one that
   * is big enough, else a new one of READ_BUFFER_SIZE, or `want` rounded up to 64 KiB, and at
   * least BIG_BUFFER_SIZE for a big token. Beyond what the limits allow a message to be, the
   * buffer is the size asked for.
   */
  private allocate(want: number, least: number): Uint8Array {
    for (let i = 0; i < this.pool.length; i++) {
      if (this.pool[i]!.length >= want) return this.pool.splice(i, 1)[0]!;
    }
    const step = want > READ_BUFFER_SIZE ? 64 << 10 : READ_BUFFER_SIZE;
    let size = Math.ceil(want / step) * step;
    if (want > BIG_MIN) size = Math.max(size, BIG_BUFFER_SIZE);
    if (size > this.limits.maxBufferSize + 16) size = Math.max(least, Math.min(want, this.limits.maxBufferSize + 16));
    return new Uint8Array(size);
  }

  /** Bytes received but not yet part of a returned message. */
  get buffered(): number {
    return this.startAbs + (this.end - this.start) - this.msgStartAbs;
  }

  /** Stream offset just past the last message returned: message sizes are differences of this. */
  get consumed(): number {
    return this.msgStartAbs;
  }

  /** Is a message partly received (so end of input now would cut it)? */
  get inMessage(): boolean {
    return this.end > this.start || this.parser.stack.length > 0;
  }

  /** Add bytes. The decoder may keep views into `chunk`: do not modify it afterwards. */
  feed(chunk: Uint8Array): void {
    if (this.failed) throw this.failed;
    if (chunk.length === 0) return;
    const pending = this.end - this.start;
    if (pending === 0) {
      this.retire();
      this.buf = chunk;
      this.owned = false;
      this.start = 0;
      this.end = chunk.length;
      return;
    }
    if (this.owned && this.buf.length - this.end >= chunk.length) {
      // Appending above `end` never touches bytes that earlier views point into.
      this.buf.set(chunk, this.end);
      this.end += chunk.length;
      return;
    }
    // Move the pending bytes to a fresh buffer; the old one stays intact for existing views.
    const next = this.allocate(Math.max(pending + chunk.length, this.parser.need), pending + chunk.length);
    next.set(this.buf.subarray(this.start, this.end));
    next.set(chunk, pending);
    this.retire();
    this.buf = next;
    this.owned = true;
    this.start = 0;
    this.end = pending + chunk.length;
  }

  /** The next complete message, or `undefined` when more input is needed. */
  next(): { done: false; value: unknown } | { done: true; value: undefined } {
    if (this.failed) throw this.failed;
    const parser = this.parser;
    const available = this.end - this.start;
    if (available === 0 || available < parser.need) {
      this.checkSize();
      return { done: true, value: undefined };
    }
    parser.setSource(this.buf, this.start, this.end);
    let value: unknown;
    try {
      value = parser.parse();
    } catch (e) {
      this.failed = e as Error;
      throw e;
    }
    this.startAbs += parser.pos - this.start;
    this.start = parser.pos;
    if (value === NEED_MORE) {
      this.checkSize();
      return { done: true, value: undefined };
    }
    parser.need = 0;
    this.returnedCount++;
    const size = this.startAbs - this.msgStartAbs;
    this.msgStartAbs = this.startAbs;
    if (size > this.limits.maxBufferSize) {
      this.failed = new MsgpackLimitError(`message of ${size} bytes exceeds max_buffer_size(${this.limits.maxBufferSize})`);
      throw this.failed;
    }
    if (this.start === this.end && !this.owned) {
      this.buf = new Uint8Array(0);
      this.start = this.end = 0;
    }
    return { done: false, value };
  }

  [Symbol.iterator](): Iterator<unknown> {
    return { next: () => this.next() };
  }

  private checkSize(): void {
    const size = this.buffered;
    if (size > this.limits.maxBufferSize) {
      this.failed = new MsgpackLimitError(
        `incomplete message of ${size} bytes exceeds max_buffer_size(${this.limits.maxBufferSize})`,
      );
      throw this.failed;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers for decoded values

const textDecoder = new TextDecoder("utf-8");
const strictTextDecoder = new TextDecoder("utf-8", { fatal: true });

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

export function isMap(v: unknown): v is Map<unknown, unknown> {
  return v instanceof Map;
}

/** Does `b` hold exactly the ASCII characters of `name`? */
export function bytesEqualAscii(b: Uint8Array, name: string): boolean {
  if (b.length !== name.length) return false;
  for (let i = 0; i < b.length; i++) if (b[i] !== name.charCodeAt(i)) return false;
  return true;
}

/**
 * The value stored under an ASCII key name, whether the key was decoded as bytes or is a JS
 * string. Like a python dict built from msgpack, a repeated key counts with its last value.
 */
export function mapGet(m: Map<unknown, unknown>, name: string): unknown {
  let found: unknown = undefined;
  for (const [k, v] of m) {
    if (k instanceof Uint8Array ? bytesEqualAscii(k, name) : k === name) found = v;
  }
  return found;
}

export function mapHas(m: Map<unknown, unknown>, name: string): boolean {
  for (const k of m.keys()) if (k instanceof Uint8Array ? bytesEqualAscii(k, name) : k === name) return true;
  return false;
}

/** A map with byte keys as a Map keyed by their UTF-8 text (last duplicate wins, like python). */
export function mapWithStringKeys(m: Map<unknown, unknown>): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [k, v] of m) out.set(k instanceof Uint8Array ? textDecoder.decode(k) : String(k), v);
  return out;
}

/** UTF-8 text of decoded bytes; invalid sequences become U+FFFD (python's errors="replace"). */
export function bytesToString(b: Uint8Array): string {
  return textDecoder.decode(b);
}

/** UTF-8 text of decoded bytes; throws a TypeError on invalid UTF-8 (python's strict decode()). */
export function bytesToStringStrict(b: Uint8Array): string {
  return strictTextDecoder.decode(b);
}

export function stringToBytes(s: string): Uint8Array {
  return textEncoder.encode(s);
}
