// Tests for util/msgpack.ts against python-msgpack (the library borg uses), byte for byte.

import { describe, expect, test } from "bun:test";
import {
  Ext,
  Float64,
  MsgpackDecodeError,
  MsgpackEncodeError,
  MsgpackLimitError,
  StreamDecoder,
  borgUnpackerLimits,
  bytesToString,
  decode,
  encode,
  encodeParts,
  mapGet,
  mapHas,
  mapWithStringKeys,
} from "../../../src/util/msgpack.ts";

const PYTHON = "/usr/bin/python3";

function python(script: string, input?: Uint8Array): Uint8Array {
  const r = Bun.spawnSync([PYTHON, "-c", script], {
    stdin: input === undefined ? "ignore" : new Blob([new Uint8Array(input)]),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`python failed (${r.exitCode}): ${r.stderr.toString()}`);
  return new Uint8Array(r.stdout);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
const ascii = (s: string) => new TextEncoder().encode(s);

/** python-msgpack's packb(use_bin_type=False) of values given as python literals. */
function pyPack(exprs: string[]): string[] {
  const script = `
import msgpack, sys
for line in sys.stdin.read().splitlines():
    sys.stdout.write(msgpack.packb(eval(line), use_bin_type=False).hex() + "\\n")
`;
  return new TextDecoder().decode(python(script, ascii(exprs.join("\n")))).trim().split("\n");
}

describe("encode matches python-msgpack use_bin_type=False", () => {
  const ints = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -31, -32, -33, -127, -128, -129,
    -32767, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1,
  ];
  test("integers at every encoding boundary", () => {
    expect(ints.map((n) => hex(encode(n)))).toEqual(pyPack(ints.map(String)));
  });

  test("bigints up to the 64-bit limits", () => {
    const big = [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, -(2n ** 53n) - 1n, -(2n ** 63n), 5n, -5n];
    expect(big.map((n) => hex(encode(n)))).toEqual(pyPack(big.map(String)));
    expect(() => encode(2n ** 64n)).toThrow(MsgpackEncodeError);
    expect(() => encode(-(2n ** 63n) - 1n)).toThrow(MsgpackEncodeError);
  });

  test("byte strings and strings use raw types only (no str8, no bin)", () => {
    const lens = [0, 1, 31, 32, 255, 256, 65535, 65536, 70000];
    const ours = lens.map((n) => hex(encode(new Uint8Array(n).fill(0xab))));
    expect(ours).toEqual(pyPack(lens.map((n) => `b"\\xab" * ${n}`)));
    const strs = ["", "version", "x".repeat(31), "x".repeat(32), "ü".repeat(15), "ü".repeat(16), "€".repeat(30000), "😀ok"];
    expect(strs.map((s) => hex(encode(s)))).toEqual(pyPack(strs.map((s) => JSON.stringify(s))));
  });

  test("floats, booleans, nil, containers, ext", () => {
    const values: unknown[] = [
      1.5,
      -0.25,
      1e300,
      new Float64(1),
      true,
      false,
      null,
      [],
      [1, 2, 3],
      new Array(16).fill(0),
      new Array(70000).fill(1),
      new Map(),
      new Map<unknown, unknown>([[ascii("a"), 1], [2, ascii("b")]]),
      { i: 1, m: "get", a: { id: new Uint8Array(32) } },
      new Map(Array.from({ length: 16 }, (_, i) => [i, i])),
      new Map(Array.from({ length: 70000 }, (_, i) => [i, null])),
      new Ext(5, new Uint8Array([1])),
      new Ext(0, new Uint8Array(4)),
      new Ext(7, new Uint8Array(8)),
      new Ext(7, new Uint8Array(16)),
      new Ext(7, new Uint8Array(3)),
      new Ext(7, new Uint8Array(300)),
      new Ext(7, new Uint8Array(70000)),
    ];
    const py = [
      "1.5",
      "-0.25",
      "1e300",
      "1.0",
      "True",
      "False",
      "None",
      "[]",
      "[1, 2, 3]",
      "[0] * 16",
      "[1] * 70000",
      "{}",
      "{b'a': 1, 2: b'b'}",
      "{b'i': 1, b'm': b'get', b'a': {b'id': bytes(32)}}",
      "{i: i for i in range(16)}",
      "{i: None for i in range(70000)}",
      "msgpack.ExtType(5, b'\\x01')",
      "msgpack.ExtType(0, bytes(4))",
      "msgpack.ExtType(7, bytes(8))",
      "msgpack.ExtType(7, bytes(16))",
      "msgpack.ExtType(7, bytes(3))",
      "msgpack.ExtType(7, bytes(300))",
      "msgpack.ExtType(7, bytes(70000))",
    ];
    expect(values.map((v) => hex(encode(v)))).toEqual(pyPack(py));
  });

  test("unencodable values are a clear error", () => {
    expect(() => encode(() => 1)).toThrow(MsgpackEncodeError);
    expect(() => encode(Symbol("x"))).toThrow(MsgpackEncodeError);
    expect(() => encode(new Date())).toThrow(MsgpackEncodeError);
    const cyclic: unknown[] = [];
    cyclic.push(cyclic);
    expect(() => encode(cyclic)).toThrow(MsgpackEncodeError);
  });
});

// A seeded random corpus made by python: each line holds packb(use_bin_type=False) and
// packb(use_bin_type=True) of one value. Decoding either and re-encoding must give the first
// byte for byte (python's canonical borg encoding).
const CORPUS_SCRIPT = `
import msgpack, random, sys
rnd = random.Random(20240601)
def scalar():
    k = rnd.randrange(9)
    if k == 0: return rnd.randrange(-2**63, 2**64)
    if k == 1: return rnd.choice([0, 1, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536, 2**32, -2**31, -2**31-1, 2**53, 2**63, -2**63, 2**64-1])
    if k == 2: return rnd.randrange(-300, 300)
    if k == 3: return bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 5, 31, 32, 33, 200, 255, 256, 1000])))
    if k == 4: return "".join(rnd.choice("aZ0 äö€😀") for _ in range(rnd.randrange(40)))
    if k == 5: return rnd.choice([None, True, False])
    if k == 6: return rnd.uniform(-1e9, 1e9)
    if k == 7: return msgpack.ExtType(rnd.randrange(0, 128), bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 2, 4, 8, 16, 3, 100]))))
    return rnd.choice([0.5, -0.0, 1e-300, 2.0])
def value(depth):
    k = rnd.randrange(10 if depth < 4 else 6)
    if k < 6: return scalar()
    if k < 8: return [value(depth + 1) for _ in range(rnd.choice([0, 1, 3, 15, 16, 17, 40]))]
    d = {}
    for _ in range(rnd.choice([0, 1, 2, 15, 16, 20])):
        key = rnd.choice([lambda: bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40))), lambda: rnd.randrange(-1000, 1000), lambda: "k%d" % rnd.randrange(10**6)])()
        d[key] = value(depth + 1)
    return d
for _ in range(400):
    v = value(0)
    sys.stdout.write(msgpack.packb(v, use_bin_type=False).hex() + " " + msgpack.packb(v, use_bin_type=True).hex() + "\\n")
`;

let corpus: Array<[Uint8Array, Uint8Array]> | undefined;
function corpusPairs(): Array<[Uint8Array, Uint8Array]> {
  if (corpus === undefined) {
    const lines = new TextDecoder().decode(python(CORPUS_SCRIPT)).trim().split("\n");
    corpus = lines.map((l) => l.split(" ").map(unhex) as [Uint8Array, Uint8Array]);
  }
  return corpus;
}

describe("python-msgpack corpus", () => {

  test("decode + re-encode reproduces python's bytes exactly", () => {
    const pairs = corpusPairs();
    expect(pairs.length).toBe(400);
    for (const [old, modern] of pairs) {
      expect(hex(encode(decode(old, { floatsAsFloat64: true })))).toBe(hex(old));
      expect(hex(encode(decode(modern, { floatsAsFloat64: true })))).toBe(hex(old));
    }
  });

  test("python decodes our re-encoding to the same value", () => {
    const pairs = corpusPairs();
    const ours = pairs.map(([old]) => hex(encode(decode(old, { floatsAsFloat64: true }))));
    const script = `
import msgpack, sys
for line in sys.stdin.read().splitlines():
    a, b = line.split(" ")
    assert msgpack.unpackb(bytes.fromhex(a), raw=True, strict_map_key=False) == msgpack.unpackb(bytes.fromhex(b), raw=True, strict_map_key=False)
print("ok")
`;
    const input = pairs.map(([old], i) => `${hex(old)} ${ours[i]}`).join("\n");
    expect(new TextDecoder().decode(python(script, ascii(input))).trim()).toBe("ok");
  });

  test("streaming decode gives the same messages however the stream is cut", () => {
    const pairs = corpusPairs();
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (const maxChunk of [1, 7, 300, 5000, 1 << 30]) {
      // Byte-sized chunks cost a call each: cut the corpus to ~200 kB for those.
      let msgs = pairs.map(([old]) => old);
      if (maxChunk < 100) {
        let total = 0;
        msgs = msgs.filter((m) => (total += m.length) < 200_000);
      }
      const all = Buffer.concat(msgs);
      const expected = msgs.map(hex);
      const dec = new StreamDecoder({ floatsAsFloat64: true });
      const got: string[] = [];
      let off = 0;
      while (off < all.length) {
        const n = 1 + rand(maxChunk);
        // Fresh copies, as a socket hands them out; the decoder may keep views into them.
        dec.feed(new Uint8Array(all.subarray(off, off + n)));
        off += n;
        for (const m of dec) got.push(hex(encode(m)));
      }
      expect(got).toEqual(expected);
      expect(dec.inMessage).toBe(false);
    }
  });
});

describe("decoding", () => {
  test("byte strings stay bytes, never UTF-8 decoded", () => {
    const raw = new Uint8Array([0xa4, 0xff, 0xfe, 0x00, 0x80]);
    const v = decode(raw) as Uint8Array;
    expect(v).toBeInstanceOf(Uint8Array);
    expect([...v]).toEqual([0xff, 0xfe, 0x00, 0x80]);
    expect(v.buffer).toBe(raw.buffer); // zero-copy view
  });

  test("integers become numbers, bigints beyond 2**53", () => {
    expect(decode(unhex("cf001fffffffffffff"))).toBe(2 ** 53 - 1);
    expect(decode(unhex("cf0020000000000000"))).toBe(2n ** 53n);
    expect(decode(unhex("cfffffffffffffffff"))).toBe(2n ** 64n - 1n);
    expect(decode(unhex("d3ffe0000000000001"))).toBe(-(2 ** 53) + 1);
    expect(decode(unhex("d38000000000000000"))).toBe(-(2n ** 63n));
    expect(decode(unhex("d3ffffffffffffffff"))).toBe(-1);
    expect(decode(unhex("ca3fc00000"))).toBe(1.5);
    expect(decode(unhex("cb4000000000000000"))).toBe(2);
    expect((decode(unhex("cb4000000000000000"), { floatsAsFloat64: true }) as Float64).value).toBe(2);
    const ts = decode(unhex("d6ff00000001")) as Ext; // timestamp ext type -1
    expect([ts.type, [...ts.data]]).toEqual([-1, [0, 0, 0, 1]]);
    expect(hex(encode(ts))).toBe("d6ff00000001");
  });

  test("map helpers find byte keys by name; the last duplicate wins like a python dict", () => {
    const m = decode(pyBytes("{b'version': 2, 7: b'x', b'segments': {}}")) as Map<unknown, unknown>;
    expect(mapGet(m, "version")).toBe(2);
    expect(mapHas(m, "segments")).toBe(true);
    expect(mapHas(m, "versio")).toBe(false);
    expect(mapGet(m, "nope")).toBeUndefined();
    expect([...mapWithStringKeys(m).keys()]).toEqual(["version", "7", "segments"]);
    const dup = decode(unhex("82a16101a16102")) as Map<unknown, unknown>;
    expect(mapGet(dup, "a")).toBe(2);
    expect(bytesToString(new Uint8Array([0x68, 0xc3, 0xbc]))).toBe("hü");
  });

  test("malformed input is a clear error", () => {
    expect(() => decode(unhex("c1"))).toThrow(MsgpackDecodeError);
    expect(() => decode(unhex("92c1"))).toThrow(/reserved type byte 0xc1/);
    expect(() => decode(unhex("0102"))).toThrow(/extra data/);
    expect(() => decode(unhex(""))).toThrow(/truncated/);
    expect(() => decode(unhex("da00"))).toThrow(/truncated/);
    expect(() => decode(unhex("a5616263"))).toThrow(/truncated/);
    expect(() => decode(unhex("dd7fffffff"))).toThrow(/truncated/);
    expect(() => decode(unhex("93010203"), { maxArrayLen: 2 })).toThrow(MsgpackLimitError);
  });

  test("nesting is limited", () => {
    const deep = new Uint8Array(2000).fill(0x91);
    deep[deep.length - 1] = 0x01;
    expect(() => decode(deep)).toThrow(/nesting deeper than 1024/);
    expect(decode(deep.subarray(1000))).toBeInstanceOf(Array);
  });
});

function pyBytes(expr: string): Uint8Array {
  return unhex(pyPack([expr])[0]!);
}

describe("StreamDecoder with borg's server limits", () => {
  const server = () => new StreamDecoder(borgUnpackerLimits("server"));

  test("a truncated message waits for more input", () => {
    const msg = encode({ i: 1, m: "put", a: { id: new Uint8Array(32).fill(7), data: new Uint8Array(100000).fill(3) } });
    const dec = server();
    dec.feed(msg.slice(0, 50));
    expect([...dec]).toEqual([]);
    expect(dec.inMessage).toBe(true);
    dec.feed(msg.slice(50, 60000));
    expect([...dec]).toEqual([]);
    dec.feed(msg.slice(60000));
    const [m] = [...dec] as Array<Map<unknown, unknown>>;
    const args = mapGet(m!, "a") as Map<unknown, unknown>;
    expect((mapGet(args, "data") as Uint8Array).length).toBe(100000);
    expect(hex(encode(m))).toBe(hex(msg));
  });

  test("views stay valid after more input arrives", () => {
    const dec = server();
    const a = encode([1, new Uint8Array(40).fill(0xaa)]);
    const b = encode([2, new Uint8Array(40).fill(0xbb)]);
    const both = new Uint8Array([...a, ...b.subarray(0, 10)]);
    dec.feed(both);
    const [first] = [...dec] as unknown[][];
    dec.feed(b.slice(10));
    for (let i = 0; i < 20; i++) dec.feed(encode([3, new Uint8Array(40).fill(i)]).subarray(0, 30));
    expect([...(first![1] as Uint8Array)]).toEqual(new Array(40).fill(0xaa));
  });

  test("a str longer than MAX_OBJECT_SIZE is refused from its header, before the data", () => {
    const dec = server();
    dec.feed(unhex("93a6616263646566db01400001")); // str32 of 20 MiB + 1
    expect(() => [...dec]).toThrow(/str length 20971521 exceeds max_str_len\(20971520\)/);
    expect(() => [...dec]).toThrow(MsgpackLimitError); // stays failed
    expect(() => dec.feed(unhex("00"))).toThrow(MsgpackLimitError);
  });

  test("bin, ext, long arrays and big maps are refused like borg's limited unpacker", () => {
    for (const bad of ["c40101", "d40101", "dc0065" + "00".repeat(101), "de0065"]) {
      const dec = server();
      dec.feed(unhex(bad));
      expect(() => [...dec]).toThrow(MsgpackLimitError);
    }
    const ok = server();
    ok.feed(unhex("dc0064" + "00".repeat(100)));
    expect(([...ok][0] as unknown[]).length).toBe(100);
  });

  test("an incomplete message beyond max_buffer_size is refused", () => {
    const dec = new StreamDecoder({ maxBufferSize: 1000 });
    dec.feed(unhex("dcffff")); // an array of 65535 items, sent a few nils at a time
    expect([...dec]).toEqual([]);
    for (let i = 0; i < 10; i++) {
      const chunk = new Uint8Array(100).fill(0xc0);
      if (dec.buffered + chunk.length > 1000) {
        dec.feed(chunk);
        expect(() => [...dec]).toThrow(/exceeds max_buffer_size\(1000\)/);
        return;
      }
      dec.feed(chunk);
      expect([...dec]).toEqual([]);
    }
    throw new Error("limit never reached");
  });

  test("a complete message over max_buffer_size is refused even when it arrives at once", () => {
    const dec = new StreamDecoder({ maxBufferSize: 100 });
    dec.feed(encode([new Uint8Array(50), new Uint8Array(50)]));
    expect(() => [...dec]).toThrow(MsgpackLimitError);
    const ok = new StreamDecoder({ maxBufferSize: 100 });
    ok.feed(new Uint8Array([...encode(new Uint8Array(90)), ...encode(new Uint8Array(90))]));
    expect([...ok].length).toBe(2);
  });
});

describe("buffer recycling", () => {
  // Requests shaped like borg's puts ({i, m, a: {id, data}}), read the way a pipe delivers them,
  // handled with a lag behind decoding; every message must be intact when it is handled, also
  // one whose first part (the id) was parsed from a buffer that has since been recycled.
  for (const [label, dataSize, readSize, lag] of [
    ["64 KiB objects, pipe-sized reads, short lag", 65536, 65536, 2],
    ["mixed objects, odd reads, long lag", -1, 40_000, 100],
  ] as const) {
    test(label, async () => {
      const { StreamDecoder, encode, mapGet } = await import("../../../src/util/msgpack.ts");
      let seed = 1;
      const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
      const msgs: Uint8Array[] = [];
      const datas: Uint8Array[] = [];
      for (let i = 0; i < 400; i++) {
        const size = dataSize > 0 ? dataSize : Math.floor(rand() * (i % 10 === 0 ? 300_000 : i % 3 === 0 ? 5000 : 70_000));
        const data = new Uint8Array(size);
        for (let j = 0; j < data.length; j += 97) data[j] = (i * 7 + j) & 0xff;
        datas.push(data);
        const id = new Uint8Array(32).fill(i & 0xff);
        msgs.push(encode(new Map<string, unknown>([["i", i], ["m", "put"], ["a", new Map<string, unknown>([["id", id], ["data", data]])]])));
      }
      const stream = Buffer.concat(msgs);
      const d = new StreamDecoder();
      const held: Array<{ msg: Map<unknown, unknown>; seq: number; i: number }> = [];
      let pos = 0;
      let handled = 0;
      const handleOne = () => {
        const h = held.shift()!;
        const args = mapGet(h.msg, "a") as Map<unknown, unknown>;
        expect(mapGet(h.msg, "i")).toBe(h.i);
        expect(Buffer.from(mapGet(args, "id") as Uint8Array).equals(Buffer.alloc(32, h.i & 0xff))).toBe(true);
        expect(Buffer.compare(mapGet(args, "data") as Uint8Array, datas[h.i]!)).toBe(0);
        d.release(h.seq);
        handled++;
      };
      while (pos < stream.length) {
        const space = d.reserve();
        const n = Math.min(space.length, stream.length - pos, readSize);
        space.set(stream.subarray(pos, pos + n));
        pos += n;
        d.wrote(n);
        for (const m of d) held.push({ msg: m as Map<unknown, unknown>, seq: d.returned, i: held.length + handled });
        while (held.length > lag) handleOne();
      }
      while (held.length) handleOne();
      expect(handled).toBe(400);
    });
  }
});

describe("input buffers for big objects", () => {
  // borg create's puts: chunks of any size up to 8 MiB, read 1 MiB at a time (a grown pipe),
  // each handled once the next is decoded (the session's limit on requests in flight). Buffers
  // that grew step by step with the chunks were each left behind for the collector (a 1 GiB
  // create's server peaked at 110-130 MiB of RSS); now a few buffers serve the whole stream.
  test("a stream of 0.5-8 MiB objects is read into at most four buffers", async () => {
    const { StreamDecoder, encode, mapGet } = await import("../../../src/util/msgpack.ts");
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const sizes = [600_000, 2_000_000, 3_100_000, 7_700_000, 8 << 20];
    for (let i = 0; i < 25; i++) sizes.push(Math.floor((0.5 + rand() * 7.5) * 2 ** 20));
    const msgs = sizes.map((size, i) => {
      const data = new Uint8Array(size);
      for (let j = 0; j < size; j += 4093) data[j] = (i + j) & 0xff;
      return encode(new Map<string, unknown>([["i", i], ["m", "put"], ["a", new Map<string, unknown>([["id", new Uint8Array(32)], ["data", data]])]]));
    });
    const stream = Buffer.concat(msgs);
    const d = new StreamDecoder();
    const buffers = new Set<ArrayBufferLike>();
    const held: Array<{ msg: Map<unknown, unknown>; seq: number }> = [];
    let handled = 0;
    // each one handled as soon as it is decoded: the session reads nothing more while it
    // handles a request over its limit on bytes in flight
    const handleOne = () => {
      const h = held.shift()!;
      const data = mapGet(mapGet(h.msg, "a") as Map<unknown, unknown>, "data") as Uint8Array;
      const i = mapGet(h.msg, "i") as number;
      expect(i).toBe(handled);
      expect(data.length).toBe(sizes[i]!);
      for (let j = 0; j < data.length; j += 4093) if (data[j] !== ((i + j) & 0xff)) throw new Error(`message ${i} changed at ${j}`);
      d.release(h.seq);
      handled++;
    };
    for (let pos = 0; pos < stream.length; ) {
      const space = d.reserve();
      buffers.add(space.buffer);
      const n = Math.min(space.length, stream.length - pos, 1 << 20);
      space.set(stream.subarray(pos, pos + n));
      pos += n;
      d.wrote(n);
      for (const m of d) {
        held.push({ msg: m as Map<unknown, unknown>, seq: d.returned });
        handleOne();
      }
    }
    expect(handled).toBe(sizes.length);
    expect(buffers.size).toBeLessThanOrEqual(4);
  });
});

describe("encodeParts", () => {
  test("the parts concatenate to encode()'s bytes; big byte strings are the caller's, not copies", () => {
    const big = new Uint8Array(200_000).fill(7);
    const other = new Uint8Array(70_000).fill(9);
    const small = new Uint8Array(16_384).fill(1); // at the limit: copied inline
    for (const value of [
      [1, 5, null, big],
      new Map<string, unknown>([["i", 5], ["r", big]]),
      [big, "x", other, small, [other]],
      [1, 2, "three", small],
    ]) {
      const parts = encodeParts(value);
      expect(hex(Buffer.concat(parts))).toBe(hex(encode(value)));
      const shared = parts.filter((p) => p === big || p === other).length;
      const expected = JSON.stringify(value, (_k, v) => (v === big || v === other ? "BIG" : v instanceof Uint8Array ? "s" : v instanceof Map ? [...v] : v)).split("BIG").length - 1;
      expect(shared).toBe(expected);
    }
  });

  test("a later encode does not change earlier parts", () => {
    const parts = encodeParts([1, 2, null, new Uint8Array(100_000)]);
    const copy = parts.map((p) => hex(p));
    encodeParts([9, 9, "overwrite", new Uint8Array(100_000).fill(3)]);
    encode(["overwrite again", 12345]);
    expect(parts.map((p) => hex(p))).toEqual(copy);
  });
});
