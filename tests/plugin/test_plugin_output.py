"""What a plugin prints stays off stdout, which carries the command's output alone."""

from __future__ import annotations

import json

import pytest

CHATTY = """
import asyncio, io, sys
from PIL import Image
from nebula_build.plugin import Backend, GenerationResult, hookimpl, nebula_models

def png(request):
    print("painting", request.image_name, "in a thread")
    buffer = io.BytesIO()
    Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
    return buffer.getvalue()

class Chatty(Backend):
    name = "chatty"

    @classmethod
    def models(cls, settings):
        print("listing models")
        return nebula_models()

    async def generate(self, request):
        print("generating", request.image_name)
        sys.stdout.write("raw write\\n")
        return GenerationResult(await asyncio.to_thread(png, request))

@hookimpl
def nebula_build_register_backends():
    return [Chatty]
"""
MANIFEST = (
    'version = 1\n[defaults]\nbackend = "chatty"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)


@pytest.fixture
def chatty(install, project):
    install("chatty", CHATTY)
    return project({"images.toml": MANIFEST})


def test_apply_json_stays_json_when_a_plugin_prints(chatty, run_cli, capsys):
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    (result,) = json.loads(out)["results"]
    assert result["status"] == "ok"
    for said in ("listing models\n", "generating a\n", "raw write\n", "painting a in a thread\n"):
        assert said in err
    assert capsys.readouterr().out == ""  # nothing went to the process's stdout either


def test_plan_json_stays_json_when_a_plugin_prints(chatty, run_cli):
    code, out, err = run_cli("plan", "--json")
    assert code == 0 and json.loads(out)["summary"]["create"] == 1
    assert "listing models\n" in err
    code, out, err = run_cli("models", "--backend", "chatty")
    assert code == 0 and "listing models" not in out and "listing models\n" in err
