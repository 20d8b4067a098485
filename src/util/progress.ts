// Progress reporting, in the two shapes burg needs.
//
// PercentSteps is the stepping of borg's ProgressIndicatorPercent (helpers/progress.py): a
// value is emitted only when the percentage reaches the next step, so a serve process sends
// borg clients the same sparse `progress_percent` lines borg serve would.
//
// ProgressDisplay is the human view for burg's own commands on stderr: bytes, items, rate and
// time left. On a terminal it redraws one line in place; otherwise (a log file, --progress
// with stderr redirected) it writes whole lines, less often, so logs stay readable. The clock
// is injectable so the throttling can be tested without waiting.

import { formatFileSize } from "./size.ts";

/** borg's ProgressIndicatorPercent.progress(): which calls produce output. */
export class PercentSteps {
  private triggerAt: number;
  constructor(
    readonly total: number,
    readonly step: number,
    start = 0,
  ) {
    this.triggerAt = start;
  }

  /** The percentage to show for item `current` (0-based), or null when no step was reached. */
  next(current: number): number | null {
    if (this.total <= 0) return null;
    const pct = (current * 100) / this.total;
    if (pct < this.triggerAt) return null;
    this.triggerAt += this.step;
    return pct;
  }
}

export interface ProgressState {
  bytesDone: number;
  bytesTotal: number;
  itemsDone: number;
  itemsTotal: number;
}

export interface ProgressSink {
  write(text: string): void;
  /** Redraw in place (a terminal) rather than write whole lines. */
  isTTY: boolean;
  /** Terminal width, when known. */
  columns?: number;
}

/** 0:07, 1:02:03 */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/**
 * One progress line, e.g.
 * "Checking segments  61.5%  1.23 GB of 2.00 GB  123/200 segments  850.00 MB/s  0:02 left".
 */
export function formatProgress(label: string, itemName: string, state: ProgressState, elapsedSeconds: number): string {
  const pct = state.bytesTotal > 0 ? (state.bytesDone * 100) / state.bytesTotal : state.itemsTotal > 0 ? (state.itemsDone * 100) / state.itemsTotal : 100;
  const parts = [
    `${label} ${pct.toFixed(1).padStart(5)}%`,
    `${formatFileSize(state.bytesDone)} of ${formatFileSize(state.bytesTotal)}`,
    `${state.itemsDone}/${state.itemsTotal} ${itemName}`,
  ];
  if (elapsedSeconds > 0) {
    const rate = state.bytesDone / elapsedSeconds;
    parts.push(`${formatFileSize(rate)}/s`);
    const left = state.bytesTotal - state.bytesDone;
    if (left > 0 && rate > 0) parts.push(`${formatDuration(left / rate)} left`);
    else if (left <= 0) parts.push(`${formatDuration(elapsedSeconds)} total`);
  }
  return parts.join("  ");
}

export interface ProgressDisplayOptions {
  label: string;
  /** What the items are called ("segments"). */
  itemName: string;
  sink: ProgressSink;
  /** Milliseconds; performance.now() by default. */
  now?: () => number;
  /** Least time between redraws on a terminal; whole lines are written 5x less often. */
  intervalMs?: number;
}

export class ProgressDisplay {
  private readonly opts: ProgressDisplayOptions;
  private readonly now: () => number;
  private readonly start: number;
  private last = -Infinity;
  private lastWidth = 0;
  private finished = false;

  constructor(opts: ProgressDisplayOptions) {
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
  }

  private line(state: ProgressState): string {
    const text = formatProgress(this.opts.label, this.opts.itemName, state, (this.now() - this.start) / 1000);
    const cols = this.opts.sink.columns;
    return cols && cols > 1 && text.length >= cols ? text.slice(0, cols - 1) : text;
  }

  private draw(text: string, final: boolean): void {
    const sink = this.opts.sink;
    if (sink.isTTY) {
      // Pad over the remains of a longer previous line rather than relying on escape codes.
      const pad = this.lastWidth > text.length ? " ".repeat(this.lastWidth - text.length) : "";
      this.lastWidth = text.length;
      sink.write("\r" + text + pad + (final ? "\n" : ""));
    } else {
      sink.write(text + "\n");
    }
  }

  /** Show the state if enough time passed since the last update. */
  update(state: ProgressState): void {
    if (this.finished) return;
    const t = this.now();
    const interval = (this.opts.intervalMs ?? 200) * (this.opts.sink.isTTY ? 1 : 5);
    if (t - this.last < interval) return;
    this.last = t;
    this.draw(this.line(state), false);
  }

  /**
   * Wipe the terminal line so another message can be written; the next update redraws it.
   * (Nothing to do for whole-line output.)
   */
  clear(): void {
    if (this.finished || !this.opts.sink.isTTY || this.lastWidth === 0) return;
    this.opts.sink.write("\r" + " ".repeat(this.lastWidth) + "\r");
    this.lastWidth = 0;
    this.last = -Infinity;
  }

  /** Show the final state and end the line. Idempotent. */
  finish(state: ProgressState): void {
    if (this.finished) return;
    this.finished = true;
    this.draw(this.line(state), true);
  }
}
