// Writes the man pages (dist/man/*.1) and the bash completion (dist/completion/burg) from the
// command line itself (src/cli.ts, src/docs/), so they say what --help says. The pages carry
// the date of the commit (or SOURCE_DATE_EPOCH), so a build of one commit is reproducible.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCli } from "../src/cli.ts";
import { bashCompletion } from "../src/docs/completion.ts";
import { manPages } from "../src/docs/man.ts";
import { VERSION } from "../src/version.ts";

function buildDate(root: string): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000).toISOString().slice(0, 10);
  const r = Bun.spawnSync(["git", "-C", root, "log", "-1", "--format=%cs"], { stdout: "pipe", stderr: "ignore" });
  const date = r.stdout.toString().trim();
  return r.exitCode === 0 && /^\d{4}-\d\d-\d\d$/.test(date) ? date : new Date().toISOString().slice(0, 10);
}

/** Writes dist/man and dist/completion under `dist`; returns the man page files. */
export function writeDocs(root: string, dist: string): string[] {
  const cli = buildCli();
  const manDir = join(dist, "man");
  rmSync(manDir, { recursive: true, force: true });
  mkdirSync(manDir, { recursive: true });
  const files: string[] = [];
  for (const page of manPages(cli, { version: VERSION, date: buildDate(root) })) {
    const file = join(manDir, `${page.name}.1`);
    writeFileSync(file, page.text);
    files.push(file);
  }
  mkdirSync(join(dist, "completion"), { recursive: true });
  writeFileSync(join(dist, "completion", "burg"), bashCompletion(cli));
  return files;
}
