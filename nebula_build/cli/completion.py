"""`nebula-build completion bash|zsh|fish`: a shell completion script, made from the
command line's own parser, so it never lags behind a new command or option."""

from __future__ import annotations

import argparse
from collections.abc import Collection

from nebula_build.cli.context import Context, ExitCode

#: what completes an image's name: the manifest's images, the one `-C DIR` and `-f FILE`
#: typed before the command name (as `nebula-build` will read them)
LIST_IMAGES = {
    "bash": 'nebula-build "${manifest[@]}" list 2>/dev/null',
    "zsh": "nebula-build $manifest list 2>/dev/null",
    "fish": "nebula-build $manifest list 2>/dev/null",
}
#: the shell functions that offer them. A name comes from the project (a data row's
#: id): each is offered as it is, never expanded (bash's `compgen -W` and a zsh
#: `(…)` list both expand the words they are given, `$(…)` included), and inserted
#: so that it stays one argument, its name exactly: quoted for the quote the word is
#: open in ('…', "…" or none), after `--` if it begins with '-'. The words typed before are
#: read the same way, never run: a `-C "$(…)"` names no manifest.
_IMAGES_FUNCTION = "_nebula_build_images"
_BASH_PREAMBLE = r"""
# the text a word on the line stands for, found without running anything: quotes and
# backslashes removed, a leading ~ is $HOME; none for $… and `… (only running tells).
# In the caller's `text`; and if the word ends inside a quote, its `quote` and the
# text `opened` before it (readline completes what follows that quote, keeps the rest)
_nebula_build_dequote() {
  local word=$1 char i
  text= quote= opened=
  [[ $word == '~' || $word == '~/'* ]] && text=$HOME word=${word:1}
  for (( i = 0; i < ${#word}; i++ )); do
    char=${word:i:1}
    if [[ $quote == "'" && $char != "'" ]]; then
      text+=$char
    elif [[ $char == "'" && $quote != '"' || $char == '"' && $quote != "'" ]]; then
      [[ -n $quote ]] && quote= opened= || quote=$char opened=$text
    elif [[ $char == '\' ]]; then
      (( i += 1 ))
      [[ $quote == '"' && ${word:i:1} != [\$\`\"\\] ]] && text+='\'
      text+=${word:i:1}
    elif [[ $char == [\$\`] ]]; then
      return 1
    else
      text+=$char
    fi
  done
}

# a line: the text `kept` ($3), then a name written to go on after the quote the word
# is open in ('…', "…" or none); replaced whole, not a character at a time, in one
# printf: a project may have thousands of names
_nebula_build_quote() {
  local name=$1 quote=$2 kept=$3 text
  case $quote in
    "'") text=${name//"'"/"'\''"} ;;
    '"')
      text=${name//\\/\\\\} text=${text//\$/\\\$} text=${text//\`/\\\`}
      text=${text//\"/\\\"} text=${text//!/\"\'!\'\"} ;;
    *) printf '%s%q\n' "$kept" "$name"; return ;;
  esac
  # readline takes a match that begins with the quote for the word's own, in its place
  [[ $text == "$quote"* ]] && text=$quote$text
  printf '%s%s\n' "$kept" "$text"
}

# the words of the line up to the cursor, as the command gets them, in the caller's
# `words` (COMP_WORDS splits at COMP_WORDBREAKS, = and : among them: the parts with no
# space between are one word); and in its `kept`, the part of the last word that
# readline keeps: it completes only what follows the last of those, unquoted, up to the
# cursor (a TAB before the : of `row:wa` completes `row`: COMP_CWORD names the `:`)
_nebula_build_words() {
  local line=${COMP_LINE:0:COMP_POINT} rest part i
  local breaks=${COMP_WORDBREAKS-@><=;|&(:}  # unset: readline keeps bash's own
  breaks=${breaks//[\"\' $'\t\n']}
  words=() kept=
  for (( i = 0; i <= COMP_CWORD; i++ )); do
    rest=${line#"${line%%[![:space:]]*}"}
    part=${COMP_WORDS[i]:0:${#rest}}
    if (( i > 0 && ${#rest} == ${#line} )); then
      [[ -z $part ]] && break
      kept=${words[${#words[@]}-1]}
      words[${#words[@]}-1]+=$part
    else
      kept= words+=("$part")
    fi
    line=${rest:${#part}}
  done
  # a word that ends in : or = is completed after it
  [[ -n $part && -n $breaks && $part != *[!"$breaks"]* ]] && kept=${words[${#words[@]}-1]}
  # but a @ stays in the text readline completes (its own, for host names): not kept
  kept=${kept%@}
}

# -C DIR and -f FILE as typed before the command, in the caller's `manifest`, as options
# for `nebula-build list`
_nebula_build_manifest() {
  local option value joined text quote opened i
  manifest=()
  for (( i = 1; i < ${#words[@]} - 1; i++ )); do
    case ${words[i]} in
      -C|-f) option=${words[i]} value=${words[i+1]-} joined= && (( i += 1 )) ;;
      -C*|-f*) option=${words[i]:0:2} value=${words[i]} joined=1 ;;
      -*) continue ;;
      *) break ;;
    esac
    (( i < ${#words[@]} - 1 )) || value=
    _nebula_build_dequote "$value" || return 1
    # -CDIR, -C=DIR: unquoted whole (a ~ after -C is no home), then the option taken off
    value=$text
    [[ -n $joined ]] && value=${value:2} && value=${value#=}
    manifest+=("$option=$value")
  done
}

# the names for the last of the caller's `words`, each as `kept` and what goes after it
_nebula_build_images() {
  local word=${words[${#words[@]}-1]} before=${words[${#words[@]}-2]}
  local option= after_dashes= lead= text quote opened name typed
  local -a manifest
  _nebula_build_manifest || return 0
  # after -- or in --OPTION=NAME, a name that begins with '-' is not taken for an option
  # (a word -- itself: not "a -- b", nor --more=--)
  [[ $word == --*=* && " IMAGE_OPTIONS " == *" ${word%%=*} "* ]] && option=${word%%=*}=
  [[ -n $option ]] && after_dashes=1
  for name in "${words[@]:1:${#words[@]}-2}"; do [[ $name == -- ]] && after_dashes=1; done
  _nebula_build_dequote "${word#"$option"}" || return 0
  typed=$text
  if [[ -z $quote ]]; then  # readline replaces what follows `kept`: the rest of the name
    if (( ${#kept} < ${#option} )); then
      lead=${option:${#kept}}
    else
      _nebula_build_dequote "${kept#"$option"}" && opened=$text
    fi
  fi
  while IFS= read -r name; do
    [[ $name == "$typed"* ]] || continue
    if [[ $name == -* && -z $after_dashes ]]; then
      # --OPTION -NAME would not do: only --OPTION=NAME says it
      [[ -z $quote$kept && " IMAGE_OPTIONS " != *" $before "* ]] || continue
      printf -- '-- %q\n' "$name"
    else
      _nebula_build_quote "${name:${#opened}}" "$quote" "$kept$lead"
    fi
  done < <(LIST_IMAGES)
}

# shtab's function, given the words as argparse reads them, and names for --OPTION=NAME
_nebula_build() {
  local -a words argv
  local kept word
  _nebula_build_words
  COMPREPLY=()
  # no command before the word (a COMP_WORDBREAKS without a space): none to offer
  (( ${#words[@]} > 1 )) || return 0
  word=${words[${#words[@]}-1]}
  if [[ $word == --*=* && " IMAGE_OPTIONS " == *" ${word%%=*} "* ]]; then
    while IFS= read -r word; do COMPREPLY+=("$word"); done < <(_nebula_build_images)
  else
    for word in "${words[@]:0:${#words[@]}-1}"; do  # --OPTION=VALUE: two words
      [[ $word == --*=* ]] && argv+=("${word%%=*}" "${word#*=}") || argv+=("$word")
    done
    local -a COMP_WORDS=("${argv[@]}" "${words[${#words[@]}-1]}")
    local COMP_CWORD=${#argv[@]}
    _shtab_nebula_build "$@"
  fi
  # readline replaces only what follows `kept`
  [[ -n $kept ]] && COMPREPLY=("${COMPREPLY[@]#"$kept"}")
  return 0
}
"""
_ZSH_PREAMBLE = r"""
# -C DIR and -f FILE as typed before the command ($BUFFER: _arguments narrows $words
# to the command's), unquoted but never run: none for $… and `…
_nebula_build_manifest() {
  local -a typed=("${(@z)LBUFFER}")
  local option value home joined i
  manifest=()
  for (( i = 2; i < $#typed; i++ )); do
    case $typed[i] in
      (-C|-f) option=$typed[i] value=$typed[i+1] joined= && (( i += 1 )) ;;
      (-C*|-f*) option=${typed[i][1,2]} value=$typed[i] joined=1 ;;
      (-*) continue ;;
      (*) break ;;
    esac
    [[ $value == *[\$\`]* ]] && return 1
    home=
    [[ $value == \~ || $value == \~/* ]] && home=$HOME value=${value:1}
    value=$home${(Q)value}
    # -CDIR, -C=DIR: unquoted whole (a ~ after -C is no home), then the option taken off
    [[ -n $joined ]] && value=${${value:2}#=}
    manifest+=("$option=$value")
  done
}

_nebula_build_images() {
  local -a manifest names dashed before=(${(z)${LBUFFER% *}})
  _nebula_build_manifest || return 0
  names=(${(f)"$(LIST_IMAGES)"})
  # after -- or in --OPTION=NAME, a name that begins with '-' is not taken for an option
  if (( ! ${before[(Ie)--]} )) && [[ $IPREFIX != *= ]]; then
    # --OPTION -NAME would not do: only --OPTION=NAME says it
    dashed=(${(M)names:#-*})
    names=(${names:#-*})
    (( $#dashed )) && [[ -z $compstate[quote] && " IMAGE_OPTIONS " != *" $words[CURRENT-1] "* ]] &&
      compadd -P '-- ' -a dashed
  fi
  # a word that ends in a quote: zsh puts the name before that quote, and its space
  # too (inside the quote, in the name); without one, the cursor goes after the quote
  local -a no_space
  [[ -n $QISUFFIX ]] && no_space=(-S '')
  compadd "${no_space[@]}" -a names
}
"""
_FISH_FUNCTION = r"""
# the images of the manifest that -C DIR and -f FILE typed before the command name
# (tokens unquoted, never run: none for $… and (…))
function _nebula_build_names
    set -l manifest
    set -l typed (commandline -opc)
    set -e typed[1]
    while set -q typed[1]
        switch $typed[1]
            case -C -f  # a ~ only here, at the start of a word, is home
                set -a manifest $typed[1]=(string replace -r '^~(?=/|$)' $HOME -- $typed[2])
                set -e typed[1]
            case '-C*' '-f*'
                set -a manifest (string replace -r '^(-.)=?' '$1=' -- $typed[1])
            case '-*'
            case '*'
                break
        end
        set -e typed[1]
    end
    string match -qr '[$(]' -- $manifest; and return
    LIST_IMAGES
end

# whether a name that begins with '-' goes in as it is: after -- or as --OPTION=NAME,
# else the CLI takes it for an option. (fish escapes the space of `-- NAME`: that is
# one argument, and no name)
function _nebula_build_dashed_as_they_are
    contains -- -- (commandline -opc); or string match -q -- '--*=*' (commandline -ct)
end

# the names an option's value or an argument can be; with `--`, where an argument goes,
# the -- to type before a name that begins with '-'
function _nebula_build_images
    set -l names (_nebula_build_names)
    if _nebula_build_dashed_as_they_are
        string join \n -- $names
        return
    end
    string match -v -- '-*' $names
    if contains -- -- $argv; and string match -q -- '-*' (commandline -ct)
        string match -q -- '-*' $names; and printf '%s\t%s\n' -- 'before a name that begins with -'
    end
end

# where an option goes: --OPTION=NAME for the names that begin with '-'
function _nebula_build_dashed
    string match -q -- '-*' (commandline -ct); or return
    _nebula_build_dashed_as_they_are; and return
    set -l dashed (string match -- '-*' (_nebula_build_names))
    set -q dashed[1]; and string join \n -- $argv[1]=$dashed
end
"""
#: the arguments that take an image's name (in every command that has them)
_IMAGE_OPTIONS = ("target", "replace", "more", "patterns")
_IMAGE_POSITIONALS = {"pick": "name", "history": "name", "accept": "names"}


