// A process killed at random points of put/commit/compact always leaves a repository that
// reopens to the last committed state (or the one after it, when the kill landed after the
// commit became durable but before the worker logged it); plain borg check agrees.

import { describe, expect, test } from "bun:test";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Repository } from "../../src/repository/repository.ts";
import { toHex } from "../../src/util/hex.ts";
import { borgEnv, requireBorg, ROOT, run, tempDir } from "../support/env.ts";
import { createHash } from "node:crypto";
import { expectedState, objectDigest } from "../support/engine-workload.ts";
import { prng } from "../support/data.ts";

const TRIALS = Number(process.env.BURG_CRASH_TRIALS ?? 200);
const BUN = process.execPath;

async function waitForReady(stdout: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stdout.getReader();
  let text = "";
  while (!text.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("worker exited before it was ready");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
}

function lastLogged(logFile: string): number {
  if (!existsSync(logFile)) return 0;
  const lines = readFileSync(logFile, "utf8").split("\n").filter(Boolean);
  return lines.length ? Number(lines[lines.length - 1]) : 0;
}

async function repoState(repoPath: string): Promise<Map<string, string>> {
  const repo = await Repository.open(repoPath, { exclusive: true, lockWait: 10 });
  try {
    const out = new Map<string, string>();
    let marker: Uint8Array | null = null;
    for (;;) {
      const page: Uint8Array[] = await repo.list(1000, marker);
      if (!page.length) break;
      for (const id of page) out.set(toHex(id), createHash("sha256").update(await repo.get(id)).digest("hex"));
      marker = page[page.length - 1]!;
    }
    return out;
  } finally {
    repo.close();
  }
}

function matches(state: Map<string, string>, k: number): boolean {
  const want = expectedState(k);
  if (want.size !== state.size) return false;
  for (const [hex, [t, j]] of want) {
    if (state.get(hex) !== objectDigest(t, j)) return false;
  }
  return true;
}

describe("crash safety", () => {
  test(
    `${TRIALS} workers killed at random points reopen to a committed state`,
    async () => {
      requireBorg();
      const home = tempDir();
      const repoPath = join(home, "repo");
      // Committed once, as borg init does: with no commit at all there is no transaction whose
      // later segments a kill's leftovers could be told apart from (borg cleans up only after
      // the last commit), and a first transaction killed after creating a segment file left it
      // empty for good, which borg check then reports.
      const fresh = await Repository.open(repoPath, { create: true, exclusive: true });
      await fresh.commit();
      fresh.close();
      const logFile = join(home, "log");
      const rand = prng(2024);
      let committed = 0;
      for (let trial = 0; trial < TRIALS; trial++) {
        const worker = Bun.spawn(
          [BUN, join(ROOT, "test/support/engine-workload.ts"), repoPath, logFile, String(committed + 1)],
          { stdout: "pipe", stderr: "pipe" },
        );
        // kill somewhere in the first few transactions of this worker (a transaction takes
        // ~60ms on an idle machine), counted from the end of its start-up so that a loaded
        // machine does not turn every trial into a kill during start-up
        await waitForReady(worker.stdout);
        await Bun.sleep(Math.floor(rand() * 300));
        worker.kill("SIGKILL");
        await worker.exited;
        const logged = lastLogged(logFile);
        const state = await repoState(repoPath);
        if (matches(state, logged)) committed = logged;
        else if (matches(state, logged + 1)) committed = logged + 1;
        else {
          const err = await new Response(worker.stderr).text();
          throw new Error(`trial ${trial}: state (${state.size} objects) matches neither ${logged} nor ${logged + 1}\n${err}`);
        }
        if (committed > logged) run(["sh", "-c", `echo ${committed} >> '${logFile}'`]);
        if (trial % 40 === 39) {
          const r = run([requireBorg(), "check", "--repository-only", repoPath], { env: borgEnv(home) });
          if (r.code !== 0) throw new Error(`trial ${trial}: borg check failed:\n${r.stderr}`);
        }
      }
      expect(committed).toBeGreaterThan(TRIALS / 4);
      const r = run([requireBorg(), "check", "--repository-only", "-v", repoPath], { env: borgEnv(home) });
      expect(r.stderr).toContain("no problems found");
      expect(r.code).toBe(0);
    },
    600_000,
  );
});
