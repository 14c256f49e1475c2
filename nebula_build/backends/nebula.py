"""The `nebula` backend: the hosted Nebula Block image API over httpx.

`POST {base}/images/generation` with a bearer key and a JSON body; the image
comes back base64-encoded in `data[0].b64_json`. One AsyncClient per apply
(pooled, keep-alive); the engine bounds requests in flight. The POST itself is
retried: the image's key identifies the work, so repeating it is safe.

Failures map to our errors at one place (`_classify`):
401/403 → CredentialsError (halts), 402 or "credit" → OutOfCreditsError
(halts), 429/5xx/timeouts/resets → retried, then TransientBackendError,
other 4xx → RequestRejectedError, malformed 2xx → retried once, then
RequestRejectedError. The API key lives in the client's headers only: it is
never logged, stored or put in a message.
"""

from __future__ import annotations

import base64
import binascii
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from nebula_build.params import PARAMS
from nebula_build.plugin import (
    SEEDREAM_DEFAULT_ID,
    Backend,
    BackendError,
    BackendSettings,
    CredentialsError,
    GenerationRequest,
    GenerationResult,
    ModelSupport,
    OutOfCreditsError,
    RequestRejectedError,
    TransientBackendError,
    hookimpl,
    nebula_models,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.nebulablock.com/api/v1"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER = 120.0
#: sent as null when unset, as the API's documented SDXL example does
_SENT_AS_NULL = frozenset({"negative_prompt"})


class NebulaSettings(BackendSettings):
    """`[backends.nebula]` in images.toml. The API key is never a setting."""

    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="API base URL; the NEBULA_BASE_URL environment variable wins over it.",
    )
    api_key_env: str = Field(
        "NEBULA_API_KEY", description="Environment variable that holds the API key."
    )
    timeout: float = Field(
        180.0, gt=0, description="Seconds to wait for one generation (they take tens of seconds)."
    )
    max_attempts: int = Field(
        5, ge=1, le=20, description="Tries per image for rate limits, server errors and timeouts."
    )
    retry_backoff: float = Field(
        1.0, ge=0, le=60, description="First retry delay in seconds; doubles each try, jittered."
    )
    requests_per_minute: float | None = Field(
        None,
        gt=0,
        description="Pace requests to this rate (your account tier's limit) to avoid 429s.",
    )
    seedream_model: str = Field(
        SEEDREAM_DEFAULT_ID,
        description="Model id of Seedream 3.0 (the docs do not give it; "
        "`nebula-build models --remote` lists the ids).",
    )


def api_key(settings: NebulaSettings) -> str:
    key = os.environ.get(settings.api_key_env, "").strip()
    if not key:
        raise CredentialsError(
            f"{settings.api_key_env} is not set: export {settings.api_key_env}=<your key> "
            "(from your Nebula Block account), or build offline with --backend preview",
            backend="nebula",
        )
    return key


def base_url(settings: NebulaSettings) -> str:
    return (os.environ.get("NEBULA_BASE_URL") or settings.base_url).rstrip("/")


def request_body(request: GenerationRequest, support: ModelSupport) -> dict[str, Any]:
    """The JSON body for one image, with exactly the parameters its model takes."""
    body: dict[str, Any] = {"model": request.model}
    for param in PARAMS:
        if not support.takes(param.name):
            continue
        value = getattr(request, param.name)
        if param.file:
            assert value is not None, "an inpainting model's inputs are checked when resolved"
            body[param.name] = base64.b64encode(value).decode("ascii")
        elif value is not None or param.name in _SENT_AS_NULL:
            body[param.name] = value
    return body


def check_inputs(request: GenerationRequest) -> None:
    """Inpainting inputs must be images, and the mask the image's size."""
    from nebula_build.imaging import verify_image

    if request.image is None or request.mask is None:
        return
    sizes = {}
    for name, data in (("image", request.image), ("mask", request.mask)):
        try:
            sizes[name] = verify_image(data)[1]
        except ValueError as exc:
            raise RequestRejectedError(f"input {name}: {exc}", backend="nebula") from None
    if sizes["image"] != sizes["mask"]:
        (iw, ih), (mw, mh) = sizes["image"], sizes["mask"]
        raise RequestRejectedError(
            f"the mask is {mw}x{mh} but the image is {iw}x{ih}: they must be the same size",
            backend="nebula",
        )


