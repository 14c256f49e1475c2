"""The nebula backend against a real HTTP server on 127.0.0.1, faults included."""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from nebula_build.backends import nebula
from nebula_build.plugin import FLUX_FILL, FLUX_SCHNELL, SDXL, SEEDREAM_DEFAULT_ID
from tests.conftest import CANARY_KEY, image_info, nebula_manifest


def png(size=(64, 64), color=(0, 0, 0), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


ALL_MODELS = {
    "logo": {
        "model": SDXL,
        "prompt": "fox logo",
        "negative_prompt": "text",
        "num_steps": 30,
        "guidance_scale": 7.5,
        "width": 128,
        "height": 128,
        "output": "logo.png",
    },
    "plain-sdxl": {"model": SDXL, "prompt": "a lighthouse", "output": "sdxl.png"},
    "hero": {
        "model": FLUX_SCHNELL,
        "prompt": "a crane",
        "num_steps": 4,
        "guidance_scale": 3.5,
        "seed": 1234,
        "output": "hero.webp",
    },
    "sign": {
        "model": SEEDREAM_DEFAULT_ID,
        "prompt": "a neon sign",
        "guidance_scale": 2.5,
        "output": "sign.jpg",
    },
    "cap": {
        "model": FLUX_FILL,
        "prompt": "a red cap",
        "num_steps": 40,
        "guidance_scale": 4.5,
        "image": "in.png",
        "mask": "mask.png",
        "output": "cap.png",
    },
}


def test_every_model_applies_with_exactly_its_parameters(project, run_cli, nebula_server):
    root = project(
        {
            "images.toml": nebula_manifest(ALL_MODELS),
            "in.png": png(),
            "mask.png": png(mode="L", color=255),
        }
    )
    code, out, err = run_cli("apply")
    assert code == 0, err
    bodies = {r.body["prompt"]: r.body for r in nebula_server.generations}
    assert all(r.authorized for r in nebula_server.generations)
    assert bodies["fox logo"] == {
        "model": SDXL,
        "prompt": "fox logo",
        "negative_prompt": "text",
        "num_steps": 30,
        "guidance_scale": 7.5,
        "width": 128,
        "height": 128,
    }
    assert bodies["a lighthouse"] == {
        "model": SDXL,
        "prompt": "a lighthouse",
        "negative_prompt": None,
        "width": 64,
        "height": 64,
    }
    assert bodies["a crane"] == {
        "model": FLUX_SCHNELL,
        "prompt": "a crane",
        "num_steps": 4,
        "guidance_scale": 3.5,
        "seed": 1234,
        "width": 64,
        "height": 64,
    }
    assert bodies["a neon sign"] == {
        "model": SEEDREAM_DEFAULT_ID,
        "prompt": "a neon sign",
        "guidance_scale": 2.5,
        "width": 64,
        "height": 64,
    }
    cap = bodies["a red cap"]
    assert set(cap) == {
        "model",
        "prompt",
        "num_steps",
        "guidance_scale",
        "image",
        "mask",
        "width",
        "height",
    }
    for name in ("logo.png", "sdxl.png", "hero.webp", "sign.jpg", "cap.png"):
        assert (root / name).exists()
    assert image_info(root / "logo.png") == ("PNG", (128, 128))

    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert nebula_server.generations == []  # a no-op sends nothing, seedless models included


def test_canary_key_never_reaches_disk_or_output(project, run_cli, nebula_server):
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(4)}
    root = project({"images.toml": nebula_manifest(images)})
    nebula_server.add_faults("401", prompt="p3")
    outputs = [
        run_cli("apply"),
        run_cli("apply", "--json"),
        run_cli("plan", "--json"),
        run_cli("status"),
    ]
    nebula_server.add_faults("500", "500", "500", "500", "500")
    outputs.append(run_cli("apply", "--replace", "i0", "--json"))
    for result in outputs:
        assert CANARY_KEY not in result.out + result.err
    touched = [p for p in root.rglob("*") if p.is_file()]
    assert any(".nebula-build" in str(p) for p in touched)
    for path in touched:
        assert CANARY_KEY.encode() not in path.read_bytes(), path


