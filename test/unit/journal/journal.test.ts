import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alertReasons, DEFAULT_THRESHOLDS } from "../../../src/journal/alerts.ts";
import { appendJournal, JOURNAL_VERSION, KEEP_ROTATED, readJournal, type JournalLine } from "../../../src/journal/journal.ts";
import { emptyTotals, sessionRecords, type SessionRecord } from "../../../src/journal/records.ts";
import { prometheus, repositoryStatus } from "../../../src/journal/status.ts";
import { parseDuration, parseTime } from "../../../src/util/duration.ts";
import { parsePrometheus } from "../../support/prometheus.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function repoDir(): string {
  const d = mkdtempSync(join(tmpdir(), "burg-journal-"));
  dirs.push(d);
  writeFileSync(join(d, "config"), "[repository]\n");
  return d;
}

function line(event: JournalLine["event"], session: string, extra: Record<string, unknown> = {}): JournalLine {
  return { v: JOURNAL_VERSION, event, session, time: new Date().toISOString(), ...extra };
}

describe("journal file", () => {
  test("lines are appended and read back in order", () => {
    const repo = repoDir();
    appendJournal(repo, line("begin", "a", { pid: 1 }));
    appendJournal(repo, line("end", "a", { outcome: "read" }), { sync: true });
    expect(readJournal(repo).map((l) => `${l.session}:${l.event}`)).toEqual(["a:begin", "a:end"]);
  });

  test("a torn last line is skipped and does not swallow the next one", () => {
    const repo = repoDir();
    appendJournal(repo, line("begin", "a"));
    appendFileSync(join(repo, "burg", "journal.jsonl"), '{"v":1,"event":"commit","sess'); // killed mid-write
    appendJournal(repo, line("begin", "b"));
    expect(readJournal(repo).map((l) => l.session)).toEqual(["a", "b"]);
  });

  test("the journal is bounded: rotated at the size cap, only the newest rotated files kept", async () => {
    const repo = repoDir();
    for (let i = 0; i < 40; i++) {
      appendJournal(repo, line("begin", `s${i}`, { pad: "x".repeat(300) }), { maxBytes: 1000 });
      await Bun.sleep(2); // rotated names carry the time in ms
    }
    const files = readdirSync(join(repo, "burg"));
    expect(files.filter((f) => /^journal\.\d+\.jsonl$/.test(f)).length).toBe(KEEP_ROTATED);
    const sessions = readJournal(repo).map((l) => l.session);
    expect(sessions.at(-1)).toBe("s39");
    expect(sessions).not.toContain("s0");
    // oldest first, no gaps inside what is kept
    const nums = sessions.map((s) => Number(s.slice(1)));
    expect(nums).toEqual([...nums].sort((a, b) => a - b));
    expect(nums.at(-1)! - nums[0]! + 1).toBe(nums.length);
  });

  test("a vanished repository gets no journal directory", () => {
    const repo = repoDir();
    rmSync(repo, { recursive: true });
    expect(() => appendJournal(repo, line("begin", "a"))).toThrow();
    expect(() => readFileSync(repo)).toThrow();
  });
});

describe("session records", () => {
  test("begin + commits + end merge; a begin without end from a dead process is unfinished", () => {
    const lines = [
      line("begin", "a", { host: "h", pid: 999999, repository: "/r", command: "serve" }),
      line("commit", "a", { ...emptyTotals(), commits: [5], written: { objects: 3, bytes: 10 } }),
      line("begin", "b", { host: "h", pid: 999998, repository: "/r", command: "serve" }),
      line("commit", "b", { ...emptyTotals(), commits: [7] }),
      line("end", "a", { ...emptyTotals(), commits: [5, 6], written: { objects: 4, bytes: 11 }, outcome: "committed" }),
    ];
    const [a, b] = sessionRecords(lines, "h");
    expect(a!.outcome).toBe("committed");
    expect(a!.commits).toEqual([5, 6]);
    expect(a!.written.objects).toBe(4);
    expect(b!.outcome).toBe("unfinished");
    expect(b!.commits).toEqual([7]);
  });

  test("a session of a live process of this host is running", () => {
    const lines = [line("begin", "a", { host: "h", pid: process.pid, repository: "/r" })];
    expect(sessionRecords(lines, "h")[0]!.outcome).toBe("running");
    expect(sessionRecords(lines, "other")[0]!.outcome).toBe("unfinished");
  });
});

function record(over: Partial<SessionRecord>): SessionRecord {
  return {
    session: "s",
    repository: "/r",
    command: "serve",
    host: "h",
    pid: 1,
    pid_start: null,
    boot: null,
    start: "",
    end: "",
    outcome: "committed",
    who: {},
    options: {},
    client_version: null,
    session_end: "eof",
    error: null,
    errors: 0,
    signal: null,
    ...emptyTotals(),
    ...over,
  };
}