def _message(response: httpx.Response) -> str:
    """The server's own words, short: `message` from JSON, else a text snippet."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        error = body.get("error")
        for value in (
            body.get("message"),
            error.get("message") if isinstance(error, Mapping) else error,
            body.get("detail"),
        ):
            if value:
                return str(value)[:300]
    text = " ".join(response.text.split())
    return text[:200] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def status_error(response: httpx.Response, variable: str) -> BackendError:
    """The error a non-2xx answer means: the one mapping for every request we send."""
    status, message = response.status_code, _message(response)
    if status in (401, 403):
        return CredentialsError(
            f"{variable} was rejected (HTTP {status}: {message}); "
            "check the key in your Nebula Block account"
        )
    if status == 402 or "credit" in message.lower():
        return OutOfCreditsError(
            f"out of credits (HTTP {status}: {message}); top up your Nebula Block account"
        )
    if status == 429:
        return TransientBackendError(
            f"rate limited (HTTP 429: {message}); lower "
            "[backends.nebula] requests_per_minute or concurrency"
        )
    if status in _RETRY_STATUSES:
        return TransientBackendError(f"server error (HTTP {status}: {message})")
    return RequestRejectedError(f"the API rejected the request (HTTP {status}): {message}")


class _Retry(Exception):
    """A failure worth another try, with the error to raise if none is left."""

    def __init__(
        self, error: BackendError, delay: float | None = None, malformed: bool = False
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay
        self.malformed = malformed


class Pacer:
    """Spaces request starts so they never exceed a rate (requests per minute)."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        import asyncio

        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class NebulaBackend(Backend):
    """Generates through the hosted Nebula Block API."""

    name = "nebula"
    settings_model = NebulaSettings
    settings: NebulaSettings

    def __init__(
        self,
        settings: BackendSettings,
        *,
        root: Path,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert isinstance(settings, NebulaSettings)
        super().__init__(settings, root=root)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._models = self.models(settings)
        self._pacer = Pacer(settings.requests_per_minute)

    @classmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        seedream = getattr(settings, "seedream_model", SEEDREAM_DEFAULT_ID)
        return nebula_models(seedream)

    @classmethod
    def preflight(cls, settings: BackendSettings, root: Path) -> None:
        assert isinstance(settings, NebulaSettings)
        api_key(settings)

    @classmethod
    async def remote_models(cls, settings: BackendSettings) -> list[dict[str, Any]]:
        assert isinstance(settings, NebulaSettings)
        return await list_remote_models(settings)

    async def __aenter__(self) -> NebulaBackend:
        import httpx

        settings = self.settings
        self._client = httpx.AsyncClient(
            base_url=base_url(settings),
            headers={"Authorization": f"Bearer {api_key(settings)}", "User-Agent": "nebula-build"},
            timeout=httpx.Timeout(settings.timeout, connect=min(30.0, settings.timeout)),
            # The engine bounds requests in flight; the pool must not be the bottleneck.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            transport=self._transport,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        import asyncio

        support = self._models.get(request.model)
        if support is None:
            raise RequestRejectedError(
                f"nebula does not serve {request.model!r}",
                backend="nebula",
                image=request.image_name,
            )
        check_inputs(request)
        body = request_body(request, support)
        attempts, malformed_tries = 0, 0
        backoff = self.settings.retry_backoff
        while True:
            attempts += 1
            await self._pacer.wait()
            started = time.perf_counter()
            try:
                data, inference, size = await self._post(body)
            except _Retry as retry:
                if retry.malformed:
                    malformed_tries += 1
                last = attempts >= self.settings.max_attempts or malformed_tries >= 2
                if last:
                    raise self._named(retry.error, request, attempts) from None
                delay = retry.delay if retry.delay is not None else backoff
                await asyncio.sleep(
                    delay * (random.uniform(0.5, 1.0) if retry.delay is None else 1.0)
                )
                backoff = min(backoff * 2, 30.0)
                continue
            except BackendError as error:
                raise self._named(error, request, attempts) from None
            timings = {"request": round(time.perf_counter() - started, 4)}
            if inference is not None:
                timings["inference"] = inference
            warnings: tuple[str, ...] = ()
            if size != (request.width, request.height):
                warnings = (
                    f"nebula returned {size[0]}x{size[1]} for a "
                    f"{request.width}x{request.height} request; the original is "
                    "cached and the output is resized to the declared size",
                )
            return GenerationResult(data, seed=body.get("seed"), timings=timings, warnings=warnings)

    def _named(
        self, error: BackendError, request: GenerationRequest, attempts: int
    ) -> BackendError:
        """The error with the image named, and the attempt count where retries ran."""
        message = str(error)
        if isinstance(error, TransientBackendError) and attempts > 1:
            message = f"{message} (after {attempts} attempts)"
        return type(error)(message, backend="nebula", image=request.image_name)

    async def _post(self, body: Mapping[str, Any]) -> tuple[bytes, float | None, tuple[int, int]]:
        import httpx

        assert self._client is not None, "use the backend with `async with`"
        try:
            response = await self._client.post("/images/generation", json=body)
        except httpx.TimeoutException:
            raise _Retry(
                TransientBackendError(
                    f"timed out after {self.settings.timeout:g}s; raise "
                    "[backends.nebula] timeout if generations take longer"
                )
            ) from None
        except httpx.TransportError as exc:
            raise _Retry(
                TransientBackendError(
                    f"connection failed: {type(exc).__name__}: {exc}".rstrip(": ")
                )
            ) from None
        return self._classify(response)

    def _classify(self, response: httpx.Response) -> tuple[bytes, float | None, tuple[int, int]]:
        if response.status_code >= 300:
            error = status_error(response, self.settings.api_key_env)
            if isinstance(error, TransientBackendError):
                delay = _retry_after(response)
                if response.status_code == 429:
                    delay = min(delay or 0, _MAX_RETRY_AFTER) or None
                raise _Retry(error, delay=delay)
            raise error
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> tuple[bytes, float | None, tuple[int, int]]:
        from nebula_build.imaging import verify_image

        try:
            body = response.json()
        except ValueError:
            raise _Retry(
                RequestRejectedError(
                    f"malformed response: not JSON ({' '.join(response.text.split())[:80]!r})"
                ),
                malformed=True,
            ) from None
        if not isinstance(body, Mapping):
            raise _Retry(
                RequestRejectedError("malformed response: not a JSON object"), malformed=True
            )
        status = body.get("status")
        items = body.get("data")
        first = items[0] if isinstance(items, list) and items else None
        encoded = first.get("b64_json") if isinstance(first, Mapping) else None
        if status != "success" or not isinstance(encoded, str):
            message = str(body.get("message") or "no message")[:300]
            if "credit" in message.lower():
                raise OutOfCreditsError(f"out of credits: {message}")
            raise RequestRejectedError(
                f"the API answered status {status!r} without an image: {message}"
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Retry(
                RequestRejectedError("malformed response: bad base64 in b64_json"), malformed=True
            ) from None
        try:
            _, size = verify_image(data)
        except ValueError as exc:
            raise _Retry(
                RequestRejectedError(f"malformed response: {exc}"), malformed=True
            ) from None
        timings = first.get("timings") if isinstance(first, Mapping) else None
        inference = timings.get("inference") if isinstance(timings, Mapping) else None
        return data, float(inference) if isinstance(inference, int | float) else None, size


async def list_remote_models(
    settings: NebulaSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[dict[str, Any]]:
    """The provider's model list (`GET {base}/serverless/models`)."""
    import httpx

    async with httpx.AsyncClient(
        base_url=base_url(settings),
        headers={"Authorization": f"Bearer {api_key(settings)}"},
        timeout=httpx.Timeout(30.0),
        transport=transport,
    ) as client:
        try:
            response = await client.get("/serverless/models")
        except httpx.HTTPError as exc:
            raise TransientBackendError(
                f"could not list models: {type(exc).__name__}", backend="nebula"
            ) from None
    if response.status_code >= 300:
        error = status_error(response, settings.api_key_env)
        raise type(error)(f"could not list models: {error}", backend="nebula")
    try:
        body = response.json()
    except ValueError:
        raise RequestRejectedError(
            "could not list models: the answer is not JSON", backend="nebula"
        ) from None
    rows = body.get("data", body) if isinstance(body, Mapping) else body
    if isinstance(rows, Mapping):
        rows = rows.get("models", [])
    if not isinstance(rows, list):
        raise RequestRejectedError(
            "could not list models: unexpected answer shape", backend="nebula"
        )
    return [dict(row) for row in rows if isinstance(row, Mapping)]


@hookimpl
def nebula_build_register_backends() -> list[type[Backend]]:
    return [NebulaBackend]
