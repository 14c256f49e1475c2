"""A backend's secrets taken out of what it says: its messages as one printable line
without them (`shown_safely`), a provenance record that holds one refused
(`secret_in_record`), and every value declared while commands run
(`declared_secrets`), for what plugins write to stdout and stderr themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping

from nebula_build.text import printable, redact

#: a value shorter than this is no secret (a placeholder CI sets for a fork, "x", "1"):
#: taken out of every message, it would garble them
MIN_SECRET = 4
#: a plugin's message is cut to this many characters: one line, never a page
_MESSAGE_LIMIT = 1000

#: the value of every secret variable a backend has named while commands run
_declared: frozenset[str] = frozenset()
_declaring = threading.Lock()


def declare(secrets: Iterable[str]) -> None:
    """Remember `secrets` (values) as declared: see `declared_secrets`."""
    global _declared  # noqa: PLW0603 - what plugins write to stderr is one per process too
    with _declaring:
        _declared = _declared.union(secrets)


def declared_secrets() -> frozenset[str]:
    """The value of every secret variable a backend has named (`BackendPlugin.secrets`
    declares them) since `forget_secrets`: what the CLI takes out of what plugins write
    to stdout and stderr themselves, and out of the tracebacks NEBULA_BUILD_DEBUG=1
    shows."""
    return _declared


def forget_secrets() -> None:
    """No command runs any more: the next one names its own."""
    global _declared  # noqa: PLW0603
    with _declaring:
        _declared = frozenset()


def shown_safely(text: str, secrets: Collection[str]) -> str:
    """A plugin's message as one printable line without its secrets: made printable
    first (a control character inside a token would hide it), cut last (a token cut
    short is still redacted whole)."""
    if not secrets:
        return printable(text, limit=_MESSAGE_LIMIT)
    line = redact(printable(text, limit=_MESSAGE_LIMIT * 4), secrets)
    return printable(line, limit=_MESSAGE_LIMIT)


def secret_in_record(record: Mapping[str, str], secrets: Mapping[str, str]) -> str | None:
    """What is wrong with a provenance record that holds a secret's value (it would be
    written to images.lock and into every file), or None."""
    for key, value in record.items():
        for variable, secret in secrets.items():
            if redact(key, [secret]) != key or redact(value, [secret]) != value:
                shown = printable(redact(key, [secret]), limit=40)
                return f"holds the value of {variable} in `{shown}`"
    return None
