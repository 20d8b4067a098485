// Builds dist/burg: one self-contained executable (bun build --compile, minified) that needs
// nothing but libc. With --release it also cross-builds linux-x64, linux-x64-baseline and
// linux-arm64 into dist/release/, the Debian packages for amd64 and arm64 (build/deb.ts), and a
// SHA256SUMS file listing them all. Every build also writes the man pages and the bash
// completion (build/docs.ts).
//
// Cross-compiling needs the target's Bun runtime. We take it from the npm registry (the
// @oven/bun-<target> packages the `bun` package itself is built from) with `npm pack`, so no
// build step downloads anything from anywhere else.

import { $ } from "bun";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, chmodSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildDeb } from "./deb.ts";
import { writeDocs } from "./docs.ts";

const root = resolve(import.meta.dir, "..");
const dist = join(root, "dist");
const entry = join(root, "src/main.ts");

async function gitCommit(): Promise<string> {
  const r = await $`git -C ${root} rev-parse --short=12 HEAD`.quiet().nothrow();
  if (r.exitCode !== 0) return "unknown";
  const dirty = await $`git -C ${root} status --porcelain --untracked-files=no`.quiet().nothrow();
  return r.stdout.toString().trim() + (dirty.stdout.toString().trim() ? "-dirty" : "");
}

async function compile(outfile: string, executablePath?: string): Promise<void> {
  const commit = await gitCommit();
  const args = [
    "build",
    "--compile",
    "--minify",
    
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    `--define=BURG_COMMIT=${JSON.stringify(commit)}`,
    `--outfile=${outfile}`,
  ];
  if (executablePath) args.push(`--compile-executable-path=${executablePath}`);
  args.push(entry);
  const r = Bun.spawnSync([process.execPath, ...args], { stdout: "inherit", stderr: "inherit", cwd: root });
  if (r.exitCode !== 0) throw new Error(`bun build failed for ${outfile}`);
}

/** Fetch @oven/bun-<target> from the npm registry and return the path of its bun binary. */
async function runtimeFor(target: string): Promise<string> {
  const version = Bun.version;
  const cache = join(root, ".cache", "runtimes", `${target}-${version}`);
  const bin = join(cache, "package", "bin", "bun");
  if (existsSync(bin)) return bin;
  mkdirSync(cache, { recursive: true });
  const r = await $`npm pack --silent --pack-destination ${cache} @oven/bun-${target}@${version}`.cwd(cache).quiet().nothrow();
  if (r.exitCode !== 0) throw new Error(`npm pack @oven/bun-${target}@${version} failed: ${r.stderr}`);
  const tgz = readdirSync(cache).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new Error(`no tarball for @oven/bun-${target}`);
  await $`tar -xzf ${join(cache, tgz)} -C ${cache}`.quiet();
  chmodSync(bin, 0o755);
  return bin;
}

async function release(): Promise<void> {
  const out = join(dist, "release");
  mkdirSync(out, { recursive: true });
  const targets = ["linux-x64", "linux-x64-baseline", "linux-aarch64"];
  const sums: string[] = [];
  for (const t of targets) {
    const name = `burg-${t === "linux-aarch64" ? "linux-arm64" : t}`;
    const runtime = await runtimeFor(t);
    await compile(join(out, name), runtime);
    const digest = createHash("sha256").update(readFileSync(join(out, name))).digest("hex");
    sums.push(`${digest}  ${name}`);
    console.log(`built dist/release/${name}`);
  }
  // Debian packages: amd64 from the baseline build (runs on x86-64 CPUs without AVX2, which
  // backup servers often are), arm64 from the arm64 build.
  for (const [arch, name] of [["amd64", "burg-linux-x64-baseline"], ["arm64", "burg-linux-arm64"]] as const) {
    const deb = buildDeb(join(out, name), arch, out);
    const file = deb.slice(out.length + 1);
    sums.push(`${createHash("sha256").update(readFileSync(deb)).digest("hex")}  ${file}`);
    console.log(`built dist/release/${file}`);
  }
  writeFileSync(join(out, "SHA256SUMS"), sums.join("\n") + "\n");
  console.log("wrote dist/release/SHA256SUMS");
}

mkdirSync(dist, { recursive: true });
await compile(join(dist, "burg"));
console.log("built dist/burg");
writeDocs(root, dist);
console.log("wrote dist/man/*.1 and dist/completion/burg");
if (process.argv.includes("--release")) await release();
