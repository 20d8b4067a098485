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
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(?:(Z)|([+-])(\d{2}):?(\d{2})?)?$/.exec(text.trim());
  if (m === null) return null;
  const [y, mo, day, h, mi, sec] = m.slice(1, 7).map((v) => Number(v ?? "0")) as [number, number, number, number, number, number];
  const ms = Number(`0.${m[7] ?? "0"}`) * 1000;
  // Date.UTC rolls 2026-02-30 over to March: the fields must come back as given
  const utc = Date.UTC(y, mo - 1, day, h, mi, sec, ms);
  const check = new Date(utc);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== day || h > 23 || mi > 59 || sec > 59) return null;
  if (m[8] === "Z") return utc;
  if (m[9] !== undefined) {
    const offset = (Number(m[10]) * 60 + Number(m[11] ?? "0")) * 60_000;
    return m[9] === "+" ? utc - offset : utc + offset;
  }
  // ISO 8601 without an offset is local time, a bare date too (Date.parse would read a bare
  // date as UTC midnight).
  return new Date(y, mo - 1, day, h, mi, sec, ms).getTime();
}
