"""A threaded HTTP server in a background thread, as a context manager.

Shared by the live gallery and the Nebula test server: both serve loopback
clients while the caller's own work goes on. It serves at most `max_connections`
connections at once, a thread each; the next ones wait in the system's backlog,
accepted as a connection ends, holding no thread meanwhile. An IPv6 address
(`::1`, `::`) is served over IPv6, `::` taking IPv4 clients too.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

#: connections served at once unless told otherwise: a browser opens six per site
MAX_CONNECTIONS = 64


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 stalls bursts of new connections

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        poll_interval: float,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._poll_interval = poll_interval
        self._every_interface = False
        if is_ipv6(address[0]):
            self.address_family = socket.AF_INET6
            self._every_interface = ipaddress.ip_address(address[0]).is_unspecified
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self._every_interface:  # `::` is every interface, the IPv4 ones too
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self) -> tuple[Any, Any]:
        # A connection past the cap stays in the backlog; the OSError has the serving
        # loop come back after its poll (and notice a shutdown) rather than block here.
        if not self._slots.acquire(timeout=self._poll_interval):
            raise OSError("every connection slot is taken")
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-answer is not our error


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address (`::1`, `[::1]`), not a name or IPv4."""
    try:
        return ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        return False


class BackgroundHTTPServer:
    """Serves `handler` on (host, port) from a daemon thread between enter and exit."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        poll_interval: float = 0.05,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        address = (host.strip("[]") if is_ipv6(host) else host, port)
        self._server = _Server(
            address, handler, max_connections=max_connections, poll_interval=poll_interval
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(poll_interval,), daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The address bound and its port, the one the system chose when 0 was asked for."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def origin(self) -> str:
        """`http://host:port` of the address bound (`http://[::1]:port` for IPv6)."""
        host, port = self.address
        shown = f"[{host}]" if is_ipv6(host) else host
        return f"http://{shown}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _closing(self) -> None:
        """Hook for subclasses: wake anything that waits on the server."""
