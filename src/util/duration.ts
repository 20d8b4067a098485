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
  const t = text.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/.exec(t);
  if (m === null) return null;
  const [, y, mo, day, h = "0", mi = "0", sec = "0", frac = "0", zone] = m;
  const ms = Number(`0.${frac}`) * 1000;
  // ISO 8601 without an offset is local time, a bare date too (Date.parse would read a bare
  // date as UTC midnight).
  const local = new Date(Number(y), Number(mo) - 1, Number(day), Number(h), Number(mi), Number(sec), ms);
  if (local.getFullYear() !== Number(y) || local.getMonth() !== Number(mo) - 1 || local.getDate() !== Number(day)) return null;
  if (Number(h) > 23 || Number(mi) > 59 || Number(sec) > 59) return null;
  if (zone === undefined) return local.getTime();
  const utc = Date.UTC(Number(y), Number(mo) - 1, Number(day), Number(h), Number(mi), Number(sec), ms);
  if (zone === "Z") return utc;
  const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!;
  const offset = (Number(z[2]) * 60 + Number(z[3] ?? "0")) * 60_000;
  return z[1] === "+" ? utc - offset : utc + offset;
}
