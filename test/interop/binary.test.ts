// The compiled binary stands alone: copied into an empty directory and run with an empty
// environment, it still answers --version and --help.

import { describe, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { requireBurg, run, tempDir } from "../support/env.ts";

describe("dist/burg", () => {
  test("runs alone in an empty directory with an empty environment", () => {
    const dir = tempDir();
    const copy = join(dir, "burg");
    copyFileSync(requireBurg(), copy);
    run(["chmod", "755", copy]);
    const r = run([copy, "--version"], { env: {}, cwd: dir });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^burg \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}(-dirty)?\)\n$/);
  });

  test("needs nothing but libc", () => {
    const r = run(["ldd", requireBurg()]);
    const libs = r.stdout
      .split("\n")
      .map((l) => l.trim().split(" ")[0])
      .filter((l) => l && !l.startsWith("linux-vdso") && !l.startsWith("/lib") && !l.startsWith("/lib64"));
    for (const lib of libs) expect(lib).toMatch(/^lib(c|m|dl|pthread|rt)\.so\.\d+$/);
  });

  test("an unknown subcommand is an error with exit code 2", () => {
    const r = run([requireBurg(), "frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command");
  });
});