def cmd_completion(ctx: Context) -> int:
    from nebula_build.cli import build_parser

    parser = build_parser()
    if ctx.args.shell == "fish":
        ctx.print(fish_script(parser))
    else:
        import shtab  # bash and zsh, from the same parser

        for action in image_arguments(parser):
            action.complete = {"bash": _IMAGES_FUNCTION, "zsh": _IMAGES_FUNCTION}  # type: ignore[attr-defined]
        preamble = _functions(ctx.args.shell, parser)
        script = shtab.complete(parser, shell=ctx.args.shell, preamble=preamble)
        if ctx.args.shell == "bash":
            script = script.replace(
                _BASH_OPTIONS_ONLY, _BASH_OPTIONS_ONLY + _BASH_OPTIONS_OR_DASHED, 1
            ).replace(
                _BASH_REGISTERED, _BASH_REGISTERED.replace("_shtab_nebula_build", "_nebula_build")
            )
        if ctx.args.shell == "zsh":
            script = _zsh_values_joined(script, parser)
        ctx.print(script.rstrip("\n"))
    return ExitCode.OK


#: shtab's bash offers only options for a word that begins with '-' where a name goes:
#: the names that begin with '-' are offered too (written after `--`)
_BASH_OPTIONS_ONLY = """
    while IFS= read -r line; do COMPREPLY+=("$line"); done < <(
      compgen -W "${current_option_strings[*]}" -- "$completing_word")
"""
_BASH_REGISTERED = "complete -o bashdefault -F _shtab_nebula_build nebula-build"
_BASH_OPTIONS_OR_DASHED = f"""\
    # and the image names that begin with '-', written after --
    [[ $current_action_compgen == {_IMAGES_FUNCTION} ]] &&
      while IFS= read -r line; do COMPREPLY+=("$line"); done < <({_IMAGES_FUNCTION})
"""


