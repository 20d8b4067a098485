// Bash completion from the command line itself (src/cli.ts): the subcommands, and each one's
// options as `--help` lists them. A command that parses its own arguments (pull, with ssh's
// options and borg's command after --) documents its options in its usage text; they are
// taken from there: indented lines that start with an option.

import type { CAC, Command } from "cac";

export interface CompletionOptions {
  /** options that take a value */
  withValue: string[];
  /** options without a value */
  flags: string[];
}

/** Options in a usage text's indented lines, e.g. "  --repo PATH   the repository ...". */
function usageOptions(usage: string): CompletionOptions {
  const out: CompletionOptions = { withValue: [], flags: [] };
  for (const line of usage.split("\n")) {
    const m = /^ {2}(-\S.*?)(?: {2,}|$)/.exec(line);
    if (!m) continue;
    for (const part of m[1]!.split(/,\s*/)) {
      const o = /^(--?[A-Za-z][\w-]*)(\s+\S+)?/.exec(part.trim());
      if (!o) continue;
      (o[2] === undefined ? out.flags : out.withValue).push(o[1]!);
    }
  }
  return out;
}

export function commandOptions(cli: CAC, command: Command): CompletionOptions {
  const out: CompletionOptions = { withValue: [], flags: [] };
  for (const o of [...command.options, ...cli.globalCommand.options]) {
    const names = o.rawName.replace(/\s+[<[].*$/, "").split(/,\s*/).map((n) => n.trim());
    (/[<[]/.test(o.rawName) ? out.withValue : out.flags).push(...names);
  }
  if (command.options.length === 0 && command.usageText) {
    const more = usageOptions(command.usageText);
    out.withValue.push(...more.withValue);
    out.flags.push(...more.flags);
  }
  out.withValue = [...new Set(out.withValue)];
  out.flags = [...new Set(out.flags)].filter((f) => !out.withValue.includes(f));
  return out;
}

function words(list: string[]): string {
  return list.join(" ");
}

/** A bash completion script for `burg` (for /usr/share/bash-completion/completions/burg). */
export function bashCompletion(cli: CAC): string {
  const names = cli.commands.map((c) => c.name);
  const cases: string[] = [];
  for (const c of cli.commands) {
    const o = commandOptions(cli, c);
    cases.push(`    ${c.name})\n      opts="${words([...o.flags, ...o.withValue])}"\n      valued="${words(o.withValue)}"\n      ;;`);
  }
  return `# bash completion for burg, generated from burg's own --help (src/docs/completion.ts)

_burg() {
  local cur prev cmd opts valued
  cur=\${COMP_WORDS[COMP_CWORD]}
  prev=\${COMP_WORDS[COMP_CWORD-1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${words(names)} --help --version" -- "$cur"))
    return
  fi
  cmd=\${COMP_WORDS[1]}
  case "$cmd" in
${cases.join("\n")}
    *)
      return
      ;;
  esac
  # after "--" (pull: the client's borg command) burg has nothing to offer
  local i
  for ((i = 2; i < COMP_CWORD; i++)); do
    [ "\${COMP_WORDS[i]}" = "--" ] && { compopt -o default 2>/dev/null; COMPREPLY=(); return; }
  done
  case " $valued " in
    *" $prev "*)
      case "$prev" in
        --permissions) COMPREPLY=($(compgen -W "all no-delete write-only read-only" -- "$cur")) ;;
        *) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
      esac
      return
      ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -d -- "$cur"))
  fi
}
complete -F _burg burg
`;
}
