import { describe, expect, test } from "bun:test";
import { UsageError } from "../../../src/errors.ts";
import { borgmaticArgv, parsePullArgv, pullRepoUrl, rewriteBorgmaticArgs } from "../../../src/commands/pull-args.ts";
import { forwardedEnv } from "../../../src/commands/pull.ts";

describe("burg pull's command line", () => {
  test("options, ssh options, destination, and borg's command after --", () => {
    const a = parsePullArgv([
      "--repo", "/srv/backup/vps", "--permissions=all", "-p", "2222", "-i/k", "-oBatchMode=no", "-o", "X=1",
      "-F", "/cfg", "--sudo", "--remote-borg", "/opt/borg", "--remote-env", "A=b=c", "--bridge", "socat,python3",
      "--info", "root@vps", "--", "create", "--stats", "::{now}", "/etc", "--", "-p",
    ]);
    expect(a.repo).toBe("/srv/backup/vps");
    expect(a.target).toEqual({ destination: "root@vps", port: "2222", identities: ["/k"], configFile: "/cfg", options: ["BatchMode=no", "X=1"] });
    expect(a.borgArgs).toEqual(["create", "--stats", "::{now}", "/etc", "--", "-p"]);
    expect(a.sudo).toBe(true);
    expect(a.remoteBorg).toBe("/opt/borg");
    expect(a.remoteEnv).toEqual([["A", "b=c"]]);
    expect(a.bridges).toEqual(["socat", "python3"]);
    expect(a.serve.permissions).toBe("all");
    expect(a.serve.logLevel).toBe("INFO");
  });
  test("defaults", () => {
    const a = parsePullArgv(["--repo", "r", "h", "--", "list"]);
    expect(a.bridges).toEqual(["burg", "socat", "nc", "python3"]);
    expect(a.remoteBorg).toBe("borg");
    expect(a.remoteBurg).toBe("burg");
    expect(a.sshProgram).toBe("ssh");
    expect(a.sudo).toBe(false);
    expect(a.serve.permissions).toBeUndefined();
  });
  test("mistakes are usage errors", () => {
    const bad = [
      ["--repo", "r", "h", "list"], // no --
      ["--repo", "r", "h", "--"], // no command
      ["h", "--", "list"], // no --repo
      ["--repo", "r", "--", "list"], // no host
      ["--repo", "r", "h1", "h2", "--", "list"],
      ["--repo", "r", "--frobnicate", "h", "--", "list"],
      ["--repo", "r", "-x", "h", "--", "list"],
      ["--repo", "r", "-p", "ssh", "h", "--", "list"],
      ["--repo", "r", "--bridge", "telnet", "h", "--", "list"],
      ["--repo", "r", "--remote-env", "NOVALUE", "h", "--", "list"],
    ];
    for (const argv of bad) expect(() => parsePullArgv(argv)).toThrow(UsageError);
  });
  test("the repository URL for the client", () => {
    expect(pullRepoUrl("/srv/backup/vps")).toBe("ssh://burg-pull/srv/backup/vps");
  });
});

