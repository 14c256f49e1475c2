"""The `nebula` backend: the hosted Nebula Block image API over httpx.

`POST {base}/images/generation` with a bearer key and a JSON body; the image
comes back base64-encoded in `data[0].b64_json`. One AsyncClient per apply
(pooled, keep-alive); the engine bounds requests in flight. The POST itself is
retried: the image's key identifies the work, so repeating it is safe.

Failures map to our errors at one place (`status_error`):
402 or credit/balance/quota wording (on any status but 401) → OutOfCreditsError
(halts), 401 → CredentialsError and 403 → AccessDeniedError (both halt),
429/5xx → retried, a request sent and not answered (a timeout, a reset, a closed
connection) → sent again at most NEBULA_TIMEOUT_RETRIES times (it may have been
billed), then TransientBackendError, a 404 →
RequestRejectedError naming the URL and the documented base, other 4xx →
RequestRejectedError, a malformed 2xx (it may have been billed) → RequestRejectedError,
never sent again.

The server is not trusted (DESIGN.md, section 10): the key goes only over https
(http only to loopback) and only to the default host or one the environment
names; every attempt has a total deadline and every answer a size cap, counted
unpacked (answers are asked for uncompressed and read raw: see `Inflater`), with
one byte budget for all answers in flight (`ByteBudget`); Retry-After is capped;
what the server says reaches a message as one printable line with the key redacted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import os
import random
import re
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from nebula_build.jsonparse import parse_json
from nebula_build.params import PARAMS
from nebula_build.plugin import (
    SEEDREAM_DEFAULT_ID,
    AccessDeniedError,
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
from nebula_build.plugin.catalog import STAND_IN_ANSWER
from nebula_build.text import MODEL_ID, STAND_IN_SERVER, model_id_problem, printable, redact

if TYPE_CHECKING:
    import asyncio

    import httpx

DEFAULT_BASE_URL = "https://api.nebulablock.com/api/v1"
#: the path every documented endpoint is under
API_PATH = "/api/v1"
#: where an image is asked for, under the base URL
GENERATION_PATH = "/images/generation"
#: the key may be read only from a variable with this prefix (NEBULA_API_KEY_STAGING…)
KEY_VARIABLE_PREFIX = "NEBULA_"
SUCCESS_BODY_LIMIT = 64 * 2**20
ERROR_BODY_LIMIT = 64 * 2**10
#: the most bytes of image answers one backend holds at once, decoded, across all its
#: requests in flight (an answer waits for room before it is read): 4 answers at the cap
ANSWER_BUDGET = 256 * 2**20
#: an account answer (model list, prices, balance): a few hundred rows in practice
ACCOUNT_BODY_LIMIT = 4 * 2**20
#: the most rows a model list may have; more is refused, not cleaned
MAX_MODEL_ROWS = 10_000
#: the most content codings an answer may be wrapped in ("gzip, gzip" is two)
MAX_CODINGS = 2
#: the most JSON values an image answer may hold: it needs a handful (status, data,
#: b64_json, timings…), and each costs memory and time to parse (jsonparse.py)
IMAGE_JSON_VALUES = 256
#: an account answer's: MAX_MODEL_ROWS rows of up to 64 fields each
ACCOUNT_JSON_VALUES = 64 * MAX_MODEL_ROWS
#: an error's (within ERROR_BODY_LIMIT)
ERROR_JSON_VALUES = 4096
#: the longest wait a Retry-After header gets, whatever it asks for
MAX_RETRY_AFTER = 60.0
LIST_MODELS_TIMEOUT = 30.0
#: seconds the price list or the balance may take before a run (at most `timeout`)
ACCOUNT_TIMEOUT = 10.0
MESSAGE_LIMIT = 300
#: how many times a request that was sent and not answered (it timed out, or the
#: connection was reset or closed once it was sent) is sent again: the server may have
#: done and billed it, and the manifest, a pull request's too, sets both `timeout` and
#: `max_attempts` (1 and 20 would pay 20 times for every image), so the environment,
#: not the manifest, allows more
ENV_TIMEOUT_RETRIES = "NEBULA_TIMEOUT_RETRIES"
DEFAULT_TIMEOUT_RETRIES = 1

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: the least backoff, in seconds (jittered down to half), after a rate limit that says
#: no Retry-After: `retry_backoff = 0` in a manifest (a pull request's) would otherwise
#: send every try at once, at each of up to 256 concurrent images
RATE_LIMITED_PAUSE = 1.0
#: a gateway's word that the server behind it took the request and gave no (good) answer:
#: it may have done and billed the work, so these count as unanswered requests
_GATEWAY_STATUSES = frozenset({502, 504})
#: sent as null when unset, as the API's documented SDXL example does
_SENT_AS_NULL = frozenset({"negative_prompt"})
_OUT_OF_CREDITS = re.compile(
    r"credit|balance|top[ -]?up|quota|payment required|recharge|arrears"
    r"|insufficient\W+(?:\w+\W+){0,2}funds|not enough\W+(?:\w+\W+)?(?:funds|money)",
    re.IGNORECASE,
)
#: what an out-of-credits error says to do about it
TOP_UP = (
    "no more requests are sent; add credits to your Nebula Block account "
    "(nebulablock.com, Billing), then run apply again: what was made is kept"
)
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#\[\]!$&'()*+,;=%@-]+")
_KEY_VARIABLE = re.compile(rf"{KEY_VARIABLE_PREFIX}[A-Za-z0-9_]+")
#: what an HTTP header value may hold: printable ASCII, on one line
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")
_LOOPBACK_NAMES = frozenset({"localhost"})
#: the zlib window bits for each content coding we can unpack
_CODINGS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class NebulaSettings(BackendSettings):
    """`[backends.nebula]` in images.toml. The API key is never a setting."""

    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="API base URL; another host than the default needs NEBULA_BASE_URL set "
        "to it in the environment (which wins over this).",
    )
    api_key_env: str = Field(
        "NEBULA_API_KEY",
        description="Environment variable that holds the API key; its name starts with NEBULA_.",
    )
    timeout: float = Field(
        180.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds one request may take in all, answer included "
        "(generations take tens of seconds).",
    )
    max_attempts: int = Field(
        5,
        ge=1,
        le=20,
        description="Tries per image for rate limits, server errors and failed connections; "
        "a request that was sent and not answered (a timeout, a reset: the server may have "
        "billed it) is tried again once, or as often as NEBULA_TIMEOUT_RETRIES in the "
        "environment allows.",
    )
    retry_backoff: float = Field(
        1.0,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="First retry delay in seconds; doubles each try, jittered.",
    )
    requests_per_minute: float | None = Field(
        None,
        ge=0.1,
        le=1_000_000,
        allow_inf_nan=False,
        description="Pace requests to this rate (your account tier's limit) to avoid 429s.",
    )
    seedream_model: str = Field(
        SEEDREAM_DEFAULT_ID,
        description="Model id of Seedream 3.0 (the docs do not give it; "
        "`nebula-build models --remote` lists the ids).",
    )

    prices: dict[str, Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="Price of one image per model id, in USD credits, e.g. "
        '{ "black-forest-labs/FLUX.1-schnell" = 0.003 }: these win over the provider\'s '
        "price list, which `apply` fetches and caches for a day.",
    )

    @field_validator("seedream_model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        return checked_model_id(value)

    @field_validator("prices")
    @classmethod
    def _priced_model_ids(cls, value: dict[str, float]) -> dict[str, float]:
        for model in value:
            checked_model_id(model)
        return value

    @field_validator("base_url")
    @classmethod
    def _key_safe_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(f"{problem}: the API key is sent there")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _nebula_variable(cls, value: str) -> str:
        if not _KEY_VARIABLE.fullmatch(value):
            raise ValueError(
                f"must name a variable starting with {KEY_VARIABLE_PREFIX} (e.g. "
                "NEBULA_API_KEY_STAGING): images.toml may not pick which of your secrets is sent"
            )
        return value


def checked_model_id(value: str) -> str:
    """`value` if it is a plausible model id; ValueError saying what one is if not."""
    problem = model_id_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}, e.g. black-forest-labs/FLUX.1-schnell")
    return value


# --- where the key may go ----------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why the API key may not be sent to `url`, or None if it may."""
    if not _URL_CHARACTERS.fullmatch(url):
        return "must be a plain URL (no spaces, control or non-ASCII characters)"
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return "must not hold a user name or password"
    if parts.query:
        return "must not hold a query (?…), which would take in each request's path"
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        return "has an invalid port"
    if not parts.hostname or parts.scheme not in ("https", "http"):
        return "must be an https:// URL"
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return "must be an https:// URL (plain http only to 127.0.0.1, ::1 or localhost)"
    return None


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_default_host(url: str) -> bool:
    parts, default = urlsplit(url), urlsplit(DEFAULT_BASE_URL)
    return (parts.scheme, parts.hostname, parts.port or 443) == ("https", default.hostname, 443)