FAULTS = [
    # (faults, survives, message in the error)
    (["429:0"], True, None),
    (["500"], True, None),
    (["503", "502"], True, None),
    (["504", "503"], True, None),
    # a gateway's 502 or 504 may have been billed behind it: sent again once at most
    (["504", "502"], False, "server error (HTTP 502"),
    (["502", "504"], False, "a request that was sent and not answered may have been billed"),
    (["reset"], True, None),
    (["slow:2"], True, None),  # slower than the 1 s timeout once, then fine
    # a malformed answer may have been billed: never sent again (test_nebula_malformed_billed)
    (["malformed_json"], False, "malformed response: not JSON"),
    (["bad_base64"], False, "malformed response: bad base64 in b64_json"),
    (["not_image"], False, "malformed response: an HTML page"),
    (["truncated_image"], False, "malformed response: "),
    (["500"] * 5, False, "server error (HTTP 500"),
    (["429:0"] * 5, False, "rate limited"),
    (["401"], False, "NEBULA_API_KEY was rejected"),
    (["402"], False, "out of credits"),
    (["credits_message"], False, "out of credits"),
    (["422"], False, "injected HTTP 422"),
    (["404"], False, "HTTP 404"),
    (["failed_status"], False, "model is overloaded"),
]


@pytest.mark.parametrize(
    ("faults", "survives", "message"), FAULTS, ids=["+".join(f[0]) for f in FAULTS]
)
def test_fault_matrix(faults, survives, message, project, run_cli, nebula_server):
    images = {
        "ok": {"prompt": "fine", "output": "ok.png"},
        "hit": {"prompt": "unlucky", "output": "hit.png"},
    }
    root = project({"images.toml": nebula_manifest(images, timeout=1, max_attempts=5)})
    nebula_server.add_faults(*faults, prompt="unlucky")
    code, out, err = run_cli("apply")
    assert "Traceback" not in err
    assert (root / "ok.png").exists()  # the other image is never affected
    lock = (root / "images.lock").read_text()
    assert "[images.ok]" in lock
    if survives:
        assert code == 0, err
        assert image_info(root / "hit.png") == ("PNG", (64, 64))
    else:
        assert code == 1
        assert f"hit: {message}" in err or message in err
        assert not (root / "hit.png").exists() and "[images.hit]" not in lock
        nebula_server.reset_counters()
        assert run_cli("apply").code == 0  # the fault is gone: only the failed image is asked
        assert [r.body["prompt"] for r in nebula_server.generations] == ["unlucky"]


def test_rejected_key_stops_new_requests_and_says_so_once(project, run_cli, nebula_server):
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(6)}
    project({"images.toml": nebula_manifest(images, concurrency=1)})
    nebula_server.add_faults("401")
    code, _, err = run_cli("apply")
    assert code == 1
    assert len(nebula_server.generations) == 1
    assert err.count("NEBULA_API_KEY was rejected") == 2  # progress line and summary
    assert err.count("not attempted: nebula stopped sending requests") >= 5
    # which image, and why in words: it read "after i0 failed (CredentialsError)"
    said = "nebula stopped sending requests after image i0 failed (the key is missing or was "
    assert said + "refused)" in err and "CredentialsError" not in err


def test_missing_key_is_one_error_before_any_request(project, run_cli, nebula_server, monkeypatch):
    monkeypatch.delenv("NEBULA_API_KEY")
    project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    code, out, err = run_cli("apply")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: NEBULA_API_KEY is not set: export NEBULA_API_KEY=<your key> (from your Nebula "
        "Block account), or build offline with --backend preview"
    ]
    assert nebula_server.requests == []
    assert run_cli("plan").code == 0  # planning needs no key
    assert run_cli("apply", "--backend", "preview").code == 0


