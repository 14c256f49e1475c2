"""`nebula-build completion SHELL`: the script comes from the parser, so every command
and option completes; bash's is run for real."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from nebula_build.cli import build_parser
from tests.cli.shell_session import complete_line


def _complete_in_bash(script, words, **run):
    line = " ".join(words)
    program = (
        f"source {script}; COMP_WORDS=({' '.join(map(shlex.quote, words))}); "
        f"COMP_CWORD={len(words) - 1}; "
        f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _nebula_build; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, **run
    )
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_their_options(run_cli, tmp_path):
    code, out, _ = run_cli("completion", "bash")
    assert code == 0
    script = tmp_path / "nebula-build.bash"
    script.write_text(out)
    assert _complete_in_bash(script, ["nebula-build", "hi"]) == ["history"]
    assert _complete_in_bash(script, ["nebula-build", "pi"]) == ["pick"]
    options = _complete_in_bash(script, ["nebula-build", "pick", "hero", "--"])
    assert {"--next", "--prev", "--pin", "--unpin"} <= set(options)
    assert "--more" in _complete_in_bash(script, ["nebula-build", "apply", "--m"])


def test_fish_and_zsh_name_every_command(run_cli):
    parser = build_parser()
    (commands,) = [a.choices for a in parser._actions if a.dest == "command"]
    fish = run_cli("completion", "fish").out
    zsh = run_cli("completion", "zsh").out
    for name in commands:
        assert f"-n '__fish_use_subcommand' -a {name} " in fish
        assert name in zsh
    assert "-n '__fish_seen_subcommand_from pick' -l unpin" in fish
    assert zsh.startswith("#compdef nebula-build")


def test_every_shell_the_completion_tests_drive_is_here_where_ci_asks():
    """CI installs bash, zsh and fish (`.ci/run`): a shell missing there fails this,
    instead of its tests skipping unseen."""
    missing = [shell for shell in ("bash", "zsh", "fish") if shutil.which(shell) is None]
    if missing and not os.environ.get("NEBULA_BUILD_REQUIRE_SHELLS"):
        pytest.skip(f"needs {', '.join(missing)} (apt-get install {' '.join(missing)})")
    assert not missing, f"the completion tests need {', '.join(missing)}"


def test_an_unknown_shell_is_one_line(run_cli, capsys):
    code, _, _ = run_cli("completion", "tcsh-ish")
    assert code == 1 and "invalid choice: 'tcsh-ish'" in capsys.readouterr().err


ROWS = "sku,name\n$(touch PWNED),tea\n`touch PWNED2`,coffee\n"


@pytest.fixture
def named(project, tmp_path):
    """A project whose image names come from data, some of them shell code, and the
    environment a shell runs in with `nebula-build` on its PATH (as pip puts it)."""
    images = (
        '[images.enemy]\nprompt = "a {kind}"\nmatrix = { kind = ["slime", "bat"] }\n'
        'output = "e/{kind}.png"\n[images.potion]\nprompt = "a potion"\noutput = "p.png"\n'
        '[images.row]\nrows = "rows.csv"\nid = "sku"\nprompt = "{name}"\noutput = "r/{name}.png"\n'
    )
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n' + images,
            "rows.csv": ROWS,
        }
    )
    shim = tmp_path / "bin" / "nebula-build"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m nebula_build "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    return root, {"cwd": root, "env": env}


NAMES = ["enemy[slime]", "enemy[bat]", "potion", "row[$(touch PWNED)]", "row[`touch PWNED2`]"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_image_names_from_the_manifest_and_never_runs_them(run_cli, named, tmp_path):
    root, run = named
    assert run_cli("list").out.splitlines() == NAMES
    assert run_cli("list", "enemy").out.splitlines() == ["enemy[slime]", "enemy[bat]"]
    script = tmp_path / "nebula-build.bash"
    script.write_text(run_cli("completion", "bash").out)
    words = ["nebula-build", "pick", "en"]
    assert _complete_in_bash(script, words, **run) == ["enemy\\[slime\\]", "enemy\\[bat\\]"]
    words = ["nebula-build", "apply", "--target", "po"]
    assert _complete_in_bash(script, words, **run) == ["potion"]
    words = ["nebula-build", "pick", "enemy\\[s"]  # what was typed, quoted already
    assert _complete_in_bash(script, words, **run) == ["enemy\\[slime\\]"]
    offered = _complete_in_bash(script, ["nebula-build", "history", "r"], **run)
    # inserted as they are offered, then run: each is one argument, its name exactly
    line = "printf '%s\\n' " + " ".join(offered)
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True, **run)
    assert done.stdout.splitlines() == NAMES[3:]
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_offers_image_names_as_they_are_and_never_runs_them(run_cli, named):
    """The function the zsh script completes names with, run with a compadd that
    prints what it is given."""
    root, run = named
    script = run_cli("completion", "zsh").out
    assert (
        ":NAME:_nebula_build_images" in script
        and "$(nebula-build list" not in script.split("# End Custom Preamble")[1]
    )
    functions = script.split("# Custom Preamble")[1].split("# End Custom Preamble")[0]
    program = (
        f"compadd() {{ print -rl -- ${{(P)${{@[-1]}}}} }}\n{functions}\n"
        "LBUFFER='nebula-build pick ' words=(nebula-build pick '') CURRENT=3 _nebula_build_images"
    )
    done = subprocess.run(
        ["zsh", "-c", program], check=False, capture_output=True, text=True, **run
    )
    assert done.stdout.splitlines() == NAMES, done.stderr
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()


def test_fish_and_zsh_complete_image_names_too(run_cli):
    fish = run_cli("completion", "fish").out
    assert "-n '__fish_seen_subcommand_from apply' -l target -x -a '(_nebula_build_images)'" in fish
    pick = "-n '__fish_seen_subcommand_from pick; and not __fish_prev_arg_in --lock-timeout'"
    assert f"{pick} -a '(_nebula_build_images --)'" in fish
    assert "nebula-build $manifest list 2>/dev/null" in fish
    assert "nebula-build $manifest list 2>/dev/null" in run_cli("completion", "zsh").out


SHELLS = [
    pytest.param(
        shell, marks=pytest.mark.skipif(shutil.which(shell) is None, reason=f"needs {shell}")
    )
    for shell in ("bash", "zsh", "fish")
]


def _typed(run_cli, shell, typed, run, tmp_path):
    """The line `shell` shows after `typed`, TABs and all."""
    script = tmp_path / f"nebula-build.{shell}"
    script.write_text(run_cli("completion", shell).out)
    return complete_line(shell, script, typed, **run)


def _entered(shell, line, run):
    """What `line` prints, run by `shell` as when Enter is pressed."""
    done = subprocess.run([shell, "-c", line], check=False, capture_output=True, text=True, **run)
    return done.stdout.splitlines()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("opened", ["'", '"'])
def test_a_name_begun_after_a_quote_completes_and_stays_one_argument(
    run_cli, named, tmp_path, shell, opened
):
    root, run = named
    line = _typed(run_cli, shell, f"nebula-build list {opened}en\t", run, tmp_path)
    assert line == f"nebula-build list {opened}enemy["  # two names: their common part
    dollar = "$" if opened == "'" else "\\$"
    line = _typed(run_cli, shell, f"nebula-build list {opened}row[{dollar}\t", run, tmp_path)
    assert line.startswith(f"nebula-build list {opened}row[") and line.endswith(" ")
    assert _entered(shell, line, run) == ["row[$(touch PWNED)]"]
    if opened == "'":
        line = _typed(run_cli, shell, "nebula-build list 'row[`\t", run, tmp_path)
        assert _entered(shell, line, run) == ["row[`touch PWNED2`]"], line
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_after_a_quote_among_thousands_of_names(run_cli, named, tmp_path):
    """A data file's thousands of long names are each quoted for the word's quote, in
    one pass a name (a character at a time took 7 s a TAB for 9,000 names, against
    1.8 s for a bare word: timed by hand, not here, where the machine's load decides)."""
    root, run = named
    names = root / "names.txt"
    names.write_text("".join(f"row[{'x' * 120}{i:04d}]\n" for i in range(9000)))
    lister = tmp_path / "lister" / "nebula-build"
    lister.parent.mkdir()
    lister.write_text(f"#!/bin/sh\nexec cat {names}\n")
    lister.chmod(0o755)
    run = {**run, "env": {**run["env"], "PATH": f"{lister.parent}{os.pathsep}{os.environ['PATH']}"}}
    for opened in ("", "'"):
        line = _typed(run_cli, "bash", f"nebula-build list {opened}row[x\t", run, tmp_path)
        assert line.startswith(f"nebula-build list {opened}row") and line.endswith("x" * 120)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("typed", ["row[it'", 'row[it"', "'row[it'\\''s", 'r"o"w[it'])
def test_a_quote_opened_or_closed_inside_the_word_leaves_the_name_exact(
    run_cli, named, tmp_path, shell, typed
):
    """Bash completes what follows the quote a word is open in and keeps what comes
    before it: only the rest of the name goes in, quoted for that quote."""
    root, run = named
    (root / "rows.csv").write_text("sku,name\nit's $(touch PWNED),tea\n")
    line = _typed(run_cli, shell, f"nebula-build list {typed}\t", run, tmp_path)
    if shell == "bash" or line != f"nebula-build list {typed}":  # zsh completes none of some
        assert _entered(shell, line, run) == ["row[it's $(touch PWNED)]"], line
    assert not (root / "PWNED").exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("typed", ["'row[it'\\''", "'po'", '"po"', "'row[it'\\''s $'"])
def test_a_name_completed_in_a_word_that_ends_in_a_quote_leaves_no_space_inside_it(
    run_cli, named, tmp_path, shell, typed
):
    """zsh takes a word's last quote for the one that closes the name's quote (the one
    `'\\''` reopens too), and put the space it adds before it: in the name, at its end.
    No space goes in now, and the cursor goes after the quote."""
    root, run = named
    (root / "rows.csv").write_text("sku,name\nit's $(touch PWNED),tea\n")
    line = _typed(run_cli, shell, f"nebula-build list {typed}\t", run, tmp_path)
    assert line != f"nebula-build list {typed}"
    assert not line.endswith(" '") and not line.endswith(' "'), line
    name = "potion" if "po" in typed else "row[it's $(touch PWNED)]"
    assert _entered(shell, line, run) == [name], line
    assert not (root / "PWNED").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_name_with_a_colon_or_an_equals_sign_completes_past_it(run_cli, named, tmp_path, shell):
    """Bash splits a word at the : and = of COMP_WORDBREAKS and readline completes only
    what follows the last one: the rest of the name goes in, and nothing typed runs.
    (`\\[`, as zsh takes a bare `[` for a subscript or a glob.)"""
    root, run = named
    rows = "sku,name\nwa:ter,a\ngr:ass,b\ngr:avel,c\nk=v,d\nx:$(touch PWNED),e\n"
    (root / "rows.csv").write_text(rows)
    for typed, completed in (
        ("history row\\[wa:", "history row\\[wa:ter\\] "),
        ("history row\\[wa:t", "history row\\[wa:ter\\] "),
        ("history row\\[gr:", "history row\\[gr:a"),  # two names: their common part
        ("history row\\[gr:av", "history row\\[gr:avel\\] "),
        ("history row\\[k=", "history row\\[k=v\\] "),
        ("apply --target=row\\[wa:", "apply --target=row\\[wa:ter\\] "),
        ("apply --target row\\[k=", "apply --target row\\[k=v\\] "),
        ("history row\\[x:", "history row\\[x:\\$\\(touch\\ PWNED\\)\\] "),
    ):
        line = _typed(run_cli, shell, f"nebula-build {typed}\t", run, tmp_path)
        assert line == f"nebula-build {completed}", typed
    for typed in ("row\\[x:", "row'[x:'", "'row[x:"):
        line = _typed(run_cli, shell, f"nebula-build list {typed}\t", run, tmp_path)
        assert _entered(shell, line, run) == ["row[x:$(touch PWNED)]"], line
    assert not (root / "PWNED").exists()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("typed", "completed"),
    [
        ("history row\\[icon@", "history row\\[icon@2x\\] "),
        ("history row\\[icon@2", "history row\\[icon@2x\\] "),
        ("history row\\[@", "history row\\[@x\\] "),
        ("plan --target=row\\[@", "plan --target=row\\[@x\\] "),
    ],
)
def test_a_name_with_an_at_sign_completes_with_it(
    run_cli, named, tmp_path, shell, typed, completed
):
    """Bash splits a word at its @ too, but readline completes the text from the @ on,
    not after it: `icon@2`, TAB, went in as `icon2x`, the @ lost, a name not typed."""
    root, run = named
    (root / "rows.csv").write_text("sku,name\nicon@2x,a\n@x,b\n")
    line = _typed(run_cli, shell, f"nebula-build {typed}\t", run, tmp_path)
    assert line == f"nebula-build {completed}"


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "typed", ["history row\\[wa:", "history row\\[wa:t", "apply --target=row\\[wa:"]
)
def test_a_tab_with_the_cursor_before_a_colon_keeps_the_name_typed(
    run_cli, named, tmp_path, shell, typed
):
    """Ctrl-B moves the cursor back before the : of `row\\[wa:`, where bash's COMP_CWORD
    names the `:`: what went in replaced `row\\[wa` with the rest of the name, `ter\\]`.
    Now bash completes the text before the cursor and keeps what follows it, as zsh and
    fish keep the name typed."""
    root, run = named
    (root / "rows.csv").write_text("sku,name\nwa:ter,a\n")
    back = "\x02" * (len(typed) - typed.rindex(":"))
    line = _typed(run_cli, shell, f"nebula-build {typed}{back}\t", run, tmp_path)
    assert line.startswith(f"nebula-build {typed.partition(':')[0]}:ter\\]"), line


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_nothing_where_comp_wordbreaks_has_no_space(run_cli, named, tmp_path):
    """What comes before the : is one word then, with no command before the one
    completed: the TAB hung bash, shtab's loop over the words before it never ending."""
    root, run = named
    (root / "rows.csv").write_text("sku,name\nwa:ter,a\n")
    script = tmp_path / "nebula-build.bash"
    script.write_text("COMP_WORDBREAKS=:\n" + run_cli("completion", "bash").out)
    line = complete_line("bash", script, "nebula-build history row\\[wa:\t", **run)
    assert line == "nebula-build history row\\[wa:"


