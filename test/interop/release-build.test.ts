// npm run build:release cross-builds the three Linux executables with a SHA256SUMS file, the
// foreign runtimes coming from the npm registry.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, run } from "../support/env.ts";

const ELF_MACHINE = { x64: 0x3e, arm64: 0xb7 } as const;

describe("release build", () => {
  test(
    "linux-x64, linux-x64-baseline and linux-arm64 with checksums",
    () => {
      const r = run([process.execPath, join(ROOT, "build/compile.ts"), "--release"], { cwd: ROOT });
      if (r.code !== 0) throw new Error(`release build failed:\n${r.stdout}\n${r.stderr}`);
      const out = join(ROOT, "dist/release");
      const sums = readFileSync(join(out, "SHA256SUMS"), "utf8").trim().split("\n");
      const names = sums.map((l) => l.split(/\s+/)[1]).sort();
      expect(names).toEqual(["burg-linux-arm64", "burg-linux-x64", "burg-linux-x64-baseline"]);
      for (const line of sums) {
        const [digest, name] = line.split(/\s+/);
        const bytes = readFileSync(join(out, name!));
        expect(createHash("sha256").update(bytes).digest("hex")).toBe(digest!);
        expect(bytes.subarray(0, 4).toString("latin1")).toBe("\x7fELF");
        const machine = bytes.readUInt16LE(18);
        expect(machine).toBe(name!.endsWith("arm64") ? ELF_MACHINE.arm64 : ELF_MACHINE.x64);
      }
      const runnable = process.arch === "arm64" ? ["burg-linux-arm64"] : ["burg-linux-x64", "burg-linux-x64-baseline"];
      for (const name of runnable) {
        const v = run([join(out, name), "--version"], { env: {} });
        expect(v.code).toBe(0);
        expect(v.stdout).toMatch(/^burg \d+\.\d+\.\d+ \(commit /);
      }
    },
    300_000,
  );
});