def _zsh_values_joined(script: str, parser: argparse.ArgumentParser) -> str:
    """Specs that let _arguments read `-CDIR`, `-fFILE`, `--target=NAME`,
    `--lock-timeout=S` and `--` as argparse does (shtab's say only `-C DIR`,
    `--target NAME`, and take `--` for an argument): what comes after them completes."""
    script = script.replace("_arguments -C -s ", "_arguments -S -C -s ")  # -- as argparse
    for option in ("-C", "-f"):
        script = script.replace(f'"{option}[', f'"{option}+[')
    for option in _long_options_with_values(parser):
        script = script.replace(f'"{option}[', f'"{option}=[')
        script = script.replace(f'"*{option}[', f'"*{option}=[')
    return script


def _long_options_with_values(parser: argparse.ArgumentParser) -> set[str]:
    parsers = [parser, *_subcommands(parser).values()]
    parsers += [sub for command in parsers[1:] for sub in _subcommands(command).values()]
    return {
        option
        for command in parsers
        for action in command._actions
        if action.nargs != 0
        for option in action.option_strings
        if option.startswith("--")
    }


def _functions(shell: str, parser: argparse.ArgumentParser) -> str:
    """The shell's functions that complete image names."""
    text = {"bash": _BASH_PREAMBLE, "zsh": _ZSH_PREAMBLE, "fish": _FISH_FUNCTION}[shell]
    options = dict.fromkeys(o for a in image_arguments(parser) for o in a.option_strings)
    return text.replace("LIST_IMAGES", LIST_IMAGES[shell]).replace(
        "IMAGE_OPTIONS", " ".join(options)
    )


