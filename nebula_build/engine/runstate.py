"""What the last runs left to know: which images and files failed and why.

`.nebula-build/failures.json` maps image names to their last error and the output
key of the spec that failed, so `status` and the gallery can show it. An image's
entry goes when it next succeeds or leaves the manifest, and counts no more once
the manifest declares the image otherwise (a check loosened, a prompt edited): it
was that spec that failed. A file made from the images (an atlas, the asset
manifest) is there as `file:` and its label (`file:atlas walls`), never an image's
name, with the key of what it was built from. Losing the file loses nothing but
that display.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Collection, Iterable, Mapping

from nebula_build.core.plan import FileAction
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.apply import ApplyResult
from nebula_build.engine.derived import FileOutcome
from nebula_build.errors import SupersededError
from nebula_build.fsutil import atomic_write, read_regular
from nebula_build.state.project import Project
from nebula_build.text import printable

#: a failures file far larger than 100k images' messages is not read
_LIMIT = 64 << 20
_KEY = re.compile(r"[0-9a-f]{64}")
#: what a file's entry starts with: no image's name does (no declaration's has a colon)
_FILE = "file:"

#: an image's last error, and the output key of the spec that failed (None: not known,
#: as in a file an earlier version wrote)
Failure = tuple[str, str | None]


def read_failures(project: Project, specs: Mapping[str, AssetSpec] | None = None) -> dict[str, str]:
    """The last failure of each image, as printable lines (the file may have come
    with a checkout); with `specs`, only those of the specs declared now."""
    return {
        name: message
        for name, (message, key) in _read(project).items()
        if not name.startswith(_FILE)
        and (specs is None or key is None or name not in specs or specs[name].output_key == key)
    }


def read_file_failures(project: Project, files: Iterable[FileAction]) -> dict[str, str]:
    """The last failure of each of `files` (by label) still to be built from what it
    failed to be built from: one declared or made from other images since failed no
    more."""
    found = _read(project) if any(f.is_change for f in files) else {}
    failures = {}
    for action in files:
        failure = found.get(_FILE + action.label)
        if failure is not None and action.is_change and failure[1] in (None, action.key):
            failures[action.label] = failure[0]
    return failures


def _read(project: Project) -> dict[str, Failure]:
    raw = read_regular(project.failures_path, limit=_LIMIT)
    try:
        data = json.loads(raw) if raw is not None else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    failures: dict[str, Failure] = {}
    for name, value in data.items():
        error, key = (
            (value.get("error"), value.get("key")) if isinstance(value, dict) else (value, None)
        )
        key = key if isinstance(key, str) and _KEY.fullmatch(key) else None
        failures[printable(str(name), limit=200)] = printable(str(error), limit=2000), key
    return failures


def record_failures(project: Project, result: ApplyResult, specs: Mapping[str, AssetSpec]) -> None:
    failures = {
        name: failure
        for name, failure in _read(project).items()
        if name in specs or name.startswith(_FILE)
    }
    for name in result.succeeded:
        failures.pop(name, None)
    for name, error in result.failures.items():
        if not isinstance(error, SupersededError) and name not in result.kept_back:
            failures[name] = str(error), specs[name].output_key if name in specs else None
    _write(project, failures)


def record_file_failures(
    project: Project, built: Iterable[FileOutcome], declared: Collection[str]
) -> None:
    """What the build of each file made from the images did: a failure recorded, a
    success forgetting the last. A conflict is not a failure (status says it). The
    failure of a file no longer `declared` (by label) goes: declared again, it has
    not failed."""
    found = _read(project)
    failures = {
        name: failure
        for name, failure in found.items()
        if not name.startswith(_FILE) or name[len(_FILE) :] in declared
    }
    for outcome in built:
        name = _FILE + outcome.action.label
        if outcome.ok or outcome.conflict:
            failures.pop(name, None)
        else:
            key = outcome.action.key if _KEY.fullmatch(outcome.action.key) else None
            failures[name] = outcome.error or "failed", key
    if failures != found:
        _write(project, failures)


def _write(project: Project, failures: Mapping[str, Failure]) -> None:
    data = {name: {"error": error, "key": key} for name, (error, key) in failures.items()}
    with contextlib.suppress(OSError):
        atomic_write(project.failures_path, json.dumps(data, indent=1).encode(), durable=False)
