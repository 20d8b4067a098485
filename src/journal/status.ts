// A repository's status for monitoring: its last commit and last session (from the journal, or
// from the index file's time for a repository only plain borg has written), size, objects,
// segments, what compaction could free (the hints file), free disk space, and the last
// `burg check`. Read without a lock from the last committed index and hints, so it works while
// the repository is in use; `prometheus()` renders it in the text exposition format that
// node_exporter's textfile collector and Prometheus read.

import { closeSync, openSync, readdirSync, readSync, statfsSync, statSync } from "node:fs";
import { join } from "node:path";
import { DoesNotExist } from "../errors.ts";
import { hostId } from "../lock/host-id.ts";
import { HASH_HEADER_SIZE, parseHashHeader } from "../repository/hashindex.ts";
import { readHints } from "../repository/hints.ts";
import { readHolds } from "../repository/holds.ts";
import { latestIndexTransaction } from "../repository/integrity.ts";
import { repositoryKeepDeleted } from "../repository/settings.ts";
import { readJournal } from "./journal.ts";
import { checkRecords, isSuccess, sessionRecords, type SessionRecord } from "./records.ts";

export interface RepositoryStatus {
  repository: string;
  transaction_id: number | null;
  last_commit: { time: string; age_seconds: number; session: string | null } | null;
  last_session: Pick<SessionRecord, "session" | "start" | "end" | "outcome" | "error" | "command"> | null;
  sessions: number;
  size_bytes: number;
  objects: number | null;
  segments: number;
  compactable_bytes: number | null;
  /** Deleted or overwritten data the time lock keeps (null: the holds file is damaged). */
  held: { bytes: number; objects: number; until: string | null } | null;
  /** The repository's own time lock (burg config keep_deleted), seconds. */
  keep_deleted_seconds: number;
  free_bytes: number | null;
  last_check: { time: string; verdict: string; repair: boolean } | null;
}

function segmentFiles(path: string): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  const data = join(path, "data");
  let dirs: string[];
  try {
    dirs = readdirSync(data);
  } catch {
    return { count, bytes };
  }
  for (const d of dirs) {
    if (!/^\d+$/.test(d)) continue;
    let names: string[];
    try {
      names = readdirSync(join(data, d));
    } catch {
      continue;
    }
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      try {
        bytes += statSync(join(data, d, n)).size;
        count++;
      } catch {
        // compacted away meanwhile
      }
    }
  }
  return { count, bytes };
}

function indexEntries(file: string): number | null {
  try {
    const fd = openSync(file, "r");
    try {
      const header = new Uint8Array(HASH_HEADER_SIZE);
      const n = readSync(fd, header, 0, HASH_HEADER_SIZE, 0);
      return parseHashHeader(header.subarray(0, n), statSync(file).size).numEntries;
    } finally {
      closeSync(fd);
    }
  } catch {
    return null;
  }
}

export function repositoryStatus(path: string, now = Date.now()): RepositoryStatus {
  try {
    statSync(join(path, "config"));
  } catch {
    throw new DoesNotExist(path);
  }
  const txid = latestIndexTransaction(path);
  const lines = readJournal(path);
  const records = sessionRecords(lines, hostId());
  let lastCommit: RepositoryStatus["last_commit"] = null;
  for (const l of lines) {
    if (l.event === "commit" && (lastCommit === null || l.time >= lastCommit.time)) {
      lastCommit = { time: l.time, age_seconds: 0, session: l.session };
    }
  }
  if (txid !== null) {
    // A commit by plain borg (or before the journal) is newer than anything journalled.
    try {
      const mtime = statSync(join(path, `index.${txid}`)).mtimeMs;
      if (lastCommit === null || mtime > Date.parse(lastCommit.time) + 1000) {
        lastCommit = { time: new Date(mtime).toISOString(), age_seconds: 0, session: null };
      }
    } catch {
      // compacted away meanwhile
    }
  }
  if (lastCommit !== null) lastCommit.age_seconds = Math.max(0, Math.round((now - Date.parse(lastCommit.time)) / 1000));
  let compactable: number | null = null;
  if (txid !== null) {
    try {
      const hints = readHints(join(path, `hints.${txid}`), null);
      compactable = 0;
      for (const v of hints.compact.values()) compactable += v;
    } catch {
      compactable = null;
    }
  }
  const keepDeleted = repositoryKeepDeleted(path, () => {});
  let held: RepositoryStatus["held"] = null;
  try {
    const h = readHolds(path, txid).summary(now, keepDeleted * 1000);
    held = { bytes: h.bytes, objects: h.records, until: h.until === null ? null : new Date(h.until).toISOString() };
    if (compactable !== null) compactable = Math.max(0, compactable - h.bytes);
  } catch {
    held = null;
  }
  let free: number | null = null;
  try {
    const fs = statfsSync(path);
    free = Number(fs.bavail) * Number(fs.bsize);
  } catch {
    free = null;
  }
  const segs = segmentFiles(path);
  const last = records.at(-1) ?? null;
  const check = checkRecords(lines).at(-1) ?? null;
  return {
    repository: path,
    transaction_id: txid,
    last_commit: lastCommit,
    last_session: last && { session: last.session, start: last.start, end: last.end, outcome: last.outcome, error: last.error, command: last.command },
    sessions: records.length,
    size_bytes: segs.bytes,
    objects: txid === null ? 0 : indexEntries(join(path, `index.${txid}`)),
    segments: segs.count,
    compactable_bytes: compactable,
    held,
    keep_deleted_seconds: keepDeleted,
    free_bytes: free,
    last_check: check && {
      time: check.time,
      verdict: String(check.verdict),
      repair: Boolean(check.repair),
    },
  };
}