@pytest.mark.parametrize("shell", SHELLS)
def test_an_option_and_its_value_in_one_word_leave_the_name_after_them(
    run_cli, named, tmp_path, shell
):
    """`--lock-timeout=5` is one option with its value, as argparse reads it: the word
    after it is the image's name, not the draw's number."""
    _, run = named
    for typed in ("pick --lock-timeout=5", "history --json"):
        line = _typed(run_cli, shell, f"nebula-build {typed} po\t", run, tmp_path)
        assert line == f"nebula-build {typed} potion ", typed


@pytest.fixture
def other(tmp_path):
    """A second project next to `named`'s, with an image whose name begins with '-'."""
    images = (
        '[images."-dash"]\nprompt = "a dash"\noutput = "d.png"\n'
        '[images.elixir]\nprompt = "an elixir"\noutput = "e.png"\n'
    )
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n' + images
    )
    return folder


@pytest.mark.parametrize("shell", SHELLS)
def test_a_name_that_begins_with_a_dash_is_completed_where_the_cli_takes_it(
    run_cli, named, other, tmp_path, shell
):
    _, run = named
    run = {**run, "cwd": other}
    line = _typed(run_cli, shell, "nebula-build list -d\t", run, tmp_path)
    if shell == "fish":  # fish escapes what it inserts: `-- ` cannot go in with the name
        assert line == "nebula-build list -d"
    else:
        assert line == "nebula-build list -- -dash "
        assert _entered(shell, line, run) == ["-dash"]
    line = _typed(run_cli, shell, "nebula-build list -- -d\t", run, tmp_path)
    assert (line, _entered(shell, line, run)) == ("nebula-build list -- -dash ", ["-dash"])
    # an option's value: --target -dash would be two options, --target=-dash is the name
    line = _typed(run_cli, shell, "nebula-build plan --target -d\t", run, tmp_path)
    assert line == "nebula-build plan --target -d"
    line = _typed(run_cli, shell, "nebula-build plan --target=-d\t", run, tmp_path)
    assert line == "nebula-build plan --target=-dash "
    assert "Plan: 1 to generate, 0 to delete." in _entered(shell, line, run)


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish")
def test_fish_offers_a_name_that_begins_with_a_dash_in_the_forms_it_can_insert(
    run_cli, named, other, tmp_path
):
    """fish escapes the space of `-- NAME` (one argument, no name): where an option goes
    it offers `--target=NAME`, and where a name goes, the `--` to type before it."""
    _, run = named
    run = {**run, "cwd": other}
    for typed in ("status -d", "plan -d", "plan --target=elixir -d"):
        line = _typed(run_cli, "fish", f"nebula-build {typed}\t", run, tmp_path)
        assert line == f"nebula-build {typed.rpartition(' ')[0]} --target=-dash ", typed
    assert "Plan: 2 to generate, 0 to delete." in _entered("fish", line, run)
    for typed, offered in (
        ("pick -", "--\tbefore a name that begins with -"),
        ("list --", "--\tbefore a name that begins with -"),
        ("history -- -", "-dash"),
    ):
        program = f"source {tmp_path / 'nebula-build.fish'}; complete -C 'nebula-build {typed}'"
        done = subprocess.run(
            ["fish", "-c", program], check=True, capture_output=True, text=True, **run
        )
        assert offered in done.stdout.splitlines(), (typed, done.stdout)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_dash_dash_inside_a_word_does_not_end_the_options(run_cli, named, other, tmp_path, shell):
    """`-C "my -- project"` is a folder's name, not `--`: a name that begins with '-'
    still goes in after `--`, not where the CLI would take it for an option."""
    _, run = named
    spaced = other.rename(other.with_name("my -- project"))
    run = {**run, "cwd": spaced.parent}
    for typed in ('-C "my -- project" pick', "-C 'my -- project' apply --target"):
        line = _typed(run_cli, shell, f"nebula-build {typed} -d\t", run, tmp_path)
        if shell == "fish" or "--target" in typed:  # as in a line without the folder
            assert line == f"nebula-build {typed} -d"
        else:
            assert line == f"nebula-build {typed} -- -dash "


