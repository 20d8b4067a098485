// Man pages from the command line itself (src/cli.ts): burg(1) and one page per subcommand,
// built from the same descriptions, usage texts, options and examples that `--help` prints.
//
// The usage texts are plain text written for an 80-column terminal: paragraphs separated by
// blank lines, indented lines for tables and commands. Unindented lines are filled by the
// formatter; runs of indented lines are kept as they are.

import type { CAC, Command } from "cac";
import { SUMMARY, TAGLINE } from "../cli.ts";

export interface ManPage {
  /** e.g. "burg-serve" */
  name: string;
  /** the page in man(7) markup */
  text: string;
}

export interface ManOptions {
  version: string;
  /** YYYY-MM-DD, the date the pages carry (the commit's, for reproducible builds) */
  date: string;
}

/** Text for roff: backslashes and hyphens escaped, nothing at a line's start read as a request. */
export function roffText(text: string): string {
  const escaped = text.replace(/\\/g, "\\e").replace(/-/g, "\\-");
  return escaped.replace(/^([.'])/gm, "\\&$1");
}

function bold(text: string): string {
  return `\\fB${roffText(text)}\\fR`;
}

function italic(text: string): string {
  return `\\fI${roffText(text)}\\fR`;
}

/** Paragraphs of a usage text: filled where unindented, verbatim where indented. */
export function roffBody(text: string): string {
  const out: string[] = [];
  const blocks = text.split(/\n[ \t]*\n/);
  for (const block of blocks) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    if (lines.length === 0) continue;
    out.push(".PP");
    let verbatim = false;
    for (const line of lines) {
      const indented = /^\s/.test(line);
      if (indented && !verbatim) {
        out.push(".nf", ".RS 2");
        verbatim = true;
      } else if (!indented && verbatim) {
        out.push(".RE", ".fi");
        verbatim = false;
      }
      out.push(roffText(indented ? line.replace(/^ {2}/, "") : line.trim()));
    }
    if (verbatim) out.push(".RE", ".fi");
  }
  return out.join("\n");
}

/** "-v, --verbose" / "--lock-wait <seconds>" as an option's tag line. */
function optionTag(rawName: string): string {
  const m = /^(.*?)(?:\s+([<[].*))?$/.exec(rawName.trim())!;
  const flags = m[1]!.split(/,\s*/).map(bold).join(", ");
  const arg = m[2] === undefined ? "" : " " + italic(m[2].replace(/^[<[]|[>\]]$/g, ""));
  return flags + arg;
}

function header(name: string, opts: ManOptions): string {
  // .nh: option names and paths are never hyphenated
  return `.TH ${roffText(name.toUpperCase())} 1 "${opts.date}" "burg ${roffText(opts.version)}" "burg manual"\n.nh`;
}

/** The synopsis lines of a usage text: its first paragraph, "$ burg " removed. */
function synopsisOf(command: Command): { synopsis: string[]; body: string } {
  const usage = command.usageText ?? command.rawName;
  const cut = usage.indexOf("\n\n");
  const head = cut < 0 ? usage : usage.slice(0, cut);
  const body = cut < 0 ? "" : usage.slice(cut + 2);
  const synopsis = head
    .split("\n")
    .map((l) => l.trim().replace(/^\$\s*/, "").replace(/^burg\s+/, ""))
    .filter((l) => l !== "");
  return { synopsis, body };
}

function commandPage(cli: CAC, command: Command, opts: ManOptions): ManPage {
  const name = `burg-${command.name}`;
  const { synopsis, body } = synopsisOf(command);
  const lines = [header(name, opts), ".SH NAME", `${roffText(name)} \\- ${roffText(command.description)}`, ".SH SYNOPSIS"];
  synopsis.forEach((s, i) => {
    if (i > 0) lines.push(".br");
    const [word, ...rest] = s.split(" ");
    lines.push(`${bold(`burg ${word}`)} ${roffText(rest.join(" "))}`.trimEnd());
  });
  lines.push(".SH DESCRIPTION", ".PP", roffText(command.description + "."));
  if (body.trim() !== "") lines.push(roffBody(body));
  const options = [...command.options, ...cli.globalCommand.options];
  if (options.length > 0) {
    lines.push(".SH OPTIONS");
    for (const o of options) lines.push(".TP", optionTag(o.rawName), roffText(o.description));
  }
  if (command.examples.length > 0) {
    lines.push(".SH EXAMPLES", ".nf", ".RS 2");
    for (const e of command.examples) lines.push(roffText(typeof e === "string" ? e.replace(/^ {2}/, "") : e(cli.name)));
    lines.push(".RE", ".fi");
  }
  lines.push(".SH SEE ALSO", `${bold("burg")}(1), ${bold("borg")}(1), ${bold("borg-serve")}(1)`);
  return { name, text: lines.join("\n") + "\n" };
}

function mainPage(cli: CAC, opts: ManOptions): ManPage {
  const lines = [
    header("burg", opts),
    ".SH NAME",
    `burg \\- ${roffText(TAGLINE)}`,
    ".SH SYNOPSIS",
    `${bold("burg")} ${italic("command")} [${italic("options")}]`,
    ".br",
    `${bold("burg --version")}`,
    ".SH DESCRIPTION",
    roffBody(SUMMARY),
    ".PP",
    roffText("Each command has its own page, burg-COMMAND(1), and its own --help."),
    ".SH COMMANDS",
  ];
  for (const c of cli.commands) lines.push(".TP", `${bold(`burg-${c.name}`)}(1)`, roffText(c.description));
  lines.push(
    ".SH OPTIONS",
    ".TP",
    optionTag("-h, --help"),
    roffText("show the help of burg or of a command"),
    ".TP",
    optionTag("-V, --version"),
    roffText("show burg's version and commit"),
    ".SH EXIT STATUS",
    roffText("As borg's: 0 success, 1 warning, 2 error, 128+N when ended by signal N."),
    ".SH SEE ALSO",
    [...cli.commands.map((c) => `${bold(`burg-${c.name}`)}(1)`), `${bold("borg")}(1)`].join(",\n"),
  );
  return { name: "burg", text: lines.join("\n") + "\n" };
}

/** burg(1) first, then one page per subcommand in the order of `burg --help`. */
export function manPages(cli: CAC, opts: ManOptions): ManPage[] {
  return [mainPage(cli, opts), ...cli.commands.map((c) => commandPage(cli, c, opts))];
}
