// The session journal with the real borg client: a daily cycle (create, prune --keep-daily 7 of a
// repository with more archives than that, compact) raises no alert; `borg delete --glob-archives
// '*'` raises one, and the journal shows which session, from where, deleted how much; burg status
// --prometheus parses; a `burg serve` killed with SIGKILL shows as unfinished and the next
// client needs no break-lock; a socket session records its peer; plain borg checks the
// repository afterwards.

import { afterAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeSourceTree } from "../support/data.ts";
import { BURG, borgEnv, requireBorg, runAsync, waitReaped, writeExecutable } from "../support/env.ts";
import { remoteBorg } from "../support/fake-ssh.ts";
import { parsePrometheus } from "../support/prometheus.ts";
import { testScope } from "../support/scope.ts";
import { connectRsh, startBurgSocket, waitUntil } from "../support/socket-server.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const DAY = 86400_000;

/** An ssh stand-in that runs burg serve as a forced command, with sshd's variables set. */
function sshLike(dir: string, serveArgs: string): string {
  return writeExecutable(
    join(dir, "ssh-like"),
    `#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND="$*" SSH_CONNECTION="192.0.2.7 40000 192.0.2.1 22" SSH_CLIENT="192.0.2.7 40000 22"\n` +
      `export SSH_ORIGINAL_COMMAND SSH_CONNECTION SSH_CLIENT\nexec ${BURG} serve ${serveArgs}\n`,
  );
}

async function burg(...args: string[]) {
  return runAsync([BURG, ...args]);
}

function journalJson(text: string): Array<Record<string, any>> {
  return text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
}

