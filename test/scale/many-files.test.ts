// Scale tier: one archive of 100,000 small files (100,000 unique chunks) through `burg serve`
// and `borg serve` side by side, the sizes borg users have: create, list, extract
// (byte-identical), a second archive that brings the repository past 200,000 objects,
// `borg check --verify-data` and `borg check --repair` on it, then `borg delete` of the big
// archive (borg sends its 100,000 deletes asynchronously, with no limit on requests in flight)
// and `borg compact`. Every step has the same exit code on both sides, the archive lists are
// the same, and plain local borg checks both repositories after the changes.

import { describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { run } from "../support/env.ts";
import {
  archiveNames,
  borgOnEach,
  makeBlockFile,
  makeManySmallFiles,
  makeSides,
  onEach,
  plainBorgCheck,
  type Side,
} from "../support/scale.ts";
import { testScope } from "../support/scope.ts";

const FILES = 100_000;
const BLOCKS = 110_000; // second archive: one object per 4 KiB block
const scope = testScope();
const MIN = 60_000;

describe(`${FILES.toLocaleString("en")} files through burg serve and borg serve`, () => {
  let sides: Side[];
  let data: string;

  test("create", async () => {
    data = scope.tempDir("burg-scale-data-");
    makeManySmallFiles(join(data, "src"), FILES, 1);
    makeBlockFile(join(data, "blocks.bin"), BLOCKS);
    sides = await makeSides(scope, ["burg serve", "borg serve"]);
    await borgOnEach("init", sides, (s) => ["init", "-e", "none", s.url()]);
    await borgOnEach("create", sides, (s) => ["create", s.url(undefined, "files"), "src"], { cwd: data });
  }, 10 * MIN);

  test("list: the same 100,000 entries", async () => {
    const lists = await borgOnEach("list", sides, (s) => ["list", "--format", "{mode} {size} {mtime} {path}{NL}", s.url(undefined, "files")]);
    const lines = lists[0]!.stdout.split("\n").filter((l) => l !== "");
    expect(lines.length).toBe(FILES + Math.ceil(FILES / 1000) + 1); // files, their directories, src
    expect(lists[1]!.stdout).toBe(lists[0]!.stdout);
  }, 5 * MIN);

  test("extract: byte-identical", async () => {
    await onEach(sides, async (s) => mkdirSync(join(s.dir, "out")));
    await onEach(sides, async (s) => {
      const r = await s.borg.run(["extract", s.url(undefined, "files")], { cwd: join(s.dir, "out") });
      expect({ side: s.kind, code: r.code, stderr: r.stderr }).toEqual({ side: s.kind, code: 0, stderr: "" });
    });
    for (const s of sides) {
      const diff = run(["diff", "-r", "--no-dereference", join(data, "src"), join(s.dir, "out", "src")]);
      expect({ side: s.kind, diff: diff.stdout.slice(0, 2000), code: diff.code }).toEqual({ side: s.kind, diff: "", code: 0 });
      run(["rm", "-rf", join(s.dir, "out")]);
    }
  }, 10 * MIN);

  test("past 200,000 objects: check --verify-data and check --repair", async () => {
    await borgOnEach("create blocks", sides, (s) => ["create", "--chunker-params", "fixed,4096", s.url(undefined, "blocks"), "blocks.bin"], {
      cwd: data,
    });
    const counts = await onEach(sides, async (s) => {
      const r = await s.borg.run(["info", "--json", s.url()]);
      return JSON.parse(r.stdout).cache.stats.total_unique_chunks as number;
    });
    expect(counts[0]).toBeGreaterThanOrEqual(200_000);
    expect(counts[1]).toBe(counts[0]!);
    const verify = await borgOnEach("check --verify-data", sides, (s) => ["check", "--verify-data", s.url()]);
    for (const r of verify) expect(r.stderr).toBe("");
    await borgOnEach("check --repair", sides, (s) => ["check", "--repair", s.url()]);
    for (const s of sides) await plainBorgCheck(s);
  }, 15 * MIN);

  test("delete of the 100,000-chunk archive, then compact", async () => {
    await borgOnEach("delete", sides, (s) => ["delete", s.url(undefined, "files")]);
    expect(await onEach(sides, (s) => archiveNames(s))).toEqual([["blocks"], ["blocks"]]);
    await borgOnEach("compact", sides, (s) => ["compact", s.url()]);
    expect(await onEach(sides, (s) => archiveNames(s))).toEqual([["blocks"], ["blocks"]]);
    await onEach(sides, (s) => plainBorgCheck(s));
  }, 10 * MIN);
});
