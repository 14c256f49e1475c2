"""Seals on the caches the tool writes for itself (resolved specs, the lock snapshot).

Such a cache lets a command skip validation, so one that arrived with a checkout
(committed under `.nebula-build/`, or crafted in a pull request) must not be
believed. Each is sealed with an HMAC under a key private to the user
(`~/.cache/nebula-build/state.key`, under `XDG_CACHE_HOME` when set, mode 0600):
a cache that was not written on this account fails the seal and is simply a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from functools import cache
from pathlib import Path

from nebula_build.state.project import private, user_cache_dir

_KEY_BYTES = 32


def key_path() -> Path:
    return user_cache_dir() / "state.key"


_loading = threading.Lock()


@cache
def _key(path: Path) -> bytes | None:
    """This account's key (made on first use); None where none can be kept. A key
    file that is not private to this account (one that came with a checkout, where
    XDG_CACHE_HOME lies inside the project) is never used: nothing is sealed then.

    Threads and processes that ask first at once all get the one key: it is written
    whole under another name and linked into place, so nobody reads it half-written."""
    with _loading:
        return _read(path) or _made(path)


def _read(path: Path) -> bytes | None:
    with contextlib.suppress(OSError):
        flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags), "rb") as handle:
            data = handle.read(_KEY_BYTES + 1)
        if len(data) == _KEY_BYTES and private(path):
            return data
    return None


def _made(path: Path) -> bytes | None:
    """A new key linked into place at `path`, or the one another process put there
    first (even since this one last looked); None where there is a file at `path`
    that is not a key of ours."""
    if path.exists() or path.is_symlink():
        return _read(path)
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fresh = secrets.token_bytes(_KEY_BYTES)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with os.fdopen(os.open(staged, flags, 0o600), "wb") as handle:
            handle.write(fresh)
        try:
            os.link(staged, path)
        except FileExistsError:
            return _read(path)
        except OSError:  # a file system without links: claimed by the name, as before
            return _claimed_by_name(path, fresh)
        finally:
            staged.unlink()
        return fresh
    return None


def _claimed_by_name(path: Path, fresh: bytes) -> bytes | None:
    """`fresh` written at `path` if nobody has claimed it yet, else the key there; the
    claim and the write are two steps here, so a reader may find it short a moment."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
            handle.write(fresh)
        return fresh
    except FileExistsError:
        for _ in range(20):
            if (key := _read(path)) is not None:
                return key
            time.sleep(0.005)
        return None


def seal(data: bytes) -> bytes | None:
    """`data` with its seal in front (one line), or None where no key can be kept."""
    key = _key(key_path())
    if key is None:
        return None
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode() + b"\n" + data


def sealer() -> hmac.HMAC | None:
    """For data too big to hold at once: feed it the data with `update`, and put its
    `hexdigest()` and a newline in front, as `seal` does; None where no key can be kept."""
    key = _key(key_path())
    return None if key is None else hmac.new(key, digestmod=hashlib.sha256)


def tag(data: bytes) -> str | None:
    """A short seal of `data` to store beside it, or None where no key can be kept."""
    key = _key(key_path())
    return None if key is None else hmac.new(key, data, hashlib.sha256).hexdigest()


def tagged(data: bytes, mac: object) -> bool:
    """Whether `mac` is this account's `tag` of `data`."""
    expected = tag(data)
    return expected is not None and isinstance(mac, str) and hmac.compare_digest(mac, expected)


def sealed_from(sealed: bytes) -> int | None:
    """Where the data under a seal made on this account starts in `sealed` (after the
    seal's line); None for anything else. `unseal` without copying the data."""
    key = _key(key_path())
    newline = sealed.find(b"\n")
    if key is None or newline < 0:
        return None
    expected = hmac.new(key, memoryview(sealed)[newline + 1 :], hashlib.sha256).hexdigest()
    return newline + 1 if hmac.compare_digest(sealed[:newline], expected.encode()) else None


def unseal(sealed: bytes) -> bytes | None:
    """The data under a seal made on this account; None for anything else."""
    key = _key(key_path())
    mac, newline, data = sealed.partition(b"\n")
    if key is None or not newline:
        return None
    expected = hmac.new(key, data, hashlib.sha256).hexdigest().encode()
    return data if hmac.compare_digest(mac, expected) else None