def base_url(settings: NebulaSettings) -> str:
    """Where requests go: NEBULA_BASE_URL if set, else `base_url` when it is the default
    host. images.toml alone cannot send the key anywhere else."""
    chosen = os.environ.get("NEBULA_BASE_URL", "").strip()
    if chosen:
        problem = url_problem(chosen)
        if problem is not None:
            raise CredentialsError(
                f"NEBULA_BASE_URL {problem}: the API key is sent there", backend="nebula"
            )
        return chosen.rstrip("/")
    if not _is_default_host(settings.base_url):
        raise CredentialsError(
            f"images.toml: [backends.nebula] base_url = {settings.base_url!r} is not the "
            f"Nebula Block API, and images.toml alone may not send {settings.api_key_env} "
            f"to another host: set NEBULA_BASE_URL={settings.base_url} in your environment "
            "to use it",
            backend="nebula",
        )
    return settings.base_url.rstrip("/")


def timeout_retries() -> int:
    """How many times a request that was sent and not answered may be sent again
    (`ENV_TIMEOUT_RETRIES`): once unless the environment says otherwise."""
    text = os.environ.get(ENV_TIMEOUT_RETRIES, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_RETRIES
    if not (text.isascii() and text.isdigit()) or int(text) > 19:
        raise CredentialsError(
            f"{ENV_TIMEOUT_RETRIES} is {printable(text, limit=40)!r}: set it to how many times "
            "a request that was sent and not answered may be sent again, 0 to 19 "
            "(each may be billed)",
            backend="nebula",
        )
    return int(text)


def may_be_stand_in() -> bool:
    """Whether requests go to a loopback host (NEBULA_BASE_URL): the only place the
    stand-in for the API listens. Never raises: a URL the key may not go to is no host."""
    chosen = os.environ.get("NEBULA_BASE_URL", "").strip()
    host = urlsplit(chosen).hostname if chosen and url_problem(chosen) is None else None
    return host is not None and _is_loopback(host)


def api_key(settings: NebulaSettings, *, building: bool = True) -> str:
    """The key from the environment. Its absence offers `--backend preview` only where
    images are being built (`building`): nothing offline can list the API's models."""
    variable = settings.api_key_env
    key = os.environ.get(variable, "").strip()
    if not key:
        offline = ", or build offline with --backend preview" if building else ""
        raise CredentialsError(
            f"{variable} is not set: export {variable}=<your key> "
            f"(from your Nebula Block account){offline}",
            backend="nebula",
        )
    if not _HEADER_VALUE.fullmatch(key):
        raise CredentialsError(
            f"{variable} holds a character an HTTP header cannot carry (a line break, a "
            "control or a non-ASCII character): set it to the key alone, on one line",
            backend="nebula",
        )
    return key


def _client(
    settings: NebulaSettings,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    **options: Any,
) -> tuple[httpx.AsyncClient, tuple[str, ...]]:
    """A client for the checked host and key, and the secrets to keep out of messages."""
    import httpx

    url, key = base_url(settings), api_key(settings)
    client = httpx.AsyncClient(
        base_url=url,
        # identity: a compressed answer would be unpacked before its size is known
        headers={
            "Authorization": f"Bearer {key}",
            "User-Agent": "nebula-build",
            "Accept-Encoding": "identity",
        },
        timeout=httpx.Timeout(timeout, connect=min(30.0, timeout)),
        follow_redirects=False,
        transport=transport,
        event_hooks={"response": [_forget_an_unreadable_location]},
        # plain http goes only to loopback (`url_problem`): never through a proxy from
        # HTTP_PROXY, which would read the key in the clear on its way to another host
        trust_env=urlsplit(url).scheme != "http",
        **options,
    )
    return client, (key,)


async def _forget_an_unreadable_location(response: httpx.Response) -> None:
    """Take out a redirect's Location that is no URL (a control character in it): httpx
    would fail the answer over it as a broken connection, and the request, answered,
    be sent again; without it the answer is said as the redirect it is."""
    import httpx

    location = response.headers.get("location")
    if location is None:
        return
    try:
        httpx.URL(location)
    except httpx.InvalidURL:
        del response.headers["location"]


# --- what the server says, bounded and made safe -----------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, read within its size cap."""

    status: int
    headers: httpx.Headers
    #: None: the body is larger than its cap and was not read
    body: bytes | None
    #: why the body could not be read (corrupt or unasked-for compression); body is b""
    malformed: str | None = None


_T = TypeVar("_T")


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    deadline: float,
    payload: Mapping[str, Any] | None = None,
    limit: int = SUCCESS_BODY_LIMIT,
    budget: ByteBudget | None = None,
    then: Callable[[Answer], _T],
) -> _T:
    """Send one request and read its answer, all within `deadline` seconds (TimeoutError
    past it): a body trickled a byte at a time is cut off like a silent one. A 2xx body
    over `limit` bytes (an error's over ERROR_BODY_LIMIT), decoded, is not read. With a
    `budget`, the body waits for room in it, and holds that room while `then` digests
    the answer."""
    import asyncio

    async with (
        asyncio.timeout(deadline),
        client.stream(method, path, json=payload) as response,
    ):
        cap = limit if response.status_code < 300 else ERROR_BODY_LIMIT
        room = budget.room(_room_needed(response.headers, cap)) if budget else _no_room()
        async with room:
            try:
                body, malformed = await _read_capped(response, cap), None
            except MalformedAnswer as exc:
                body, malformed = b"", str(exc)
            return then(Answer(response.status_code, response.headers, body, malformed))


