"""The gate in front of the live gallery's POST /pick.

Every web page a browser shows can send requests to loopback, so a pick is
accepted only when it proves it comes from the gallery's own page:

- it comes from this machine: a gallery served to the network (`--host`) shows
  its pages there, but takes picks only from loopback;
- its Host names the gallery (no DNS rebinding), and so does its Origin, when it
  has one; a browser that says the request is cross-site (`Sec-Fetch-Site`) is
  believed;
- its body is JSON, sent as `application/json`: an HTML form cannot send that, and
  a script on another site can only after a CORS preflight, which is never
  answered;
- it carries the run's token, which is only in the page the gallery served;
- it is small, and names an image, a draw index and the draw's generation key (the
  page may show draws the manifest, edited since, no longer declares).

The checks that cost nothing come first; the body is read last, and only its
declared, capped length.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Protocol
from urllib.parse import urlsplit

#: a pick is four short fields; anything much larger is not one
MAX_BODY_BYTES = 4096
_SAME_SITE = frozenset({"same-origin", "none"})
_GENERATION_KEY = re.compile(r"[0-9a-f]{64}")


class Body(Protocol):
    """Where the request's body is read from (the handler's `rfile`)."""

    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class PickRequest:
    """A pick the page asked for: draw `index` of image `image`, which the page showed
    as the generation `key`."""

    image: str
    index: int
    key: str


class PickRefused(Exception):
    """A request to /pick refused, with its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _single(headers: Message, name: str) -> str | None:
    values = headers.get_all(name) or []
    if len(values) > 1:
        raise PickRefused(400, f"more than one {name} header")
    return values[0].strip() if values else None


def check_pick(
    path: str,
    headers: Message,
    body: Body,
    *,
    client: str,
    token: str,
    host_ok: Callable[[str | None], bool],
) -> PickRequest:
    """The pick a POST from address `client` asks for; raises PickRefused when it may
    not be made."""
    if urlsplit(path).path != "/pick":
        raise PickRefused(404, "not found")
    if not _loopback(client):
        raise PickRefused(403, "picks are taken from this machine only")
    host = _single(headers, "Host")
    if not host_ok(host):
        raise PickRefused(403, "unknown host")
    _same_origin(headers, host or "")
    kind = (_single(headers, "Content-Type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise PickRefused(415, "a pick is sent as application/json")
    data = _read_body(headers, body)
    return _parse(data, token)


def _loopback(client: str) -> bool:
    try:
        address = ipaddress.ip_address(client.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def _same_origin(headers: Message, host: str) -> None:
    origin = _single(headers, "Origin")
    if origin is not None and origin.lower() != f"http://{host}".lower():
        raise PickRefused(403, "a pick must come from the gallery's own page")
    site = _single(headers, "Sec-Fetch-Site")
    if site is not None and site.lower() not in _SAME_SITE:
        raise PickRefused(403, "a pick must come from the gallery's own page")


def _read_body(headers: Message, body: Body) -> bytes:
    if _single(headers, "Transfer-Encoding") is not None:
        raise PickRefused(411, "send the pick with a Content-Length")
    length = _single(headers, "Content-Length")
    if length is None or not length.isdigit():
        raise PickRefused(411, "send the pick with a Content-Length")
    if int(length) > MAX_BODY_BYTES:
        raise PickRefused(413, f"a pick is at most {MAX_BODY_BYTES} bytes")
    return body.read(int(length))


def _parse(data: bytes, token: str) -> PickRequest:
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PickRefused(400, "the pick is not JSON") from None
    if not isinstance(fields, dict):
        raise PickRefused(400, 'a pick is {"image": NAME, "index": N, "key": …, "token": …}')
    given = fields.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode()
    ):
        raise PickRefused(403, "the page's token is not this run's: reload the page")
    image, index = fields.get("image"), fields.get("index")
    if not isinstance(image, str) or not image:
        raise PickRefused(400, "the pick names no image")
    if type(index) is not int:
        raise PickRefused(400, f"the pick's index must be a whole number (got {index!r:.40})")
    key = fields.get("key")
    if not isinstance(key, str) or not _GENERATION_KEY.fullmatch(key):
        raise PickRefused(400, "the pick names no draw the page showed: reload the page")
    return PickRequest(image, index, key)
