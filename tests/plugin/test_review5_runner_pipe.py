"""Attacks on the pipe that descriptors 1 and 2 pass under GitHub Actions (cli/runnerpipe.py):
a secret across the parts of a long line, a writer that outlives the command, a drain
that waits on a writer that never stops."""

from __future__ import annotations

import resource
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


def test_a_writer_left_running_does_not_hold_the_command_end(install, project, sites):
    """A drain waited for the pipe to be empty: a subprocess left writing without a
    pause held the command's end 5 s twice (11 s for a plan), past which it gave up."""
    install("piped", piped('subprocess.Popen(["yes", "busy line"])', preamble="import subprocess"))
    project({"images.toml": MANIFEST})
    started = time.monotonic()
    done = subprocess.run(  # the log read by a pipe, as the runner reads it
        f"{shlex.quote(sys.executable)} -m nebula_build plan 2>&1 >plan.txt | tail -c 100",
        shell=True,
        env=process_environment(sites, GITHUB_ACTIONS="true", PIPED_TOKEN=SHORT_TOKEN),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert time.monotonic() - started < 5
    assert "Plan: 1 to generate" in Path("plan.txt").read_text(encoding="utf-8")
    assert "\nbusy line\n" in done.stdout


def slow_log(sites, marker, wait_then):
    """Runs a plan whose plugin writes 100 KB to descriptor 2 and then creates `marker`,
    with a log that takes nothing until `marker` exists and `wait_then(process)` returns:
    (exit code, stdout, stderr)."""
    with subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "plan"],
        env=process_environment(sites, GITHUB_ACTIONS="true", PIPED_TOKEN=SHORT_TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        wait_then(process)
        out, err = process.communicate(timeout=60)
    return process.returncode, out, err


WRITES_A_LOT = """
    os.write(2, b"z" * 100_000 + b"\\n")
    open("written", "w").close()
"""


def test_what_the_log_is_slow_to_take_is_not_lost(install, project, sites):
    """A command's end waited 5 s for the log to take what was written, twice, then the
    process ended without it: a log read 11 s late lost what the pipes still held."""
    install("piped", piped(WRITES_A_LOT))
    root = project({"images.toml": MANIFEST})
    code, out, err = slow_log(sites, root / "written", lambda process: time.sleep(11))
    assert code == 0, err[-2000:]
    assert "Plan: 1 to generate" in out
    assert "z" * 100_000 + "\n" in err


def test_a_stop_asked_for_while_the_log_is_drained_ends_without_a_traceback(
    install, project, sites
):
    """SIGTERM while the command's end waited for a slow log to take what was written
    raised KeyboardInterrupt there: a traceback, exit 130."""
    install("piped", piped(WRITES_A_LOT))
    root = project({"images.toml": MANIFEST})

    def stop(process):
        time.sleep(1)  # the plan is made: the command waits for the log
        process.send_signal(signal.SIGTERM)

    code, out, err = slow_log(sites, root / "written", stop)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert (code, "z" * 100_000 + "\n" in err) == (0, True)
    assert "Plan: 1 to generate" in out


def test_c_code_that_writes_a_lot_while_it_holds_the_gil_does_not_hang(run_piped):
    """C code that wrote more than the pipe held (64 KiB) while it held the GIL waited
    for the reader, which waited for the GIL: the command hung for good. The pipe holds
    1 MiB now (past that, such C code still waits: a thread cannot read without the GIL)."""
    done = run_piped(
        """
            data = b"y" * 300_000 + b"\\n"
            ctypes.PyDLL(None).write(2, data, len(data))  # PyDLL keeps the GIL held
        """,
        preamble="import ctypes",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "y" * 300_000 + "\n" in done.stderr


def test_near_the_descriptor_limit_a_command_still_says_what_it_did(project, sites):
    """With no descriptor left for the reader's own pipe, descriptors 1 and 2 had been
    pointed at a pipe no one read: the command ended with 1 and said nothing."""
    root = project({"images.toml": MANIFEST.replace('"piped"', '"preview"')})
    for limit in range(6, 16):
        done = subprocess.run(
            [sys.executable, "-m", "nebula_build", "plan"],
            env=process_environment(sites, GITHUB_ACTIONS="true"),
            preexec_fn=lambda limit=limit: resource.setrlimit(
                resource.RLIMIT_NOFILE, (limit, limit)
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=root,
        )
        assert done.returncode == 0 or done.stdout + done.stderr, limit


def test_an_embedder_running_commands_one_after_another_keeps_no_reader(project, sites):
    """Each command's reader ends with its pipe: none is left reading, or spinning on the
    closed pipe that asked it to drain."""
    root = project({"images.toml": MANIFEST.replace('"piped"', '"preview"')})
    embedder = (
        "import os, threading, time\n"
        "from nebula_build.cli import main\n"
        "for _ in range(30):\n"
        "    main(['plan'])\n"
        "time.sleep(0.5)\n"
        "busy = os.times()\n"
        "time.sleep(1)\n"
        "spent = os.times().user - busy.user\n"
        "readers = [t for t in threading.enumerate() if t.name == 'runner log']\n"
        "print('readers', len(readers), 'spent', round(spent, 2), file=open('said', 'w'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", embedder],
        env=process_environment(sites, GITHUB_ACTIONS="true"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    readers, spent = (root / "said").read_text(encoding="utf-8").split()[1::2]
    assert readers == "0"
    assert float(spent) < 0.5
