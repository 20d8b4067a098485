// A separate process that holds a repository lock through burg's lock module, for tests that
// need a lock holder other than the test process: a live burg process, or (after SIGKILL) a
// dead one that left its lock behind.
//
//   bun test/support/lock-holder.ts REPO exclusive|shared [TIMEOUT]
//
// Prints "locked" once it holds the lock; on SIGTERM or when stdin closes it releases the lock,
// prints "released" and exits 0. A failure to lock prints the error and exits 2.

import { RepositoryLock, releaseAllLocks } from "../../src/lock/lock.ts";

const [repo, mode, timeoutArg] = process.argv.slice(2);
if (!repo || (mode !== "exclusive" && mode !== "shared")) {
  process.stderr.write("usage: lock-holder.ts REPO exclusive|shared [TIMEOUT]\n");
  process.exit(2);
}

const finish = () => {
  releaseAllLocks();
  process.stdout.write("released\n");
  process.exit(0);
};
process.on("SIGTERM", finish);

try {
  await new RepositoryLock(repo, { exclusive: mode === "exclusive", timeout: timeoutArg ? Number(timeoutArg) : 0 }).acquire();
} catch (e) {
  process.stdout.write(`failed: ${(e as Error).name}: ${(e as Error).message}\n`);
  process.exit(2);
}
process.stdout.write("locked\n");
for await (const _ of process.stdin) {
  // keep holding until stdin closes
}
finish();
