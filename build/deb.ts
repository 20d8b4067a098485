// Builds the Debian package of burg with dpkg-deb (Debian's own tool; nothing else):
//
//   /usr/bin/burg                                   the executable (not stripped: the program is
//                                                   appended to Bun's runtime, strip would cut it off)
//   /lib/systemd/system/burg*.{service,socket,timer} contrib/systemd/, ExecStart in /usr/bin
//   /usr/share/man/man1/burg*.1.gz                  dist/man/ (build/docs.ts)
//   /usr/share/bash-completion/completions/burg     dist/completion/burg
//   /usr/share/doc/burg/                            README, copyright (the licence), changelog
//
// Depends: libc6 only, at the newest glibc symbol version the executable needs (read from its
// ELF .dynstr). The maintainer scripts create the system user `burg` the units run as (no
// password, no shell, home /srv/borg, not created) and remove it on purge.
//
//   bun build/deb.ts BINARY ARCH [OUTDIR]     e.g. bun build/deb.ts dist/burg amd64 dist

import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { VERSION } from "../src/version.ts";

const root = resolve(import.meta.dir, "..");

/**
 * Maintainer and changelog signer: DEBFULLNAME and DEBEMAIL, as dch(1) takes them; without them
 * an address under .invalid (RFC 2606: reserved, never delivered), since the project has none.
 */
export function maintainer(env = process.env): string {
  return `${env.DEBFULLNAME || "burg developers"} <${env.DEBEMAIL || "maintainers@burg.invalid"}>`;
}

/** The newest GLIBC_x.y a 64-bit ELF file's dynamic string table names (null: none, or not ELF64). */
export function glibcNeeded(file: string): string | null {
  const b = readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return null;
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const shstrndx = b.readUInt16LE(0x3e);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return { name: b.readUInt32LE(o), type: b.readUInt32LE(o + 4), offset: Number(b.readBigUInt64LE(o + 0x18)), size: Number(b.readBigUInt64LE(o + 0x20)) };
  };
  const names = section(shstrndx);
  let best: number[] | null = null;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const end = b.indexOf(0, names.offset + s.name);
    if (b.toString("latin1", names.offset + s.name, end) !== ".dynstr") continue;
    for (const m of b.toString("latin1", s.offset, s.offset + s.size).matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)) {
      const v = m[1]!.split(".").map(Number);
      if (best === null || compare(v, best) > 0) best = v;
    }
  }
  return best === null ? null : best.join(".");
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function buildDate(): Date {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000);
  const r = Bun.spawnSync(["git", "-C", root, "log", "-1", "--format=%ct"], { stdout: "pipe", stderr: "ignore" });
  const t = Number(r.stdout.toString().trim());
  return r.exitCode === 0 && t > 0 ? new Date(t * 1000) : new Date();
}

/** RFC 5322 date, as debian/changelog wants it. */
function rfc2822(d: Date): string {
  return d.toUTCString().replace(/GMT$/, "+0000").replace(/^(\w+), (\d) /, "$1, 0$2 ");
}

function put(staging: string, path: string, content: string | Uint8Array, mode = 0o644): void {
  const file = join(staging, path);
  mkdirSync(join(file, ".."), { recursive: true });
  writeFileSync(file, content);
  chmodSync(file, mode);
}

/** gzip -9n: no name, no time stamp, so the package is reproducible. */
function gz(data: string | Uint8Array): Uint8Array {
  const out = gzipSync(data, { level: 9 });
  out[4] = out[5] = out[6] = out[7] = 0; // MTIME
  out[9] = 3; // OS: Unix, as gzip writes it
  return out;
}

const COPYRIGHT = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: burg

Files: *
Copyright: 2026 the burg developers
License: BSD-3-Clause

License: BSD-3-Clause
`;

const POSTINST = `#!/bin/sh
# burg: the system user the units in /lib/systemd/system run as
set -e
if [ "$1" = configure ]; then
  if ! getent group burg >/dev/null; then
    groupadd --system burg
  fi
  if ! getent passwd burg >/dev/null; then
    useradd --system --gid burg --home-dir /srv/borg --no-create-home --shell /usr/sbin/nologin --comment "burg backup server" burg
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
`;

const POSTRM = `#!/bin/sh
# burg: on purge, the system user and group the package created go too (files they own stay)
set -e
if [ "$1" = purge ]; then
  if getent passwd burg >/dev/null; then
    userdel burg >/dev/null 2>&1 || true
  fi
  if getent group burg >/dev/null; then
    groupdel burg >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
