"""Small filesystem helpers: digests, atomic writes, leftover temp files."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

TEMP_MARKER = ".nebula-tmp-"
_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part.

    The temp file lives in the same folder (same filesystem, so the rename is
    atomic) and carries TEMP_MARKER, so a run killed mid-write leaves something
    `remove_temp_files` recognises.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(4)}")
    try:
        with temp.open("xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_temp_files(folders: Iterable[Path]) -> int:
    """Delete temp files a killed run left in `folders`; returns how many."""
    removed = 0
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if TEMP_MARKER in name and name.startswith("."):
                (folder / name).unlink(missing_ok=True)
                removed += 1
    return removed


def is_within(path: Path, root: Path) -> bool:
    """Whether `path`, with symlinks followed, stays inside `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def backup(root: Path, backup_root: Path, relative: str) -> None:
    """Copy `root/relative` under `backup_root/<timestamp>/relative`, if it exists."""
    import shutil
    import time

    source = root / relative
    if source.is_file():
        target = backup_root / time.strftime("%Y%m%dT%H%M%S") / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
