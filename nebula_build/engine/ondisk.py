"""What files outside the project say of how an image would be made now
(`Backend.made_with_on_disk`: a local model's weights), for `plan`'s notes.

A value may cost megabytes of reads (a model folder's fingerprint: sampled bytes
of every weight file), so each is kept in `.nebula-build/made-with.json`, keyed by
the stat signatures (size, mtime, ctime, inode) of every path it depends on, taken
before computing it: while they all hold, the value cannot have changed (ctime
cannot be set back). As with the no-op snapshot, a value whose files changed in
the seconds before is not kept. The file is sealed (`state.seal`): one that came
with a checkout is a miss. Everything observed goes to `Outside`, which the no-op
snapshot watches, so a fast `plan` misses once the weights change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nebula_build.engine.codeversion import code_version
from nebula_build.fsutil import atomic_write, read_regular
from nebula_build.plugin import OnDisk
from nebula_build.state.project import Project
from nebula_build.state.seal import seal, unseal

FORMAT = 1
#: what reading files a manifest names may raise besides OSError: a NUL in a path
#: (ValueError), `~nosuchuser` (RuntimeError), a config nested past Python's limit
UNREADABLE = (OSError, ValueError, RuntimeError, RecursionError)
RACY_SECONDS = 2.0  # `noop.RACY_SECONDS` (not imported: noop's plan reaches this module)
#: size, mtime, ctime, inode (`noop.Signature`)
Signature = tuple[int, int, int, int]
MAX_ENTRIES = 256
MAX_VALUE = 200
_LIMIT = 1 << 20


@dataclass
class Outside:
    """What a plan observed outside the project: the signature of each absolute path
    (None: missing) and the value of each environment variable (None: unset) its
    on-disk values depend on. Not `complete` where one could not be read: the no-op
    snapshot is then left out."""

    signatures: dict[str, Signature | None] = field(default_factory=dict)
    environment: dict[str, str | None] = field(default_factory=dict)
    complete: bool = True


class Values:
    """The on-disk values of one plan, through the memo of earlier plans."""

    def __init__(self, project: Project, outside: Outside) -> None:
        self._project = project
        self._outside = outside
        self._memo: dict[str, str] | None = None
        self._fresh: dict[str, str] = {}
        self._now = time.time()

    def value(self, backend: str, model: str, name: str, found: OnDisk) -> str | None:
        """The value `found` computes now, or None where its files are not there."""
        for variable in found.environment:
            self._outside.environment[variable] = os.environ.get(variable)
        signatures = {path: _stat(path) for path in found.paths}  # before computing
        self._outside.signatures.update(signatures)
        key = _key(backend, model, name, signatures)
        memo = self._load()
        if key in memo:
            return memo[key]
        try:
            value = found.compute()
        except UNREADABLE:
            self._outside.complete = False
            return None
        if value is None or not _printable(value):
            return None
        if not _racy(signatures.values(), self._now - RACY_SECONDS):
            self._fresh[key] = value
        return value

    def unreadable(self) -> None:
        """A backend could not say what its value depends on: no snapshot."""
        self._outside.complete = False

    def save(self) -> None:
        """Keep the values computed this time (a memo only saves reading: failing to
        write it is fine)."""
        if not self._fresh:
            return
        kept = {**self._load(), **self._fresh}
        entries = dict(list(kept.items())[-MAX_ENTRIES:])
        data = json.dumps({"format": FORMAT, "values": entries}, sort_keys=True)
        sealed = seal(data.encode())
        if sealed is not None:
            with contextlib.suppress(OSError):
                atomic_write(self._project.made_with_cache_path, sealed, durable=False)

    def _load(self) -> dict[str, str]:
        if self._memo is None:
            self._memo = _read(self._project)
        return self._memo


def _read(project: Project) -> dict[str, str]:
    """The memo's entries; anything unexpected is an empty memo."""
    raw = read_regular(project.made_with_cache_path, limit=_LIMIT)
    text = unseal(raw) if raw is not None else None
    if text is None:
        return {}
    try:
        data = json.loads(text)
        values = data["values"] if data["format"] == FORMAT else {}
        return {
            str(key): value
            for key, value in values.items()
            if isinstance(value, str) and _printable(value)
        }
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def _key(backend: str, model: str, name: str, signatures: Mapping[str, Signature | None]) -> str:
    described = [code_version(), backend, model, name, sorted(signatures.items())]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def _stat(path: str) -> Signature | None:
    try:
        found = Path(path).stat()
    except (OSError, ValueError):  # ValueError: a NUL in a path a manifest gave
        return None
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino)


def _racy(signatures: Iterable[Signature | None], newest: float) -> bool:
    """Whether a file changed after `newest` (seconds): its next change may keep the
    same signature."""
    return any(s is not None and max(s[1], s[2]) / 1e9 > newest for s in signatures)


def _printable(value: str) -> bool:
    return 0 < len(value) <= MAX_VALUE and value.isprintable()
