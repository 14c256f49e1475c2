"""A plugin's secrets: the variables it names are kept out of everything it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin.conftest import plugin_source

TOKEN = "sk-secret/123+456789"

LEAKY = plugin_source(
    "studio",
    """
    @classmethod
    def models(cls, settings):
        if os.environ.get("STUDIO_CHATTER"):
            print(f"listing models for {token()}")
        return nebula_models()

    @classmethod
    def secret_variables(cls, settings):
        return ("STUDIO_TOKEN",)

    @classmethod
    async def remote_models(cls, settings):
        raise RuntimeError(f"GET https://studio.test/models?key={token()} said 500")

    @classmethod
    def preflight(cls, settings, root):
        if os.environ.get("STUDIO_REFUSE"):
            raise CredentialsError(f"the server refused token {token()}")
        if os.environ.get("STUDIO_PREFLIGHT_CRASH"):
            raise RuntimeError(f"preflight saw {token()}")

    async def generate(self, request):
        said = request.prompt
        if os.environ.get("STUDIO_CHATTER"):
            print(f"printed {token()}")
            sys.stderr.write(f"wrote {token()}\\n")
        if said == "crash":
            raise RuntimeError(f"server said 500 for token {token()}")
        if said == "url":
            raise RuntimeError(f"GET https://studio.test/v1?key={quote(token(), safe='')}")
        if said == "reject":
            raise RequestRejectedError(f"rejected for {token()}", backend=self.name)
        if said == "warn":
            return GenerationResult(png(request), warnings=(f"slow answer for {token()}",))
        if said == "record":
            return GenerationResult(png(request), made_with={"token": token()})
        return GenerationResult(png(request), made_with={"server": "v2"})
    """,
    preamble="""
    from urllib.parse import quote

    def token():
        return os.environ["STUDIO_TOKEN"]
    """,
)

IMAGES = ("crash", "url", "reject", "warn", "record", "fine")
MANIFEST = (
    'version = 1\n[defaults]\nbackend = "studio"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
)
MANIFEST += "".join(
    f'[images.{name}]\nprompt = "{name}"\nwidth = 64\nheight = 64\noutput = "{name}.png"\n'
    for name in IMAGES
)


def _leaks(root: Path, *texts: str) -> list[str]:
    """Where the token (or its URL-encoded form) is: texts by index, files by path."""
    forms = (TOKEN, TOKEN.replace("/", "%2F").replace("+", "%2B"))
    found = [f"text {i}" for i, text in enumerate(texts) if any(f in text for f in forms)]
    for path in root.rglob("*"):
        if path.is_file() and any(f.encode() in path.read_bytes() for f in forms):
            found.append(str(path.relative_to(root)))
    return found


@pytest.fixture
def studio(install, project, monkeypatch):
    monkeypatch.setenv("STUDIO_TOKEN", TOKEN)
    install("studio", LEAKY)
    return project({"images.toml": MANIFEST})


def test_a_plugins_token_reaches_no_output_and_no_file(studio, run_cli):
    code, out, err = run_cli("apply")
    assert code == 1
    assert "warning: warn: slow answer for [redacted]\n" in err
    assert "reject: rejected for [redacted]\n" in err
    assert "crash: backend 'studio' from nebula-studio 0.1 failed in generate: " in err
    assert "RuntimeError: server said 500 for token [redacted] (a bug" in err
    assert "RuntimeError: GET https://studio.test/v1?key=[redacted] (a bug" in err
    assert (
        "record: backend 'studio' from nebula-studio 0.1 returned a made_with record that "
        "holds the value of STUDIO_TOKEN in `token` (a bug in that plugin" in err
    )
    assert not (studio / "record.png").exists()
    lock = (studio / "images.lock").read_text()
    assert "[images.fine]" in lock and "[images.warn]" in lock and "[images.record]" not in lock
    inspected = [run_cli("inspect", f"{name}.png") for name in ("fine", "warn")]
    assert all(result.code == 0 for result in inspected)
    assert "made with: plugin nebula-studio 0.1, server v2" in inspected[0].out
    assert _leaks(studio, out, err, *(r.out + r.err for r in inspected)) == []


def test_a_plugins_token_stays_out_of_apply_json(studio, run_cli):
    code, out, err = run_cli("apply", "--json")
    assert code == 1
    results = {r["image"]: r for r in json.loads(out)["results"]}
    assert results["warn"]["warnings"] == ["slow answer for [redacted]"]
    assert results["reject"]["error"] == "rejected for [redacted]"
    assert _leaks(studio, out, err) == []


def test_a_plugins_preflight_error_is_said_without_its_token(studio, run_cli, monkeypatch):
    monkeypatch.setenv("STUDIO_REFUSE", "1")
    code, out, err = run_cli("apply")
    assert code == 1 and "will perform these actions" in out  # the plan it refused
    assert err == (
        "error: backend 'studio' from nebula-studio 0.1 cannot run here: "
        "the server refused token [redacted]\n"
    )
    assert _leaks(studio, out, err) == []


def test_what_a_plugin_prints_or_writes_to_stderr_itself_is_without_its_token(
    studio, run_cli, monkeypatch, capsys
):
    """A plugin's own print() went to stderr as it was, and sys.stderr is its own to
    write to: a token there reached the terminal and CI's log."""
    monkeypatch.setenv("STUDIO_CHATTER", "1")
    code, out, err = run_cli("plan")
    assert code == 0 and "listing models for [redacted]\n" in err
    code, out, err = run_cli("apply", "--json")
    assert code == 1 and len(json.loads(out)["results"]) == len(IMAGES)
    written = capsys.readouterr()
    assert "printed [redacted]\n" in err and "wrote [redacted]\n" in written.err
    assert _leaks(studio, out, err, written.out, written.err) == []


