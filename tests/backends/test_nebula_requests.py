"""The nebula backend's requests and error mapping, through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nebula_build.backends.nebula import MARKED_OFF_LOOPBACK, NebulaBackend, NebulaSettings
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


def test_base_url_elsewhere_needs_the_environment(monkeypatch):
    with pytest.raises(CredentialsError) as caught:
        run(lambda r: success(), req(FLUX_SCHNELL), base_url="https://proxy.test/v9/")
    assert caught.value.seen == []
    assert str(caught.value).endswith(
        "set NEBULA_BASE_URL=https://proxy.test/v9/ in your environment to use it"
    )
    monkeypatch.setenv("NEBULA_BASE_URL", "https://proxy.test/v9/")
    _, seen = run(lambda r: success(), req(FLUX_SCHNELL), base_url="https://proxy.test/v9/")
    assert str(seen[0].url) == "https://proxy.test/v9/images/generation"
    monkeypatch.setenv("NEBULA_BASE_URL", "https://env.test/api")
    _, seen = run(lambda r: success(), req(FLUX_SCHNELL), base_url="https://proxy.test/v9")
    assert str(seen[0].url) == "https://env.test/api/images/generation"


def test_another_path_on_the_default_host_needs_no_environment():
    _, seen = run(
        lambda r: success(), req(FLUX_SCHNELL), base_url="https://api.nebulablock.com/api/v2"
    )
    assert str(seen[0].url) == "https://api.nebulablock.com/api/v2/images/generation"


@pytest.mark.parametrize(
    "url",
    [
        "http://attacker.test/x",
        "http://127.0.0.1.attacker.test/",
        "https://api.nebulablock.com@attacker.test/api/v1",
        "https://attacker.test\\@api.nebulablock.com/",
        "https://attacker.test/\nX-Injected: 1",
        "ftp://api.nebulablock.com/",
        "api.nebulablock.com/api/v1",
    ],
)
def test_the_key_goes_only_over_https_or_to_loopback(url, monkeypatch):
    with pytest.raises(ValueError, match="base_url"):
        NebulaSettings(base_url=url)
    monkeypatch.setenv("NEBULA_BASE_URL", url)
    with pytest.raises(CredentialsError, match=r"^NEBULA_BASE_URL must") as caught:
        run(lambda r: success(), req(FLUX_SCHNELL))
    assert caught.value.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v1",
        "http://127.9.9.9/",
        "http://[::1]:8080/",
        "http://localhost/",
    ],
)
def test_plain_http_to_loopback_is_allowed(url, monkeypatch):
    monkeypatch.setenv("NEBULA_BASE_URL", url)
    _, seen = run(lambda r: success(), req(FLUX_SCHNELL), base_url=url)
    assert str(seen[0].url).startswith(url.rstrip("/"))


MAPPING = [
    (401, CredentialsError, "NEBULA_API_KEY was rejected", 1),
    (403, CredentialsError, "NEBULA_API_KEY was rejected", 1),
    (402, OutOfCreditsError, "out of credits", 1),
    (400, RequestRejectedError, "HTTP 400", 1),
    (404, RequestRejectedError, "HTTP 404", 1),
    (422, RequestRejectedError, "prompt too long", 1),
    (429, TransientBackendError, "rate limited", 3),
    (500, TransientBackendError, "server error (HTTP 500", 3),
    # a gateway's 502 or 504: the server behind it may have done and billed the work, so
    # sent again once at most, as a request that timed out (NEBULA_TIMEOUT_RETRIES)
    (502, TransientBackendError, "HTTP 502", 2),
    (503, TransientBackendError, "HTTP 503", 3),
    (504, TransientBackendError, "HTTP 504", 2),
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
def test_malformed_answers_are_not_sent_again(body):
    """The server took the request and may have billed it: one request, whatever it was."""
    with pytest.raises(RequestRejectedError) as caught:
        run(lambda r: httpx.Response(200, content=body), req(FLUX_SCHNELL))
    assert len(caught.value.seen) == 1


def test_2xx_with_failed_status_carries_the_server_message():
    def handler(request):
        return httpx.Response(200, json={"status": "failed", "message": "NSFW content detected"})

    with pytest.raises(RequestRejectedError, match="NSFW content detected"):
        run(handler, req(FLUX_SCHNELL))


def test_timeouts_and_resets_are_retried(monkeypatch):
    """Each may have been billed: as often as NEBULA_TIMEOUT_RETRIES allows, all together."""
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", "2")
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
    monkeypatch.setenv("NEBULA_API_KEY_STAGING", KEY)
    NebulaBackend.preflight(NebulaSettings(api_key_env="NEBULA_API_KEY_STAGING"), Path())


@pytest.mark.parametrize("variable", ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "NEBULA_", "NEBULA"])
def test_the_key_variable_is_a_nebula_one(variable, monkeypatch):
    monkeypatch.setenv(variable, KEY)
    with pytest.raises(ValueError, match="must name a variable starting with NEBULA_"):
        NebulaSettings(api_key_env=variable)


def test_wrong_size_is_kept_for_the_engine_to_note():
    result, _ = run(lambda r: success((80, 64)), req(FLUX_SCHNELL))
    assert result.data and result.warnings == ()  # the engine notes it, for every backend


# --- a server that does not play fair (issue 11) -------------------------------------


class Endless(httpx.AsyncByteStream):
    """A body that never ends, counting what the client pulled."""

    def __init__(self, chunk: bytes = b"x" * 65536, pause: float = 0.0) -> None:
        self.chunk, self.pause, self.pulled = chunk, pause, 0

    async def __aiter__(self):
        while True:
            if self.pause:
                await asyncio.sleep(self.pause)
            self.pulled += len(self.chunk)
            yield self.chunk


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """asyncio.sleep records what it was asked for and returns at once."""
    asked: list[float] = []

    async def sleep(delay: float, result=None):
        asked.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return asked


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    "value", ["86400", "inf", "Infinity", "1e400", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_every_retry_after_is_capped_and_shown(status, value, sleeps):
    answers = iter([httpx.Response(status, headers={"Retry-After": value}), success()])
    shown: list[str] = []
    result, seen = run(lambda r: next(answers), req(FLUX_SCHNELL, on_activity=shown.append))
    assert len(seen) == 2 and result.data.startswith(b"\x89PNG")
    assert sleeps == [60.0]
    assert shown == ["waiting 60 s (Retry-After)"]


def test_a_short_retry_after_is_honoured_as_asked(sleeps):
    answers = iter([httpx.Response(503, headers={"Retry-After": "30"}), success()])
    shown: list[str] = []
    run(lambda r: next(answers), req(FLUX_SCHNELL, on_activity=shown.append))
    assert sleeps == [30.0] and shown == ["waiting 30 s (Retry-After)"]


def test_a_trickled_answer_is_cut_off_at_the_deadline():
    trickle = Endless(b"{", pause=0.02)
    started = time.monotonic()
    with pytest.raises(TransientBackendError, match=r"timed out after 0\.3s") as caught:
        run(
            lambda r: httpx.Response(200, stream=trickle),
            req(FLUX_SCHNELL),
            timeout=0.3,
            max_attempts=2,
        )
    assert len(caught.value.seen) == 2
    assert time.monotonic() - started < 2


def test_an_error_body_is_read_only_up_to_its_cap():
    bodies: list[Endless] = []

    def handler(request):
        bodies.append(Endless())
        return httpx.Response(500, stream=bodies[-1])

    with pytest.raises(TransientBackendError, match=r"an answer over 64 KiB, not read"):
        run(handler, req(FLUX_SCHNELL), max_attempts=5)
    assert len(bodies) == 5
    assert all(body.pulled <= 2 * 65536 for body in bodies)


def test_an_error_body_declared_too_large_is_not_read():
    body = Endless()
    headers = {"Content-Length": str(200 * 2**20)}
    with pytest.raises(RequestRejectedError, match=r"HTTP 400\): an answer over 64 KiB"):
        run(lambda r: httpx.Response(400, headers=headers, stream=body), req(FLUX_SCHNELL))
    assert body.pulled == 0


def test_a_success_body_over_its_cap_is_refused_and_not_retried():
    bodies: list[Endless] = []

    def handler(request):
        bodies.append(Endless(b"A" * 2**20))
        return httpx.Response(200, stream=bodies[-1])

    with pytest.raises(RequestRejectedError, match="the answer is over 64 MiB") as caught:
        run(handler, req(FLUX_SCHNELL))
    assert len(caught.value.seen) == 1
    assert bodies[0].pulled <= 65 * 2**20


@pytest.mark.parametrize(
    ("depth", "said"),
    [
        (33, "nested deeper than 32 levels"),
        (200, "nested deeper than 32 levels"),
        # more arrays than an image answer holds: refused before it is parsed
        (5000, "made of more than 256 JSON values"),
        (100_000, "made of more than 256 JSON values"),
    ],
)
def test_deeply_nested_json_is_a_malformed_answer(depth, said):
    nested = b'{"status": "success", "data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(RequestRejectedError, match=said) as caught:
        run(lambda r: httpx.Response(200, content=nested), req(FLUX_SCHNELL))
    assert len(caught.value.seen) == 1  # malformed, maybe billed: not sent again


def test_deeply_nested_error_json_still_gives_the_status():
    nested = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RequestRejectedError, match=r"HTTP 400"):
        run(lambda r: httpx.Response(400, content=nested), req(FLUX_SCHNELL))


ECHOES = [
    # (status, how the server answers with the key in it)
    (400, lambda key: {"json": {"message": f"bad header Authorization: Bearer {key}"}}),
    (401, lambda key: {"json": {"error": {"message": f"key {key} is unknown"}}}),
    (500, lambda key: {"text": f"<html>Bearer {key}</html>"}),
    (422, lambda key: {"json": {"detail": f"{key[:12]}\n{key[12:]}"}}),
    (400, lambda key: {"json": {"message": base64.b64encode(key.encode()).decode()}}),
    (400, lambda key: {"json": {"message": f"{key[:5]}\x1b[0m{key[5:]}"}}),
    (200, lambda key: {"json": {"status": "failed", "message": f"no image for {key}"}}),
]


@pytest.mark.parametrize(("status", "answer"), ECHOES)
def test_an_echoed_key_is_redacted(status, answer):
    key = "ak_0123456789abcdef0123456789abcdef"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEBULA_API_KEY", key)
        with pytest.raises(Exception) as caught:
            run(lambda r: httpx.Response(status, **answer(key)), req(FLUX_SCHNELL), max_attempts=2)
    message = str(caught.value)
    assert "[redacted]" in message
    for fragment in (key, key[:12], key[12:20], base64.b64encode(key.encode()).decode()[:20]):
        assert fragment not in message


@pytest.mark.parametrize(
    "value",
    [
        "ak_first\nak_second",
        "ak_line\r\nX-Evil: 1",
        "ak_clé",
        "ak_\x01soh",
        "ak_tab\tkey",
        "ak_\x7f",
    ],
)
def test_a_key_no_header_can_carry_is_one_credentials_error(value, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", value)
    with pytest.raises(CredentialsError) as caught:
        NebulaBackend.preflight(NebulaSettings(), Path())
    message = str(caught.value)
    assert message.startswith("NEBULA_API_KEY holds a character an HTTP header cannot carry")
    assert value.strip() not in message and "ak_" not in message
    with pytest.raises(CredentialsError) as caught:
        run(lambda r: success(), req(FLUX_SCHNELL))
    assert caught.value.seen == [] and caught.value.halts


@pytest.mark.parametrize(
    "message",
    [
        "Insufficient balance, please top up",
        "Your account balance is $0.00",
        "Please top-up to continue",
        "Monthly quota exceeded",
        "insufficient funds",
        "Insufficient credits",
    ],
)
@pytest.mark.parametrize("status", [200, 400, 429])
def test_balance_and_quota_wording_means_out_of_credits(message, status):
    body = {"status": "failed", "message": message}
    with pytest.raises(OutOfCreditsError) as caught:
        run(lambda r: httpx.Response(status, json=body), req(FLUX_SCHNELL))
    assert caught.value.halts and len(caught.value.seen) == 1
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("\x1b[2J\x1b[Hall 12 images generated", "all 12 images generated"),
        ("\x1b]0;pwned\x07window title", "window title"),
        ("two\r\nlines\there", "two lines here"),
        ("\x9b31mred\u202egnp.exe", "redgnp.exe"),
        ("bell\x07 and \x00nul", "bell and nul"),
    ],
)
def test_server_text_reaches_messages_as_one_printable_line(sent, shown):
    with pytest.raises(RequestRejectedError) as caught:
        run(lambda r: httpx.Response(400, json={"message": sent}), req(FLUX_SCHNELL))
    assert str(caught.value) == f"the API rejected the request (HTTP 400): {shown}"


def test_a_non_json_error_snippet_is_printable_too():
    with pytest.raises(TransientBackendError) as caught:
        run(
            lambda r: httpx.Response(502, content=b"\x1b[31mbad\x1b[0m\ngateway\xff"),
            req(FLUX_SCHNELL),
            max_attempts=1,
        )
    assert str(caught.value) == "server error (HTTP 502: bad gateway\ufffd)"


def test_non_finite_timings_are_left_out():
    answer = success().json()
    answer["data"][0]["timings"]["inference"] = float("inf")
    text = json.dumps(answer).encode()  # Infinity: Python's JSON reads it
    result, _ = run(lambda r: httpx.Response(200, content=text), req(FLUX_SCHNELL))
    assert "inference" not in result.timings


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", float("inf")),
        ("timeout", 1e9),
        ("requests_per_minute", 1e-300),
        ("requests_per_minute", float("inf")),
    ],
)
def test_settings_are_finite_and_sane(setting, value):
    with pytest.raises(ValueError, match=setting):
        NebulaSettings(**{setting: value})


def test_an_answer_the_stand_in_marked_is_recorded_as_a_placeholder(monkeypatch):
    def marked(request: httpx.Request) -> httpx.Response:
        answer = success()
        return httpx.Response(200, json={**answer.json(), "served_by": "nebula-build stand-in"})

    monkeypatch.setenv("NEBULA_BASE_URL", "http://127.0.0.1:8790/api/v1")
    result, _ = run(marked, req(FLUX_SCHNELL))
    assert result.made_with == {"server": "stand-in"} and result.warnings == ()
    result, _ = run(lambda request: success(), req(FLUX_SCHNELL))
    assert result.made_with == {}
    monkeypatch.setenv("NEBULA_BASE_URL", "https://proxy.example.com/api/v1")
    result, _ = run(marked, req(FLUX_SCHNELL))
    assert result.made_with == {} and result.warnings == (MARKED_OFF_LOOPBACK,)


@pytest.mark.parametrize(
    ("base", "stand_in"),
    [
        (None, False),
        ("https://api.nebulablock.com/api/v1", False),
        ("https://proxy.example.com/api/v1", False),
        ("http://127.0.0.1:8790/api/v1", True),
        ("http://localhost:8790/api/v1", True),
        ("http://[::1]:8790/api/v1", True),
        ("http://10.0.0.1:8790/api/v1", False),  # refused anyway: the key goes over https
    ],
)
def test_only_a_loopback_base_url_may_be_the_stand_in(monkeypatch, base, stand_in):
    if base is None:
        monkeypatch.delenv("NEBULA_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("NEBULA_BASE_URL", base)
    expected = {"server": "stand-in"} if stand_in else {}
    assert NebulaBackend.made_with(NebulaSettings(), FLUX_SCHNELL) == expected


@pytest.mark.parametrize(
    ("answers", "settings", "said"),
    [
        ([success()], {}, []),  # no pacing: nothing to say
        ([success()], {"requests_per_minute": 60}, [True, False]),
        # a rate limit did no work: its backoff holds the request back too
        ([httpx.Response(429), success()], {}, [True, False]),
        # a server error may have: the wait after it is not said held
        ([httpx.Response(500), success()], {"requests_per_minute": 600}, [True, False]),
    ],
    ids=["unpaced", "paced", "rate-limited", "server-error"],
)
def test_a_request_is_said_held_only_while_no_try_of_it_was_sent(answers, settings, said):
    """`on_held`: what an apply stopped meanwhile may leave out of "may have been billed"."""
    held: list[bool] = []
    request = dataclasses.replace(req(FLUX_SCHNELL), on_held=held.append)
    replies = iter(answers)
    run(lambda r: next(replies), request, **settings)
    assert held == said
