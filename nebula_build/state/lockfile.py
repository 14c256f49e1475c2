"""`images.lock`: what was generated, read fast and written crash-safely.

The lock is TOML, deterministic, written by the tool alone. Reading it with
tomllib costs ~60 µs per entry, so a JSON snapshot keyed by the lock's content
digest (`.nebula-build/lock-snapshot.json`) is read instead when it matches.

While an apply runs, each finished image appends one fsync'd line to
`.nebula-build/journal`; the lock itself is rewritten at most about once a
second (less often when it is big), and at the end. A journal left by a killed
run is folded into the lock by the next command (`recover`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nebula_build.errors import LockfileError
from nebula_build.fsutil import atomic_write, sha256_bytes
from nebula_build.state.project import Project

LOCK_VERSION = 1
HEADER = (
    "# This file is written by nebula-build: do not edit it by hand.\n"
    "# It records which spec made each image. Commit it with images.toml.\n"
)
_FIELDS = ("backend", "model", "output", "digest", "generation_key", "output_key", "seed")


@dataclass(frozen=True, slots=True)
class LockEntry:
    """What the lock records for one image."""

    backend: str
    model: str
    output: str
    digest: str
    generation_key: str
    output_key: str
    params: Mapping[str, Any]
    #: the seed the backend reports it used, where that is not the declared
    #: `params.seed` (a local backend derives one from the key when none is declared)
    seed: int | None = None
    #: responsive variants: path → digest
    variants: Mapping[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        """Every file recorded for this image, output first: path → digest."""
        return {self.output: self.digest, **self.variants}

    def generation_params(self) -> dict[str, Any]:
        """The recorded parameters in the shape of `AssetSpec.generation_params()`."""
        return {"backend": self.backend, "model": self.model, **self.params}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model,
            "output": self.output,
            "digest": self.digest,
            "generation_key": self.generation_key,
            "output_key": self.output_key,
            "params": dict(self.params),
        }
        if self.seed is not None and self.seed != self.params.get("seed"):
            data["seed"] = self.seed
        if self.variants:
            data["variants"] = dict(self.variants)
        return data

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> LockEntry:
        try:
            params = dict(data.get("params", {}))
            seed = data.get("seed")
            return cls(
                backend=str(data["backend"]),
                model=str(data["model"]),
                output=str(data["output"]),
                digest=str(data["digest"]),
                generation_key=str(data["generation_key"]),
                output_key=str(data["output_key"]),
                params=params,
                variants={str(k): str(v) for k, v in data.get("variants", {}).items()},
                # locks before 0.2 wrote the declared seed twice
                seed=None if seed == params.get("seed") else seed,
            )
        except (KeyError, TypeError) as exc:
            raise LockfileError(
                f"images.lock: images.{name}: missing or bad field {exc}; "
                "delete the entry and re-run apply"
            ) from None


Entries = dict[str, LockEntry]


# --- TOML formatting ---------------------------------------------------------
# Hand-written rather than tomli_w: the layout stays fixed across library
# versions, and it is ~8x faster, which matters for 10k-entry locks.


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to the lock")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{ "
            + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sorted(value.items()))
            + " }"
        )
    raise TypeError(f"cannot write {type(value).__name__} to the lock")


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _toml_string(key)


def dumps(entries: Mapping[str, LockEntry]) -> str:
    """The lock's text: header, version, then one table per image, sorted."""
    parts = [HEADER, f"version = {LOCK_VERSION}\n"]
    for name in sorted(entries):
        data = entries[name].to_dict()
        parts.append(f"\n[images.{_toml_key(name)}]\n")
        parts.extend(
            f"{field} = {_toml_value(data[field])}\n" for field in _FIELDS if field in data
        )
        parts.append(f"params = {_toml_value(data['params'])}\n")
        if "variants" in data:
            parts.append(f"variants = {_toml_value(data['variants'])}\n")
    return "".join(parts)


def loads(text: str) -> Entries:
    """Parse lock text; raises LockfileError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockfileError(
            f"images.lock is not valid TOML ({exc}); restore it from version control or delete it"
        ) from None
    return _entries_from(data)


def _entries_from(data: Mapping[str, Any]) -> Entries:
    version = data.get("version")
    if version != LOCK_VERSION:
        raise LockfileError(
            f"images.lock has version {version!r}; this nebula-build reads version {LOCK_VERSION}"
        )
    images = data.get("images", {})
    if not isinstance(images, Mapping):
        raise LockfileError("images.lock: `images` must be a table")
    return {name: LockEntry.from_dict(name, entry) for name, entry in images.items()}


# --- reading, with the snapshot ---------------------------------------------


def read(project: Project) -> Entries:
    """The lock's entries (empty if there is no lock). Does not look at the journal."""
    try:
        raw = project.lock_path.read_bytes()
    except FileNotFoundError:
        return {}
    digest = sha256_bytes(raw)
    snapshot = _read_snapshot(project.lock_snapshot_path, digest)
    if snapshot is not None:
        return snapshot
    entries = loads(raw.decode("utf-8"))
    _write_snapshot(project, digest, entries)
    return entries


