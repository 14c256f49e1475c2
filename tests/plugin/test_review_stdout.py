"""Attacks on today's stdout handling: descriptor 1 pointed at stderr during a command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.plugin.conftest import plugin_source, process_environment

#: a plugin that keeps sys.stdout as it is when imported (as logging.basicConfig or a
#: console object does) and writes to it once the command is over
KEEPER = plugin_source(
    "keeper",
    preamble="""
    import atexit
    KEPT = sys.stdout
    atexit.register(lambda: print("keeper session closed", file=KEPT, flush=True))
    """,
)
MANIFEST = (
    'version = 1\n[defaults]\nbackend = "keeper"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)


@pytest.fixture
def keeper(install, project):
    install("keeper", KEEPER)
    return project({"images.toml": MANIFEST})


def test_a_stdout_kept_from_the_command_still_writes_after_it(keeper, cli_process):
    done = cli_process("plan")
    assert done.returncode == 0, done.stderr
    assert "Plan: 1 to generate" in done.stdout
    assert "closed file" not in done.stderr and "Traceback" not in done.stderr
    assert "keeper session closed" in done.stdout + done.stderr


EMBEDDER = """
import sys
from nebula_build.cli import main
for _ in range(2):
    print("rc", main(["models", "--backend", "keeper", "--json"]), file=sys.stderr, flush=True)
"""
TALKER = plugin_source(
    "keeper",
    """
    @classmethod
    def models(cls, settings):
        print("listing models", file=KEPT)
        return nebula_models()
    """,
    preamble="""
    KEPT = sys.stdout
    """,
)


def test_a_second_command_in_one_process_keeps_a_kept_stdout_off_its_json(install, project, sites):
    install("keeper", TALKER)
    project({"images.toml": MANIFEST})
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDER],
        env=process_environment(sites),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr.count("rc 0") == 2, done.stderr
    assert done.stderr.count("listing models") == 2
    decoder, text, documents = json.JSONDecoder(), done.stdout.strip(), 0
    while text:  # two JSON documents, nothing else
        _, end = decoder.raw_decode(text)
        text, documents = text[end:].strip(), documents + 1
    assert documents == 2


#: a preflight that never ends, its threads printing all the while
CHATTERING = plugin_source(
    "chatter",
    """
    @classmethod
    def preflight(cls, settings, root):
        for _ in range(4):
            threading.Thread(target=chatter, daemon=True).start()
        chatter()
    """,
    preamble="""
    def chatter():
        while True:
            print("still checking the GPU", flush=True)
    """,
)
CHATTER_TIMEOUT = "[backends.chatter]\ntimeout = 0.2\n"


def test_a_hook_left_printing_past_its_timeout_does_not_crash_the_exit(
    install, project, cli_process
):
    """Closing the copy of stdout under one of those prints crashed the interpreter
    (exit 139) in about one run of ten: this runs it a few times."""
    install("chatter", CHATTERING)
    project({"images.toml": MANIFEST.replace('"keeper"', '"chatter"') + CHATTER_TIMEOUT})
    for _ in range(3):
        done = cli_process("apply", "--json")
        assert done.returncode == 1, done.stderr[-2000:]
        assert "did not end its preflight within 0.2s" in done.stderr
