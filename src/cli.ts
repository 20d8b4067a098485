// The command line as one cac instance: every subcommand's options, usage text and examples.
// `--help` prints it, and the build turns the same instance into the man pages and the bash
// completion (src/docs/), so the three cannot drift apart.

import { cac, type CAC } from "cac";
import { COMMANDS } from "./commands/index.ts";
import { COMMIT, VERSION } from "./version.ts";

/** What burg is, in the words of `burg --help` and burg(1). */
export const SUMMARY =
  "burg talks to unmodified borg 1.2/1.4 clients exactly like `borg serve` and keeps a plain\n" +
  "borg 1.x repository on disk: plain `borg` can open it at any time.";

export const TAGLINE = "the server side of BorgBackup 1.x";

export function buildCli(): CAC {
  const cli = cac("burg");
  for (const command of COMMANDS) command.register(cli);
  cli.help((sections) => {
    sections.splice(0, 1, { body: `burg ${VERSION} (${COMMIT}) - ${TAGLINE}\n\n${SUMMARY}` });
    return sections;
  });
  return cli;
}
