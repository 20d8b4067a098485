// Child process of hashindex-memory.test.ts: grows a table from empty to `count` entries and
// prints how far the process's RSS rose over that (VmHWM after resetting it), in bytes.
//   bun hashindex-grow.ts in-place|copying COUNT

import { readFileSync, writeFileSync } from "node:fs";
import { NSIndex, setTableReserveBudget } from "../../src/repository/hashindex.ts";

const mode = process.argv[2];
const count = Number(process.argv[3]);
if (mode === "copying") setTableReserveBudget(0);
else if (mode !== "in-place") throw new Error(`mode: in-place or copying, not ${mode}`);

function status(field: string): number {
  const m = readFileSync("/proc/self/status", "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  if (!m) throw new Error(`no ${field} in /proc/self/status`);
  return Number(m[1]) * 1024;
}

const key = new Uint8Array(32);
const dv = new DataView(key.buffer);
function fill(index: NSIndex): NSIndex {
  for (let i = 0; i < count; i++) {
    dv.setUint32(0, Math.imul(i, 2654435761) >>> 0, true);
    dv.setUint32(4, i, true);
    index.set(key, i & 0xffff, i);
  }
  return index;
}

// A first run compiles the code at every tier; its memory goes back before the measured run.
fill(NSIndex.create()).release();
Bun.gc(true);
await Bun.sleep(1000);
const before = status("VmRSS");
writeFileSync("/proc/self/clear_refs", "5"); // VmHWM := VmRSS
const index = fill(NSIndex.create());
console.log(JSON.stringify({ rose: status("VmHWM") - before, table: index.byteSize(), buckets: index.numBuckets }));
