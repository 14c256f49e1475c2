"""Resolved specs cached between runs, so an unchanged manifest is not parsed again.

Parsing 10k images with tomllib and validating them costs ~0.4 s; reading
this cache costs ~30 ms. An entry is keyed by the manifest's exact bytes, the
nebula-build version, the backend override and every installed backend (name,
distribution, and the size and time of the files its code is in: a plugin edited
in place keeps its version), and is used only while every input file it depends
on still has the digest it had. It is sealed (`state.seal`): a cache that came with
a checkout, which could carry specs no validation ever saw, is a miss. Anything
unexpected is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any

from nebula_build.core.resolve import Resolved
from nebula_build.core.spec import AssetSpec, AtlasSpec
from nebula_build.engine.codeversion import code_version
from nebula_build.fsutil import atomic_stream, read_regular
from nebula_build.plugin.manager import BackendRegistry
from nebula_build.state.project import Project
from nebula_build.state.seal import sealed_from, sealer

#: raised whenever what resolve checks or records changes: a cache from before is a miss
CACHE_FORMAT = 12
#: far larger than 100k images' specs: not ours
_LIMIT = 1 << 30
_SPEC_FIELDS = tuple(f.name for f in fields(AssetSpec))
_ATLAS_FIELDS = tuple(f.name for f in fields(AtlasSpec))
#: text columns most images share a value of: each value is kept once when loading
_SHARED_COLUMNS = tuple(
    _SPEC_FIELDS.index(name)
    for name in (
        "backend",
        "model",
        "format",
        "negative_prompt",
        "fit",
        "resample",
        "variant_pattern",
    )
)


def cache_key(manifest: bytes, registry: BackendRegistry, backend_override: str | None) -> str:
    backends = registry.fingerprint()  # a plugin edited in place, its version kept, too
    # The field names are in the key: rows are stored by position, so a change to
    # AssetSpec must never decode old rows into the wrong fields.
    context = json.dumps(
        [CACHE_FORMAT, code_version(), _SPEC_FIELDS, _ATLAS_FIELDS, backend_override, backends]
    )
    return hashlib.sha256(context.encode() + b"\0" + manifest).hexdigest()


def load(
    project: Project,
    key: str,
    registry: BackendRegistry,
    digest_of: Callable[[str], str | None],
    matching: Callable[[str, str], list[str]],
) -> Resolved | None:
    """The cached resolution for `key`, if it is still valid: every input and data
    file has the digest it had, and every folder of posts holds the files it held."""
    raw = read_regular(project.spec_cache_path, limit=_LIMIT)
    start = sealed_from(raw) if raw is not None else None
    if raw is None or start is None:
        return None
    try:
        head_end = raw.index(b"\n", start)
        data = json.loads(raw[start:head_end])
        if data["key"] != key:
            return None
        if any(digest_of(path) != digest for path, digest in data["inputs"].items()):
            return None
        globs = [(folder, pattern, tuple(files)) for folder, pattern, files in data["globs"]]
        if any(matching(folder, pattern) != list(files) for folder, pattern, files in globs):
            return None
        plugins = {name: registry.get(name) for name in data["settings"]}
        settings = {
            name: plugins[name].parse_settings(raw) for name, raw in data["settings"].items()
        }
        specs = _specs(raw, head_end + 1)
        assets = data["assets"]
        atlases = {row[0]: AtlasSpec(*row) for row in data["atlases"]}
        remote = data["remote"]
        if remote is not None and not isinstance(remote, str):
            return None
        data_files = tuple(str(path) for path in data["data"])
        row_bases = tuple(str(base) for base in data["row_bases"])
    except (OSError, ValueError, KeyError, TypeError, LookupError, RecursionError):
        return None
    except Exception:  # a plugin's settings model changed shape: just resolve again
        return None
    return Resolved(
        specs, settings, plugins, assets, atlases, remote, data_files, tuple(globs), row_bases
    )


def _specs(raw: bytes, start: int) -> dict[str, AssetSpec]:
    """The specs stored from `start` on, a line of rows at a time (the whole file as
    one JSON tree would be several times the specs' own size). The values most images
    share (backend, model, format, ...) are kept once, as they are after resolving."""
    specs: dict[str, AssetSpec] = {}
    shared: dict[str, str] = {}
    while start < len(raw):
        end = raw.index(b"\n", start)
        for row in json.loads(raw[start:end]):
            for index in _SHARED_COLUMNS:
                if type(value := row[index]) is str:  # never 1 for True, or 1.0 for 1
                    row[index] = shared.setdefault(value, value)
            specs[row[0]] = AssetSpec(*row)
        start = end + 1
    return specs


def save(project: Project, key: str, resolved: Resolved, inputs: Mapping[str, str]) -> None:
    """Cache a resolution; one whose settings a plugin cannot write as JSON is simply
    not cached (the cache only saves time).

    Written in batches of rows, never as one string: at 100k images the file is ~45 MB,
    and its text, its bytes and the sealed copy together used to be the plan's peak."""
    mac = sealer()
    if mac is None:
        return
    try:
        head = json.dumps(_head(key, resolved, inputs))
    except (ValueError, TypeError):
        return
    try:
        with atomic_stream(project.spec_cache_path, durable=False) as handle:
            handle.write(_UNSEALED)
            for piece in _pieces(head, resolved):
                mac.update(piece)
                handle.write(piece)
            handle.seek(0)
            handle.write(mac.hexdigest().encode())
    except (OSError, ValueError, TypeError):
        return


#: where the seal goes once the data has been written (seal.unseal reads a hex line)
_UNSEALED = b"0" * 64 + b"\n"
_ROWS_PER_LINE = 1000


def _pieces(head: str, resolved: Resolved) -> Iterator[bytes]:
    """The cache's text in pieces: `head` on a line, then the specs' rows, a JSON array
    of up to _ROWS_PER_LINE of them on each line."""
    yield head.encode() + b"\n"
    specs = iter(resolved.specs.values())
    while batch := list(itertools.islice(specs, _ROWS_PER_LINE)):
        rows = [[getattr(spec, name) for name in _SPEC_FIELDS] for spec in batch]
        yield json.dumps(rows).encode() + b"\n"


def _head(key: str, resolved: Resolved, inputs: Mapping[str, str]) -> dict[str, Any]:
    return {
        "key": key,
        "inputs": dict(inputs),
        "settings": {name: s.model_dump(mode="json") for name, s in resolved.settings.items()},
        "assets": resolved.asset_manifest,
        "remote": resolved.cache_remote,
        "data": list(resolved.data_files),
        "globs": [[folder, pattern, list(files)] for folder, pattern, files in resolved.data_globs],
        "row_bases": list(resolved.row_bases),
        "atlases": [
            [getattr(atlas, name) for name in _ATLAS_FIELDS] for atlas in resolved.atlases.values()
        ],
    }
