// burg serve as an ssh forced command, through a real sshd on 127.0.0.1: the authorized_keys
// line pins the repository and the permissions; whatever the client asks for in its own command
// (SSH_ORIGINAL_COMMAND) cannot widen them, only the log level and lock wait pass through.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, requireBurg, runAsync, tempDir } from "../support/env.ts";
import { startSshd, type PrivateSshd } from "../support/sshd.ts";

let sshd: PrivateSshd;
let home: string;
let repo: string;
let other: string;
let src: string;
const keys: Record<string, string> = {};

function addForcedKey(name: string, command: string): void {
  keys[name] = sshd.addForcedKey(name, command);
}

function borg(key: string, args: string[], extra: Record<string, string> = {}) {
  const rsh = ["ssh", ...sshd.sshOptions(keys[key])].join(" ");
  return runAsync([requireBorg(), ...args], { env: borgEnv(home, { BORG_RSH: rsh, ...extra }) });
}

const url = (path: string, archive?: string) => `ssh://${sshd.destination}${path}${archive ? `::${archive}` : ""}`;

beforeAll(async () => {
  requireBurg();
  home = tempDir();
  const sshdDir = join(home, "sshd");
  mkdirSync(sshdDir);
  // ExposeAuthInfo: sshd tells the forced command which key logged in (SSH_USER_AUTH), for the journal
  sshd = await startSshd(sshdDir, { extraConfig: ["ExposeAuthInfo yes"] });
  repo = join(home, "repos", "alice");
  other = join(home, "repos", "bob");
  mkdirSync(join(home, "repos"));
  src = join(home, "src");
  makeSourceTree(src, { seed: 5, files: 20, totalBytes: 2_000_000 });
  addForcedKey("all", `${BURG} serve --restrict-to-repository ${repo}`);
  addForcedKey("readonly", `${BURG} serve --restrict-to-repository ${repo} --permissions read-only`);
  addForcedKey("nodelete", `${BURG} serve --restrict-to-repository ${repo} --permissions no-delete`);
});

afterAll(async () => {
  await sshd?.stop();
});

describe("burg serve as the forced command of a real sshd", () => {
  test("the pinned repository works end to end; any other path is refused", async () => {
    const init = await borg("all", ["init", "-e", "none", url(repo)]);
    expect(init.stderr).toBe("");
    expect(init.code).toBe(0);
    const create = await borg("all", ["create", url(repo, "one"), src]);
    expect(create.code).toBe(0);
    const list = await borg("all", ["list", "--short", url(repo)]);
    expect(list.stdout.trim()).toBe("one");
    const elsewhere = await borg("all", ["init", "-e", "none", url(other)]);
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain("not allowed");
    const escape = await borg("all", ["list", url(`${repo}/../bob`)]);
    expect(escape.code).toBe(2);
    expect(escape.stderr).toContain("not allowed");
  }, 120_000);

  test("the session journal names the ssh connection and the key that logged in", async () => {
    const log = await runAsync([BURG, "log", "--json", repo]);
    expect(log.code).toBe(0);
    const records = log.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(records.length).toBeGreaterThanOrEqual(3);
    const fp = Bun.spawnSync(["ssh-keygen", "-l", "-f", `${keys.all}.pub`]).stdout.toString().split(" ")[1]!;
    expect(fp).toMatch(/^SHA256:/);
    for (const r of records) {
      expect(r.command).toBe("serve");
      expect(r.who.ssh_connection).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+$/);
      expect(r.who.ssh_keys).toEqual([`ssh-ed25519 ${fp}`]);
      expect(r.options.restrict_to_repositories).toEqual([repo]);
    }
  }, 60_000);

  test("the client's own command cannot widen the forced permissions or paths", async () => {
    // the client asks for everything; the forced command decides
    const widen = { BORG_REMOTE_PATH: "BORG_REPO_PERMISSIONS=all burg --permissions all --restrict-to-path /" };
    const list = await borg("readonly", ["list", "--short", url(repo)], widen);
    expect(list.code).toBe(0);
    expect(list.stdout.trim()).toBe("one");
    const create = await borg("readonly", ["create", url(repo, "two"), src], widen);
    expect(create.code).toBe(2);
    expect(create.stderr).toContain("Permission denied");
    const other2 = await borg("readonly", ["list", url(other)], widen);
    expect(other2.code).toBe(2);
    expect(other2.stderr).toContain("not allowed");
    const del = await borg("nodelete", ["delete", url(repo, "one")], widen);
    expect(del.code).toBe(2);
    const still = await borg("all", ["list", "--short", url(repo)]);
    expect(still.stdout.trim()).toBe("one");
  }, 120_000);

  test("the log level and lock wait from the client's command do pass through", async () => {
    const quiet = await borg("readonly", ["list", "--lock-wait", "3", url(repo)]);
    expect(quiet.stderr).not.toMatch(/Remote: .*[Rr]epository/);
    const r = await borg("readonly", ["--debug", "list", "--lock-wait", "3", url(repo)]);
    expect(r.code).toBe(0);
    // DEBUG lines of the server reach the client as "Remote: ..." only when --debug got through
    expect(r.stderr).toMatch(/Remote: .*[Rr]epository/);
  }, 60_000);
});
