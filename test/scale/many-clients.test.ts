// Scale tier: 8 borg clients at once, each backing up its own tree (400 files, about 12 MB)
// into its own repository: 8 sessions on one `burg socket`, 8 sessions handed over to another
// one by `burg serve --daemon-socket` forced commands, 8 concurrent `burg serve` processes and,
// for reference, 8 concurrent `borg serve` processes, all 32 clients at the same time. Every client succeeds, lists and extracts what it stored, and plain borg checks
// every repository.

import { describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { run } from "../support/env.ts";
import { makeClientTree, makeSides, plainBorgCheck, type Side } from "../support/scale.ts";
import { testScope } from "../support/scope.ts";

const CLIENTS = 8;
const FILES = 400;
const scope = testScope();

async function client(s: Side, k: number, data: string): Promise<{ side: string; client: number; steps: string[] }> {
  const name = `client-${k}`;
  const steps: string[] = [];
  const step = async (label: string, args: string[], cwd?: string) => {
    const r = await s.borg.run(args, { cwd });
    steps.push(r.code === 0 ? `${label}: ok` : `${label}: exit ${r.code}: ${r.stderr.slice(-1500)}`);
    return r;
  };
  await step("init", ["init", "-e", "none", s.url(name)]);
  await step("create 1", ["create", s.url(name, "one"), `c${k}`], data);
  await step("create 2", ["create", s.url(name, "two"), `c${k}`], data);
  const list = await step("list", ["list", "--short", s.url(name)]);
  steps.push(`archives: ${list.stdout.trim().split("\n").join(",")}`);
  const out = join(s.dir, `out-${k}`);
  mkdirSync(out);
  await step("extract", ["extract", s.url(name, "two")], out);
  const diff = run(["diff", "-r", join(data, `c${k}`), join(out, `c${k}`)]);
  steps.push(diff.code === 0 ? "identical" : `differs: ${diff.stdout.slice(0, 500)}`);
  return { side: s.kind, client: k, steps };
}

describe(`${CLIENTS} clients at once`, () => {
  test(`on one burg socket, handed over to another, ${CLIENTS} burg serve and ${CLIENTS} borg serve processes: all succeed`, async () => {
    const data = scope.tempDir("burg-scale-clients-data-");
    for (let k = 0; k < CLIENTS; k++) makeClientTree(join(data, `c${k}`), FILES, k + 1);
    const sides = await makeSides(scope, ["burg socket", "burg serve --daemon-socket", "burg serve", "borg serve"]);
    const runs = sides.flatMap((s) => Array.from({ length: CLIENTS }, (_, k) => client(s, k, data)));
    const results = await Promise.all(runs);
    const ok = ["init: ok", "create 1: ok", "create 2: ok", "list: ok", "archives: one,two", "extract: ok", "identical"];
    expect(results).toEqual(sides.flatMap((s) => Array.from({ length: CLIENTS }, (_, k) => ({ side: s.kind, client: k, steps: ok }))));
    for (const s of sides) for (let k = 0; k < CLIENTS; k++) await plainBorgCheck(s, `client-${k}`);
  }, 20 * 60_000);
});
