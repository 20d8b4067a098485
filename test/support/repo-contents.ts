// What is in a borg repository, read with the installed borg's own Python code: the current
// object ids and every PUT entry still present in the segment files (so tests can prove that
// data and superseded manifests were kept), plus a byte snapshot of all files for "nothing
// changed" assertions.

import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { borgPython } from "./borg-python.ts";

export interface RepoContents {
  /** Hex ids of the objects in the current (committed) state. */
  ids: string[];
  /** Every PUT in the segments, superseded or not: [hex id, sha256 of the stored data]. */
  puts: Array<[string, string]>;
}

const SCRIPT = `
import sys, json, hashlib
from borg.logger import setup_logging
from borg.repository import Repository, TAG_PUT
setup_logging(level="error")
r = Repository(sys.argv[1], lock=False)
with r:
    ids = sorted(i.hex() for i in r.list(limit=None))
    puts = []
    for segment, _ in r.io.segment_iterator():
        for tag, key, offset, data in r.io.iter_objects(segment, include_data=True):
            if tag == TAG_PUT:
                puts.append([key.hex(), hashlib.sha256(data).hexdigest()])
print(json.dumps({"ids": ids, "puts": puts}))
`;

export function repoContents(path: string): RepoContents {
  return JSON.parse(borgPython(SCRIPT, [path])) as RepoContents;
}

export const MANIFEST_HEX = "00".repeat(32);

/**
 * Relative path -> sha256 of every file of the repository below `dir`. Lock files are excluded
 * (they come and go), and so is burg's session journal (`burg/`): it records every session,
 * read-only ones too, and is not part of what borg stores.
 */
export function snapshotFiles(dir: string, prefix = ""): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(dir).sort()) {
    if (!prefix && (name.startsWith("lock.") || name === "burg")) continue;
    const p = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    if (statSync(p).isDirectory()) for (const [k, v] of snapshotFiles(p, rel)) out.set(k, v);
    else out.set(rel, createHash("sha256").update(readFileSync(p)).digest("hex"));
  }
  return out;
}

/** Segment files of a repository: [data subdirectory, segment number]. */
function segmentFiles(repo: string): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const d of readdirSync(join(repo, "data"))) {
    for (const f of readdirSync(join(repo, "data", d))) if (/^\d+$/.test(f)) out.push([d, Number(f)]);
  }
  return out;
}

/** Segment files of a repository as "DIR/N" -> size in bytes. */
export function segmentSizes(repo: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [d, n] of segmentFiles(repo)) out.set(`${d}/${n}`, statSync(join(repo, "data", d, String(n))).size);
  return out;
}

/** All segment files' bytes together. */
export function segmentBytes(repo: string): number {
  let total = 0;
  for (const size of segmentSizes(repo).values()) total += size;
  return total;
}

/** The highest segment number in the repository's data directories (-1 without any); cheap enough to poll. */
export function lastSegment(repo: string): number {
  let last = -1;
  for (const [, n] of segmentFiles(repo)) last = Math.max(last, n);
  return last;
}
