// Unreadable sectors: a repository written by the real borg client through burg serve, then
// served by a FUSE file system (test/support/faultfs.py) that fails reads of chosen byte ranges
// of a segment with EIO. `burg check` reports every unreadable range with segment and offset,
// reads the rest of the segment (so exactly the objects in those ranges are missing) and
// finishes; a get of an object in such a range gives the client an error it reports while
// the session goes on; `burg check --repair` keeps every entry outside the unreadable ranges
// (what ddrescue followed by `borg check --repair` does, in one command); plain borg then
// checks the repository.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { TAG_PUT } from "../../src/repository/format.ts";
import { toHex } from "../../src/util/hex.ts";
import { makeSourceTree } from "../support/data.ts";
import { biggestDataSegment, segmentLayout, type EntryInfo } from "../support/damage.ts";
import { BURG, borgEnv, requireBorg, run, runAsync } from "../support/env.ts";
import { fakeSsh, remoteBorg } from "../support/fake-ssh.ts";
import { faultFsRequired, faultFsUnavailable, mountFaultFs } from "../support/faultfs.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const canMount = faultFsRequired();
if (!canMount) console.warn(`unreadable-sector tests skipped: ${faultFsUnavailable()}`);

const BLOCK = 4096;
const HOST_ENV = { ...(process.env as Record<string, string>), BORG_HOST_ID: "eio-test@1", BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES" };

function entryId(path: string, e: EntryInfo): string {
  return toHex(readFileSync(path).subarray(e.offset + 9, e.offset + 41));
}

describe.skipIf(!canMount)("unreadable sectors in a segment", () => {
  test("check reports each range, a get fails alone, repair keeps every entry outside them", async () => {
    const dir = scope.tempDir("burg-eio-");
    const backing = join(dir, "backing");
    mkdirSync(backing);
    const repo = join(backing, "repo");
    const borg = remoteBorg(dir, fakeSsh(dir));
    makeSourceTree(join(dir, "src"), { seed: 31, files: 120, totalBytes: 12 << 20 });
    expect((await borg.run(["init", "-e", "none", borg.url(repo)])).code).toBe(0);
    expect((await borg.run(["create", borg.url(repo, "a1"), "src"], { cwd: dir })).code).toBe(0);

    // Two unreadable places in the biggest segment: inside one entry's data, and across the
    // boundary of two later entries.
    const seg = biggestDataSegment(segmentLayout(repo));
    const puts = seg.entries.filter((e) => e.tag === TAG_PUT && e.size > 3 * BLOCK);
    expect(puts.length).toBeGreaterThan(6);
    const inside = puts[Math.floor(puts.length / 3)]!;
    const across = puts[Math.floor((2 * puts.length) / 3)]!;
    const rel = seg.path.slice(backing.length + 1);
    const bad = [
      { start: inside.offset + 2 * BLOCK + 10, end: inside.offset + 2 * BLOCK + 30 },
      { start: across.offset + across.size - 100, end: across.offset + across.size + 100 },
    ];
    // what the kernel and burg see: whole blocks
    const blocks = bad.map((r) => ({ start: Math.floor(r.start / BLOCK) * BLOCK, end: Math.ceil(r.end / BLOCK) * BLOCK }));
    const touches = (e: EntryInfo) => blocks.some((b) => e.offset < b.end && e.offset + e.size > b.start);
    const lost = seg.entries.filter(touches);
    expect(lost.length).toBeGreaterThanOrEqual(3);
    const keptIds = seg.entries.filter((e) => e.tag === TAG_PUT && !touches(e)).map((e) => entryId(seg.path, e));
    const lostIds = lost.map((e) => entryId(seg.path, e));

    const fs = await mountFaultFs(backing);
    scope.onCleanup(() => fs.unmount());
    fs.setEio(bad.map((r) => ({ path: rel, ...r })));
    const onFuse = join(fs.dir, "repo");

    // check: every range, with segment and offset; the check goes on to the end
    const check = run([BURG, "check", onFuse], { env: HOST_ENV });
    expect(check.code).toBe(1);
    for (const b of blocks) {
      expect(check.stderr).toContain(`Segment file unreadable [segment ${seg.segment}, offset ${b.start}]: ${b.end - b.start} bytes cannot be read (EIO)`);
    }
    expect(check.stderr).toContain("Finished full repository check, errors found.");
    // the rest of the segment is read: exactly the objects in the unreadable blocks are missing
    const notFound = [...check.stderr.matchAll(/ID: ([0-9a-f]{64}) rebuilt index: <not found>/g)].map((m) => m[1]!).sort();
    expect(notFound).toEqual(lost.filter((e) => e.tag === TAG_PUT).map((e) => entryId(seg.path, e)).sort());

    // a get in an unreadable range fails with an error the client reports; the session goes on
    const env = borgEnv(dir, { BORG_HOST_ID: "eio-test@1" });
    const c = new RpcClient([BURG, "serve"], env);
    await c.negotiate();
    await c.open(onFuse);
    const id = (hex: string) => Uint8Array.from(Buffer.from(hex, "hex"));
    await expect(c.call("get", { id: id(lostIds[0]!) })).rejects.toThrow(`Segment file unreadable [segment ${seg.segment}, offset ${lost[0]!.offset}]`);
    const good = (await c.call("get", { id: id(keptIds[0]!) })) as Uint8Array;
    expect(good.length).toBeGreaterThan(0);
    expect(await c.call("__len__", {})).toBeGreaterThan(keptIds.length);
    const usage = await c.close();
    expect(usage.exitCode).toBe(0);
    expect(usage.stderr).not.toContain("internal error");
    // and the real client says what happened
    const out = join(dir, "out");
    mkdirSync(out);
    const extract = await borg.run(["extract", borg.url(onFuse, "a1")], { cwd: out, env: { BORG_HOST_ID: "eio-test@1" } });
    expect(extract.code).toBe(2);
    expect(extract.stderr).toContain("Segment file unreadable");

    // repair: every entry outside the unreadable blocks is kept
    const repair = run([BURG, "check", "--repair", onFuse], { env: HOST_ENV });
    expect({ code: repair.code, stderr: repair.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    const after = segmentLayout(repo).find((s) => s.segment === seg.segment)!;
    const afterIds = after.entries.filter((e) => e.tag === TAG_PUT).map((e) => entryId(after.path, e));
    expect(afterIds).toEqual(keptIds);
    for (const hex of lostIds) expect(afterIds).not.toContain(hex);
    const again = run([BURG, "check", onFuse], { env: HOST_ENV });
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: "" });
    await fs.unmount();
    const plain = await runAsync([requireBorg(), "check", "--repository-only", repo], { env });
    expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: "" });
  }, 300_000);
});
