// `burg restore-manifest`: list the manifest versions still present in a repository's segment
// files, and make an earlier one current again.
//
// The manifest (object id of 32 zero bytes) lists the archives; every borg create rewrites it.
// `burg serve --permissions no-delete` (and write-only) lets clients rewrite it but never
// compacts, so every earlier version stays in the segments: if a compromised client writes a
// manifest that hides archives, the operator restores the last good one here. The archives'
// objects are all still there (no-delete refuses their deletion).
//
// burg cannot decrypt manifests (it has no key), so versions are shown by position, place in
// the segments, time of their segment file and a digest that makes identical versions visible.

import type { CAC } from "cac";
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { resolve } from "node:path";
import { EXIT_SUCCESS, UsageError } from "../errors.ts";
import { TAG_PUT } from "../repository/format.ts";
import { openRepository, type Repository } from "../repository/repository.ts";
import { MANIFEST_ID } from "../rpc/policy.ts";
import { bytesEqual } from "../util/hex.ts";

export interface ManifestVersion {
  /** 1 = the oldest version still on disk. */
  number: number;
  segment: number;
  offset: number;
  size: number;
  /** sha256 of the stored (encrypted) manifest, hex. */
  digest: string;
  /** When its segment file was last written. */
  written: Date;
  current: boolean;
}

/** Every committed manifest PUT in segment order (oldest first); the last one is current. */
export function manifestVersions(repo: Repository, withData?: number): { versions: ManifestVersion[]; data: Uint8Array | null } {
  const io = repo.io;
  if (io === null) throw new Error("repository is not open");
  const lastCommitted = io.segmentsTransactionId();
  const versions: ManifestVersion[] = [];
  let data: Uint8Array | null = null;
  if (lastCommitted === null) return { versions, data };
  for (const segment of io.listSegments()) {
    if (segment > lastCommitted) break; // later segments belong to no committed transaction
    const written = statSync(io.segmentFilename(segment)).mtime;
    for (const entry of io.iterObjects(segment, { includeData: true })) {
      if (entry.tag !== TAG_PUT || entry.key === null || !bytesEqual(entry.key, MANIFEST_ID)) continue;
      const bytes = entry.data!;
      const number = versions.length + 1;
      versions.push({
        number,
        segment,
        offset: entry.offset,
        size: bytes.length,
        digest: createHash("sha256").update(bytes).digest("hex"),
        written,
        current: false,
      });
      if (number === withData) data = bytes.slice();
    }
  }
  if (versions.length > 0) versions[versions.length - 1]!.current = true;
  return { versions, data };
}

export interface RestoreManifestOptions {
  repository: string;
  /** Version number to restore; null lists the versions. */
  version: number | null;
  lockWait: number;
}

export interface RestoreManifestIO {
  stdout(text: string): void;
}

export async function runRestoreManifest(options: RestoreManifestOptions, io: RestoreManifestIO): Promise<number> {
  const repo = (await openRepository(resolve(options.repository), {
    create: false,
    exclusive: true,
    lockWait: options.lockWait,
    lock: true,
    appendOnly: false,
    storageQuota: null,
    makeParentDirs: false,
  })) as Repository;
  try {
    const { versions, data } = manifestVersions(repo, options.version ?? undefined);
    if (options.version === null) {
      io.stdout("version  segment  offset      size  written                   sha256\n");
      for (const v of versions) {
        io.stdout(
          `${String(v.number).padStart(7)}  ${String(v.segment).padStart(7)}  ${String(v.offset).padStart(6)}  ` +
            `${String(v.size).padStart(8)}  ${v.written.toISOString()}  ${v.digest.slice(0, 16)}` +
            `${v.current ? "  (current)" : ""}\n`,
        );
      }
      return EXIT_SUCCESS;
    }
    if (data === null) {
      throw new UsageError(`no manifest version ${options.version}: the repository keeps versions 1 to ${versions.length}`);
    }
    if (versions[versions.length - 1]!.number === options.version) {
      io.stdout(`manifest version ${options.version} is already the current one\n`);
      return EXIT_SUCCESS;
    }
    await repo.put(MANIFEST_ID, data);
    await repo.commit({ compact: false, threshold: 0.1, cleanupCommits: false });
    io.stdout(
      `restored manifest version ${options.version} of ${versions.length}.\n` +
        "Clients that saw a newer manifest refuse an older one (\"Cache, or information obtained from the\n" +
        "security directory is newer than repository\"): on each of them, remove\n" +
        `  ~/.config/borg/security/${repo.idStr}/manifest-timestamp and ~/.cache/borg/${repo.idStr}\n`,
    );
    return EXIT_SUCCESS;
  } finally {
    repo.close();
  }
}

export function register(cli: CAC): void {
  cli
    .command("restore-manifest <repository>", "List the manifest versions kept in a repository, or restore one")
    .usage(
      "restore-manifest REPOSITORY [--restore N]\n\n" +
        "Without --restore: lists every manifest version still in the segment files, oldest first\n" +
        "(borg create rewrites the manifest; `burg serve --permissions no-delete` never compacts, so\n" +
        "earlier versions stay). With --restore N: makes version N the current manifest again, in a\n" +
        "new transaction (nothing is deleted; the versions after it stay listed).\n\n" +
        "Exit codes: 0 success, 2 error.",
    )
    .option("--restore <n>", "make manifest version N (from the list) the current one again")
    .option("--lock-wait <seconds>", "wait at most SECONDS for the repository lock (default: 1)")
    .action(function (this: CAC, repository: string) {
      const raw = this.rawArgs;
      const value = (name: string): string | undefined => {
        let v: string | undefined;
        raw.forEach((w, i) => {
          if (w === name) v = raw[i + 1];
          else if (w.startsWith(`${name}=`)) v = w.slice(name.length + 1);
        });
        return v;
      };
      const versionText = value("--restore");
      if (versionText !== undefined && !/^\d+$/.test(versionText)) {
        throw new UsageError(`argument --restore: invalid int value: '${versionText}'`);
      }
      const lockWaitText = value("--lock-wait") ?? "1";
      if (!/^\d+$/.test(lockWaitText)) throw new UsageError(`argument --lock-wait: invalid int value: '${lockWaitText}'`);
      return runRestoreManifest(
        {
          repository: String(repository),
          version: versionText === undefined ? null : parseInt(versionText, 10),
          lockWait: parseInt(lockWaitText, 10),
        },
        { stdout: (t) => process.stdout.write(t) },
      );
    });
}