@contextlib.asynccontextmanager
async def _no_room() -> AsyncIterator[None]:
    yield


def _room_needed(headers: httpx.Headers, cap: int) -> int:
    """The bytes an answer may take once read: its declared length when it is sent as
    is, else (compressed, or of unknown length) its cap."""
    declared = headers.get("content-length", "")
    if not _content_codings(headers) and declared.isdigit():
        return min(int(declared), cap)
    return cap


class MalformedAnswer(ValueError):
    """A body that cannot be read: compressed in a way we did not ask for, or corrupt."""


class _TooLarge(Exception):
    """A body past its cap, decoded."""


def _content_codings(headers: httpx.Headers) -> list[str]:
    """The answer's content codings, in the order they were applied ("identity" left out)."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    return [c for c in codings if c not in ("", "identity")]


class Inflater:
    """Unpacks gzip or deflate layers as the bytes arrive, never past `limit` bytes
    out of any layer: a few KiB that unpack to gigabytes stop at the cap."""

    def __init__(self, codings: Sequence[str], limit: int) -> None:
        if len(codings) > MAX_CODINGS:
            raise MalformedAnswer(f"compressed {len(codings)} times over")
        for coding in codings:
            if coding not in _CODINGS:
                name = printable(coding, limit=40)
                raise MalformedAnswer(f"compressed as {name!r}, which was not asked for")
        self._names = list(reversed(codings))  # the last applied comes off first
        self._layers = [zlib.decompressobj(_CODINGS[name]) for name in self._names]
        self._made = [0] * len(self._layers)
        self._limit = limit

    def feed(self, data: bytes) -> bytes:
        """What `data` unpacks to so far; _TooLarge past the limit."""
        for index, layer in enumerate(self._layers):
            if not data:
                return b""
            data = self._unpack(index, layer.decompress, data)
        return data

    def end(self) -> bytes:
        """The rest, once every byte was fed; MalformedAnswer if a layer is cut short."""
        data = b""
        for index, layer in enumerate(self._layers):
            if data:
                data = self._unpack(index, layer.decompress, data)
            data += self._unpack(index, _flushing(layer), b"")
            if not layer.eof:
                raise MalformedAnswer(f"{self._names[index]} data cut short")
        return data

    def _unpack(self, index: int, step: Callable[[bytes, int], bytes], data: bytes) -> bytes:
        room = self._limit - self._made[index] + 1  # never 0: that would mean no limit
        try:
            out = step(data, room)
        except zlib.error as exc:
            name = self._names[index]
            said = printable(str(exc), limit=80)
            raise MalformedAnswer(f"corrupt {name} data ({said})") from None
        self._made[index] += len(out)
        if self._made[index] > self._limit:
            raise _TooLarge
        return out


def _flushing(layer: Any) -> Callable[[bytes, int], bytes]:
    """A layer's last bytes, as an unpacking step (what is fed was all consumed)."""
    return lambda _data, _room: bytes(layer.flush())


