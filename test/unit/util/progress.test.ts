// Progress: borg's percent stepping (checked against borg's own ProgressIndicatorPercent), the
// progress line, and the display's redraw/line behaviour with an injected clock.

import { describe, expect, test } from "bun:test";
import { PercentSteps, ProgressDisplay, formatDuration, formatProgress } from "../../../src/util/progress.ts";
import { borgPython } from "../../support/borg-python.ts";

describe("PercentSteps", () => {
  test("emits at the same items and percentages as borg's ProgressIndicatorPercent", () => {
    for (const [total, step] of [
      [37, 0.1],
      [5000, 0.1],
      [7, 5],
      [1, 0.1],
    ] as const) {
      const borg = JSON.parse(
        borgPython(
          `
import sys, json
from borg.helpers.progress import ProgressIndicatorPercent
total, step = int(sys.argv[1]), float(sys.argv[2])
pi = ProgressIndicatorPercent(total=total, step=step, msg="%3.1f%%")
out = []
for i in range(total):
    pct = pi.progress(i)
    if pct is not None:
        out.append([i, "%3.1f%%" % pct])
print(json.dumps(out))
`,
          [String(total), String(step)],
        ),
      ) as Array<[number, string]>;
      const steps = new PercentSteps(total, step);
      const ours: Array<[number, string]> = [];
      for (let i = 0; i < total; i++) {
        const pct = steps.next(i);
        if (pct !== null) ours.push([i, `${pct.toFixed(1).padStart(3)}%`]);
      }
      expect(ours).toEqual(borg);
    }
  });
});

describe("progress line", () => {
  test("bytes, items, rate and time left", () => {
    const line = formatProgress(
      "Checking segments",
      "segments",
      { bytesDone: 1_230_000_000, bytesTotal: 2_000_000_000, itemsDone: 123, itemsTotal: 200 },
      2,
    );
    expect(line).toBe("Checking segments  61.5%  1.23 GB of 2.00 GB  123/200 segments  615.00 MB/s  0:01 left");
    const done = formatProgress("Checking segments", "segments", { bytesDone: 10, bytesTotal: 10, itemsDone: 2, itemsTotal: 2 }, 65);
    expect(done).toContain("100.0%");
    expect(done).toContain("1:05 total");
    expect(formatDuration(3725)).toBe("1:02:05");
  });

  test("a terminal gets one line redrawn in place, at most every interval", () => {
    let t = 0;
    let out = "";
    const d = new ProgressDisplay({
      label: "Checking",
      itemName: "segments",
      sink: { isTTY: true, write: (s) => (out += s) },
      now: () => t,
      intervalMs: 100,
    });
    const state = { bytesDone: 0, bytesTotal: 100, itemsDone: 0, itemsTotal: 4 };
    d.update(state);
    t = 50;
    d.update({ ...state, bytesDone: 50 });
    expect(out.split("\r").length - 1).toBe(1);
    t = 150;
    d.update({ ...state, bytesDone: 60, itemsDone: 2 });
    expect(out.split("\r").length - 1).toBe(2);
    expect(out).not.toContain("\n");
    d.clear();
    expect(out.endsWith("\r")).toBe(true);
    t = 200;
    d.finish({ ...state, bytesDone: 100, itemsDone: 4 });
    expect(out.endsWith("4/4 segments  500 B/s  0:00 total\n")).toBe(true);
    d.finish({ ...state, bytesDone: 100, itemsDone: 4 });
    d.update(state);
    expect(out.split("\n").length - 1).toBe(1);
  });

  test("elsewhere whole lines, less often", () => {
    let t = 0;
    const lines: string[] = [];
    const d = new ProgressDisplay({
      label: "Checking",
      itemName: "segments",
      sink: { isTTY: false, write: (s) => lines.push(s) },
      now: () => t,
      intervalMs: 100,
    });
    const state = { bytesDone: 0, bytesTotal: 100, itemsDone: 0, itemsTotal: 4 };
    for (t = 0; t < 1000; t += 100) d.update(state);
    expect(lines.length).toBe(2);
    d.finish(state);
    expect(lines.length).toBe(3);
    expect(lines.every((l) => l.endsWith("\n") && !l.includes("\r"))).toBe(true);
  });
});
