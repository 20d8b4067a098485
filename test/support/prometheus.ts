// A strict parser of the Prometheus text exposition format (version 0.0.4), enough to prove that
// `burg status --prometheus` output is what node_exporter's textfile collector accepts: HELP and
// TYPE lines before their samples, metric and label names by the format's grammar, quoted and
// escaped label values, float values, no duplicate series.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help?: string;
  type?: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`line ${line}: label without '='`);
    const name = text.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name '${name}'`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let j = eq + 2;
    let value = "";
    for (;;) {
      if (j >= text.length) throw new Error(`line ${line}: unterminated label value`);
      const c = text[j]!;
      if (c === "\\") {
        const n = text[j + 1];
        if (n === "n") value += "\n";
        else if (n === "\\" || n === '"') value += n;
        else throw new Error(`line ${line}: bad escape \\${n}`);
        j += 2;
      } else if (c === '"') {
        j++;
        break;
      } else {
        value += c;
        j++;
      }
    }
    if (name in labels) throw new Error(`line ${line}: duplicate label ${name}`);
    labels[name] = value;
    if (text[j] === ",") j++;
    else if (j < text.length) throw new Error(`line ${line}: expected ',' after a label`);
    i = j;
  }
  return labels;
}

function parseValue(v: string, line: number): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  if (v === "NaN") return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) throw new Error(`line ${line}: bad value '${v}'`);
  return Number(v);
}

export function parsePrometheus(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the last line must end with a newline");
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, samples: [] }));
    return f;
  };
  text.split("\n").forEach((raw, idx) => {
    const line = idx + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) return; // a comment
      if (!NAME.test(m[2]!)) throw new Error(`line ${line}: bad metric name '${m[2]}'`);
      const f = family(m[2]!);
      if (f.samples.length > 0) throw new Error(`line ${line}: ${m[1]} after samples of ${m[2]}`);
      if (m[1] === "HELP") f.help = m[3]!;
      else {
        if (!TYPES.has(m[3]!)) throw new Error(`line ${line}: bad type '${m[3]}'`);
        if (f.type !== undefined) throw new Error(`line ${line}: second TYPE for ${m[2]}`);
        f.type = m[3]!;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(raw);
    if (!m) throw new Error(`line ${line}: not a sample: ${raw}`);
    const labels = m[2] === undefined ? {} : parseLabels(m[2], line);
    const key = `${m[1]}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`line ${line}: duplicate series ${key}`);
    seen.add(key);
    family(m[1]!).samples.push({ name: m[1]!, labels, value: parseValue(m[3]!, line) });
  });
  return families;
}
