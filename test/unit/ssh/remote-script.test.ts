// The script burg pull runs on the client, run here by /bin/sh exactly as the client's login
// shell would start it, with a stand-in borg that reports what it got.

import { afterAll, describe, expect, test } from "bun:test";
import type { SocketListener } from "bun";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  REMOTE_COMMAND,
  REMOTE_EXIT,
  bridgeRsh,
  remoteScript,
  scriptPreamble,
  type RemoteScriptOptions,
} from "../../../src/ssh/remote-script.ts";
import { writeExecutable } from "../../support/env.ts";
import { testScope } from "../../support/scope.ts";

const scope = testScope();
const tempDir = (prefix: string) => scope.tempDir(prefix);

const listeners: SocketListener<undefined>[] = [];
afterAll(() => {
  for (const l of listeners.splice(0)) l.stop(true);
});

const SECRET = "pa$$ 'word' \"quoted\" `tick` ünïcode";

/** A fake borg: records argv, env, cwd, stdin and the passphrase its passcommand yields. */
function fakeBorg(dir: string, exitCode = 0): string {
  return writeExecutable(
    join(dir, "borg"),
    `#!/bin/sh
out=${JSON.stringify(join(dir, "report"))}
{
  printf 'ARGC=%s\\n' "$#"
  for a in "$@"; do printf 'ARG=%s|\\n' "$a"; done
  printf 'REPO=%s\\n' "$BORG_REPO"
  printf 'RSH=%s\\n' "$BORG_RSH"
  printf 'PASSCOMMAND=%s\\n' "\${BORG_PASSCOMMAND-<unset>}"
  printf 'PASSPHRASE_ENV=%s\\n' "\${BORG_PASSPHRASE-<unset>}"
  printf 'EXTRA=%s\\n' "\${BURG_TEST_EXTRA-<unset>}"
  printf 'CWD=%s\\n' "$(pwd)"
  if [ -n "\${BORG_PASSCOMMAND-}" ]; then printf 'PASS=%s|\\n' "$($BORG_PASSCOMMAND)"; fi
  printf 'ENVIRON_HAS_SECRET=%s\\n' "$(tr '\\0' '\\n' < /proc/$$/environ | grep -c -F 'ünïcode')"
  printf 'STDIN=%s|\\n' "$(cat)"
} > "$out"
exit ${exitCode}
`,
  );
}

function socketAt(path: string): void {
  listeners.push(Bun.listen({ unix: path, socket: { data() {} } }));
}

function setup(name: string, over: Partial<RemoteScriptOptions> = {}, exitCode = 0) {
  const dir = tempDir(`burg-rscript-${name}-`);
  const sock = join(dir, "fwd.sock");
  socketAt(sock);
  const opts: RemoteScriptOptions = {
    socket: sock,
    repoUrl: "ssh://burg-pull/srv/backup/vps",
    borgArgs: ["create", "--stats", "::{hostname}-{now}", "/etc/with space", "it's", "$HOME", "a\nb", "--"],
    borg: fakeBorg(dir, exitCode),
    burg: "burg-not-installed-here",
    bridges: ["burg", "socat", "python3"],
    sudo: false,
    cwd: null,
    env: [["BURG_TEST_EXTRA", "x y"]],
    passphrase: SECRET,
    ...over,
  };
  return { dir, sock, opts };
}

