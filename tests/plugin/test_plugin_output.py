"""What a plugin prints stays off stdout, which carries the command's output alone."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO, install_distribution

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


GATED = """
from nebula_build.plugin import Backend, hookimpl, nebula_models

gates = []  # per models() call, in the order they come: (its command, it is listing, go on)

class Gated(Backend):
    name = "gated"

    @classmethod
    def models(cls, settings):
        command, listing, go_on = gates.pop(0)
        listing.set()
        assert go_on.wait(10)
        print("listed by", command)
        return nebula_models()

@hookimpl
def nebula_build_register_backends():
    return [Gated]
"""


def test_two_commands_at_once_give_stdout_back(install, project, monkeypatch):
    """An embedder running two commands in threads: the first ends while the second
    runs. What each plugin prints goes to a command's stderr, and stdout is the
    process's again once both have ended."""
    install("gated", GATED)
    project({})
    import importlib

    from nebula_build.cli import main

    gates = importlib.import_module("nebula_gated").gates
    process_stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", process_stdout)
    streams = {name: (io.StringIO(), io.StringIO()) for name in ("first", "second")}
    codes: dict[str, int] = {}

    def command(name: str) -> None:
        out, err = streams[name]
        codes[name] = main(["models", "--backend", "gated"], out=out, err=err)

    threads, events = {}, {}
    for name in ("first", "second"):  # the second starts while the first runs
        events[name] = (threading.Event(), threading.Event())
        gates.append((name, *events[name]))
        threads[name] = threading.Thread(target=command, args=(name,), name=name)
        threads[name].start()
        assert events[name][0].wait(10)
    for name in ("first", "second"):  # the first ends first
        events[name][1].set()
        threads[name].join(10)
    assert codes == {"first": 0, "second": 0}
    assert sys.stdout is process_stdout
    assert process_stdout.getvalue() == ""
    said = "".join(err.getvalue() for _, err in streams.values())
    assert "listed by first\n" in said and "listed by second\n" in said
    assert all("FLUX" in out.getvalue() for out, _ in streams.values())


BELOW_PYTHON = """
import io, os, subprocess
from PIL import Image
from nebula_build.plugin import Backend, GenerationResult, hookimpl, nebula_models

class Below(Backend):
    name = "below"

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        subprocess.run(["echo", "from a subprocess"], check=True)
        os.write(1, b"from descriptor 1\\n")
        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
        return GenerationResult(buffer.getvalue())

@hookimpl
def nebula_build_register_backends():
    return [Below]
"""


def test_apply_json_stays_json_when_a_subprocess_writes_to_descriptor_1(project, tmp_path):
    """A subprocess, or C code, writes to descriptor 1 itself, not through sys.stdout:
    only a real process shows where that lands."""
    site = tmp_path / "site"
    install_distribution(
        site, "nebula-below", {"nebula_below": BELOW_PYTHON}, {"below": "nebula_below"}
    )
    root = project({"images.toml": MANIFEST.replace('"chatty"', '"below"')})
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "nebula_build", "apply", "--json"],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["status"] == "ok"
    assert "from a subprocess\n" in done.stderr and "from descriptor 1\n" in done.stderr
