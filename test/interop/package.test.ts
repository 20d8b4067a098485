// The Debian package, the man pages and the bash completion: generated from the command line
// itself (src/cli.ts), so these tests check that they say what --help says, that man renders
// every page without a warning, that lintian finds no error in the package, and that the
// package installs on this machine (dpkg -i), works (burg --version, man burg-serve, the
// completion, systemd-analyze verify of the units) and leaves nothing behind on purge.

import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BURG, ROOT, run, runAsync } from "../support/env.ts";
import { testScope } from "../support/scope.ts";
import { buildCli } from "../../src/cli.ts";
import { commandOptions } from "../../src/docs/completion.ts";
import { buildDeb, glibcNeeded } from "../../build/deb.ts";

const scope = testScope();
afterAll(() => scope.cleanup());

const MAN = join(ROOT, "dist/man");
const COMPLETION = join(ROOT, "dist/completion/burg");

/** The option names `burg CMD --help` prints, e.g. ["--repair", "--json", "-v", "--verbose"]. */
function helpOptions(help: string): string[] {
  const section = help.split("\nOptions:\n")[1] ?? "";
  const names: string[] = [];
  for (const line of section.split("\n")) {
    const m = /^ {2}(-\S.*?)(?: {2,}|$)/.exec(line);
    if (!m) continue;
    for (const part of m[1]!.split(/,\s*/)) names.push(part.trim().split(/\s/)[0]!);
  }
  return names;
}

/** man's output as plain text: overstrike (bold, underline) removed, hyphens as typed. */
function plain(text: string): string {
  return text.replace(/.\x08/g, "").replace(/\u2010|\u2212/g, "-");
}

/** Complete `words` (the last one being typed) with the generated bash completion. */
function complete(words: string[]): string[] {
  const script = `source ${COMPLETION}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")})\nCOMP_CWORD=${words.length - 1}\n_burg\nprintf '%s\\n' "\${COMPREPLY[@]}"\n`;
  const r = run(["bash", "-c", script]);
  expect(r.stderr).toBe("");
  return r.stdout.split("\n").filter(Boolean);
}

describe("man pages and completion", () => {
  const cli = buildCli();

  test("one page per command and burg(1); man renders each without a warning", () => {
    const pages = readdirSync(MAN).sort();
    expect(pages).toEqual(["burg.1", ...cli.commands.map((c) => `burg-${c.name}.1`)].sort());
    for (const page of pages) {
      const r = run(["man", "--warnings", "-l", "-Tutf8", join(MAN, page)], { env: { ...process.env, MANWIDTH: "80" } as Record<string, string> });
      expect({ page, code: r.code, stderr: r.stderr }).toEqual({ page, code: 0, stderr: "" });
      expect(plain(r.stdout)).toContain("NAME");
    }
  });

  test("each page says what --help says: the description, every option, every example", () => {
    for (const c of cli.commands) {
      const help = run([BURG, c.name, "--help"]);
      expect(help.code).toBe(0);
      const page = run(["man", "-l", "-Tutf8", join(MAN, `burg-${c.name}.1`)], { env: { ...process.env, MANWIDTH: "200" } as Record<string, string> });
      const text = plain(page.stdout).replace(/\s+/g, " ");
      expect(text).toContain(`burg-${c.name} - ${c.description}`.replace(/\s+/g, " "));
      for (const o of helpOptions(help.stdout)) expect({ command: c.name, option: o, found: text.includes(o) }).toEqual({ command: c.name, option: o, found: true });
      for (const e of c.examples) expect(text).toContain(String(e).trim().replace(/\s+/g, " "));
    }
    const main = plain(run(["man", "-l", "-Tutf8", join(MAN, "burg.1")], { env: { ...process.env, MANWIDTH: "200" } as Record<string, string> }).stdout);
    for (const c of cli.commands) expect(main).toContain(`burg-${c.name}(1)`);
  });

  test("bash completion: the commands, each command's options as --help lists them, values of --permissions", () => {
    expect(run(["bash", "-n", COMPLETION]).code).toBe(0);
    expect(complete(["burg", ""]).sort()).toEqual([...cli.commands.map((c) => c.name), "--help", "--version"].sort());
    expect(complete(["burg", "un"])).toEqual(["undelete"]);
    for (const c of cli.commands) {
      const fromHelp = new Set(helpOptions(run([BURG, c.name, "--help"]).stdout));
      const offered = new Set(complete(["burg", c.name, "-"]));
      for (const o of fromHelp) expect({ command: c.name, option: o, offered: offered.has(o) }).toEqual({ command: c.name, option: o, offered: true });
    }
    // pull parses its own options; they come from its usage text
    expect(complete(["burg", "pull", "--re"]).sort()).toEqual(["--remote-borg", "--remote-burg", "--remote-cwd", "--remote-env", "--repo"]);
    expect(complete(["burg", "serve", "--permissions", "n"])).toEqual(["no-delete"]);
    expect(complete(["burg", "pull", "--repo", "x", "host", "--", "cre"])).toEqual([]);
    expect(commandOptions(cli, cli.commands.find((c) => c.name === "check")!).withValue).toContain("--lock-wait");
  });
});