describe("session journal", () => {
  test(
    "daily cycle raises no alert; deleting every archive raises one that names the session and the client",
    async () => {
      const dir = scope.tempDir("burg-journal-");
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      // 300 shared files (their chunks are most of the repository) and one file that changes daily
      makeSourceTree(join(cwd, "src"), { seed: 11, files: 300, totalBytes: 3_000_000 });
      const alerts = join(dir, "alerts.jsonl");
      const rsh = sshLike(dir, `--client-name laptop --alert-command 'cat >> ${alerts}'`);
      const borg = remoteBorg(home, rsh);
      const repo = join(dir, "repo");
      const ok = async (args: string[]) => {
        const r = await borg.run(args, { cwd });
        expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: expect.any(String) });
        return r;
      };
      await ok(["init", "-e", "repokey", borg.url(repo)]);
      const start = Date.now() - 20 * DAY;
      const create = (day: number) => {
        writeFileSync(join(cwd, "src", "today.txt"), `day ${day}\n`.repeat(200));
        const ts = new Date(start + day * DAY).toISOString().slice(0, 19);
        return ok(["create", "--timestamp", ts, borg.url(repo, `day-${day}`), "src"]);
      };
      for (let day = 0; day < 10; day++) await create(day);
      for (let day = 10; day < 13; day++) {
        await create(day);
        await ok(["prune", "--keep-daily", "7", borg.url(repo)]);
        await ok(["compact", borg.url(repo)]);
      }
      const listed = await ok(["list", "--short", borg.url(repo)]);
      expect(listed.stdout.trim().split("\n")).toHaveLength(7);
      await Bun.sleep(1500); // alert commands run detached
      expect(existsSync(alerts)).toBe(false);

      // the journal saw the prunes delete and compaction free, and no alert
      let log = journalJson((await burg("log", "--json", repo)).stdout);
      const prunes = log.filter((r) => r.deleted.objects > 0);
      expect(prunes.length).toBe(3);
      expect(log.filter((r) => r.compaction.freed_bytes > 0).length).toBeGreaterThanOrEqual(1);
      expect(log.every((r) => r.outcome === "committed" || r.outcome === "read")).toBe(true);

      // the attack
      await ok(["delete", "--glob-archives", "*", borg.url(repo)]);
      await waitUntil(() => existsSync(alerts) && readFileSync(alerts, "utf8").endsWith("\n"), "the alert command", 20_000);
      const [alert, ...more] = journalJson(readFileSync(alerts, "utf8"));
      expect(more).toHaveLength(0);
      log = journalJson((await burg("log", "--json", repo)).stdout);
      const last = log.at(-1)!;
      expect(alert!.session).toBe(last.session);
      expect(last.who.client_name).toBe("laptop");
      expect(last.who.ssh_connection).toBe("192.0.2.7 40000 192.0.2.1 22");
      expect(last.client_version).toMatch(/^1\.[24]\./);
      expect(last.deleted.objects).toBeGreaterThan(0.9 * last.objects_at_open);
      expect(last.manifest.new_size).toBeLessThan(last.manifest.old_size);
      expect(alert!.alert_reasons.join(" ")).toContain(`deleted or overwrote`);
      const table = (await burg("log", repo)).stdout;
      expect(table.split("\n")[0]).toContain("OUTCOME");
      expect(table).toContain("laptop, 192.0.2.7");
      // --since filters
      expect(journalJson((await burg("log", "--json", "--since", last.start, repo)).stdout).map((r) => r.session)).toEqual([last.session]);

      // status, as Prometheus reads it
      const prom = await burg("status", "--prometheus", repo);
      expect(prom.code).toBe(0);
      const families = parsePrometheus(prom.stdout);
      const value = (name: string) => families.get(name)!.samples.find((s) => s.labels.repository === repo)!.value;
      expect(value("burg_repository_up")).toBe(1);
      expect(value("burg_last_commit_age_seconds")).toBeLessThan(120);
      expect(value("burg_last_session_success")).toBe(1);
      expect(value("burg_repository_objects")).toBeGreaterThan(0);
      expect((await burg("status", "--max-age", "1h", repo)).code).toBe(0);
      await Bun.sleep(2100);
      const stale = await burg("status", "--max-age", "1s", repo);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toContain("no successful commit for");

      // burg check records its verdict; plain borg agrees the repository is sound
      expect((await burg("check", repo)).code).toBe(0);
      const status = JSON.parse((await burg("status", "--json", repo)).stdout);
      expect(status.last_check.verdict).toBe("ok");
      expect(status.last_session.outcome).toBe("committed");
      const check = await runAsync([requireBorg(), "check", "--repository-only", repo], { env: borgEnv(home) });
      expect(check.code).toBe(0);
    },
    600_000,
  );

  test(
    "a burg serve killed with SIGKILL leaves its session marked unfinished; earlier records intact, no break-lock needed",
    async () => {
      const dir = scope.tempDir("burg-journal-kill-");
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      makeSourceTree(join(cwd, "src"), { seed: 3, files: 20, totalBytes: 500_000 });
      const borg = remoteBorg(home, sshLike(dir, "--client-name victim"));
      const repo = join(dir, "repo");
      expect((await borg.run(["init", "-e", "repokey", borg.url(repo)], { cwd })).code).toBe(0);
      expect((await borg.run(["create", borg.url(repo, "first"), "src"], { cwd })).code).toBe(0);
      // a big incompressible file, checkpointed every second so that the session commits
      const big = join(cwd, "big");
      // (every block random on its own: repeated blocks would deduplicate, and the create end in a blink)
      const fd = Bun.file(big).writer();
      for (let i = 0; i < 48; i++) fd.write(randomBytes(8 << 20));
      await fd.end();
      const client = Bun.spawn([requireBorg(), "create", "--checkpoint-interval", "1", "--compression", "none", borg.url(repo, "second"), "big"], {
        cwd,
        env: borg.env(),
        stdout: "ignore",
        stderr: "pipe",
      });
      scope.track(client);
      let victim: Record<string, any> | undefined;
      await waitUntil(
        () => {
          const text = readFileSync(join(repo, "burg", "journal.jsonl"), "utf8");
          const lines = text.trim().split("\n").map((l) => JSON.parse(l));
          const begin = lines.filter((l) => l.event === "begin").at(-1);
          if (lines.some((l) => l.event === "commit" && l.session === begin?.session && begin.pid !== undefined) && lines.filter((l) => l.event === "begin").length >= 3) victim = begin;
          return victim !== undefined;
        },
        "a checkpoint commit of the second create",
        120_000,
      );
      // readable while the session runs, without waiting for its lock
      const during = journalJson((await burg("log", "--json", repo)).stdout).find((r) => r.session === victim!.session)!;
      expect(during.outcome).toBe("running");
      const statusDuring = await burg("status", "--json", repo);
      expect(statusDuring.code).toBe(0);
      expect(JSON.parse(statusDuring.stdout).last_session.outcome).toBe("running");
      process.kill(victim!.pid, "SIGKILL");
      await client.exited;
      const log = journalJson((await burg("log", "--json", repo)).stdout);
      const killed = log.find((r) => r.session === victim!.session)!;
      expect(killed.outcome).toBe("unfinished");
      expect(killed.end).toBeNull();
      expect(killed.commits.length).toBeGreaterThanOrEqual(1);
      expect(killed.written.bytes).toBeGreaterThan(0);
      expect(log.slice(0, 2).map((r) => r.outcome)).toEqual(["committed", "committed"]);
      expect((await burg("log", repo)).stdout).toContain("unfinished");
      // the next client goes on without break-lock, and its session is recorded after
      const list = await borg.run(["list", "--short", borg.url(repo)], { cwd });
      expect(list.code).toBe(0);
      expect(list.stdout).toContain("first");
      const after = journalJson((await burg("log", "--json", repo)).stdout);
      expect(after.at(-1)!.outcome).toBe("read");
      expect(after.length).toBe(log.length + 1);
      // plain borg judges the killed holder by kill(pid, 0), which a zombie still answers
      await waitReaped([victim!.pid], "the killed burg serve");
      const check = await runAsync([requireBorg(), "check", "--repository-only", repo], { env: borgEnv(home) });
      expect(check.code).toBe(0);
    },
    300_000,
  );

  test(
    "a burg serve stopped by SIGTERM mid-backup records outcome signal and raises an alert",
    async () => {
      const dir = scope.tempDir("burg-journal-term-");
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      mkdirSync(cwd);
      const alerts = join(dir, "alerts.jsonl");
      const borg = remoteBorg(home, sshLike(dir, `--alert-command 'cat >> ${alerts}'`));
      const repo = join(dir, "repo");
      expect((await borg.run(["init", "-e", "none", borg.url(repo)], { cwd })).code).toBe(0);
      // an endless source: the backup is still running when the server is stopped
      const client = Bun.spawn([requireBorg(), "create", "--compression", "none", "--read-special", borg.url(repo, "never"), "/dev/urandom"], {
        cwd,
        env: borg.env(),
        stdout: "ignore",
        stderr: "pipe",
      });
      scope.track(client);
      let victim: Record<string, any> | undefined;
      await waitUntil(
        () => {
          const lines = readFileSync(join(repo, "burg", "journal.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
          const begins = lines.filter((l) => l.event === "begin");
          if (begins.length >= 2 && existsSync(join(repo, "lock.roster"))) victim = begins.at(-1);
          return victim !== undefined;
        },
        "the backup's session",
        60_000,
      );
      await Bun.sleep(1000); // let it write some data
      process.kill(victim!.pid, "SIGTERM");
      expect(await client.exited).not.toBe(0);
      const killed = journalJson((await burg("log", "--json", repo)).stdout).find((r) => r.session === victim!.session)!;
      expect(killed.outcome).toBe("signal");
      expect(killed.signal).toBe("SIGTERM");
      expect(killed.discarded.written_objects).toBeGreaterThan(0);
      await waitUntil(() => existsSync(alerts) && readFileSync(alerts, "utf8").endsWith("\n"), "the alert", 20_000);
      expect(JSON.parse(readFileSync(alerts, "utf8")).alert_reasons).toEqual(["ended by SIGTERM"]);
      const check = await runAsync([requireBorg(), "check", "--repository-only", repo], { env: borgEnv(home) });
      expect(check.code).toBe(0);
    },
    120_000,
  );

  test(
    "a failed session raises an alert; a slow, failing alert command delays nothing and its failure is logged",
    async () => {
      const dir = scope.tempDir("burg-journal-alert-");
      const home = join(dir, "home");
      mkdirSync(home);
      const marker = join(dir, "alert-input.json");
      const borg = remoteBorg(home, sshLike(dir, `--alert-command 'cat > ${marker}; sleep 12; exit 3'`));
      const repo = join(dir, "repo");
      expect((await borg.run(["init", "-e", "repokey", borg.url(repo)])).code).toBe(0);
      const t0 = Date.now();
      const again = await borg.run(["init", "-e", "repokey", borg.url(repo)]);
      const took = Date.now() - t0;
      expect(again.code).toBe(2);
      expect(again.stderr).toContain("already exists");
      expect(took).toBeLessThan(10_000); // the alert command sleeps 12 s
      await waitUntil(() => existsSync(marker) && readFileSync(marker, "utf8").endsWith("\n"), "the alert's input", 20_000);
      const input = JSON.parse(readFileSync(marker, "utf8"));
      expect(input.outcome).toBe("error");
      expect(input.error).toContain("AlreadyExists");
      expect(input.alert_reasons[0]).toContain("ended in an error");
      const alertsLog = join(repo, "burg", "alerts.log");
      await waitUntil(() => existsSync(alertsLog) && readFileSync(alertsLog, "utf8").includes("exit status 3"), "the failure in alerts.log", 30_000);
      const log = journalJson((await burg("log", "--json", repo)).stdout);
      expect(log.map((r) => r.outcome)).toEqual(["committed", "error"]);
    },
    120_000,
  );

  test(
    "a burg socket session records the connecting process and the operator's client name; /metrics reports its repository",
    async () => {
      const dir = scope.tempDir("burg-journal-sock-");
      const home = join(dir, "home");
      mkdirSync(home);
      const cwd = join(dir, "data");
      makeSourceTree(join(cwd, "src"), { seed: 4, files: 10, totalBytes: 100_000 });
      const sock = join(dir, "s", "borg.sock");
      const port = 20000 + Math.floor(Math.random() * 20000);
      await startBurgSocket(scope, ["--socket", sock, "--client-name", "nightly", "--metrics-listen", `127.0.0.1:${port}`]);
      const borg = remoteBorg(home, connectRsh(sock));
      const repo = join(dir, "repo");
      expect((await borg.run(["init", "-e", "repokey", borg.url(repo)], { cwd })).code).toBe(0);
      expect((await borg.run(["create", borg.url(repo, "a"), "src"], { cwd })).code).toBe(0);
      const log = journalJson((await burg("log", "--json", repo)).stdout);
      expect(log).toHaveLength(2);
      for (const r of log) {
        expect(r.command).toBe("socket");
        expect(r.who.client_name).toBe("nightly");
        expect(r.who.peer.uid).toBe(process.getuid!());
        expect(r.who.peer.pid).toBeGreaterThan(0);
      }
      expect(log[1].commits.length).toBe(1);
      // the same metrics as burg status --prometheus, over HTTP, for every repository served
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
      const families = parsePrometheus(await res.text());
      const up = families.get("burg_repository_up")!.samples;
      expect(up).toEqual([{ name: "burg_repository_up", labels: { repository: repo }, value: 1 }]);
      expect(families.get("burg_transaction_id")!.samples[0]!.value).toBeGreaterThan(0);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    },
    120_000,
  );
});
