"""What git is in the middle of in the checkout that holds the project: a merge (or a
rebase, cherry-pick or revert) whose conflicts `git add` marks resolved, or nothing, as
on a CI runner's checkout of a commit that holds conflict markers. Read from the files
git keeps while one is under way, as `git status` does: no git to run.
"""

from __future__ import annotations

from pathlib import Path

#: the file or folder git keeps in its own folder while an operation is under way
_UNDER_WAY = (
    ("MERGE_HEAD", "merge"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
)
#: "gitdir: <path>": the `.git` file of a linked worktree or a submodule
_GITDIR = "gitdir:"


def git_folder(start: Path) -> Path | None:
    """The git folder of the checkout that holds `start`; None outside any."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        try:
            if dot_git.is_dir():
                return dot_git
            if dot_git.is_file():
                text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
                if not text.startswith(_GITDIR):
                    return None
                return folder / text.removeprefix(_GITDIR).strip()
        except OSError:  # unreadable: as if no checkout held it
            return None
    return None


def under_way(git: Path) -> str | None:
    """The operation under way in the checkout whose git folder is `git` ("merge",
    "rebase", "cherry-pick", "revert"), or None."""
    return next((name for kept, name in _UNDER_WAY if (git / kept).exists()), None)


#: an index larger than this is not read for its unmerged paths (100k files: ~10 MiB)
_INDEX_LIMIT = 64 << 20
#: the longest path an index entry may have here (git's own limit is the system's)
_LONGEST_PATH = 4096
#: more unmerged paths than this: the index is not read for them
_MOST_UNMERGED = 10_000


def unmerged(root: Path) -> list[str] | None:
    """The paths under `root` that the index of the checkout holding it marks unmerged
    (those `git status` lists as such, which `git add` settles), relative to `root`,
    in the index's order; None where it cannot be read (no checkout, another index
    format)."""
    top = next((f for f in (root, *root.parents) if (f / ".git").exists()), None)
    git = git_folder(root)
    if top is None or git is None:
        return None
    try:
        with (git / "index").open("rb") as handle:
            data = handle.read(_INDEX_LIMIT + 1)
        paths = _unmerged_paths(data) if len(data) <= _INDEX_LIMIT else None
        prefix = root.resolve().relative_to(top.resolve()).as_posix()
    except (OSError, ValueError):
        return None
    if paths is None:
        return None
    prefix = "" if prefix == "." else prefix + "/"
    return [path.removeprefix(prefix) for path in paths if path.startswith(prefix)]


def _unmerged_paths(data: bytes) -> list[str] | None:
    """The paths of the entries at a stage other than 0 in a git index (versions 2 to
    4, SHA-1 object names), each once; None for what is not such an index."""
    import struct

    if data[:4] != b"DIRC" or len(data) < 12:
        return None
    version, count = struct.unpack_from(">II", data, 4)
    if version not in (2, 3, 4):
        return None
    found: dict[str, None] = {}
    at, previous = 12, b""
    try:
        for _ in range(count):
            start = at
            (flags,) = struct.unpack_from(">H", data, at + 60)
            at += 62
            if version >= 3 and flags & 0x4000:  # extended flags follow
                at += 2
            if version == 4:  # the path: how much of the last to drop, then the rest
                byte = data[at]
                at += 1
                drop = byte & 0x7F
                while byte & 0x80:
                    byte = data[at]
                    at += 1
                    drop = ((drop + 1) << 7) | (byte & 0x7F)
                    if drop > len(previous):  # never more than the path before had
                        return None
                end = data.find(b"\0", at, at + _LONGEST_PATH + 1)
                if end < 0 or drop > len(previous):
                    return None
                path = previous[: len(previous) - drop] + data[at:end]
                at = end + 1
            else:
                end = data.find(b"\0", at, at + _LONGEST_PATH + 1)
                if end < 0:
                    return None
                path = data[at:end]
                at = start + ((end - start + 8) & ~7)  # NUL-padded to a multiple of 8
            if len(path) > _LONGEST_PATH:
                return None
            previous = path
            if (flags >> 12) & 3:
                found[path.decode("utf-8", "surrogateescape")] = None
                if len(found) > _MOST_UNMERGED:
                    return None
    except (IndexError, ValueError, struct.error):
        return None
    return list(found)
