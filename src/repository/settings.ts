// burg's own settings for one repository, set by the operator with `burg config` and kept in
// `<repo>/burg/config` (INI, section [burg]), out of reach of any client: no RPC call writes
// there, and plain borg never reads it. Today one setting: keep_deleted, the repository's
// time lock in seconds, which every session opening the repository gets at least.

import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isErrno, saveFileAtomic } from "../util/fs.ts";
import { IniConfig } from "./config.ts";
import { BURG_DIR } from "./holds.ts";

const SECTION = "burg";
export const SETTING_NAMES = ["keep_deleted"] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

function settingsPath(repository: string): string {
  return join(repository, BURG_DIR, "config");
}

export function readSettings(repository: string): IniConfig {
  const path = settingsPath(repository);
  try {
    return IniConfig.parse(readFileSync(path, "utf8"), path);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return new IniConfig();
    throw e;
  }
}

export function readSetting(repository: string, name: SettingName): string | undefined {
  return readSettings(repository).get(SECTION, name);
}

/** Set (value given) or remove (null) a setting. */
export function writeSetting(repository: string, name: SettingName, value: string | null): void {
  const c = readSettings(repository);
  if (value === null) c.remove(SECTION, name);
  else c.set(SECTION, name, value);
  try {
    mkdirSync(join(repository, BURG_DIR), { mode: 0o700 });
  } catch (e) {
    if (!isErrno(e, "EEXIST")) throw e;
  }
  saveFileAtomic(settingsPath(repository), c.serialize());
}

/** The repository's own time lock in seconds (0: none). An unreadable value counts as none, with the caller warned. */
export function repositoryKeepDeleted(repository: string, warn: (msg: string) => void): number {
  let text: string | undefined;
  try {
    text = readSetting(repository, "keep_deleted");
  } catch (e) {
    warn(`cannot read ${settingsPath(repository)}: ${(e as Error).message}`);
    return 0;
  }
  if (text === undefined || text.trim() === "") return 0;
  const n = Number(text.trim());
  if (!Number.isFinite(n) || n < 0) {
    warn(`${settingsPath(repository)}: keep_deleted is not a number of seconds: ${text}`);
    return 0;
  }
  return n;
}
