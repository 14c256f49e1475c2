"""A stand-in for the Nebula image API on 127.0.0.1, with faults on demand.

It implements the documented endpoint (`POST {base}/images/generation`, bearer
key, the `{"status": "success", "data": [{"b64_json": …}]}` envelope, plus a
`"served_by": "nebula-build stand-in"` field the real API never sends, unless
`marks_placeholders` is False: the nebula backend records each image as a
placeholder, never shared or taken for the real one), the
model list with its prices (`GET {base}/serverless/models`, from `prices`) and
the account balance (`GET {base}/users/credits`, from `balance`), returns real
PNG/JPEG/WebP images of the requested size, and injects faults so clients can be
tested for real::

    with NebulaTestServer(api_key="ak_test") as server:
        server.add_faults("429:1", "reset")          # the next two requests fail
        server.add_faults("500", prompt="a red cap") # only requests for this prompt
        server.add_credits_faults("slow:5")          # the next balance answer is late
        server.balance = "0.01000"
        ... NEBULA_BASE_URL=server.base_url ...

Faults: "401" "402" "403" "404" "422" "500" "502" "503" "504", "429[:seconds]"
(with Retry-After), "reset" (connection reset mid-response), "drop" (connection reset
once the request is read, before any answer), "hang_up" (connection closed once the
request is read, no answer), "slow:<seconds>",
"malformed_json", "bad_base64", "not_image", "truncated_image", "wrong_size[:side]"
(64 pixels wider than asked, or side x side), "wrapped_base64" (the image's base64 in
76-column lines, as MIME writes it), "failed_status[:message]" (a 200 without an
image), "credits_message".

Hostile faults, a server that does not play fair:

- "trickle[:seconds]": a 200 whose body comes one byte per interval (default 0.2 s)
- "echo[:status]": an error (default 400) whose message repeats the Authorization header
- "echo_as:<form>": a 400 whose message repeats the key disguised: "base64" (of the
  whole header value), "lower", "fullwidth", "accents", "nbsp" (a no-break space
  between its characters), "lines" (pieces of 7 on their own lines)
- "echo_model": a model list that also prices, as model ids, the key from the
  Authorization header and an id with most of the key in it (a list fault)
- "huge_error[:MiB]", "huge_success[:MiB]": a 500 or 200 with a body of that size
  (default 1 and 65), chunked: no Content-Length gives it away in advance
- "retry_after:<value>": a 503 with `Retry-After: <value>` ("86400", "inf", an HTTP date)
- "deep_json[:depth]": a 200 whose `data` is nested `depth` lists deep (default 100000)
- "json_bomb[:MiB]": a 200 whose `data` is a list of empty lists, `[[],[],…]`, that
  many MiB in all (default 64, just under the image answer's cap): a few bytes a list
- "json_bomb_utf16[:MiB]": the same in UTF-16 (default 16 MiB), with a character
  whose bytes hold a quote before the lists
- "pixel_bomb": a small PNG whose header claims 100000x100000 pixels
- "checkerboard": a 200 whose image is painted on a grey and white checkerboard, the
  fake transparency a model draws when a prompt asks for a transparent background
- "blank": a 200 whose image is nothing but its background (the colour the prompt
  asks for), a model that drew no subject

A prompt that asks for a flat background colour the way nebula-build's transparent
sprites do ("… on a flat solid magenta (#FF00FF) background …") gets its image on that
colour, as a model that follows the prompt would paint it.

- "private_chunk[:MiB]": a real PNG carrying a private ancillary chunk (default 8 MiB)
- "message:<status>:<text>": an error with exactly that message (escape sequences…)
- "gzip_bomb[:MiB]": a 200 sent `Content-Encoding: gzip, gzip` whose few KiB unpack to
  that many MiB of zeros (default 256), whatever the request asked for
- "gzip": a real answer, gzipped although the client asked for none (a misbehaving proxy)
- "bad_gzip": a 200 that says `Content-Encoding: gzip` over bytes that are not gzip
- "encoded:<coding>": a real answer labelled with that content coding ("br"), not applied
- "cmyk": a 200 whose image is a CMYK JPEG (a PNG cannot hold its pixels as they are)
- "many_models[:count]": a model list with that many rows (default 20000)
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from nebula_build.httpthread import BackgroundHTTPServer
from nebula_build.plugin.catalog import (
    FLUX_FILL,
    FLUX_SCHNELL,
    SDXL,
    SEEDREAM_DEFAULT_ID,
    STAND_IN_ANSWER,
)

API_PREFIX = "/api/v1"
KNOWN_MODELS = (SDXL, FLUX_SCHNELL, FLUX_FILL, SEEDREAM_DEFAULT_ID)
MODELS_PATH = f"{API_PREFIX}/serverless/models"
CREDITS_PATH = f"{API_PREFIX}/users/credits"
#: connections the stand-in serves at once, a thread each
STAND_IN_CONNECTIONS = 1024
#: the one price the API documents (SDXL's, in its model list example)
DEFAULT_PRICE = 0.009


def _amount(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


def _status(text: str) -> int:
    if not 100 <= int(text) <= 599:
        raise ValueError(text)
    return int(text)


def _disguised(form: str, header: str) -> str:
    """The Authorization header's value, or the key in it, as "echo_as:<form>" says it."""
    key = header.removeprefix("Bearer ")
    forms: dict[str, Callable[[], str]] = {
        "base64": lambda: base64.b64encode(header.encode()).decode(),
        "lower": key.lower,
        "fullwidth": lambda: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key),
        "accents": lambda: "\u0301".join(key),
        "nbsp": lambda: "\u00a0".join(key),
        "lines": lambda: "\n".join(key[i : i + 7] for i in range(0, len(key), 7)),
    }
    return forms[form]()


