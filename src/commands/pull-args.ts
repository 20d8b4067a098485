// The command line of `burg pull` (pure; unit-tested): burg's options, ssh's options, the
// destination, and after "--" borg's command. Also the borgmatic mode, where borg's arguments
// are all there is on the command line and burg's settings come from BURG_PULL_* variables.
//
// Values are read from the raw words (see serve-options.ts for why cac is not trusted with
// them). ssh's short options take their value attached or as the next word (-p2222, -p 2222,
// -oBatchMode=no), as ssh does.

import { readFileSync } from "node:fs";
import { UsageError } from "../errors.ts";
import { shlexSplit } from "../rpc/policy.ts";
import { BRIDGES, isBridge, type Bridge } from "../ssh/remote-script.ts";
import type { SshTarget } from "../ssh/argv.ts";
import { serveOptionsFromArgv, type Env } from "./serve-options.ts";
import type { ServeCliOptions } from "./serve.ts";

export interface PullArgs {
  repo: string;
  borgArgs: string[];
  target: SshTarget;
  sshProgram: string;
  remoteBorg: string;
  remoteBurg: string;
  remoteCwd: string | null;
  remoteEnv: Array<[string, string]>;
  bridges: Bridge[];
  sudo: boolean;
  serve: ServeCliOptions;
  shutdownTimeout: string | undefined;
}

/** burg pull's long options that take a value. */
const VALUE_OPTIONS = new Set([
  "--repo",
  "--remote-borg",
  "--remote-burg",
  "--remote-cwd",
  "--remote-env",
  "--bridge",
  "--ssh",
  "--shutdown-timeout",
  // serve's
  "--permissions",
  "--restrict-to-path",
  "--restrict-to-repository",
  "--storage-quota",
  "--keep-deleted",
  "--umask",
  "--lock-wait",
  "--debug-topic",
  "--client-name",
  "--alert-command",
  "--alert-delete-share",
  "--alert-manifest-shrink",
]);

const FLAGS = new Set(["--sudo", "--append-only", "--critical", "--error", "--warning", "--info", "-v", "--verbose", "--debug"]);

/** ssh's options that burg pull passes on. */
const SSH_OPTIONS = new Set(["-o", "-p", "-i", "-F", "-J"]);

export function parsePullArgv(argv: readonly string[]): PullArgs {
  const dashdash = argv.indexOf("--");
  if (dashdash < 0) {
    throw new UsageError("burg pull needs the borg command after '--', e.g. burg pull --repo /srv/backup/vps root@vps -- create ::'{now}' /etc");
  }
  const own = argv.slice(0, dashdash);
  const borgArgs = argv.slice(dashdash + 1);
  if (borgArgs.length === 0) throw new UsageError("burg pull: no borg command after '--'");
  const values = new Map<string, string[]>();
  const flags = new Set<string>();
  const target: SshTarget = { destination: "", identities: [], options: [] };
  const positionals: string[] = [];
  for (let i = 0; i < own.length; i++) {
    const word = own[i]!;
    if (!word.startsWith("-") || word === "-") {
      positionals.push(word);
      continue;
    }
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      const name = eq > 0 ? word.slice(0, eq) : word;
      if (FLAGS.has(name)) {
        if (eq > 0) throw new UsageError(`option ${name} takes no value`);
        flags.add(name);
        continue;
      }
      if (!VALUE_OPTIONS.has(name)) throw new UsageError(`unknown option ${name} (see burg pull --help)`);
      const value = eq > 0 ? word.slice(eq + 1) : own[++i];
      if (value === undefined) throw new UsageError(`option ${name} needs a value`);
      values.set(name, [...(values.get(name) ?? []), value]);
      continue;
    }
    const short = word.slice(0, 2);
    if (FLAGS.has(short) && word.length === 2) {
      flags.add(short);
      continue;
    }
    if (!SSH_OPTIONS.has(short)) throw new UsageError(`unknown option ${word} (see burg pull --help)`);
    const value = word.length > 2 ? word.slice(2) : own[++i];
    if (value === undefined) throw new UsageError(`option ${short} needs a value`);
    switch (short) {
      case "-o":
        target.options.push(value);
        break;
      case "-p":
        if (!/^[0-9]+$/.test(value)) throw new UsageError(`-p needs a port number, not '${value}'`);
        target.port = value;
        break;
      case "-i":
        target.identities.push(value);
        break;
      case "-F":
        target.configFile = value;
        break;
      case "-J":
        target.jump = value;
        break;
    }
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "burg pull needs the client to back up: [user@]host before '--'"
        : `burg pull takes one client, got: ${positionals.join(" ")}`,
    );
  }
  target.destination = positionals[0]!;
  if (target.destination.startsWith("-")) throw new UsageError(`not a valid ssh destination: '${target.destination}'`);
  const last = (name: string) => values.get(name)?.at(-1);
  const repo = last("--repo");
  if (repo === undefined || repo === "") throw new UsageError("burg pull needs --repo PATH (the repository on this machine)");
  const remoteEnv: Array<[string, string]> = (values.get("--remote-env") ?? []).map((kv) => {
    const eq = kv.indexOf("=");
    if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(kv.slice(0, eq))) {
      throw new UsageError(`--remote-env needs NAME=VALUE, got '${kv}'`);
    }
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  });
  const bridgeText = last("--bridge") ?? "auto";
  let bridges: Bridge[];
  if (bridgeText === "auto") bridges = [...BRIDGES];
  else {
    bridges = bridgeText.split(",").map((b) => {
      if (!isBridge(b)) throw new UsageError(`--bridge must be auto or a list of ${BRIDGES.join(", ")}; got '${b}'`);
      return b;
    });
  }
  return {
    repo,
    borgArgs,
    target,
    sshProgram: last("--ssh") ?? "ssh",
    remoteBorg: last("--remote-borg") ?? "borg",
    remoteBurg: last("--remote-burg") ?? "burg",
    remoteCwd: last("--remote-cwd") ?? null,
    remoteEnv,
    bridges,
    sudo: flags.has("--sudo"),
    serve: serveOptionsFromArgv(own),
    shutdownTimeout: last("--shutdown-timeout"),
  };
}

