// A seeded mutational fuzzer for RPC byte streams: the client-to-server bytes of real borg
// sessions, cut into their msgpack frames and changed the ways a broken or hostile client
// could change them (bit flips, truncation, duplicated, reordered and spliced frames, garbage,
// huge length prefixes, deep nesting), and changed in meaning: a value inside a decoded request
// (its method, an argument, a key) replaced by one of another type or an extreme one, and the
// request encoded again. The same seed always gives the same case.

import { decode, encode } from "../../src/util/msgpack.ts";
import { prng } from "./data.ts";

/** Offsets where each top-level msgpack value of `b` ends (as far as they are complete). */
export function frameEnds(b: Uint8Array): number[] {
  const ends: number[] = [];
  let p = 0;
  while (p < b.length) {
    const end = skipValue(b, p);
    if (end === null) break;
    ends.push(end);
    p = end;
  }
  return ends;
}

/** End offset of the msgpack value starting at p, or null when it runs past the end. */
function skipValue(b: Uint8Array, start: number): number | null {
  let p = start;
  let pending = 1; // values still to skip
  while (pending > 0) {
    if (p >= b.length) return null;
    const t = b[p]!;
    pending--;
    const be = (off: number, n: number) => {
      if (p + off + n > b.length) return -1;
      let v = 0;
      for (let i = 0; i < n; i++) v = v * 256 + b[p + off + i]!;
      return v;
    };
    let len: number;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) p += 1;
    else if (t >= 0x80 && t <= 0x8f) (pending += 2 * (t & 0x0f)), (p += 1);
    else if (t >= 0x90 && t <= 0x9f) (pending += t & 0x0f), (p += 1);
    else if (t >= 0xa0 && t <= 0xbf) p += 1 + (t & 0x1f);
    else if (t === 0xc4 || t === 0xd9) (len = be(1, 1)), (p += len < 0 ? b.length : 2 + len);
    else if (t === 0xc5 || t === 0xda) (len = be(1, 2)), (p += len < 0 ? b.length : 3 + len);
    else if (t === 0xc6 || t === 0xdb) (len = be(1, 4)), (p += len < 0 ? b.length : 5 + len);
    else if (t === 0xcc || t === 0xd0) p += 2;
    else if (t === 0xcd || t === 0xd1) p += 3;
    else if (t === 0xca || t === 0xce || t === 0xd2) p += 5;
    else if (t === 0xcb || t === 0xcf || t === 0xd3) p += 9;
    else if (t === 0xdc) (len = be(1, 2)), (pending += Math.max(len, 0)), (p += 3);
    else if (t === 0xdd) (len = be(1, 4)), (pending += Math.max(len, 0)), (p += 5);
    else if (t === 0xde) (len = be(1, 2)), (pending += 2 * Math.max(len, 0)), (p += 3);
    else if (t === 0xdf) (len = be(1, 4)), (pending += 2 * Math.max(len, 0)), (p += 5);
    else if (t === 0xd4) p += 3;
    else if (t === 0xd5) p += 4;
    else if (t === 0xd6) p += 6;
    else if (t === 0xd7) p += 10;
    else if (t === 0xd8) p += 18;
    else if (t === 0xc7) (len = be(1, 1)), (p += len < 0 ? b.length : 3 + len);
    else if (t === 0xc8) (len = be(1, 2)), (p += len < 0 ? b.length : 4 + len);
    else if (t === 0xc9) (len = be(1, 4)), (p += len < 0 ? b.length : 6 + len);
    else return null; // 0xc1: never used
    if (pending > 1e7) return null;
  }
  return p <= b.length ? p : null;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
}

function frames(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const end of frameEnds(b)) (out.push(b.subarray(prev, end)), (prev = end));
  if (prev < b.length) out.push(b.subarray(prev));
  return out;
}

const enc = new TextEncoder();
function str(s: string): Uint8Array {
  const b = enc.encode(s);
  return concat([new Uint8Array([0xa0 | b.length]), b]);
}

