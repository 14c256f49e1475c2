"""A plugin's secret written to stdout or stderr through their bytes, or in pieces, is
redacted as it is written whole."""

from __future__ import annotations

import pytest

from tests.plugin.conftest import plugin_source

TOKEN = "sk-secret/123+456789"
PIECES = plugin_source(
    "pieces",
    """
    @classmethod
    def secret_variables(cls, settings):
        return ("PIECES_TOKEN",)

    @classmethod
    def models(cls, settings):
        token = os.environ["PIECES_TOKEN"]
        sys.stderr.buffer.write(f"bytes to stderr {token}\\n".encode())
        sys.stdout.buffer.write(f"bytes to stdout {token}\\n".encode())
        sys.stdout.buffer.flush()
        print("split in two", token[:5], end="", flush=True)
        print(token[5:])
        sys.stderr.write("split at " + token[:15])
        sys.stderr.flush()
        sys.stderr.write(token[15:] + " and done\\n")
        sys.stderr.buffer.write(token[:3].encode())
        sys.stderr.buffer.write((token[3:] + " in bytes, é").encode()[:-1])  # é cut in two
        sys.stderr.buffer.write(b"\\xa9 left unfinished")
        return nebula_models()
    """,
)
MANIFEST = (
    'version = 1\n[defaults]\nbackend = "pieces"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)


@pytest.fixture
def pieces(install, project):
    install("pieces", PIECES)
    return project({"images.toml": MANIFEST})


def test_a_secret_in_bytes_or_in_pieces_is_redacted_in_order(pieces, cli_process):
    """sys.stderr.buffer went to the terminal as it was, and a token printed in two
    writes was two pieces no redaction saw whole ("sk-se" was shown)."""
    done = cli_process("plan", PIECES_TOKEN=TOKEN)
    assert done.returncode == 0, done.stderr
    assert "Plan: 1 to generate" in done.stdout
    said = done.stderr
    for piece in (TOKEN[:5], TOKEN[-5:], "sk-", "56789"):
        assert piece not in said, said
    assert said.index("bytes to stderr [redacted]\n") < said.index("bytes to stdout [redacted]\n")
    assert "split in two [redacted]\n" in said
    assert "split at [redacted] and done\n" in said
    assert said.endswith("[redacted] in bytes, é left unfinished")
    assert "Traceback" not in said
