// Benchmark worker (burg side): one engine operation per process, so its CPU time and peak RSS
// are the engine's own. Prints a JSON line with the in-process timing.
//   index-make PATH N      write an index.N-format file with N random entries
//   index-load PATH        load it (what open_index does)
//   put REPO COUNT SIZE    create REPO, put COUNT objects of SIZE random bytes, commit

import { NSIndex } from "../../src/repository/hashindex.ts";
import { readIndexFile, writeIndexFile } from "../../src/repository/integrity.ts";
import { Repository } from "../../src/repository/repository.ts";
import { basename } from "node:path";

const [mode, a, b, c] = process.argv.slice(2);
const t0 = performance.now();
if (mode === "index-make") {
  const n = Number(b);
  const idx = NSIndex.create();
  const key = new Uint8Array(32);
  for (let i = 0; i < n; i++) {
    crypto.getRandomValues(key);
    idx.set(key, i % 100000, (i * 41) % 500_000_000);
  }
  writeIndexFile(a!, basename(a!), idx);
  console.log(JSON.stringify({ ms: performance.now() - t0, entries: idx.size }));
} else if (mode === "index-load") {
  const idx = readIndexFile(a!, null);
  console.log(JSON.stringify({ ms: performance.now() - t0, entries: idx.size }));
} else if (mode === "put") {
  const count = Number(b);
  const size = Number(c);
  const repo = await Repository.open(a!, { create: true, exclusive: true });
  const data = new Uint8Array(size);
  crypto.getRandomValues(data.subarray(0, Math.min(size, 65536)));
  const id = new Uint8Array(32);
  for (let i = 0; i < count; i++) {
    crypto.getRandomValues(id);
    data[0] = i & 0xff;
    await repo.put(id, data);
  }
  await repo.commit();
  repo.close();
  console.log(JSON.stringify({ ms: performance.now() - t0, count }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
