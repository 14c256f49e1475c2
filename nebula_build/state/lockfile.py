"""`images.lock`: what was generated, read fast and written crash-safely.

The lock is TOML, deterministic, written by the tool alone. Reading it with
tomllib costs ~60 µs per entry, so a JSON snapshot keyed by the lock's content
digest (`.nebula-build/lock-snapshot.json`) is read instead when it matches.

While an apply runs, each finished image appends one fsync'd line to
`.nebula-build/journal`; the lock itself is rewritten at most about once a
second, less often when it is big (its rewrites take at most ~3% of the run),
and at the end. A journal left by a killed run is folded into the lock by the
next command (`recover`). The lock and its snapshot are written piece by piece,
so a 100k-entry lock is never one string in memory.

A process that asks to (`retain`: watch) keeps the lock it last read or wrote in
memory, with the file's stat signature: a read is then a copy of a dict unless
images.lock changed on disk, and a rewrite splices the changed tables into the
bytes it wrote last (`locksplice`), so an edit round's lock costs O(changed).
Its snapshot is written once the lock has been quiet for a moment, off the
round, by a background thread.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import os
import re
import stat
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, TypeVar

from nebula_build.errors import LockfileError, StateWriteError
from nebula_build.fsutil import atomic_stream, read_regular, sha256_bytes, sha256_file
from nebula_build.imaging import format_for
from nebula_build.state import conflicts, derivedrecords
from nebula_build.state.derivedrecords import Made
from nebula_build.state.guard import Guard, path_problem
from nebula_build.state.locksplice import splice
from nebula_build.state.project import LOCK_NAME, MANIFEST_NAME, STATE_DIR, Project
from nebula_build.state.seal import sealed_from, sealer
from nebula_build.text import (
    MAX_IMAGE_NAME,
    made_with_problem,
    printable,
    shows_as_it_is,
)
from nebula_build.text import (
    UNSHOWN_CHARACTERS as _UNSHOWN_CHARACTERS,
)
from nebula_build.tomlparse import values_over, weight

LOCK_VERSION = 1
#: how `dumps` lays out a table: bump it with any change to that layout (a watch
#: splices new tables into bytes written by the release that wrote the snapshot)
TABLE_FORMAT = 4
HEADER = (
    "# This file is written by nebula-build: do not edit it by hand.\n"
    "# It records which spec made each image. Commit it with images.toml.\n"
)
_DIGEST = re.compile("[0-9a-f]{64}")
#: a snapshot far larger than 100k entries' is not ours
_SNAPSHOT_LIMIT = 1 << 30
_FIELDS = (
    "backend",
    "model",
    "output",
    "digest",
    "generation_key",
    "output_key",
    "seed",
    "pinned_against",
    "pinned_draws",
    "applied_plan",
    "edited_from",
)
#: the fields of an entry `LockEntry(**fields)` builds as they are (the snapshot's
#: fast path): every other one takes `from_checked`
_PLAIN_FIELDS = frozenset(
    {"backend", "model", "output", "digest", "generation_key", "output_key", "params"}
    | {"seed", "variants", "made_with", "applied_plan", "edited_from"}
)
#: the most bytes a lock may have: a 100,000-image lock whose every image has three
#: earlier generations (150-character prompts, a tenth with four candidates) is 246 MiB
MAX_LOCK_BYTES = 1 << 30
#: what a lock parsed in one piece may ask for (`tomlparse.weight`): 5 s and 130 MB of
#: tomllib at most. A 10,000-image lock weighs 450,000 (2.3 million with that history);
#: a heavier one is parsed a few thousand of its image tables at a time.
MAX_WHOLE_WEIGHT = 1_000_000
#: what one image's tables may ask for: 20 earlier generations of 64 draws weigh 3,100
MAX_TABLE_WEIGHT = 16_384
#: what the image tables parsed at once may ask for together
_BATCH_WEIGHT = 65_536
#: the header of an image's table as `_table` writes it
_IMAGE_TABLE = re.compile(
    r'^\[images\.(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*")\][ \t]*\r?$', re.MULTILINE
)
#: the longest text a recorded parameter may hold (the manifest's limit)
MAX_TEXT = 10_000
#: digits in a recorded integer (the manifest's limit: more was never declared, and
#: Python prints none of more than 4,300)
MAX_DIGITS = 300
_MAX_INTEGER: int = 10**MAX_DIGITS
#: the most draws an image may have (the manifest allows fewer)
MAX_CANDIDATES = 64
#: how many earlier generations an image keeps in its history
MAX_HISTORY = 20
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
#: entries per piece when a lock or its snapshot is written out
_PIECE = 2000
#: the variants and `made_with` of an entry that has none: most entries, so one
#: read-only mapping is shared rather than an empty dict each (100k entries: 13 MB)
NONE_RECORDED: Mapping[str, str] = MappingProxyType({})


def _none_recorded() -> Mapping[str, str]:
    return NONE_RECORDED


def recorded(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    """A copy of `mapping` to keep in an entry (`NONE_RECORDED` where it is empty)."""
    return dict(mapping) if mapping else NONE_RECORDED


@dataclass(frozen=True, slots=True)
class DrawRecord:
    """One candidate draw: its generation key and the SHA-256 of its original bytes."""

    key: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "digest": self.digest}


@dataclass(frozen=True, slots=True)
class EarlierGeneration:
    """A generation an image had before its current one, kept so it can come back."""

    generation_key: str
    #: the output file's digest when it was the output
    digest: str
    #: when it was made (UTC, ISO 8601)
    made: str
    backend: str
    model: str
    params: Mapping[str, Any]
    #: how many draws its set had made when it was the output (0: not a draw of a set);
    #: they stay pickable when the set comes back
    draws: int = 0
    #: the generation keys of those draws (written as `draw_keys`): `gc` keeps them
    #: while the history lists the set (older locks do not record them)
    draw_keys: tuple[str, ...] = ()
    #: the digest of the hand edit `accept` kept as its output: no cache holds it; apply
    #: backs it up where a new generation replaces it in place (`history` finds it)
    edited: str | None = None

    def generation_params(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, **self.params}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "generation_key": self.generation_key,
            "digest": self.digest,
            "made": self.made,
            "backend": self.backend,
            "model": self.model,
            "params": dict(self.params),
        }
        if self.draws:
            data["draws"] = self.draws
        if self.draw_keys:
            data["draw_keys"] = list(self.draw_keys)
        if self.edited is not None:
            data["edited"] = self.edited
        return data


#: what to do about an entry of a lock that fails its checks
RESTORE_LOCK = "restore the lock from version control or delete the entry"


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
    variants: Mapping[str, str] = field(default_factory=_none_recorded)
    #: the candidate draws made for the image, in order (the output is the `draw` param)
    draws: tuple[DrawRecord, ...] = ()
    #: earlier generations, newest first
    history: tuple[EarlierGeneration, ...] = ()
    #: set when the output is an earlier generation pinned with `pick NAME @K --pin`:
    #: the generation key of the manifest's spec it was pinned against (written as
    #: `pinned_against`)
    pin: str | None = None
    #: with `pin`, the generation keys of the draws of the set the pinned generation
    #: was picked from (written as `pinned_draws`): `gc` keeps them, and the history
    #: records the set again when the pin ends
    pinned_draws: tuple[str, ...] = ()
    #: what made the pixels beyond the params, as the backend reported it (weights'
    #: identity, dtype, speed options that change pixels): provenance, not a key
    made_with: Mapping[str, str] = field(default_factory=_none_recorded)
    #: the digest of the saved plan whose `apply --plan` wrote this entry: a plan that
    #: remakes it as it was (`--replace` of a seeded image) is then known as applied
    applied_plan: str | None = None
    #: set when the output is a hand edit `nebula-build accept` made the output: the
    #: digest of the file nebula-build wrote, which the edit replaced. apply keeps a
    #: copy of such a file before it replaces it, and never removes it
    edited_from: str | None = None

    @property
    def candidates(self) -> int:
        """How many candidate draws were made for the image."""
        return max(1, len(self.draws))

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
        if self.made_with:
            data["made_with"] = dict(self.made_with)
        if self.pin is not None:
            data["pinned_against"] = self.pin
        if self.pinned_draws:
            data["pinned_draws"] = list(self.pinned_draws)
        if self.applied_plan is not None:
            data["applied_plan"] = self.applied_plan
        if self.edited_from is not None:
            data["edited_from"] = self.edited_from
        if self.draws:
            data["draws"] = [draw.to_dict() for draw in self.draws]
        if self.history:
            data["history"] = [earlier.to_dict() for earlier in self.history]
        return data

    @classmethod
    def from_checked(cls, data: Mapping[str, Any]) -> LockEntry:
        """An entry from `to_dict`'s shape, already checked (or sealed)."""
        params = dict(data.get("params", {}))
        seed = data.get("seed")
        draws = data.get("draws")
        history = data.get("history")
        return cls(
            backend=data["backend"],
            model=data["model"],
            output=data["output"],
            digest=data["digest"],
            generation_key=data["generation_key"],
            output_key=data["output_key"],
            params=params,
            variants=recorded(data.get("variants")),
            # locks before 0.2 wrote the declared seed twice
            seed=None if seed == params.get("seed") else seed,
            draws=tuple(DrawRecord(d["key"], d["digest"]) for d in draws) if draws else (),
            history=tuple(_earlier(h) for h in history) if history else (),
            pin=data.get("pinned_against"),
            pinned_draws=tuple(data.get("pinned_draws", ())),
            made_with=recorded(data.get("made_with")),
            applied_plan=data.get("applied_plan"),
            edited_from=data.get("edited_from"),
        )

    @classmethod
    def from_dict(
        cls, name: str, data: object, *, where: str = "images.lock", fix: str = RESTORE_LOCK
    ) -> LockEntry:
        """An entry read from a lock or a journal: untrusted, so every field is checked
        (a path that leaves the project is never acted on). `fix` says what to do where
        it fails."""
        problem = _name_problem(name) or _entry_problem(data)
        if problem is not None:
            raise LockfileError(f"{where}: images.{_shown(name)}: {problem}; {fix}")
        assert isinstance(data, Mapping)
        return cls.from_checked(data)


