import { describe, expect, test } from "bun:test";
import { DEFAULT_OPTIONS, FIXED_OPTIONS, checkDestination, sshArgv } from "../../../src/ssh/argv.ts";

describe("burg pull's ssh command line", () => {
  const argv = sshArgv({
    ssh: "ssh",
    target: {
      destination: "root@vps.example.com",
      port: "2222",
      identities: ["/k1", "/k2"],
      configFile: "/cfg",
      jump: "bastion",
      options: ["ServerAliveInterval=60", "UserKnownHostsFile=/kh"],
    },
    remoteSocket: "/tmp/burg-pull-abc.sock",
    localSocket: "/tmp/burg-pull-XYZ/pull.sock",
    remoteCommand: "exec /bin/sh -c 'x'",
  });

  test("no tty, the forwarding, the destination and the command last", () => {
    expect(argv[0]).toBe("ssh");
    expect(argv[1]).toBe("-T");
    expect(argv.slice(-5)).toEqual(["-R", "/tmp/burg-pull-abc.sock:/tmp/burg-pull-XYZ/pull.sock", "--", "root@vps.example.com", "exec /bin/sh -c 'x'"]);
  });

  test("the user's options come after burg's fixed ones and before burg's defaults (ssh keeps the first value)", () => {
    const opts: string[] = [];
    for (let i = 0; i < argv.length; i++) if (argv[i] === "-o") opts.push(argv[i + 1]!);
    expect(opts).toEqual([...FIXED_OPTIONS, "ServerAliveInterval=60", "UserKnownHostsFile=/kh", ...DEFAULT_OPTIONS]);
    expect(FIXED_OPTIONS).toContain("ExitOnForwardFailure=yes");
    expect(FIXED_OPTIONS).toContain("StreamLocalBindUnlink=yes");
    expect(DEFAULT_OPTIONS).toContain("BatchMode=yes");
    expect(DEFAULT_OPTIONS.some((o) => o.startsWith("ServerAliveInterval="))).toBe(true);
    expect(DEFAULT_OPTIONS.some((o) => o.startsWith("ServerAliveCountMax="))).toBe(true);
  });

  test("-p, -i, -F, -J are passed on", () => {
    const joined = argv.join(" ");
    expect(joined).toContain("-F /cfg");
    expect(joined).toContain("-p 2222");
    expect(joined).toContain("-i /k1 -i /k2");
    expect(joined).toContain("-J bastion");
  });

  test("destinations that look like options are refused", () => {
    expect(() => checkDestination("-oProxyCommand=x")).toThrow();
    expect(() => checkDestination("")).toThrow();
    expect(() => checkDestination("a b")).toThrow();
    expect(checkDestination("user@host")).toBe("user@host");
  });
});
