// What a serve session may do: which repository paths a client may open (borg's
// --restrict-to-path / --restrict-to-repository with its path rules), which operations its
// --permissions allow (enforced by wrapping the repository handle), and which options a
// client may choose itself when sshd runs a forced command (SSH_ORIGINAL_COMMAND).
//
// Permission modes (borg 2's names, enforced here for borg 1.x clients):
// - read-only: reads only; every write fails with PermissionDenied and changes nothing, and a
//   commit (which would write a new COMMIT segment) is skipped since nothing can have changed;
//   one asking for compaction (`borg compact`) is refused. Two writes that change nothing are let through: re-putting an object unchanged (borg
//   with-lock rewrites the manifest as it is) and nonce reservations, which `borg check`
//   makes even without --repair because it encrypts rebuilt metadata it then throws away; they
//   are kept in the session's memory and never reach the disk.
// - no-delete: objects committed before this session are never deleted or overwritten. The
//   manifest (id 32 zero bytes, rewritten by every borg create) may be overwritten, but commits
//   never compact, so every superseded manifest PUT stays in the segments and can be restored.
//   Deleting an object this session wrote is allowed (borg create's checkpoints delete their
//   own checkpoint archive); the delete is logged, and its PUT stays on disk too.
// - write-only: no-delete, and reading stored objects back fails: only the manifest and the
//   key can be read, which borg create needs. Object ids (list/scan) stay visible, so
//   `borg create --no-cache-sync` works from a client without a chunks cache.
// --append-only is separate and keeps borg's meaning (see README).

import { lstatSync, readlinkSync } from "node:fs";
import { isAbsolute } from "node:path";
import { BurgError, PathNotAllowed, PermissionDenied, UsageError } from "../errors.ts";
import { bytesEqual, toHex } from "../util/hex.ts";
import type { LevelName, Logger } from "../util/log.ts";
import type { CheckOptions, CommitOptions, RepositoryActivity, RepositoryHandle } from "./backend.ts";

export type PermissionMode = "all" | "no-delete" | "write-only" | "read-only";
export const PERMISSION_MODES: readonly PermissionMode[] = ["all", "no-delete", "write-only", "read-only"];

export function isPermissionMode(s: string): s is PermissionMode {
  return (PERMISSION_MODES as readonly string[]).includes(s);
}

/** --permissions wins over BORG_REPO_PERMISSIONS, which wins over the default "all" (borg 2). */
export function resolvePermissions(option: string | undefined, env: string | undefined): PermissionMode {
  const value = option ?? (env === undefined || env === "" ? "all" : env);
  if (!isPermissionMode(value)) {
    const source = option !== undefined ? "--permissions" : "BORG_REPO_PERMISSIONS";
    throw new UsageError(`Invalid ${source} value: ${value}, should be one of: ${PERMISSION_MODES.join(", ")}.`);
  }
  return value;
}

/** The operator's decisions for every session of one `burg serve` (or socket) instance. */
export interface ServePolicy {
  restrictToPaths: string[];
  restrictToRepositories: string[];
  appendOnly: boolean;
  /** Bytes, or null to use the repository's own setting. */
  storageQuota: number | null;
  permissions: PermissionMode;
  /** Seconds of the time lock (`--keep-deleted`), null for none. */
  keepDeleted?: number | null;
}

// ---------------------------------------------------------------------------------------------
// Repository paths

export interface PathContext {
  /** borg's get_base_dir(): BORG_BASE_DIR, else HOME, else the user's home. */
  baseDir: string;
  /** HOME for a bare "~" (python's expanduser). */
  home: string;
  cwd: string;
  /** Home directory of a named user, or null when there is no such user. */
  userHome(name: string): string | null;
}

/**
 * The absolute, symlink-free path a client's repository path names, by borg's rules
 * (RepositoryServer._resolve_path): "/~/x" and "~/x" are below the base dir, "/~user/x" and
 * "~user/x" below that user's home, "/./x" relative to the server's cwd, then realpath.
 */
export function resolveRepositoryPath(path: string, ctx: PathContext): string {
  let p = path;
  if (p.startsWith("/~/")) p = pyJoin(ctx.baseDir, p.slice(3));
  else if (p.startsWith("~/")) p = pyJoin(ctx.baseDir, p.slice(2));
  else if (p.startsWith("/~")) p = expandUser(p.slice(1), ctx);
  else if (p.startsWith("~")) p = expandUser(p, ctx);
  else if (p.startsWith("/./")) p = p.slice(3);
  return realpath(p, ctx.cwd);
}

