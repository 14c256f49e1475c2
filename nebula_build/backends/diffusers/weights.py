"""Finding a model's weights on disk, and what they will cost in memory.

Standard library only: preflight and `plan` use it without importing torch.
Weights come from a folder the project names, or from the Hugging Face cache;
nothing here downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nebula_build.errors import first_line
from nebula_build.plugin import LocalSetupError, OnDisk, WeightsNotFoundError

MODEL_INDEX = "model_index.json"
_VARIANT = re.compile(r"\.(fp16|bf16)(-\d+-of-\d+)?\.safetensors$")
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2}
_SAMPLES = 8
_SMALL_JSON = 1 << 20
#: keys that record who saved a config and where, not what the model is
_PROVENANCE_KEYS = frozenset(
    {"_name_or_path", "name_or_path", "_commit_hash", "_diffusers_version", "transformers_version"}
)
_SAMPLE_BYTES = 1 << 16
#: what `hf_hub_cache` reads (HOME through Path.home), and a configured "~/…" path
HF_VARIABLES = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME")
#: a model folder holds a few dozen files; a folder with more is not one (a manifest
#: from a pull request may name any folder: `plan` must not walk a whole disk)
MAX_FOLDER_ENTRIES = 2000
#: safetensors' own limit on a file's JSON header (its MAX_HEADER_SIZE)
MAX_HEADER_BYTES = 100_000_000
#: a weight tensor has a few dimensions; a header listing thousands is not a model's
_MAX_DIMENSIONS = 16


class NotAModelFolderError(ValueError):
    """A model folder holds something no saved pipeline holds (one line, no model id)."""


@dataclass(frozen=True, slots=True)
class WeightsLocation:
    """Where one model's diffusers folder (the one holding model_index.json) is."""

    model_id: str
    path: Path
    origin: str  # "configured" | "Hugging Face cache" | "downloaded"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, found the way huggingface_hub finds it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def cached_snapshot(model_id: str, cache: Path) -> Path | None:
    """The cached snapshot of `model_id` that `main` points at, else the newest
    complete one; None when the cache has none."""
    repo = cache / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if (snapshot / MODEL_INDEX).is_file():
            return snapshot
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    complete = [p for p in snapshots.iterdir() if (p / MODEL_INDEX).is_file()]
    return max(complete, key=lambda p: p.stat().st_mtime, default=None)


def identity(folder: Path) -> str:
    """The weights' identity for the lock: the snapshot's revision in the Hugging Face
    cache (its folder name is the commit), else a fingerprint of the folder's files."""
    if folder.parent.name == "snapshots":
        return f"hf:{folder.name}"
    return f"files:{fingerprint(folder)[:16]}"


def on_disk(model_id: str, configured: str | None, root: Path) -> OnDisk:
    """The identity `identity` would give the weights `locate` finds, for `plan`: the
    paths it depends on, and how to compute it (None where the weights are not on
    disk). A configured folder's fingerprint reads sampled bytes of every file; the
    engine keeps it while their signatures hold."""
    if configured is None:
        cache = hf_hub_cache()
        return OnDisk(
            tuple(map(str, snapshot_paths(model_id, cache))),
            lambda: _cached_identity(model_id, cache),
            HF_VARIABLES,
        )
    folder = configured_path(configured, root)
    listed = _listing(folder) if folder.parent.name != "snapshots" else []
    paths = [folder / MODEL_INDEX, *(listed or [folder])]
    return OnDisk(tuple(map(str, paths)), lambda: _folder_identity(folder), HF_VARIABLES)


