// Path rules, restrictions, forced-command parsing and permission enforcement, with borg's own
// Python code (installed borg 1.2) as the reference where borg defines the behaviour.

import { describe, expect, test } from "bun:test";
import { mkdirSync, realpathSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { parseServeArgv, pathContext, serveSettings } from "../../../src/commands/serve.ts";
import { PathNotAllowed, PermissionDenied, UsageError } from "../../../src/errors.ts";
import {
  GuardedRepository,
  MANIFEST_ID,
  checkPathAllowed,
  resolvePermissions,
  resolveRepositoryPath,
  shlexSplit,
  type PermissionMode,
  type ServePolicy,
} from "../../../src/rpc/policy.ts";
import { Logger } from "../../../src/util/log.ts";
import { requireBorg, tempDir } from "../../support/env.ts";
import { FakeStore, type FakeRepository } from "../../support/fake-repository.ts";

const PYTHON = "/usr/bin/python3";

function python(script: string, opts: { env?: Record<string, string>; cwd?: string; input?: string } = {}): string {
  requireBorg();
  const r = Bun.spawnSync([PYTHON, "-c", script], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...opts.env },
    cwd: opts.cwd,
    stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`python failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

describe("repository paths as borg's RepositoryServer._resolve_path", () => {
  test("home, base dir, ~user, cwd, .. and symlinks (also loops) resolve like borg", () => {
    const root = realpathSync(tempDir("burg-paths-"));
    for (const d of ["home", "base", "cwd", "real/sub"]) mkdirSync(join(root, d), { recursive: true });
    symlinkSync(join(root, "real"), join(root, "link"));
    symlinkSync("real/sub", join(root, "rel"));
    symlinkSync(join(root, "loop2"), join(root, "loop1"));
    symlinkSync(join(root, "loop1"), join(root, "loop2"));
    symlinkSync("/", join(root, "cwd", "up"));
    const env = { HOME: join(root, "home"), BORG_BASE_DIR: join(root, "base"), USER: "nobody" };
    const cwd = join(root, "cwd");
    const paths = [
      "/~/repo",
      "~/repo",
      "/~",
      "~",
      "/./repo",
      "repo",
      "up/etc",
      "../x",
      "/~root/x",
      "~root/x",
      "/~no-such-user-here/x",
      "/~/../../../etc",
      `${root}/link/../x`,
      `${root}/link/sub/repo`,
      `${root}/rel/../y`,
      `${root}/loop1/x`,
      `${root}//real///sub/./z/`,
      "/",
    ];
    const expected = python(
      `import sys
from borg.remote import RepositoryServer
s = RepositoryServer(None, None, False, None)
for p in sys.stdin.read().split("\\n"):
    print(s._resolve_path(p.encode()))`,
      { env, cwd, input: paths.join("\n") },
    )
      .trimEnd()
      .split("\n");
    const ctx = pathContext(env, cwd);
    expect(paths.map((p) => resolveRepositoryPath(p, ctx))).toEqual(expected);
  });

  test("restrictions compare whole path components and see through symlinks", () => {
    const root = realpathSync(tempDir("burg-restrict-"));
    mkdirSync(join(root, "allowed/repo"), { recursive: true });
    mkdirSync(join(root, "allowedX"));
    mkdirSync(join(root, "outside"));
    symlinkSync(join(root, "outside"), join(root, "allowed/escape"));
    const policy = (p: Partial<ServePolicy>): ServePolicy => ({
      restrictToPaths: [],
      restrictToRepositories: [],
      appendOnly: false,
      storageQuota: null,
      permissions: "all",
      ...p,
    });
    const ctx = pathContext({ HOME: root }, root);
    const check = (path: string, pol: ServePolicy) => () => checkPathAllowed(resolveRepositoryPath(path, ctx), pol, root);
    const byPath = policy({ restrictToPaths: [join(root, "allowed")] });
    expect(check(`${root}/allowed/repo`, byPath)).not.toThrow();
    expect(check(`${root}/allowed/new/deeper`, byPath)).not.toThrow();
    expect(check(`${root}/allowed`, byPath)).not.toThrow();
    expect(check(`${root}/allowedX`, byPath)).toThrow(PathNotAllowed);
    expect(check(`${root}/allowed/../outside`, byPath)).toThrow(PathNotAllowed);
    expect(check(`${root}/allowed/escape/repo`, byPath)).toThrow(`Repository path not allowed: ${root}/outside/repo`);
    expect(check("~/outside", byPath)).toThrow(PathNotAllowed);
    expect(check("/~root/x", byPath)).toThrow(PathNotAllowed);
    // a restriction given through a symlink still holds
    const viaLink = policy({ restrictToPaths: [join(root, "allowed/escape")] });
    expect(check(`${root}/outside/r`, viaLink)).not.toThrow();
    const byRepo = policy({ restrictToRepositories: [join(root, "allowed/repo")] });
    expect(check(`${root}/allowed/repo/`, byRepo)).not.toThrow();
    expect(check(`${root}/allowed/repo/sub`, byRepo)).toThrow(PathNotAllowed);
    expect(check(`${root}/allowed`, byRepo)).toThrow(PathNotAllowed);
  });
});

