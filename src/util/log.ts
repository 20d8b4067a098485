// Logging to stderr, in the two shapes borg uses.
//
// Text mode is for burg's own commands run by a person ("Warning: …" style lines, as borg
// prints them). JSON mode is what `borg serve` speaks once a client has negotiated: one JSON
// object per line on stderr ({"type": "log_message", …}), which borg 1.1+ clients re-emit as
// "Remote: …" (remote.py handle_remote_line). stdout never carries log output: in serve mode it
// is the protocol stream.

import { writeSync } from "node:fs";

export type LevelName = "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL";

export const LEVELS: Record<LevelName, number> = {
  DEBUG: 10,
  INFO: 20,
  WARNING: 30,
  ERROR: 40,
  CRITICAL: 50,
};

export interface LogSink {
  write(line: string): void;
}

/**
 * Lines go to fd 2 synchronously, so they are out before the reply that follows them (a borg
 * client shows "Remote: ..." lines as they arrive and stops reading stderr at the end); only a
 * non-blocking stderr that is full falls back to the queued stream.
 */
const stderrSink: LogSink = {
  write(line: string) {
    try {
      writeSync(2, line);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") return; // stderr gone: never take the server down
      try {
        process.stderr.write(line);
      } catch {}
    }
  },
};

export class Logger {
  level = LEVELS.WARNING;
  json = false;
  /**
   * `borg serve` before a client negotiated the JSON format: lines look like
   * "$LOG WARNING borg.repository Remote: message", which every borg client understands.
   */
  serveText = false;
  /** Debug topics enabled with --debug-topic (borg.debug.TOPIC loggers); empty = none. */
  topics = new Set<string>();
  sink: LogSink = stderrSink;

  setLevel(name: LevelName): void {
    this.level = LEVELS[name];
  }

  isEnabled(level: LevelName): boolean {
    return LEVELS[level] >= this.level;
  }

  log(level: LevelName, message: string, name = "borg.repository"): void {
    if (LEVELS[level] < this.level) return;
    if (this.json) {
      this.sink.write(
        JSON.stringify({ type: "log_message", time: Date.now() / 1000, message, levelname: level, name }) + "\n",
      );
    } else if (this.serveText) {
      this.sink.write(`$LOG ${level} ${name} Remote: ${message}\n`);
    } else {
      const prefix = level === "WARNING" ? "Warning: " : level === "ERROR" || level === "CRITICAL" ? "Error: " : "";
      this.sink.write(prefix + message + "\n");
    }
  }

  debug(message: string, name?: string): void {
    this.log("DEBUG", message, name);
  }
  info(message: string, name?: string): void {
    this.log("INFO", message, name);
  }
  warning(message: string, name?: string): void {
    this.log("WARNING", message, name);
  }
  error(message: string, name?: string): void {
    this.log("ERROR", message, name);
  }

  /**
   * A debug message of a --debug-topic topic: shown whenever that topic was enabled, whatever the
   * main log level (borg sets the topic's own logger to DEBUG).
   */
  topic(topic: string, message: string): void {
    if (!this.topics.has(topic)) return;
    const level = this.level;
    this.level = LEVELS.DEBUG;
    try {
      this.log("DEBUG", message, `borg.debug.${topic}`);
    } finally {
      this.level = level;
    }
  }

  /** A debug line that belongs to a topic: shown at --debug, or with --debug-topic TOPIC alone. */
  debugTopic(topic: string, message: string, name?: string): void {
    if (this.topics.has(topic)) this.topic(topic, message);
    else this.debug(message, name);
  }

  /**
   * Progress lines in borg's JSON format are sent only when enabled. borg serve never sends
   * them (its progress logger is pinned at WARNING on the server), so serve leaves this off;
   * callers in loops check it before building messages.
   */
  progressEnabled = false;

  /** A progress line in borg's JSON progress format; only sent in JSON mode, when enabled. */
  progress(msgid: string, message: string | null, current: number, total: number, finished = false): void {
    if (!this.json || !this.progressEnabled) return;
    const rec: Record<string, unknown> = {
      type: "progress_percent",
      operation: 0,
      msgid,
      finished,
      current,
      total,
      time: Date.now() / 1000,
    };
    if (message !== null) rec.message = message;
    this.sink.write(JSON.stringify(rec) + "\n");
  }
}

/** The process-wide logger; commands configure it from their options. */
export const log = new Logger();