def _shown(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in str(text))[:80]


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def _is_plain(value: object, depth: int = 0) -> bool:
    """Whether a recorded parameter is a value the lock can hold (and write back)."""
    if depth > 8:
        return False
    if isinstance(value, str):
        return len(value) <= MAX_TEXT  # the manifest's limit: longer was never declared
    if isinstance(value, bool | int):
        return -_MAX_INTEGER < value < _MAX_INTEGER
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _generation_problem(data: Mapping[str, Any], digests: tuple[str, ...]) -> str | None:
    """What is wrong with the fields a generation's record shares with an entry."""
    for key in ("backend", "model"):
        value = data.get(key)
        if not isinstance(value, str) or not value.isprintable():
            return f"`{key}` must be a name"
    for key in digests:
        if not _is_digest(data.get(key)):
            return f"`{key}` must be a sha256 digest"
    if not isinstance(data.get("params", {}), Mapping) or not _is_plain(data.get("params", {})):
        return "`params` must be a table of plain values"
    return None


def _draws_problem(draws: object) -> str | None:
    if not isinstance(draws, list) or len(draws) > MAX_CANDIDATES:
        return f"`draws` must be a list of at most {MAX_CANDIDATES} draws"
    for draw in draws:
        if not (isinstance(draw, Mapping) and _is_digest(draw.get("key"))):
            return "each of `draws` must have a sha256 `key`"
        if not _is_digest(draw.get("digest")):
            return "each of `draws` must have a sha256 `digest`"
    return None


def _history_problem(history: object) -> str | None:
    if not isinstance(history, list) or len(history) > MAX_HISTORY:
        return f"`history` must be a list of at most {MAX_HISTORY} generations"
    for earlier in history:
        if not isinstance(earlier, Mapping):
            return "each `history` entry must be a table"
        problem = _generation_problem(earlier, ("generation_key", "digest"))
        if problem is None and not (
            isinstance(earlier.get("made"), str) and _STAMP.fullmatch(earlier["made"])
        ):
            problem = "`made` must be a UTC time like 2026-01-31T12:00:00Z"
        draws = earlier.get("draws", 0)
        if problem is None and (type(draws) is not int or not 0 <= draws <= MAX_CANDIDATES):
            problem = f"`draws` must be a whole number from 0 to {MAX_CANDIDATES}"
        if problem is None and not _are_draw_keys(earlier.get("draw_keys", [])):
            problem = f"`draw_keys` must be a list of at most {MAX_CANDIDATES} sha256 keys"
        if problem is None and not _is_digest(earlier.get("edited", "0" * 64)):
            problem = "`edited` must be a sha256 digest"
        if problem is not None:
            return f"history: {problem}"
    return None


def _are_draw_keys(keys: object) -> bool:
    """Whether `keys` is a list of the generation keys of one set's draws."""
    return isinstance(keys, list) and len(keys) <= MAX_CANDIDATES and all(map(_is_digest, keys))


def _name_problem(name: str, what: str = "image") -> str | None:
    """What is wrong with an entry's name: nebula-build names every image and atlas so
    that a terminal shows it as it is (it is printed in every plan and apply)."""
    if not name:
        return f"its name is empty, and no {what} is named so"
    if len(name) > MAX_IMAGE_NAME:
        return f"its name is longer than {MAX_IMAGE_NAME:,} characters, and no {what} is named so"
    if not shows_as_it_is(name):
        return f"its name has what a terminal does not show as it is, and no {what} is named so"
    return None


def _entry_problem(data: object) -> str | None:
    """What is wrong with one lock entry, or None."""
    if not isinstance(data, Mapping):
        return "is not a table"
    problem = _generation_problem(data, ("digest", "generation_key", "output_key"))
    if problem is not None:
        return problem
    for key in ("pinned_against", "applied_plan", "edited_from"):
        if key in data and not _is_digest(data[key]):
            return f"`{key}` must be a sha256 digest"
    pinned = data.get("pinned_draws", [])
    if not _are_draw_keys(pinned) or len(set(pinned)) != len(pinned):
        return f"`pinned_draws` must be a list of at most {MAX_CANDIDATES} distinct sha256 keys"
    problem = _draws_problem(data.get("draws", []))
    if problem is None:
        problem = _history_problem(data.get("history", []))
    if problem is not None:
        return problem
    output = data.get("output")
    problem = path_problem(output)
    if problem is not None:
        return f"`output` {_shown(repr(output))} {problem}"
    assert isinstance(output, str)
    if format_for(output) is None:
        return f"`output` {_shown(output)} is not an image file (.png, .webp, .jpg, .avif)"
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return "`seed` must be an integer"
    if seed is not None and not -_MAX_INTEGER < seed < _MAX_INTEGER:
        return f"`seed` must be an integer of at most {MAX_DIGITS} digits"
    made_with = data.get("made_with", {})
    problem = made_with_problem(dict(made_with) if isinstance(made_with, Mapping) else made_with)
    if problem is not None:
        return f"`made_with` {problem}"
    variants = data.get("variants", {})
    if not isinstance(variants, Mapping):
        return "`variants` must be a table"
    for path, digest in variants.items():
        problem = path_problem(path)
        if problem is not None:
            return f"variant {_shown(repr(path))} {problem}"
        if not _is_digest(digest):
            return f"variant {_shown(path)} must have a sha256 digest"
        # as `variant_pattern` makes them: beside the output, in its format
        if path.rpartition("/")[0] != output.rpartition("/")[0]:
            return f"variant {_shown(path)} is not in the folder of {_shown(output)}"
        if format_for(path) != format_for(output):
            return f"variant {_shown(path)} is not in the format of {_shown(output)}"
    return None