describe("forced commands (SSH_ORIGINAL_COMMAND) as borg's Archiver.get_args", () => {
  test("shlex splitting matches python's shlex.split", () => {
    const cases = [
      "borg serve --info",
      `a 'b c' "d e" f\\ g`,
      `"a\\"b" 'c\\d' e\\\\f`,
      `x"y z"w  '' ""`,
      `BORG_X='1 2' borg serve`,
      `  lead   trail  `,
      `"\\$HOME" '$HOME'`,
    ];
    const expected = python(
      `import shlex, sys, json
for line in sys.stdin.read().split("\\n"):
    print(json.dumps(shlex.split(line)))`,
      { input: cases.join("\n") },
    )
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(cases.map(shlexSplit)).toEqual(expected);
    expect(() => shlexSplit(`a "b`)).toThrow("No closing quotation");
  });

  test("only log level, debug topics and lock wait come from the client, with borg's defaults", () => {
    const forced = ["serve", "--restrict-to-path", "/srv/repos", "--append-only", "--debug", "--lock-wait", "5"];
    const clients = [
      "borg serve --info",
      "borg serve",
      "BORG_RSH=evil borg serve --debug --restrict-to-path / --append-only --umask 000 --storage-quota 20M",
      "borg serve --lock-wait 30 --debug-topic=borg.debug.repository.compaction --debug-topic lock",
      "borg --critical serve",
      "borg list /srv/repos/x",
      "borg serve --error --warning",
    ];
    const expected = python(
      `import sys, json
from borg.archiver import Archiver
forced = json.loads(sys.argv[1])
for cmd in sys.stdin.read().split("\\n"):
    a = Archiver().get_args(["borg"] + forced, cmd)
    print(json.dumps([a.log_level.upper(), a.debug_topics, a.lock_wait, a.restrict_to_paths, a.append_only]))`.replace(
        "sys.argv[1]",
        JSON.stringify(JSON.stringify(forced)),
      ),
      { input: clients.join("\n"), env: { HOME: tempDir() } },
    )
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    const ours = clients.map((cmd) => {
      const s = serveSettings(parseServeArgv(forced), { SSH_ORIGINAL_COMMAND: cmd });
      return [s.logLevel, s.debugTopics, s.lockWait, s.policy.restrictToPaths, s.policy.appendOnly];
    });
    expect(ours).toEqual(expected);
    // umask and storage quota never come from the client
    const s = serveSettings(parseServeArgv([]), { SSH_ORIGINAL_COMMAND: clients[2]! });
    expect([s.umask, s.policy.storageQuota]).toEqual([0o077, null]);
  });
});

