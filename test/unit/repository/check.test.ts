// The check engine as the RPC path uses it (Repository.check -> runCheck): on identical copies
// of a repository written by borg, with and without damage, runCheck returns what borg's own
// Repository.check returns and logs the same messages at the same levels (borg clients show
// them as "Remote: ..."). Also the structured report of checkRepository.

import { afterEach, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { checkRepository } from "../../../src/repository/check.ts";
import { TAG_PUT } from "../../../src/repository/format.ts";
import { Repository } from "../../../src/repository/repository.ts";
import { log, type LogSink } from "../../../src/util/log.ts";
import { borgPython } from "../../support/borg-python.ts";
import { makeSourceTree } from "../../support/data.ts";
import {
  biggestDataSegment,
  copyRepo,
  flipBit,
  indexTransaction,
  segmentLayout,
  truncateTo,
} from "../../support/damage.ts";
import { borgEnv, requireBorg, run, tempDir } from "../../support/env.ts";
import { unlinkSync } from "node:fs";

/** Per test: several borg runs each, on a machine that may be busy. */
const TIMEOUT = 120_000;

let home = "";
let base = "";

type Line = [level: string, message: string];

beforeAll(() => {
  home = tempDir("burg-check-unit-");
  base = join(home, "base");
  const src = join(home, "src");
  makeSourceTree(src, { seed: 4, files: 30, totalBytes: 2_000_000 });
  for (const args of [
    ["init", "-e", "none", base],
    ["create", `${base}::a1`, src],
    ["create", "--chunker-params", "10,16,12,4095", `${base}::a2`, src],
  ]) {
    const r = run([requireBorg(), ...args], { env: borgEnv(home) });
    if (r.code !== 0) throw new Error(`borg ${args.join(" ")}: ${r.stderr}`);
  }
}, 120_000);

const saved = { json: log.json, level: log.level, sink: log.sink };
afterEach(() => {
  log.json = saved.json;
  log.level = saved.level;
  log.sink = saved.sink;
});

function borgCheck(repo: string, repair: boolean, maxDuration: number): { ok: boolean; log: Line[] } {
  const out = borgPython(
    `
import sys, json, io
from borg.logger import setup_logging
buf = io.StringIO()
setup_logging(stream=buf, level="info", json=True)
from borg.repository import Repository
path, repair, maxdur = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
with Repository(path, exclusive=True) as r:
    ok = r.check(repair=repair, max_duration=maxdur)
lines = [json.loads(l) for l in buf.getvalue().splitlines() if l.strip()]
print(json.dumps({"ok": ok, "log": [[l["levelname"], l["message"].replace(path, "REPO")] for l in lines if l.get("type") == "log_message"]}))
`,
    [repo, repair ? "1" : "0", String(maxDuration)],
  );
  return JSON.parse(out);
}

async function burgCheck(repo: string, repair: boolean, maxDuration: number): Promise<{ ok: boolean; log: Line[] }> {
  const lines: string[] = [];
  const sink: LogSink = { write: (l) => lines.push(l) };
  log.sink = sink;
  log.json = true;
  log.setLevel("INFO");
  const r = await Repository.open(repo, { exclusive: true, lockWait: 1 });
  let ok: boolean;
  try {
    ok = await r.check({ repair, maxDuration });
  } finally {
    r.close();
  }
  const parsed = lines.map((l) => JSON.parse(l) as { type: string; levelname: string; message: string });
  return {
    ok,
    log: parsed.filter((p) => p.type === "log_message").map((p) => [p.levelname, p.message.replaceAll(repo, "REPO")] as Line),
  };
}

/** Index mismatch lines come in hash-table order; compare them as a set, the rest in order. */
function normalise(lines: Line[]): { ordered: Line[]; ids: string[] } {
  return {
    ordered: lines.filter(([, m]) => !m.startsWith("ID: ")),
    ids: lines.filter(([, m]) => m.startsWith("ID: ")).map(([l, m]) => `${l} ${m}`).sort(),
  };
}

const CASES: Array<[string, (repo: string) => void]> = [
  ["intact", () => {}],
  ["a data bit flip", (r) => {
    const s = biggestDataSegment(segmentLayout(r));
    const e = s.entries.filter((x) => x.tag === TAG_PUT)[3]!;
    flipBit(s.path, e.offset + 60);
  }],
  ["a truncated segment", (r) => {
    const s = biggestDataSegment(segmentLayout(r));
    truncateTo(s.path, s.entries[s.entries.length - 2]!.offset + 20);
  }],
  ["a missing segment", (r) => unlinkSync(biggestDataSegment(segmentLayout(r)).path)],
  ["a damaged index", (r) => flipBit(join(r, `index.${indexTransaction(r)}`), 3000)],
  ["a missing index", (r) => unlinkSync(join(r, `index.${indexTransaction(r)}`))],
  ["a lost last commit", (r) => {
    const l = segmentLayout(r);
    truncateTo(l[l.length - 1]!.path, 8);
  }],
];

describe("runCheck says and returns what borg's Repository.check does", () => {
  for (const [name, damage] of CASES) {
    for (const repair of [false, true]) {
      test(`${name}${repair ? ", repair" : ""}`, async () => {
        const dir = tempDir("burg-check-unit-case-");
        const ours = copyRepo(base, join(dir, "burg"));
        const theirs = copyRepo(base, join(dir, "borg"));
        damage(ours);
        damage(theirs);
        const b = borgCheck(theirs, repair, 0);
        const o = await burgCheck(ours, repair, 0);
        expect(o.ok).toBe(b.ok);
        expect(normalise(o.log)).toEqual(normalise(b.log));
      }, TIMEOUT);
    }
  }

  test("a partial check", async () => {
    const dir = tempDir("burg-check-unit-case-");
    const ours = copyRepo(base, join(dir, "burg"));
    const theirs = copyRepo(base, join(dir, "borg"));
    const b = borgCheck(theirs, false, 3600);
    const o = await burgCheck(ours, false, 3600);
    expect(o).toEqual(b);
    expect(o.log.map((l) => l[1])).toContain("Finished partial repository check, no problems found.");
  }, TIMEOUT);
});

describe("checkRepository reports", () => {
  test("findings name segment and offset; repair recovers the segment", async () => {
    const dir = tempDir("burg-check-unit-report-");
    const repo = copyRepo(base, join(dir, "repo"));
    const s = biggestDataSegment(segmentLayout(repo));
    const e = s.entries.filter((x) => x.tag === TAG_PUT)[2]!;
    flipBit(s.path, e.offset + 50);
    log.level = Number.POSITIVE_INFINITY;
    const r = await Repository.open(repo, { exclusive: true, lockWait: 1 });
    try {
      const report = await checkRepository(r, { repair: false, maxDuration: 0 });
      expect(report.verdict).toBe("errors");
      expect(report.segments.damaged).toBe(1);
      expect(report.findings[0]).toMatchObject({ kind: "segment-damaged", segment: s.segment, offset: e.offset, logged: true });
      const progress: number[] = [];
      const fixed = await checkRepository(r, {
        repair: true,
        maxDuration: 0,
        onProgress: (p) => progress.push(p.bytesDone),
        chunkSize: 64 * 1024,
        depth: 2,
      });
      expect(fixed.verdict).toBe("repaired");
      expect(fixed.segments.recovered).toBe(1);
      expect(progress.at(-1)).toBe(segmentLayout(repo).reduce((n, x) => n + x.size, 0) + e.size);
      const after = await checkRepository(r, { repair: false, maxDuration: 0 });
      expect(after.verdict).toBe("ok");
      expect(after.findings).toEqual([]);
      expect(after.objects.rebuilt).toBe(fixed.objects.rebuilt);
    } finally {
      r.close();
    }
  }, TIMEOUT);
});