def image_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments that take image names: `nebula-build list` completes them."""
    return [
        action
        for name, command in _subcommands(parser).items()
        for action in command._actions
        if action.dest in _IMAGE_OPTIONS or _IMAGE_POSITIONALS.get(name) == action.dest
    ]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help(text: str | None) -> str:
    return (text or "").replace("\\", "").replace("'", "\\'").replace("%%", "%")[:72]


def _option_lines(
    parser: argparse.ArgumentParser, condition: str, images: Collection[argparse.Action] = ()
) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        flags = []
        for option in action.option_strings:
            if option.startswith("--"):
                flags.append(f"-l {option[2:]}")
            elif len(option) == 2:
                flags.append(f"-s {option[1]}")
        if not flags:
            continue
        takes = " -r" if action.nargs != 0 else ""
        choices = f" -a '{' '.join(map(str, action.choices))}'" if action.choices else ""
        if action in images:  # -x: the names alone, no file names offered with them
            takes, choices = " -x", f" -a '({_IMAGES_FUNCTION})'"
        lines.append(
            f"complete -c {parser.prog.split()[0]} -n '{condition}' {' '.join(flags)}{takes}"
            f"{choices} -d '{_help(action.help)}'"
        )
    return lines


def fish_script(parser: argparse.ArgumentParser) -> str:
    """Completions for fish: the commands, then each command's options."""
    prog = parser.prog
    commands = _subcommands(parser)
    help_of = {
        choice.dest: choice.help
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
    }
    lines = [
        f"# fish completion for {prog}: {prog} completion fish | source",
        _functions("fish", parser).strip("\n"),
        f"complete -c {prog} -f",
    ]
    lines += _option_lines(parser, "__fish_use_subcommand")
    for name in commands:
        described = _help(help_of.get(name))
        lines.append(f"complete -c {prog} -n '__fish_use_subcommand' -a {name} -d '{described}'")
    images = image_arguments(parser)
    for name, command in commands.items():
        seen = f"__fish_seen_subcommand_from {name}"
        lines += _option_lines(command, seen, images)
        # fish offers these for a word that begins with '-' after an option that
        # requires a value too: not there
        values = " ".join(
            o for a in command._actions if a.nargs not in (0, "?", "*") for o in a.option_strings
        )
        seen_here = f"{seen}; and not __fish_prev_arg_in {values}" if values else seen
        if any(a in images and not a.option_strings for a in command._actions):
            lines.append(f"complete -c {prog} -n '{seen_here}' -a '({_IMAGES_FUNCTION} --)'")
        options = [o for a in command._actions if a in images for o in a.option_strings]
        if options:  # --target=-NAME, where `-NAME` is typed
            dashed = f"(_nebula_build_dashed {options[0]})"
            lines.append(f"complete -c {prog} -n '{seen_here}' -a '{dashed}'")
        for sub, subparser in _subcommands(command).items():
            lines.append(f"complete -c {prog} -n '__fish_seen_subcommand_from {name}' -a {sub}")
            lines += _option_lines(subparser, f"__fish_seen_subcommand_from {sub}")
    return "\n".join(lines)