describe("serve options", () => {
  test("--permissions overrides BORG_REPO_PERMISSIONS, which overrides 'all'", () => {
    expect(resolvePermissions(undefined, undefined)).toBe("all");
    expect(resolvePermissions(undefined, "read-only")).toBe("read-only");
    expect(resolvePermissions("no-delete", "read-only")).toBe("no-delete");
    expect(() => resolvePermissions("readonly", undefined)).toThrow(UsageError);
    expect(() => resolvePermissions(undefined, "bogus")).toThrow("Invalid BORG_REPO_PERMISSIONS value: bogus");
  });

  test("the command line is read word by word: lists, last value and last log level win, no number coercion", () => {
    const o = parseServeArgv([
      "serve",
      "--restrict-to-path",
      "010",
      "--restrict-to-path=/b",
      "--restrict-to-repository",
      "1e3",
      "--debug",
      "--info",
      "--umask=0027",
      "--permissions",
      "read-only",
      "--permissions",
      "no-delete",
      "--remote-path",
      "--debug",
      "--debug-topic",
      "repository.compaction",
    ]);
    expect(o).toEqual({
      restrictToPath: ["010", "/b"],
      restrictToRepository: ["1e3"],
      logLevel: "INFO",
      umask: "0027",
      permissions: "no-delete",
      debugTopic: ["repository.compaction"],
    });
    expect(serveSettings(parseServeArgv(["serve", "--append-only"]), {}).policy).toEqual({
      restrictToPaths: [],
      restrictToRepositories: [],
      appendOnly: true,
      storageQuota: null,
      keepDeleted: null,
      permissions: "all",
    });
    // the time lock: a duration, in seconds
    expect(serveSettings(parseServeArgv(["serve", "--keep-deleted", "1d12h"]), {}).policy.keepDeleted).toBe(129600);
    expect(serveSettings(parseServeArgv(["serve", "--keep-deleted=3600"]), {}).policy.keepDeleted).toBe(3600);
    expect(() => serveSettings(parseServeArgv(["serve", "--keep-deleted", "soon"]), {})).toThrow("argument --keep-deleted: invalid duration");
  });

  test("umask, storage quota and lock wait are validated like borg's argparse types", () => {
    const settings = (...argv: string[]) => serveSettings(parseServeArgv(argv), {});
    expect(settings().umask).toBe(0o077);
    expect(settings("--umask", "0027").umask).toBe(0o027);
    expect(() => settings("--umask", "0088")).toThrow(UsageError);
    expect(settings("--storage-quota", "5G").policy.storageQuota).toBe(5e9);
    expect(settings("--storage-quota=1.5T").policy.storageQuota).toBe(1.5e12);
    expect(() => settings("--storage-quota", "5M")).toThrow("At least 10M are required");
    expect(() => settings("--lock-wait", "soon")).toThrow(UsageError);
    expect(settings("--lock-wait", "30").lockWait).toBe(30);
  });
});