async function runScript(opts: RemoteScriptOptions, input: string, env: Record<string, string> = {}) {
  const preamble = scriptPreamble(remoteScript(opts));
  const stdin = new Uint8Array([...preamble, ...new TextEncoder().encode(input)]);
  const p = Bun.spawn(["sh", "-c", REMOTE_COMMAND], {
    stdin: new Blob([stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", BORG_PASSPHRASE: "from-client-env", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

function report(dir: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of readFileSync(join(dir, "report"), "utf8").split(/\n(?=[A-Z_]+=)/)) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    m.set(k, [...(m.get(k) ?? []), line.slice(eq + 1).replace(/\n$/, "")]);
  }
  return m;
}

describe("the remote script", () => {
  test("runs borg with BORG_REPO, a bridge as BORG_RSH, borg's arguments verbatim and our stdin after the script", async () => {
    const { dir, sock, opts } = setup("basic");
    const r = await runScript(opts, "data for borg\nline 2");
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const rep = report(dir);
    expect(rep.get("ARG")).toEqual(opts.borgArgs.map((a) => `${a}|`));
    expect(rep.get("REPO")).toEqual(["ssh://burg-pull/srv/backup/vps"]);
    // burg is not installed here, socat is: the first available bridge wins.
    expect(rep.get("RSH")).toEqual([Bun.which("socat") ? bridgeRsh("socat", sock, "") : bridgeRsh("python3", sock, "")]);
    expect(rep.get("EXTRA")).toEqual(["x y"]);
    expect(rep.get("STDIN")).toEqual(["data for borg\nline 2|"]);
    // The socket and the passphrase's private directory are gone afterwards.
    expect(existsSync(sock)).toBe(false);
  });

  test("the passphrase reaches borg only through its passcommand, never through the environment", async () => {
    const { dir, opts } = setup("secret");
    const tmp = tempDir("burg-rscript-tmp-");
    const r = await runScript(opts, "", { TMPDIR: tmp });
    expect(r.code).toBe(0);
    const rep = report(dir);
    expect(rep.get("PASS")).toEqual([`${SECRET}|`]);
    expect(rep.get("PASSPHRASE_ENV")).toEqual(["<unset>"]);
    expect(rep.get("ENVIRON_HAS_SECRET")).toEqual(["0"]);
    expect(rep.get("PASSCOMMAND")![0]).toMatch(new RegExp(`^cat ${tmp}/burg-pull\\.[A-Za-z0-9]+/pass$`));
    expect(readdirSync(tmp)).toEqual([]);
  });

  test("without a passphrase, nothing is set up for one and the client's own settings stay", async () => {
    const { dir, opts } = setup("nopass", { passphrase: null });
    const r = await runScript(opts, "");
    expect(r.code).toBe(0);
    const rep = report(dir);
    expect(rep.get("PASSCOMMAND")).toEqual(["<unset>"]);
    expect(rep.get("PASSPHRASE_ENV")).toEqual(["from-client-env"]);
  });

  test("borg's exit code is the script's, and --remote-cwd is where borg runs", async () => {
    const { dir, opts } = setup("exit", { cwd: "/" }, 1);
    const r = await runScript(opts, "");
    expect(r.code).toBe(1);
    expect(report(dir).get("CWD")).toEqual(["/"]);
  });

  test("burg on the client is the preferred bridge", async () => {
    const { dir, sock, opts } = setup("burg");
    const burg = writeExecutable(join(dir, "burg"), "#!/bin/sh\nexit 0\n");
    const r = await runScript({ ...opts, burg }, "");
    expect(r.code).toBe(0);
    expect(report(dir).get("RSH")).toEqual([`${burg} connect ${sock}`]);
  });

  test("nc is used only when it is OpenBSD's, with -N and -U", async () => {
    for (const [usage, expected] of [
      // OpenBSD nc (netcat-openbsd) lists every option in its help; traditional netcat has neither.
      ["usage: nc [-46CDdFhklNnrStUuvZz]\n\t-N\t\tShutdown the network socket after EOF on stdin\n\t-U\t\tUse UNIX domain socket", "nc"],
      ["[v1.10-47]\nconnect to somewhere:\tnc [-options] hostname port[s]\n\t-u\t\t\tUDP mode", "python3"],
    ] as const) {
      const { dir, sock, opts } = setup("nc");
      const bin = join(dir, "bin");
      Bun.spawnSync(["mkdir", bin]);
      writeExecutable(join(bin, "nc"), `#!/bin/sh\nprintf '%b\\n' ${JSON.stringify(usage)} >&2\nexit 1\n`);
      const r = await runScript({ ...opts, bridges: ["nc", "python3"] }, "", { PATH: `${bin}:${process.env.PATH}` });
      expect(r.code).toBe(0);
      expect(report(dir).get("RSH")).toEqual([bridgeRsh(expected, sock, "")]);
    }
  });

  test("failures on the client have their own exit codes and messages", async () => {
    const noSock = setup("nosock");
    const r1 = await runScript({ ...noSock.opts, socket: join(noSock.dir, "missing.sock") }, "");
    expect(r1.code).toBe(REMOTE_EXIT.noSocket);
    expect(r1.stderr).toContain("burg pull: the forwarded socket");

    const noBorg = setup("noborg");
    const r2 = await runScript({ ...noBorg.opts, borg: "/nonexistent/borg" }, "");
    expect(r2.code).toBe(REMOTE_EXIT.noBorg);
    expect(r2.stderr).toContain("borg was not found on");
    expect(existsSync(noBorg.sock)).toBe(false);

    const noBridge = setup("nobridge");
    const r3 = await runScript({ ...noBridge.opts, bridges: ["burg"], burg: "/nonexistent/burg" }, "");
    expect(r3.code).toBe(REMOTE_EXIT.noBridge);
    expect(r3.stderr).toContain("nothing on");
    expect(r3.stderr).toContain("install burg");

    const noDir = setup("nodir");
    const r4 = await runScript({ ...noDir.opts, cwd: "/nonexistent/dir" }, "");
    expect(r4.code).toBe(REMOTE_EXIT.setup);
  });

  test("--sudo hands borg's variables to sudo as VAR=value words and checks sudo first", async () => {
    const { dir, opts } = setup("sudo");
    const bin = join(dir, "bin");
    const log = join(dir, "sudo.log");
    Bun.spawnSync(["mkdir", bin]);
    // A stand-in for sudo: `-n -l CMD` asks permission; `-n VAR=value... CMD ARGS` runs CMD with
    // only those variables (sudo resets the environment) and no descriptors beyond 0-2.
    writeExecutable(
      join(bin, "sudo"),
      `#!/bin/sh
echo "$*" >> ${JSON.stringify(log)}
[ "$1" = -n ] || exit 3
shift
if [ "$1" = -l ]; then exit \${FAKE_SUDO_LIST_EXIT:-0}; fi
# env(1) takes the leading VAR=value words itself.
exec env -i PATH=/usr/bin:/bin "$@" 3<&- 4<&- 5<&- 6<&- 7<&- 8<&- 9<&-
`,
    );
    const path = `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`;
    const r = await runScript({ ...opts, sudo: true, env: [["BURG_TEST_EXTRA", "sudo-extra"]] }, "", { PATH: path });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const rep = report(dir);
    expect(rep.get("REPO")).toEqual(["ssh://burg-pull/srv/backup/vps"]);
    expect(rep.get("EXTRA")).toEqual(["sudo-extra"]);
    expect(rep.get("PASS")).toEqual([`${SECRET}|`]);
    expect(readFileSync(log, "utf8")).not.toContain("ünïcode");

    const refused = setup("sudo-no");
    const r2 = await runScript({ ...refused.opts, sudo: true }, "", { PATH: path, FAKE_SUDO_LIST_EXIT: "1" });
    expect(r2.code).toBe(REMOTE_EXIT.sudoRefused);
    expect(r2.stderr).toContain("NOPASSWD:SETENV");
  });
});

describe("the remote command", () => {
  test("is one line with nothing but fixed text, harmless in any login shell", () => {
    expect(REMOTE_COMMAND).not.toContain("\n");
    expect(REMOTE_COMMAND).not.toContain("!");
    expect(REMOTE_COMMAND.startsWith("exec /bin/sh -c '")).toBe(true);
  });

  test("the preamble is the script's byte count, a newline, then the script", () => {
    const p = new TextDecoder().decode(scriptPreamble("ä\n"));
    expect(p).toBe("3\nä\n");
  });
});