Entries = dict[str, LockEntry]


def _earlier(data: Mapping[str, Any]) -> EarlierGeneration:
    return EarlierGeneration(
        data["generation_key"],
        data["digest"],
        data["made"],
        data["backend"],
        data["model"],
        dict(data["params"]),
        data.get("draws", 0),
        tuple(data.get("draw_keys", ())),
        data.get("edited"),
    )


# --- TOML formatting ---------------------------------------------------------
# Hand-written rather than tomli_w: the layout stays fixed across library
# versions, and it is ~8x faster, which matters for 10k-entry locks.


def _toml_string(value: str) -> str:
    """`value` as a TOML basic string: UTF-8 as it is, but a character a diff would not
    show as it is (a bidirectional override that shows a prompt reversed in a pull
    request, a zero-width space) as its escape (`\\u202e`)."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isascii():
        return text.replace("\x7f", "\\u007f")
    return _HIDDEN.sub(_toml_escape, text)


#: what a lock writes as an escape: DEL, the C1 controls and the characters `text`
#: says a terminal would not show as they are (JSON escaped the C0 controls already)
_HIDDEN = re.compile(_UNSHOWN_CHARACTERS.pattern.replace("\x00-\x1f", "", 1))


def _toml_escape(found: re.Match[str]) -> str:
    code = ord(found[0])
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


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


def dumps(entries: Mapping[str, LockEntry], atlases: str = "") -> str:
    """The lock's text: header, version, the atlases' records (`atlases`: their
    tables' text), then one table per image, sorted."""
    parts = [HEADER, f"version = {LOCK_VERSION}\n", atlases]
    parts.extend(_table(name, entries[name]) for name in sorted(entries))
    return "".join(parts)


def _lock_pieces(entries: Mapping[str, LockEntry], atlases: bytes = b"") -> Iterator[bytes]:
    """`dumps`'s text, encoded, a few thousand entries at a time."""
    yield f"{HEADER}version = {LOCK_VERSION}\n".encode() + atlases
    names = sorted(entries)
    for start in range(0, len(names), _PIECE):
        chunk = names[start : start + _PIECE]
        yield "".join(_table(name, entries[name]) for name in chunk).encode()


def _table(name: str, entry: LockEntry) -> str:
    data = entry.to_dict()
    parts = [f"\n[images.{_toml_key(name)}]\n"]
    parts.extend(f"{field} = {_toml_value(data[field])}\n" for field in _FIELDS if field in data)
    parts.append(f"params = {_toml_value(data['params'])}\n")
    if "variants" in data:
        parts.append(f"variants = {_toml_value(data['variants'])}\n")
    if "made_with" in data:
        parts.append(f"made_with = {_toml_value(data['made_with'])}\n")
    if "draws" in data:
        lines = "".join(
            f"  {{ key = {_toml_string(d['key'])}, digest = {_toml_string(d['digest'])} }},\n"
            for d in data["draws"]
        )
        parts.append(f"draws = [\n{lines}]\n")
    for earlier in data.get("history", ()):
        parts.append(f"\n[[images.{_toml_key(name)}.history]]\n")
        parts.extend(f"{key} = {_toml_value(value)}\n" for key, value in earlier.items())
    return "".join(parts)


@dataclass(frozen=True)
class Merged:
    """A lock read from text with git's conflict markers in it: the union of its two
    sides (`read` gives "ours" for an image both record differently)."""

    ours: int
    theirs: int
    #: the images both sides record, differently: (ours, theirs)
    contested: Mapping[str, tuple[LockEntry, LockEntry]]


def loads(text: str, where: str = "images.lock") -> Entries:
    """Parse lock text; raises LockfileError naming what is wrong."""
    return loads_merged(text, where)[0]


def loads_merged(text: str, where: str = "images.lock") -> tuple[Entries, Merged | None]:
    """Parse lock text, reading both sides where a merge left git's conflict markers in
    it (each side checked as a whole lock); raises LockfileError naming what is wrong."""
    try:
        return _parse(text, where), None
    except LockfileError:
        split = _sides(text, where)  # markers never make valid TOML: only look then
        if split is None:
            raise
    labelled = [f"{where} ({label})" for label in ("ours", "theirs")]
    ours, theirs = (
        _parse(side.text, label, side.line) for side, label in zip(split, labelled, strict=True)
    )
    entries = theirs | ours
    contested = {
        name: (ours[name], theirs[name])
        for name in ours.keys() & theirs.keys()
        if ours[name] != theirs[name]
    }
    return entries, Merged(len(ours), len(theirs), contested)


def _parse(text: str, where: str, line: Callable[[int], int] | None = None) -> Entries:
    """The entries of lock text (`line`: the file's line of each of its lines, a
    side's), parsed whole where it asks for little, else a batch of its image tables
    at a time, as nebula-build writes them: a table past MAX_TABLE_WEIGHT is refused
    before it is parsed, and no more than a batch is ever held as TOML."""
    if weight(text) <= MAX_WHOLE_WEIGHT:
        return _entries_from(_toml(text, where, line), where)
    starts = [found.start() for found in _IMAGE_TABLE.finditer(text)]
    if not starts:  # the marks may be in its strings: only then are they set aside
        if values_over(text, MAX_WHOLE_WEIGHT):
            raise _not_laid_out(where)
        return _entries_from(_toml(text, where, line), where)
    if values_over(text[: starts[0]], MAX_WHOLE_WEIGHT):
        raise _not_laid_out(where)
    entries = _entries_from(_toml(text[: starts[0]], where, line), where)
    if entries:  # image tables before the first header found: not the tool's layout
        raise _not_laid_out(where)
    ends = [*starts[1:], len(text)]
    first, total, count = starts[0], 0, 0
    for start, end in zip(starts, ends, strict=True):
        table = text[start:end]
        size = weight(table)
        if size > MAX_TABLE_WEIGHT and values_over(table, MAX_TABLE_WEIGHT):
            header = printable(text[start : text.find("\n", start)].strip(), 120)
            raise LockfileError(
                f"{where}: {header}: asks for more than {MAX_TABLE_WEIGHT:,} TOML values "
                "(a table counting 8), more than an image's record ever holds; restore the "
                "lock from version control or delete the entry"
            )
        if count and total + size > _BATCH_WEIGHT:
            _add_tables(entries, text, (first, start, count), where, line)
            first, total, count = start, 0, 0
        total, count = total + min(size, MAX_TABLE_WEIGHT), count + 1
    _add_tables(entries, text, (first, len(text), count), where, line)
    return entries


def _add_tables(
    entries: Entries,
    text: str,
    batch: tuple[int, int, int],
    where: str,
    line: Callable[[int], int] | None,
) -> None:
    """Add the entries of `text[start:end]`, which holds `count` image tables."""
    start, end, count = batch

    def file_line(number: int) -> int:
        number += text.count("\n", 0, start)
        return number if line is None else line(number)

    data = _toml(text[start:end], where, file_line)
    images = data.get("images")
    if list(data) != ["images"] or not isinstance(images, Mapping) or len(images) != count:
        raise _not_laid_out(where)
    for name, entry in images.items():
        if name in entries:
            raise LockfileError(
                f"{where}: images.{_shown(name)} is recorded twice; restore the lock from "
                "version control or delete one of its tables"
            )
        entries[name] = LockEntry.from_dict(name, entry, where=where)


def _not_laid_out(where: str) -> LockfileError:
    return LockfileError(
        f"{where} asks for more than {MAX_WHOLE_WEIGHT:,} TOML values (a table counting 8) "
        "and is not laid out as nebula-build writes a lock, one [images.NAME] table per "
        "image; restore it from version control or delete it"
    )


def _sides(text: str, where: str) -> tuple[conflicts.Side, conflicts.Side] | None:
    """The text of each side of the conflicts in `text`, or None where it has none."""
    if conflicts.first_marker(text) is None:  # no line by line walk of text without one
        return None
    try:
        return conflicts.sides(text)
    except conflicts.MarkerError as exc:
        raise LockfileError(
            f"{where}:{exc.line}: {exc.problem}: git's merge conflict markers are not whole "
            "conflicts; resolve the lock by hand or restore it from version control"
        ) from None


def _heads(
    split: tuple[conflicts.Side, conflicts.Side], where: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """Each side's TOML before its first image table, and where it is from ("images.lock
    (ours)")."""
    for side, label in zip(split, ("ours", "theirs"), strict=True):
        first = _IMAGE_TABLE.search(side.text)
        head = side.text if first is None else side.text[: first.start()]
        if values_over(head, MAX_WHOLE_WEIGHT):
            raise _head_too_large(where)
        yield _toml(head, f"{where} ({label})", side.line), f"{where} ({label})"


def _toml(text: str, where: str, line: Callable[[int], int] | None = None) -> dict[str, Any]:
    """`text` parsed; `line`: the file's line of each of its lines (a side's)."""
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        reason = str(exc)
        if isinstance(exc, RecursionError):
            reason = "nested too deeply"
        elif not isinstance(exc, tomllib.TOMLDecodeError):  # Python's own limit
            reason = "an integer has more than 4,300 digits"
        # "Invalid statement (at line 59, column 1)": the place first, then what is wrong
        place = re.search(r" \(at line (\d+), column (\d+)\)$", reason)
        if place is not None:
            number = int(place[1]) if line is None else line(int(place[1]))
            reason = f"line {number}, column {place[2]}: {reason[: place.start()]}"
        raise LockfileError(
            f"{where} is not valid TOML: {reason}; restore it from version control or delete it"
        ) from None


def _entries_from(data: Mapping[str, Any], where: str) -> Entries:
    version = data.get("version")
    if version is None:
        raise LockfileError(
            f"{where} has no `version`: it is not a lock nebula-build wrote; restore it "
            "from version control or delete it"
        )
    if type(version) is not int or version != LOCK_VERSION:
        raise LockfileError(
            f"{where} has version {_shown(json.dumps(version, default=str))}; "
            f"this nebula-build reads version {LOCK_VERSION}"
        )
    images = data.get("images", {})
    if not isinstance(images, Mapping):
        raise LockfileError(f"{where}: `images` must be a table")
    return {name: LockEntry.from_dict(name, entry, where=where) for name, entry in images.items()}


def _check_own_files(
    project: Project, entries: Entries, where: str, fix: str = RESTORE_LOCK
) -> Entries:
    """Refuse entries that name the tool's own files: a crafted lock must never make
    apply delete or move the manifest or the lock."""
    own = {name.casefold() for name in project.own_files}
    for name, entry in entries.items():
        for path in entry.files():
            if "/" not in path and path.casefold() in own:
                raise LockfileError(
                    f"{where}: images.{_shown(name)}: {path!r} is the tool's own file; {fix}"
                )
    return entries


def _refuse_a_shared_lock(project: Project) -> None:
    """Before 0.3 every manifest in a folder wrote images.lock. A manifest without a lock
    of its own beside one that no images.toml owns is that case: say how to carry the
    records over rather than start afresh (and find every file in conflict)."""
    if project.is_default:
        return
    legacy = project.lock_path.with_name(LOCK_NAME)
    if legacy.is_file() and not legacy.with_name(MANIFEST_NAME).exists():
        raise LockfileError(
            f"{project.manifest_path.name} has no lock of its own ({project.lock_path.name}) "
            f"but {LOCK_NAME} is beside it: each manifest now has its own lock; rename "
            f"{LOCK_NAME} to {project.lock_path.name} to keep its records"
        )


# --- reading, with the snapshot ---------------------------------------------


_Signature = tuple[int, int, int, int]


@dataclass
class _Held:
    """The lock as this process last read or wrote it (where it is `retain`ed)."""

    signature: _Signature | None
    #: never changed in place: readers get copies
    entries: Entries
    #: its bytes, where the tool wrote them (a splice needs the canonical layout)
    text: bytes | None = None
    names: list[str] = field(default_factory=list)


_retained: set[Path] = set()
_held: dict[Path, _Held] = {}
#: the lock with merge conflicts this process read last, by path: its stat, what it held
_merged: dict[Path, tuple[_Signature | None, Merged]] = {}
#: seconds the lock must stay unchanged before a retained one's snapshot is written
SNAPSHOT_QUIET = 5.0


def retain(project: Project) -> None:
    """Keep `project`'s lock in memory between reads and writes in this process: a
    long-lived one (watch) then reads it once and rewrites it in O(changed)."""
    _retained.add(project.lock_path)


def _signature(path: Path) -> _Signature | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def _hold(
    project: Project,
    entries: Mapping[str, LockEntry],
    text: bytes | None,
    signature: _Signature | None,
) -> None:
    """Keep the lock in memory as `signature` (the stat of the very bytes read or
    written: a file edited meanwhile must not be taken for them)."""
    if project.lock_path in _retained:
        names = sorted(entries) if text is not None else []
        _held[project.lock_path] = _Held(signature, dict(entries), text, names)


def _written_signature(project: Project, text: bytes) -> _Signature | None:
    """The stat of the lock just written as `text`, or None where it is not that
    file any more (an edit landed since: nothing is held then)."""
    signature = _signature(project.lock_path)
    return signature if signature is not None and signature[0] == len(text) else None


def _still_held(project: Project) -> _Held | None:
    """The held lock, if images.lock is still the file it was read from or written as."""
    held = _held.get(project.lock_path)
    if held is None:
        return None
    if held.signature is not None and _signature(project.lock_path) == held.signature:
        return held
    _held.pop(project.lock_path, None)
    return None


def read(project: Project) -> Entries:
    """The lock's entries (empty if there is no lock). Does not look at the journal."""
    held = _still_held(project)
    if held is not None:
        return dict(held.entries)
    before = _signature(project.lock_path)
    entries, formatted = read_from_disk(project)
    if before is not None and _signature(project.lock_path) == before:
        _hold(project, entries, formatted, before)
    return entries


def merged(project: Project) -> Merged | None:
    """What the lock's two sides held, where the lock as it is now has git's conflict
    markers in it and was read by this process; None otherwise."""
    found = _merged.get(project.lock_path)
    if found is None or found[0] is None or _signature(project.lock_path) != found[0]:
        return None
    return found[1]


def read_from_disk(project: Project) -> tuple[Entries, bytes | None]:
    """The lock's entries as images.lock (or its snapshot) holds them, and its bytes
    where its snapshot says the tool formatted them (a splice may start from them)."""
    where = project.lock_path.name
    _merged.pop(project.lock_path, None)
    before = _signature(project.lock_path)
    digest = _from_lock(project, sha256_file)  # a 100k-entry lock need not be held
    if digest is None:
        return {}, None
    snapshot = _read_snapshot(project.lock_snapshot_path, digest)
    if snapshot is not None:
        entries, formatted = snapshot
        entries = _check_own_files(project, entries, where)
        if not (formatted and project.lock_path in _retained):
            return entries, None
        raw = _from_lock(project, _lock_bytes)  # a splice starts from its bytes
        return entries, raw if raw is not None and sha256_bytes(raw) == digest else None
    raw = _from_lock(project, _lock_bytes)
    if raw is None:
        return {}, None
    digest = sha256_bytes(raw)  # what was parsed, should the lock have changed since
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LockfileError(
            f"{where} is not UTF-8 text; restore it from version control or delete it"
        ) from None
    del raw
    entries, conflicted = loads_merged(text, where)
    entries = _check_own_files(project, entries, where)
    if conflicted is not None:  # no snapshot: every read must see the conflict
        for side, label in ((0, "ours"), (1, "theirs")):  # the entries not kept too
            sides = {name: pair[side] for name, pair in conflicted.contested.items()}
            _check_own_files(project, sides, f"{where} ({label})")
        _merged[project.lock_path] = (before, conflicted)
    else:
        _write_snapshot(project, digest, entries, formatted=False)
    return entries, None


_T = TypeVar("_T")


def _from_lock(project: Project, reading: Callable[[Path], _T]) -> _T | None:
    """`reading` of the lock file, once its size is known to be within MAX_LOCK_BYTES;
    None where there is no lock."""
    path = project.lock_path
    try:
        info = path.stat()
    except FileNotFoundError:
        _refuse_a_shared_lock(project)
        return None
    except OSError as exc:
        raise LockfileError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise LockfileError(f"{path.name} is a folder; remove it and re-run")
    if not stat.S_ISREG(info.st_mode):
        raise LockfileError(f"{path.name} is not a regular file; remove it and re-run")
    if info.st_size > MAX_LOCK_BYTES:
        raise _too_large(path.name, info.st_size)
    try:
        return reading(path)
    except FileNotFoundError:
        _refuse_a_shared_lock(project)
        return None
    except IsADirectoryError:
        raise LockfileError(f"{path.name} is a folder; remove it and re-run") from None


def _too_large(where: str, size: int) -> LockfileError:
    return LockfileError(
        f"{where}: {size:,} bytes, more than a lock may have ({MAX_LOCK_BYTES >> 20:,} MiB); "
        "restore it from version control or delete it"
    )


def _lock_bytes(path: Path) -> bytes:
    """The lock's bytes, at most MAX_LOCK_BYTES of them (it may grow after its stat)."""
    with path.open("rb") as handle:
        # what the file holds and a byte more: a read allocates what it asks for
        raw = handle.read(min(os.fstat(handle.fileno()).st_size, MAX_LOCK_BYTES) + 1)
        if len(raw) <= MAX_LOCK_BYTES:
            raw += handle.read(MAX_LOCK_BYTES + 1 - len(raw))
    if len(raw) > MAX_LOCK_BYTES:
        raise _too_large(path.name, len(raw))
    return raw


#: the snapshot's layout: a line saying whose it is, then lines of up to _PIECE entries;
#: raised too when `_entry_problem` refuses more (3: an entry's files are images beside
#: its output), since a snapshot's entries are not checked again
_SNAPSHOT_LAYOUT = 3


def _read_snapshot(path: Path, digest: str) -> tuple[Entries, bool] | None:
    """The snapshot's entries if it is this lock's and was written on this account
    (sealed: one that came with a checkout could carry entries no check ever saw),
    and whether the tool formatted the lock's bytes from them. Read a line of
    entries at a time: at 100k entries the file as one JSON tree would be several
    times the entries' own size."""
    raw = read_regular(path, limit=_SNAPSHOT_LIMIT)
    start = sealed_from(raw) if raw is not None else None
    if raw is None or start is None:
        return None
    try:
        end = raw.index(b"\n", start)
        head = json.loads(raw[start:end])
        if (
            head.get("lock_digest") != digest
            or head.get("version") != LOCK_VERSION
            or head.get("layout") != _SNAPSHOT_LAYOUT
        ):
            return None
        entries: dict[str, LockEntry] = {}
        shared: dict[str, str] = {}  # the backend and model most entries repeat, kept once
        while (start := end + 1) < len(raw):
            end = raw.index(b"\n", start)
            # Sealed, and bound to the lock's digest: rebuilding without field-by-field
            # checks keeps a 10k-entry read cheap.
            for name, entry in json.loads(raw[start:end]).items():
                for column in ("backend", "model"):
                    if type(value := entry.get(column)) is str:
                        entry[column] = shared.setdefault(value, value)
                # most entries have no draws or history: keyword arguments build them fastest
                entries[name] = (
                    LockEntry.from_checked(entry)
                    if not _PLAIN_FIELDS.issuperset(entry)
                    else LockEntry(**entry)
                )
        return entries, head.get("formatted") is True and head.get("tables") == TABLE_FORMAT
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def _snapshot_pieces(
    digest: str, entries: Mapping[str, LockEntry], formatted: bool
) -> Iterator[bytes]:
    """The snapshot's lines: whose it is, then a JSON object of up to _PIECE entries
    on each line; `formatted`: the lock's bytes are `dumps(entries)`'s (the tool
    wrote them)."""
    head = {
        "lock_digest": digest,
        "version": LOCK_VERSION,
        "layout": _SNAPSHOT_LAYOUT,
        "formatted": formatted,
        # a release that formats a table differently bumps it: its splice starts afresh
        "tables": TABLE_FORMAT,
    }
    yield json.dumps(head).encode() + b"\n"
    names = list(entries)
    for start in range(0, len(names), _PIECE):
        chunk = names[start : start + _PIECE]
        yield json.dumps({n: entries[n].to_dict() for n in chunk}).encode() + b"\n"


def _write_snapshot(
    project: Project, digest: str, entries: Mapping[str, LockEntry], *, formatted: bool = True
) -> None:
    mac = sealer()
    if mac is None:
        return
    # the snapshot only saves time; the lock is the truth
    with (
        contextlib.suppress(OSError),
        atomic_stream(project.lock_snapshot_path, durable=False) as handle,
    ):
        handle.write(b"0" * mac.digest_size * 2 + b"\n")  # the seal, once it is known
        for piece in _snapshot_pieces(digest, entries, formatted):
            mac.update(piece)
            handle.write(piece)
        handle.seek(0)
        handle.write(mac.hexdigest().encode())


def _write_pieces(project: Project, pieces: Iterable[bytes]) -> str:
    """Replace the lock with `pieces`, atomically; returns its sha256."""
    digest = hashlib.sha256()
    try:
        with atomic_stream(project.lock_path) as handle:
            for piece in pieces:
                digest.update(piece)
                handle.write(piece)
    except OSError as exc:
        raise StateWriteError(
            f"could not write {project.lock_path.name}: {exc.strerror or exc}; the previous "
            "lock is intact and the journal keeps the finished images: re-run once there is room"
        ) from None
    return digest.hexdigest()


def write_streamed(
    project: Project,
    entries: Mapping[str, LockEntry],
    *,
    snapshot: bool = True,
) -> str:
    """Rewrite the lock as `entries` piece by piece, and its snapshot where `snapshot`
    (a rewrite during a run skips it: only the last one is read again); returns the
    lock's sha256."""
    if project.lock_path in _retained:
        return _write_retained(project, entries, snapshot=snapshot)
    digest = _write_pieces(project, _lock_pieces(entries, _made_section(project)))
    if snapshot:
        _write_snapshot(project, digest, entries)
    return digest


def _spliced(held: _Held, entries: Mapping[str, LockEntry]) -> bytes | None:
    """The held lock's bytes with the tables of the entries that differ from it
    replaced, or None where that is no cheaper than formatting them all."""
    if held.text is None:
        return None
    before = held.entries
    changed: dict[str, str | None] = dict.fromkeys(before.keys() - entries.keys())
    changed.update(
        (name, _table(name, entry))
        for name, entry in entries.items()
        if before.get(name) is not entry and before.get(name) != entry
    )
    if len(changed) > max(64, len(entries) // 8):
        return None
    if not changed:
        return held.text
    try:
        return splice(held.text, held.names, changed, _marker)
    except ValueError:
        return None


def _marker(name: str) -> bytes:
    return f"\n[images.{_toml_key(name)}]\n".encode()


def _write_retained(project: Project, entries: Mapping[str, LockEntry], *, snapshot: bool) -> str:
    """`write_streamed` for a retained lock: spliced where the file is the one held."""
    held = _still_held(project)
    text = _spliced(held, entries) if held is not None else None
    if text is None:
        text = b"".join(_lock_pieces(entries, _made_section(project)))
    return _write_held(project, entries, text, snapshot)


def _write_held(
    project: Project, entries: Mapping[str, LockEntry], text: bytes, snapshot: bool
) -> str:
    digest = _write_pieces(project, [text])
    signature = _written_signature(project, text)
    if signature is None:
        _held.pop(project.lock_path, None)
        return digest
    _hold(project, entries, text, signature)
    if snapshot:
        _snapshot_later(project, digest, _held[project.lock_path].entries)
    return digest


_snapshots_due: dict[Path, tuple[Project, str, Entries, float]] = {}
_snapshot_guard = threading.Lock()
#: the thread writing them, while there are some
_snapshot_worker: list[threading.Thread] = []
#: held while one is written; `_closing` is set once the process is ending
_snapshot_writing = threading.Lock()
_closing: list[bool] = []


@atexit.register
def _end_snapshots() -> None:
    """A process that ends writes the snapshots still due whose lock is unchanged
    (the next command would otherwise parse the whole lock again) and waits for the
    one being written, so no temp file is left."""
    with _snapshot_writing:
        _closing.append(True)
        with _snapshot_guard:
            due = list(_snapshots_due.items())
            _snapshots_due.clear()
        for path, (project, digest, entries, _) in due:
            held = _held.get(path)
            if held is not None and held.entries is entries and _still_held(project):
                with contextlib.suppress(Exception):  # only a read cache
                    _write_snapshot(project, digest, entries)


def _snapshot_later(project: Project, digest: str, entries: Entries) -> None:
    """Write a retained lock's snapshot once it has been quiet for `SNAPSHOT_QUIET`
    seconds, in a background thread (a later rewrite replaces the request)."""
    with _snapshot_guard:
        _snapshots_due[project.lock_path] = (project, digest, entries, time.monotonic())
        if not _snapshot_worker:
            # a daemon: Ctrl-C ends watch without waiting for the quiet period
            worker = threading.Thread(
                target=_write_due_snapshots, name="lock-snapshot", daemon=True
            )
            _snapshot_worker.append(worker)
            worker.start()


def _write_due_snapshots() -> None:
    while True:
        with _snapshot_guard:
            if not _snapshots_due:
                _snapshot_worker.clear()
                return
            path, (project, digest, entries, asked) = next(iter(_snapshots_due.items()))
            wait = asked + SNAPSHOT_QUIET - time.monotonic()
            if wait <= 0:
                del _snapshots_due[path]
        if wait > 0:
            time.sleep(wait)
            continue
        held = _held.get(path)
        with _snapshot_writing:
            if _closing:
                return
            if held is None or held.entries is entries:  # else a newer write asked again
                _write_snapshot(project, digest, entries)


def wait_for_snapshots() -> None:
    """Return once every snapshot asked for is written (tests, and a process that ends)."""
    for worker in list(_snapshot_worker):
        worker.join()


def write(
    project: Project,
    entries: Mapping[str, LockEntry],
    *,
    made: Made | None = None,
) -> bool:
    """Rewrite the lock atomically if its content changes; returns whether it did.
    The records of the files made from the images are `made`, or those the lock
    holds where None."""
    if made is not None:
        _held.pop(project.lock_path, None)  # a splice keeps the records it holds
    held = _still_held(project) if project.lock_path in _retained else None
    if held is not None and (text := _spliced(held, entries)) is not None:
        if text is not held.text:
            _write_held(project, entries, text, snapshot=True)
        return text is not held.text
    section = _made_section(project) if made is None else derivedrecords.tables(made).encode()
    text = dumps(entries, section.decode()).encode()
    try:
        before = _signature(project.lock_path)
        # a lock of another size differs: never read whole for that
        if (before is None or before[0] == len(text)) and project.lock_path.read_bytes() == text:
            if before is not None and _signature(project.lock_path) == before:
                _hold(project, entries, text, before)
            return False
    except FileNotFoundError:
        if not entries:
            return False
    except IsADirectoryError:
        raise LockfileError(f"{project.lock_path.name} is a folder; remove it and re-run") from None
    if project.lock_path in _retained:
        _write_held(project, entries, text, snapshot=True)
    else:
        _write_snapshot(project, _write_pieces(project, [text]), entries)
    return True


# --- the journal ------------------------------------------------------------


#: the most bytes a journal may have: a run may record every image of a lock before
#: the lock is rewritten, each in a line about the size of its table
MAX_JOURNAL_BYTES = MAX_LOCK_BYTES
#: the longest line a journal may have: one image's record, twenty earlier generations
#: of 10,000-character prompts included, is under 2 MiB
MAX_JOURNAL_LINE = 4 << 20


#: one journal operation: "set" with its entry's table, or "delete" with None
JournalOp = tuple[str, str, dict[str, Any] | None]


def _journal_ops(path: Path) -> Iterator[JournalOp]:
    """The operations a journal records, read a line at a time within MAX_JOURNAL_BYTES
    and MAX_JOURNAL_LINE (it may come with a checkout, or be left huge by a crash)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise LockfileError(f"{path} is a folder, not the journal; remove it and re-run") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_JOURNAL_BYTES:
            raise _journal_refused(path, f"{size:,} bytes, {_journal_limit()}")
        read = 0
        for number, line in enumerate(iter(lambda: handle.readline(MAX_JOURNAL_LINE + 1), b""), 1):
            read += len(line)
            if len(line) > MAX_JOURNAL_LINE:
                raise _journal_refused(
                    path,
                    f"line {number:,} has more than {MAX_JOURNAL_LINE:,} bytes, more than an "
                    "image's record ever holds",
                )
            if read > MAX_JOURNAL_BYTES:  # it grew since fstat
                raise _journal_refused(path, f"{read:,} bytes or more, {_journal_limit()}")
            ops = _journal_ops_of(line)
            if ops and _SURROGATE_ESCAPE.search(line) and not _encodable(ops):
                raise _journal_refused(
                    path,
                    f"line {number:,} holds a lone surrogate (half of a UTF-16 pair), which no "
                    "image's record holds",
                )
            yield from ops


#: JSON's escape of half a UTF-16 pair: never in a line nebula-build writes, which holds
#: its text as UTF-8, but a line that has one is looked at closer
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(ops: list[JournalOp]) -> bool:
    """Whether every string in `ops` can be written as UTF-8 (to the lock)."""
    try:
        json.dumps(ops, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _journal_ops_of(line: bytes) -> list[JournalOp]:
    """A journal line's operations: one, or the several recorded together (a rename
    cycle's), or none for a line cut short by a crash (none of its images was recorded)."""
    try:
        op = json.loads(line)
        if isinstance(op, dict) and op.get("op") == "together":
            ops = [_journal_op(one) for one in op["ops"]]
        else:
            ops = [_journal_op(op)]
    except (ValueError, KeyError, TypeError, RecursionError):
        return []
    return [one for one in ops if one is not None]


def _journal_op(op: Any) -> JournalOp | None:
    kind, name = op["op"], op["image"]
    entry = op.get("entry")
    return (kind, name, entry) if isinstance(kind, str) and isinstance(name, str) else None


def _journal_limit() -> str:
    return f"more than a journal may have ({MAX_JOURNAL_BYTES:,} bytes)"


#: what to do about a journal that fails its checks
_REMOVE_JOURNAL = (
    "it is what an interrupted apply left: remove it and re-run, which loses only that "
    "run's record of the images it finished"
)


def _journal_shown(path: Path) -> str:
    return (
        "/".join(path.parts[path.parts.index(STATE_DIR) :])
        if STATE_DIR in path.parts
        else str(path)
    )


def _journal_refused(path: Path, problem: str) -> LockfileError:
    return LockfileError(f"{_journal_shown(path)}: {problem}; {_REMOVE_JOURNAL}")


def replay(entries: Entries, journal: Path) -> bool:
    """Apply a journal's operations to `entries`; returns whether there were any."""
    found = False
    for op, name, entry in _journal_ops(journal):
        found = True
        if op == "set" and entry is not None:
            where, fix = _journal_shown(journal), _REMOVE_JOURNAL
            entries[name] = LockEntry.from_dict(name, entry, where=where, fix=fix)
        elif op == "delete":
            entries.pop(name, None)
    return found


def recover(project: Project) -> tuple[Entries, bool]:
    """The lock with any leftover journal folded in and written back; a lock with
    merge conflicts is not written (nor the journal emptied) until each image both
    sides record is settled (`engine.lockmerge`).

    Call it only while holding the project lock. Returns (entries, folded).
    """
    entries = read(project)
    if not replay(entries, project.journal_path):
        project.journal_path.unlink(missing_ok=True)
        return entries, False
    _check_own_files(project, entries, _journal_shown(project.journal_path), _REMOVE_JOURNAL)
    if merged(project) is not None:
        return entries, True
    write(project, entries)
    project.journal_path.unlink(missing_ok=True)
    return entries, True


def read_with_journal(project: Project) -> Entries:
    """The lock as it stands, including a live apply's journal, without writing."""
    entries = read(project)
    if replay(entries, project.journal_path):
        journal = _journal_shown(project.journal_path)
        _check_own_files(project, entries, journal, _REMOVE_JOURNAL)
    return entries


# --- the records of the files made from the images -------------------------
# Written before the images' tables, so a splice of those keeps them as they are and
# reading them costs the lock's first bytes, not a parse of every image.

_FIRST_IMAGE = re.compile(rb"\n\[\[?images\.")
#: bytes read at a time until the first image's table
_HEAD_CHUNK = 1 << 16
#: records of a lock far beyond any manifest's are not read
_HEAD_LIMIT = 16 << 20


def _head(project: Project) -> bytes:
    """The lock's bytes before its first image table (all of it if it has none)."""
    try:
        handle = project.lock_path.open("rb")
    except (FileNotFoundError, NotADirectoryError):
        return b""
    except IsADirectoryError:
        raise LockfileError(f"{project.lock_path.name} is a folder; remove it and re-run") from None
    with handle:
        head = b""
        while chunk := handle.read(_HEAD_CHUNK):
            head += chunk
            if (
                found := _FIRST_IMAGE.search(head, max(0, len(head) - len(chunk) - 16))
            ) is not None:
                return head[: found.start() + 1]
            if len(head) > _HEAD_LIMIT:
                raise _head_too_large(project.lock_path.name)
    return head


def _head_too_large(where: str) -> LockfileError:
    return LockfileError(
        f"{where}: the tables before `images` are far too large; restore the lock from "
        "version control or delete it"
    )


def _made_section(project: Project) -> bytes:
    """The records' tables as the lock on disk holds them, to write back unchanged
    (resolved, where a merge left conflict markers in them)."""
    head = _head(project)
    if conflicts.first_marker(head.decode("utf-8", "replace")) is not None:
        return derivedrecords.tables(read_made(project)).encode()
    start = head.find(b"\n[")
    return b"" if start < 0 else head[start:].rstrip(b"\n") + b"\n"


def read_made(project: Project) -> Made:
    """What the lock records of the files made from the images (nothing in a lock from
    0.3 or earlier). Untrusted: an atlas's record that names anything but its sheet,
    frame map and exports inside the project, or the tool's own files, is refused in
    one line, as is an `[assets]` table naming a path outside it."""
    where = project.lock_path.name
    head = _head(project)
    if values_over(head.decode("utf-8", "replace"), MAX_WHOLE_WEIGHT):
        raise _head_too_large(where)
    try:
        data = tomllib.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        if conflicts.first_marker(head.decode("utf-8", "replace")) is None:
            return Made({})  # a broken lock: reading its images says what is wrong with it
        return _merged_made(project)
    return _made_from(project, data, where)


def _merged_made(project: Project) -> Made:
    """The records of both sides of a lock a merge left conflict markers in (the whole
    lock is read: a conflict may run from the records into the images' tables). A
    record both sides hold differently is the one whose files are on disk as it says,
    else the one "ours" holds."""
    where = project.lock_path.name
    raw = _from_lock(project, _lock_bytes) or b""
    try:
        split = _sides(raw.decode("utf-8"), where)
    except UnicodeDecodeError:
        return Made({})  # reading its images says what is wrong with it
    if split is None:
        return Made({})
    ours, theirs = (_made_from(project, data, w) for data, w in _heads(split, where))
    guard = Guard(project.root, reserved=project.own_files)
    atlases = dict(theirs.atlases)
    for name, record in ours.atlases.items():
        other = atlases.get(name)
        if other is None or not _only_second_on_disk(guard, record.files, other.files):
            atlases[name] = record
    assets = ours.asset_manifest or theirs.asset_manifest
    if (
        ours.asset_manifest is not None
        and theirs.asset_manifest is not None
        and _only_second_on_disk(guard, dict([ours.asset_manifest]), dict([theirs.asset_manifest]))
    ):
        assets = theirs.asset_manifest
    return Made(atlases, assets)


def _only_second_on_disk(guard: Guard, first: Mapping[str, str], second: Mapping[str, str]) -> bool:
    """Whether the files of `second`, and not those of `first`, are on disk as recorded."""
    return first != second and _on_disk(guard, second) and not _on_disk(guard, first)


def _on_disk(guard: Guard, files: Mapping[str, str]) -> bool:
    """Whether each file is inside the project (no link out) and holds its digest."""
    for path, digest in files.items():
        if guard.input_problem(path) is not None:
            return False
        try:
            if sha256_file(guard.root / path) != digest:
                return False
        except OSError:
            return False
    return True


def _made_from(project: Project, data: Mapping[str, Any], where: str) -> Made:
    """The records in a lock's parsed text, each checked."""
    tables = data.get("atlases", {})
    if not isinstance(tables, Mapping):
        raise LockfileError(f"{where}: `atlases` must be a table")
    own = {name.casefold() for name in project.own_files}

    def refuse(key: str, problem: str) -> LockfileError:
        return LockfileError(
            f"{where}: {key}: {problem}; restore the lock from version control or delete the entry"
        )

    records = {}
    for name, table in tables.items():
        problem = _name_problem(name, "atlas") or derivedrecords.record_problem(table)
        if problem is None:
            mine = [path for path in table["files"] if "/" not in path and path.casefold() in own]
            if mine:
                problem = f"{printable(mine[0], 200)} is the tool's own file"
        if problem is not None:
            raise refuse(f"atlases.{_shown(name)}", problem)
        records[name] = derivedrecords.from_checked(table)
    assets = data.get("assets")
    if assets is None:
        return Made(records)
    problem = derivedrecords.asset_manifest_problem(assets)
    if problem is None and "/" not in assets["manifest"] and assets["manifest"].casefold() in own:
        problem = f"{printable(assets['manifest'], 200)} is the tool's own file"
    if problem is not None:
        raise refuse("assets", problem)
    return Made(records, (assets["manifest"], assets["digest"]))


def write_made(project: Project, made: Made) -> bool:
    """Record `made` in the lock, its images as they are; returns whether it changed."""
    return write(project, read(project), made=made)


async def _to_thread(function: Callable[..., None], *args: Any) -> None:
    import asyncio

    await asyncio.to_thread(function, *args)


class LockWriter:
    """Records finished images durably and keeps images.lock up to date, linearly.

    A record returns once its journal line is fsync'd. Records that arrive
    while a write is in progress are committed together by the next one (group
    commit), off the event loop, so a run with many images in flight pays far
    fewer than one fsync per image. The lock is rewritten when at least
    `min_interval` seconds passed since the last rewrite *and* long enough that
    rewrites take at most `max_share` of the run (the last one took 0.3 s: not
    before 10 s more at 3%), so a 100k-entry lock costs the run a few percent, not
    a quadratic share; the journal keeps every record meanwhile. A rewrite runs
    off the event loop too, in the same trip to a worker thread as the journal
    lines committed with it, from a copy of the entries taken when it was decided;
    only the last one (`close`) writes the lock's snapshot.
    """

    def __init__(
        self,
        project: Project,
        entries: Entries,
        *,
        min_interval: float = 1.0,
        max_share: float = 0.03,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        self.entries = dict(entries)
        self.min_interval = min_interval
        self.max_share = max_share
        self.clock = clock
        #: how many times the lock was rewritten, and the seconds that took
        self.rewrites = 0
        self.rewrite_seconds = 0.0
        self._journal: IO[bytes] | None = None
        self._buffer: list[bytes] = []
        import asyncio  # here, not at the top: `plan` reads locks and must not pay for asyncio

        self._commit = asyncio.Lock()
        self._last_flush = clock()
        self._flush_cost = 0.0
        self._pending = False
        #: the digest of a lock rewritten without its snapshot: close() writes it
        self._snapshot_due: str | None = None

    async def set(self, name: str, entry: LockEntry) -> None:
        await self.record({name: entry})

    async def delete(self, name: str) -> None:
        await self.record({name: None})

    async def record(self, changes: Mapping[str, LockEntry | None]) -> None:
        """Set each entry, or delete it (None), together: their journal lines go in one
        write, so a killed process leaves all of them or none."""
        ops: list[dict[str, Any]] = []
        for name, entry in changes.items():
            if entry is None:
                self.entries.pop(name, None)
                ops.append({"op": "delete", "image": name})
            else:
                self.entries[name] = entry
                ops.append({"op": "set", "image": name, "entry": entry.to_dict()})
        line = ops[0] if len(ops) == 1 else {"op": "together", "ops": ops}
        self._buffer.append(json.dumps(line, ensure_ascii=False).encode() + b"\n")
        self._pending = True
        async with self._commit:
            # else an earlier holder already committed our lines
            lines, self._buffer = self._buffer, []
            snapshot = None
            now = self.clock()
            if self._pending and now - self._last_flush >= max(
                self.min_interval, self._flush_cost / self.max_share
            ):
                # Every record so far is in this copy, and its line is either in `lines`
                # or already in the journal: the journal can be emptied after the rewrite.
                snapshot, self._pending = dict(self.entries), False
            if not lines and snapshot is None:
                return
            try:
                await _to_thread(self._commit_lines, lines, snapshot)
            except BaseException:
                if snapshot is not None:
                    self._pending = True  # the lock was not rewritten: close() tries again
                raise

    def _commit_lines(self, lines: list[bytes], snapshot: Entries | None) -> None:
        """In a worker thread, holding the commit lock: the journal lines, then the lock."""
        if lines:
            self._write_lines(lines)
        if snapshot is not None:
            self._rewrite(snapshot)

    def _write_lines(self, lines: list[bytes]) -> None:
        if self._journal is None:
            self.project.state_dir.mkdir(parents=True, exist_ok=True)
            self._journal = self.project.journal_path.open("ab")
        self._journal.write(b"".join(lines))
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _rewrite(self, entries: Entries, *, last: bool = False) -> None:
        """Rewrite the lock as `entries`, then empty the journal it now contains.

        Called with the commit lock held (or at close), so no journal write runs
        meanwhile. Lines still in the buffer only repeat what the lock now holds
        or record what came after `entries` was taken: they are written after."""
        started = self.clock()
        # Each table is formatted again at every rewrite rather than kept: keeping them
        # would hold a second copy of the lock, and rewrites are rare (`max_share`).
        digest = write_streamed(self.project, entries, snapshot=last)
        self._snapshot_due = None if last else digest
        if self._journal is not None:
            self._journal.truncate(0)
        self._last_flush = self.clock()
        self._flush_cost = self._last_flush - started
        self.rewrites += 1
        self.rewrite_seconds += self._flush_cost

    def _flush(self) -> None:
        """Rewrite the lock from memory if a record came since the last rewrite, and
        write its snapshot if the last rewrite did not."""
        if self._pending:
            self._rewrite(self.entries, last=True)
            self._pending = False
        elif self._snapshot_due is not None:  # the last rewrite holds every record
            if self.project.lock_path in _retained:
                held = _still_held(self.project)
                if held is not None:  # the entries its bytes were written from
                    _snapshot_later(self.project, self._snapshot_due, held.entries)
            else:
                _write_snapshot(self.project, self._snapshot_due, self.entries)
            self._snapshot_due = None

    def close(self) -> None:
        """Write the final lock and remove the journal; call when no record is running."""
        try:
            self._flush()
        finally:  # the journal stays on disk if the lock could not be written
            if self._journal is not None:
                self._journal.close()
                self._journal = None
        self.project.journal_path.unlink(missing_ok=True)
