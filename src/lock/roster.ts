// `lock.roster`: borg's LockRoster (locking.py), the JSON list of shared and exclusive holders.
// Callers hold lock.exclusive while they touch it, as borg's callers do.
//
// Loading drops entries of dead processes of this host (borg's kill_stale_locks, on by default
// in 1.2), judged with burg's records where there are any. burg keeps those records under the
// "burg" key of the same file so they disappear with the roster (break-lock, last release); on
// every save it drops records whose entry is gone, so a record never outlives its entry for long.
// Saves go through a temporary file and rename(2): a crash mid-write cannot leave a truncated
// roster, which borg would read as "nobody holds a shared lock".

import { randomBytes } from "node:crypto";
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { LockFailed } from "../errors.ts";
import { log } from "../util/log.ts";
import {
  EXCLUSIVE,
  ROSTER_RECORDS_KEY,
  SHARED,
  parseRoster,
  pythonJsonDumps,
  rosterEntries,
  rosterRecords,
  uniqueName,
} from "./format.ts";
import type { LockRecord, ProcessId, RosterData, RosterKey } from "./format.ts";
import { hostId, killStaleLocks } from "./host-id.ts";
import { judgeHolder } from "./liveness.ts";
import { Reporter, otherHostHint } from "./exclusive-lock.ts";
import { errnoCode, osErrorText } from "./os-error.ts";

export const ROSTER_KEYS: RosterKey[] = [SHARED, EXCLUSIVE];

/** One roster entry with its record, for break-lock's report. */
export interface RosterHolder {
  key: RosterKey;
  id: ProcessId;
  record: LockRecord | null;
}

function sameId(a: ProcessId, b: ProcessId): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}

export class Roster {
  readonly path: string;
  readonly id: ProcessId;
  readonly record: LockRecord | null;
  readonly reporter: Reporter;

  constructor(path: string, id: ProcessId, record: LockRecord | null, reporter = new Reporter()) {
    this.path = path;
    this.id = id;
    this.record = record;
    this.reporter = reporter;
  }

  /** The roster as it is on disk, without removing anything. */
  read(): RosterData {
    try {
      return parseRoster(readFileSync(this.path, "utf8"));
    } catch (e) {
      if (errnoCode(e) === "ENOENT") return {};
      throw new LockFailed(this.path, osErrorText(e), { cause: e });
    }
  }

  /** Every entry with its record, as on disk. */
  holders(): RosterHolder[] {
    const data = this.read();
    const records = rosterRecords(data);
    const out: RosterHolder[] = [];
    for (const key of ROSTER_KEYS) {
      for (const id of rosterEntries(data, key)) out.push({ key, id, record: records.get(uniqueName(id)) ?? null });
    }
    return out;
  }

  /**
   * borg's load(): the roster with stale entries of this host dropped (not yet saved). Our own
   * entry is never judged. With `reportOtherHosts`, entries of other host IDs are reported once.
   */
  load(reportOtherHosts = false): RosterData {
    const data = this.read();
    const records = rosterRecords(data);
    const ourHost = hostId();
    for (const key of ROSTER_KEYS) {
      if (!(key in data)) continue;
      const kept: ProcessId[] = [];
      for (const id of rosterEntries(data, key)) {
        if (kept.some((k) => sameId(k, id))) continue;
        if (sameId(id, this.id)) {
          kept.push(id);
          continue;
        }
        const verdict = judgeHolder(id, records.get(uniqueName(id)) ?? null, ourHost);
        if (verdict.state === "dead") {
          if (!killStaleLocks()) {
            this.reporter.once(`keep:${key}:${uniqueName(id)}`, () =>
              log.warning(`Found stale ${key} roster lock ${uniqueName(id)}, but not deleting because BORG_HOSTNAME_IS_UNIQUE=no.`),
            );
            kept.push(id);
            continue;
          }
          // Several loads happen per operation and only a save makes the removal stick: say it once.
          this.reporter.once(`stale:${key}:${uniqueName(id)}`, () =>
            log.warning(
              `Removed stale ${key} roster lock for host ${id[0]} pid ${id[1]} thread ${id[2]} (${verdict.reason}).`,
            ),
          );
          continue;
        }
        if (verdict.state === "other-host" && reportOtherHosts) {
          this.reporter.once(`other:${key}:${uniqueName(id)}`, () =>
            log.warning(otherHostHint(this.path, `${key} holder ${uniqueName(id)}`, verdict)),
          );
        }
        kept.push(id);
      }
      data[key] = kept;
    }
    return data;
  }

  save(data: RosterData): void {
    const entries = new Set<string>();
    for (const key of ROSTER_KEYS) for (const id of rosterEntries(data, key)) entries.add(uniqueName(id));
    const records = rosterRecords(data);
    for (const name of [...records.keys()]) if (!entries.has(name)) records.delete(name);
    const out: RosterData = {};
    for (const [k, v] of Object.entries(data)) if (k !== ROSTER_RECORDS_KEY) out[k] = v;
    if (records.size > 0) out[ROSTER_RECORDS_KEY] = Object.fromEntries(records);

    const tmp = `${this.path}.${randomBytes(4).toString("hex")}.tmp`;
    try {
      writeFileSync(tmp, pythonJsonDumps(out), { flag: "wx" });
      renameSync(tmp, this.path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {}
      throw new LockFailed(this.path, osErrorText(e), { cause: e });
    }
  }

  remove(): void {
    try {
      unlinkSync(this.path);
    } catch (e) {
      if (errnoCode(e) !== "ENOENT") throw new LockFailed(this.path, osErrorText(e), { cause: e });
    }
  }

  get(key: RosterKey, reportOtherHosts = false): ProcessId[] {
    return rosterEntries(this.load(reportOtherHosts), key);
  }

  empty(...keys: RosterKey[]): boolean {
    const data = this.load();
    return keys.every((key) => rosterEntries(data, key).length === 0);
  }

  /**
   * Add or remove our entry under `key` and save. Returns false for removing an entry that is not
   * there (borg raises KeyError; the callers here report a broken lock instead).
   */
  modify(key: RosterKey, op: "add" | "remove"): boolean {
    const data = this.load();
    const list = rosterEntries(data, key);
    const at = list.findIndex((e) => sameId(e, this.id));
    let found = true;
    if (op === "add") {
      if (at < 0) list.push(this.id);
    } else if (at >= 0) {
      list.splice(at, 1);
    } else {
      found = false;
    }
    data[key] = list;
    const records = rosterRecords(data);
    const name = uniqueName(this.id);
    if (op === "add" && this.record !== null) records.set(name, this.record);
    data[ROSTER_RECORDS_KEY] = Object.fromEntries(records);
    this.save(data);
    return found;
  }
}
