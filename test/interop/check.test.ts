// `burg check` (dist/burg) against the real borg on a damage corpus made from a repository
// written by borg: for every kind of damage, burg and `borg check --repository-only` agree on
// the verdict (same exit code), and after `burg check --repair` the repository passes plain
// borg's check and keeps exactly the objects borg's own repair keeps on an identical copy.
// Also: the --json report, partial checks that take turns with borg's, progress output, the lock.

import { beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TAG_COMMIT, TAG_DELETE, TAG_PUT } from "../../src/repository/format.ts";
import { readConfig } from "../../src/repository/config.ts";
import { BORG_PYTHON, borgPython } from "../support/borg-python.ts";
import { evictSegments, makeSourceTree } from "../support/data.ts";
import {
  appendBytes,
  biggestDataSegment,
  copyRepo,
  deleteSegment,
  flipBit,
  indexTransaction,
  isCommitOnly,
  segmentLayout,
  truncateTo,
  zeroRange,
  type SegmentInfo,
} from "../support/damage.ts";
import { BURG, borgEnv, requireBorg, requireBurg, run, runAsync, tempDir, type RunResult } from "../support/env.ts";
import { fakeSsh, remoteBorg } from "../support/fake-ssh.ts";

/** Per test: several borg runs each, on a machine that may be busy. */
const TIMEOUT = 120_000;

let home = "";
let base = "";

function burgEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...borgEnv(home),
    BURG_CONFIG_DIR: join(home, "burg-config"),
    BORG_HOST_ID: "burg-check-test@1",
    ...extra,
  };
}

function borgRun(args: string[]): Promise<RunResult> {
  return runAsync([requireBorg(), ...args], { env: borgEnv(home, { BORG_HOST_ID: "burg-check-test@1" }) });
}

function burgRun(args: string[], extra: Record<string, string> = {}): Promise<RunResult> {
  return runAsync([requireBurg(), ...args], { env: burgEnv(extra) });
}

function borgOk(args: string[]): void {
  const r = run([requireBorg(), ...args], { env: borgEnv(home) });
  if (r.code !== 0) throw new Error(`borg ${args.join(" ")} failed (${r.code}):\n${r.stderr}`);
}

const LIST_IDS = `
import sys, json
from borg.logger import setup_logging
setup_logging(level="error")
from borg.repository import Repository
res = {}
for path in sys.argv[1:]:
    ids = []
    with Repository(path, exclusive=True) as r:
        marker = None
        while True:
            page = r.list(limit=10000, marker=marker)
            if not page:
                break
            ids.extend(page)
            marker = page[-1]
    res[path] = sorted(i.hex() for i in ids)
print(json.dumps(res))
`;

/** Object ids of each repository as borg's own Repository.list() sees them (async: cases run side by side). */
async function borgObjectIds(...repos: string[]): Promise<Map<string, string[]>> {
  requireBorg();
  const r = await runAsync([BORG_PYTHON, "-c", LIST_IDS, ...repos], { env: borgEnv(home) });
  if (r.code !== 0) throw new Error(`listing object ids with borg's Repository failed:\n${r.stderr}`);
  return new Map(Object.entries(JSON.parse(r.stdout) as Record<string, string[]>));
}

