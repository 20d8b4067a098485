// The list of subcommands main.ts registers. A subcommand is listed here only once it works.

import type { CAC } from "cac";
import * as breakLock from "./break-lock.ts";
import * as check from "./check.ts";
import * as compact from "./compact.ts";
import * as config from "./config.ts";
import * as connect from "./connect.ts";
import * as log from "./log.ts";
import * as pull from "./pull.ts";
import * as restoreManifest from "./restore-manifest.ts";
import * as serve from "./serve.ts";
import * as socket from "./socket.ts";
import * as status from "./status.ts";
import * as undelete from "./undelete.ts";

export interface Command {
  register(cli: CAC): void;
}

export const COMMANDS: Command[] = [serve, socket, connect, pull, check, breakLock, restoreManifest, undelete, compact, config, log, status];
