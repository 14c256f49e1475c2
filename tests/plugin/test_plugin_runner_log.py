"""Under GitHub Actions, what a plugin writes below Python (a subprocess, C code,
os.write) reaches the job's log with no workflow command the runner would obey, and
without the backends' secrets; nebula-build's own annotations are still obeyed."""

from __future__ import annotations

import re

import pytest

from tests.plugin.conftest import plugin_source

TOKEN = "sk-secret/123+456789"
BELOW = plugin_source(
    "below",
    """
    @classmethod
    def secret_variables(cls, settings):
        return ("BELOW_TOKEN",)

    @classmethod
    def models(cls, settings):
        token = os.environ["BELOW_TOKEN"]
        os.write(2, b"::add-mask::hidden\\n")
        subprocess.run(
            ["sh", "-c", "echo '::error::from a subprocess'; echo '  ::stop-commands::tok' >&2"],
            check=True,
        )
        os.write(1, b"old form ##[error]anywhere\\n")
        os.write(2, f"the token {token}\\n".encode())
        os.write(2, b"x" * 3_000_000 + b"\\n")
        threading.Thread(target=threading.Event().wait, daemon=True).start()  # kept running
        os.write(2, b"::warning::unfinished at the end")
        return nebula_models()

    async def generate(self, request):
        raise RequestRejectedError("refused by the studio", backend=self.name)
    """,
    preamble="""
    import subprocess
    """,
)
MANIFEST = (
    'version = 1\n[defaults]\nbackend = "below"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)
#: a line the runner reads as a workflow command
COMMAND = re.compile(r"^\s*::|##\[", re.MULTILINE)


@pytest.fixture
def below(install, project):
    install("below", BELOW)
    return project({"images.toml": MANIFEST})


def test_what_a_plugin_writes_below_python_is_no_command_in_the_log(below, cli_process):
    """A plugin's subprocess printing `::add-mask::` or `::stop-commands::` was obeyed by
    the runner: it reached the log as it was, past the neutralising Python streams."""
    done = cli_process("apply", GITHUB_ACTIONS="true", BELOW_TOKEN=TOKEN)
    assert done.returncode == 1, done.stderr
    ours = [line for line in done.stdout.splitlines() if COMMAND.match(line)]
    assert ours == ["::error file=images.toml,line=5,col=1::a: refused by the studio"]
    said = done.stderr
    assert COMMAND.findall(said) == [], [line for line in said.splitlines() if "::" in line]
    for neutral in (
        ": :add-mask::hidden\n",
        ": :error::from a subprocess\n",
        "  : :stop-commands::tok\n",
        "old form #\\u0023[error]anywhere\n",
        "the token [redacted]\n",
        ": :warning::unfinished at the end",
    ):
        assert neutral in said
    assert "x" * 3_000_000 + "\n" in said
    assert TOKEN not in said + done.stdout
    assert said.index(": :add-mask::") < said.index("error: ")


def test_a_plugins_unfinished_line_below_python_reaches_the_log_as_the_command_ends(
    below, cli_process
):
    """The process ends past a plugin's thread still running (os._exit): what it wrote
    to descriptor 2 is in the log first, its unfinished line on a line of its own."""
    done = cli_process("plan", GITHUB_ACTIONS="true", BELOW_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Plan: 1 to generate" in done.stdout
    assert done.stderr.endswith("x\n: :warning::unfinished at the end\n")


def test_outside_github_actions_descriptors_are_left_alone(below, cli_process):
    done = cli_process("apply", BELOW_TOKEN=TOKEN)
    assert done.returncode == 1
    assert "\n::add-mask::hidden\n" in "\n" + done.stderr