describe("borgmatic mode", () => {
  const noFiles = () => null;
  test("settings from BURG_PULL_*, borg's arguments with the repository turned into BORG_REPO forms", () => {
    const argv = borgmaticArgv(
      { BURG_PULL_HOST: "root@vps", BURG_PULL_REPO: "/srv/backup/vps", BURG_PULL_OPTIONS: "-i /k --permissions 'no-delete'" },
      ["create", "--stats", "/srv/backup/vps::{hostname}-{now}", "/etc"],
      noFiles,
    );
    const a = parsePullArgv(argv);
    expect(a.target.destination).toBe("root@vps");
    expect(a.target.identities).toEqual(["/k"]);
    expect(a.repo).toBe("/srv/backup/vps");
    expect(a.borgArgs).toEqual(["create", "--stats", "::{hostname}-{now}", "/etc"]);
  });
  test("the argument lists borgmatic passes", () => {
    const r = (args: string[]) => rewriteBorgmaticArgs(args, "/srv/backup/vps", noFiles);
    expect(r(["prune", "--keep-daily", "7", "--glob-archives", "{hostname}-*", "/srv/backup/vps"])).toEqual(["prune", "--keep-daily", "7", "--glob-archives", "{hostname}-*"]);
    expect(r(["list", "--json", "/srv/backup/vps/"])).toEqual(["list", "--json"]);
    expect(r(["info", "--json", "/srv/backup/vps"])).toEqual(["info", "--json"]);
    expect(r(["check", "--repository-only", "/srv/backup/vps"])).toEqual(["check", "--repository-only"]);
    expect(r(["--version"])).toEqual(["--version"]);
    expect(r(["list", "/srv/backup/other"])).toEqual(["list", "/srv/backup/other"]);
  });
  test("borgmatic's temporary pattern files are passed inline", () => {
    const files: Record<string, string> = { "/tmp/ex": "# comment\n*.pyc\n\n  /home/*/.cache  \n", "/tmp/pat": "R /etc\n- /etc/ssl\n" };
    const read = (p: string) => files[p] ?? null;
    expect(rewriteBorgmaticArgs(["create", "--exclude-from", "/tmp/ex", "--patterns-from=/tmp/pat", "--exclude-from", "/missing", "/srv/backup/vps::a"], "/srv/backup/vps", read)).toEqual([
      "create", "--exclude=*.pyc", "--exclude=/home/*/.cache", "--pattern=R /etc", "--pattern=- /etc/ssl", "--exclude-from", "/missing", "::a",
    ]);
  });
  test("host and repository are required", () => {
    expect(() => borgmaticArgv({ BURG_PULL_REPO: "/r" }, ["list"], noFiles)).toThrow(UsageError);
    expect(() => borgmaticArgv({ BURG_PULL_HOST: "h" }, ["list"], noFiles)).toThrow(UsageError);
  });
});

describe("variables for the client's borg", () => {
  test("answers and switches pass, secrets and local paths do not", () => {
    expect(
      forwardedEnv({
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
        BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
        BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "YES",
        BORG_FILES_CACHE_TTL: "40",
        BORG_PASSPHRASE: "secret",
        BORG_PASSCOMMAND: "pass show borg",
        BORG_BASE_DIR: "/root",
        BORG_REPO: "/x",
        HOME: "/root",
      }),
    ).toEqual([
      ["BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES"],
      ["BORG_FILES_CACHE_TTL", "40"],
      ["BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes"],
      ["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes"],
    ]);
  });
});

describe("the passphrase on the backup server", () => {
  test("BORG_PASSPHRASE, else BORG_PASSCOMMAND's output, else BORG_PASSPHRASE_FD, else none", async () => {
    const { localPassphrase } = await import("../../../src/commands/pull.ts");
    expect(localPassphrase({ BORG_PASSPHRASE: "env", BORG_PASSCOMMAND: "printf cmd" })).toBe("env");
    expect(localPassphrase({ BORG_PASSPHRASE: "" })).toBe("");
    expect(localPassphrase({ BORG_PASSCOMMAND: "printf 'from command\\n\\n'" })).toBe("from command");
    const { openSync, writeFileSync, closeSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const f = join(tmpdir(), `burg-pass-fd-${process.pid}`);
    writeFileSync(f, "from fd\n", { mode: 0o600 });
    const fd = openSync(f, "r");
    try {
      expect(localPassphrase({ BORG_PASSPHRASE_FD: String(fd) })).toBe("from fd");
    } finally {
      closeSync(fd);
      (await import("node:fs")).rmSync(f);
    }
    expect(localPassphrase({})).toBeNull();
  });

  test("a failing BORG_PASSCOMMAND is borg's PasscommandFailure", async () => {
    const { localPassphrase } = await import("../../../src/commands/pull.ts");
    const { PasscommandFailure } = await import("../../../src/errors.ts");
    expect(() => localPassphrase({ BORG_PASSCOMMAND: "false" })).toThrow(PasscommandFailure);
    expect(() => localPassphrase({ BORG_PASSCOMMAND: "/nonexistent/pass-tool get" })).toThrow(PasscommandFailure);
    expect(() => localPassphrase({ BORG_PASSCOMMAND: "'unclosed" })).toThrow(PasscommandFailure);
  });
});
