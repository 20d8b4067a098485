import { describe, expect, test } from "bun:test";
import { UsageError } from "../../../src/errors.ts";
import { checkListenFds, listenFds, unsetListenEnv } from "../../../src/transport/systemd.ts";

describe("LISTEN_FDS / LISTEN_PID (sd_listen_fds)", () => {
  test("descriptors from 3 on when LISTEN_PID is ours", () => {
    expect(listenFds({ LISTEN_PID: "42", LISTEN_FDS: "1" }, 42)).toEqual([3]);
    expect(listenFds({ LISTEN_PID: "42", LISTEN_FDS: "3" }, 42)).toEqual([3, 4, 5]);
  });
  test("nothing when the variables are absent, zero, or meant for another process", () => {
    expect(listenFds({}, 42)).toBeNull();
    expect(listenFds({ LISTEN_FDS: "1" }, 42)).toBeNull();
    expect(listenFds({ LISTEN_PID: "42" }, 42)).toBeNull();
    expect(listenFds({ LISTEN_PID: "41", LISTEN_FDS: "1" }, 42)).toBeNull();
    expect(listenFds({ LISTEN_PID: "x", LISTEN_FDS: "1" }, 42)).toBeNull();
    expect(listenFds({ LISTEN_PID: "42", LISTEN_FDS: "0" }, 42)).toBeNull();
  });
  test("a malformed count for us is an error", () => {
    expect(() => listenFds({ LISTEN_PID: "42", LISTEN_FDS: "two" }, 42)).toThrow(UsageError);
    expect(() => listenFds({ LISTEN_PID: "42", LISTEN_FDS: "99999" }, 42)).toThrow(UsageError);
  });
  test("taking them removes them from the environment", () => {
    const env: Record<string, string | undefined> = { LISTEN_PID: "1", LISTEN_FDS: "1", LISTEN_FDNAMES: "x", OTHER: "y" };
    unsetListenEnv(env);
    expect(env).toEqual({ OTHER: "y" });
  });
  test("passed descriptors must be open sockets", () => {
    // fd 0 of the test runner is not a socket here (a pipe or /dev/null), and 999 is not open.
    expect(() => checkListenFds([999])).toThrow(/not open/);
  });
});
