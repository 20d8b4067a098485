// The static host ID: BORG_HOST_ID first, else derived from the machine id (never a MAC
// address), else generated once and kept in burg's config dir, created atomically.

import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  configDir,
  deriveFromMachineId,
  hostId,
  processId,
  resetHostIdCache,
  resolveHostId,
  shortHostname,
} from "../../../src/lock/host-id.ts";
import { ROOT } from "../../support/env.ts";
import { borgPy, captureLog, cleanupLockTests, lockTempDir } from "../../support/locks.ts";

afterAll(cleanupLockTests);

const MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4";

function machineIdFile(content: string): string {
  const p = join(lockTempDir(), "machine-id");
  writeFileSync(p, content);
  return p;
}

afterEach(() => resetHostIdCache());

describe("host ID", () => {
  test("BORG_HOST_ID wins over everything", () => {
    const r = resolveHostId({ env: { BORG_HOST_ID: "static@42" }, machineIdPaths: [machineIdFile(MACHINE_ID + "\n")] });
    expect(r).toEqual({ id: "static@42", origin: "env", file: null });
  });

  test("is derived from the machine id in borg's host@number shape, without the machine id or a MAC", () => {
    const path = machineIdFile(MACHINE_ID + "\n");
    const cfg = lockTempDir();
    const a = resolveHostId({ env: { BURG_CONFIG_DIR: cfg }, machineIdPaths: [path], hostname: "box" });
    const b = resolveHostId({ env: { BURG_CONFIG_DIR: cfg }, machineIdPaths: [path], hostname: "box" });
    expect(a.origin).toBe("machine-id");
    expect(a.id).toMatch(/^box@\d+$/);
    expect(b.id).toBe(a.id);
    const number = a.id.split("@")[1]!;
    expect(Number(number)).toBeLessThan(2 ** 48);
    expect(a.id).not.toContain(MACHINE_ID);
    // borg's default uses uuid.getnode() (a MAC address); ours must not be that number.
    const node = borgPy("import uuid; print(uuid.getnode())").trim();
    expect(number).not.toBe(node);
    // Not stored: a home directory shared between machines must not carry it to another one.
    expect(readdirSync(cfg)).toEqual([]);
    expect(deriveFromMachineId("0123456789abcdef0123456789abcdef")).not.toBe(number);
  });

  test("empty or uninitialized machine ids do not count", () => {
    for (const content of ["", "uninitialized\n", "0".repeat(32) + "\n", "xyz"]) {
      const cfg = lockTempDir();
      const r = resolveHostId({ env: { BURG_CONFIG_DIR: cfg }, machineIdPaths: [machineIdFile(content)], hostname: "c" });
      expect(r.origin).toBe("generated");
    }
  });

  test("without a machine id it is generated once, stored in the config dir and reused", () => {
    const cfg = join(lockTempDir(), "nested", "burg");
    const env = { BURG_CONFIG_DIR: cfg };
    const first = resolveHostId({ env, machineIdPaths: ["/nonexistent/machine-id"], hostname: "ctr" });
    expect(first.origin).toBe("generated");
    expect(first.id).toMatch(/^ctr@\d+$/);
    expect(first.file).toBe(join(cfg, "host-id"));
    expect(readFileSync(join(cfg, "host-id"), "utf8")).toBe(first.id + "\n");
    expect(readdirSync(cfg)).toEqual(["host-id"]); // no temp files left
    // A later process, even under another host name, keeps the stored ID.
    const again = resolveHostId({ env, machineIdPaths: [], hostname: "other-name" });
    expect(again).toEqual({ id: first.id, origin: "stored", file: first.file });
  });

  test("processes racing to create it all end up with one ID", async () => {
    const cfg = join(lockTempDir(), "race");
    const script = `
      import { resolveHostId } from ${JSON.stringify(join(ROOT, "src/lock/host-id.ts"))};
      console.log(resolveHostId({ machineIdPaths: [] }).id);`;
    const file = join(lockTempDir(), "race.ts");
    writeFileSync(file, script);
    const procs = Array.from({ length: 8 }, () =>
      Bun.spawn([process.execPath, file], {
        env: { ...process.env, BURG_CONFIG_DIR: cfg, BORG_HOST_ID: "" } as Record<string, string>,
        stdout: "pipe",
        stderr: "pipe",
      }),
    );
    const outs = await Promise.all(procs.map((p) => new Response(p.stdout).text()));
    const ids = new Set(outs.map((o) => o.trim()));
    expect(ids.size).toBe(1);
    expect(readFileSync(join(cfg, "host-id"), "utf8").trim()).toBe([...ids][0]!);
    expect(readdirSync(cfg)).toEqual(["host-id"]);
  });

  test("an unwritable config dir gives a temporary ID with a warning", () => {
    // Nobody, not even root, can create directories in /proc.
    const cap = captureLog();
    try {
      const r = resolveHostId({ env: { BURG_CONFIG_DIR: "/proc/self/burg" }, machineIdPaths: [], hostname: "ro" });
      expect(r.origin).toBe("ephemeral");
      expect(r.id).toMatch(/^ro@\d+$/);
    } finally {
      cap.stop();
    }
    expect(cap.lines.join("\n")).toContain("Cannot store a host ID");
  });

  test("an invalid stored ID is not used", () => {
    const cfg = lockTempDir();
    writeFileSync(join(cfg, "host-id"), "bad/id\n");
    const cap = captureLog();
    try {
      const r = resolveHostId({ env: { BURG_CONFIG_DIR: cfg }, machineIdPaths: [], hostname: "h" });
      expect(r.origin).toBe("ephemeral");
      expect(r.id).not.toContain("/");
    } finally {
      cap.stop();
    }
    expect(readFileSync(join(cfg, "host-id"), "utf8")).toBe("bad/id\n");
  });

  test("config dir: BURG_CONFIG_DIR, then XDG_CONFIG_HOME/burg, then ~/.config/burg", () => {
    expect(configDir({ BURG_CONFIG_DIR: "/a", XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe("/a");
    expect(configDir({ XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe("/x/burg");
    expect(configDir({ HOME: "/h" })).toBe("/h/.config/burg");
  });

  test("hostId() is cached and processId() is (host id, pid, 0)", () => {
    const saved = process.env.BORG_HOST_ID;
    try {
      process.env.BORG_HOST_ID = "cached@1";
      resetHostIdCache();
      expect(hostId()).toBe("cached@1");
      process.env.BORG_HOST_ID = "changed@2";
      expect(hostId()).toBe("cached@1");
      expect(processId()).toEqual(["cached@1", process.pid, 0]);
    } finally {
      if (saved === undefined) delete process.env.BORG_HOST_ID;
      else process.env.BORG_HOST_ID = saved;
    }
  });

  test("borg and burg agree on the host ID when BORG_HOST_ID is set", () => {
    const borgs = borgPy("from borg.platform import get_process_id; print(get_process_id()[0])", [], {
      BORG_HOST_ID: "shared-id@7",
    }).trim();
    expect(resolveHostId({ env: { BORG_HOST_ID: "shared-id@7" } }).id).toBe(borgs);
  });

  test("the short host name drops the domain, like borg", () => {
    expect(shortHostname()).not.toContain(".");
    expect(shortHostname().length).toBeGreaterThan(0);
  });
});