def test_custom_key_variable(project, run_cli, nebula_server, monkeypatch):
    monkeypatch.delenv("NEBULA_API_KEY")
    monkeypatch.setenv("NEBULA_API_KEY_STAGING", CANARY_KEY)
    project(
        {
            "images.toml": nebula_manifest(
                {"a": {"prompt": "x", "output": "a.png"}}, api_key_env="NEBULA_API_KEY_STAGING"
            )
        }
    )
    assert run_cli("apply").code == 0
    assert all(r.authorized for r in nebula_server.generations)


def test_wrong_size_keeps_the_original_and_delivers_the_declared_size(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    nebula_server.add_faults("wrong_size")
    code, out, err = run_cli("apply")
    assert code == 0 and "warning: a: nebula returned 128x64 for a 64x64 request" in err
    assert image_info(root / "a.png") == ("PNG", (64, 64))
    (cached,) = [p for p in (root / ".nebula-build/cache").glob("??/*") if p.suffix != ".json"]
    assert image_info(cached)[1] == (128, 64)


def test_timings_are_reported_not_locked(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    data = json.loads(run_cli("apply", "--json").out)
    timings = data["results"][0]["timings"]
    assert timings["inference"] == 1.25 and timings["request"] > 0
    assert "1.25" not in (root / "images.lock").read_text()


@pytest.mark.slow
def test_requests_in_flight_reach_the_bound_and_never_exceed_it(project, run_cli, nebula_server):
    nebula_server.latency = 0.2
    images = {f"i{n:02}": {"prompt": f"p{n}", "output": f"i{n:02}.png"} for n in range(16)}
    project({"images.toml": nebula_manifest(images, concurrency=3)})
    assert run_cli("apply").code == 0
    assert nebula_server.peak_in_flight == 3
    project(
        {
            "images.toml": nebula_manifest(
                {f"j{n:02}": {"prompt": f"q{n}", "output": f"j{n:02}.png"} for n in range(16)},
                concurrency=3,
            )
        }
    )
    nebula_server.reset_counters()
    assert run_cli("apply", "--parallelism", "8").code == 0
    assert nebula_server.peak_in_flight == 8


@pytest.mark.slow
def test_retry_after_is_honoured(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    nebula_server.add_faults("429:1")
    assert run_cli("apply").code == 0
    first, second = nebula_server.generations
    assert second.started - first.started >= 0.95


class RecordingClock:
    """time.monotonic, remembering its last reading: the one a Pacer let a request go at."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self) -> float:
        self.last = time.monotonic()
        return self.last


@pytest.mark.slow
def test_requests_per_minute_paces_request_starts(project, run_cli, nebula_server, monkeypatch):
    # Measured where the client sends each request, the moment the pacer let it go; the
    # server's arrival times add thread scheduling that no client can pace.
    clock, sent = RecordingClock(), []
    monkeypatch.setattr(nebula, "Pacer", functools.partial(nebula.Pacer, clock=clock))
    real_exchange = nebula.exchange

    async def exchange(client, method, path, **options):
        if path.endswith("/images/generation"):
            sent.append(clock.last)  # no await since the pacer's release: this is it
        return await real_exchange(client, method, path, **options)

    monkeypatch.setattr(nebula, "exchange", exchange)
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(5)}
    project({"images.toml": nebula_manifest(images, concurrency=5, requests_per_minute=600)})
    assert run_cli("apply").code == 0
    assert len(nebula_server.generations) == len(sent) == 5
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.1  # 600 a minute


def test_a_late_wake_does_not_let_waiting_requests_go_in_a_burst():
    clock = RecordingClock()
    pacer = nebula.Pacer(600, clock=clock)  # one every 0.1 s
    starts: list[float] = []

    async def request() -> None:
        await pacer.wait()
        starts.append(clock.last)

    async def go() -> None:
        waiting = [asyncio.create_task(request()) for _ in range(4)]
        await asyncio.sleep(0)  # the first one went, the others wait their turn
        time.sleep(0.35)  # the event loop is busy past the slots the others had
        await asyncio.gather(*waiting)

    asyncio.run(go())
    assert min(b - a for a, b in itertools.pairwise(starts)) >= pacer.interval


def test_models_remote_lists_the_providers_models(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({})})
    code, out, err = run_cli("models", "--remote")
    assert code == 0, err
    assert SEEDREAM_DEFAULT_ID in out and "Image" in out and "0.009" in out
    rows = json.loads(run_cli("models", "--remote", "--json").out)
    assert {r["model_name"] for r in rows} >= {SDXL, FLUX_SCHNELL, FLUX_FILL}


def test_mask_size_mismatch_is_refused_before_any_request(project, run_cli, nebula_server):
    images = {"cap": ALL_MODELS["cap"], "hero": ALL_MODELS["hero"]}
    project(
        {
            "images.toml": nebula_manifest(images),
            "in.png": png(),
            "mask.png": png(size=(32, 32), mode="L", color=0),
        }
    )
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.strip().endswith(
        "images.cap.mask: mask.png is 32×32 but the image in.png is 64×64: "
        "a mask must be the size of its image"
    )
    assert nebula_server.requests == []


def test_a_real_server_with_jpeg_and_webp_answers(project, run_cli, nebula_server):
    for fmt, name in (("jpeg", "a.jpg"), ("webp", "b.webp")):
        nebula_server.image_format = fmt
        root = project({"images.toml": nebula_manifest({name[0]: {"prompt": fmt, "output": name}})})
        assert run_cli("apply").code == 0
        assert image_info(root / name)[1] == (64, 64)
    assert Path(root / "b.webp").read_bytes()[:4] == b"RIFF"


def test_models_remote_with_a_rejected_key_is_one_line(
    project, run_cli, nebula_server, monkeypatch
):
    monkeypatch.setenv("NEBULA_API_KEY", "ak_wrong")
    project({"images.toml": nebula_manifest({})})
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert err.startswith("error: could not list models: NEBULA_API_KEY was rejected (HTTP 401")
    assert "ak_wrong" not in err


def test_models_remote_without_a_key_does_not_offer_the_offline_backend(
    project, run_cli, nebula_server, monkeypatch
):
    """preview can build images without a key, but cannot list the API's models."""
    monkeypatch.delenv("NEBULA_API_KEY")
    project({"images.toml": nebula_manifest({})})
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: NEBULA_API_KEY is not set: export "
        "NEBULA_API_KEY=<your key> (from your Nebula Block account)"
    ]
    assert nebula_server.requests == []


def test_a_base_url_without_the_api_path_names_the_url_and_the_documented_base(
    project, run_cli, nebula_server, monkeypatch
):
    bare = nebula_server.base_url.removesuffix("/api/v1")
    monkeypatch.setenv("NEBULA_BASE_URL", bare)
    project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    code, _, err = run_cli("apply", "-y")
    assert code == 1
    assert (
        f"a: HTTP 404 (not found) from {bare}/images/generation: the API's documented base "
        f"URL is https://api.nebulablock.com/api/v1; did you mean NEBULA_BASE_URL={bare}/api/v1?"
    ) in err
    assert CANARY_KEY not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "fault",
    [
        "failed_status:Insufficient balance",
        "message:400:Insufficient account funds",
        "message:403:Not enough funds on the account",
        "402",
    ],
)
def test_out_of_credits_reads_as_such_and_says_how_to_top_up(
    fault, project, run_cli, nebula_server
):
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(3)}
    project({"images.toml": nebula_manifest(images, concurrency=1)})
    nebula_server.add_faults(fault)
    code, _, err = run_cli("apply", "-y")
    assert code == 1
    assert len(nebula_server.generations) == 1  # no request after the answer
    summary = [line for line in err.splitlines() if line.startswith("  i")]
    (failed,) = [line for line in summary if ": out of credits (" in line]
    assert failed.endswith(
        "no more requests are sent; add credits to your Nebula Block account "
        "(nebulablock.com, Billing), then run apply again: what was made is kept"
    )
    first = failed.split(":")[0].strip()
    skipped = [line for line in summary if line is not failed]
    assert len(skipped) == 2
    assert all(
        line.endswith(f"stopped sending requests after image {first} failed (out of credits)")
        for line in skipped
    )