describe("Debian package", () => {
  test("lintian finds no error; dpkg -i installs a working burg; --purge leaves nothing behind", async () => {
    const arch = run(["dpkg", "--print-architecture"]).stdout.trim();
    const installed = run(["dpkg-query", "-W", "-f", "${Status}", "burg"]);
    if (installed.code === 0 && installed.stdout.includes("installed")) {
      throw new Error("a package burg is installed on this machine already; this test installs and purges its own (remove it first)");
    }
    expect(run(["getent", "passwd", "burg"]).code).not.toBe(0);
    const dir = scope.tempDir("burg-deb-");
    const deb = buildDeb(BURG, arch, dir);
    expect(deb).toBe(join(dir, `burg_${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}_${arch}.deb`));

    const fields = run(["dpkg-deb", "-f", deb]).stdout;
    expect(fields).toContain(`Architecture: ${arch}`);
    expect(fields).toMatch(new RegExp(`^Depends: libc6 \\(>= ${glibcNeeded(BURG)!.replace(/\./g, "\\.")}\\)$`, "m"));
    const contents = run(["dpkg-deb", "-c", deb]).stdout;
    for (const path of [
      "./usr/bin/burg",
      "./lib/systemd/system/burg.service",
      "./lib/systemd/system/burg-compact.timer",
      "./usr/share/man/man1/burg-serve.1.gz",
      "./usr/share/bash-completion/completions/burg",
      "./usr/share/doc/burg/copyright",
      "./usr/share/doc/burg/README.md.gz",
    ]) {
      expect(contents).toContain(path);
    }

    const lintian = await runAsync(["lintian", "--tag-display-limit", "0", deb]);
    const errors = lintian.stdout.split("\n").filter((l) => l.startsWith("E:"));
    expect(errors).toEqual([]);

    try {
      const install = await runAsync(["dpkg", "-i", deb]);
      expect({ code: install.code, stderr: install.stderr }).toEqual({ code: 0, stderr: "" });
      const version = run(["/usr/bin/burg", "--version"]);
      expect(version.code).toBe(0);
      expect(version.stdout).toMatch(/^burg \d+\.\d+\.\d+ /);
      const man = run(["man", "-P", "cat", "burg-serve"], { env: { ...process.env, MANWIDTH: "80" } as Record<string, string> });
      expect(man.code).toBe(0);
      expect(plain(man.stdout)).toContain("BURG-SERVE(1)");
      expect(plain(man.stdout)).toContain("--restrict-to-repository");
      expect(run(["bash", "-c", "source /usr/share/bash-completion/completions/burg && complete -p burg"]).stdout).toContain("_burg");
      // the units, now that /usr/bin/burg exists (verify checks ExecStart)
      const units = readdirSync("/lib/systemd/system").filter((u) => u.startsWith("burg")).map((u) => `/lib/systemd/system/${u}`);
      expect(units.length).toBe(readdirSync(join(ROOT, "contrib/systemd")).length);
      for (const u of units) expect(readFileSync(u, "utf8")).not.toContain("/usr/local/bin/burg");
      const verify = await runAsync(["systemd-analyze", "verify", ...units]);
      expect({ code: verify.code, stderr: verify.stderr }).toEqual({ code: 0, stderr: "" });
      expect(run(["getent", "passwd", "burg"]).stdout).toMatch(/^burg:x:\d+:\d+:[^:]*:\/srv\/borg:\/usr\/sbin\/nologin$/m);
    } finally {
      const purge = await runAsync(["dpkg", "--purge", "burg"]);
      expect({ code: purge.code, stderr: purge.stderr }).toEqual({ code: 0, stderr: "" });
    }
    for (const line of contents.split("\n").filter(Boolean)) {
      const path = line.slice(line.indexOf("./") + 1);
      if (path.endsWith("/")) continue; // shared directories (/usr/bin ...) stay
      expect({ path, exists: existsSync(path) }).toEqual({ path, exists: false });
    }
    expect(existsSync("/usr/share/doc/burg")).toBe(false);
    expect(run(["getent", "passwd", "burg"]).code).not.toBe(0);
    expect(run(["getent", "group", "burg"]).code).not.toBe(0);
    expect(run(["dpkg-query", "-W", "burg"]).code).not.toBe(0);
  }, 300_000);
});
