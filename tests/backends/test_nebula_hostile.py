"""One trust boundary (issue 11), through the CLI: the key goes only where the user's
environment says, a hostile server is cut off and bounded, and nothing it says reaches
the terminal, a file or a page with the key or an escape sequence in it."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import pytest

from nebula_build.testing.server import pixel_bomb_png
from tests.conftest import CANARY_KEY, install_distribution, nebula_manifest

ONE = {"a": {"prompt": "x", "output": "a.png"}}
TWO = {
    "ok": {"prompt": "fine", "output": "ok.png"},
    "hit": {"prompt": "unlucky", "output": "hit.png"},
}


def manifest_with(line: str, images: dict = ONE) -> str:
    """nebula_manifest with one TOML line (inf, nan…) in [backends.nebula], replacing the
    setting's default there."""
    name = line.split(" = ", maxsplit=1)[0]
    text = nebula_manifest(images)
    kept = [kept for kept in text.splitlines() if not kept.startswith(f"{name} = ")]
    return "\n".join(kept).replace("[backends.nebula]", f"[backends.nebula]\n{line}") + "\n"


def everything_written(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


# --- finding 2: the manifest cannot send a secret anywhere -------------------------


def test_a_manifest_base_url_needs_the_environment(project, run_cli, nebula_server, monkeypatch):
    url = nebula_server.base_url
    monkeypatch.delenv("NEBULA_BASE_URL")
    project({"images.toml": nebula_manifest(ONE, base_url=url)})
    expected = (
        f"error: images.toml: [backends.nebula] base_url = '{url}' is not the Nebula Block "
        "API, and images.toml alone may not send NEBULA_API_KEY to another host: set "
        f"NEBULA_BASE_URL={url} in your environment to use it"
    )
    for command in (["apply"], ["models", "--remote"]):
        code, _, err = run_cli(*command)
        assert (code, err.splitlines()) == (1, [expected])
    assert nebula_server.requests == []
    monkeypatch.setenv("NEBULA_BASE_URL", url)  # the user's own choice
    assert run_cli("apply").code == 0
    # the price list and the balance, asked before the run, then the image
    assert [r.authorized for r in nebula_server.requests] == [True, True, True]
    assert len(nebula_server.generations) == 1


@pytest.mark.parametrize(
    "url", ["http://attacker.invalid/x", "https://api.nebulablock.com@attacker.invalid/"]
)
def test_a_manifest_base_url_the_key_may_not_go_to_is_refused(url, project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE, base_url=url)})
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: images.toml:")
    assert "backends.nebula.base_url: must " in err and ": the API key is sent there" in err
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert err.startswith("error: images.toml: [backends.nebula] base_url: must ")
    assert nebula_server.requests == []


def test_the_manifest_cannot_pick_the_key_variable(project, run_cli, nebula_server, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", CANARY_KEY)
    project({"images.toml": nebula_manifest(ONE, api_key_env="GITHUB_TOKEN")})
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.splitlines() == [
        "error: images.toml:12:1: backends.nebula.api_key_env: must name a variable starting "
        "with NEBULA_ (e.g. NEBULA_API_KEY_STAGING): images.toml may not pick which of your "
        'secrets is sent (got "GITHUB_TOKEN")'  # a word: said back, as no key is
    ]
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert err.startswith("error: images.toml: [backends.nebula] api_key_env: must name")
    assert nebula_server.requests == []


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            {"api_key_env": "nb-live-0123456789abcdef"},
            "backends.nebula.api_key_env: must name a variable starting with NEBULA_",
        ),
        (
            {"api_key_env": "nb-live-0123456789abcdef"[:9]},  # short: no word is said back
            "backends.nebula.api_key_env: must name a variable starting with NEBULA_",
        ),
        (
            {"base_url": "https://me:nb-live-0123456789abcdef@api.example/api/v1"},
            "backends.nebula.base_url: must not hold a user name or password",
        ),
        (
            {"api_key": "nb-live-0123456789abcdef"},
            "backends.nebula.api_key: a secret never goes in images.toml, which is committed "
            "and which a pull request can change: set it in the environment (NEBULA_API_KEY, "
            "or another NEBULA_ variable that `api_key_env` names)",
        ),
    ],
    ids=["key-as-variable", "short-key-as-variable", "password-in-url", "api_key"],
)
def test_a_key_written_in_the_manifest_by_mistake_is_not_said_back(
    settings, said, project, run_cli, nebula_server
):
    """A newcomer puts the key itself where its variable's name goes (as the hint for
    `api_key` suggested: "did you mean 'api_key_env'?"): the error said it back, into
    the CI log and its annotations ("(got \"nb-live-…\")")."""
    project({"images.toml": nebula_manifest(ONE, **settings)})
    for args in (("validate",), ("validate", "--json"), ("apply",), ("models", "--remote")):
        code, out, err = run_cli(*args)
        assert code == 1, args
        assert "nb-live-0" not in out + err, args
    code, _, err = run_cli("validate")
    assert said in err and "did you mean" not in err
    assert nebula_server.requests == []


