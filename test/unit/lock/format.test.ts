// The lock format against borg's: JSON text as Python's json.dumps writes it, holder names as
// borg's kill_stale_lock parses them, and the files a borg Lock leaves on disk (produced at run
// time by the installed borg's locking.py) compared with what burg leaves.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  lockBasePath,
  parseRecord,
  parseRoster,
  parseUniqueName,
  pythonJsonDumps,
  rosterEntries,
  rosterRecords,
  uniqueName,
} from "../../../src/lock/format.ts";
import type { ProcessId } from "../../../src/lock/format.ts";
import { RepositoryLock } from "../../../src/lock/lock.ts";
import { borgPy, cleanupLockTests, lockTempDir } from "../../support/locks.ts";

afterAll(cleanupLockTests);

describe("pythonJsonDumps", () => {
  test("writes what Python's json.dumps writes", () => {
    const values: unknown[] = [
      { exclusive: [["h@1", 123, 0]] },
      { exclusive: [], shared: [["host-é@1", 5, 10], ["x", 1, 0]] },
      ["tab\tnew\nline", 'quote"back\\slash', "del\x7f", "nul\x00", "emoji 😀", "日本"],
      { nested: { a: [1, 2, { b: null, c: true, d: false }] }, n: -42, f: 1.5 },
      {},
      [],
    ];
    const python = borgPy(
      "import json, sys\nfor v in json.loads(sys.argv[1]): print(json.dumps(v))",
      [JSON.stringify(values)],
    ).split("\n");
    values.forEach((v, i) => expect(pythonJsonDumps(v)).toBe(python[i]));
  });
});

describe("holder names", () => {
  test("are borg's '%s.%d-%x' and parse back like kill_stale_lock parses them", () => {
    const cases: ProcessId[] = [
      ["h@1", 123, 0],
      ["my-host.example.org@2029244207", 4567, 0],
      ["a.b-c", 1, 255],
    ];
    for (const id of cases) {
      const name = uniqueName(id);
      const python = borgPy(
        "import sys\nprint('%s.%d-%x' % (sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))",
        [id[0], String(id[1]), String(id[2])],
      ).trim();
      expect(name).toBe(python);
      expect(parseUniqueName(name)).toEqual(id);
    }
  });

  test("malformed names parse as null", () => {
    for (const name of ["nodash", "host-0", "host.x-0", "host.1-zz", "host.1-", ".1-", "host.-0"]) {
      expect(parseUniqueName(name)).toBeNull();
    }
    expect(parseUniqueName(".1-0")).toEqual(["", 1, 0]);
  });

  test("the lock base path is <repo>/lock", () => {
    expect(lockBasePath("/srv/repo/")).toBe("/srv/repo/lock");
    expect(lockBasePath("/srv/repo")).toBe("/srv/repo/lock");
  });
});

describe("roster parsing", () => {
  test("corrupt or non-object rosters are empty, like borg's load()", () => {
    expect(parseRoster("")).toEqual({});
    expect(parseRoster("{trunc")).toEqual({});
    expect(parseRoster("[1,2]")).toEqual({});
  });

  test("odd entries are skipped, records only count under their own name", () => {
    const data = parseRoster(
      JSON.stringify({
        shared: [["h", 1, 0], ["h", "x", 0], ["h", 2], "zz"],
        burg: {
          "h.1-0": { host: "h", pid: 1, thread: 0, start_ticks: "5", boot_id: "b", started: null },
          "h.9-0": { host: "h", pid: 1, thread: 0, start_ticks: "5", boot_id: "b", started: null },
        },
      }),
    );
    expect(rosterEntries(data, "shared")).toEqual([["h", 1, 0]]);
    expect([...rosterRecords(data).keys()]).toEqual(["h.1-0"]);
  });

  test("empty holder files (borg's) have no record", () => {
    expect(parseRecord("")).toBeNull();
    expect(parseRecord("garbage")).toBeNull();
  });
});

describe("files on disk", () => {
  // A foreign id: burg writes no record for it (it cannot vouch for another process), so the
  // files must come out exactly as borg's.
  const ID: ProcessId = ["h@1", 123, 0];

  function borgLockSteps(dir: string): string[] {
    const out = borgPy(
      `
import os, sys
from borg.locking import Lock
base = os.path.join(sys.argv[1], 'lock')
def state():
    ex = base + '.exclusive'
    names = sorted(os.listdir(ex)) if os.path.exists(ex) else None
    contents = [open(os.path.join(ex, n)).read() for n in names] if names else []
    roster = open(base + '.roster').read() if os.path.exists(base + '.roster') else None
    print(repr((names, contents, roster)))
l = Lock(base, exclusive=True, id=('h@1', 123, 0)).acquire(); state()
l.downgrade(); state()
l.upgrade(); state()
l.release(); state()
l = Lock(base, exclusive=False, id=('h@1', 123, 0)).acquire(); state()
l.release(); state()
`,
      [dir],
    );
    return out.trim().split("\n");
  }

  function state(dir: string): string {
    const ex = join(dir, "lock.exclusive");
    const names = existsSync(ex) ? readdirSync(ex).sort() : null;
    const contents = names ? names.map((n) => readFileSync(join(ex, n), "utf8")) : [];
    const rosterPath = join(dir, "lock.roster");
    const roster = existsSync(rosterPath) ? readFileSync(rosterPath, "utf8") : null;
    // Python's repr of the same tuple, so the comparison is textual.
    const py = (s: string | null) => (s === null ? "None" : "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'");
    const list = (xs: string[] | null) => (xs === null ? "None" : "[" + xs.map(py).join(", ") + "]");
    return `(${list(names)}, ${list(contents)}, ${py(roster)})`;
  }

  test("burg leaves the same files as borg through exclusive, downgrade, upgrade, release, shared", async () => {
    const borgDir = lockTempDir();
    const burgDir = lockTempDir();
    const expected = borgLockSteps(borgDir);
    const got: string[] = [];
    const l = await new RepositoryLock(burgDir, { exclusive: true, timeout: 1, id: ID }).acquire();
    got.push(state(burgDir));
    l.downgrade();
    got.push(state(burgDir));
    await l.upgrade();
    got.push(state(burgDir));
    l.release();
    got.push(state(burgDir));
    const s = await new RepositoryLock(burgDir, { exclusive: false, timeout: 1, id: ID }).acquire();
    got.push(state(burgDir));
    s.release();
    got.push(state(burgDir));
    expect(got).toEqual(expected);
    expect(readdirSync(burgDir)).toEqual([]);
  });
});
