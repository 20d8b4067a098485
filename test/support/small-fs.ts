// A small ext4 file system on a loop device, for tests of what happens when the disk is full.
// Made with -m 0 (no blocks reserved for root), so that root, which CI runs as, meets ENOSPC
// where any other user would. Tests that need one skip only where mounting is impossible here
// (not root, or no loop devices) and never in CI.

import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "./env.ts";

export interface SmallFs {
  /** Where it is mounted. */
  dir: string;
  /** Bytes free for an ordinary user. */
  free(): number;
  /** Fill it up completely (until the file system refuses another byte) with files under dir/filler. */
  fill(): void;
  /** Leave about `bytes` free, the rest taken by dir/filler. */
  fillTo(bytes: number): void;
  /** Remove the filler. */
  unfill(): void;
  unmount(): void;
}

/** Why small file systems cannot be mounted here, or null when they can. */
export function smallFsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "mounting a loop file system needs root";
  if (!existsSync("/dev/loop-control")) return "no loop devices (/dev/loop-control missing)";
  if (run(["sh", "-c", "command -v mkfs.ext4 && command -v losetup"]).code !== 0) return "mkfs.ext4 or losetup missing (e2fsprogs, mount)";
  return null;
}

/** True when the tests that need a small file system must run (CI, or mounting works here). */
export function smallFsRequired(): boolean {
  return Boolean(process.env.CI) || smallFsUnavailable() === null;
}

export function mountSmallFs(sizeMiB: number): SmallFs {
  // Not env.ts tempDir(): that is removed at the end of the file, maybe before the unmount.
  const home = mkdtempSync(join(tmpdir(), "burg-smallfs-"));
  const image = join(home, "fs.img");
  const dir = join(home, "mnt");
  mkdirSync(dir);
  const steps: string[][] = [
    ["truncate", "-s", `${sizeMiB}M`, image],
    ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0", image],
    ["mount", "-o", "loop", image, dir],
  ];
  for (const argv of steps) {
    const r = run(argv);
    if (r.code !== 0) throw new Error(`${argv.join(" ")} failed (${r.code}): ${r.stderr}`);
  }
  const filler = join(dir, "filler");
  const free = () => {
    const st = statfsSync(dir);
    return Number(st.bavail) * Number(st.bsize);
  };
  const writeUntilFull = (limit: number) => {
    mkdirSync(filler, { recursive: true });
    const block = new Uint8Array(1 << 20).fill(0x5a);
    let n = readdirSync(filler).length;
    // One file per size class, down to single 1 KiB blocks, each appended to until the limit
    // is reached or the file system says no.
    for (let size = 1 << 20; size >= 1024; size >>= 2) {
      const fd = openSync(join(filler, `f${n++}`), "w");
      try {
        while (free() - size >= limit) writeSync(fd, block, 0, size);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
      } finally {
        closeSync(fd);
      }
    }
    run(["sync", "-f", dir]);
  };
  return {
    dir,
    free,
    fill: () => writeUntilFull(0),
    fillTo: (bytes) => writeUntilFull(bytes),
    unfill: () => {
      rmSync(filler, { recursive: true, force: true });
      run(["sync", "-f", dir]);
    },
    unmount: () => {
      run(["umount", dir]);
      rmSync(home, { recursive: true, force: true });
    },
  };
}