def test_an_environment_base_url_over_plain_http_is_refused(project, run_cli, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    monkeypatch.setenv("NEBULA_BASE_URL", "http://attacker.invalid/api")
    project({"images.toml": nebula_manifest(ONE)})
    code, _, err = run_cli("apply")
    assert (code, err.splitlines()) == (
        1,
        [
            "error: NEBULA_BASE_URL must be an https:// URL (plain http only to 127.0.0.1, "
            "::1 or localhost): the API key is sent there"
        ],
    )


# --- finding 8: deadlines -------------------------------------------------------------


def test_a_trickled_answer_is_cut_off_at_the_timeout(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE, timeout=1, max_attempts=1)})
    nebula_server.add_faults("trickle:0.05")
    started = time.monotonic()
    code, _, err = run_cli("apply")
    assert code == 1 and "a: timed out after 1s" in err
    assert time.monotonic() - started < 5


@pytest.fixture
def asked_to_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Each wait asyncio.sleep is asked for, each cut to 0.01 s."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, result: object = None) -> object:
        asked.append(delay)
        return await real_sleep(min(delay, 0.01), result)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return asked


@pytest.mark.parametrize("value", ["86400", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_far_retry_after_is_capped(value, project, run_cli, nebula_server, asked_to_sleep):
    asked = asked_to_sleep
    project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_faults(f"retry_after:{value}")
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert len(nebula_server.generations) == 2
    assert max(asked) == 60.0
    # said in a log too (no status line there): a CI job's minute was silent
    assert "a: waiting 60 s (Retry-After)\n" in out + err


def test_rate_limits_are_not_hammered_whatever_the_manifests_backoff(
    project, run_cli, nebula_server, asked_to_sleep
):
    """`retry_backoff = 0` and `max_attempts = 20` in a pull request's manifest sent 20
    rate-limited tries in 0.2 s (429s without a Retry-After), for each of its images."""
    asked = asked_to_sleep
    project({"images.toml": nebula_manifest(ONE, retry_backoff=0, max_attempts=4)})
    nebula_server.add_faults("429:0", "429:0", "429:0")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(nebula_server.generations) == 4
    waits = [delay for delay in asked if delay > 0]
    assert len(waits) >= 3 and min(waits) >= 0.5, asked


# --- finding 9: size caps -------------------------------------------------------------


def test_a_huge_error_body_is_not_read(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(TWO, max_attempts=3)})
    nebula_server.add_faults("huge_error:8", "huge_error:8", "huge_error:8", prompt="unlucky")
    code, _, err = run_cli("apply")
    assert code == 1
    assert "hit: server error (HTTP 500: an answer over 64 KiB, not read) (after 3 attempts)" in err


@pytest.mark.slow
def test_a_huge_success_body_is_refused_once(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_faults("huge_success:65", prompt="unlucky")
    code, _, err = run_cli("apply")
    assert code == 1
    assert "hit: the answer is over 64 MiB, more than any image: not read further" in err
    assert [r.body["prompt"] for r in nebula_server.generations].count("unlucky") == 1


def test_deeply_nested_json_is_one_line(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_faults("deep_json:100", prompt="unlucky")
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert "hit: malformed response: nested deeper than 32 levels" in err
    nebula_server.add_model_list_faults("deep_json")
    code, _, err = run_cli("models", "--remote")
    assert (code, err.splitlines()) == (
        1,
        ["error: could not list models: the answer is nested deeper than 32 levels"],
    )


def test_a_json_bomb_is_refused_without_stalling_the_other_requests(
    project, run_cli, nebula_server
):
    """16 MiB of `[],[],…` (under the cap) parsed on the event loop took seconds and a
    gigabyte, long enough for the other image's deadline to pass: it was paid twice."""
    project({"images.toml": nebula_manifest(TWO, timeout=2)})
    nebula_server.add_faults("json_bomb:16", prompt="unlucky")
    code, _, err = run_cli("apply", "--yes")
    assert code == 1
    assert "hit: malformed response: made of more than 256 JSON values" in err, err
    sent = [r.body["prompt"] for r in nebula_server.generations]
    assert sorted(sent) == ["fine", "unlucky"]  # a malformed answer: not sent again


def test_a_json_bomb_in_utf_16_is_refused_before_it_is_parsed(project, run_cli, nebula_server):
    """json.loads reads UTF-16 too, whose bytes the count of values misread: 16 MiB of
    lists passed it, and were parsed on the event loop."""
    project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_faults("json_bomb_utf16:16")
    code, _, err = run_cli("apply", "--yes")
    assert code == 1 and "malformed response: not JSON in UTF-8" in err, err


def test_a_json_bomb_in_the_model_list_is_refused(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_model_list_faults("json_bomb:3")
    code, _, err = run_cli("models", "--remote")
    assert (code, err.splitlines()) == (
        1,
        ["error: could not list models: the answer is made of more than 640,000 JSON values"],
    )
    nebula_server.add_model_list_faults("many_models:10000")
    assert run_cli("models", "--remote").code == 0  # the longest list allowed still reads


@pytest.mark.slow
def test_a_json_bomb_at_the_cap_is_refused_in_memory_of_its_size(project, nebula_server):
    root = project({"images.toml": nebula_manifest(ONE, timeout=5, max_attempts=1)})
    nebula_server.add_faults("json_bomb:64")
    started = time.monotonic()
    code, err, peak = peak_run(root, "apply", "--yes")
    assert code == 1 and "a: malformed response: made of more than 256 JSON values" in err, err
    # it took 17 s and 3.2 GB, past the 5 s deadline (room left for a loaded machine's start)
    assert time.monotonic() - started < 12
    assert peak < 400, f"peak {peak} MiB"


def test_the_pixel_bomb_fault_is_a_small_png_claiming_huge_size():
    data = pixel_bomb_png()
    assert data.startswith(b"\x89PNG") and len(data) < 10_000
    assert int.from_bytes(data[16:20], "big") == int.from_bytes(data[20:24], "big") == 100_000


# --- finding 10: the key never leaks ---------------------------------------------------


@pytest.mark.parametrize("faults", [["echo:400"], ["echo:401"], ["echo:500"] * 5, ["echo:429"] * 5])
def test_an_echoed_key_reaches_no_output_file_or_page(faults, project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_faults(*faults, prompt="unlucky")
    results = [run_cli("apply"), run_cli("apply", "--json"), run_cli("status"), run_cli("gallery")]
    assert results[0].code == 1
    assert "you sent Authorization: Bearer [redacted]" in results[0].err
    for result in results:
        assert CANARY_KEY not in result.out + result.err
    assert (root / ".nebula-build/failures.json").exists()
    assert CANARY_KEY.encode() not in everything_written(root)


def test_a_key_echoed_as_a_model_name_reaches_no_file(project, run_cli, nebula_server):
    """The price list keeps model ids in .nebula-build/prices.json: a row named after
    the key (or holding part of it) is left out, and the other prices are kept."""
    root = project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_model_list_faults("echo_model")
    code, out, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert "at $0.009" in out  # the price list was read
    assert (root / ".nebula-build/prices.json").is_file()
    assert CANARY_KEY[2:-2].encode() not in everything_written(root)
    assert CANARY_KEY not in out + err


def test_an_echoed_key_in_the_model_list_is_redacted(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({})})
    nebula_server.add_model_list_faults("echo:401")
    code, _, err = run_cli("models", "--remote")
    assert code == 1 and CANARY_KEY not in err
    assert "Authorization: Bearer [redacted]" in err


@pytest.mark.parametrize(
    "key", [f"{CANARY_KEY}\nak_second_line", f"{CANARY_KEY}\r\nX-Evil: 1", "ak_clé_canary"]
)
@pytest.mark.parametrize("command", [["apply"], ["models", "--remote"]])
def test_a_key_no_header_can_carry_is_one_error(
    key, command, project, run_cli, nebula_server, monkeypatch
):
    monkeypatch.setenv("NEBULA_API_KEY", key)
    project({"images.toml": nebula_manifest(ONE)})
    code, _, err = run_cli(*command)
    assert (code, err.splitlines()) == (
        1,
        [
            "error: NEBULA_API_KEY holds a character an HTTP header cannot carry (a line "
            "break, a control or a non-ASCII character): set it to the key alone, on one line"
        ],
    )
    assert nebula_server.requests == []


# --- finding 16: settings are finite ---------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "line"),
    [
        ("nebula", "timeout = inf"),
        ("nebula", "timeout = 1e9"),
        ("nebula", "requests_per_minute = 1e-300"),
        ("nebula", "requests_per_minute = inf"),
        ("preview", "timeout = inf"),
        ("diffusers", "timeout = inf"),
        ("diffusers", "max_memory_gib = inf"),
    ],
)
def test_settings_must_be_finite_and_sane(backend, line, project, run_cli):
    text = nebula_manifest(ONE) + f"\n[backends.{backend}]\n{line}\n"
    if backend == "nebula":
        text = manifest_with(line)
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    name = line.split(" = ")[0]
    assert code == 1
    assert f"backends.{backend}.{name}: input should be" in err or (
        f"backends.{backend}.{name}: must be at " in err
    )


# --- finding 17: out of credits, whatever the words -------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "failed_status:Insufficient balance, please top up",
        "message:400:Your quota is exhausted",
        "message:500:Account balance too low",
    ],
)
def test_balance_wording_halts_the_backend(fault, project, run_cli, nebula_server):
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(4)}
    project({"images.toml": nebula_manifest(images, concurrency=1)})
    nebula_server.add_faults(fault)
    code, _, err = run_cli("apply")
    assert code == 1
    assert len(nebula_server.generations) == 1
    assert "not attempted: nebula stopped sending requests" in err


