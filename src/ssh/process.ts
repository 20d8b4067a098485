// The ssh process of `burg pull`: started with argv.ts's command line, fed the remote script
// (and then whatever burg's own stdin brings, for borg), its stdout going straight to ours, its
// stderr passed through to ours as it arrives (borg's progress lines end in \r, not \n) while
// the last part is kept for outcome.ts to recognise ssh's own failures.
//
// The environment ssh gets has no passphrase variables: ssh has no use for them, and a
// SendEnv BORG_* in someone's ssh_config must not send them anywhere.

import { spawn, type ChildProcess } from "node:child_process";

/** Variables that never go into ssh's environment. */
export const SECRET_VARIABLES = ["BORG_PASSPHRASE", "BORG_PASSCOMMAND", "BORG_PASSPHRASE_FD", "BORG_NEW_PASSPHRASE"];

/** How much of ssh's stderr is kept for recognising failures. */
const STDERR_TAIL_BYTES = 64 * 1024;

export interface SshRunOptions {
  argv: string[];
  env: Record<string, string | undefined>;
  /** Written to ssh's stdin first. */
  preamble: Uint8Array;
  /** Copied to ssh's stdin after the preamble (null: close stdin after the preamble). */
  input: AsyncIterable<Uint8Array> | null;
  /** Receives ssh's stderr as it arrives. */
  stderr(chunk: Uint8Array): void;
}

export interface SshResult {
  /** The exit status, or 128+N when ssh died of signal N. */
  status: number;
  stderrTail: string;
  /** Why ssh could not be started at all (then status is 255). */
  spawnError: string | null;
}

export function sshEnvironment(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && !SECRET_VARIABLES.includes(k)) out[k] = v;
  }
  return out;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };

export class SshProcess {
  private readonly child: ChildProcess;
  private exited = false;
  readonly done: Promise<SshResult>;

  constructor(opts: SshRunOptions) {
    const [cmd, ...args] = opts.argv;
    this.child = spawn(cmd!, args, { env: sshEnvironment(opts.env), stdio: ["pipe", "inherit", "pipe"] });
    let tail = Buffer.alloc(0);
    this.child.stderr!.on("data", (chunk: Buffer) => {
      opts.stderr(chunk);
      tail = Buffer.concat([tail, chunk]);
      if (tail.length > STDERR_TAIL_BYTES) tail = tail.subarray(tail.length - STDERR_TAIL_BYTES);
    });
    const stderrEnded = new Promise<void>((resolve) => this.child.stderr!.on("close", () => resolve()));
    this.done = new Promise<SshResult>((resolve) => {
      let spawnError: Error | null = null;
      this.child.on("error", (e) => {
        spawnError = e;
      });
      this.child.on("close", async (code, signal) => {
        this.exited = true;
        await stderrEnded;
        const failed = spawnError as Error | null;
        if (failed !== null) {
          resolve({ status: 255, stderrTail: tail.toString("utf8"), spawnError: failed.message });
          return;
        }
        const status = code ?? (signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 0) : 255);
        resolve({ status, stderrTail: tail.toString("utf8"), spawnError: null });
      });
    });
    void this.feed(opts.preamble, opts.input);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Signal ssh (ignored once it has exited). */
  kill(signal: NodeJS.Signals): void {
    if (!this.exited) this.child.kill(signal);
  }

  private async feed(preamble: Uint8Array, input: AsyncIterable<Uint8Array> | null): Promise<void> {
    const stdin = this.child.stdin!;
    let broken = false;
    stdin.on("error", () => {
      // ssh is gone or closed its input: whatever we still had is not needed
      broken = true;
    });
    const write = (data: Uint8Array) =>
      new Promise<void>((resolve) => {
        if (broken || this.exited) return resolve();
        if (stdin.write(data)) resolve();
        else {
          const done = () => {
            stdin.off("drain", done);
            stdin.off("close", done);
            resolve();
          };
          stdin.on("drain", done);
          stdin.on("close", done);
        }
      });
    await write(preamble);
    if (input !== null) {
      try {
        for await (const chunk of input) {
          if (broken || this.exited) break;
          await write(chunk);
        }
      } catch {
        // our stdin failed: treat it as its end
      }
    }
    if (!broken && !this.exited) stdin.end();
  }
}
