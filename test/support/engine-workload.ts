// A deterministic engine workload for crash tests: transaction k puts 20 objects with ids and
// contents derived from (k, j), deletes the even-numbered objects of transaction k-2 and the
// odd-numbered ones of transaction k-4 (so the live set stays small) and commits; every third commit compacts with threshold 0. `expectedState(k)` models the
// repository after k committed transactions, so a test can kill a worker anywhere and check
// that the reopened repository equals a committed state.
//
// Run as a script: bun test/support/engine-workload.ts REPO LOGFILE [FIRST_K] — it prints
// "ready" once loaded, then appends "k\n" to LOGFILE after commit k returned, forever, until
// killed.

import { appendFileSync } from "node:fs";
import { createHash } from "node:crypto";

export const PUTS_PER_TXN = 20;

export function objectId(k: number, j: number): Uint8Array {
  return new Uint8Array(createHash("sha256").update(`obj-${k}-${j}`).digest());
}

export function objectData(k: number, j: number): Uint8Array {
  const len = ((k * 7919 + j * 104729) % 30000) + 1;
  const out = new Uint8Array(len);
  let x = (k * 31 + j * 17 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** [transaction, first j] pairs whose every second object transaction t deletes. */
function deletedBy(t: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  if (t > 2) out.push([t - 2, 0]);
  if (t > 4) out.push([t - 4, 1]);
  return out;
}

/** sha256 hex of objectData(k, j), cached: tests compare contents by digest. */
const digestCache = new Map<string, string>();
export function objectDigest(k: number, j: number): string {
  const key = `${k}/${j}`;
  let d = digestCache.get(key);
  if (!d) {
    d = createHash("sha256").update(objectData(k, j)).digest("hex");
    digestCache.set(key, d);
  }
  return d;
}

/** hex id -> [k, j] of the live objects after k transactions. */
export function expectedState(k: number): Map<string, [number, number]> {
  const live = new Map<string, [number, number]>();
  for (let t = 1; t <= k; t++) {
    for (let j = 0; j < PUTS_PER_TXN; j++) live.set(Buffer.from(objectId(t, j)).toString("hex"), [t, j]);
    for (const [old, first] of deletedBy(t)) {
      for (let j = first; j < PUTS_PER_TXN; j += 2) live.delete(Buffer.from(objectId(old, j)).toString("hex"));
    }
  }
  return live;
}

if (import.meta.main) {
  const { Repository } = await import("../../src/repository/repository.ts");
  const [repoPath, logFile] = process.argv.slice(2);
  const start = Number(process.argv[4] ?? "1");
  // tell the test we are past start-up, so its random kill point falls into the real work
  process.stdout.write("ready\n");
  for (let k = start; ; k++) {
    const repo = await Repository.open(repoPath!, { exclusive: true, lockWait: 10 });
    try {
      for (let j = 0; j < PUTS_PER_TXN; j++) await repo.put(objectId(k, j), objectData(k, j));
      for (const [old, first] of deletedBy(k)) {
        for (let j = first; j < PUTS_PER_TXN; j += 2) await repo.delete(objectId(old, j));
      }
      await repo.commit({ compact: k % 3 === 0, threshold: 0 });
    } finally {
      repo.close();
    }
    appendFileSync(logFile!, `${k}\n`);
  }
}
