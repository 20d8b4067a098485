// Durations and times on the command line: "30d", "12h", "90m", "45s", "2w" (and sums like
// "1d12h"), and points in time as ISO 8601 (with or without an offset; without one it is local
// time, as Date.parse reads it) or as a duration meaning "that long ago".

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** Seconds in a duration such as "7d" or "1d12h"; null when it is not one. */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (!/^(\d+(\.\d+)?[smhdw])+$/.test(t)) return /^\d+$/.test(t) ? Number(t) : null;
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) total += Number(m[1]) * UNITS[m[2]!]!;
  return total;
}

/** Milliseconds since the epoch for an ISO 8601 time or a duration ago; null when neither. */
export function parseTime(text: string, now = Date.now()): number | null {
  const d = parseDuration(text);
  if (d !== null && !/^\d{4}/.test(text.trim())) return now - d * 1000;
  if (!/^\d{4}-\d{2}-\d{2}/.test(text.trim())) return null;
  const ms = Date.parse(text.trim());
  return Number.isNaN(ms) ? null : ms;
}
