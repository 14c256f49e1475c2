"""A plugin's own thread that fails."""

from __future__ import annotations

from tests.plugin.conftest import plugin_source

MANIFEST = (
    'version = 1\n[defaults]\nbackend = "acme"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)


#: a background thread of its own that dies, saying the key it holds
DIES = plugin_source(
    "acme",
    """
    @classmethod
    def secret_variables(cls, settings):
        return ("ACME_API_KEY",)

    async def generate(self, request):
        thread = threading.Thread(target=boom)
        thread.start()
        thread.join()
        return GenerationResult(png(request))
    """,
    preamble="""
    def boom():
        raise RuntimeError(f"acme background thread died {os.environ['ACME_API_KEY']}")
    """,
)


def test_a_plugin_thread_that_dies_is_one_line_naming_the_plugin(install, project, cli_process):
    """It was Python's "Exception in thread Thread-1 (boom):" and its traceback, mixed
    into the progress lines."""
    install("acme", DIES)
    project({"images.toml": MANIFEST})
    key = "acme-secret-key-123456"
    done = cli_process("apply", ACME_API_KEY=key)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and key not in done.stderr
    assert (
        "warning: a thread of backend 'acme' from nebula-acme 0.1 failed: "
        "RuntimeError: acme background thread died [redacted] (a bug in that plugin: "
        "report it to its authors; NEBULA_BUILD_DEBUG=1 shows the traceback)\n"
    ) in done.stderr
    debug = cli_process("apply", "--replace", "a", ACME_API_KEY=key, NEBULA_BUILD_DEBUG="1")
    assert "Traceback" in debug.stderr and "in boom" in debug.stderr
    assert key not in debug.stderr
