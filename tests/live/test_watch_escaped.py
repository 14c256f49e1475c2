"""What watch says of a round is escaped as a command's error is: a file's name that
holds an escape sequence or a line break reaches the terminal as its escape, never for
the terminal to obey, and never escaped twice."""

from __future__ import annotations

import pytest

from tests.live.test_watch_hand_edits import SITE, _until
from tests.live.watching import watching

NAME = "x\x1b]0;pwned\x07"


def _said(run) -> str:  # type: ignore[no-untyped-def]
    assert "\x1b" not in run.out and "\x07" not in run.out, run.out
    return run.out


@pytest.mark.slow
def test_a_round_error_naming_a_file_is_said_escaped(project):
    """A lock that is not TOML, beside a manifest named with an escape sequence: its
    name reached the terminal raw in watch (retitling the window), where apply said it
    escaped."""
    root = project({f"{NAME}.toml": SITE, f"{NAME}.lock": "garbage [[\n"})
    with watching(root, "-f", f"{NAME}.toml") as run:
        _until(lambda: run.printed("round 1: error:"), "round 1's error")
    out = _said(run)
    assert "watching x\\x1b]0;pwned\\x07.toml and its inputs" in out
    assert "round 1: error: x\\x1b]0;pwned\\x07.lock is not valid TOML" in out
    assert run.returncode == 0, run.err


@pytest.mark.slow
def test_a_manifest_problem_is_said_escaped_once_on_one_line(project):
    """A problem in a manifest named with a line break: one "error:" line, the name
    escaped once (where the problem was made), not twice."""
    name = "a\nerror: b.toml"
    root = project({name: SITE + "width = 7\n"})
    with watching(root, "-f", name) as run:
        _until(lambda: run.printed("waiting for the next save"), "round 1's error")
    out = _said(run)
    errors = [line for line in run.lines if line.startswith("round") or "error:" in line[:9]]
    assert len(errors) == 1 and errors[0].startswith("round 1: error: a\\nerror: b.toml:"), out
    assert "\\\\n" not in out


@pytest.mark.slow
def test_a_manifest_of_many_problems_says_fifty_and_counts_the_rest(project):
    """As plan and validate do: watch said all 80 problems, one line each."""
    wrong = "".join(f'[images.i{n}]\nprompt = "x"\nbogus{n} = 1\n' for n in range(80))
    root = project({"images.toml": SITE + wrong})
    with watching(root) as run:
        _until(lambda: run.printed("waiting for the next save"), "round 1's error")
    errors = [line for line in run.lines if line.startswith("round 1: error: ")]
    assert len(errors) == 51, _said(run)
    assert errors[-1].startswith("round 1: error: … and "), errors[-1]
    assert errors[-1].endswith(" more problems (`nebula-build validate --json` lists all)\n")
