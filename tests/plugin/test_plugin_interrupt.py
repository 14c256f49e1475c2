"""A plugin's threads: Ctrl-C does not wait for one."""

from __future__ import annotations

from tests.plugin.conftest import plugin_source

MANIFEST = (
    'version = 1\n[defaults]\nbackend = "acme"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)

#: a request made with a blocking client in asyncio.to_thread, that the server never answers
HANGS = plugin_source(
    "acme",
    """
    paid = True

    async def generate(self, request):
        await asyncio.to_thread(blocking_request)
        return GenerationResult(png(request))
    """,
    preamble="""
    import time
    from pathlib import Path

    def blocking_request():
        Path("sent").touch()
        time.sleep(30)  # urllib waiting for an answer
    """,
)


def test_ctrl_c_does_not_wait_for_a_request_made_in_a_thread(install, project, interrupted):
    """The command had not exited until the request's thread did: up to the request's
    timeout with a server that hung."""
    install("acme", HANGS)
    root = project({"images.toml": MANIFEST})
    ended = interrupted("apply", "--yes", when=root / "sent", within=25)
    err = ended.err
    assert ended.code == 130, err
    assert ended.took < 5, ended.took
    assert "interrupted with 0 of 1 image finished" in err
    assert "the request in flight may have been billed: 1 to acme (a)" in err
    assert "Traceback" not in err


def test_a_call_its_timeout_gave_up_on_does_not_hold_the_command(install, project, cli_process):
    """The request's thread ran on past `timeout`: apply said the image failed, then
    hung in the event loop's shutdown, waiting for the thread, with no summary, and
    Ctrl-C or SIGTERM no longer ended it."""
    import time

    install("acme", HANGS.replace("time.sleep(30)", "time.sleep(120)"))
    project({"images.toml": MANIFEST + "[backends.acme]\ntimeout = 1\n"})
    started = time.monotonic()
    done = cli_process("apply", "--yes")
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.stderr
    assert "a: no image from acme within 1s" in done.stdout + done.stderr
    assert (
        "Apply finished in " in done.stdout and ": 0 done (0 generated), 1 failed." in done.stdout
    )
    assert "Traceback" not in done.stderr
