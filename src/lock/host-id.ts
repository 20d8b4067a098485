// This machine's host ID: the first element of the (host, pid, thread) tuple that names every
// lock holder. borg derives it from the FQDN and a MAC address (platform/base.py hostid), which
// changes under VMs and containers and then strands every lock as "another host's". burg keeps
// it static:
//
//   1. BORG_HOST_ID when set (borg honours the same variable, so both agree on one machine);
//   2. else derived from /etc/machine-id: "<short hostname>@<48-bit number>" (borg's
//      "host@uuid.getnode()" shape), the number an app-specific HMAC of the machine id so the
//      machine id itself never ends up in a repository; never a MAC address;
//   3. else generated once at random and kept in burg's config dir ($BURG_CONFIG_DIR, or
//      $XDG_CONFIG_HOME/burg, or ~/.config/burg), file `host-id`, created atomically.
//
// The derived ID (2) is recomputed rather than stored so that a home directory shared between
// machines (NFS) cannot hand one machine's ID to another; two machines sharing the ID would
// remove each other's live locks as stale.

import { createHmac, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { homedir, hostname as osHostname } from "node:os";
import { dirname, join } from "node:path";
import { log } from "../util/log.ts";
import type { ProcessId } from "./format.ts";

export const HOST_ID_FILE = "host-id";
export const MACHINE_ID_PATHS = ["/etc/machine-id", "/var/lib/dbus/machine-id"];
const HMAC_LABEL = "burg host id v1";

export type Env = Record<string, string | undefined>;

/** burg's config directory: $BURG_CONFIG_DIR, $XDG_CONFIG_HOME/burg or ~/.config/burg. */
export function configDir(env: Env = process.env): string {
  if (env.BURG_CONFIG_DIR) return env.BURG_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, "burg");
  return join(env.HOME || homedir(), ".config", "burg");
}

/** The short host name, as borg cuts it ("hostname --short"). */
export function shortHostname(): string {
  return osHostname().split(".")[0] || "localhost";
}

export interface HostIdSources {
  env: Env;
  /** Files tried in order for a systemd machine id. */
  machineIdPaths: string[];
  hostname: string;
}

export type HostIdOrigin = "env" | "machine-id" | "stored" | "generated" | "ephemeral";

export interface ResolvedHostId {
  id: string;
  origin: HostIdOrigin;
  /** The host-id file, for origins "stored" and "generated". */
  file: string | null;
}

/** A host ID must be usable inside a file name and a JSON string, on one line. */
export function isValidHostId(id: string): boolean {
  return id.length > 0 && id.length <= 255 && !/[\/\0\r\n]/.test(id);
}

function readMachineId(paths: string[]): string | null {
  for (const p of paths) {
    let text: string;
    try {
      text = readFileSync(p, "utf8").trim().toLowerCase();
    } catch {
      continue;
    }
    // Empty (container images) or "uninitialized" (early boot) files carry no identity.
    if (/^[0-9a-f]{32}$/.test(text) && !/^0+$/.test(text)) return text;
  }
  return null;
}

/** The unique part derived from a machine id: 48 bits of HMAC-SHA256(machine id, label). */
export function deriveFromMachineId(machineId: string): string {
  const mac = createHmac("sha256", Buffer.from(machineId, "hex")).update(HMAC_LABEL).digest();
  return mac.readUIntBE(0, 6).toString();
}

function randomUniquePart(): string {
  return randomBytes(6).readUIntBE(0, 6).toString();
}

/**
 * Create `file` with `content` unless it exists: staged in a temp file, fsynced, then hard-linked
 * into place, so a concurrent process either wins or reads the winner's complete file.
 * Returns the content that is in place afterwards.
 */
function createOnce(file: string, content: string): string {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const fd = openSync(tmp, "wx", 0o644);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    try {
      linkSync(tmp, file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return readFileSync(file, "utf8");
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
      // No hard links on this file system: rename, accepting a last-writer-wins race.
      renameSync(tmp, file);
      return content;
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed
    }
  }
  try {
    const dirFd = openSync(dirname(file), "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  } catch {
    // Directory fsync is not possible everywhere; the file itself is complete already.
  }
  return content;
}

/** Work out the host ID from explicit sources (no caching); see the file comment for the order. */
export function resolveHostId(sources: Partial<HostIdSources> = {}): ResolvedHostId {
  const env = sources.env ?? process.env;
  const fromEnv = env.BORG_HOST_ID;
  if (fromEnv) return { id: fromEnv, origin: "env", file: null };

  const host = sources.hostname ?? shortHostname();
  const machineId = readMachineId(sources.machineIdPaths ?? MACHINE_ID_PATHS);
  if (machineId !== null) return { id: `${host}@${deriveFromMachineId(machineId)}`, origin: "machine-id", file: null };

  const dir = configDir(env);
  const file = join(dir, HOST_ID_FILE);
  try {
    const stored = readFileSync(file, "utf8").trim();
    if (isValidHostId(stored)) return { id: stored, origin: "stored", file };
    log.warning(`Ignoring invalid host ID in ${file}; using a temporary one. Fix or remove that file, or set BORG_HOST_ID.`);
    return { id: `${host}@${randomUniquePart()}`, origin: "ephemeral", file: null };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      log.warning(`Cannot read ${file} (${(e as Error).message}); using a temporary host ID. Set BORG_HOST_ID.`);
      return { id: `${host}@${randomUniquePart()}`, origin: "ephemeral", file: null };
    }
  }

  const fresh = `${host}@${randomUniquePart()}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const inPlace = createOnce(file, fresh + "\n").trim();
    if (isValidHostId(inPlace)) return { id: inPlace, origin: inPlace === fresh ? "generated" : "stored", file };
  } catch (e) {
    log.warning(
      `Cannot store a host ID in ${file} (${(e as Error).message}); using a temporary one, so stale ` +
        "locks of this process will not be recognised as this host's later. Set BORG_HOST_ID.",
    );
  }
  return { id: fresh, origin: "ephemeral", file: null };
}

let cached: ResolvedHostId | null = null;

/** Where this process's host ID came from (resolving it on first use). */
export function hostIdInfo(): ResolvedHostId {
  if (cached === null) cached = resolveHostId();
  return cached;
}

/** This machine's host ID, resolved once per process. */
export function hostId(): string {
  return hostIdInfo().id;
}

/** Forget the cached host ID (tests that change BORG_HOST_ID). */
export function resetHostIdCache(): void {
  cached = null;
}

/**
 * This process's (host id, pid, thread id) tuple; the thread id is always 0, as in borg 1.2:
 * borg never takes a holder with another thread id for stale. `burg socket`'s worker threads
 * therefore hold their locks through the main thread (lock.ts, remote holders).
 */
export function processId(): ProcessId {
  return [hostId(), process.pid, 0];
}

/**
 * Whether stale locks of this host ID are removed automatically: yes unless
 * BORG_HOSTNAME_IS_UNIQUE says no (borg 1.1's opt-in became the default in 1.2; the opt-out stays
 * for hosts that share one host ID by mistake).
 */
export function killStaleLocks(env: Env = process.env): boolean {
  const v = env.BORG_HOSTNAME_IS_UNIQUE;
  return v === undefined || !/^(n|no|0|false|off)$/i.test(v.trim());
}
