"""The nebula backend's requests and error mapping, through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nebula_build.backends.nebula import NebulaBackend, NebulaSettings
from nebula_build.errors import (
    CredentialsError,
    OutOfCreditsError,
    RequestRejectedError,
    TransientBackendError,
)
from nebula_build.plugin import (
    FLUX_FILL,
    FLUX_SCHNELL,
    SDXL,
    SEEDREAM_DEFAULT_ID,
    GenerationRequest,
)

KEY = "ak_unit_test_key"


def png(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def success(size=(64, 64)) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": "m",
            "object": "list",
            "status": "success",
            "message": "ok",
            "data": [
                {
                    "timings": {"inference": 0.5},
                    "index": 0,
                    "b64_json": base64.b64encode(png(size)).decode(),
                }
            ],
        },
    )


def run(handler, request: GenerationRequest, **settings):
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    async def go():
        backend = NebulaBackend(
            NebulaSettings(retry_backoff=0, **settings),
            root=Path.cwd(),
            transport=httpx.MockTransport(record),
        )
        async with backend:
            return await backend.generate(request)

    try:
        return asyncio.run(go()), seen
    except Exception as exc:
        exc.seen = seen  # type: ignore[attr-defined]
        raise


def req(model: str, **fields) -> GenerationRequest:
    base = {
        "image_name": "hero",
        "generation_key": "k",
        "model": model,
        "prompt": "a cat",
        "width": 64,
        "height": 64,
    }
    return GenerationRequest(**(base | fields))


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", KEY)


EXPECTED_BODIES = {
    SDXL: (
        {"negative_prompt": None, "num_steps": 30, "guidance_scale": 7.5, "seed": 1},
        {
            "model": SDXL,
            "prompt": "a cat",
            "width": 64,
            "height": 64,
            "negative_prompt": None,
            "num_steps": 30,
            "guidance_scale": 7.5,
        },
    ),
    FLUX_SCHNELL: (
        {"num_steps": 4, "guidance_scale": 3.5, "seed": 1234},
        {
            "model": FLUX_SCHNELL,
            "prompt": "a cat",
            "width": 64,
            "height": 64,
            "num_steps": 4,
            "guidance_scale": 3.5,
            "seed": 1234,
        },
    ),
    SEEDREAM_DEFAULT_ID: (
        {"guidance_scale": 2.5, "seed": 3},
        {
            "model": SEEDREAM_DEFAULT_ID,
            "prompt": "a cat",
            "width": 64,
            "height": 64,
            "guidance_scale": 2.5,
        },
    ),
}


@pytest.mark.parametrize("model", list(EXPECTED_BODIES))
def test_request_shape_per_model(model):
    fields, expected = EXPECTED_BODIES[model]
    result, seen = run(lambda r: success(), req(model, **fields))
    (sent,) = seen
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.nebulablock.com/api/v1/images/generation"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == expected
    assert result.timings["inference"] == 0.5
    assert result.seed == (fields["seed"] if model == FLUX_SCHNELL else None)


def test_sdxl_sends_its_negative_prompt_when_set():
    _, seen = run(lambda r: success(), req(SDXL, negative_prompt="blurry"))
    assert json.loads(seen[0].content)["negative_prompt"] == "blurry"


def test_fill_sends_image_and_mask_as_plain_base64():
    image, mask = png(), png()
    _, seen = run(
        lambda r: success(),
        req(FLUX_FILL, image=image, mask=mask, num_steps=40, guidance_scale=4.5),
    )
    body = json.loads(seen[0].content)
    assert base64.b64decode(body["image"]) == image and base64.b64decode(body["mask"]) == mask
    assert set(body) == {
        "model",
        "prompt",
        "width",
        "height",
        "num_steps",
        "guidance_scale",
        "image",
        "mask",
    }


def test_fill_mask_of_another_size_is_refused_before_sending():
    with pytest.raises(RequestRejectedError, match="mask is 32x32 but the image is 64x64") as e:
        run(lambda r: success(), req(FLUX_FILL, image=png(), mask=png((32, 32))))
    assert e.value.seen == []


def test_seedream_id_is_configurable():
    _, seen = run(
        lambda r: success(), req("bytedance/seedream-3"), seedream_model="bytedance/seedream-3"
    )
    assert json.loads(seen[0].content)["model"] == "bytedance/seedream-3"


def test_base_url_from_settings_and_environment(monkeypatch):
    _, seen = run(lambda r: success(), req(FLUX_SCHNELL), base_url="https://proxy.test/v9/")
    assert str(seen[0].url) == "https://proxy.test/v9/images/generation"
    monkeypatch.setenv("NEBULA_BASE_URL", "https://env.test/api")
    _, seen = run(lambda r: success(), req(FLUX_SCHNELL), base_url="https://proxy.test/v9")
    assert str(seen[0].url) == "https://env.test/api/images/generation"


MAPPING = [
    (401, CredentialsError, "NEBULA_API_KEY was rejected", 1),
    (403, CredentialsError, "NEBULA_API_KEY was rejected", 1),
    (402, OutOfCreditsError, "out of credits", 1),
    (400, RequestRejectedError, "HTTP 400", 1),
    (404, RequestRejectedError, "HTTP 404", 1),
    (422, RequestRejectedError, "prompt too long", 1),
    (429, TransientBackendError, "rate limited", 3),
    (500, TransientBackendError, "server error (HTTP 500", 3),
    (502, TransientBackendError, "HTTP 502", 3),
    (503, TransientBackendError, "HTTP 503", 3),
    (504, TransientBackendError, "HTTP 504", 3),
]


@pytest.mark.parametrize(("status", "error", "text", "tries"), MAPPING)
def test_status_mapping_and_which_are_retried(status, error, text, tries):
    def handler(request):
        return httpx.Response(status, json={"status": "failed", "message": "prompt too long"})

    with pytest.raises(error, match=re.escape(text)) as caught:
        run(handler, req(FLUX_SCHNELL), max_attempts=3)
    assert len(caught.value.seen) == tries
    assert caught.value.image == "hero" and KEY not in str(caught.value)


def test_out_of_credits_message_on_another_status_halts():
    def handler(request):
        return httpx.Response(400, json={"message": "Insufficient credits"})

    with pytest.raises(OutOfCreditsError) as caught:
        run(handler, req(FLUX_SCHNELL))
    assert caught.value.halts


def test_transient_failure_then_success():
    answers = iter(
        [
            httpx.Response(503, text="<html>busy</html>"),
            httpx.Response(429, headers={"Retry-After": "0"}),
            success(),
        ]
    )
    result, seen = run(lambda r: next(answers), req(FLUX_SCHNELL))
    assert len(seen) == 3 and result.data.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"status": "success", "data": []}',
        b'{"status": "success", "data": [{"b64_json": "%%%"}]}',
        json.dumps(
            {"status": "success", "data": [{"b64_json": base64.b64encode(b"GIF89a").decode()}]}
        ).encode(),
    ],
)
def test_malformed_answers_are_retried_once_then_fail(body):
    with pytest.raises(RequestRejectedError) as caught:
        run(lambda r: httpx.Response(200, content=body), req(FLUX_SCHNELL))
    expected = 1 if b'"data": []' in body else 2  # a missing image is an answer, not noise
    assert len(caught.value.seen) == expected


def test_2xx_with_failed_status_carries_the_server_message():
    def handler(request):
        return httpx.Response(200, json={"status": "failed", "message": "NSFW content detected"})

    with pytest.raises(RequestRejectedError, match="NSFW content detected"):
        run(handler, req(FLUX_SCHNELL))


def test_timeouts_and_resets_are_retried():
    calls = iter([httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), None])

    def handler(request):
        exc = next(calls)
        if exc is not None:
            raise exc
        return success()

    result, seen = run(handler, req(FLUX_SCHNELL))
    assert len(seen) == 3


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("NEBULA_API_KEY")
    with pytest.raises(CredentialsError, match="NEBULA_API_KEY is not set"):
        NebulaBackend.preflight(NebulaSettings(), Path())
    monkeypatch.setenv("MY_KEY", KEY)
    NebulaBackend.preflight(NebulaSettings(api_key_env="MY_KEY"), Path())


def test_wrong_size_is_kept_with_a_warning():
    result, _ = run(lambda r: success((80, 64)), req(FLUX_SCHNELL))
    assert result.warnings and "80x64 for a 64x64 request" in result.warnings[0]
