// The README's two commands on a machine without burg's Debian prerequisites (no borg, sshd,
// ssh, socat, sudo or GNU time): a private overlay of this machine with those packages purged
// (test/support/fresh-machine.sh; nothing reaches the real machine). As root, `npm ci && npm
// run demo` from a clean clone installs what is missing and succeeds; as another user,
// build/prereqs.sh stops at once with the one apt-get command to run. Needs root (for the
// mounts and apt-get) and Debian's package archive, as CI has.

import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ROOT, run } from "../support/env.ts";
import { testScope } from "../support/scope.ts";

const scope = testScope();
const SCRIPT = join(ROOT, "test/support/fresh-machine.sh");

function cleanClone(): string {
  const dir = scope.tempDir("burg-fresh-clone-");
  const clone = join(dir, "burg");
  const r = run(["git", "clone", "-q", ROOT, clone]);
  if (r.code !== 0) throw new Error(`git clone failed: ${r.stderr}`);
  return clone;
}

async function fresh(clone: string, mode: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", SCRIPT, clone, mode], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out: `${out}\n--- stderr:\n${err}` };
}

describe("a fresh machine without the Debian prerequisites", () => {
  test("as root, npm ci && npm run demo installs them and succeeds", async () => {
    const r = await fresh(cleanClone(), "demo");
    expect({ code: r.code, tail: r.code === 0 ? "" : r.out.slice(-6000) }).toEqual({ code: 0, tail: "" });
    expect(r.out).toContain("missing before: borg sshd ssh socat sudo time");
    expect(r.out).toContain("burg: installing missing Debian packages: borgbackup openssh-server openssh-client socat sudo time");
    expect(r.out).toMatch(/after: borg 1\.\d+\.\d+/);
  }, 15 * 60_000);

  test("as another user, the prerequisites check stops at once with the apt-get command to run", async () => {
    const r = await fresh(cleanClone(), "nonroot");
    expect(r.out).toContain("prereqs exit: 1");
    expect(r.out).toContain(
      "burg: missing Debian packages: borgbackup openssh-server openssh-client socat sudo time; install them with: sudo apt-get install -y borgbackup openssh-server openssh-client socat sudo time",
    );
    expect(r.out).toContain("after: borg still missing");
  }, 5 * 60_000);
});
