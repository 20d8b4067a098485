// runCheckCommand: option rules, borg's repair confirmation, the JSON result, the progress line
// on a terminal (and log lines that do not land inside it), and interruption.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCheckCommand, type CheckCommandIO, type CheckCommandOptions } from "../../../src/commands/check.ts";
import { Interrupted, UsageError } from "../../../src/errors.ts";
import { resetHostIdCache } from "../../../src/lock/host-id.ts";
import { releaseAllLocks } from "../../../src/lock/lock.ts";
import { Repository } from "../../../src/repository/repository.ts";
import { log } from "../../../src/util/log.ts";
import { prng, randomBytes } from "../../support/data.ts";
import { segmentLayout, copyRepo } from "../../support/damage.ts";
import { tempDir } from "../../support/env.ts";

let saved: string | undefined;
let base = "";
const savedLog = { json: log.json, level: log.level, sink: log.sink };

beforeAll(async () => {
  saved = process.env.BORG_HOST_ID;
  process.env.BORG_HOST_ID = "burg-unit-check@1";
  resetHostIdCache();
  base = join(tempDir("burg-check-cmd-"), "repo");
  const repo = await Repository.open(base, { create: true, exclusive: true, lockWait: 1 });
  const rand = prng(3);
  for (let t = 0; t < 3; t++) {
    for (let i = 0; i < 40; i++) await repo.put(randomBytes(rand, 32), randomBytes(rand, 1000 + Math.floor(rand() * 20000)));
    await repo.commit({ compact: false });
  }
  repo.close();
});

afterAll(() => {
  releaseAllLocks();
  log.json = savedLog.json;
  log.level = savedLog.level;
  log.sink = savedLog.sink;
  if (saved === undefined) delete process.env.BORG_HOST_ID;
  else process.env.BORG_HOST_ID = saved;
  resetHostIdCache();
});

function io(over: Partial<CheckCommandIO> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const value: CheckCommandIO = {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    isTTY: false,
    env: { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES" },
    confirm: null,
    ...over,
  };
  return { io: value, out, err };
}

function opts(over: Partial<CheckCommandOptions>): CheckCommandOptions {
  return {
    repos: [],
    repair: false,
    json: false,
    progress: false,
    maxDuration: 0,
    lockWait: 1,
    verbose: false,
    debug: false,
    ...over,
  };
}

function damagedCopy(): string {
  const repo = copyRepo(base, join(tempDir("burg-check-cmd-"), "repo"));
  const s = segmentLayout(repo).find((x) => x.entries.length > 10)!;
  const b = readFileSync(s.path);
  b[s.entries[5]!.offset + 50]! ^= 1;
  writeFileSync(s.path, b);
  return repo;
}

describe("runCheckCommand", () => {
  test("option rules", async () => {
    await expect(runCheckCommand(opts({}), io().io)).rejects.toBeInstanceOf(UsageError);
    await expect(runCheckCommand(opts({ repos: [base], repair: true, maxDuration: 5 }), io().io)).rejects.toThrow(
      "--repair does not allow --max-duration argument.",
    );
  });

  test("the repair question: environment, terminal answer, nobody to ask", async () => {
    const repo = damagedCopy();
    const questions: string[] = [];
    const refused = io({ env: {}, confirm: async (q) => (questions.push(q), "no") });
    expect(await runCheckCommand(opts({ repos: [repo], repair: true }), refused.io)).toBe(2);
    expect(questions[0]).toContain("Type 'YES' if you understand this and want to continue");
    expect(refused.err.join("")).toBe("Aborting.\n");
    const nobody = io({ env: {} });
    expect(await runCheckCommand(opts({ repos: [repo], repair: true }), nobody.io)).toBe(2);
    expect(nobody.err.join("")).toContain("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES");
    const wrongEnv = io({ env: { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "yes" } });
    expect(await runCheckCommand(opts({ repos: [repo], repair: true }), wrongEnv.io)).toBe(2);
    expect(wrongEnv.err.join("")).toContain("Invalid answer, aborting.");
    // nothing was changed so far
    expect(await runCheckCommand(opts({ repos: [repo] }), io().io)).toBe(1);
    const asked: string[] = [];
    const yes = io({ env: {}, confirm: async (q) => (asked.push(q), "YES") });
    expect(await runCheckCommand(opts({ repos: [repo], repair: true }), yes.io)).toBe(0);
    expect(asked).toHaveLength(1);
    expect(await runCheckCommand(opts({ repos: [repo] }), io().io)).toBe(0);
  });

  test("--json: one result for all repositories", async () => {
    const damaged = damagedCopy();
    const j = io();
    expect(await runCheckCommand(opts({ repos: [base, damaged], json: true }), j.io)).toBe(1);
    expect(j.out).toHaveLength(1);
    const r = JSON.parse(j.out[0]!);
    expect(r.verdict).toBe("errors");
    expect(r.exit_code).toBe(1);
    expect(r.repositories.map((x: { verdict: string }) => x.verdict)).toEqual(["ok", "errors"]);
    expect(r.repositories[0].segments.checked).toBe(segmentLayout(base).length);
    expect(r.repositories[0].objects).toEqual({ committed: 120, rebuilt: 120 });
    expect(r.repositories[1].findings[0]).toMatchObject({ severity: "error", kind: "segment-damaged" });
  });

  test("a terminal gets a progress line, and log lines wipe it first", async () => {
    const damaged = damagedCopy();
    const t = io({ isTTY: true, columns: 200 });
    expect(await runCheckCommand(opts({ repos: [damaged] }), t.io)).toBe(1);
    const text = t.err.join("");
    expect(text).toContain("\rChecking segments");
    expect(text).toMatch(/100\.0%.*segments.*\n$/);
    // every log line starts on a clean line: after a newline or after the wiped progress line
    for (const m of text.matchAll(/Error: /g)) {
      const before = text.slice(0, m.index);
      expect(before === "" || before.endsWith("\n") || /\r +\r$/.test(before)).toBe(true);
    }
    const quiet = io();
    expect(await runCheckCommand(opts({ repos: [base] }), quiet.io)).toBe(0);
    expect(quiet.err.join("")).toBe("");
    const forced = io();
    expect(await runCheckCommand(opts({ repos: [base], progress: true, verbose: true }), forced.io)).toBe(0);
    const lines = forced.err.join("").split("\n");
    expect(lines.some((l) => l.startsWith("Checking segments") && l.includes("100.0%"))).toBe(true);
    expect(lines.some((l) => l.includes("full check, no problems found"))).toBe(true);
  });

  test("an abort stops the check with the signal's exit code and releases the lock", async () => {
    const controller = new AbortController();
    controller.abort(new Interrupted("SIGINT", 2));
    const e = await runCheckCommand(opts({ repos: [base] }), io({ signal: controller.signal }).io).catch((x) => x);
    expect(e).toBeInstanceOf(Interrupted);
    expect((e as Interrupted).exitCode).toBe(130);
    expect(await runCheckCommand(opts({ repos: [base], lockWait: 0 }), io().io)).toBe(0);
  });
});
