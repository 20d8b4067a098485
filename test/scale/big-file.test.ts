// Scale tier: one 4 GiB file (more than 2^32 bytes, so no 32-bit size or offset survives it),
// of unique data (AES-CTR keystream: no chunk deduplicates), through `burg serve` and
// `borg serve` side by side: created, extracted to stdout and compared by SHA-256, and the
// repository checked by plain borg afterwards.

import { describe, expect, test } from "bun:test";
import { createCipheriv, createHash } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { borgOnEach, makeSides, onEach, plainBorgCheck, type Side } from "../support/scale.ts";
import { testScope } from "../support/scope.ts";

const SIZE = 4 * 1024 ** 3 + 12_345; // a little over 4 GiB
const scope = testScope();

/** Write SIZE bytes of keystream; returns its SHA-256. */
function makeBigFile(path: string): string {
  const cipher = createCipheriv("aes-128-ctr", Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const zeros = Buffer.alloc(8 << 20);
  const hash = createHash("sha256");
  const fd = openSync(path, "w");
  try {
    for (let left = SIZE; left > 0; ) {
      const n = Math.min(left, zeros.length);
      const block = cipher.update(zeros.subarray(0, n));
      hash.update(block);
      writeSync(fd, block);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

/** `borg extract --stdout` of the file, hashed as it streams. */
async function extractedHash(s: Side): Promise<{ sha: string; bytes: number; code: number; stderr: string }> {
  const p = Bun.spawn(["borg", "extract", "--stdout", s.url(undefined, "big"), "big.bin"], {
    env: s.borg.env(),
    stdout: "pipe",
    stderr: "pipe",
  });
  const hash = createHash("sha256");
  let bytes = 0;
  const stderr = new Response(p.stderr).text();
  for await (const chunk of p.stdout) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha: hash.digest("hex"), bytes, code: await p.exited, stderr: await stderr };
}


describe("a 4 GiB file", () => {
  test("through burg serve and borg serve: created, extracted byte-identical, plain borg check passes", async () => {
    const data = scope.tempDir("burg-scale-big-");
    const sha = makeBigFile(join(data, "big.bin"));
    const sides = await makeSides(scope, ["burg serve", "borg serve"]);
    await borgOnEach("init", sides, (s) => ["init", "-e", "none", s.url()]);
    await borgOnEach("create", sides, (s) => ["create", "-C", "none", s.url(undefined, "big"), "big.bin"], { cwd: data });
    const back = await onEach(sides, extractedHash);
    expect(back.map((b) => ({ code: b.code, stderr: b.stderr, bytes: b.bytes, sha: b.sha }))).toEqual(
      sides.map(() => ({ code: 0, stderr: "", bytes: SIZE, sha })),
    );
    await onEach(sides, (s) => plainBorgCheck(s));
  }, 30 * 60_000);
});