# --- finding 18: no escape sequence reaches the terminal ------------------------------

ESCAPES = "\x1b[2J\x1b[H\x1b]0;owned\x07all 2 images generated\r\n\x1b[1A\x9b2K"


@pytest.mark.parametrize("fault", [f"message:400:{ESCAPES}", f"failed_status:{ESCAPES}"])
def test_server_messages_reach_the_terminal_as_plain_text(fault, project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_faults(fault, prompt="unlucky")
    code, out, err = run_cli("apply")
    assert code == 1
    assert "all 2 images generated" in err
    for text in (out, err, json.dumps(json.loads(run_cli("apply", "--json").out))):
        assert not any(ch in text for ch in "\x1b\x07\r\x9b")
    failures = (root / ".nebula-build/failures.json").read_text()
    assert not any(ch in json.loads(failures).__repr__() for ch in "\x1b\x07\r\x9b")


HOSTILE_PLUGIN = """
from nebula_build.plugin import (
    Backend, GenerationResult, RequestRejectedError, hookimpl, nebula_models,
)
import io
from PIL import Image


class HostileBackend(Backend):
    name = "hostile"

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        if request.prompt == "reject":
            raise RequestRejectedError("\\x1b[2J\\x1b[Hrefused\\nsecond line", backend="hostile")
        if request.prompt == "crash":
            raise ValueError("\\x1b]0;title\\x07crashed")
        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
        return GenerationResult(buffer.getvalue(), warnings=("\\x1b[31mwarned\\x1b[0m",))


@hookimpl
def nebula_build_register_backends():
    return [HostileBackend]
"""


def test_a_plugins_messages_reach_the_terminal_as_plain_text(
    project, run_cli, tmp_path, monkeypatch
):
    site = tmp_path / "site"
    install_distribution(
        site,
        "nebula-build-hostile",
        {"nebula_hostile": HOSTILE_PLUGIN},
        {"hostile": "nebula_hostile"},
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "nebula_hostile", raising=False)
    lines = [
        "version = 1",
        "[defaults]",
        'backend = "hostile"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        "width = 64",
        "height = 64",
    ]
    for name, prompt in (("r", "reject"), ("c", "crash"), ("w", "warn")):
        lines += [f"[images.{name}]", f'prompt = "{prompt}"', f'output = "{name}.png"']
    project({"images.toml": "\n".join(lines) + "\n"})
    try:
        code, out, err = run_cli("apply")
    finally:
        sys.modules.pop("nebula_hostile", None)
    assert code == 1
    assert "r: refused second line" in err
    assert "title" not in err and "crashed" in err
    assert "warning: w: warned" in err
    assert not any(ch in out + err for ch in "\x1b\x07")


@pytest.fixture
def unreached(project, monkeypatch) -> str:
    """NEBULA_BASE_URL at a port nothing listens on (once its socket closed), with a key
    and a one-image project; the base URL."""
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{closed.getsockname()[1]}/api/v1"
    monkeypatch.setenv("NEBULA_BASE_URL", base)
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    project({"images.toml": manifest_with("max_attempts = 1")})
    return base


def test_a_refused_connection_names_the_host_it_tried(unreached, run_cli):
    code, _, err = run_cli("apply", "--yes")
    assert code == 1
    host = unreached.removeprefix("http://").removesuffix("/api/v1")
    assert f"a: connection to {host} failed: ConnectError" in err, err
    assert f"nothing reached it: is the API listening at {unreached} (NEBULA_BASE_URL)?" in err
    assert CANARY_KEY not in err


def test_a_refused_connection_says_what_to_check_before_generating(unreached, run_cli, monkeypatch):
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert err.startswith("error: could not list models: ConnectError, nothing reached it: ")
    assert f"listening at {unreached} (NEBULA_BASE_URL)?" in err, err

    monkeypatch.delenv("NEBULA_BASE_URL")
    proxy = unreached.removesuffix("/api/v1")
    monkeypatch.setenv("HTTPS_PROXY", proxy)  # the default host, through a proxy unreached
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert "check this machine's network, DNS and proxy settings" in err, err


# --- the second review: compression, budgets, modes, seeds, model ids --------------


PEAK_SCRIPT = """
import sys
from nebula_build.cli import main
code = main(sys.argv[1:])
# VmHWM: this process's own peak (ru_maxrss would count the parent it was spawned from)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(f"PEAK_KIB {peak.split()[1]}", file=sys.stderr)
sys.exit(code)
"""


def peak_run(root: Path, *args: str) -> tuple[int, str, int]:
    """The CLI in a process of its own: exit code, stderr, and its peak memory in MiB."""
    import os
    import subprocess

    if not Path("/proc/self/status").is_file():
        pytest.skip("measures memory through /proc (Linux)")
    done = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, *args],
        check=False,
        cwd=root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    err, _, peak = done.stderr.rpartition("PEAK_KIB ")
    return done.returncode, err, int(peak) // 1024