`;

// Lintian tags that do not fit a Bun-compiled executable, each with the reason.
const OVERRIDES = `# The program is appended to Bun's runtime; strip(1) would remove it.
burg: unstripped-binary-or-object [usr/bin/burg]
# Bun's runtime is linked statically into the executable, image decoders included; burg does
# not use them, and there is no shared runtime to depend on instead.
burg: embedded-library libjpeg [usr/bin/burg]
`;

/** Builds burg_VERSION_ARCH.deb in `outDir` from `binary`; returns its path. */
export function buildDeb(binary: string, arch: string, outDir: string): string {
  const dist = join(root, "dist");
  const staging = mkdtempSync(join(tmpdir(), "burg-deb-"));
  try {
    put(staging, "usr/bin/burg", readFileSync(binary), 0o755);
    for (const unit of readdirSync(join(root, "contrib/systemd")).sort()) {
      const text = readFileSync(join(root, "contrib/systemd", unit), "utf8").replaceAll("/usr/local/bin/burg", "/usr/bin/burg");
      put(staging, `lib/systemd/system/${unit}`, text);
    }
    for (const page of readdirSync(join(dist, "man")).filter((f) => f.endsWith(".1")).sort()) {
      put(staging, `usr/share/man/man1/${page}.gz`, gz(readFileSync(join(dist, "man", page))));
    }
    put(staging, "usr/share/bash-completion/completions/burg", readFileSync(join(dist, "completion", "burg")));
    put(staging, "usr/share/doc/burg/README.md.gz", gz(readFileSync(join(root, "README.md"))));
    put(staging, "usr/share/doc/burg/copyright", COPYRIGHT + indentLicence(readFileSync(join(root, "LICENSE"), "utf8")));
    const date = buildDate();
    put(
      staging,
      "usr/share/doc/burg/changelog.gz",
      gz(`burg (${VERSION}) unstable; urgency=medium\n\n  * Release ${VERSION}.\n\n -- ${maintainer()}  ${rfc2822(date)}\n`),
    );
    put(staging, "usr/share/lintian/overrides/burg", OVERRIDES);

    const files = walk(staging).sort();
    let installedBytes = 0;
    const sums: string[] = [];
    for (const f of files) {
      const data = readFileSync(join(staging, f));
      installedBytes += data.length;
      sums.push(`${createHash("md5").update(data).digest("hex")}  ${f}`);
    }
    for (const d of dirs(staging)) chmodSync(join(staging, d), 0o755);
    const glibc = glibcNeeded(binary);
    const control = [
      "Package: burg",
      `Version: ${VERSION}`,
      `Architecture: ${arch}`,
      `Maintainer: ${maintainer()}`,
      `Installed-Size: ${Math.ceil(installedBytes / 1024)}`,
      `Depends: ${glibc === null ? "libc6" : `libc6 (>= ${glibc})`}`,
      "Suggests: borgbackup",
      "Section: admin",
      "Priority: optional",
      "Description: server side of BorgBackup 1.x (borg serve, pull backups, time lock)",
      " burg is a drop-in for borg serve: unmodified borg 1.2 and 1.4 clients talk to",
      " it as to borg serve, and it keeps plain borg 1.x repositories that borg can",
      " open at any time. It adds pull-mode backups over one ssh connection, a",
      " UNIX-socket server for systemd, server-side check and compaction, safe",
      " stale-lock recovery, a session journal, and time-locked deletes that a",
      " client cannot destroy before their time is up.",
      "",
    ].join("\n");
    put(staging, "DEBIAN/control", control);
    put(staging, "DEBIAN/md5sums", sums.join("\n") + "\n");
    put(staging, "DEBIAN/postinst", POSTINST, 0o755);
    put(staging, "DEBIAN/postrm", POSTRM, 0o755);
    chmodSync(join(staging, "DEBIAN"), 0o755);
    chmodSync(staging, 0o755);
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, `burg_${VERSION}_${arch}.deb`);
    const r = Bun.spawnSync(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", staging, out], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, SOURCE_DATE_EPOCH: String(Math.floor(date.getTime() / 1000)) },
    });
    if (r.exitCode !== 0) throw new Error(`dpkg-deb --build failed: ${r.stderr.toString().trim()}`);
    return out;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The licence text as a copyright file's License paragraph: indented, blank lines as " .". */
function indentLicence(text: string): string {
  return text.trimEnd().split("\n").map((l) => (l.trim() === "" ? " ." : ` ${l}`)).join("\n") + "\n";
}

function walk(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (relative(base, p) === "DEBIAN") continue;
    if (statSync(p).isDirectory()) out.push(...walk(p, base));
    else out.push(relative(base, p));
  }
  return out;
}

function dirs(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(relative(base, p), ...dirs(p, base));
  }
  return out;
}

if (import.meta.main) {
  const [binary, arch, outDir = join(root, "dist")] = process.argv.slice(2);
  if (!binary || !arch) {
    console.error("usage: bun build/deb.ts BINARY ARCH [OUTDIR]");
    process.exit(2);
  }
  console.log(`built ${buildDeb(resolve(binary), arch, resolve(outDir))}`);
}
