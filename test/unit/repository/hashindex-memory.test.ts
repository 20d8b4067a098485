// What growing a hash index costs in memory, measured in a child process: growing in place, a
// table's step from 262,147 to 445,649 buckets (10.5 to 17.8 MB, at 200,000 entries) never
// holds the old and the new table at once, as growing by copying does (and as borg's resize
// does). That moment was the peak RSS of a burg serve session putting 200,000 objects.

import { expect, test } from "bun:test";
import { join } from "node:path";

const GROW = join(import.meta.dir, "../../support/hashindex-grow.ts");

function grow(mode: "in-place" | "copying"): { rose: number; table: number; buckets: number } {
  const r = Bun.spawnSync([process.execPath, GROW, mode, "200000"], { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`hashindex-grow.ts ${mode} failed:\n${r.stderr.toString()}`);
  return JSON.parse(r.stdout.toString());
}

test("growing to 200,000 entries in place never holds the old and the new table at once", () => {
  const previous = 262147 * 40; // the table before the last step
  const inPlace = grow("in-place");
  const copying = grow("copying");
  expect(inPlace.buckets).toBe(445649);
  expect(copying.table).toBe(inPlace.table);
  // Copying holds both tables (and the allocator keeps the smaller ones freed before them).
  expect(copying.rose).toBeGreaterThan(inPlace.table + previous);
  // In place: the table, the 5 bytes per bucket the move takes, and the code compiled for it.
  expect(inPlace.rose).toBeLessThan(inPlace.table + previous);
});