def test_answers_are_asked_for_uncompressed(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE)})
    assert run_cli("apply", "--yes").code == 0
    assert run_cli("models", "--remote").code == 0
    assert {r.accept_encoding for r in nebula_server.requests} == {"identity"}


@pytest.mark.slow
def test_a_compressed_bomb_stops_at_the_cap_unpacked(project, nebula_server):
    root = project({"images.toml": nebula_manifest(ONE, max_attempts=1)})
    nebula_server.add_model_list_faults("gzip_bomb:512")
    nebula_server.add_faults("gzip_bomb:512")
    code, err, peak = peak_run(root, "apply", "--yes")
    assert code == 1 and "Traceback" not in err
    assert "a: the answer is over 64 MiB, more than any image: not read further" in err
    assert "could not list models: the answer is over 4 MiB" in err
    # 1 GiB unpacked in all: read as it came, the process held gigabytes
    assert peak < 400, f"peak {peak} MiB"


def test_a_compressed_answer_is_unpacked_and_kept(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_faults("gzip")
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert (root / "a.png").is_file() and len(nebula_server.generations) == 1


def test_a_corrupt_compressed_answer_is_a_malformed_one(project, run_cli, nebula_server):
    """Billed, maybe, but unreadable: like any malformed answer, not sent again until
    the next apply."""
    root = project({"images.toml": nebula_manifest(TWO)})
    nebula_server.add_faults("bad_gzip", prompt="unlucky")
    code, _, err = run_cli("apply", "--yes")
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    assert "hit: malformed response: corrupt gzip data (Error -3 while decompressing" in err
    assert [r.body["prompt"] for r in nebula_server.generations].count("unlucky") == 1
    assert (root / "ok.png").is_file()
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert (root / "hit.png").is_file()


def test_an_answer_in_an_unasked_coding_is_malformed(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_faults("encoded:br")
    code, _, err = run_cli("apply", "--yes")
    assert code == 1
    assert "a: malformed response: compressed as 'br', which was not asked for" in err
    nebula_server.add_faults("encoded:gzip, gzip, gzip")
    code, _, err = run_cli("apply", "--yes")
    assert code == 1
    assert "a: malformed response: compressed 3 times over" in err
    nebula_server.add_faults("encoded:br")
    nebula_server.add_model_list_faults("encoded:br")
    code, _, err = run_cli("models", "--remote")
    assert err.splitlines() == [
        "error: could not list models: the answer could not be read: compressed as 'br', "
        "which was not asked for"
    ]


def test_a_long_model_list_is_refused_not_cleaned(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE)})
    nebula_server.add_model_list_faults("many_models:20000")
    code, _, err = run_cli("models", "--remote")
    assert err.splitlines() == [
        "error: could not list models: the answer lists 20000 models, more than 10000"
    ]
    nebula_server.add_model_list_faults("huge_success:5")
    code, _, err = run_cli("models", "--remote")
    assert err.splitlines() == ["error: could not list models: the answer is over 4 MiB"]


