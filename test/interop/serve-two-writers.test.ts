// Two writers in one repository, which only a lock broken from outside allows (`burg
// break-lock --force` while a backup runs): the later commit fails with a clear message naming
// the conflict, and what the other writer committed stays intact; plain borg checks the
// repository afterwards and finds exactly the committed objects.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { BURG, borgEnv, requireBorg, requireBurg, run } from "../support/env.ts";
import { RpcClient } from "../support/rpc-client.ts";
import { repoContents, MANIFEST_HEX } from "../support/repo-contents.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
const COMMIT = { save_space: false, compact: true, threshold: 0.1, cleanup_commits: false };
const id = (n: number) => new Uint8Array(32).fill(n);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

async function writer(env: Record<string, string>, repo: string): Promise<RpcClient> {
  const c = new RpcClient([BURG, "serve"], env);
  await c.negotiate();
  await c.open(repo);
  return c;
}

describe("two writers after a broken lock", () => {
  for (const bOpen of ["committed", "still open"] as const) {
    test(`the first writer's commit fails clearly when the second ${bOpen === "committed" ? "has committed" : "is still writing"}; nothing committed is lost`, async () => {
      requireBurg();
      const dir = scope.tempDir("burg-twowriters-");
      const env = { ...borgEnv(dir), BURG_CONFIG_DIR: join(dir, "cfg") };
      const repo = join(dir, "repo");
      expect(run([requireBorg(), "init", "-e", "none", repo], { env }).code).toBe(0);

      const a = await writer(env, repo);
      await a.pipeline("put", [1, 2, 3].map((n) => ({ id: id(n), data: new Uint8Array(5000).fill(n) })));
      // someone breaks the lock from outside while A's transaction is open
      const broken = run([BURG, "break-lock", "--force", repo], { env });
      expect(broken.code).toBe(0);
      const b = await writer(env, repo);
      await b.pipeline("put", [7, 8].map((n) => ({ id: id(n), data: new Uint8Array(3000).fill(n) })));
      if (bOpen === "committed") await b.call("commit", COMMIT);

      // A goes on and commits: refused, with the reason
      let putError: unknown = null;
      await a.call("put", { id: id(4), data: new Uint8Array(5000).fill(4) }).catch((e) => (putError = e));
      const commitError = await a.call("commit", COMMIT).then(() => null, (e) => e as Error);
      expect(String(commitError ?? putError)).toContain("ConcurrentWriteConflict: Another writer changed the repository");
      const aEnd = await a.close();
      expect(aEnd.stderr).toContain("was its lock broken from outside?");

      if (bOpen === "still open") await b.call("commit", COMMIT);
      await b.close();

      // B's commit stands, A's changes are gone, and plain borg agrees
      const check = run([requireBorg(), "check", "--repository-only", repo], { env });
      expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });
      expect(repoContents(repo).ids).toEqual([MANIFEST_HEX, hex(id(7)), hex(id(8))].sort());
      const c = await writer(env, repo);
      expect(await c.call("get", { id: id(8) })).toEqual(new Uint8Array(3000).fill(8));
      await c.close();
    }, 60_000);
  }
});