def test_debug_tracebacks_show_a_plugins_crash_without_its_token(studio, run_cli, monkeypatch):
    """NEBULA_BUILD_DEBUG=1 showed the plugin's exception as it was raised, token and all;
    and an apply's failures, which say that it shows their traceback, showed none."""
    monkeypatch.setenv("NEBULA_BUILD_DEBUG", "1")
    code, out, err = run_cli("apply")
    assert code == 1
    assert 'raise RuntimeError(f"server said 500 for token {token()}")' in err
    assert "RuntimeError: server said 500 for token [redacted]\n" in err
    assert _leaks(studio, out, err) == []
    monkeypatch.setenv("STUDIO_PREFLIGHT_CRASH", "1")
    code, out, err = run_cli("apply", "--replace", "fine")
    assert code == 1 and "RuntimeError: preflight saw [redacted]\n" in err
    assert "Traceback (most recent call last)" in err
    assert _leaks(studio, out, err) == []


def test_a_plugins_remote_model_list_fails_without_its_token(studio, run_cli):
    """`models --remote` called the plugin outside the boundary that knows its secrets."""
    code, out, err = run_cli("models", "--remote", "--backend", "studio")
    assert code == 1 and out == ""
    assert err == (
        "error: backend 'studio' from nebula-studio 0.1 failed in remote_models: RuntimeError: "
        "GET https://studio.test/models?key=[redacted] said 500 (a bug in that plugin: report "
        "it to its authors; NEBULA_BUILD_DEBUG=1 shows the traceback)\n"
    )
    assert _leaks(studio, out, err) == []


def test_the_nebula_backend_names_its_key_variable_to_the_engine(monkeypatch):
    from nebula_build.backends.nebula import NebulaSettings
    from nebula_build.plugin.manager import load_registry

    monkeypatch.setenv("NEBULA_API_KEY_STAGING", "nb-staging-key-1234")
    plugin = load_registry().get("nebula")
    settings = NebulaSettings(api_key_env="NEBULA_API_KEY_STAGING")
    assert plugin.secrets(settings) == {"NEBULA_API_KEY_STAGING": "nb-staging-key-1234"}


@pytest.mark.parametrize(
    ("value", "shown"), [("er", "er"), ("serv", "[redacted]")], ids=["no secret", "short"]
)
def test_a_short_secret_is_redacted_where_it_stands_alone_not_inside_every_word(
    install, project, monkeypatch, run_cli, value, shown
):
    """A variable set to a placeholder (CI for a fork's pull request: "er", "x", "1")
    had every word holding those letters cut ("s[redacted]v[redacted]"), and every
    image whose made_with record held them failed after it was paid for. Under four
    characters it is no secret; a short one is taken where it stands alone."""
    monkeypatch.setenv("STUDIO_TOKEN", value)
    install("studio", LEAKY)
    root = project({"images.toml": MANIFEST})
    code, out, err = run_cli("apply")
    assert f"warning: warn: slow answer for {shown}\n" in err
    assert "fine:" not in err, err
    assert "[images.fine]" in (root / "images.lock").read_text()
    shown = run_cli("inspect", "fine.png")
    assert shown.code == 0 and "made with: plugin nebula-studio 0.1, server v2" in shown.out


CHATTY_WITH_A_LONG_SECRET = plugin_source(
    "keyed",
    """
    @classmethod
    def secret_variables(cls, settings):
        return ("KEYED_CREDENTIALS",)

    async def generate(self, request):
        for step in range(150):
            request.on_activity(f"step {step}: " + "waiting for the queue " * 200)
        leak = os.environ["KEYED_CREDENTIALS"][1000:1040]
        return GenerationResult(png(request), warnings=(f"slow answer for {leak}",))
    """,
)


def test_a_long_secret_costs_each_message_no_more_than_a_short_one(
    install, project, run_cli, monkeypatch
):
    """A credentials file in a variable (30 KB) cost every message a plugin said 0.2 s
    (each of its windows was looked for in the message): 150 progress lines, 30 s."""
    import random
    import string
    import time

    draw = random.Random(7)
    credentials = "".join(draw.choice(string.ascii_letters) for _ in range(30_000))
    monkeypatch.setenv("KEYED_CREDENTIALS", credentials)
    install("keyed", CHATTY_WITH_A_LONG_SECRET)
    project(
        {
            "images.toml": MANIFEST.split("[images.")[0].replace("studio", "keyed")
            + ('[images.a]\nprompt = "a"\nwidth = 64\nheight = 64\noutput = "a.png"\n')
        }
    )
    started = time.perf_counter()
    code, _, err = run_cli("apply")
    elapsed = time.perf_counter() - started
    assert code == 0, err
    assert "warning: a: slow answer for [redacted]\n" in err
    assert elapsed < 10, elapsed


def test_an_answer_refused_for_its_record_counts_as_generated_then_refused(studio, run_cli):
    """The plugin answered (and may have billed): its result refused for what it holds is
    a generation refused, not one that never happened."""
    code, out, _ = run_cli("apply", "--json")
    assert code == 1
    data = json.loads(out)
    results = {result["image"]: result for result in data["results"]}
    record, rejected = results["record"], results["reject"]
    assert (record["status"], record["generated"], record["refused"]) == ("failed", True, True)
    assert (rejected["generated"], rejected["refused"]) == (False, False)  # the server's no
    # fine, warn and record were answered; record's answer was refused
    assert (data["generated"], data["refused"]) == (3, 1)