@pytest.mark.slow
def test_concurrent_large_answers_share_one_budget(project, nebula_server):
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(16)}
    root = project({"images.toml": nebula_manifest(images, concurrency=16, max_attempts=1)})
    nebula_server.add_faults(*["huge_success:60"] * 16)
    code, err, peak = peak_run(root, "apply", "--yes")
    assert code == 1 and "i15: malformed response: not a PNG, JPEG or WebP file" in err, err
    # 16 answers of 60 MiB read at once held gigabytes; 256 MiB of answers at a time
    assert peak < 750, f"peak {peak} MiB"


def test_a_cmyk_answer_is_cached_as_rgb(project, run_cli, nebula_server):
    from PIL import Image

    images = {"a": {"prompt": "x", "output": "a.png"}, "b": {"prompt": "y", "output": "b.webp"}}
    root = project({"images.toml": nebula_manifest(images)})
    nebula_server.add_faults("cmyk", "cmyk")
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    with Image.open(root / "a.png") as image:
        assert image.mode == "RGB" and image.getpixel((0, 0))[0] > 200  # red stays red
    (root / "a.png").unlink()
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert (root / "a.png").is_file() and len(nebula_server.generations) == 2


SEED_PLUGIN = """
import io
from PIL import Image
from nebula_build.plugin import Backend, GenerationResult, hookimpl, nebula_models


class SeedBackend(Backend):
    name = "seeder"

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
        return GenerationResult(buffer.getvalue(), seed=eval(request.prompt))


@hookimpl
def nebula_build_register_backends():
    return [SeedBackend]
"""