def snapshot_paths(model_id: str, cache: Path) -> list[Path]:
    """Every path `cached_snapshot` looks at, found or not: a change to any of them
    may change its answer."""
    repo = cache / ("models--" + model_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    paths = [ref]
    if ref.is_file():
        paths.append(repo / "snapshots" / ref.read_text().strip() / MODEL_INDEX)
        if paths[-1].is_file():
            return paths
    snapshots = repo / "snapshots"
    paths.append(snapshots)
    if snapshots.is_dir():
        for snapshot in sorted(snapshots.iterdir()):
            paths += [snapshot, snapshot / MODEL_INDEX]
    return paths


def _cached_identity(model_id: str, cache: Path) -> str | None:
    snapshot = cached_snapshot(model_id, cache)
    return None if snapshot is None else identity(snapshot)


def _folder_identity(folder: Path) -> str | None:
    if not (folder / MODEL_INDEX).is_file():
        return None
    try:
        return identity(folder)
    except NotAModelFolderError as exc:
        # more entries than a model has: not walked, so nothing here can say that a
        # change under it leaves the identity alone (the no-op snapshot is left out)
        raise OSError(str(exc)) from None


def _listing(folder: Path) -> list[Path] | None:
    """The folder and everything `fingerprint` walks in it, or None where there is
    no model there (no model_index.json, or more entries than a model has)."""
    if not (folder / MODEL_INDEX).is_file():
        return None
    try:
        return [folder, *_walk(folder)]
    except NotAModelFolderError:
        return None


def _walk(folder: Path) -> list[Path]:
    """Everything under `folder` (links to folders are not followed below it), at most
    MAX_FOLDER_ENTRIES: a component folder linked to / would be the whole disk."""
    found = []
    for path in folder.rglob("*"):
        found.append(path)
        if len(found) > MAX_FOLDER_ENTRIES:
            raise NotAModelFolderError(
                f"{folder} holds more than {MAX_FOLDER_ENTRIES:,} entries: no model's folder does"
            )
    return found


def configured_path(value: str, root: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _looked_at(path: Path) -> Path:
    """`path`, once a look at it raised nothing but "not there": a name too long, a
    file where a folder should be, a NUL (which pathlib's checks take for a path that
    is not there) raise here."""
    with contextlib.suppress(FileNotFoundError):
        path.stat()
    return path


def unreadable(exc: OSError | ValueError | RuntimeError) -> str:
    """Why a path the settings give cannot be looked at, in a few words."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, RuntimeError):  # pathlib's expanduser
        return "its ~user names no user here"
    return first_line(exc)


def _clipped(value: str) -> str:
    return value if len(value) <= 80 else value[:60] + "…" + value[-15:]


def compile_cache_path(value: str, root: Path) -> Path:
    """Where compiled kernels live. Torch loads them as code, so never inside the
    project nor the git checkout that holds it (a manifest in a folder of the
    repository), where a pull request could commit a cache of its own."""
    if not value:
        base = Path(os.environ.get("XDG_CACHE_HOME", ""))
        if not base.is_absolute():
            base = Path.home() / ".cache"
        return base / "nebula-build" / "inductor"
    try:
        path = _looked_at(configured_path(value, root).resolve())
    except (OSError, ValueError, RuntimeError) as exc:
        raise LocalSetupError(
            f"[backends.diffusers] compile_cache = {_clipped(value)!r} cannot be used "
            f"({unreadable(exc)}); leave it unset for ~/.cache/nebula-build/inductor",
            backend="diffusers",
        ) from None
    project = root.resolve()
    checkout = next((p for p in (project, *project.parents) if (p / ".git").exists()), project)
    if path.is_relative_to(checkout):  # the project, or the repository it is a folder of
        inside = path.is_relative_to(project)
        where = "the project" if inside else f"the checkout that holds the project ({checkout})"
        raise LocalSetupError(
            f"[backends.diffusers] compile_cache = {_clipped(value)!r} is inside {where}: compiled "
            "kernels are code, so they are kept outside it (leave compile_cache unset for "
            "~/.cache/nebula-build/inductor)",
            backend="diffusers",
        )
    return path


def locate(model_id: str, configured: str | None, root: Path) -> WeightsLocation:
    """The folder to load `model_id` from, or a WeightsNotFoundError saying where
    it looked and how to provide the weights."""
    if configured is not None:
        try:
            path = _looked_at(configured_path(configured, root))
            if (path / MODEL_INDEX).is_file():
                return WeightsLocation(model_id, path, "configured")
            shown = str(path)
            problem = "does not exist" if not path.exists() else f"has no {MODEL_INDEX}"
        except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL, ~nosuchuser
            shown, problem = repr(_clipped(configured)), f"cannot be read ({unreadable(exc)})"
        raise WeightsNotFoundError(
            f"model {model_id!r}: the folder [backends.diffusers] models gives, {shown}, "
            f"{problem}; point it at a diffusers folder (one with {MODEL_INDEX}, e.g. from "
            f"`hf download {model_id}` or pipeline.save_pretrained())",
            backend="diffusers",
        )
    cache = hf_hub_cache()
    snapshot = cached_snapshot(model_id, cache)
    if snapshot is not None:
        return WeightsLocation(model_id, snapshot, "Hugging Face cache")
    raise WeightsNotFoundError(missing_message(model_id, cache), backend="diffusers")


def missing_message(model_id: str, cache: Path) -> str:
    return (
        f"model {model_id!r} is not on disk: looked in the Hugging Face cache at {cache} "
        "(set HF_HOME or HF_HUB_CACHE to use another) and found no "
        f"models--{model_id.replace('/', '--')} snapshot with {MODEL_INDEX}. "
        f"Download it once with `hf download {model_id}`, or set [backends.diffusers] "
        f'models = {{ "{model_id}" = "/path/to/folder" }}, or allow_download = true '
        "to let apply fetch it"
    )


def read_model_index(location: WeightsLocation) -> dict[str, Any]:
    path = location.path / MODEL_INDEX
    try:
        index = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise WeightsNotFoundError(
            f"model {location.model_id!r}: cannot read {path}: {exc}", backend="diffusers"
        ) from None
    if not isinstance(index, dict):
        raise WeightsNotFoundError(
            f"model {location.model_id!r}: {path} is not a JSON object", backend="diffusers"
        )
    return index


def component_names(index: dict[str, Any]) -> list[str]:
    """The pipeline's components (unet, vae, tokenizer…) that have a folder."""
    return [
        name
        for name, value in index.items()
        if not name.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and value[0] is not None
    ]


def _safetensors(folder: Path) -> dict[Path, str | None]:
    """The safetensors files in `folder`, each with its variant ("fp16", "bf16" or
    None for full precision)."""
    if not folder.is_dir():
        return {}
    return {
        p: m.group(1) if (m := _VARIANT.search(p.name)) else None
        for p in sorted(folder.iterdir())
        if p.name.endswith(".safetensors")
    }


def weight_files(folder: Path, variant: str | None) -> list[Path]:
    """The files diffusers would load from `folder` for `variant`: that variant's,
    else the full-precision ones, else the .bin files."""
    files = _safetensors(folder)
    chosen = [p for p, v in files.items() if v == variant]
    chosen = chosen or [p for p, v in files.items() if v is None]
    return chosen or sorted(folder.glob("*.bin"))


def variant_of(folder: Path, *, half: bool) -> str | None:
    """The weight variant to load from `folder`: "fp16" where there are fp16 files
    and the model runs in half precision (half the bytes to read) or where they are
    the only ones; else None, the full-precision files."""
    variants = set(_safetensors(folder).values())
    if "fp16" in variants and (half or None not in variants):
        return "fp16"
    if not variants or None in variants:
        return None
    return sorted(v for v in variants if v)[0]


def estimated_bytes(folder: Path, variant: str | None, itemsize: int) -> int:
    """Memory the weights in `folder` take once loaded with floating-point tensors of
    `itemsize` bytes: read from the safetensors headers, no tensor data."""
    total = 0
    for path in weight_files(folder, variant):
        if path.suffix != ".safetensors":
            total += path.stat().st_size
            continue
        for dtype, shape in _tensors(path):
            floating = dtype.startswith(("F", "BF"))
            total += math.prod(shape) * (itemsize if floating else _ITEMSIZE.get(dtype, 1))
    return total


def _tensors(path: Path) -> list[tuple[str, list[int]]]:
    """(dtype, shape) of each tensor a safetensors file's header lists; the header's
    length (its first 8 bytes) is checked against the file before anything is read."""
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
        if length is None or length > min(size - 8, MAX_HEADER_BYTES):
            raise NotAModelFolderError(
                f"{path} is not a safetensors file (its header length is not within the "
                f"file and {MAX_HEADER_BYTES:,} bytes)"
            )
        raw = file.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise NotAModelFolderError(
            f"{path} is not a safetensors file (its header is no JSON object)"
        )
    tensors = []
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        dtype = tensor.get("dtype") if isinstance(tensor, dict) else None
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list)
            and len(shape) <= _MAX_DIMENSIONS
            and all(type(dim) is int and dim >= 0 for dim in shape)
        ):
            raise NotAModelFolderError(
                f"{path} is not a safetensors file (a tensor in its header has no valid "
                "dtype and shape)"
            )
        tensors.append((dtype, shape))
    return tensors


