// Debian's real borgmatic (1.7) with the documented configuration from contrib/borgmatic/
// (config.yaml, and the burg-pull-borg wrapper as its local_path), through `burg pull` over a
// private sshd on 127.0.0.1 (this machine plays the client): init, create (twice), prune,
// compact, list, check and extract, and plain borg checks the repository afterwards.

import { beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertSameTree, makeSourceTree } from "../support/data.ts";
import { BURG, ROOT, borgEnv, requireBorg, requireBurg, run, runAsync, type RunResult } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import { startSshd, sshdUnavailable, type PrivateSshd } from "../support/sshd.ts";

const scope = testScope();
let sshd: PrivateSshd;
let base: string;

beforeAll(async () => {
  requireBorg();
  requireBurg();
  if (!Bun.which("borgmatic")) throw new Error("this test needs Debian's borgmatic: apt-get install borgmatic (build/prereqs.sh test does)");
  const why = sshdUnavailable();
  if (why !== null) throw new Error(`the borgmatic test needs a private sshd on 127.0.0.1: ${why}`);
  base = scope.tempDir("burg-borgmatic-");
  mkdirSync(join(base, "sshd"));
  sshd = await startSshd(join(base, "sshd"));
});
scope.onCleanup(async () => {
  await sshd?.stop();
});

function ok(r: RunResult, what: string): RunResult {
  if (r.code !== 0) throw new Error(`borgmatic ${what} failed with exit code ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

describe("borgmatic through burg pull", () => {
  test("the documented configuration: init, create, prune, compact, list, check, extract", async () => {
    const repo = join(base, "repo");
    const src = join(base, "src");
    makeSourceTree(src, { seed: 71, files: 30, totalBytes: 1_000_000 });
    writeFileSync(join(src, "cache.pyc"), "excluded by the config's exclude_patterns\n");
    const clientHome = join(base, "client-home");
    mkdirSync(clientHome);
    const bin = join(base, "bin");
    mkdirSync(bin);
    cpSync(BURG, join(bin, "burg"));
    const wrapper = join(base, "burg-pull-borg");
    cpSync(join(ROOT, "contrib/borgmatic/burg-pull-borg"), wrapper);
    chmodSync(wrapper, 0o755);
    const passfile = join(base, "passphrase");
    writeFileSync(passfile, "borgmatic through burg\n");

    // contrib/borgmatic/config.yaml with this test's paths in place of the example's
    const config = Bun.YAML.parse(readFileSync(join(ROOT, "contrib/borgmatic/config.yaml"), "utf8")) as {
      location: Record<string, unknown>;
      storage: Record<string, unknown>;
    };
    expect(config.location.local_path).toBe("/usr/local/bin/burg-pull-borg");
    config.location.source_directories = [src];
    config.location.repositories = [repo];
    config.location.local_path = wrapper;
    config.storage.encryption_passcommand = `cat ${passfile}`;
    (config as unknown as { retention: Record<string, number> }).retention = { keep_daily: 1 };
    // two archives a second apart need more than the example's seconds to differ
    config.storage.archive_name_format = "{hostname}-{now:%Y-%m-%dT%H:%M:%S.%f}";
    const configPath = join(base, "vps.yaml");
    writeFileSync(configPath, JSON.stringify(config, null, 2)); // JSON is YAML

    const pullOptions = (extra: string[] = []) =>
      [...sshd.sshOptions(), "--remote-env", `BORG_BASE_DIR=${clientHome}`, "--remote-burg", BURG, "--permissions", "all", ...extra]
        .map((w) => `'${w}'`)
        .join(" ");
    const env = (extra: string[] = []) => {
      const e = borgEnv(join(base, "server-home"), {
        PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`,
        BURG_PULL_HOST: sshd.destination,
        BURG_PULL_REPO: repo,
        BURG_PULL_OPTIONS: pullOptions(extra),
      });
      // the passphrase comes from encryption_passcommand; a BORG_PASSPHRASE would win over it
      delete e.BORG_PASSPHRASE;
      return e;
    };
    const borgmatic = (args: string[], extra: string[] = []) => runAsync(["borgmatic", "--config", configPath, ...args], { env: env(extra) });

    ok(await borgmatic(["init", "--encryption", "repokey"]), "init");
    ok(await borgmatic(["create", "--stats"]), "create");
    ok(await borgmatic(["create"]), "second create");
    const listJson = (r: RunResult) => (JSON.parse(r.stdout) as Array<{ archives: Array<{ name: string }> }>)[0]!.archives.map((a) => a.name);
    const before = listJson(ok(await borgmatic(["list", "--json"]), "list --json"));
    expect(before.length).toBe(2);
    // keep_daily 1 keeps the newest archive of today and no rule wants the older one (with the
    // example's 7 dailies, borg keeps the oldest of too few as "daily[oldest]")
    ok(await borgmatic(["prune", "--stats"]), "prune");
    ok(await borgmatic(["compact"]), "compact");
    const after = listJson(ok(await borgmatic(["list", "--json"]), "list --json"));
    expect(after).toEqual([before[1]!]);
    const listed = ok(await borgmatic(["list", "--archive", "latest"]), "list --archive latest").stdout;
    expect(listed).toContain("f1.bin");
    expect(listed).not.toContain("cache.pyc");
    ok(await borgmatic(["check", "--force"]), "check");

    // borgmatic runs borg in --destination; that is the server's directory, so the client's is
    // given with --remote-cwd (README: burg pull, borgmatic)
    const dest = join(base, "restore");
    mkdirSync(dest);
    ok(await borgmatic(["extract", "--archive", "latest"], ["--remote-cwd", dest]), "extract");
    const restored = join(dest, src.slice(1));
    run(["rm", "-f", join(src, "cache.pyc")]);
    assertSameTree(src, restored);

    const check = run([requireBorg(), "check", repo], { env: borgEnv(join(base, "check-home"), { BORG_PASSPHRASE: "borgmatic through burg" }) });
    expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });
  }, 300_000);
});
