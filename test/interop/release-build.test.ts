// npm run build:release cross-builds the three Linux executables and the amd64 and arm64 Debian
// packages with a SHA256SUMS file, the foreign runtimes coming from the npm registry.

import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, run } from "../support/env.ts";

const ELF_MACHINE = { x64: 0x3e, arm64: 0xb7 } as const;

describe("release build", () => {
  test(
    "linux-x64, linux-x64-baseline, linux-arm64 and the amd64 and arm64 packages, with checksums",
    () => {
      const r = run([process.execPath, join(ROOT, "build/compile.ts"), "--release"], { cwd: ROOT });
      if (r.code !== 0) throw new Error(`release build failed:\n${r.stdout}\n${r.stderr}`);
      const out = join(ROOT, "dist/release");
      const sums = readFileSync(join(out, "SHA256SUMS"), "utf8").trim().split("\n");
      const names = sums.map((l) => l.split(/\s+/)[1]).sort();
      const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
      expect(names).toEqual([
        "burg-linux-arm64",
        "burg-linux-x64",
        "burg-linux-x64-baseline",
        `burg_${version}_amd64.deb`,
        `burg_${version}_arm64.deb`,
      ]);
      for (const line of sums) {
        const [digest, name] = line.split(/\s+/);
        const bytes = readFileSync(join(out, name!));
        expect(createHash("sha256").update(bytes).digest("hex")).toBe(digest!);
        if (name!.endsWith(".deb")) {
          // The package's architecture matches its name; it carries the executable built for it.
          const f = run(["dpkg-deb", "-f", join(out, name!), "Architecture", "Package", "Version"]);
          expect(f.code).toBe(0);
          const arch = name!.endsWith("_arm64.deb") ? "arm64" : "amd64";
          expect(f.stdout).toBe(`Architecture: ${arch}\nPackage: burg\nVersion: ${version}\n`);
          const fromDeb = run(["sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - ./usr/bin/burg | sha256sum`, "sh", join(out, name!)]);
          expect(fromDeb.code).toBe(0);
          const built = readFileSync(join(out, arch === "arm64" ? "burg-linux-arm64" : "burg-linux-x64-baseline"));
          expect(fromDeb.stdout.split(/\s+/)[0]).toBe(createHash("sha256").update(built).digest("hex"));
          continue;
        }
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
