// Cleanup that belongs to one test file. bun runs a top-level afterAll() of a shared module only
// after the first test file that imports it, so temp dirs and processes registered through a
// support module are left behind by every later file in the same `bun test` run. A scope is
// created at the top level of a test file and registers its cleanup there.

import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Killable {
  kill(signal?: number | NodeJS.Signals): void;
  readonly exitCode: number | null;
  readonly signalCode?: NodeJS.Signals | string | null;
}

export class TestScope {
  private readonly dirs: string[] = [];
  private readonly procs = new Set<Killable>();
  private readonly hooks: Array<() => void | Promise<void>> = [];

  /** A fresh temporary directory, removed after this file's tests. */
  tempDir(prefix = "burg-test-"): string {
    const d = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  }

  /** A process to SIGKILL after this file's tests if it is still running. */
  track<T extends Killable>(p: T): T {
    this.procs.add(p);
    return p;
  }

  /** Something else to do at cleanup, before directories are removed. */
  onCleanup(f: () => void | Promise<void>): void {
    this.hooks.push(f);
  }

  async cleanup(): Promise<void> {
    for (const p of this.procs) {
      if (p.exitCode === null && !p.signalCode) {
        try {
          p.kill("SIGKILL");
        } catch {}
      }
    }
    this.procs.clear();
    for (const f of this.hooks.splice(0)) {
      try {
        await f();
      } catch {}
    }
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/** Call at the top level of a test file. */
export function testScope(): TestScope {
  const scope = new TestScope();
  afterAll(() => scope.cleanup());
  return scope;
}
