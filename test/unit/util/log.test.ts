// The three log line shapes: text for people, borg serve's "$LOG" lines before negotiation,
// JSON lines after; debug topics show regardless of the main level.

import { describe, expect, test } from "bun:test";
import { Logger } from "../../../src/util/log.ts";

function logger(): { l: Logger; lines: string[] } {
  const l = new Logger();
  const lines: string[] = [];
  l.sink = { write: (s) => void lines.push(s) };
  return { l, lines };
}

describe("log", () => {
  test("text, serve and JSON shapes", () => {
    const { l, lines } = logger();
    l.warning("careful");
    l.serveText = true;
    l.warning("careful", "borg.repository");
    l.json = true;
    l.error("bad", "borg.locking");
    l.info("hidden at WARNING");
    expect(lines[0]).toBe("Warning: careful\n");
    expect(lines[1]).toBe("$LOG WARNING borg.repository Remote: careful\n");
    const rec = JSON.parse(lines[2]!);
    expect(rec).toMatchObject({ type: "log_message", levelname: "ERROR", name: "borg.locking", message: "bad" });
    expect(lines.length).toBe(3);
  });

  test("a debug topic shows without --debug, other debug lines do not", () => {
    const { l, lines } = logger();
    l.json = true;
    l.topics.add("repository.compaction");
    l.debugTopic("repository.compaction", "compacting segment 3");
    l.debugTopic("repository.other", "not enabled");
    l.debug("plain debug");
    expect(lines.length).toBe(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ levelname: "DEBUG", name: "borg.debug.repository.compaction" });
    l.setLevel("DEBUG");
    l.debugTopic("repository.other", "now shown");
    expect(lines.length).toBe(2);
  });
});