/** A label value in the text exposition format. */
function label(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

interface Metric {
  name: string;
  help: string;
  value(s: RepositoryStatus): number | null;
}

const METRICS: Metric[] = [
  { name: "burg_repository_up", help: "1 when the repository could be read", value: () => 1 },
  { name: "burg_last_commit_timestamp_seconds", help: "Time of the last successful commit", value: (s) => (s.last_commit ? Date.parse(s.last_commit.time) / 1000 : null) },
  { name: "burg_last_commit_age_seconds", help: "Seconds since the last successful commit", value: (s) => s.last_commit?.age_seconds ?? null },
  { name: "burg_transaction_id", help: "The last committed transaction id", value: (s) => s.transaction_id },
  { name: "burg_last_session_success", help: "1 when the last session committed or only read, 0 when it failed, was rolled back or is unfinished", value: (s) => (s.last_session === null ? null : isSuccess(s.last_session.outcome) ? 1 : 0) },
  { name: "burg_last_session_timestamp_seconds", help: "Start of the last session", value: (s) => (s.last_session ? Date.parse(s.last_session.start) / 1000 : null) },
  { name: "burg_repository_size_bytes", help: "Bytes in segment files", value: (s) => s.size_bytes },
  { name: "burg_repository_objects", help: "Objects in the last committed index", value: (s) => s.objects },
  { name: "burg_repository_segments", help: "Segment files", value: (s) => s.segments },
  { name: "burg_repository_compactable_bytes", help: "Bytes compaction could free", value: (s) => s.compactable_bytes },
  { name: "burg_held_bytes", help: "Deleted or overwritten data the time lock keeps for burg undelete", value: (s) => s.held?.bytes ?? null },
  { name: "burg_held_until_timestamp_seconds", help: "When the last held data may be compacted away", value: (s) => (s.held?.until ? Date.parse(s.held.until) / 1000 : null) },
  { name: "burg_filesystem_free_bytes", help: "Free bytes on the repository's file system (for unprivileged users)", value: (s) => s.free_bytes },
  { name: "burg_last_check_timestamp_seconds", help: "Time of the last burg check", value: (s) => (s.last_check ? Date.parse(s.last_check.time) / 1000 : null) },
  { name: "burg_last_check_success", help: "1 when the last burg check found no problems (or repaired them)", value: (s) => (s.last_check === null ? null : s.last_check.verdict === "ok" || s.last_check.verdict === "repaired" ? 1 : 0) },
];

/** The text exposition format for these repositories; `failed` ones get burg_repository_up 0. */
export function prometheus(statuses: readonly RepositoryStatus[], failed: readonly string[] = []): string {
  const out: string[] = [];
  for (const m of METRICS) {
    const samples: string[] = [];
    for (const s of statuses) {
      const v = m.value(s);
      if (v !== null && Number.isFinite(v)) samples.push(`${m.name}{repository="${label(s.repository)}"} ${v}`);
    }
    if (m.name === "burg_repository_up") for (const f of failed) samples.push(`${m.name}{repository="${label(f)}"} 0`);
    if (samples.length === 0) continue;
    out.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} gauge`, ...samples);
  }
  const outcome: string[] = [];
  for (const s of statuses) {
    if (s.last_session) outcome.push(`burg_last_session_info{repository="${label(s.repository)}",outcome="${label(s.last_session.outcome)}",command="${label(s.last_session.command)}"} 1`);
  }
  if (outcome.length > 0) out.push("# HELP burg_last_session_info The last session's outcome", "# TYPE burg_last_session_info gauge", ...outcome);
  return out.join("\n") + "\n";
}
