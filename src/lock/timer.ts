// borg's TimeoutTimer (locking.py): a deadline that may be "never", plus the sleep between two
// attempts. Keeping borg's intervals means a borg process and burg poll a contended lock at the
// same pace: by default a tenth of the timeout (at most 60 s), or 1 s when waiting forever.

export class TimeoutTimer {
  readonly timeout: number | null;
  readonly sleepSeconds: number;
  private endMs: number | null = null;

  /**
   * @param timeout seconds, or null to never time out
   * @param sleep seconds between attempts (< 0: do not sleep), or null for borg's default
   */
  constructor(timeout: number | null, sleep: number | null = null) {
    if (timeout !== null && !(timeout >= 0)) throw new RangeError("timeout must be >= 0");
    this.timeout = timeout;
    this.sleepSeconds = sleep ?? (timeout === null ? 1.0 : Math.min(60.0, timeout / 10.0));
  }

  start(): this {
    this.endMs = this.timeout === null ? null : Date.now() + this.timeout * 1000;
    return this;
  }

  timedOut(): boolean {
    return this.endMs !== null && Date.now() >= this.endMs;
  }

  /** Milliseconds until the deadline (Infinity when there is none). */
  remainingMs(): number {
    return this.endMs === null ? Infinity : Math.max(0, this.endMs - Date.now());
  }

  /** True when timed out; otherwise sleeps one interval without blocking the event loop. */
  async timedOutOrSleep(): Promise<boolean> {
    if (this.timedOut()) return true;
    if (this.sleepSeconds >= 0) await Bun.sleep(this.sleepSeconds * 1000);
    return false;
  }

  /** The same, blocking: only for release paths that must stay synchronous. */
  timedOutOrSleepSync(): boolean {
    if (this.timedOut()) return true;
    if (this.sleepSeconds > 0) Bun.sleepSync(this.sleepSeconds * 1000);
    return false;
  }
}
