"""Where a project's files live: the manifest, the lock and `.nebula-build/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nebula_build.errors import UserError

MANIFEST_NAME = "images.toml"
STATE_DIR = ".nebula-build"
LOCK_NAME = "images.lock"


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
            return cls(path.parent.resolve(), path.resolve())
        here = start.resolve()
        for folder in (here, *here.parents):
            candidate = folder / MANIFEST_NAME
            if candidate.is_file():
                return cls(folder, candidate)
        raise UserError(
            f"no {MANIFEST_NAME} in {start} or any folder above it; "
            "run `nebula-build init` to start a project, or pass -f FILE"
        )

    @property
    def display_manifest(self) -> str:
        """The manifest path as the user would write it from the current folder."""
        try:
            return os.path.relpath(self.manifest_path)
        except ValueError:
            return str(self.manifest_path)

    @property
    def lock_path(self) -> Path:
        return self.manifest_path.with_name(LOCK_NAME)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

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
    def project_lock_path(self) -> Path:
        return self.state_dir / "lock"

    def path_of(self, relative: str) -> Path:
        return self.root / relative