/** python's os.path.join of two parts: no normalization ("a/link/.." stays for realpath). */
function pyJoin(a: string, b: string): string {
  if (b.startsWith("/")) return b;
  if (a === "" || a.endsWith("/")) return a + b;
  return `${a}/${b}`;
}

/** python's os.path.expanduser for a path starting with "~". */
function expandUser(p: string, ctx: PathContext): string {
  const slash = p.indexOf("/");
  const name = slash < 0 ? p.slice(1) : p.slice(1, slash);
  const rest = slash < 0 ? "" : p.slice(slash);
  const home = name === "" ? ctx.home : ctx.userHome(name);
  if (home === null) return p; // unknown user: python leaves the path as it is
  const trimmed = home.replace(/\/+$/, "");
  return (trimmed + rest) || "/";
}

/**
 * python's os.path.realpath (non-strict): resolves every symlink that exists along the path,
 * keeps components that do not exist as they are, and gives up on symlink loops by returning
 * the rest unresolved.
 */
export function realpath(path: string, cwd: string): string {
  const abs = isAbsolute(path) ? path : pyJoin(cwd, path);
  const seen = new Map<string, string | null>();
  const [resolved] = joinRealpath("/", abs, seen);
  return normalizeAbs(resolved);
}

function joinRealpath(base: string, rest: string, seen: Map<string, string | null>): [string, boolean] {
  let path = base;
  if (rest.startsWith("/")) {
    path = "/";
    rest = rest.replace(/^\/+/, "");
  }
  const parts = rest.split("/");
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    if (name === "" || name === ".") continue;
    if (name === "..") {
      path = parentOf(path);
      continue;
    }
    const next = path === "/" ? `/${name}` : `${path}/${name}`;
    let isLink = false;
    try {
      isLink = lstatSync(next).isSymbolicLink();
    } catch {
      isLink = false;
    }
    if (!isLink) {
      path = next;
      continue;
    }
    const cached = seen.get(next);
    if (cached !== undefined) {
      if (cached !== null) {
        path = cached;
        continue;
      }
      return [joinRest(next, parts.slice(i + 1)), false];
    }
    seen.set(next, null);
    let target: string;
    try {
      target = readlinkSync(next);
    } catch {
      path = next;
      continue;
    }
    const [resolved, ok] = joinRealpath(path, target, seen);
    if (!ok) return [joinRest(resolved, parts.slice(i + 1)), false];
    seen.set(next, resolved);
    path = resolved;
  }
  return [path, true];
}