/** Frames a hostile client could send: lengths far beyond any limit, nesting far too deep. */
function hostileFrame(rand: () => number): Uint8Array {
  const huge = [0xff, 0xff, 0xff, 0xf0];
  const request = (args: Uint8Array) => concat([new Uint8Array([0x83]), str("i"), new Uint8Array([0x2a]), str("m"), str("put"), str("a"), args]);
  const depth = 1000 + Math.floor(rand() * 200_000);
  switch (Math.floor(rand() * 8)) {
    case 0:
      return new Uint8Array([0xc6, ...huge]); // bin 32 of ~4 GiB
    case 1:
      return new Uint8Array([0xdd, ...huge]); // array 32 of ~4 billion
    case 2:
      return new Uint8Array([0xdf, ...huge]); // map 32 of ~4 billion
    case 3:
      return new Uint8Array([0xdb, ...huge, 0x41, 0x41]); // str 32, mostly missing
    case 4:
      // a put whose data claims 2 GiB
      return request(concat([new Uint8Array([0x82]), str("id"), new Uint8Array([0xc4, 32, ...new Uint8Array(32)]), str("data"), new Uint8Array([0xc6, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3])]));
    case 5:
      return concat([new Uint8Array(depth).fill(0x91), new Uint8Array([0xc0])]); // [[[[...nil]]]]
    case 6:
      return request(concat([new Uint8Array(depth).fill(0x81).map((v, i) => (i % 2 ? 0xa1 : v)), new Uint8Array([0xc0])])); // {"": {"": ...}} badly
    default:
      return request(concat([new Uint8Array([0x81]), str("id"), new Uint8Array(depth).fill(0x91), new Uint8Array([0xc0])]));
  }
}

const te = new TextEncoder();
const METHODS = ["negotiate", "open", "close", "put", "get", "get_many", "delete", "list", "scan", "commit", "rollback", "check", "destroy", "break_lock", "save_key", "load_key", "get_free_nonce", "commit_nonce_reservation", "__len__", "inject_exception", "nonexistent"];

function weirdValue(rand: () => number): unknown {
  const pick = (n: number) => Math.floor(rand() * n);
  switch (pick(16)) {
    case 0:
      return null;
    case 1:
      return pick(2) === 0;
    case 2:
      return [0, -1, 1, 255, 65536, 2 ** 31, 2 ** 32 + 5, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER][pick(9)];
    case 3:
      return [2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n][pick(3)];
    case 4:
      return 1.5;
    case 5:
      return new Uint8Array(0);
    case 6:
      return new Uint8Array([31, 33, 32, 64][pick(4)]!).map(() => pick(256));
    case 7:
      return te.encode(METHODS[pick(METHODS.length)]!);
    case 8:
      return te.encode(["../../etc", "/", "", "\0", "~root", "a".repeat(5000)][pick(6)]!);
    case 9:
      return [];
    case 10:
      return new Map();
    case 11:
      return [1, 2, 3, new Uint8Array(32)];
    case 12:
      return new Map(Array.from({ length: 1 + pick(40) }, (_, i) => [te.encode(`k${i}`), i]));
    case 13:
      return [[[[[[[[[[null]]]]]]]]]];
    case 14:
      return new Uint8Array(1 + pick(100_000));
    default:
      return te.encode(["limit", "marker", "id", "ids", "data", "path", "exclusive", "lock_wait", "repair", "is_preloaded"][pick(10)]!);
  }
}

/** Every place in a decoded value where another value can go: [container, key]. */
function slots(v: unknown, out: Array<[unknown[] | Map<unknown, unknown>, unknown, "key" | "value"]>, depth = 0): void {
  if (depth > 8) return;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      out.push([v, i, "value"]);
      slots(v[i], out, depth + 1);
    }
  } else if (v instanceof Map) {
    for (const [k, val] of v) {
      out.push([v, k, "value"]);
      out.push([v, k, "key"]);
      slots(val, out, depth + 1);
    }
  }
}

/** The frame with one value inside replaced, or null when the frame does not decode. */
function changeMeaning(frame: Uint8Array, rand: () => number): { bytes: Uint8Array; what: string } | null {
  let v: unknown;
  try {
    v = decode(frame);
  } catch {
    return null;
  }
  const all: Array<[unknown[] | Map<unknown, unknown>, unknown, "key" | "value"]> = [];
  slots(v, all);
  if (all.length === 0) return null;
  const [container, key, which] = all[Math.floor(rand() * all.length)]!;
  const value = weirdValue(rand);
  if (Array.isArray(container)) container[key as number] = value;
  else if (which === "value") container.set(key, value);
  else {
    const old = container.get(key);
    container.delete(key);
    container.set(value, old);
  }
  try {
    return { bytes: encode(v), what: `${which} replaced by ${describeValue(value)}` };
  } catch {
    return null;
  }
}

