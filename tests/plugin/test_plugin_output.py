"""What a plugin prints stays off stdout, which carries the command's output alone."""

from __future__ import annotations

import io
import json
import select
import subprocess
import sys
import threading

import pytest

from tests.plugin.conftest import plugin_source, process_environment

CHATTY = plugin_source(
    "chatty",
    """
    @classmethod
    def models(cls, settings):
        print("listing models")
        return nebula_models()

    async def generate(self, request):
        print("generating", request.image_name)
        sys.stdout.write("raw write\\n")
        return GenerationResult(await asyncio.to_thread(painted, request))
    """,
    preamble="""
    def painted(request):
        print("painting", request.image_name, "in a thread")
        return png(request)
    """,
)
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


GATED = plugin_source(
    "gated",
    """
    @classmethod
    def models(cls, settings):
        command, listing, go_on = gates.pop(0)
        listing.set()
        assert go_on.wait(10)
        print("listed by", command)
        return nebula_models()
    """,
    preamble="""
    gates = []  # per models() call, in the order they come: (its command, it is listing, go on)
    """,
)


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


BELOW_PYTHON = plugin_source(
    "below",
    """
    async def generate(self, request):
        subprocess.run(["echo", "from a subprocess"], check=True)
        os.write(1, b"from descriptor 1\\n")
        return GenerationResult(png(request))
    """,
    preamble="""
    import subprocess
    """,
)


def test_apply_json_stays_json_when_a_subprocess_writes_to_descriptor_1(
    install, project, cli_process
):
    """A subprocess, or C code, writes to descriptor 1 itself, not through sys.stdout:
    only a real process shows where that lands."""
    install("below", BELOW_PYTHON)
    project({"images.toml": MANIFEST.replace('"chatty"', '"below"')})
    done = cli_process("apply", "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["status"] == "ok"
    assert "from a subprocess\n" in done.stderr and "from descriptor 1\n" in done.stderr


WAITING = plugin_source(
    "waiting",
    """
    async def generate(self, request):
        for _ in range(200):  # until the test has read the plan: 20 s at most
            if os.path.exists(os.environ["WAITING_GO"]):
                break
            await asyncio.sleep(0.1)
        return GenerationResult(png(request))
    """,
)


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
def test_stdout_is_written_as_it_comes_where_python_is_unbuffered(
    unbuffered, install, project, sites, tmp_path
):
    """Under PYTHONUNBUFFERED (CI's live log) the plan reaches stdout before the images
    are generated, as it did when stdout was Python's own; buffered, it may wait."""
    install("waiting", WAITING)
    project({"images.toml": MANIFEST.replace('"chatty"', '"waiting"')})
    go = tmp_path / "go"
    environment = process_environment(sites, WAITING_GO=str(go))
    environment.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        environment["PYTHONUNBUFFERED"] = unbuffered
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if unbuffered:  # the plugin waits 20 s for the test to have read the plan
            assert select.select([process.stdout], [], [], 10)[0], "no plan while generating"
            assert process.stdout.readline() == "nebula-build will perform these actions:\n"
        go.touch()
        assert process.wait(timeout=60) == 0
    finally:
        go.touch()
        process.stdout.close()
        if process.poll() is None:
            process.kill()
