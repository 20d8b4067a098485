// borg's file size syntax and display (helpers/parseformat.py): "5G" is 5*10^9 bytes and
// sizes are shown in decimal units with two decimals ("1.23 GB"), so messages match borg's.

export function parseFileSize(s: string): number {
  const t = s.trim();
  if (!t) throw new Error(`invalid size: '${s}'`);
  const factors: Record<string, number> = { K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };
  const suffix = t[t.length - 1]!;
  const factor = factors[suffix];
  const num = factor === undefined ? t : t.slice(0, -1);
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(num)) throw new Error(`invalid size: '${s}'`);
  return Math.trunc(parseFloat(num) * (factor ?? 1));
}

export function formatFileSize(v: number, precision = 2): string {
  const units = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"];
  let num = v;
  let prec = 0;
  let unit = units[units.length - 1]!;
  let i = 0;
  for (; i < units.length - 1; i++) {
    if (Math.abs(roundHalfEven(num, precision)) < 1000) {
      unit = units[i]!;
      break;
    }
    num /= 1000;
    prec = precision;
  }
  return `${num.toFixed(prec)} ${unit}B`;
}

function roundHalfEven(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