def fingerprint(folder: Path) -> str:
    """Identifies a component's files by content without reading them whole: blob
    names in the Hugging Face cache (content hashes), else sizes and sampled bytes;
    JSON configs by their settings, not by the paths and versions that saved them.
    Equal fingerprints mean one loaded copy can serve both pipelines."""
    digest = hashlib.sha256()
    for path in sorted(p for p in _walk(folder) if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        if path.suffix == ".json" and 0 < path.stat().st_size < _SMALL_JSON:
            digest.update(_settings_digest(path))
        elif path.is_symlink() and path.resolve().parent.name == "blobs":
            digest.update(path.resolve().name.encode())
        else:
            digest.update(_sampled_digest(path))
    return digest.hexdigest()


def _settings_digest(path: Path) -> bytes:
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        return _sampled_digest(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _PROVENANCE_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()


def _sampled_digest(path: Path) -> bytes:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    if not size:  # nothing to read in a real file (a /proc one says 0 and may block)
        return digest.digest()
    with path.open("rb") as file:
        if size <= _SAMPLES * _SAMPLE_BYTES * 2:
            digest.update(file.read(_SAMPLES * _SAMPLE_BYTES * 2))
        else:
            for index in range(_SAMPLES + 1):
                file.seek((size - _SAMPLE_BYTES) * index // _SAMPLES)
                digest.update(file.read(_SAMPLE_BYTES))
    return digest.digest()
