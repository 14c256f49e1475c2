"""Where a project's files live: the manifest, the lock and `.nebula-build/`."""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nebula_build.errors import UserError
from nebula_build.text import escaped_value, shell_option

MANIFEST_NAME = "images.toml"
STATE_DIR = ".nebula-build"
LOCK_NAME = "images.lock"
_STATE_FOLDERS = (
    "cache",
    "cache/outputs",
    "cache/written",
    "gallery",
    "backup",
    "diffusers",
    "thumbs",
)
_STATE_FILES = (
    "journal",
    "lock",
    "lock-snapshot.json",
    "files.json",
    "files-journal",
    "specs.json",
    "failures.json",
    "noop",
    "prices.json",
    "made-with.json",
    "gallery/index.html",
)


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/nebula-build`, or `~/.cache/nebula-build` (a relative
    XDG_CACHE_HOME is ignored, as the XDG spec says)."""
    base = Path(os.environ.get("XDG_CACHE_HOME", ""))
    if not base.is_absolute():
        base = Path.home() / ".cache"
    return base / "nebula-build"


def private(path: Path) -> bool:
    """Whether `path` is this account's own and nobody else's (owner, no group or
    other bits): what a checkout can never produce (git writes 0644 and 0755)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return (
        info.st_uid == os.geteuid() and not info.st_mode & 0o077 and not stat.S_ISLNK(info.st_mode)
    )


def lock_name(manifest_name: str) -> str:
    """`images.toml` → `images.lock`, `other.toml` → `other.lock`: one lock per manifest,
    so two manifests in one folder never record (or delete) each other's images."""
    return f"{manifest_name.removesuffix('.toml')}.lock"


def _refuse_a_linked_manifest(path: Path) -> None:
    """A manifest that is a link would be read from, and have its lock and state
    written beside, wherever it points (a pull request can commit such a link)."""
    if path.is_symlink():
        raise UserError(
            f"{path.name} is a symbolic link; nebula-build reads a manifest and keeps its "
            "lock beside it, in the project: pass -f with the file it points to"
        )
    if path.name.removesuffix(".toml") in ("", ".", ".."):
        raise UserError(f"{path.name!r} is not a manifest name: call it <name>.toml")


def _a_folder(written: str, path: Path) -> str:
    """What to pass to -f instead of the folder `written` (at `path`): the manifests in it,
    as a shell takes them and escaped where a terminal would obey them (a file's name
    may hold an escape sequence or a line break)."""
    shown = written.rstrip("/" + os.sep) or written
    names = [MANIFEST_NAME] if (path / MANIFEST_NAME).is_file() else _manifests_in(path)
    if not names:
        return escaped_value(
            f"{shown} is a folder, with no .toml file in it; -f names the manifest file "
            f"({shell_option('-C', shown)} runs in that folder)"
        )
    choices = " or ".join(shell_option("-f", str(Path(shown) / name)) for name in names)
    return escaped_value(f"{shown} is a folder; -f names the manifest file: {choices}")


def _manifests_in(folder: Path, most: int = 3) -> list[str]:
    """The first `most` names, in order, of the .toml files in `folder` (one pass, no
    list of them all: a folder may hold 100,000)."""
    try:
        with os.scandir(folder) as entries:
            names = (e.name for e in entries if e.name.endswith(".toml") and _is_file(e))
            return heapq.nsmallest(most, names)
    except OSError:
        return []


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a link that loops
        return False


@dataclass(frozen=True)
class Project:
    """The paths of one project, rooted at its manifest's folder."""

    root: Path
    manifest_path: Path

    @classmethod
    def find(cls, start: Path, manifest: str | None = None) -> Project:
        """The project for `-f FILE`, or the nearest images.toml at or above `start`."""
        if manifest is not None:
            path = Path(manifest)
            path = path if path.is_absolute() else start / path
            _refuse_a_linked_manifest(path)
            if path.is_dir():
                raise UserError(_a_folder(manifest, path))
            return cls(path.parent.resolve(), path.parent.resolve() / path.name).checked()
        here = start.resolve()
        for folder in (here, *here.parents):
            candidate = folder / MANIFEST_NAME
            if candidate.is_file():
                _refuse_a_linked_manifest(candidate)
                return cls(folder, candidate).checked()
        raise UserError(
            f"no {MANIFEST_NAME} in {escaped_value(str(start))} or any folder above it; "
            "run `nebula-build init` to start a project, or pass -f FILE"
        )

    def checked(self) -> Project:
        """This project, once its state is known to be plain folders and files inside
        it: a link committed in a pull request (`.nebula-build/cache -> /home/...`)
        would send the cache, backups or the journal wherever it points, and a FIFO
        or a link to /dev/zero would hang or exhaust a read."""
        folders = [self.root / STATE_DIR]
        for part in self.state_dir.relative_to(folders[0]).parts:  # manifests/<name>
            folders.append(folders[-1] / part)
        folders += [self.state_dir / name for name in _STATE_FOLDERS]
        if self.is_default:
            folders.append(self.state_dir / "manifests")
        for folder in dict.fromkeys(folders):
            self._check_plain(folder, stat.S_ISDIR, "a folder")
        for file in (self.lock_path, *(self.state_dir / name for name in _STATE_FILES)):
            self._check_plain(file, stat.S_ISREG, "a file")
        return self

    def _check_plain(self, path: Path, is_kind: Callable[[int], bool], kind: str) -> None:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UserError(f"cannot use {path}: {exc.strerror}") from None
        if stat.S_ISLNK(mode) or not is_kind(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else f"not {kind}"
            shown = os.path.relpath(path, self.root)
            raise UserError(
                f"{shown} is {what}; nebula-build keeps its state in plain folders and "
                f"files inside the project: remove {shown} (it is rebuilt)"
            )

    @property
    def display_manifest(self) -> str:
        """The manifest path as the user would write it from the current folder."""
        try:
            return os.path.relpath(self.manifest_path)
        except ValueError:
            return str(self.manifest_path)

    @property
    def is_default(self) -> bool:
        """Whether the manifest is `images.toml`: others get a lock and state of their own."""
        return self.manifest_path.name == MANIFEST_NAME

    @property
    def lock_path(self) -> Path:
        return self.manifest_path.with_name(lock_name(self.manifest_path.name))

    @property
    def state_dir(self) -> Path:
        if self.is_default:
            return self.root / STATE_DIR
        return self.root / STATE_DIR / "manifests" / self.manifest_path.name.removesuffix(".toml")

    @property
    def own_files(self) -> tuple[str, ...]:
        """Files beside the manifest that belong to the tool: never an output."""
        names = (self.manifest_path.name, self.lock_path.name, MANIFEST_NAME, LOCK_NAME)
        return tuple(dict.fromkeys(names))

    @property
    def journal_path(self) -> Path:
        return self.state_dir / "journal"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backup"

    @property
    def lock_snapshot_path(self) -> Path:
        return self.state_dir / "lock-snapshot.json"

    @property
    def failures_path(self) -> Path:
        return self.state_dir / "failures.json"

    @property
    def gallery_dir(self) -> Path:
        return self.state_dir / "gallery"

    @property
    def spec_cache_path(self) -> Path:
        return self.state_dir / "specs.json"

    @property
    def file_index_path(self) -> Path:
        return self.state_dir / "files.json"

    @property
    def price_cache_path(self) -> Path:
        """The paid backends' price lists as last fetched, with their dates."""
        return self.state_dir / "prices.json"

    @property
    def made_with_cache_path(self) -> Path:
        """What files outside the project said of how images would be made (a local
        model's weights), keyed by those files' stat signatures (`engine.ondisk`)."""
        return self.state_dir / "made-with.json"

    @property
    def project_lock_path(self) -> Path:
        return self.state_dir / "lock"

    def path_of(self, relative: str) -> Path:
        return self.root / relative
