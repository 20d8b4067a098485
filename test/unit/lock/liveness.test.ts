// Judging lock holders: borg's rule (other host or thread != 0: alive; else kill(pid, 0)), plus
// burg's records refuting a reused PID (start time) or a reboot (boot id), except when the PID
// now runs borg, which may have adopted the lock.

import { afterAll, describe, expect, test } from "bun:test";
import type { LockRecord, ProcessId } from "../../../src/lock/format.ts";
import {
  bootId,
  judgeHolder,
  looksLikeBorg,
  pidExists,
  processStartTicks,
  recordForSelf,
  startTicksToIso,
} from "../../../src/lock/liveness.ts";
import { chmodSync, copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { cleanupLockTests, deadPid, liveProcess, lockTempDir } from "../../support/locks.ts";

afterAll(cleanupLockTests);

/** Wait until process `pid` has exec'd into a command line starting with `argv0`. */
async function execed(pid: number, argv0: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] === argv0) return;
    } catch {}
    await Bun.sleep(10);
  }
  throw new Error(`process ${pid} never became ${argv0}`);
}

/** Field 22 counted independently: the fields after the last ")" start at field 3. */
function statField22(pid: number): string {
  const text = readFileSync(`/proc/${pid}/stat`, "latin1");
  return text.slice(text.lastIndexOf(")") + 1).trim().split(/\s+/)[22 - 3]!;
}

const HOST = "unit-host@1";

function record(id: ProcessId, fields: Partial<LockRecord> = {}): LockRecord {
  return { host: id[0], pid: id[1], thread: id[2], start_ticks: null, boot_id: null, started: null, ...fields };
}

describe("process facts", () => {
  test("pidExists: this process yes, a reaped child no", () => {
    expect(pidExists(process.pid)).toBe(true);
    expect(pidExists(deadPid())).toBe(false);
    // kill(0) would address our process group; such PIDs are never judged dead.
    expect(pidExists(0)).toBe(true);
    expect(pidExists(-1)).toBe(true);
  });

  test("a zombie (exited, never reaped) is not alive: no running process, no start time, a dead holder", async () => {
    // sh starts a short sleep in the background and becomes a long sleep, which never waits:
    // the short one stays a zombie while its parent lives, as an orphan does under a PID 1
    // that does not reap.
    const parent = Bun.spawn(["sh", "-c", "sleep 0.05 & echo $!; exec sleep 30"], { stdout: "pipe" });
    try {
      const reader = parent.stdout.getReader();
      const { value } = await reader.read();
      const pid = Number(new TextDecoder().decode(value).trim());
      let state = "";
      for (let i = 0; i < 300 && state !== "Z"; i++) {
        await Bun.sleep(10);
        state = readFileSync(`/proc/${pid}/stat`, "latin1").split(") ")[1]!.split(" ")[0]!;
      }
      expect(state).toBe("Z");
      expect(() => process.kill(pid, 0)).not.toThrow(); // what borg's rule looks at
      expect(pidExists(pid)).toBe(false);
      expect(processStartTicks(pid)).toBeNull();
      const verdict = judgeHolder([HOST, pid, 0], record([HOST, pid, 0], { start_ticks: statField22(pid), boot_id: bootId() }), HOST);
      expect(verdict.state).toBe("dead");
      expect(verdict.reason).toContain("zombie");
      expect(judgeHolder([HOST, pid, 0], null, HOST).state).toBe("dead");
    } finally {
      parent.kill("SIGKILL");
      await parent.exited;
    }
  });

  test("start ticks come from field 22 of /proc/PID/stat and fit the clock", () => {
    const ticks = processStartTicks(process.pid);
    expect(ticks).toMatch(/^\d+$/);
    const started = Date.parse(startTicksToIso(ticks!)!);
    expect(started).toBeLessThanOrEqual(Date.now() + 2000);
    expect(Date.now() - started).toBeLessThan(24 * 3600 * 1000);
    expect(processStartTicks(deadPid())).toBeNull();
  });

  test("the start tick field is found even when the command name has spaces and parentheses", async () => {
    const exe = join(lockTempDir(), "a) (b c");
    copyFileSync("/bin/sleep", exe);
    chmodSync(exe, 0o755);
    const p = liveProcess([exe, "600"]);
    await execed(p.pid, exe);
    expect(readFileSync(`/proc/${p.pid}/stat`, "latin1")).toContain("(a) (b c)");
    expect(processStartTicks(p.pid)).toBe(statField22(p.pid));
  });

  test("the boot id is this boot's", () => {
    expect(bootId()).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("our own record names us, with start time and boot id", () => {
    const id: ProcessId = [HOST, process.pid, 0];
    const r = recordForSelf(id);
    expect(r.host).toBe(HOST);
    expect(r.pid).toBe(process.pid);
    expect(r.start_ticks).toBe(processStartTicks(process.pid));
    expect(r.boot_id).toBe(bootId());
    expect(r.started).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  test("looksLikeBorg recognises borg's command lines", async () => {
    const borgish = liveProcess(["bash", "-c", "exec -a /usr/bin/borg sleep 600"]);
    const plain = liveProcess(["sleep", "600"]);
    await execed(borgish.pid, "/usr/bin/borg");
    expect(looksLikeBorg(borgish.pid)).toBe(true);
    expect(looksLikeBorg(plain.pid)).toBe(false);
    expect(looksLikeBorg(deadPid())).toBeNull();
  });
});

describe("judgeHolder", () => {
  test("another host ID is never judged dead", () => {
    expect(judgeHolder(["elsewhere@9", deadPid(), 0], null, HOST).state).toBe("other-host");
  });

  test("a dead PID of our host is dead", () => {
    const v = judgeHolder([HOST, deadPid(), 0], null, HOST);
    expect(v).toEqual({ state: "dead", reason: "no such process" });
  });

  test("a thread id other than 0 is alive, like borg", () => {
    expect(judgeHolder([HOST, deadPid(), 1], null, HOST).state).toBe("alive");
  });

  test("a live PID without a record is alive (borg's holders)", () => {
    const p = liveProcess();
    expect(judgeHolder([HOST, p.pid, 0], null, HOST).state).toBe("alive");
  });

  test("a live PID whose start time matches the record is alive", () => {
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    const v = judgeHolder(id, record(id, { start_ticks: processStartTicks(p.pid), boot_id: bootId() }), HOST);
    expect(v.state).toBe("alive");
  });

  test("a reused PID (other start time) is dead", () => {
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    const earlier = String(Number(processStartTicks(p.pid)) - 1);
    const v = judgeHolder(id, record(id, { start_ticks: earlier, boot_id: bootId() }), HOST);
    expect(v.state).toBe("dead");
    expect(v.reason).toContain("reused");
  });

  test("a record from another boot is dead", () => {
    const p = liveProcess();
    const id: ProcessId = [HOST, p.pid, 0];
    const v = judgeHolder(
      id,
      record(id, { start_ticks: processStartTicks(p.pid), boot_id: "00000000-0000-4000-8000-000000000000" }),
      HOST,
    );
    expect(v.state).toBe("dead");
    expect(v.reason).toContain("reboot");
  });

  test("a refuted record is not trusted when the PID now runs borg", async () => {
    const p = liveProcess(["bash", "-c", "exec -a borg sleep 600"]);
    await execed(p.pid, "borg");
    const id: ProcessId = [HOST, p.pid, 0];
    const v = judgeHolder(id, record(id, { start_ticks: "1", boot_id: bootId() }), HOST);
    expect(v.state).toBe("alive");
    expect(v.reason).toContain("borg");
  });
});
