import { describe, expect, test } from "bun:test";
import { mappingsOf, releasable } from "../../../src/util/resident.ts";

function mapping(range: string, perms: string, path: string, rss: number, anonymous: number): string {
  return [
    `${range} ${perms} 00000000 103:02 1234                      ${path}`,
    `Size:               4096 kB`,
    `Rss:                ${rss} kB`,
    `Pss:                ${rss} kB`,
    `Anonymous:          ${anonymous} kB`,
    `VmFlags: rd mr mw me`,
  ].join("\n");
}

const EXE = "/usr/bin/burg";
const SMAPS = [
  mapping("400000-800000", "r--p", EXE, 2000, 0), // read-only data: releasable
  mapping("800000-c00000", "r-xp", EXE, 3000, 0), // code: releasable
  mapping("c00000-c10000", "r--p", EXE, 64, 64), // relocated, then made read-only: copies
  mapping("c10000-c20000", "rw-p", EXE, 64, 8), // data: written
  mapping("d00000-d10000", "r--s", EXE, 16, 0), // a shared mapping of the same file
  mapping("e00000-e10000", "r-xp", EXE, 0, 0), // nothing resident: nothing to do
  mapping("7f0000000000-7f0000100000", "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 900, 0),
  mapping("7f0000200000-7f0000300000", "rw-p", "", 500, 500),
].join("\n");

describe("resident pages", () => {
  test("mappingsOf reads ranges, permissions and sizes of one file's mappings", () => {
    const m = mappingsOf(EXE, SMAPS);
    expect(m.map((x) => [x.start, x.end, x.perms, x.rssKiB, x.anonymousKiB])).toEqual([
      [0x400000n, 0x800000n, "r--p", 2000, 0],
      [0x800000n, 0xc00000n, "r-xp", 3000, 0],
      [0xc00000n, 0xc10000n, "r--p", 64, 64],
      [0xc10000n, 0xc20000n, "rw-p", 64, 8],
      [0xd00000n, 0xd10000n, "r--s", 16, 0],
      [0xe00000n, 0xe10000n, "r-xp", 0, 0],
    ]);
  });

  test("only private, never written, resident mappings are released", () => {
    expect(releasable(mappingsOf(EXE, SMAPS)).map((m) => m.start)).toEqual([0x400000n, 0x800000n]);
  });

  test("this process's own smaps parse", () => {
    const text = require("node:fs").readFileSync("/proc/self/smaps", "utf8") as string;
    const exe = require("node:fs").readlinkSync("/proc/self/exe") as string;
    const m = mappingsOf(exe, text);
    expect(m.length).toBeGreaterThan(1);
    expect(m.some((x) => x.perms === "r-xp" && x.rssKiB > 0)).toBe(true);
  });
});