async def _read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body, unpacked, or None past `limit` bytes (raw or unpacked): the raw bytes are
    read, so a compressed one is unpacked here, within the cap, never by httpx."""
    if response.is_stream_consumed:  # an answer made in memory (a test's mock transport)
        return response.content if len(response.content) <= limit else None
    codings = _content_codings(response.headers)
    inflater = Inflater(codings, limit) if codings else None
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    received = 0
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > limit:
                return None
            body += inflater.feed(chunk) if inflater else chunk
            if len(body) > limit:
                return None
        if inflater:
            body += inflater.end()
    except _TooLarge:
        return None
    return bytes(body) if len(body) <= limit else None


class ByteBudget:
    """Bytes that concurrent answers may hold at once. An answer takes its room before
    it is read, all at once (so no two answers each hold half of what both need), and
    waits its turn when there is none; room is given first come, first served."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiting: deque[tuple[int, Any]] = deque()

    @contextlib.asynccontextmanager
    async def room(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.total)
        await self._take(size)
        try:
            yield
        finally:
            self._give_back(size)

    async def _take(self, size: int) -> None:
        import asyncio

        if not self._waiting and self.used + size <= self.total:
            self.used += size
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append((size, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._give_back(size)  # granted as it was cancelled
            else:
                self._wake()  # a smaller answer behind it may fit now
            raise

    def _give_back(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            size, granted = self._waiting[0]
            if granted.done():
                self._waiting.popleft()
                continue
            if self.used + size > self.total:
                return
            self._waiting.popleft()
            self.used += size
            granted.set_result(None)


def clean(text: str, secrets: Sequence[str], limit: int = MESSAGE_LIMIT) -> str:
    """Text from the server fit for a message: one printable line, no secret in it."""
    return printable(redact(printable(text, limit=limit * 4), secrets), limit=limit)


def redirect_target(answer: Answer, secrets: Sequence[str]) -> str:
    """Where a redirect answer points, as a message may name it: its scheme, host and
    port, without a path or query (which may carry anything), cleaned; "" for none."""
    from urllib.parse import urlsplit

    location = answer.headers.get("location", "") if 300 <= answer.status < 400 else ""
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number, brackets unclosed
        return ""
    if not host:
        return ""  # a path on the same host: the base URL is the one to check
    scheme = f"{parts.scheme}://" if parts.scheme else "//"
    return clean(f"{scheme}{_bracketed(host)}{port}", secrets, limit=120)


def shown_base(url: httpx.URL, secrets: Sequence[str]) -> str:
    """The base URL as a message may name it: its scheme, host and port, and its path
    only where that is the documented API_PATH. A proxy's path, a query or a user name
    may carry a token no one declared a secret: any other path is said as "/…" (with
    the API_PATH it ends in, if it does), the rest never."""
    port = f":{url.port}" if url.port else ""
    path = url.path.rstrip("/")
    if path and path != API_PATH:
        path = "/…" + (API_PATH if path.endswith(API_PATH) else "")
    return clean(f"{url.scheme}://{_bracketed(url.host)}{port}{path}", secrets, limit=160)


def _shown_host(url: httpx.URL, secrets: Sequence[str]) -> str:
    """The base URL's host and port, as a message names the host it could not reach."""
    host = _bracketed(url.host)
    return clean(f"{host}:{url.port}" if url.port else host, secrets)


def _bracketed(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host else host


def server_message(answer: Answer, secrets: Sequence[str]) -> str:
    """The server's own words, short: `message` from JSON, else a text snippet."""
    import httpx

    if answer.malformed is not None:
        return f"an answer that could not be read: {answer.malformed}"
    if answer.body is None:
        return f"an answer over {ERROR_BODY_LIMIT // 2**10} KiB, not read"
    try:
        body = parse_json(answer.body, values=ERROR_JSON_VALUES)
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
                return clean(str(value), secrets)
    snippet = answer.body[: MESSAGE_LIMIT * 4].decode("utf-8", "replace")
    return clean(snippet, secrets) or httpx.codes.get_reason_phrase(answer.status)


def means_out_of_credits(message: str) -> bool:
    return _OUT_OF_CREDITS.search(message) is not None


def retry_after(headers: httpx.Headers) -> float | None:
    """The wait a Retry-After header asks for, at most MAX_RETRY_AFTER seconds; None
    where there is none (or 0: then the usual backoff applies)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER) or None


def status_error(
    status: int,
    message: str,
    variable: str,
    *,
    base: str = "",
    endpoint: str = "",
    location: str = "",
) -> BackendError:
    """The error a non-2xx answer means: the one mapping for every request we send.
    `message` is the server's, already cleaned; `base` (the base URL used, as
    `shown_base` says it) and `endpoint` (the path asked for under it) are named when
    they explain the answer, and `location` (where a redirect points, cleaned) when it
    is one."""
    if 300 <= status < 400:
        where = f" to {location}" if location else ""
        return RequestRejectedError(
            f"the API answered with a redirect (HTTP {status}){where}, which nebula-build "
            "does not follow: the key would go with it; if that is the API, set "
            "NEBULA_BASE_URL to it"
        )
    if status == 402 or (status != 401 and means_out_of_credits(message)):
        return OutOfCreditsError(f"out of credits (HTTP {status}: {message}); {TOP_UP}")
    if status in (401, 403):
        rejected = CredentialsError if status == 401 else AccessDeniedError
        return rejected(
            f"{variable} was rejected (HTTP {status}: {message}); "
            "check the key in your Nebula Block account"
        )
    if status == 404 and base:
        return RequestRejectedError(
            f"HTTP 404 ({message}) from {base}{endpoint}: {_base_hint(base)}"
        )
    if status == 429:
        return TransientBackendError(
            f"rate limited (HTTP 429: {message}); lower "
            "[backends.nebula] requests_per_minute or concurrency"
        )
    if status in _RETRY_STATUSES:
        return TransientBackendError(f"server error (HTTP {status}: {message})")
    return RequestRejectedError(f"the API rejected the request (HTTP {status}): {message}")


def _base_hint(base: str) -> str:
    """What to do about a 404: the base URL is the likely mistake."""
    documented = f"the API's documented base URL is {DEFAULT_BASE_URL}"
    if base and not base.endswith(API_PATH):
        return f"{documented}; did you mean NEBULA_BASE_URL={base}{API_PATH}?"
    return f"is {base or 'the base URL'} the Nebula Block API? {documented}"


def _base64(encoded: str) -> bytes:
    """Base64 as JSON carries it, also wrapped in lines (MIME's 76 columns) as some
    encoders write it: a paid image is not refused for its line breaks."""
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        if "\n" not in encoded:
            raise
    return base64.b64decode(encoded.replace("\r\n", "").replace("\n", ""), validate=True)


class _Retry(Exception):
    """A failure worth another try, with the error to raise if none is left."""

    def __init__(
        self,
        error: BackendError,
        delay: float | None = None,
        *,
        sent: bool = True,
        unanswered: bool = False,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay
        #: a 429: the next try waits at least RATE_LIMITED_PAUSE, whatever the backoff
        self.rate_limited = rate_limited
        #: the server may have done (and billed) the work: False for a rate limit or a
        #: connection that never reached it
        self.sent = sent
        #: sent, and no answer: none within the manifest's `timeout`, or the connection
        #: was reset or closed before the answer was read whole (`ENV_TIMEOUT_RETRIES`)
        self.unanswered = unanswered


#: an image as the API sent it: bytes, inference seconds (if said), (width, height),
#: and whether the loopback stand-in made it (`STAND_IN_ANSWER`): a placeholder
_Image = tuple[bytes, float | None, tuple[int, int], bool]


class Pacer:
    """Spaces request starts at least `interval` apart (a rate in requests per minute).

    Each start is measured from the moment the previous request was let go, not from the
    slot it was given in advance: a waiter woken late (a busy event loop, a loaded
    machine) would otherwise let every waiter whose slot had passed go at once, a burst
    the server's rate limit counts against us."""

    def __init__(
        self, per_minute: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.clock = clock
        self._last: float | None = None
        self._turn: asyncio.Lock | None = None

    async def wait(self) -> None:
        """Return when a request may start; the caller sends it before its next await."""
        if not self.interval:
            return
        import asyncio

        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:  # one waiter at a time, in arrival order
            while (
                self._last is not None and (left := self._last + self.interval - self.clock()) > 0
            ):
                await asyncio.sleep(left)
            self._last = self.clock()


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


class NebulaBackend(Backend):
    """Generates through the hosted Nebula Block API."""

    name = "nebula"
    keeps_timeout = True  # per attempt
    settings_model = NebulaSettings
    settings: NebulaSettings
    paid = True

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
        self._secrets: tuple[str, ...] = ()
        self._models = self.models(settings)
        self._pacer = Pacer(settings.requests_per_minute)
        self._budget = ByteBudget(ANSWER_BUDGET)
        self._timeout_retries = timeout_retries()  # preflight has said what is wrong with it

    @classmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        seedream = getattr(settings, "seedream_model", SEEDREAM_DEFAULT_ID)
        return nebula_models(seedream)

    @classmethod
    def made_with(cls, settings: BackendSettings, model_id: str) -> Mapping[str, str]:
        """`server = "stand-in"` where NEBULA_BASE_URL is on loopback, where the stand-in
        for the API (`python -m nebula_build.testing`) may answer: there, and only there,
        its placeholders are taken as the images they stand for."""
        return dict([STAND_IN_SERVER]) if may_be_stand_in() else {}

    @classmethod
    def secret_variables(cls, settings: BackendSettings) -> tuple[str, ...]:
        """The key's variable: the engine redacts it too, behind this backend's own care."""
        return (getattr(settings, "api_key_env", "NEBULA_API_KEY"),)

    @classmethod
    def preflight(cls, settings: BackendSettings, root: Path) -> None:
        assert isinstance(settings, NebulaSettings)
        base_url(settings)
        api_key(settings)
        timeout_retries()

    @classmethod
    async def remote_models(cls, settings: BackendSettings) -> list[dict[str, Any]]:
        assert isinstance(settings, NebulaSettings)
        api_key(settings, building=False)
        return await list_remote_models(settings)

    @classmethod
    def prices(cls, settings: BackendSettings) -> Mapping[str, float]:
        assert isinstance(settings, NebulaSettings)
        return settings.prices

    @classmethod
    async def price_list(cls, settings: BackendSettings) -> dict[str, float]:
        assert isinstance(settings, NebulaSettings)
        return await model_prices(settings)

    @classmethod
    async def balance(cls, settings: BackendSettings) -> float:
        assert isinstance(settings, NebulaSettings)
        return await account_balance(settings)

    async def __aenter__(self) -> NebulaBackend:
        import httpx

        _sniffio_absent_once()
        self._client, self._secrets = _client(
            self.settings,
            self.settings.timeout,
            self._transport,
            # The engine bounds requests in flight; the pool must not be the bottleneck.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        support = self._models.get(request.model)
        if support is None:
            raise RequestRejectedError(
                f"nebula does not serve {request.model!r}",
                backend="nebula",
                image=request.image_name,
            )
        check_inputs(request)
        body = request_body(request, support)
        attempts, unanswered = 0, 0
        reached = False  # whether a try reached the server, which may have billed it
        backoff = self.settings.retry_backoff
        while True:
            attempts += 1
            paced = self._pacer.wait()
            await (paced if reached or not self._pacer.interval else _held_back(request, paced))
            started = time.perf_counter()
            try:
                data, inference, _, stand_in = await self._attempt(body)
            except _Retry as retry:
                _forget_frames(retry)
                reached = reached or retry.sent
                unanswered += retry.unanswered
                if attempts >= self.settings.max_attempts:
                    raise self._named(retry.error, request, attempts) from None
                if retry.sent and not request.retry_after_send:
                    raise self._named(retry.error, request, attempts, capped=True) from None
                if unanswered > self._timeout_retries:
                    raise self._named(retry.error, request, attempts, unanswered=True) from None
                floor = RATE_LIMITED_PAUSE if retry.rate_limited else 0.0
                paused = self._pause(request, retry.delay, max(backoff, floor))
                await (paused if reached else _held_back(request, paused))
                backoff = min(backoff * 2, 30.0)
                continue
            except BackendError as error:
                _forget_frames(error)
                raise self._named(error, request, attempts) from None
            timings = {"request": round(time.perf_counter() - started, 4)}
            if inference is not None:
                timings["inference"] = inference
            made_with, marked_elsewhere = _stand_in_record(stand_in)
            return GenerationResult(
                data,
                seed=body.get("seed"),
                timings=timings,
                warnings=marked_elsewhere,
                made_with=made_with,
            )

    @staticmethod
    async def _pause(request: GenerationRequest, delay: float | None, backoff: float) -> None:
        """Wait before the next try: what the server asked for (shown), else the backoff."""
        import asyncio

        if delay is None:
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            return
        if delay >= 1 and request.on_activity is not None:
            request.on_activity(f"waiting {delay:.0f} s (Retry-After)")
        await asyncio.sleep(delay)

    def _named(
        self,
        error: BackendError,
        request: GenerationRequest,
        attempts: int,
        *,
        capped: bool = False,
        unanswered: bool = False,
    ) -> BackendError:
        """The error with the image named, and the attempt count where retries ran (or
        why none did, or no more)."""
        message = str(error)
        if capped:
            message = (
                f"{message} (not tried again: the server may have billed it, and a capped "
                "apply never pays twice for one image)"
            )
        elif unanswered:
            after = f"after {attempts} attempts; " if attempts > 1 else ""
            allowed = self._timeout_retries
            times = "once" if allowed == 1 else f"{allowed} times"
            again = "not sent again" if not allowed else f"sent again {times} at most"
            message = (
                f"{message} ({after}a request that was sent and not answered may have been "
                f"billed, so it is {again}; {ENV_TIMEOUT_RETRIES}=N in the environment allows N)"
            )
        elif isinstance(error, TransientBackendError) and attempts > 1:
            message = f"{message} (after {attempts} attempts)"
        return type(error)(message, backend="nebula", image=request.image_name)

    async def _attempt(self, body: Mapping[str, Any]) -> _Image:
        import httpx

        assert self._client is not None, "use the backend with `async with`"
        timeout = self.settings.timeout
        try:
            return await exchange(
                self._client,
                "POST",
                GENERATION_PATH,
                deadline=timeout,
                payload=body,
                budget=self._budget,
                then=self._answered,
            )
        except httpx.ConnectTimeout:
            raise _Retry(
                TransientBackendError(f"could not connect within {timeout:g}s"), sent=False
            ) from None
        except (TimeoutError, httpx.TimeoutException):
            raise _Retry(
                TransientBackendError(
                    f"timed out after {timeout:g}s; raise "
                    "[backends.nebula] timeout if generations take longer"
                ),
                unanswered=True,
            ) from None
        except httpx.DecodingError:  # not raised while raw bytes are read; kept if ever
            raise _malformed("its compression is corrupt") from None
        except httpx.TransportError as exc:
            said = clean(f"{type(exc).__name__}: {exc}".rstrip(": "), self._secrets)
            # refused, unknown host, a proxy that would not connect: nothing reached the
            # server; anything else broke once the request was on its way, and the
            # server may have done and billed it
            sent = not _never_sent(exc)
            url = self._client.base_url
            host = _shown_host(url, self._secrets)
            hint = "" if sent else f"; {_unreached_hint(shown_base(url, self._secrets))}"
            raise _Retry(
                TransientBackendError(f"connection to {host} failed: {said}{hint}"),
                sent=sent,
                unanswered=sent,
            ) from None

    def _answered(self, answer: Answer) -> _Image:
        """The image in `answer`, or the error (or retry) it means."""
        assert self._client is not None, "use the backend with `async with`"
        if answer.status >= 300:
            error = status_error(
                answer.status,
                server_message(answer, self._secrets),
                self.settings.api_key_env,
                base=shown_base(self._client.base_url, self._secrets),
                endpoint=GENERATION_PATH,
                location=redirect_target(answer, self._secrets),
            )
            if isinstance(error, TransientBackendError):
                rate_limited = answer.status == 429  # refused before any work
                raise _Retry(
                    error,
                    delay=retry_after(answer.headers),
                    rate_limited=rate_limited,
                    sent=not rate_limited,
                    unanswered=answer.status in _GATEWAY_STATUSES,
                )
            raise error
        return self._decode(answer)

    def _decode(self, answer: Answer) -> _Image:
        """The image in a 2xx answer. Its structure is checked here (magic, chunks and their
        CRCs, size limits: what a truncated or garbled answer breaks), so such an answer fails
        its image here, never sent again (it may have been billed); its pixel data is proved
        to decode once, by the engine, in a worker thread (engine/verify.py), not a second
        time here on the event loop."""
        from nebula_build.imaging import examine, sniff, verify_image

        if answer.malformed is not None:
            raise _malformed(answer.malformed)
        if answer.body is None:
            raise RequestRejectedError(
                f"the answer is over {SUCCESS_BODY_LIMIT // 2**20} MiB, more than any image: "
                f"not read further{MAY_BE_BILLED}"
            )
        try:
            body = parse_json(answer.body, values=IMAGE_JSON_VALUES)
        except ValueError as exc:
            snippet = clean(answer.body[:320].decode("utf-8", "replace"), self._secrets, 80)
            raise _malformed(f"{exc} ({snippet!r})") from None
        if not isinstance(body, Mapping):
            raise _malformed("not a JSON object")
        items = body.get("data")
        first = items[0] if isinstance(items, list) and items else None
        encoded = first.get("b64_json") if isinstance(first, Mapping) else None
        if body.get("status") != "success" or not isinstance(encoded, str):
            raise self._refusal(body)
        try:
            data = _base64(encoded)
        except (binascii.Error, ValueError):
            raise _malformed("bad base64 in b64_json") from None
        try:
            # an AVIF has no structure to examine: decoded here as before (the engine
            # refuses it all the same, without a second paid try)
            size = verify_image(data)[1] if sniff(data) == "avif" else examine(data).size
        except ValueError as exc:
            raise _malformed(str(exc)) from None
        field, value = STAND_IN_ANSWER
        return data, _inference_seconds(first), size, body.get(field) == value

    def _refusal(self, body: Mapping[str, Any]) -> BackendError:
        """A 2xx answer without an image: the server's reason, credits included."""
        message = clean(str(body.get("message") or "no message"), self._secrets)
        if means_out_of_credits(message):
            return OutOfCreditsError(f"out of credits ({message}); {TOP_UP}")
        status = clean(repr(body.get("status")), self._secrets, 40)
        return RequestRejectedError(f"the API answered status {status} without an image: {message}")


#: what a failed answer to a request the server took adds: it may be paid for, and
#: another try may be paid for too, so the user decides on it
MAY_BE_BILLED = (
    " (the request may have been billed, so it is not sent again: "
    "run apply again to try it once more)"
)


def _malformed(said: str) -> RequestRejectedError:
    """The error a 2xx answer whose image cannot be read means: the server took the
    request, and may have billed it, so it is not sent again within this run."""
    return RequestRejectedError(f"malformed response: {said}{MAY_BE_BILLED}")


def _unreached_hint(where: str) -> str:
    """What to check where nothing could reach the API's host: the address (`where`, as
    `shown_base` says it), where NEBULA_BASE_URL chose it, else this machine's way out."""
    if os.environ.get("NEBULA_BASE_URL", "").strip():
        return f"nothing reached it: is the API listening at {where} (NEBULA_BASE_URL)?"
    return "nothing reached it: check this machine's network, DNS and proxy settings"


def _never_sent(error: httpx.TransportError) -> bool:
    """Whether `error` came before any of the request left: a connection refused or to an
    unknown host, a proxy that would not open a tunnel, a request we could not write."""
    import httpx

    return isinstance(
        error,
        httpx.ConnectError
        | httpx.ProxyError
        | httpx.UnsupportedProtocol
        | httpx.LocalProtocolError,
    )


async def _held_back(request: GenerationRequest, wait: Awaitable[None]) -> None:
    """Await `wait` (the pacer's turn, a backoff) with the request said held back
    (`on_held`): no try of it reached the server, so a run stopped meanwhile does not
    say it may have been billed."""
    if request.on_held is None:
        await wait
        return
    request.on_held(True)
    await wait
    request.on_held(False)  # not reached if cancelled: it stays held, never sent


def _forget_frames(error: BaseException) -> None:
    """Drop the frames `error` went through: their locals hold the answer it was raised
    over (up to 64 MiB), and the error we raise next keeps it as its context, for as
    long as the run keeps the failure."""
    error.__traceback__ = None
    error.__context__ = None


def _sniffio_absent_once() -> None:
    """httpcore runs `import sniffio` for every lock, event and shield it creates, several
    times a request. Where sniffio is not installed, each of those failed imports searches
    every sys.path folder again (tens of µs and a stat call per folder, thousands of
    times a run). Recording its absence once (None in sys.modules, Python's own marker)
    makes each import fail at once, with the same ModuleNotFoundError."""
    import importlib.util
    import sys

    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _inference_seconds(item: Any) -> float | None:
    timings = item.get("timings") if isinstance(item, Mapping) else None
    seconds = timings.get("inference") if isinstance(timings, Mapping) else None
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return float(seconds) if math.isfinite(seconds) and seconds >= 0 else None
    return None


#: the warning on an answer marked as the stand-in's from a server not on loopback
MARKED_OFF_LOOPBACK = (
    "the server marked this image as a placeholder of the stand-in for the API "
    "(`served_by`), but NEBULA_BASE_URL is not on loopback, where the stand-in listens: "
    "recorded as the real image (a dry run points NEBULA_BASE_URL at 127.0.0.1)"
)


def _stand_in_record(marked: bool) -> tuple[dict[str, str], tuple[str, ...]]:
    """The `made_with` of an answer, and its warning. A mark counts only on loopback: a
    placeholder elsewhere would be made again, and paid for, by every apply."""
    if not marked:
        return {}, ()
    if may_be_stand_in():
        return dict([STAND_IN_SERVER]), ()
    return {}, (MARKED_OFF_LOOPBACK,)


async def list_remote_models(
    settings: NebulaSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    deadline: float = LIST_MODELS_TIMEOUT,
) -> list[dict[str, Any]]:
    """The provider's model list (`GET {base}/serverless/models`), every string in it
    made printable and secret-free."""
    rows, secrets = await _model_rows(settings, deadline, transport)
    return [_cleaned(row, secrets) for row in rows]


async def _model_rows(
    settings: NebulaSettings, deadline: float, transport: httpx.AsyncBaseTransport | None
) -> tuple[list[Mapping[str, Any]], tuple[str, ...]]:
    """The model list's rows as the server sent them (at most MAX_MODEL_ROWS), and the
    secrets to keep out of what is shown of them."""
    what = "could not list models"
    body, secrets = await _get_json(settings, "/serverless/models", what, deadline, transport)
    rows = body.get("data", body) if isinstance(body, Mapping) else body
    if isinstance(rows, Mapping):
        rows = rows.get("models", [])
    if not isinstance(rows, list):
        raise RequestRejectedError(f"{what}: unexpected answer shape", backend="nebula")
    if len(rows) > MAX_MODEL_ROWS:
        raise RequestRejectedError(
            f"{what}: the answer lists {len(rows)} models, more than {MAX_MODEL_ROWS}",
            backend="nebula",
        )
    return [row for row in rows if isinstance(row, Mapping)], secrets


async def model_prices(
    settings: NebulaSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> dict[str, float]:
    """The price of one generation per model id, from the provider's model list; rows
    without a usable price, or whose model_name is no model id or holds a secret (a
    server that echoes the key as a model's name), are left out: the ids are kept in
    `.nebula-build/prices.json`. Nothing else in a row is read, so nothing else needs
    cleaning."""
    rows, secrets = await _model_rows(settings, account_deadline(settings), transport)
    prices: dict[str, float] = {}
    for row in rows:
        model, price = row.get("model_name"), _amount(row.get("price"))
        if (
            isinstance(model, str)
            and MODEL_ID.fullmatch(model)
            and price is not None
            and redact(model, secrets) == model
        ):
            prices[model] = price
    return prices


async def account_balance(
    settings: NebulaSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> float:
    """The account's credit balance (`GET {base}/users/credits`, whose answer is
    `{"data": {"available_balance": "1228.55600"}, "status": "success"}`)."""
    what = "could not read the balance"
    body, _ = await _get_json(
        settings, "/users/credits", what, account_deadline(settings), transport
    )
    data = body.get("data") if isinstance(body, Mapping) else None
    said = data.get("available_balance") if isinstance(data, Mapping) else None
    balance = _amount(said, signed=True)
    if balance is None:
        raise RequestRejectedError(f"{what}: unexpected answer shape", backend="nebula")
    return balance


def account_deadline(settings: NebulaSettings) -> float:
    """The longest an account question (prices, balance) may take before a run: short,
    for the run waits on it."""
    return min(ACCOUNT_TIMEOUT, settings.timeout)


def _amount(value: Any, *, signed: bool = False) -> float | None:
    """A price or a balance as the API writes it (a number or a decimal string), or
    None if it is not a finite amount (of zero or more, unless `signed`)."""
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        amount = float(value)
        return amount if math.isfinite(amount) and (signed or amount >= 0) else None
    return None


async def _get_json(
    settings: NebulaSettings,
    path: str,
    what: str,
    deadline: float,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[Any, tuple[str, ...]]:
    """`GET {base}{path}`'s JSON answer within `deadline`, and the secrets to keep out
    of messages; a failure is a BackendError that starts with `what`."""
    import httpx

    client, secrets = _client(settings, deadline, transport)
    async with client:
        try:
            answer = await exchange(
                client, "GET", path, deadline=deadline, limit=ACCOUNT_BODY_LIMIT, then=_as_is
            )
        except (TimeoutError, httpx.TimeoutException):
            raise TransientBackendError(
                f"{what}: no answer within {deadline:g}s", backend="nebula"
            ) from None
        except httpx.HTTPError as exc:
            said = type(exc).__name__
            if isinstance(exc, httpx.TransportError) and _never_sent(exc):
                said = f"{said}, {_unreached_hint(shown_base(client.base_url, secrets))}"
            raise TransientBackendError(f"{what}: {said}", backend="nebula") from None
    if answer.status >= 300:
        error = status_error(
            answer.status,
            server_message(answer, secrets),
            settings.api_key_env,
            base=shown_base(client.base_url, secrets),
            endpoint=path,
            location=redirect_target(answer, secrets),
        )
        raise type(error)(f"{what}: {error}", backend="nebula")
    if answer.malformed is not None:
        raise RequestRejectedError(
            f"{what}: the answer could not be read: {answer.malformed}", backend="nebula"
        )
    if answer.body is None:
        raise RequestRejectedError(
            f"{what}: the answer is over {ACCOUNT_BODY_LIMIT // 2**20} MiB", backend="nebula"
        )
    try:
        return parse_json(answer.body, values=ACCOUNT_JSON_VALUES), secrets
    except ValueError as exc:
        raise RequestRejectedError(f"{what}: the answer is {exc}", backend="nebula") from None


def _as_is(answer: Answer) -> Answer:
    return answer


def _cleaned(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON value from the server with every string made printable and secret-free."""
    if isinstance(value, str):
        return clean(value, secrets, limit=200)
    if isinstance(value, dict):
        return {clean(str(k), secrets, limit=100): _cleaned(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(item, secrets) for item in value]
    return value


@hookimpl
def nebula_build_register_backends() -> list[type[Backend]]:
    return [NebulaBackend]