describe("alert conditions", () => {
  test("an ordinary prune raises nothing; mass deletion, a shrunk manifest and errors do", () => {
    const t = DEFAULT_THRESHOLDS;
    expect(alertReasons(record({ objects_at_open: 1000, deleted: { objects: 120, bytes: 0 }, manifest: { old_size: 900, new_size: 800, rewrites: 1 }, overwritten: { objects: 1, bytes: 0 } }), t)).toEqual([]);
    expect(alertReasons(record({ objects_at_open: 1000, deleted: { objects: 400, bytes: 0 } }), t)[0]).toContain("400 of 1000");
    expect(alertReasons(record({ manifest: { old_size: 900, new_size: 200, rewrites: 1 } }), t)[0]).toContain("manifest");
    expect(alertReasons(record({ outcome: "error", error: "commit: OSError: disk full" }), t)[0]).toContain("disk full");
    // thresholds are options
    expect(alertReasons(record({ objects_at_open: 1000, deleted: { objects: 120, bytes: 0 } }), { ...t, deleteShare: 0.1 })).toHaveLength(1);
  });
});

describe("status", () => {
  test("prometheus output parses, with the repository as an escaped label", () => {
    const repo = join(repoDir(), 'we"ird\\name');
    mkdirSync(repo);
    writeFileSync(join(repo, "config"), "[repository]\n");
    appendJournal(repo, line("begin", "a", { host: "h", pid: 999999, command: "serve", repository: repo }));
    appendJournal(repo, line("commit", "a", { ...emptyTotals(), commits: [1] }));
    appendJournal(repo, line("end", "a", { ...emptyTotals(), commits: [1], outcome: "committed" }));
    appendJournal(repo, line("check", "c", { verdict: "ok", repair: false }));
    const s = repositoryStatus(repo);
    const families = parsePrometheus(prometheus([s], ["/gone"]));
    const up = families.get("burg_repository_up")!;
    expect(up.type).toBe("gauge");
    expect(up.samples.map((x) => [x.labels.repository, x.value])).toEqual([[repo, 1], ["/gone", 0]]);
    expect(families.get("burg_last_session_success")!.samples[0]!.value).toBe(1);
    expect(families.get("burg_last_check_success")!.samples[0]!.value).toBe(1);
    expect(families.get("burg_last_commit_age_seconds")!.samples[0]!.value).toBeLessThan(60);
  });

  test("the parser rejects what Prometheus rejects", () => {
    expect(() => parsePrometheus('m{repository="a} 1\n')).toThrow();
    expect(() => parsePrometheus("m 1\n# TYPE m gauge\n")).toThrow();
    expect(() => parsePrometheus("m 1\nm 2\n")).toThrow();
    expect(() => parsePrometheus("1m 1\n")).toThrow();
  });
});

describe("durations and times", () => {
  test("parse", () => {
    expect(parseDuration("7d")).toBe(7 * 86400);
    expect(parseDuration("1d12h")).toBe(36 * 3600);
    expect(parseDuration("soon")).toBeNull();
    expect(parseTime("2026-12-01T08:00:00Z")).toBe(Date.UTC(2026, 11, 1, 8));
    expect(parseTime("2026-12-01T08:00:00+01:00")).toBe(Date.UTC(2026, 11, 1, 7));
    expect(parseTime("1h", 10_000_000)).toBe(10_000_000 - 3_600_000);
    expect(parseTime("yesterday")).toBeNull();
    expect(parseTime("2026-12-01T08:00:00.250-0530")).toBe(Date.UTC(2026, 11, 1, 13, 30, 0, 250));
    expect(parseTime("2026-12-01 08:00Z")).toBe(Date.UTC(2026, 11, 1, 8));
    expect(parseTime("2026-02-30")).toBeNull();
    expect(parseTime("2026-12-01T25:00")).toBeNull();
  });

  test("a time without an offset, a bare date too, is local time", () => {
    const script = `import { parseTime } from ${JSON.stringify(new URL("../../../src/util/duration.ts", import.meta.url).pathname)};
console.log(JSON.stringify([parseTime("2026-12-01"), parseTime("2026-12-01T08:30"), parseTime("2026-07-01 08:30:15")]));`;
    for (const [tz, hours] of [["America/New_York", [5, 5, 4]], ["Asia/Kolkata", [-5.5, -5.5, -5.5]], ["UTC", [0, 0, 0]]] as const) {
      const r = Bun.spawnSync([process.execPath, "-e", script], { env: { ...process.env, TZ: tz }, stdout: "pipe", stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      const got = JSON.parse(r.stdout.toString());
      const h = hours as readonly number[];
      expect(got).toEqual([Date.UTC(2026, 11, 1) + h[0]! * 3600_000, Date.UTC(2026, 11, 1, 8, 30) + h[1]! * 3600_000, Date.UTC(2026, 6, 1, 8, 30, 15) + h[2]! * 3600_000]);
    }
  });
});
