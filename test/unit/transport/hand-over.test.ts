// The hand-over frame and the control channel's messages (transport/hand-over.ts): what a
// forced command encodes decodes to the same, and anything else is refused with a reason.

import { describe, expect, test } from "bun:test";
import { ControlReader, HAND_OVER_HEADER, HandOverError, decodeHandOver, encodeControl, encodeHandOver } from "../../../src/transport/hand-over.ts";

const payload = { argv: ["serve", "--restrict-to-repository", "/srv/borg/a"], env: { SSH_ORIGINAL_COMMAND: "borg serve", HOME: "/root" }, cwd: "/root", pid: 1234, umask: 0o077 };

describe("hand-over frames", () => {
  test("round trip", () => {
    expect(decodeHandOver(encodeHandOver(payload))).toEqual(payload);
  });

  test("bad magic, short frames, wrong length, not JSON, wrong shapes are refused", () => {
    const good = encodeHandOver(payload);
    const bad: Uint8Array[] = [];
    bad.push(good.subarray(0, 5));
    const magic = good.slice();
    magic[3] ^= 1;
    bad.push(magic);
    bad.push(good.subarray(0, good.length - 1));
    const notJson = new Uint8Array(HAND_OVER_HEADER + 3);
    notJson.set(good.subarray(0, 8));
    new DataView(notJson.buffer).setUint32(8, 3, true);
    notJson.set(new TextEncoder().encode("{x"), HAND_OVER_HEADER);
    bad.push(notJson);
    for (const shape of [{ ...payload, argv: "serve" }, { ...payload, env: { A: 1 } }, { ...payload, pid: "1" }, null, [1]]) {
      const body = new TextEncoder().encode(JSON.stringify(shape));
      const f = new Uint8Array(HAND_OVER_HEADER + body.length);
      f.set(good.subarray(0, 8));
      new DataView(f.buffer).setUint32(8, body.length, true);
      f.set(body, HAND_OVER_HEADER);
      bad.push(f);
    }
    for (const f of bad) expect(() => decodeHandOver(f)).toThrow(HandOverError);
  });

  test("the first byte is 0, which starts no borg request", () => {
    expect(encodeHandOver(payload)[0]).toBe(0);
  });
});

describe("control channel", () => {
  test("messages split across chunks; unknown and malformed lines are ignored", () => {
    const r = new ControlReader();
    const bytes = new Uint8Array([...encodeControl({ accept: true }), ...new TextEncoder().encode("garbage\n{\"exit\":1.5}\n"), ...encodeControl({ exit: 3 })]);
    const got = [...r.push(bytes.subarray(0, 7)), ...r.push(bytes.subarray(7, 20)), ...r.push(bytes.subarray(20))];
    expect(got).toEqual([{ accept: true }, { exit: 3 }]);
  });
});