// ---------------------------------------------------------------------------------------------
// borgmatic

/**
 * The words of `burg pull` for borgmatic mode: borgmatic runs local_path with borg's arguments
 * only, so the client and the repository come from BURG_PULL_HOST and BURG_PULL_REPO, and any
 * other burg pull options (ssh options, --permissions, ...) from BURG_PULL_OPTIONS (split like a
 * shell would). borg's arguments are rewritten by rewriteBorgmaticArgs.
 */
export function borgmaticArgv(env: Env, borgArgs: readonly string[], readLocal: (path: string) => string | null): string[] {
  const host = env.BURG_PULL_HOST;
  const repo = env.BURG_PULL_REPO;
  if (!host) throw new UsageError("burg pull --borgmatic needs BURG_PULL_HOST (the client, [user@]host)");
  if (!repo) throw new UsageError("burg pull --borgmatic needs BURG_PULL_REPO (the repository path on this machine)");
  let extra: string[] = [];
  if (env.BURG_PULL_OPTIONS) {
    try {
      extra = shlexSplit(env.BURG_PULL_OPTIONS);
    } catch (e) {
      throw new UsageError(`BURG_PULL_OPTIONS cannot be split into words: ${(e as Error).message}`);
    }
  }
  return [...extra, "--repo", repo, host, "--", ...rewriteBorgmaticArgs(borgArgs, repo, readLocal)];
}

/** The repository as the client's borg names it: the BORG_REPO burg pull sets there. */
export function pullRepoUrl(repoAbs: string): string {
  return `ssh://burg-pull${repoAbs.startsWith("/") ? "" : "/"}${repoAbs}`;
}

/**
 * borg's arguments as borgmatic passes them, made to work on the client:
 * - the repository (BURG_PULL_REPO, as in borgmatic's `repositories`) becomes "::" forms that
 *   refer to BORG_REPO: "REPO" is dropped, "REPO::ARCHIVE" becomes "::ARCHIVE";
 * - --exclude-from FILE and --patterns-from FILE name temporary files borgmatic wrote on this
 *   machine: their lines are passed inline as --exclude / --pattern (comments and blank lines
 *   dropped), since the client cannot read them.
 */
export function rewriteBorgmaticArgs(args: readonly string[], repo: string, readLocal: (path: string) => string | null): string[] {
  const repoForms = new Set([repo, repo.replace(/\/+$/, ""), repo.replace(/\/+$/, "") + "/"]);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const inline = (flag: "--exclude-from" | "--patterns-from", file: string | undefined): boolean => {
      if (file === undefined) return false;
      const text = readLocal(file);
      if (text === null) return false;
      const each = flag === "--exclude-from" ? "--exclude" : "--pattern";
      for (const line of text.split(/\r?\n/)) {
        const t = line.trim();
        if (t === "" || t.startsWith("#")) continue;
        out.push(`${each}=${line.replace(/^\s+/, "").replace(/\s+$/, "")}`);
      }
      return true;
    };
    if (a === "--exclude-from" || a === "--patterns-from") {
      if (inline(a, args[i + 1])) {
        i++;
        continue;
      }
    } else if (a.startsWith("--exclude-from=") || a.startsWith("--patterns-from=")) {
      const eq = a.indexOf("=");
      if (inline(a.slice(0, eq) as "--exclude-from" | "--patterns-from", a.slice(eq + 1))) continue;
    }
    if (repoForms.has(a)) continue;
    const sep = a.indexOf("::");
    if (sep > 0 && repoForms.has(a.slice(0, sep))) {
      out.push(a.slice(sep));
      continue;
    }
    out.push(a);
  }
  return out;
}

/** Read a local file for rewriteBorgmaticArgs (null when it cannot be read). */
export function readLocalFile(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}
