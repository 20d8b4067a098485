// The repository's `config` file: the INI text Python's ConfigParser reads and writes
// (section [repository]: version, segments_per_dir, max_segment_size, append_only,
// storage_quota, additional_free_space, id, key, and last_segment_checked during partial
// checks). Multi-line values (the repokey) use ConfigParser's tab-indented continuation lines.
// Saving follows borg's save_config: the previous config is hard-linked to config.old, the
// new one is written atomically, then config.old is securely erased so old key material does
// not linger.

import { existsSync, linkSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InvalidRepository, InvalidRepositoryConfig } from "../errors.ts";
import { isErrno, saveFileAtomic, secureErase } from "../util/fs.ts";
import { log } from "../util/log.ts";

export class IniConfig {
  private sections = new Map<string, Map<string, string>>();

  static parse(text: string, pathForErrors: string): IniConfig {
    const c = new IniConfig();
    let current: Map<string, string> | null = null;
    let lastKey: string | null = null;
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const raw = lines[i]!;
      if (/^[ \t]/.test(raw) && raw.trim() !== "" && current && lastKey !== null) {
        // continuation line of a multi-line value
        current.set(lastKey, current.get(lastKey)! + "\n" + raw.trim());
        continue;
      }
      const line = raw.trim();
      if (line === "" || line.startsWith("#") || line.startsWith(";")) {
        lastKey = line === "" ? lastKey : null;
        continue;
      }
      const sec = /^\[(.+)\]$/.exec(line);
      if (sec) {
        current = c.sections.get(sec[1]!) ?? new Map();
        c.sections.set(sec[1]!, current);
        lastKey = null;
        continue;
      }
      const m = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(line);
      if (!m || !current) {
        throw new InvalidRepositoryConfig(pathForErrors, `config parse error at line ${i + 1}`);
      }
      lastKey = m[1]!.toLowerCase();
      current.set(lastKey, m[2]!);
    }
    return c;
  }

  hasSection(name: string): boolean {
    return this.sections.has(name);
  }

  get(section: string, key: string): string | undefined {
    return this.sections.get(section)?.get(key.toLowerCase());
  }

  set(section: string, key: string, value: string): void {
    let s = this.sections.get(section);
    if (!s) {
      s = new Map();
      this.sections.set(section, s);
    }
    s.set(key.toLowerCase(), value);
  }

  remove(section: string, key: string): boolean {
    return this.sections.get(section)?.delete(key.toLowerCase()) ?? false;
  }

  /** The text ConfigParser.write produces: "key = value", continuation lines tab-indented. */
  serialize(): string {
    let out = "";
    for (const [name, entries] of this.sections) {
      out += `[${name}]\n`;
      for (const [k, v] of entries) out += `${k} = ${v.replace(/\n/g, "\n\t")}\n`;
      out += "\n";
    }
    return out;
  }
}

export function readConfig(repoPath: string): IniConfig {
  let text: string;
  try {
    text = readFileSync(join(repoPath, "config"), "utf8");
  } catch (e) {
    if (isErrno(e, "ENOENT")) throw new InvalidRepository(repoPath);
    throw e;
  }
  return IniConfig.parse(text, repoPath);
}

/** errno names python raises as PermissionError (borg's test), and a read-only file system. */
const READ_ONLY_CODES = ["EACCES", "EPERM", "EROFS"];

/**
 * Save the config as borg's save_config does. `readOnlyOk` (borg: the repository was opened
 * without a lock, e.g. `check --bypass-lock`) turns a write refused by permissions or a
 * read-only file system into a warning: the config on disk stays as it was.
 */
export function saveConfig(repoPath: string, config: IniConfig, opts: { readOnlyOk?: boolean } = {}): void {
  const configPath = join(repoPath, "config");
  const oldPath = join(repoPath, "config.old");
  const readOnly = (e: unknown, path: string) => readOnlyWriteTolerated(e, path, opts.readOnlyOk ?? false);
  if (existsSync(oldPath)) {
    log.warning("Old config file not securely erased on previous config update");
    secureErase(oldPath);
  }
  if (existsSync(configPath)) {
    try {
      linkSync(configPath, oldPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (["EMLINK", "ENOSYS", "EPERM", "EACCES", "ENOTSUP", "EIO"].includes(code ?? "")) {
        log.warning(
          "Failed to securely erase old repository config file (hardlinks not supported). " +
            "Old repokey data, if any, might persist on physical storage.",
        );
      } else if (readOnly(e, configPath)) return;
      else throw e;
    }
  }
  try {
    saveFileAtomic(configPath, config.serialize());
  } catch (e) {
    if (!readOnly(e, configPath)) throw e;
  }
  if (existsSync(oldPath)) secureErase(oldPath);
}

/**
 * True (after borg's warning) when writing `path` failed for want of permission or on a
 * read-only file system and `ok` says that is acceptable (no lock: borg's `not self.do_lock`).
 */
export function readOnlyWriteTolerated(e: unknown, path: string, ok: boolean): boolean {
  const code = (e as NodeJS.ErrnoException).code ?? "";
  if (!ok || !READ_ONLY_CODES.includes(code)) return false;
  // borg names the file that failed (e.filename): SaveFile's temporary file, where there is one
  const failed = (e as NodeJS.ErrnoException).path ?? path;
  log.warning(`${osStrerror(e)}: Failed writing to '${failed}'. This is expected when working on read-only repositories.`);
  return true;
}

/** The C library's text for an error's errno, as python's e.strerror gives it. */
function osStrerror(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "EACCES") return "Permission denied";
  if (code === "EPERM") return "Operation not permitted";
  if (code === "EROFS") return "Read-only file system";
  return (e as Error).message;
}