@pytest.mark.parametrize("shell", SHELLS)
def test_an_option_and_its_equals_sign_complete_a_name(run_cli, named, other, tmp_path, shell):
    """`--target=` with no name begun yet (bash's word is the `=` itself); fish offers
    the names alone, not the file names here with them."""
    _, run = named
    manifest = other / "images.toml"
    dash = '[images."-dash"]\nprompt = "a dash"\noutput = "d.png"\n'
    manifest.write_text(manifest.read_text().replace(dash, ""))  # elixir alone
    for typed in ("plan --target=", "apply --more=", "plan --target "):
        line = _typed(run_cli, shell, f"nebula-build -C ../other {typed}\t", run, tmp_path)
        assert line == f"nebula-build -C ../other {typed}elixir "


@pytest.mark.parametrize("shell", SHELLS)
def test_names_come_from_the_manifest_the_line_names_and_nothing_typed_runs(
    run_cli, named, other, tmp_path, shell
):
    root, run = named
    run = {**run, "env": {**run["env"], "HOME": str(root)}}
    shutil.copytree(other, root / "~")  # what -C~ names: the shell makes no home of it
    for typed in (
        "-C ../other",
        "-C '../other'",
        '-C "../ot"her',
        "-C ../ot\\her",
        "-C../other",
        "-C=../other",
        "-C'=../other'",
        "-f ../other/images.toml",
        "-C ~/../other",
        "-C~",
        "-C=~",
        "-f~/images.toml",
    ):
        line = _typed(run_cli, shell, f"nebula-build {typed} history el\t", run, tmp_path)
        assert line == f"nebula-build {typed} history elixir ", typed
    line = _typed(run_cli, shell, "nebula-build -C ../other apply --more el\t", run, tmp_path)
    assert line == "nebula-build -C ../other apply --more elixir "
    # neither run nor read as the current folder's manifest (which has `potion`)
    typed = 'nebula-build -C "$(touch PWNED)" history po\t'
    assert _typed(run_cli, shell, typed, run, tmp_path) == typed[:-1]
    typed = "nebula-build -f `touch PWNED2`/images.toml history po\t"
    assert _typed(run_cli, shell, typed, run, tmp_path) == typed[:-1]
    assert not (root / "PWNED").exists() and not (root / "PWNED2").exists()
