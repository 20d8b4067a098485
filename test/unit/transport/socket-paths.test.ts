import { describe, expect, test } from "bun:test";
import { UsageError } from "../../../src/errors.ts";
import {
  MAX_SOCKET_PATH_BYTES,
  checkSocketPath,
  defaultSocketPath,
  formatMode,
  parseMode,
  pidFileFor,
  runtimeDir,
} from "../../../src/transport/socket-paths.ts";

describe("runtime directory (borg 2's get_runtime_dir)", () => {
  test("BORG_RUNTIME_DIR wins", () => {
    expect(runtimeDir({ BORG_RUNTIME_DIR: "/r", BORG_BASE_DIR: "/b", XDG_RUNTIME_DIR: "/x" }, 1000)).toBe("/r");
  });
  test("then BORG_BASE_DIR/.cache/borg", () => {
    expect(runtimeDir({ BORG_BASE_DIR: "/b", XDG_RUNTIME_DIR: "/x" }, 1000)).toBe("/b/.cache/borg");
  });
  test("then XDG_RUNTIME_DIR/borg, else /run/user/UID/borg", () => {
    expect(runtimeDir({ XDG_RUNTIME_DIR: "/x" }, 1000)).toBe("/x/borg");
    expect(runtimeDir({}, 1000)).toBe("/run/user/1000/borg");
    expect(runtimeDir({ XDG_RUNTIME_DIR: "relative" }, 0)).toBe("/run/user/0/borg");
    expect(runtimeDir({ XDG_RUNTIME_DIR: "" }, 7)).toBe("/run/user/7/borg");
  });
  test("default socket is borg.sock in it", () => {
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: "/run/user/5" }, 5)).toBe("/run/user/5/borg/borg.sock");
  });
});

describe("PID file name", () => {
  test(".sock becomes .pid, anything else gets .pid appended", () => {
    expect(pidFileFor("/run/borg/borg.sock")).toBe("/run/borg/borg.pid");
    expect(pidFileFor("/run/borg/repo.socket")).toBe("/run/borg/repo.socket.pid");
    expect(pidFileFor("/run/x")).toBe("/run/x.pid");
  });
});

describe("socket path checks", () => {
  test("relative paths are made absolute", () => {
    expect(checkSocketPath("s.sock", "/srv")).toBe("/srv/s.sock");
  });
  test("paths longer than sun_path are refused with a clear message", () => {
    const ok = "/" + "a".repeat(MAX_SOCKET_PATH_BYTES - 1);
    expect(checkSocketPath(ok, "/")).toBe(ok);
    expect(() => checkSocketPath(ok + "b", "/")).toThrow(UsageError);
    expect(() => checkSocketPath(ok + "b", "/")).toThrow(/at most 107/);
    // bytes count, not characters
    expect(() => checkSocketPath("/" + "ä".repeat(54), "/")).toThrow(UsageError);
  });
  test("empty and NUL-containing paths are refused", () => {
    expect(() => checkSocketPath("", "/")).toThrow(UsageError);
    expect(() => checkSocketPath("/a\0b", "/")).toThrow(UsageError);
  });
});

describe("--mode", () => {
  test("octal modes with or without prefix", () => {
    expect(parseMode("0600")).toBe(0o600);
    expect(parseMode("660")).toBe(0o660);
    expect(parseMode("0o770")).toBe(0o770);
    expect(formatMode(0o660)).toBe("0660");
    expect(formatMode(0o600)).toBe("0600");
  });
  test("non-octal, special bits, and modes without owner rw are refused", () => {
    for (const bad of ["", "rw", "0800", "4777", "0400", "0060", "12345"]) {
      expect(() => parseMode(bad)).toThrow(UsageError);
    }
  });
});
