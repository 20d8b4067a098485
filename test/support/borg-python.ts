// Running snippets of the installed borg's own Python code from tests, to produce and check
// fixtures in borg's formats at test run time (hashindex files, integrity data, ...).
//
// The snippet gets its arguments as sys.argv[1:]; whatever it prints on stdout is returned.
// A failing snippet fails the test with its stderr. Like requireBorg(), this never skips.

import { existsSync } from "node:fs";
import { requireBorg } from "./env.ts";

export const BORG_PYTHON = "/usr/bin/python3";

/** Run `script` with the Python that has borg's modules; returns stdout. */
export function borgPython(script: string, args: string[] = []): string {
  requireBorg();
  if (!existsSync(BORG_PYTHON)) {
    throw new Error(
      `this test needs ${BORG_PYTHON} with borg's modules: install borgbackup (apt-get install borgbackup)`,
    );
  }
  const r = Bun.spawnSync([BORG_PYTHON, "-c", script, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8", PYTHONHASHSEED: "0" },
  });
  if (r.exitCode !== 0) {
    throw new Error(`borg python snippet failed (exit ${r.exitCode}):\n${r.stderr.toString()}`);
  }
  return r.stdout.toString();
}

/** The object ids borg itself sees in a repository (its own Repository.list, paged), in its order. */
export function borgObjectIds(repo: string): string[] {
  const out = borgPython(
    `
import sys
from borg.logger import setup_logging
setup_logging(level="warning")
from borg.repository import Repository
ids = []
with Repository(sys.argv[1], exclusive=False) as r:
    marker = None
    while True:
        page = r.list(limit=1000, marker=marker)
        if not page:
            break
        ids.extend(page)
        marker = page[-1]
    assert len(r) == len(ids)
print("\\n".join(i.hex() for i in ids))
`,
    [repo],
  );
  return out.split("\n").filter(Boolean);
}