describe("permissions", () => {
  const id = (n: number) => new Uint8Array(32).fill(n);
  const data = (s: string) => new TextEncoder().encode(s);

  async function guarded(mode: PermissionMode): Promise<{ repo: GuardedRepository; inner: FakeRepository; logs: string[] }> {
    const store = new FakeStore();
    const state = store.addRepo("/r", [
      [MANIFEST_ID, data("manifest-1")],
      [id(1), data("old chunk")],
    ]);
    state.key = data("stored key");
    state.nonce = 100;
    const inner = (await store.open("/r", {
      create: false,
      exclusive: true,
      lockWait: 1,
      lock: true,
      appendOnly: false,
      storageQuota: null,
      makeParentDirs: false,
    })) as FakeRepository;
    const logger = new Logger();
    const logs: string[] = [];
    logger.sink = { write: (l) => logs.push(l) };
    logger.setLevel("DEBUG");
    return { repo: new GuardedRepository(inner, mode, logger), inner, logs };
  }

  test("read-only: reads work, writes fail and change nothing; unchanged re-puts and nonces stay in memory", async () => {
    const { repo, inner } = await guarded("read-only");
    expect(repo.get(id(1))).toEqual(data("old chunk"));
    expect(await repo.list(null, null)).toHaveLength(2);
    await expect(repo.put(id(2), data("new"))).rejects.toThrow(PermissionDenied);
    await expect(repo.put(MANIFEST_ID, data("manifest-2"))).rejects.toThrow("Permission denied: writing is not allowed");
    await expect(repo.delete(id(1))).rejects.toThrow(PermissionDenied);
    await expect(repo.saveKey(data("k"))).rejects.toThrow(PermissionDenied);
    expect(() => repo.destroy()).toThrow(PermissionDenied);
    expect(() => repo.check({ repair: true, maxDuration: 0 })).toThrow(PermissionDenied);
    await repo.put(MANIFEST_ID, data("manifest-1")); // borg with-lock
    await repo.commitNonceReservation(200, 100); // borg check
    expect(await repo.getFreeNonce()).toBe(200);
    await repo.commitNonceReservation(300, 200);
    await expect(repo.commitNonceReservation(400, 100)).rejects.toThrow("mismatched previous state");
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    expect(() => repo.commit({ compact: true, threshold: 0.1, cleanupCommits: false })).toThrow(
      "compacting the repository is not allowed",
    );
    expect(inner.calls.filter((c) => !["get", "list", "load_key", "get_free_nonce"].includes(c))).toEqual([]);
    expect(inner.state.nonce).toBe(100);
  });

  test("no-delete: new objects and a new manifest, deletes only of own objects, never compaction", async () => {
    const { repo, inner, logs } = await guarded("no-delete");
    await repo.put(id(2), data("new chunk"));
    await repo.put(id(3), data("checkpoint archive"));
    await repo.put(MANIFEST_ID, data("manifest-2"));
    await repo.commit({ compact: true, threshold: 0.1, cleanupCommits: true });
    expect(inner.state.commits.at(-1)).toEqual({ compact: false, threshold: 0.1, cleanupCommits: false });
    await repo.delete(id(3)); // checkpoint cleanup of this session's own object
    await expect(repo.delete(id(1))).rejects.toThrow(
      `Permission denied: deleting object ${"01".repeat(32)} is not allowed; only objects written in this session can be deleted`,
    );
    await expect(repo.delete(MANIFEST_ID)).rejects.toThrow(PermissionDenied);
    await expect(repo.put(id(1), data("changed"))).rejects.toThrow("overwriting existing object");
    await repo.put(id(1), data("old chunk")); // unchanged: accepted, not written
    await expect(repo.saveKey(data("new key"))).rejects.toThrow("replacing the repository key is not allowed");
    expect(() => repo.destroy()).toThrow(PermissionDenied);
    expect(repo.get(id(1))).toEqual(data("old chunk"));
    expect(inner.calls.filter((c) => c === "put")).toHaveLength(3);
    expect(logs.some((l) => l.includes(`refused delete of object ${"01".repeat(32)}`) && l.startsWith("Warning"))).toBe(true);
    expect(logs.some((l) => l.includes(`deleted object ${"03".repeat(32)} written in this session`))).toBe(true);
  });

  test("write-only: like no-delete, and only the manifest and the key can be read", async () => {
    const { repo } = await guarded("write-only");
    expect(repo.get(MANIFEST_ID)).toEqual(data("manifest-1"));
    expect(await repo.loadKey()).toEqual(data("stored key"));
    expect(() => repo.get(id(1))).toThrow(`Permission denied: reading object ${"01".repeat(32)} is not allowed`);
    await repo.put(id(2), data("new chunk"));
    expect(() => repo.get(id(2))).toThrow(PermissionDenied);
    await expect(repo.delete(id(1))).rejects.toThrow(PermissionDenied);
    expect(await repo.list(null, null)).toHaveLength(3);
  });

  test("a new repository may get its first key in every writing mode", async () => {
    for (const mode of ["no-delete", "write-only"] as const) {
      const { repo, inner } = await guarded(mode);
      inner.state.key = new Uint8Array(0);
      await repo.saveKey(data("first key"));
      expect(inner.state.key).toEqual(data("first key"));
    }
  });
});