function describeValue(v: unknown): string {
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (v instanceof Map) return `map(${v.size})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  return String(v);
}

export interface FuzzCase {
  bytes: Uint8Array;
  /** What was done, for the failure message. */
  mutations: string[];
}

/** Case `seed`: one of `streams`, changed one to three times. */
export function fuzzCase(streams: readonly Uint8Array[], seed: number): FuzzCase {
  const rand = prng(seed * 7919 + 17);
  const pick = (n: number) => Math.floor(rand() * n);
  const base = pick(streams.length);
  let fs = frames(streams[base]!);
  const mutations: string[] = [`stream ${base} (${fs.length} frames)`];
  const count = 1 + pick(3);
  for (let m = 0; m < count; m++) {
    const at = pick(fs.length + 1);
    switch (pick(11)) {
      case 0: {
        // bit flips near the start of a frame, where the structure is
        const i = Math.min(at, fs.length - 1);
        const f = Uint8Array.from(fs[i]!);
        const n = 1 + pick(4);
        for (let k = 0; k < n; k++) {
          const pos = pick(Math.min(f.length, 96));
          f[pos]! ^= 1 << pick(8);
        }
        fs[i] = f;
        mutations.push(`${n} bit flips in frame ${i}`);
        break;
      }
      case 1: {
        // bit flips anywhere
        const all = concat(fs);
        const n = 1 + pick(16);
        for (let k = 0; k < n; k++) all[pick(all.length)]! ^= 1 << pick(8);
        fs = frames(all);
        mutations.push(`${n} bit flips anywhere`);
        break;
      }
      case 2: {
        const all = concat(fs);
        const cut = pick(all.length);
        fs = frames(all.subarray(0, cut));
        mutations.push(`truncated at ${cut} of ${all.length}`);
        break;
      }
      case 3: {
        const i = Math.min(at, fs.length - 1);
        const times = 1 + pick(50);
        fs.splice(i, 0, ...Array.from({ length: times }, () => fs[i]!));
        mutations.push(`frame ${i} duplicated ${times} times`);
        break;
      }
      case 4: {
        const other = frames(streams[pick(streams.length)]!);
        const from = pick(other.length);
        const n = 1 + pick(20);
        fs.splice(at, 0, ...other.slice(from, from + n));
        mutations.push(`${n} frames of another session spliced in at ${at}`);
        break;
      }
      case 5: {
        const i = pick(fs.length);
        const j = pick(fs.length);
        [fs[i], fs[j]] = [fs[j]!, fs[i]!];
        mutations.push(`frames ${i} and ${j} swapped`);
        break;
      }
      case 6: {
        const g = new Uint8Array(1 + pick(300)).map(() => pick(256));
        fs.splice(at, 0, g);
        mutations.push(`${g.length} garbage bytes at frame ${at}`);
        break;
      }
      case 7: {
        fs.splice(at, 0, hostileFrame(rand));
        mutations.push(`hostile frame at ${at}`);
        break;
      }
      case 9:
      case 10: {
        // a request changed in meaning (twice as likely: it reaches the most code)
        const i = Math.min(at, fs.length - 1);
        const changed = changeMeaning(fs[i]!, rand);
        if (changed) {
          fs[i] = changed.bytes;
          mutations.push(`frame ${i}: ${changed.what}`);
        }
        break;
      }
      default: {
        // a frame cut short and the stream going on
        const i = Math.min(at, fs.length - 1);
        fs[i] = fs[i]!.subarray(0, pick(fs[i]!.length));
        mutations.push(`frame ${i} cut short`);
      }
    }
  }
  return { bytes: concat(fs), mutations };
}

/** Replace every occurrence of `from` in `b` by `to` (same length). */
export function replaceBytes(b: Uint8Array, from: Uint8Array, to: Uint8Array): Uint8Array {
  if (from.length !== to.length) throw new Error("replaceBytes needs equal lengths");
  const out = Uint8Array.from(b);
  outer: for (let i = 0; i + from.length <= out.length; i++) {
    for (let j = 0; j < from.length; j++) if (out[i + j] !== from[j]) continue outer;
    out.set(to, i);
    i += from.length - 1;
  }
  return out;
}
