"""A remote cache's failure as one line a person reads: what failed, the host, the short
cause (`no connection to 127.0.0.1:9 (connection refused, 3 tries)`), not the storage
library's whole report (the request's URL and timings, its retry settings). That report
stays available: NEBULA_BUILD_DEBUG=1 says it as it was.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from nebula_build.state.remote import RemoteError
from nebula_build.text import printable

#: how the storage library (obstore) says a request that failed, after its own prefix
#: ("Generic S3 error: ", "The operation lacked the necessary privileges …: ")
_REQUEST_FAILED = re.compile(
    r"(?:[^:]*: )?Error performing (?P<method>[A-Z]+) (?P<url>\S+) in \S+?"
    r"(?:, after (?P<retries>\d+) retries[^-]*?)?\s+- (?P<cause>.*)"
)
_STATUS = re.compile(r"status code: (?P<status>\d{3}(?: [A-Za-z][A-Za-z ]*[a-z])?)")
_ERROR_CODE = re.compile(r"<Code>(?P<code>[A-Za-z.]{1,60})</Code>")
#: what the library's report holds below its first line, said in words
_CONNECTION_CAUSES = (
    ("Connection refused", "connection refused"),
    ("dns error", "host not found"),
    ("timed out", "timed out"),
    ("TimedOut", "timed out"),
    ("certificate", "TLS certificate refused"),
    ("Connection reset", "connection reset"),
)
#: the advice `state.remote` adds to a failure it recognises, kept as it is
_ADVICE = (" (no credentials found", " (a plain http:// endpoint")


def remote_failure(exc: RemoteError) -> str:
    """`exc` as one readable line (see the module); as it was under NEBULA_BUILD_DEBUG."""
    said = str(exc)
    if os.environ.get("NEBULA_BUILD_DEBUG"):
        return said
    head, sep, library = _library_part(said)
    # the library's own error, whole: `said` holds its first line, cut to 300 characters
    report = str(exc.__context__ or "")
    found = _REQUEST_FAILED.search(report.partition("\n")[0] or library)
    if not sep or found is None:
        return said
    advice = next((library[library.index(a) :] for a in _ADVICE if a in library), "")
    return f"{head}{sep}{_short(found, report)}{advice}"


def _library_part(said: str) -> tuple[str, str, str]:
    """("remote cache URL: what", ": ", the library's text) of a failed request."""
    start = said.find("Error performing ")
    if start < 0:
        return said, "", ""
    cut = said.rfind(": ", 0, start)
    if cut + 2 == start:  # after the library's own prefix ("Generic S3 error: ")
        cut = said.rfind(": ", 0, cut)
    if cut < 0:
        return said, "", ""
    return said[:cut], ": ", said[cut + 2 :]


def _short(found: re.Match[str], report: str) -> str:
    """What failed on which host, and why, from the library's text and `report`."""
    host = _host(found["url"])
    tries = f", {int(found['retries']) + 1} tries" if found["retries"] else ""
    cause = found["cause"]
    if (status := _STATUS.search(cause)) is not None:
        code = _ERROR_CODE.search(cause)
        detail = f" ({code['code']})" if code else ""
        return f"{host} answered {status['status']}{detail}{tries.replace(', ', ' after ', 1)}"
    why = next((said for text, said in _CONNECTION_CAUSES if text in report), None)
    if why is None and "error sending request" in cause:
        why = "error sending request"
    if why is not None:
        return f"no connection to {host} ({why}{tries})"
    return f"{host}: {printable(cause, limit=120)}"


def _host(url: str) -> str:
    """The host and port a request went to (an IPv6 address in brackets), no more."""
    try:
        split = urlsplit(url)
        name, port = split.hostname, split.port
    except ValueError:
        return "the store"
    if not name:
        return "the store"
    shown = f"[{name}]" if ":" in name else name
    return printable(f"{shown}:{port}" if port else shown, limit=100)
