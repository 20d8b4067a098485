// `npm run bench`: every benchmark, one after the other, each in its own process so one's
// memory does not count against the next. BENCH_SCALE scales the work (default 1; 0.1 for a
// quick look). Results go to stdout as markdown tables of burg/borg ratios.

import { join, resolve } from "node:path";

const here = resolve(import.meta.dir);
const only = process.argv.slice(2);
const all = ["engine", "serve", "create", "check", "time-lock", "concurrency"];
let failed = 0;
for (const name of only.length ? only : all) {
  console.log(`\n# ---- bench/${name}.ts ----`);
  const p = Bun.spawn([process.execPath, join(here, `${name}.ts`)], { stdout: "inherit", stderr: "inherit" });
  if ((await p.exited) !== 0) {
    failed++;
    console.log(`bench/${name}.ts failed`);
  }
}
process.exit(failed ? 1 : 0);