def _echo_form(text: str) -> str:
    try:
        _disguised(text, "Bearer ak_")
    except KeyError:
        raise ValueError(text) from None
    return text


def _message_status(argument: str) -> int:
    """The status of "message:<status>:<text>"."""
    return _status(argument.partition(":")[0] or "400")


#: each fault by name, and how the server reads what follows its ":" (None: as text,
#: or not at all); an HTTP status ("500", "429:2") is a fault too
FAULT_ARGUMENTS: dict[str, Callable[[str], object] | None] = {
    "reset": None,
    "drop": None,
    "hang_up": None,
    "slow": _amount,
    "malformed_json": None,
    "bad_base64": None,
    "not_image": None,
    "truncated_image": None,
    "wrong_size": int,
    "wrapped_base64": None,
    "failed_status": None,
    "credits_message": None,
    "checkerboard": None,
    "blank": None,
    "trickle": _amount,
    "echo": _status,
    "echo_as": _echo_form,
    "echo_model": None,
    "huge_error": _amount,
    "huge_success": _amount,
    "retry_after": None,
    "deep_json": int,
    "json_bomb": _amount,
    "json_bomb_utf16": _amount,
    "pixel_bomb": None,
    "private_chunk": _amount,
    "message": _message_status,
    "gzip_bomb": int,
    "gzip": None,
    "bad_gzip": None,
    "encoded": None,
    "cmyk": None,
    "many_models": int,
}


def fault_problem(fault: str) -> str | None:
    """Why the server cannot act out `fault`, or None: a misspelt one would be served
    as a success, and a number it cannot read fails the request with a traceback."""
    name, _, argument = fault.partition(":")
    if name.isdigit():
        return None if 100 <= int(name) <= 599 else "not an HTTP status (100-599)"
    if name not in FAULT_ARGUMENTS:
        return "not a fault this server knows (see nebula_build/testing/server.py)"
    read = FAULT_ARGUMENTS[name]
    try:
        if read is not None and argument:
            read(argument)
    except ValueError:
        wanted = "an HTTP status" if read in (_status, _message_status) else "a number"
        return f"{name} takes {wanted} after the colon, not {argument!r}"
    return None


