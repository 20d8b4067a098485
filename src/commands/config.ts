// `burg config`: burg's own settings of a local repository (repository/settings.ts), in the
// shape of `borg config`: `burg config REPO NAME` prints a value, `burg config REPO NAME VALUE`
// sets it, `--delete` removes it, `--list` prints all. One setting so far: keep_deleted, the
// repository's own time lock, which every session that opens the repository gets at least,
// whatever its command line says.

import type { CAC } from "cac";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { EXIT_ERROR, EXIT_SUCCESS, UsageError } from "../errors.ts";
import { readSetting, SETTING_NAMES, writeSetting, type SettingName } from "../repository/settings.ts";
import { parseDuration } from "../util/duration.ts";

export interface ConfigOptions {
  repository: string;
  name: string | undefined;
  value: string | undefined;
  delete: boolean;
  list: boolean;
}

export interface ConfigIO {
  cwd: string;
  stdout(text: string): void;
  stderr(text: string): void;
}

function checkName(name: string): SettingName {
  if (!(SETTING_NAMES as readonly string[]).includes(name)) {
    throw new UsageError(`config: unknown setting '${name}' (known: ${SETTING_NAMES.join(", ")})`);
  }
  return name as SettingName;
}

export function runConfig(o: ConfigOptions, io: ConfigIO): number {
  const path = resolve(io.cwd, o.repository);
  if (!existsSync(join(path, "config"))) {
    io.stderr(`Error: ${path} is not a valid repository. Check repo config.\n`);
    return EXIT_ERROR;
  }
  if (o.list) {
    for (const name of SETTING_NAMES) {
      const v = readSetting(path, name);
      if (v !== undefined) io.stdout(`${name} = ${v}\n`);
    }
    return EXIT_SUCCESS;
  }
  if (o.name === undefined) throw new UsageError("config: give a setting NAME, or --list");
  const name = checkName(o.name);
  if (o.delete) {
    if (o.value !== undefined) throw new UsageError("config: --delete takes no VALUE");
    writeSetting(path, name, null);
    return EXIT_SUCCESS;
  }
  if (o.value === undefined) {
    const v = readSetting(path, name);
    if (v === undefined) {
      io.stderr(`No option '${name}' set for ${path}\n`);
      return EXIT_ERROR;
    }
    io.stdout(`${v}\n`);
    return EXIT_SUCCESS;
  }
  const seconds = parseDuration(o.value);
  if (seconds === null) throw new UsageError(`config: keep_deleted must be a duration (e.g. 30d, 12h, 3600s): '${o.value}'`);
  writeSetting(path, name, String(seconds));
  return EXIT_SUCCESS;
}

export function register(cli: CAC): void {
  cli
    .command("config <repository> [name] [value]", "Get, set or delete burg's settings of a repository (keep_deleted)")
    .usage(
      "config REPOSITORY [NAME [VALUE]] [--delete] [--list]\n\n" +
        "burg's own settings, kept in REPOSITORY/burg/config where no client reaches them.\n\n" +
        "  keep_deleted   the repository's time lock: what any session deletes or overwrites stays\n" +
        "                 recoverable for this long (e.g. 30d), whatever --keep-deleted the serving\n" +
        "                 command has; the longer of the two applies. Stored in seconds.\n\n" +
        "Exit codes: 0 success, 2 error (no such repository, the setting is not set).",
    )
    .option("-d, --delete", "delete the setting")
    .option("-l, --list", "list the settings")
    .example("  burg config /srv/borg/host1 keep_deleted 30d")
    .example("  burg config /srv/borg/host1 keep_deleted")
    .action(function (this: CAC, repository: string, name: string | undefined, value: string | undefined) {
      const raw = this.rawArgs;
      // cac turns numeric-looking words into numbers; take the words as given.
      const argv = process.argv;
      const words = argv.slice(argv.indexOf("config") + 1).filter((w) => !w.startsWith("-"));
      return runConfig(
        {
          repository: String(repository),
          name: name === undefined ? undefined : String(words[1] ?? name),
          value: value === undefined ? undefined : String(words[2] ?? value),
          delete: raw.includes("--delete") || raw.includes("-d"),
          list: raw.includes("--list") || raw.includes("-l"),
        },
        { cwd: process.cwd(), stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
      );
    });
}
