// Scale tier: `borg prune` removing 50 of 52 archives in one run (each archive with chunks of
// its own, so the prune sends thousands of asynchronous deletes), through `burg serve` and
// `borg serve` side by side, then `borg compact`. Same exit codes and the same archives left on
// both sides, the kept archives extract intact, and plain borg checks both repositories.

import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BURG, run } from "../support/env.ts";
import { archiveNames, borgOnEach, makeSides, onEach, plainBorgCheck } from "../support/scale.ts";
import { testScope } from "../support/scope.ts";

const ARCHIVES = 52;
const KEEP = 2;
const scope = testScope();

describe(`borg prune of ${ARCHIVES - KEEP} archives in one run`, () => {
  test("through burg serve and borg serve: same result, plain borg check passes", async () => {
    const sides = await makeSides(scope, ["burg serve", "borg serve"]);
    const data = scope.tempDir("burg-scale-prune-data-");
    await borgOnEach("init", sides, (s) => ["init", "-e", "none", s.url()]);
    // one archive a day; each day 40 files change, so each archive owns chunks of its own
    const src = join(data, "src");
    mkdirSync(src);
    for (let day = 0; day < ARCHIVES; day++) {
      for (let f = 0; f < 40; f++) writeFileSync(join(src, `f${f}`), `day ${day} file ${f}\n`.repeat(20 + f) + crypto.randomUUID());
      const stamp = new Date(Date.UTC(2026, 0, 1 + day, 3)).toISOString().slice(0, 19);
      await borgOnEach(`create day ${day}`, sides, (s) => ["create", "--timestamp", stamp, s.url(undefined, `day-${String(day).padStart(2, "0")}`), "src"], {
        cwd: data,
      });
    }
    const before = await onEach(sides, (s) => archiveNames(s));
    expect(before[0]!.length).toBe(ARCHIVES);
    expect(before[1]).toEqual(before[0]!);

    const burgStatus = () => JSON.parse(run([BURG, "status", "--json", sides[0]!.repo()]).stdout);
    const objectsBefore = burgStatus().objects as number;
    const pruned = await borgOnEach("prune", sides, (s) => ["prune", "--list", "--keep-daily", String(KEEP), s.url()]);
    expect(pruned[0]!.stderr.split("\n").filter((l) => l.startsWith("Pruning archive")).length).toBe(ARCHIVES - KEEP);
    const after = await onEach(sides, (s) => archiveNames(s));
    expect(after[0]).toEqual(["day-50", "day-51"]);
    expect(after[1]).toEqual(after[0]!);

    // the journal counted every one of the prune's thousands of asynchronous deletes
    const journal = () => run([BURG, "log", "--json", sides[0]!.repo()]).stdout.trim().split("\n").map((l) => JSON.parse(l));
    const prune = journal().findLast((r) => r.deleted.objects > 0)!; // archiveNames() read after it
    expect(prune.outcome).toBe("committed");
    expect(prune.deleted.objects).toBeGreaterThan(ARCHIVES - KEEP);
    expect(burgStatus().objects).toBe(objectsBefore - prune.deleted.objects + prune.written.objects - prune.overwritten.objects);
    expect(prune.manifest.new_size).toBeLessThan(prune.manifest.old_size);

    await borgOnEach("compact", sides, (s) => ["compact", s.url()]);
    const compact = journal().at(-1)!;
    expect(compact.compaction.freed_bytes).toBeGreaterThan(0.5 * prune.deleted.bytes);
    expect(burgStatus().compactable_bytes).toBeLessThan(0.1 * prune.deleted.bytes);
    await onEach(sides, (s) => plainBorgCheck(s));
    // the newest archive is the source as it is now
    await onEach(sides, async (s) => {
      const out = join(s.dir, "out");
      mkdirSync(out);
      const r = await s.borg.run(["extract", s.url(undefined, "day-51")], { cwd: out });
      expect(r.code).toBe(0);
      expect(run(["diff", "-r", src, join(out, "src")]).code).toBe(0);
    });
  }, 20 * 60_000);
});
