"""Where a paid generation goes when the project's cache cannot take it (a full disk).

`~/.cache/nebula-build/rescue/` (under `XDG_CACHE_HOME` when set) is a cache of the
same layout as the project's, private to the user (mode 0700). Entries are keyed by
generation key, so any project that wants one finds it: the next apply moves the
entries its images need into the project's cache (checked against their digests,
verified again when restored) before it plans.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from pathlib import Path

from nebula_build.state.cache import CorruptEntryError, Store
from nebula_build.state.project import private, user_cache_dir


def rescue_root() -> Path:
    return user_cache_dir() / "rescue"


def rescue(
    key: str,
    data: bytes,
    *,
    seed: int | None,
    digest: str,
    made_with: Mapping[str, str] | None = None,
) -> Path:
    """Keep a generation outside the project; returns the folder it went to. Raises
    OSError if that fails too."""
    root = rescue_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not private(root):
        raise OSError(f"{root} is not private to this account")
    Store(root).put(key, data, seed=seed, digest=digest, made_with=made_with)
    return root


def adopt(store: Store, keys: Collection[str]) -> int:
    """Move the rescued entries for `keys` into `store`; returns how many. Anything odd
    (a corrupt entry, still no room) leaves the entry where it is, for a later run."""
    root = rescue_root()
    if not root.exists() or not private(root):  # only what this account kept here
        return 0
    rescued = Store(root)
    wanted = set(keys)
    moved = 0
    for key in list(rescued.keys()):
        if key not in wanted:
            continue
        with contextlib.suppress(OSError, CorruptEntryError):
            entry = rescued.get(key)
            if entry is None or entry.digest is None:
                continue
            if not store.has(key):
                store.put(
                    key,
                    entry.data,
                    seed=entry.seed,
                    digest=entry.digest,
                    made_with=entry.made_with,
                )
            rescued.remove(key)
            moved += 1
    return moved