def _read_snapshot(path: Path, digest: str) -> Entries | None:
    try:
        data = json.loads(path.read_bytes())
        if data.get("lock_digest") != digest or data.get("version") != LOCK_VERSION:
            return None
        # Written by us from validated entries, and bound to the lock's digest:
        # rebuilding without field-by-field checks keeps a 10k-entry read cheap.
        return {name: LockEntry(**entry) for name, entry in data["images"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _write_snapshot(project: Project, digest: str, entries: Mapping[str, LockEntry]) -> None:
    data = {
        "lock_digest": digest,
        "version": LOCK_VERSION,
        "images": {name: entry.to_dict() for name, entry in entries.items()},
    }
    with contextlib.suppress(OSError):  # the snapshot only saves time; the lock is the truth
        atomic_write(project.lock_snapshot_path, json.dumps(data).encode(), durable=False)


def write(project: Project, entries: Mapping[str, LockEntry]) -> bool:
    """Rewrite the lock atomically if its content changes; returns whether it did."""
    text = dumps(entries).encode()
    try:
        if project.lock_path.read_bytes() == text:
            return False
    except FileNotFoundError:
        if not entries:
            return False
    atomic_write(project.lock_path, text)
    _write_snapshot(project, sha256_bytes(text), entries)
    return True


# --- the journal ------------------------------------------------------------


def _journal_ops(path: Path) -> Iterator[tuple[str, str, dict[str, Any] | None]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        try:
            op = json.loads(line)
            yield op["op"], op["image"], op.get("entry")
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: its image was not recorded


def replay(entries: Entries, journal: Path) -> bool:
    """Apply a journal's operations to `entries`; returns whether there were any."""
    found = False
    for op, name, entry in _journal_ops(journal):
        found = True
        if op == "set" and entry is not None:
            entries[name] = LockEntry.from_dict(name, entry)
        elif op == "delete":
            entries.pop(name, None)
    return found


def recover(project: Project) -> tuple[Entries, bool]:
    """The lock with any leftover journal folded in and written back.

    Call it only while holding the project lock. Returns (entries, folded).
    """
    entries = read(project)
    if not replay(entries, project.journal_path):
        project.journal_path.unlink(missing_ok=True)
        return entries, False
    write(project, entries)
    project.journal_path.unlink(missing_ok=True)
    return entries, True


def read_with_journal(project: Project) -> Entries:
    """The lock as it stands, including a live apply's journal, without writing."""
    entries = read(project)
    replay(entries, project.journal_path)
    return entries


async def _to_thread(function: Callable[[list[bytes]], None], lines: list[bytes]) -> None:
    import asyncio

    await asyncio.to_thread(function, lines)


class LockWriter:
    """Records finished images durably and keeps images.lock up to date, linearly.

    A record returns once its journal line is fsync'd. Records that arrive
    while a write is in progress are committed together by the next one (group
    commit), off the event loop, so a run with many images in flight pays far
    fewer than one fsync per image. The lock is rewritten when at least
    `min_interval` seconds passed since the last rewrite *and* at least ten
    times as long as that rewrite took, so rewrites never take over a long run.
    """

    def __init__(
        self,
        project: Project,
        entries: Entries,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        self.entries = dict(entries)
        self.min_interval = min_interval
        self.clock = clock
        self._journal: IO[bytes] | None = None
        self._buffer: list[bytes] = []
        import asyncio  # here, not at the top: `plan` reads locks and must not pay for asyncio

        self._commit = asyncio.Lock()
        self._last_flush = clock()
        self._flush_cost = 0.0
        self._pending = False

    async def set(self, name: str, entry: LockEntry) -> None:
        self.entries[name] = entry
        await self._append({"op": "set", "image": name, "entry": entry.to_dict()})

    async def delete(self, name: str) -> None:
        self.entries.pop(name, None)
        await self._append({"op": "delete", "image": name})

    async def _append(self, op: Mapping[str, Any]) -> None:
        self._buffer.append(json.dumps(op, ensure_ascii=False).encode() + b"\n")
        self._pending = True
        async with self._commit:
            if self._buffer:  # else an earlier holder already committed our line
                lines, self._buffer = self._buffer, []
                await _to_thread(self._write_lines, lines)
            now = self.clock()
            if now - self._last_flush >= max(self.min_interval, 10 * self._flush_cost):
                self._flush()

    def _write_lines(self, lines: list[bytes]) -> None:
        if self._journal is None:
            self.project.state_dir.mkdir(parents=True, exist_ok=True)
            self._journal = self.project.journal_path.open("ab")
        self._journal.write(b"".join(lines))
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _flush(self) -> None:
        """Rewrite the lock from memory, then empty the journal it now contains.

        Called with the commit lock held (or at close), so no journal write runs
        meanwhile. Lines still in the buffer only repeat what the lock now holds.
        """
        if not self._pending:
            return
        started = self.clock()
        write(self.project, self.entries)
        if self._journal is not None:
            self._journal.truncate(0)
        self._pending = False
        self._last_flush = self.clock()
        self._flush_cost = self._last_flush - started

    def close(self) -> None:
        """Write the final lock and remove the journal; call when no record is running."""
        self._flush()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.project.journal_path.unlink(missing_ok=True)
