// Command-line entry point: wires the subcommands into cac, and is the only place that maps
// errors to exit codes and calls process.exit.
//
// Exit codes follow borg: 0 success, 1 warning, 2 error (EXIT_* in errors.ts).

import { BurgError, EXIT_ERROR, EXIT_SUCCESS } from "./errors.ts";
import { COMMIT, VERSION } from "./version.ts";
import { log } from "./util/log.ts";
import { buildCli } from "./cli.ts";
import { isMainThread } from "node:worker_threads";
import { socketWorkerMain } from "./commands/socket-worker.ts";
import { setWorkerEntry } from "./util/worker-entry.ts";

export async function main(argv: string[]): Promise<number> {
  const cli = buildCli();

  if (argv[0] === "--version" || argv[0] === "-V") {
    process.stdout.write(`burg ${VERSION} (commit ${COMMIT})\n`);
    return EXIT_SUCCESS;
  }
  let exitCode = EXIT_SUCCESS;
  try {
    const parsed = cli.parse(["burg", "burg", ...argv], { run: false });
    if (parsed.options.help) return EXIT_SUCCESS;
    if (!cli.matchedCommand) {
      if (cli.args.length > 0) {
        process.stderr.write(`burg: unknown command '${cli.args[0]}'; see 'burg --help'.\n`);
        return EXIT_ERROR;
      }
      cli.outputHelp();
      return EXIT_ERROR;
    }
    const result = await cli.runMatchedCommand();
    if (typeof result === "number") exitCode = result;
  } catch (e) {
    exitCode = reportError(e);
  }
  return exitCode;
}

function reportError(e: unknown): number {
  if (e instanceof BurgError) {
    log.json = false;
    log.log("ERROR", e.message);
    return e.exitCode;
  }
  const err = e as Error;
  // cac's own parse errors (unknown option, missing argument) are usage errors.
  if (err && err.name === "CACError") {
    process.stderr.write(`burg: ${err.message}\n`);
    return EXIT_ERROR;
  }
  process.stderr.write(`burg: internal error: ${err?.stack ?? String(e)}\n`);
  return EXIT_ERROR;
}

if (!isMainThread) {
  // a worker thread of `burg socket`, started with this file as its entry point
  socketWorkerMain();
} else if (import.meta.main) {
  setWorkerEntry(import.meta.url);
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
