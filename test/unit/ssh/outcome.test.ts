import { describe, expect, test } from "bun:test";
import { classifyPull } from "../../../src/ssh/outcome.ts";
import { REMOTE_EXIT } from "../../../src/ssh/remote-script.ts";

const c = (status: number, tail = "") => classifyPull(status, tail, "root@vps", "/srv/backup/vps");

describe("burg pull's exit codes and messages", () => {
  test("borg's own exit codes pass through without a message of ours", () => {
    for (const code of [0, 1, 2]) expect(c(code)).toEqual({ exitCode: code, kind: "borg", message: null });
  });
  test("ssh's failures (255) are told apart by ssh's message", () => {
    expect(c(255, "root@vps: Permission denied (publickey).\n").kind).toBe("auth");
    expect(c(255, "Error: remote port forwarding failed for listen path /tmp/x.sock\n").kind).toBe("forwarding");
    expect(c(255, "Host key verification failed.\n").kind).toBe("host-key");
    expect(c(255, "ssh: connect to host vps port 22: Connection refused\n").kind).toBe("connect");
    expect(c(255, "something else\n")).toMatchObject({ exitCode: 2, kind: "ssh" });
    for (const tail of ["Permission denied (publickey).", "remote port forwarding failed"]) expect(c(255, tail).exitCode).toBe(2);
  });
  test("failures the remote script reports", () => {
    expect(c(REMOTE_EXIT.noBorg)).toMatchObject({ exitCode: 2, kind: "no-borg" });
    expect(c(REMOTE_EXIT.noBridge)).toMatchObject({ exitCode: 2, kind: "no-bridge" });
    expect(c(REMOTE_EXIT.noSocket)).toMatchObject({ exitCode: 2, kind: "forwarding" });
    expect(c(REMOTE_EXIT.sudoRefused)).toMatchObject({ exitCode: 2, kind: "sudo" });
    expect(c(REMOTE_EXIT.setup)).toMatchObject({ exitCode: 2, kind: "setup" });
  });
  test("a repository other than --repo", () => {
    const o = c(2, "Repository path not allowed: /etc\n");
    expect(o).toMatchObject({ exitCode: 2, kind: "path-not-allowed" });
    expect(o.message).toContain("/srv/backup/vps");
  });
  test("borg killed by a signal, and odd statuses, are errors", () => {
    expect(c(137)).toMatchObject({ exitCode: 2, kind: "borg-signal" });
    expect(c(137).message).toContain("signal 9");
    expect(c(127)).toMatchObject({ exitCode: 2 });
  });
});
