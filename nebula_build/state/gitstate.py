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
