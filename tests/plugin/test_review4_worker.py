"""Attacks on the worker threads that hold a plugin's blocking hooks to its timeout."""

from __future__ import annotations

import signal

import pytest

from tests.plugin.conftest import plugin_source

MANIFEST = (
    'version = 1\n[defaults]\nbackend = "quits"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    "[backends.quits]\ntimeout = 5\n"
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)


def quitter(raised: str) -> str:
    """A plugin whose model list raises `raised`, a BaseException but no Exception."""
    return plugin_source(
        "quits",
        f"""
        @classmethod
        def models(cls, settings):
            raise {raised}
        """,
    )


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        ("SystemExit(0)", "SystemExit: 0"),
        ("SystemExit(3)", "SystemExit: 3"),
        ("KeyboardInterrupt()", "KeyboardInterrupt"),
        ("GeneratorExit()", "GeneratorExit"),
    ],
)
@pytest.mark.parametrize("command", [["plan"], ["apply", "--json"]], ids=["plan", "apply"])
def test_a_hook_that_raises_systemexit_in_its_thread_fails_as_a_plugin_bug(
    raised, said, command, install, project, cli_process
):
    """SystemExit(0) had ended `apply --json` with 0 and nothing done or said; a
    KeyboardInterrupt no one pressed said "interrupted" (130); GeneratorExit a traceback."""
    install("quits", quitter(raised))
    root = project({"images.toml": MANIFEST})
    done = cli_process(*command)
    assert done.returncode == 1, done.stderr
    assert f"backend 'quits' from nebula-quits 0.1 failed in models: {said}" in done.stderr
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr
    assert not (root / "a.png").exists()


#: watched_files written as a generator, that walks on and on (a tree as big as a disk)
WALKER = plugin_source(
    "quits",
    """
    @classmethod
    def watched_files(cls, settings, root):
        while True:
            time.sleep(0.2)
            yield root / "data.txt"
    """,
    preamble="""
    import time
    """,
)


def test_a_hook_written_as_a_generator_is_held_to_the_timeout_too(install, project, cli_process):
    """Its body ran as its result was read, on the command's thread, past the timeout:
    `watch` never started, and one Ctrl-C (or SIGTERM) did not stop it."""
    install("quits", WALKER)
    project({"images.toml": MANIFEST.replace("timeout = 5", "timeout = 1")})
    done = cli_process("watch", "--once")
    assert done.returncode == 1, done.stderr
    assert (
        "backend 'quits' from nebula-quits 0.1 did not name its watched files within 1s"
        in done.stderr
    )
    assert "Traceback" not in done.stderr


#: watched_files that hangs (a network share gone), and says so with a file first
HANGS = plugin_source(
    "quits",
    """
    @classmethod
    def watched_files(cls, settings, root):
        (root / "hanging").touch()
        time.sleep(60)
        return []
    """,
    preamble="""
    import time
    """,
)


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_ctrl_c_stops_watch_while_a_hook_hangs(sent, install, project, interrupted):
    """watch had waited for the hook's timeout (30s here, 120s unless set) after one Ctrl-C:
    asyncio only cancels the round, and the round was waiting for the hook's thread."""
    install("quits", HANGS)
    root = project({"images.toml": MANIFEST.replace("timeout = 5", "timeout = 30")})
    ended = interrupted("watch", when=root / "hanging", signum=sent, within=5)
    assert ended.code == 0, ended.err
    assert "stopped" in ended.out and "Traceback" not in ended.err


@pytest.mark.parametrize(
    ("methods", "hook"),
    [
        ("async def generate(self, request):\n    raise SystemExit(0)", "generate"),
        (
            "keeps_timeout = True\n\n@classmethod\ndef models(cls, settings):\n"
            "    raise SystemExit(0)",
            "models",
        ),
    ],
    ids=["generate", "keeps_timeout"],
)
def test_sys_exit_in_a_plugin_on_the_command_thread_fails_as_a_plugin_bug(
    methods, hook, install, project, cli_process
):
    """`apply --json` had exited 0, printing nothing and writing nothing, for CI to read as
    done: the plugin's SystemExit ended the command wherever it ran."""
    install("quits", plugin_source("quits", methods))
    root = project({"images.toml": MANIFEST})
    done = cli_process("apply", "--json")
    assert done.returncode == 1, done.stderr
    assert f"backend 'quits' from nebula-quits 0.1 failed in {hook}: SystemExit: 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (root / "a.png").exists()