@dataclass
class RecordedRequest:
    """One request the server received (the key itself is not kept)."""

    method: str
    path: str
    authorized: bool
    body: dict[str, Any]
    started: float
    finished: float = 0.0
    #: the request's Accept-Encoding header, as sent
    accept_encoding: str = ""


@dataclass
class _State:
    faults: deque[str] = field(default_factory=deque)
    list_faults: deque[str] = field(default_factory=deque)
    credits_faults: deque[str] = field(default_factory=deque)
    prompt_faults: dict[str, deque[str]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    images: dict[tuple[int, int, str, int, str, bool], bytes] = field(default_factory=dict)


class NebulaTestServer(BackgroundHTTPServer):
    """The fake API. Use as a context manager; `base_url` is what clients need."""

    def __init__(
        self,
        api_key: str = "ak_test",
        *,
        latency: float = 0.0,
        image_format: str = "png",
        inference_seconds: float = 1.25,
        port: int = 0,
        marks_placeholders: bool = True,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.image_format = image_format
        self.inference_seconds = inference_seconds
        #: the model list's price per image model (a model left out has no price)
        self.prices: dict[str, Any] = dict.fromkeys(KNOWN_MODELS, DEFAULT_PRICE)
        #: what `GET /users/credits` says, as the API writes it (a decimal string)
        self.balance: Any = "1228.55600"
        #: mark each image answer as the stand-in's (`STAND_IN_ANSWER`), so that
        #: nebula-build records its images as placeholders; False answers exactly as
        #: the real API does (a test of what a paid run does with what it made)
        self.marks_placeholders = marks_placeholders
        self._state = _State()
        self._lock = threading.Lock()
        # Its connections stay open between requests for as long as a client keeps them
        # (a run's pool holds one per request at once): room for the highest concurrency.
        super().__init__(
            _handler_for(self), port=port, poll_interval=0.02, max_connections=STAND_IN_CONNECTIONS
        )

    @property
    def base_url(self) -> str:
        return f"{self.origin}{API_PREFIX}"

    # --- scripting ------------------------------------------------------------

    def add_faults(self, *faults: str, prompt: str | None = None) -> None:
        """Queue faults for the next generation requests (or those for `prompt`)."""
        with self._lock:
            if prompt is None:
                self._state.faults.extend(faults)
            else:
                self._state.prompt_faults.setdefault(prompt, deque()).extend(faults)

    def add_model_list_faults(self, *faults: str) -> None:
        """Queue faults for the next model list requests (`GET …/serverless/models`)."""
        with self._lock:
            self._state.list_faults.extend(faults)

    def add_credits_faults(self, *faults: str) -> None:
        """Queue faults for the next balance requests (`GET …/users/credits`)."""
        with self._lock:
            self._state.credits_faults.extend(faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def generations(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/images/generation")]

    @property
    def peak_in_flight(self) -> int:
        return self._state.peak_in_flight

    def reset_counters(self) -> None:
        with self._lock:
            self._state.requests.clear()
            self._state.peak_in_flight = 0

    # --- used by the handler ----------------------------------------------------

    def envelope(self, body: dict[str, Any], b64: str) -> dict[str, Any]:
        """The success answer around one base64 image, marked where it is to be."""
        answer = _envelope(body, b64, self.inference_seconds)
        if self.marks_placeholders:
            field, value = STAND_IN_ANSWER
            answer[field] = value
        return answer

    def _next_fault(self, prompt: str) -> str | None:
        with self._lock:
            for fragment, queue in self._state.prompt_faults.items():
                if fragment in prompt and queue:
                    return queue.popleft()
            return self._state.faults.popleft() if self._state.faults else None

    def _next_get_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._state.list_faults if path == MODELS_PATH else self._state.credits_faults
            return queue.popleft() if queue else None

    def _enter(self, record: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(record)
            self._state.in_flight += 1
            self._state.peak_in_flight = max(self._state.peak_in_flight, self._state.in_flight)

    def _leave(self, record: RecordedRequest) -> None:
        """The answer starts: the request no longer counts as in flight (a client may
        send its next request as soon as it has read this answer)."""
        with self._lock:
            if record.finished:
                return
            self._state.in_flight -= 1
            record.finished = time.monotonic()

    def image(
        self,
        width: int,
        height: int,
        seed: int,
        image_format: str | None = None,
        background: str = "",
        *,
        blank: bool = False,
    ) -> bytes:
        """A real image of the given size, cached: the server must not be the bottleneck.
        `background`: "#RRGGBB" paints it on that colour, "checkerboard" on fake
        transparency; by default on a colour of the seed's."""
        image_format = image_format or self.image_format
        key = (width, height, image_format, seed, background, blank)
        with self._lock:
            cached = self._state.images.get(key)
        if cached is not None:
            return cached
        from PIL import Image, ImageDraw

        digest = hashlib.sha256(str(seed).encode()).digest()
        fill = tuple(digest[:3])
        if background.startswith("#"):
            fill = tuple(bytes.fromhex(background[1:]))
        image = Image.new("RGB", (width, height), fill)
        if background == "checkerboard":
            squares = ImageDraw.Draw(image)
            step = max(4, width // 16)
            for y in range(0, height, step):
                for x in range(0, width, step):
                    shade = (255, 255, 255) if (x + y) // step % 2 else (204, 204, 204)
                    squares.rectangle((x, y, x + step - 1, y + step - 1), fill=shade)
        if not blank:
            ImageDraw.Draw(image).ellipse(
                (width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=tuple(digest[3:6])
            )
        buffer = io.BytesIO()
        image.save(buffer, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[image_format])
        data = buffer.getvalue()
        with self._lock:
            self._state.images[key] = data
        return data


def _handler_for(server: NebulaTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle's algorithm and
        # delayed ACKs that costs ~40 ms per response, which no real API adds.
        disable_nagle_algorithm = True
        record: RecordedRequest

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read `server.requests` instead

        def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self._send(status, data, "application/json", headers)

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            server._leave(self.record)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {server.api_key}"

        def do_GET(self) -> None:
            record = RecordedRequest("GET", self.path, self._authorized(), {}, time.monotonic())
            record.accept_encoding = self.headers.get("Accept-Encoding", "")
            self.record = record
            server._enter(record)
            try:
                answers = {MODELS_PATH: self._models, CREDITS_PATH: self._credits}
                answer = answers.get(self.path)
                if answer is None:
                    self._send_json(404, {"status": "failed", "message": "not found"})
                elif not record.authorized:
                    self._send_json(401, {"status": "failed", "message": "Invalid API key"})
                elif not self._fault_done(server._next_get_fault(self.path), {}):
                    answer()
            finally:
                server._leave(record)

        def _models(self, extra: tuple[dict[str, Any], ...] = ()) -> None:
            models = [
                {
                    "model_name": m,
                    "model_alias": m.split("/")[-1],
                    "model_type": "Image",
                    "price": price,
                }
                for m, price in server.prices.items()
            ]
            models.append(
                {
                    "model_name": "meta-llama/Llama-3.3-70B-Instruct",
                    "model_alias": "Llama 3.3 70B",
                    "model_type": "Text",
                    "price": 0.4,
                }
            )
            self._send_json(200, {"status": "success", "data": [*models, *extra]})

        def _credits(self) -> None:
            body = {
                "data": {"available_balance": server.balance},
                "message": "User credit balance successfully retrieved",
                "status": "success",
            }
            self._send_json(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            record = RecordedRequest(
                "POST",
                self.path,
                self._authorized(),
                body if isinstance(body, dict) else {},
                time.monotonic(),
                accept_encoding=self.headers.get("Accept-Encoding", ""),
            )
            self.record = record
            server._enter(record)
            try:
                self._generate(record)
            finally:
                server._leave(record)

        def _generate(self, record: RecordedRequest) -> None:
            body = record.body
            if self.path != f"{API_PREFIX}/images/generation":
                self._send_json(404, {"status": "failed", "message": "not found"})
                return
            if not record.authorized:
                self._send_json(401, {"status": "failed", "message": "Invalid API key"})
                return
            if server.latency:
                time.sleep(server.latency)
            fault = server._next_fault(str(body.get("prompt", "")))
            if self._fault_done(fault, body):
                return
            if body.get("model") not in KNOWN_MODELS or not body.get("prompt"):
                self._send_json(
                    422, {"status": "failed", "message": f"invalid model {body.get('model')!r}"}
                )
                return
            width, height = int(body.get("width", 1024)), int(body.get("height", 1024))
            if fault is not None and fault.partition(":")[0] == "wrong_size":
                side = fault.partition(":")[2]
                width, height = (int(side), int(side)) if side else (width + 64, height)
            asked = _ASKED_BACKGROUND.search(str(body["prompt"]))
            background = "checkerboard" if fault == "checkerboard" else ""
            background = background or (f"#{asked.group(1).upper()}" if asked else "")
            seed = int(body.get("seed") or 0)
            data = server.image(width, height, seed, background=background, blank=fault == "blank")
            encode = base64.encodebytes if fault == "wrapped_base64" else base64.b64encode
            self._success(encode(data).decode(), body)

        def _success(self, b64: str, body: dict[str, Any]) -> None:
            self._send_json(200, server.envelope(body, b64))

        def _fault(self, fault: str, body: dict[str, Any]) -> bool:
            """Act out a fault; True if the response is done."""
            name, _, argument = fault.partition(":")
            if name.isdigit():
                headers = {"Retry-After": argument or "0"} if name == "429" else {}
                self._send_json(
                    int(name), {"status": "failed", "message": f"injected HTTP {name}"}, headers
                )
                return True
            if name == "reset":
                server._leave(self.record)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                self.wfile.write(head + b'Content-Length: 5000\r\n\r\n{"data": [')
                self.wfile.flush()
                self._hang_up(reset=True)
                return True
            if name in ("drop", "hang_up"):
                self._hang_up(reset=name == "drop")
                return True
            if name == "slow":
                time.sleep(float(argument or 1))
                return False
            if name == "malformed_json":
                self._send(200, b'{"status": "success", "data": [', "application/json")
                return True
            if name == "bad_base64":
                self._success("this is not base64!!", body)
                return True
            if name == "not_image":
                self._success(base64.b64encode(b"<html>oops</html>").decode(), body)
                return True
            if name == "truncated_image":
                data = server.image(int(body.get("width", 64)), int(body.get("height", 64)), 1)
                self._success(base64.b64encode(data[: len(data) // 2]).decode(), body)
                return True
            if name == "failed_status":
                message = argument or "model is overloaded"
                self._send_json(200, {"status": "failed", "message": message})
                return True
            if name == "credits_message":
                self._send_json(
                    400, {"status": "failed", "message": "Insufficient credits: balance $0.00"}
                )
                return True
            return self._hostile(name, argument, body)

        def _hang_up(self, *, reset: bool) -> None:
            """End the connection: with a reset (RST, what a crashed proxy sends) or a
            plain close (FIN)."""
            if reset:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True
            self.connection.close()

        def _fault_done(self, fault: str | None, body: dict[str, Any]) -> bool:
            return fault is not None and self._fault(fault, body)

        # --- a server that does not play fair -------------------------------------

        def _hostile(self, name: str, argument: str, body: dict[str, Any]) -> bool:
            """Act out a hostile fault; True if the response is done."""
            actions = {
                "trickle": self._trickle,
                "echo": self._echo,
                "echo_as": self._echo_as,
                "echo_model": self._echo_model,
                "huge_error": self._huge_error,
                "huge_success": self._huge_success,
                "retry_after": self._retry_after,
                "deep_json": self._deep_json,
                "json_bomb": self._json_bomb,
                "json_bomb_utf16": self._json_bomb_utf16,
                "pixel_bomb": self._pixel_bomb,
                "private_chunk": self._private_chunk,
                "message": self._message,
                "gzip_bomb": self._gzip_bomb,
                "gzip": self._gzip,
                "bad_gzip": self._bad_gzip,
                "encoded": self._encoded,
                "cmyk": self._cmyk,
                "many_models": self._many_models,
            }
            action = actions.get(name)
            if action is None:
                return False
            action(argument, body)
            return True

        def _trickle(self, argument: str, body: dict[str, Any]) -> None:
            interval = float(argument or 0.2)
            image = server.image(int(body.get("width", 64)), int(body.get("height", 64)), 0)
            data = json.dumps(server.envelope(body, base64.b64encode(image).decode())).encode()
            server._leave(self.record)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for index in range(len(data)):  # ends when the client hangs up
                self.wfile.write(data[index : index + 1])
                time.sleep(interval)

        def _echo(self, argument: str, body: dict[str, Any]) -> None:
            said = self.headers.get("Authorization", "")
            message = f"request refused; you sent Authorization: {said}"
            self._send_json(int(argument or 400), {"status": "failed", "message": message})

        def _echo_as(self, argument: str, body: dict[str, Any]) -> None:
            said = _disguised(argument, self.headers.get("Authorization", ""))
            message = f"request refused; you sent {said}"
            self._send_json(400, {"status": "failed", "message": message})

        def _huge_error(self, argument: str, body: dict[str, Any]) -> None:
            self._send_chunked(500, b'{"status": "failed", "message": "', argument or "1")

        def _huge_success(self, argument: str, body: dict[str, Any]) -> None:
            head = b'{"status": "success", "data": [{"b64_json": "'
            self._send_chunked(200, head, argument or "65")

        def _send_chunked(self, status: int, head: bytes, mebibytes: str) -> None:
            """`head`, "A"s up to the size, then the JSON's end, 1 MiB a chunk."""
            server._leave(self.record)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"A" * 2**20
            remaining = int(float(mebibytes) * 2**20)
            self._chunk(head)
            while remaining > 0:  # ends early when the client hangs up
                self._chunk(block[:remaining] if remaining < len(block) else block)
                remaining -= len(block)
            self._chunk(b'"}]}' if status < 300 else b'"}')
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def _echo_model(self, argument: str, body: dict[str, Any]) -> None:
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            names = (key, f"echo/{key[2:-2]}-v2")  # the key, and a fragment of it in an id
            self._models(tuple({"model_name": n, "price": 0.5} for n in names))

        def _retry_after(self, argument: str, body: dict[str, Any]) -> None:
            headers = {"Retry-After": argument or "86400"}
            self._send_json(503, {"status": "failed", "message": "come back later"}, headers)

        def _deep_json(self, argument: str, body: dict[str, Any]) -> None:
            depth = int(argument or 100_000)
            nested = b"[" * depth + b"]" * depth
            self._send(200, b'{"status": "success", "data": ' + nested + b"}", "application/json")

        def _json_bomb(self, argument: str, body: dict[str, Any]) -> None:
            head, tail = b'{"status":"success","data":[', b"[]]}"
            size = int(float(argument or 64) * 2**20) - len(head) - len(tail)
            lists = b"[]," * (size // 3)
            self._send(200, head + lists + tail, "application/json")

        def _json_bomb_utf16(self, argument: str, body: dict[str, Any]) -> None:
            # U+2241 is the bytes 41 22 in UTF-16-LE: a quote to a count of the raw bytes
            text = '{"status":"success","data":["\u2241",' + "[]," * int(
                float(argument or 16) * 2**20 / 6
            )
            self._send(200, (text + '"\u2241"]}').encode("utf-16-le"), "application/json")

        def _pixel_bomb(self, argument: str, body: dict[str, Any]) -> None:
            self._success(base64.b64encode(pixel_bomb_png()).decode(), body)

        def _private_chunk(self, argument: str, body: dict[str, Any]) -> None:
            size = (int(body.get("width", 64)), int(body.get("height", 64)))
            image = server.image(*size, 0, image_format="png")
            extra = _png_chunk(b"prVt", b"\0" * int(float(argument or 8) * 2**20))
            iend = len(image) - 12  # the last chunk, IEND, is 12 bytes
            data = image[:iend] + extra + image[iend:]
            self._success(base64.b64encode(data).decode(), body)

        def _message(self, argument: str, body: dict[str, Any]) -> None:
            status, _, text = argument.partition(":")
            self._send_json(int(status or 400), {"status": "failed", "message": text})

        def _gzip_bomb(self, argument: str, body: dict[str, Any]) -> None:
            headers = {"Content-Encoding": "gzip, gzip"}
            self._send(200, gzip_bomb(int(argument or 256)), "application/json", headers)

        def _gzip(self, argument: str, body: dict[str, Any]) -> None:
            self._send_encoded("gzip", gzip.compress(self._real_answer(body), mtime=0))

        def _bad_gzip(self, argument: str, body: dict[str, Any]) -> None:
            self._send_encoded("gzip", b"not gzip at all")

        def _encoded(self, argument: str, body: dict[str, Any]) -> None:
            self._send_encoded(argument, self._real_answer(body))

        def _send_encoded(self, coding: str, data: bytes) -> None:
            self._send(200, data, "application/json", {"Content-Encoding": coding})

        def _real_answer(self, body: dict[str, Any]) -> bytes:
            image = server.image(int(body.get("width", 64)), int(body.get("height", 64)), 0)
            return json.dumps(server.envelope(body, base64.b64encode(image).decode())).encode()

        def _cmyk(self, argument: str, body: dict[str, Any]) -> None:
            from PIL import Image

            size = (int(body.get("width", 64)), int(body.get("height", 64)))
            buffer = io.BytesIO()
            Image.new("CMYK", size, (0, 255, 255, 0)).save(buffer, "JPEG")
            self._success(base64.b64encode(buffer.getvalue()).decode(), body)

        def _many_models(self, argument: str, body: dict[str, Any]) -> None:
            rows = [
                {"model_name": f"m{n}", "model_type": "Image", "price": 0.01}
                for n in range(int(argument or 20_000))
            ]
            self._send_json(200, {"status": "success", "data": rows})

    return Handler


@functools.cache
def gzip_bomb(mebibytes: int) -> bytes:
    """`mebibytes` MiB of zeros, gzipped twice: about a thousandth of it, then a few KiB."""
    inner = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(2**20)
    data = b"".join(inner.compress(block) for _ in range(mebibytes)) + inner.flush()
    return gzip.compress(data, mtime=0)


#: how a prompt asks for a flat background colour: "… (#FF00FF) background"
_ASKED_BACKGROUND = re.compile(r"#([0-9A-Fa-f]{6})\)? background")


def _envelope(body: dict[str, Any], b64: str, inference: float = 1.25) -> dict[str, Any]:
    """The documented success answer around one base64 image."""
    return {
        "model": body.get("model"),
        "object": "list",
        "data": [{"timings": {"inference": inference}, "index": 0, "b64_json": b64}],
        "message": "Image generated successfully",
        "status": "success",
    }


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixel_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small, well-formed PNG whose header claims `width` x `height` RGB pixels (only
    the first row's data is there): decoding it would take width x height x 3 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    first_row = zlib.compress(b"\0" * (1 + width * 3))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", first_row)
        + _png_chunk(b"IEND", b"")
    )
