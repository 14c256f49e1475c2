"""Attacks on the worker threads that hold a plugin's blocking hooks to its timeout."""

from __future__ import annotations

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
