// Deterministic test data: source trees for borg create, and byte-for-byte tree comparison.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync, lstatSync } from "node:fs";
import { join } from "node:path";
import { dropFromPageCache } from "../../src/util/direct-io.ts";

/** A small deterministic PRNG (xorshift32) so failures reproduce. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

export function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = (rand() * 0x100000000) >>> 0;
    b[i] = v & 0xff;
    if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
    if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
    if (i + 3 < n) b[i + 3] = (v >>> 24) & 0xff;
  }
  return b;
}

/**
 * Write a tree of `files` files under `dir`: a mix of random (incompressible), repetitive text
 * and empty files in a few subdirectories, about `totalBytes` in all.
 */
export function makeSourceTree(dir: string, opts: { seed: number; files: number; totalBytes: number }): void {
  const rand = prng(opts.seed);
  const per = Math.max(1, Math.floor(opts.totalBytes / opts.files));
  for (let i = 0; i < opts.files; i++) {
    const sub = join(dir, `d${i % 5}`, `e${i % 3}`);
    mkdirSync(sub, { recursive: true });
    const kind = i % 4;
    const size = Math.floor(per * (0.2 + rand() * 1.6));
    let data: Uint8Array;
    if (kind === 0) data = new Uint8Array(0);
    else if (kind === 1) data = new TextEncoder().encode(`line ${i} of a compressible file\n`.repeat(Math.ceil(size / 32)));
    else data = randomBytes(rand, size);
    writeFileSync(join(sub, `f${i}.bin`), data);
  }
}

/** Relative path -> content for every regular file below dir. */
export function readTree(dir: string, prefix = ""): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(p);
    if (st.isDirectory()) for (const [k, v] of readTree(p, rel)) out.set(k, v);
    else if (st.isFile()) out.set(rel, readFileSync(p));
  }
  return out;
}

/** Throws with the first difference when two trees are not byte-identical. */
export function assertSameTree(a: string, b: string): void {
  const ta = readTree(a);
  const tb = readTree(b);
  const names = new Set([...ta.keys(), ...tb.keys()]);
  for (const n of names) {
    const x = ta.get(n);
    const y = tb.get(n);
    if (!x || !y) throw new Error(`tree mismatch: ${n} only in ${x ? a : b}`);
    if (Buffer.compare(Buffer.from(x), Buffer.from(y)) !== 0) throw new Error(`tree mismatch: ${n} differs`);
  }
  if (statSync(a).isDirectory() !== statSync(b).isDirectory()) throw new Error("tree mismatch: root kinds differ");
}

/** Total size of the files below dir (0 when it does not exist). */
export function dirBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? dirBytes(p) : st.size;
  }
  return total;
}

/**
 * Drop a repository's segment files from the page cache (synced first), so that burg check
 * reads them with O_DIRECT, as it does a repository nobody touched for a while.
 */
export function evictSegments(repo: string): void {
  for (const f of new Bun.Glob("data/*/*").scanSync({ cwd: repo })) {
    const fd = openSync(join(repo, f), "r");
    try {
      fsyncSync(fd);
      if (!dropFromPageCache(fd)) throw new Error(`could not drop ${f} from the page cache`);
    } finally {
      closeSync(fd);
    }
  }
}
