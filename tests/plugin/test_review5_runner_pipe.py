"""Attacks on the pipe that descriptors 1 and 2 pass under GitHub Actions (cli/runnerpipe.py):
a secret across the parts of a long line, a writer that outlives the command, a drain
that waits on a writer that never stops."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.plugin.conftest import plugin_source, process_environment

MANIFEST = (
    'version = 1\n[defaults]\nbackend = "piped"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)
#: short enough that the two parts a cut leaves are each shorter than a fragment redacted
SHORT_TOKEN = "pw-Zq81xk4u"


def piped(models_body: str, preamble: str = "") -> str:
    """A plugin named `piped` with the secret variable PIPED_TOKEN, whose model list runs
    `models_body` (with `token` set) first."""
    body = textwrap.indent(textwrap.dedent(models_body).strip("\n"), " " * 12)
    return plugin_source(
        "piped",
        f"""
        @classmethod
        def secret_variables(cls, settings):
            return ("PIPED_TOKEN",)

        @classmethod
        def models(cls, settings):
            token = os.environ["PIPED_TOKEN"]
{body}
            return nebula_models()
        """,
        preamble=preamble,
    )


#: waits until the reader has taken what descriptor 2 holds: the next write starts a read
UNTIL_READ = """
import fcntl, struct, termios, time

def until_read():
    while struct.unpack("i", fcntl.ioctl(2, termios.FIONREAD, b"0000"))[0]:
        time.sleep(0.001)
    time.sleep(0.05)
"""


@pytest.fixture
def run_piped(install, project, cli_process):
    def run(models_body: str, *args: str, preamble: str = "", token: str = SHORT_TOKEN):
        install("piped", piped(models_body, preamble))
        project({"images.toml": MANIFEST})
        return cli_process(*(args or ("plan",)), GITHUB_ACTIONS="true", PIPED_TOKEN=token)

    return run


def test_a_secret_across_the_parts_of_a_long_line_is_redacted(run_piped):
    """A line past 64 KiB is passed on in parts; a secret a part ended in was cut with it:
    "xxx…pw-Zq81x" then "k4u end", each part too short to be taken for a piece of it."""
    done = run_piped(
        """
            os.write(2, b"x" * 70_000 + token[:9].encode())
            until_read()
            os.write(2, token[9:].encode() + b" end\\n")
        """,
        preamble=UNTIL_READ,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x" * 70_000 + "[redacted] end\n" in done.stderr
    assert SHORT_TOKEN[:4] not in done.stderr


def test_what_a_writer_left_running_writes_after_the_command_is_still_redacted(
    install, project, sites
):
    """Embedded, the process lives on past the command: the secrets were forgotten as it
    ended, and a line the plugin's subprocess wrote then reached the log with the token."""
    left_running = 'subprocess.Popen(["sh", "-c", "sleep 0.5; echo late $PIPED_TOKEN"])'
    install("piped", piped(left_running, preamble="import subprocess"))
    project({"images.toml": MANIFEST})
    embedder = (
        "import sys, time\n"
        "from nebula_build.cli import main\n"
        "code = main(['plan'])\n"
        "time.sleep(1.5)\n"
        "print('embedder ends', code, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", embedder],
        env=process_environment(sites, GITHUB_ACTIONS="true", PIPED_TOKEN=SHORT_TOKEN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "late [redacted]\nembedder ends 0\n" in done.stderr
    assert SHORT_TOKEN[:4] not in done.stderr