def test_a_plugin_seed_outside_64_bits_is_refused(project, run_cli, tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_distribution(site, "nebula-build-seeder", {"seeder": SEED_PLUGIN}, {"s": "seeder"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "seeder", raising=False)
    lines = ['version = 1\n[defaults]\nbackend = "seeder"', "width = 64\nheight = 64"]
    lines.append('model = "black-forest-labs/FLUX.1-schnell"')
    seeds = {"big": "2**64", "huge": "10**5000", "top": "2**63 - 1"}
    for name, seed in seeds.items():
        lines.append(f'[images.{name}]\nprompt = "{seed}"\noutput = "{name}.png"')
    root = project({"images.toml": "\n".join(lines) + "\n"})
    try:
        code, _, err = run_cli("apply", "--yes")
    finally:
        sys.modules.pop("seeder", None)
    assert code == 1 and "Traceback" not in err and "internal error" not in err
    refused = "returned seed {}, not an integer from 0 to 2**63 - 1"
    assert (
        f"big: backend 'seeder' from nebula-build-seeder 0.1 {refused.format('2**64 or more')}"
        in err
    )
    assert (
        f"huge: backend 'seeder' from nebula-build-seeder 0.1 {refused.format('2**16609 or more')}"
        in err
    )
    assert "seed = 9223372036854775807" in (root / "images.lock").read_text()
    assert (
        "top" in (root / "images.lock").read_text()
        and "big" not in (root / "images.lock").read_text()
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('seedream_model = "x\\n::warning title=INJ::INJECTED_FROM_PR\\n"', "seedream_model"),
        ('seedream_model = "x`<img src=y>"', "seedream_model"),
        ('prices = { "a\\nb" = 0.1 }', "prices"),
    ],
)
def test_a_model_id_must_be_an_id(line, key, project, run_cli, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    project({"images.toml": manifest_with(line)})
    code, out, err = run_cli("plan")
    assert code == 1
    assert not [line for line in out.splitlines() if line.startswith("::warning")]
    (message,) = err.splitlines()
    assert message.startswith("error: images.toml") and key in message, message
    assert "a model id is 1-200 letters" in message


#: a key of both cases: said back lowercased, it is still the key
MIXED_CASE_KEY = "ak_Canary_7F3e9B1d_Must_Never_Leak"


@pytest.mark.parametrize("form", ["base64", "lower", "fullwidth", "accents", "nbsp", "lines"])
def test_a_key_echoed_in_disguise_reaches_no_output_file_or_page(
    form, project, run_cli, monkeypatch
):
    """A server that says the key back as the base64 of `Bearer <key>`, lowercased (as
    a header's value or a host name is), in fullwidth or accented look-alikes, spaced
    out, or in pieces of seven on their own lines (each too short to be a fragment)."""
    from nebula_build.testing import NebulaTestServer

    root = project({"images.toml": nebula_manifest(TWO)})
    with NebulaTestServer(api_key=MIXED_CASE_KEY, marks_placeholders=False) as server:
        monkeypatch.setenv("NEBULA_BASE_URL", server.base_url)
        monkeypatch.setenv("NEBULA_API_KEY", MIXED_CASE_KEY)
        server.add_faults(f"echo_as:{form}", prompt="unlucky")
        results = [run_cli("apply"), run_cli("apply", "--json")]
    results += [run_cli("status"), run_cli("gallery")]
    assert results[0].code == 1
    assert "request refused; you sent " in results[0].err
    assert "[redacted]" in results[0].err, results[0].err
    letters = "".join(c for c in MIXED_CASE_KEY if c.isalnum()).lower()
    for result in results:
        said = "".join(c for c in result.out + result.err if c.isascii() and c.isalnum())
        assert letters not in said.lower()
    written = everything_written(root).lower()
    assert letters.encode() not in bytes(c for c in written if chr(c).isalnum())
    assert base64.b64encode(f"Bearer {MIXED_CASE_KEY}".encode()).lower() not in written
