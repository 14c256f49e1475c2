"""The files made from the images that images.lock records: what each atlas's last
build wrote (`[atlases.NAME]`) and the asset manifest written last (`[assets]`).

The lock is committed, so a fresh checkout knows those files even once the manifest
moves them or stops naming them, and the old ones can go. A lock from a pull
request is untrusted: an atlas's record names one image (the sheet) and otherwise
JSON or Godot text files (the frame map and engine exports), every path inside the
project, each with the digest it was written with; a file is removed only where it
still holds that digest, and never one the manifest writes or reads
(`engine/derived.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nebula_build.imaging import format_for
from nebula_build.state.guard import path_problem
from nebula_build.text import printable

#: the files a record may name beside its sheet: a frame map, an Aseprite export (.json),
#: a Godot resource (.tres)
TEXT_SUFFIXES = (".json", ".tres")
#: a sheet, its frame map and two exports
MAX_FILES = 4
_DIGEST = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Made:
    """What the lock records of the files made from the images."""

    atlases: Mapping[str, AtlasRecord]
    #: the asset manifest written last: (path, digest)
    asset_manifest: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class AtlasRecord:
    """The files one build of an atlas wrote: its sheet and path → digest of each."""

    output: str
    files: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "files": dict(sorted(self.files.items()))}


def record_problem(data: object) -> str | None:
    """What is wrong with an `[atlases.NAME]` table read from a lock, or None."""
    if not isinstance(data, Mapping):
        return "is not a table"
    output, files = data.get("output"), data.get("files")
    if not isinstance(files, Mapping) or not 0 < len(files) <= MAX_FILES:
        return f"`files` must be a table of 1 to {MAX_FILES} paths"
    if output not in files:
        return "`output` must be one of `files`"
    for path, digest in files.items():
        problem = path_problem(path)
        if problem is not None:
            return f"file {printable(repr(path), 200)} {problem}"
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            return f"file {printable(path, 200)} must have a sha256 digest"
        if path == output:
            if format_for(path) is None:
                return f"`output` {printable(path, 200)} is not an image file"
        elif not path.endswith(TEXT_SUFFIXES):
            return f"file {printable(path, 200)} is not a .json or .tres file"
    return None


def asset_manifest_problem(data: object) -> str | None:
    """What is wrong with the `[assets]` table read from a lock, or None."""
    if not isinstance(data, Mapping):
        return "is not a table"
    path, digest = data.get("manifest"), data.get("digest")
    problem = path_problem(path)
    if problem is not None:
        return f"`manifest` {printable(repr(path), 200)} {problem}"
    if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
        return "`digest` must be a sha256 digest"
    return None


def from_checked(data: Mapping[str, Any]) -> AtlasRecord:
    return AtlasRecord(data["output"], dict(data["files"]))


def tables(made: Made) -> str:
    """The records as the lock writes them, before the images' tables."""
    parts = []
    if made.asset_manifest is not None:
        path, digest = made.asset_manifest
        parts.append(f"\n[assets]\nmanifest = {_string(path)}\ndigest = {_string(digest)}\n")
    parts += [table(name, made.atlases[name]) for name in sorted(made.atlases)]
    return "".join(parts)


def table(name: str, record: AtlasRecord) -> str:
    """The record as the lock writes it (before the images' tables)."""
    files = ", ".join(f"{_string(p)} = {_string(d)}" for p, d in sorted(record.files.items()))
    return f"\n[atlases.{_key(name)}]\noutput = {_string(record.output)}\nfiles = {{ {files} }}\n"


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _string(key)