function parentOf(path: string): string {
  if (path === "/") return "/";
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function joinRest(path: string, rest: string[]): string {
  const r = rest.filter((x) => x !== "").join("/");
  return r === "" ? path : `${path}/${r}`;
}

function normalizeAbs(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/**
 * borg's restriction check: the resolved path (with a trailing slash) must start with one of
 * the --restrict-to-path directories and equal one of the --restrict-to-repository paths
 * (each realpath'ed, with a trailing slash), when those options are given.
 */
export function checkPathAllowed(resolved: string, policy: ServePolicy, cwd: string): void {
  const withSep = resolved.endsWith("/") ? resolved : resolved + "/";
  const sep = (p: string) => {
    const r = realpath(p, cwd);
    return r.endsWith("/") ? r : r + "/";
  };
  if (policy.restrictToPaths.length > 0 && !policy.restrictToPaths.some((p) => withSep.startsWith(sep(p)))) {
    throw new PathNotAllowed(resolved);
  }
  if (policy.restrictToRepositories.length > 0 && !policy.restrictToRepositories.some((p) => sep(p) === withSep)) {
    throw new PathNotAllowed(resolved);
  }
}

// ---------------------------------------------------------------------------------------------
// SSH forced commands

/** python's shlex.split (POSIX mode, no comments). Throws on an unclosed quote or escape. */
export function shlexSplit(s: string): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
    } else if (c === "\\") {
      if (i + 1 >= s.length) throw new Error("No escaped character");
      word += s[i + 1];
      inWord = true;
      i += 2;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw new Error("No closing quotation");
      word += s.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new Error("No closing quotation");
        const d = s[i]!;
        if (d === '"') break;
        if (d === "\\" && i + 1 < s.length && (s[i + 1] === '"' || s[i + 1] === "\\")) {
          word += s[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
      inWord = true;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** What a client's own command line may set when sshd forces the server's command. */
export interface ClientOverrides {
  logLevel: LevelName;
  debugTopics: string[];
  lockWait: number;
}

// borg's common options that take a value, so their value is not mistaken for the subcommand.
const VALUE_OPTIONS = new Set([
  "--lock-wait",
  "--debug-topic",
  "--umask",
  "--remote-path",
  "--rsh",
  "--storage-quota",
  "--restrict-to-path",
  "--restrict-to-repository",
  "--permissions",
  "--upload-ratelimit",
  "--remote-ratelimit",
  "--upload-buffer",
  "--remote-buffer",
  "--debug-profile",
]);

/** borg's log level flags and the level each sets. */
export const LEVEL_FLAGS: Readonly<Record<string, LevelName>> = {
  "--critical": "CRITICAL",
  "--error": "ERROR",
  "--warning": "WARNING",
  "--info": "INFO",
  "-v": "INFO",
  "--verbose": "INFO",
  "--debug": "DEBUG",
};

/**
 * The allowlisted options of the client's command (SSH_ORIGINAL_COMMAND), as borg's
 * Archiver.get_args takes them: only when the client runs `serve` too; leading VAR=value words
 * are dropped, never interpreted; options the client leaves out get borg's defaults (so a
 * forced --debug does not survive a client that asks for nothing). Everything else the client
 * sends is ignored. Returns null when the client's command does not apply.
 */
export function clientOverrides(originalCommand: string): ClientOverrides | null {
  let argv: string[];
  try {
    argv = shlexSplit(originalCommand);
  } catch {
    return null;
  }
  let start = 0;
  while (start < argv.length && argv[start]!.includes("=")) start++;
  argv = argv.slice(start + 1); // drop the program name too
  const result: ClientOverrides = { logLevel: "WARNING", debugTopics: [], lockWait: 1 };
  let subcommand: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (!word.startsWith("-") || word === "-") {
      if (subcommand === null) subcommand = word;
      continue;
    }
    const eq = word.indexOf("=");
    const name = word.startsWith("--") && eq > 0 ? word.slice(0, eq) : word;
    let value: string | undefined = word.startsWith("--") && eq > 0 ? word.slice(eq + 1) : undefined;
    if (value === undefined && VALUE_OPTIONS.has(name)) value = argv[++i];
    const level = LEVEL_FLAGS[name];
    if (level !== undefined) result.logLevel = level;
    else if (name === "--debug-topic" && value !== undefined) result.debugTopics.push(value);
    else if (name === "--lock-wait" && value !== undefined && /^[+-]?\d+$/.test(value.trim())) {
      result.lockWait = parseInt(value, 10);
    }
  }
  return subcommand === "serve" ? result : null;
}

/** A --debug-topic value as borg's client sends it ("borg.debug.repository.compaction") or short. */
export function normalizeDebugTopic(topic: string): string {
  return topic.startsWith("borg.debug.") ? topic.slice("borg.debug.".length) : topic;
}

// ---------------------------------------------------------------------------------------------
// Permissions

/** The manifest's object id: 32 zero bytes (borg's Manifest.MANIFEST_ID). */
export const MANIFEST_ID = new Uint8Array(32);

function isManifest(id: Uint8Array): boolean {
  return bytesEqual(id, MANIFEST_ID);
}

/**
 * A repository handle that enforces a permission mode in front of another one. One instance
 * belongs to one session: it remembers which objects that session wrote (no-delete and
 * write-only let a session delete those).
 */
export class GuardedRepository implements RepositoryHandle {
  /** Ids this session put, as latin1 strings (32 chars each, compact in JS engines). */
  private readonly ownPuts = new Set<string>();
  /** read-only: the nonce reservation the client made in this session (never written). */
  private sessionNonce: number | bigint | null | undefined = undefined;

  constructor(
    private readonly inner: RepositoryHandle,
    readonly mode: PermissionMode,
    private readonly logger: Logger,
  ) {}

  get id(): Uint8Array {
    return this.inner.id;
  }
  get path(): string {
    return this.inner.path;
  }

  private deny(what: string): never {
    throw new PermissionDenied(`Permission denied: ${what} (burg serve --permissions ${this.mode}).`);
  }

  private get protectsData(): boolean {
    return this.mode === "no-delete" || this.mode === "write-only";
  }

  len(): number | Promise<number> {
    return this.inner.len();
  }

  activity(): RepositoryActivity | undefined {
    return this.inner.activity?.();
  }

  check(opts: CheckOptions): boolean | Promise<boolean> {
    if (opts.repair && this.mode !== "all") this.deny("check --repair changes the repository");
    return this.inner.check(opts);
  }

  commit(opts: CommitOptions): void | Promise<void> {
    if (this.mode === "read-only") {
      // `borg compact` asks for nothing but compaction: refuse it rather than pretend.
      if (opts.compact) this.deny("compacting the repository is not allowed");
      // Nothing can have changed (every write was refused); a real commit would still write
      // a new COMMIT segment and index, so it is skipped.
      this.logger.debug("commit skipped: read-only session has nothing to commit");
      return;
    }
    if (this.protectsData && (opts.compact || opts.cleanupCommits)) {
      this.logger.warning(
        `repository not compacted: --permissions ${this.mode} keeps superseded and deleted objects in the segments`,
      );
      return this.inner.commit({ ...opts, compact: false, cleanupCommits: false });
    }
    return this.inner.commit(opts);
  }

  rollback(): void | Promise<void> {
    return this.inner.rollback();
  }

  destroy(): void | Promise<void> {
    if (this.mode !== "all") this.deny("deleting the repository is not allowed");
    return this.inner.destroy();
  }

  get(id: Uint8Array): Uint8Array | Promise<Uint8Array> {
    if (this.mode === "write-only" && !isManifest(id)) this.deny(`reading object ${toHex(id)} is not allowed`);
    return this.inner.get(id);
  }

  list(limit: number | null, marker: Uint8Array | null): Uint8Array[] | Promise<Uint8Array[]> {
    return this.inner.list(limit, marker);
  }

  scan(limit: number | null, marker: Uint8Array | null): Uint8Array[] | Promise<Uint8Array[]> {
    return this.inner.scan(limit, marker);
  }

  async put(id: Uint8Array, data: Uint8Array): Promise<void> {
    if (this.mode === "all") return this.inner.put(id, data);
    const key = idKey(id);
    if (!this.ownPuts.has(key) && (await this.inner.contains(id))) {
      // Re-sending an object unchanged changes nothing (borg with-lock rewrites the manifest
      // as it is; a stale client cache can resend a chunk): skip it, so nothing is superseded.
      const existing = await this.inner.get(id);
      if (bytesEqual(existing, data)) return;
      if (this.mode === "read-only") this.deny("writing is not allowed");
      if (!isManifest(id)) {
        this.logger.warning(`refused overwrite of object ${toHex(id)} (--permissions ${this.mode})`);
        this.deny(`overwriting existing object ${toHex(id)} is not allowed`);
      }
    } else if (this.mode === "read-only") {
      this.deny("writing is not allowed");
    }
    await this.inner.put(id, data);
    if (!isManifest(id)) this.ownPuts.add(key);
  }

  async delete(id: Uint8Array): Promise<void> {
    if (this.mode === "read-only") this.deny("deleting is not allowed");
    if (this.protectsData) {
      const key = idKey(id);
      if (!this.ownPuts.has(key)) {
        this.logger.warning(`refused delete of object ${toHex(id)} (--permissions ${this.mode})`);
        this.deny(`deleting object ${toHex(id)} is not allowed; only objects written in this session can be deleted`);
      }
      await this.inner.delete(id);
      this.ownPuts.delete(key);
      this.logger.info(`deleted object ${toHex(id)} written in this session; its data stays in the segments (--permissions ${this.mode})`);
      return;
    }
    await this.inner.delete(id);
  }

  contains(id: Uint8Array): boolean | Promise<boolean> {
    return this.inner.contains(id);
  }

  async saveKey(keydata: Uint8Array): Promise<void> {
    if (this.mode === "read-only") this.deny("writing the key is not allowed");
    if (this.protectsData) {
      const existing = await this.inner.loadKey();
      if (existing.length > 0) this.deny("replacing the repository key is not allowed");
    }
    await this.inner.saveKey(keydata);
  }

  loadKey(): Uint8Array | Promise<Uint8Array> {
    return this.inner.loadKey();
  }

  getFreeNonce(): number | bigint | null | Promise<number | bigint | null> {
    if (this.sessionNonce !== undefined) return this.sessionNonce;
    return this.inner.getFreeNonce();
  }

  async commitNonceReservation(nextUnreserved: number | bigint, startNonce: number | bigint | null): Promise<void> {
    if (this.mode !== "read-only") return this.inner.commitNonceReservation(nextUnreserved, startNonce);
    // Kept in memory only: whatever the client encrypts in a read-only session is never stored,
    // so the nonces it used need not be reserved on disk (see the top of this file).
    const current = await this.getFreeNonce();
    const same = current === null || startNonce === null ? current === startNonce : BigInt(current) === BigInt(startNonce);
    if (!same) {
      const msg = "nonce space reservation with mismatched previous state";
      throw new BurgError("Exception", msg, [msg], { traceback: true });
    }
    this.sessionNonce = nextUnreserved;
    this.logger.debug("nonce reservation kept in memory (--permissions read-only)");
  }

  /** A restricted client may only clear what dead processes left behind. */
  breakLock(): void | Promise<void> {
    return this.inner.breakLock({ onlyDead: true });
  }

  close(): void | Promise<void> {
    return this.inner.close();
  }
}

function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("latin1");
}
