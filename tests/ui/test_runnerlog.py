"""Under GitHub Actions nothing but the CLI's own annotations reads as a workflow
command in the job's log, whoever wrote the text (`ui.runnerlog`)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from nebula_build.ui.runnerlog import RunnerLog, write_command

#: what a GitHub runner obeys: `::` starting a line (after spaces), `##[` anywhere; a
#: line ends at \n or \r
_COMMAND = re.compile(r"^\s*::|##\[")


PREVIEW = """\
version = 1
[images.a]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
prompt = "{prompt}"
output = "a.png"
"""


def _commands(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", text) if _COMMAND.search(line)]


def _through(*writes: str) -> str:
    sink = io.StringIO()
    log = RunnerLog(sink)
    for text in writes:
        log.write(text)
    return sink.getvalue()


@pytest.mark.parametrize(
    "writes",
    [
        ("::warning::x\n",),
        ("a\n  ::add-mask::secret\n",),
        ("a\r::stop-commands::t\n",),
        ("\t\u3000::error::x\n",),  # any whitespace the runner trims
        ("x ##[error]y\n",),
        ("  ", "::warning::split after spaces\n"),
        ("x #", "#[error]split\n"),
        ("x ##", "[error]split\n"),
        ("x ", "#", "#", "[error]one at a time\n"),
        ("a##", "#[error]x\n"),
        (":", ":error::x\n"),
        ("\r", "\n::error::after a split line break\n"),
    ],
)
def test_no_line_reads_as_a_workflow_command(writes):
    written = _through(*writes)
    assert _commands(written) == []
    assert written.count("\n") == sum(text.count("\n") for text in writes)  # no line lost


class _Terminal(io.StringIO):
    """A log the runner reads though it is a terminal (`script`, `unbuffer`)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "writes",
    [
        ("  :", ":error::split after a flush\n"),
        ("  ", "::error::spaces flushed first\n"),
        ("x #", "#[error]split after a flush\n"),
        ("x ##", "[error]split after a flush\n"),
        ("a", "::not a command mid-line\n", "::error::but this one\n"),
        ("\x0b:", ":warning::vertical tab\n"),
        (" \u3000", "::warning::ideographic space\n"),
        ("\xa0:", ":warning::no-break space\n"),
    ],
)
def test_a_line_shown_to_a_terminal_before_its_end_is_no_command_either(writes):
    sink = _Terminal()
    log = RunnerLog(sink)
    for text in writes:
        log.write(text)
        log.flush()  # a prompt or a progress line shows at once
    log.finish()
    written = sink.getvalue()
    assert _commands(written) == [], written
    assert written.count("\n") == sum(text.count("\n") for text in writes)
    if writes[0] == "a":
        assert written.startswith("a::not a command mid-line\n")  # as written


def test_plain_text_and_json_pass_unchanged_or_equivalent():
    assert _through("a: b :: c\n", "no ## [here]\n") == "a: b :: c\nno ## [here]\n"
    data = {"prompt": "a ##[error] x", "alt": "::warning::y"}
    written = _through(json.dumps(data, indent=2) + "\n")
    assert _commands(written) == [] and json.loads(written) == data


def test_own_commands_go_through_on_a_line_of_their_own():
    sink = io.StringIO()
    log = RunnerLog(sink)
    log.write("half a line")
    write_command(log, "::error file=images.toml,line=3::bad")
    assert sink.getvalue() == "half a line\n::error file=images.toml,line=3::bad\n"


def test_text_from_a_pull_request_cannot_command_the_runner(project, run_cli, monkeypatch):
    """A prompt is printed as it is (it is printable text); `##[error]` in it was obeyed."""
    manifest = PREVIEW.format(prompt="a fox ##[error]INJECTED")
    root = project({"images.toml": manifest})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest.replace("a fox", "a red fox"))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "INJECTED" in out and _commands(out + err) == []
    # the CLI's own annotations still reach the runner
    (root / "images.toml").write_text("version = 1\n[images.a]\nprompt = 3\n")
    code, out, err = run_cli("plan")
    assert code == 1
    assert re.search(r"^::error file=images.toml,line=3", out, re.M)


def test_what_python_itself_prints_is_neutralised_too(tmp_path):
    """A traceback, a warning: under GitHub Actions the process's own streams go
    through RunnerLog, and an unfinished last line is written at exit."""
    script = (
        "from nebula_build.ui.runnerlog import guard_process_streams\n"
        "guard_process_streams()\n"
        "import sys, warnings\n"
        "sys.stdout.writelines(['ok\\n', '::warning::', 'w\\n'])\n"
        "warnings.warn('\\n::error::from a warning')\n"
        "sys.stderr.write('::notice::unfinished')\n"
        "raise RuntimeError('\\n##[error]from a traceback')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 1
    assert "from a traceback" in done.stderr and "unfinished" in done.stderr
    assert "from a warning" in done.stderr and done.stdout.startswith("ok\n")
    assert _commands(done.stdout) == [] and _commands(done.stderr) == []