/** At most `n` cases at a time: each runs several borg processes, and CI has two cores. */
function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (fn) => {
    while (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await fn();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

function layout(repo: string): SegmentInfo[] {
  return segmentLayout(repo);
}

function dataSegment(repo: string): SegmentInfo {
  return biggestDataSegment(layout(repo));
}

/** A PUT in the middle of a segment (not its first or last entry, when there are several). */
function middlePut(s: SegmentInfo) {
  const puts = s.entries.filter((e) => e.tag === TAG_PUT);
  return puts[Math.floor(puts.length / 2)]!;
}

function lastSegment(repo: string): SegmentInfo {
  const l = layout(repo);
  return l[l.length - 1]!;
}

function tid(repo: string): number {
  const t = indexTransaction(repo);
  if (t === null) throw new Error(`no index in ${repo}`);
  return t;
}

/** magic + one PUT with a valid CRC: a segment of a transaction that never committed. */
function uncommittedSegmentBytes(): Uint8Array {
  const data = new TextEncoder().encode("data of a transaction that never committed");
  const entry = new Uint8Array(41 + data.length);
  const dv = new DataView(entry.buffer);
  dv.setUint32(4, entry.length, true);
  entry[8] = TAG_PUT;
  entry.fill(0xab, 9, 41);
  entry.set(data, 41);
  dv.setUint32(0, Bun.hash.crc32(entry.subarray(4)) >>> 0, true);
  return Buffer.concat([Buffer.from("BORG_SEG"), entry]);
}

const CASES: Array<[string, (repo: string) => void]> = [
  ["intact", () => {}],
  ["entry header: size field bit flip", (r) => {
    const s = dataSegment(r);
    flipBit(s.path, middlePut(s).offset + 5, 3);
  }],
  ["entry header: CRC field bit flip", (r) => {
    const s = dataSegment(r);
    flipBit(s.path, middlePut(s).offset + 1);
  }],
  ["entry header: tag bit flip", (r) => {
    const s = dataSegment(r);
    flipBit(s.path, middlePut(s).offset + 8, 1);
  }],
  ["entry header: key bit flip", (r) => {
    const s = dataSegment(r);
    flipBit(s.path, middlePut(s).offset + 9 + 7, 4);
  }],
  ["data bit flip", (r) => {
    const s = dataSegment(r);
    const e = middlePut(s);
    flipBit(s.path, e.offset + Math.floor(e.size / 2), 6);
  }],
  ["data bit flips in two segments", (r) => {
    const segs = layout(r).filter((s) => s.entries.filter((e) => e.tag === TAG_PUT).length > 2);
    for (const s of [segs[0]!, segs[segs.length - 1]!]) {
      const e = middlePut(s);
      flipBit(s.path, e.offset + e.size - 3, 2);
    }
  }],
  ["DELETE entry bit flip", (r) => {
    const s = deleteSegment(layout(r));
    const e = s.entries.filter((x) => x.tag === TAG_DELETE)[0]!;
    flipBit(s.path, e.offset + 20);
  }],
  ["last commit tag bit flip", (r) => {
    const s = lastSegment(r);
    flipBit(s.path, s.entries[s.entries.length - 1]!.offset + 2);
  }],
  ["earlier commit tag bit flip", (r) => {
    const commits = layout(r).filter(isCommitOnly);
    const s = commits[Math.floor(commits.length / 2) - 1]!;
    flipBit(s.path, s.entries[0]!.offset + 4, 1);
  }],
  ["segment truncated inside an entry", (r) => {
    const s = dataSegment(r);
    const e = middlePut(s);
    truncateTo(s.path, e.offset + Math.floor(e.size / 3));
  }],
  ["segment truncated inside a header", (r) => {
    const s = dataSegment(r);
    truncateTo(s.path, middlePut(s).offset + 4);
  }],
  ["zeroed 4 KiB block", (r) => {
    const s = dataSegment(r);
    zeroRange(s.path, middlePut(s).offset + 100, 4096);
  }],
  ["zeroed 64 KiB block across entries", (r) => {
    const segs = layout(r).filter((s) => s.entries.length > 20);
    const s = segs[0]!;
    zeroRange(s.path, s.entries[3]!.offset - 10, 65536);
  }],
  ["bad segment magic", (r) => {
    flipBit(dataSegment(r).path, 0, 0);
  }],
  ["missing data segment", (r) => {
    unlinkSync(dataSegment(r).path);
  }],
  ["missing last segment", (r) => {
    unlinkSync(lastSegment(r).path);
  }],
  ["lost last commit (last segment cut to its magic)", (r) => {
    truncateTo(lastSegment(r).path, 8);
  }],
  ["garbage after the last commit", (r) => {
    appendBytes(lastSegment(r).path, new TextEncoder().encode("garbage after the commit"));
  }],
  ["garbage at the end of a data segment", (r) => {
    appendBytes(dataSegment(r).path, new Uint8Array(100).fill(0x5a));
  }],
  ["uncommitted segment after the last commit", (r) => {
    const s = lastSegment(r);
    writeFileSync(join(r, "data", "0", String(s.segment + 1)), uncommittedSegmentBytes());
  }],
  ["index missing", (r) => unlinkSync(join(r, `index.${tid(r)}`))],
  ["index truncated", (r) => truncateTo(join(r, `index.${tid(r)}`), 1000)],
  ["index bit flip", (r) => flipBit(join(r, `index.${tid(r)}`), 5000, 2)],
  ["hints missing", (r) => unlinkSync(join(r, `hints.${tid(r)}`))],
  ["hints truncated", (r) => truncateTo(join(r, `hints.${tid(r)}`), 20)],
  ["hints bit flip", (r) => flipBit(join(r, `hints.${tid(r)}`), 30, 0)],
  ["integrity missing", (r) => unlinkSync(join(r, `integrity.${tid(r)}`))],
  ["integrity truncated", (r) => truncateTo(join(r, `integrity.${tid(r)}`), 50)],
  ["integrity bit flip", (r) => flipBit(join(r, `integrity.${tid(r)}`), 100, 1)],
];

beforeAll(() => {
  requireBorg();
  requireBurg();
  home = tempDir("burg-check-");
  base = join(home, "base");
  const src = join(home, "src");
  makeSourceTree(src, { seed: 1, files: 40, totalBytes: 4_000_000 });
  borgOk(["init", "-e", "none", base]);
  borgOk(["create", "--chunker-params", "10,16,12,4095", `${base}::a1`, src]);
  makeSourceTree(join(src, "more"), { seed: 2, files: 20, totalBytes: 1_500_000 });
  borgOk(["create", `${base}::a2`, src]);
  makeSourceTree(join(src, "even-more"), { seed: 3, files: 10, totalBytes: 1_000_000 });
  borgOk(["create", `${base}::a3`, src]);
  // DELETE entries stay in the segments until compaction
  borgOk(["delete", `${base}::a2`]);
}, 120_000);

describe("burg check agrees with borg check --repository-only", () => {
  test("the base repository has the structure the cases need", () => {
    const l = layout(base);
    expect(l.filter(isCommitOnly).length).toBeGreaterThan(3);
    expect(l.some((s) => s.entries.some((e) => e.tag === TAG_DELETE))).toBe(true);
    expect(l.some((s) => s.entries.length > 20)).toBe(true);
    expect(l[l.length - 1]!.entries.at(-1)!.tag).toBe(TAG_COMMIT);
  }, TIMEOUT);

  const slot = limiter(3);
  for (const [name, damage] of CASES) {
    test.concurrent(name, () =>
      slot(async () => {
        const dir = tempDir("burg-check-case-");
        try {
          await damageCase(dir, name, damage);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }), TIMEOUT);
  }
});

/** One damage case on four copies: check by both, repair by both, then compare. */
async function damageCase(dir: string, name: string, damage: (repo: string) => void): Promise<void> {
  const copies = ["burg", "borg", "burg-repair", "borg-repair"].map((n) => {
    const p = copyRepo(base, join(dir, n));
    damage(p);
    return p;
  });
  const [burgCopy, borgCopy, burgRepair, borgRepair] = copies as [string, string, string, string];
  // The check copy out of the page cache (read with O_DIRECT), the repair copy cached (read
  // buffered): both of burg's read paths reach borg's verdicts.
  evictSegments(burgCopy);
  const [burgCheck, borgCheck] = await Promise.all([
    burgRun(["check", burgCopy]),
    borgRun(["check", "--repository-only", borgCopy]),
  ]);
  expect(borgCheck.code).toBeLessThan(2);
  expect({ exit: burgCheck.code, stderr: burgCheck.stderr.split("\n").slice(0, 5) }).toMatchObject({
    exit: borgCheck.code,
  });
  if (name === "intact") expect(burgCheck.code).toBe(0);

  const [burgFix, borgFix] = await Promise.all([
    burgRun(["check", "--repair", burgRepair]),
    borgRun(["check", "--repository-only", "--repair", borgRepair]),
  ]);
  expect(borgFix.code).toBe(0);
  expect({ exit: burgFix.code, stderr: burgFix.stderr }).toMatchObject({ exit: 0 });

  // burg's own verdict on its repair, then plain borg's
  const again = await burgRun(["check", burgRepair]);
  expect({ exit: again.code, stderr: again.stderr }).toMatchObject({ exit: 0 });
  const borgAfter = await borgRun(["check", "--repository-only", burgRepair]);
  expect({ exit: borgAfter.code, stderr: borgAfter.stderr }).toMatchObject({ exit: 0 });

  const ids = await borgObjectIds(burgRepair, borgRepair);
  expect(ids.get(burgRepair)!.length).toBeGreaterThan(0);
  expect(ids.get(burgRepair)).toEqual(ids.get(borgRepair)!);
}

describe("borg check --repository-only through burg serve (the RPC path)", () => {
  function lines(stderr: string, repo: string): string[] {
    return stderr.split(repo).join("<REPO>").split("\n").filter(Boolean);
  }

  // [name, damage, repair, many lines]: with hundreds of log lines the borg client drops the
  // last ones it has not read when the session ends (with borg serve as well), so there the
  // client must show a prefix of local borg's output; otherwise all of it.
  const cases: Array<[string, (repo: string) => void, boolean, boolean]> = [
    ["intact", () => {}, false, false],
    ["data bit flip", CASES.find((c) => c[0] === "data bit flip")![1], false, true],
    ["data bit flip, repair", CASES.find((c) => c[0] === "data bit flip")![1], true, false],
    ["index bit flip", CASES.find((c) => c[0] === "index bit flip")![1], false, false],
    ["lost last commit", CASES.find((c) => c[0].startsWith("lost last commit"))![1], false, false],
  ];
  for (const [name, damage, repair, many] of cases) {
    test(name, async () => {
      const dir = tempDir("burg-check-rpc-");
      const rsh = fakeSsh(dir);
      const ours = copyRepo(base, join(dir, "burg"));
      const theirs = copyRepo(base, join(dir, "borg"));
      damage(ours);
      damage(theirs);
      const args = ["check", "--repository-only", "-v", ...(repair ? ["--repair"] : [])];
      const viaBurg = remoteBorg(home, rsh, BURG);
      const b = await borgRun([...args, theirs]);
      const o = await viaBurg.run([...args, viaBurg.url(ours)]);
      expect(o.code).toBe(b.code);
      expect(o.stderr).toContain("Remote: Starting repository check");
      const remote = lines(o.stderr.replace(/^Remote: /gm, ""), ours);
      const local = lines(b.stderr, theirs);
      if (!many) {
        expect(remote).toEqual(local);
      } else {
        expect(remote.length).toBeGreaterThan(20);
        expect(remote).toEqual(local.slice(0, remote.length));
      }
      if (repair) expect((await borgRun(["check", "--repository-only", ours])).code).toBe(0);
    }, TIMEOUT);
  }
});

describe("burg check --json", () => {
  test("a damaged repository: verdict, counts and findings with segment and offset", async () => {
    const dir = tempDir("burg-check-json-");
    const repo = copyRepo(base, join(dir, "repo"));
    const s = dataSegment(repo);
    const e = middlePut(s);
    flipBit(s.path, e.offset + Math.floor(e.size / 2));
    const r = await burgRun(["check", "--json", repo]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.verdict).toBe("errors");
    expect(j.exit_code).toBe(1);
    expect(j.repositories).toHaveLength(1);
    const rep = j.repositories[0];
    expect(rep).toMatchObject({
      repository: repo,
      verdict: "errors",
      exit_code: 1,
      error: null,
      mode: "full",
      repair: false,
      transaction_id: tid(base),
      last_segment_checked: null,
    });
    expect(rep.segments.total).toBe(layout(base).length);
    expect(rep.segments.checked).toBe(layout(base).length);
    expect(rep.segments.damaged).toBe(1);
    expect(rep.segments.bytes).toBe(layout(base).reduce((n, x) => n + x.size, 0));
    expect(rep.objects.committed).toBeGreaterThan(rep.objects.rebuilt);
    expect(rep.errors).toBeGreaterThanOrEqual(2);
    const damaged = rep.findings.find((f: { kind: string }) => f.kind === "segment-damaged");
    expect(damaged).toEqual({
      severity: "error",
      kind: "segment-damaged",
      message: `Data integrity error: Segment entry checksum mismatch [segment ${s.segment}, offset ${e.offset}]`,
      segment: s.segment,
      offset: e.offset,
      file: null,
      id: null,
      repaired: false,
    });
    expect(rep.findings.some((f: { kind: string }) => f.kind === "index-count-mismatch")).toBe(true);
    const mismatch = rep.findings.find((f: { kind: string }) => f.kind === "index-mismatch");
    expect(mismatch.segment).toBe(s.segment);
    expect(mismatch.id).toMatch(/^[0-9a-f]{64}$/);

    const fix = await burgRun(["check", "--repair", "--json", repo]);
    expect(fix.code).toBe(0);
    const jf = JSON.parse(fix.stdout);
    expect(jf.verdict).toBe("repaired");
    const rf = jf.repositories[0];
    expect(rf.segments.recovered).toBe(1);
    const recovered = rf.findings.find((f: { kind: string }) => f.kind === "segment-recovered");
    expect(recovered).toMatchObject({ severity: "info", segment: s.segment, offset: e.offset, repaired: true });
    expect(recovered.message).toContain(`dropped ${e.size} damaged bytes`);
  }, TIMEOUT);

  test("an intact repository, a cache-file warning, and a repository that does not exist", async () => {
    const dir = tempDir("burg-check-json-");
    const repo = copyRepo(base, join(dir, "repo"));
    const flipped = copyRepo(base, join(dir, "flipped"));
    flipBit(join(flipped, `hints.${tid(flipped)}`), 30);
    const r = await burgRun(["check", "--json", repo, flipped, join(dir, "nope")]);
    expect(r.code).toBe(2);
    const j = JSON.parse(r.stdout);
    expect(j.verdict).toBe("failed");
    const [ok, warned, missing] = j.repositories;
    expect(ok).toMatchObject({ verdict: "ok", exit_code: 0, errors: 0, warnings: 0, findings: [] });
    expect(ok.objects.committed).toBe(ok.objects.rebuilt);
    expect(warned).toMatchObject({ verdict: "ok", exit_code: 0, errors: 0, warnings: 1 });
    expect(warned.findings[0]).toMatchObject({
      severity: "warning",
      kind: "hints-damaged",
      file: `hints.${tid(base)}`,
      segment: null,
    });
    expect(missing).toMatchObject({ verdict: "failed", exit_code: 2, findings: [] });
    expect(missing.error).toContain("does not exist");
  }, TIMEOUT);
});

describe("partial checks (--max-duration)", () => {
  test("borg continues where burg stopped, and burg continues where borg stopped", async () => {
    const dir = tempDir("burg-check-partial-");
    const repo = copyRepo(base, join(dir, "repo"));
    const segs = layout(repo).map((s) => s.segment);
    // A microsecond: burg stops after the first segment it checked.
    const first = await burgRun(["check", "--json", "--max-duration", "0.000001", repo]);
    expect(first.code).toBe(0);
    const r1 = JSON.parse(first.stdout).repositories[0];
    expect(r1).toMatchObject({ mode: "partial", last_segment_checked: segs[0] });
    expect(r1.segments.checked).toBe(1);
    expect(readConfig(repo).get("repository", "last_segment_checked")).toBe(String(segs[0]));

    const borgRest = await borgRun(["check", "--repository-only", "-v", "--max-duration", "3600", repo]);
    expect(borgRest.code).toBe(0);
    expect(borgRest.stderr).toContain(`skipping to segments >= ${segs[0]! + 1}`);
    expect(borgRest.stderr).toContain("Finished partial repository check, no problems found.");
    expect(readConfig(repo).get("repository", "last_segment_checked")).toBeUndefined();

    // borg's own partial check, with a clock that jumps 10 s per look: it stops after one segment.
    borgPython(
      `
import sys, time
t = [0.0]
def tick():
    t[0] += 10.0
    return t[0]
time.monotonic = tick
from borg.logger import setup_logging
setup_logging(level="error")
from borg.repository import Repository
with Repository(sys.argv[1], exclusive=True) as r:
    assert r.check(max_duration=5)
`,
      [repo],
    );
    const stopped = Number(readConfig(repo).get("repository", "last_segment_checked"));
    expect(stopped).toBe(segs[0]!);
    const burgRest = await burgRun(["check", "--json", "-v", "--max-duration", "3600", repo]);
    expect(burgRest.code).toBe(0);
    expect(burgRest.stderr).toContain(`skipping to segments >= ${stopped + 1}`);
    const r2 = JSON.parse(burgRest.stdout).repositories[0];
    expect(r2.segments.checked).toBe(segs.filter((s) => s > stopped).length);
    expect(r2.last_segment_checked).toBeNull();
    expect(readConfig(repo).get("repository", "last_segment_checked")).toBeUndefined();
  }, TIMEOUT);

  test("a partial check sees damage only in the segments it checks", async () => {
    const dir = tempDir("burg-check-partial-");
    const repo = copyRepo(base, join(dir, "repo"));
    const l = layout(repo);
    const s = l.find((x) => x.entries.some((e) => e.tag === TAG_PUT) && x.segment > l[0]!.segment)!;
    const e = middlePut(s);
    flipBit(s.path, e.offset + e.size - 1);
    const before = l.filter((x) => x.segment < s.segment).at(-1)!.segment;
    const cfg = readFileSync(join(repo, "config"), "utf8");
    // resume right after the damaged segment: it is not looked at
    writeFileSync(join(repo, "config"), cfg.replace("[repository]\n", `[repository]\nlast_segment_checked = ${s.segment}\n`));
    expect((await burgRun(["check", "--max-duration", "3600", repo])).code).toBe(0);
    // resume right before it: found
    writeFileSync(join(repo, "config"), cfg.replace("[repository]\n", `[repository]\nlast_segment_checked = ${before}\n`));
    const r = await burgRun(["check", "--max-duration", "3600", repo]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Segment entry checksum mismatch [segment ${s.segment}, offset ${e.offset}]`);
    expect(r.stderr).toContain("Finished partial repository check, errors found.");
    const b = await borgRun(["check", "--repository-only", "--max-duration", "3600", repo]);
    expect(b.code).toBe(1);
  }, TIMEOUT);

  test("--repair and --max-duration do not go together", async () => {
    const r = await burgRun(["check", "--repair", "--max-duration", "10", base]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--repair does not allow --max-duration argument.");
  }, TIMEOUT);
});

describe("progress, lock, confirmation", () => {
  test("--progress writes progress lines to stderr, ending at 100%", async () => {
    const dir = tempDir("burg-check-progress-");
    const repo = copyRepo(base, join(dir, "repo"));
    const n = layout(repo).length;
    const r = await burgRun(["check", "--progress", repo]);
    expect(r.code).toBe(0);
    const lines = r.stderr.split("\n").filter((l) => l.startsWith("Checking segments"));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    const last = lines.at(-1)!;
    expect(last).toContain("100.0%");
    expect(last).toContain(`${n}/${n} segments`);
    expect(last).toMatch(/B\/s/);
    // without --progress and without a terminal: quiet
    const quiet = await burgRun(["check", repo]);
    expect(quiet.stderr).toBe("");
  }, TIMEOUT);

  test("a locked repository: exit 2 after --lock-wait", async () => {
    const dir = tempDir("burg-check-lock-");
    const repo = copyRepo(base, join(dir, "repo"));
    const holder = Bun.spawn([requireBorg(), "with-lock", repo, "sleep", "30"], {
      env: borgEnv(home),
      stdout: "ignore",
      stderr: "ignore",
    });
    try {
      const deadline = Date.now() + 20_000;
      while (!existsSync(join(repo, "lock.exclusive")) && Date.now() < deadline) await Bun.sleep(50);
      const r = await burgRun(["check", "--lock-wait", "0", repo]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("Failed to create/acquire the lock");
    } finally {
      holder.kill("SIGTERM");
      await holder.exited;
    }
  }, TIMEOUT);

  test("--repair asks for confirmation like borg", async () => {
    const dir = tempDir("burg-check-confirm-");
    const repo = copyRepo(base, join(dir, "repo"));
    const no = await burgRun(["check", "--repair", repo], { BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "NO" });
    expect(no.code).toBe(2);
    expect(no.stderr).toContain("Type 'YES' if you understand this and want to continue");
    const env = burgEnv();
    delete env.BORG_CHECK_I_KNOW_WHAT_I_AM_DOING;
    const none = await runAsync([requireBurg(), "check", "--repair", repo], { env });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES");
  }, TIMEOUT);
});
