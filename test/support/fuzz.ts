// A seeded mutational fuzzer for RPC byte streams: the client-to-server bytes of real borg
// sessions, cut into their msgpack frames and changed the ways a broken or hostile client
// could change them (bit flips, truncation, duplicated, reordered and spliced frames, garbage,
// huge length prefixes, deep nesting). The same seed always gives the same case.

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
    switch (pick(9)) {
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
