"""What the last runs left to know: which images failed and why.

`.nebula-build/failures.json` maps image names to their last error and the output
key of the spec that failed, so `status` and the gallery can show it. An image's
entry goes when it next succeeds or leaves the manifest, and counts no more once
the manifest declares the image otherwise (a check loosened, a prompt edited): it
was that spec that failed. Losing the file loses nothing but that display.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping

from nebula_build.core.spec import AssetSpec
from nebula_build.engine.apply import ApplyResult
from nebula_build.errors import SupersededError
from nebula_build.fsutil import atomic_write, read_regular
from nebula_build.state.project import Project
from nebula_build.text import printable

#: a failures file far larger than 100k images' messages is not read
_LIMIT = 64 << 20
_KEY = re.compile(r"[0-9a-f]{64}")

#: an image's last error, and the output key of the spec that failed (None: not known,
#: as in a file an earlier version wrote)
Failure = tuple[str, str | None]


def read_failures(project: Project, specs: Mapping[str, AssetSpec] | None = None) -> dict[str, str]:
    """The last failure of each image, as printable lines (the file may have come
    with a checkout); with `specs`, only those of the specs declared now."""
    return {
        name: message
        for name, (message, key) in _read(project).items()
        if specs is None or key is None or name not in specs or specs[name].output_key == key
    }


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
    failures = {name: failure for name, failure in _read(project).items() if name in specs}
    for name in result.succeeded:
        failures.pop(name, None)
    for name, error in result.failures.items():
        if not isinstance(error, SupersededError) and name not in result.kept_back:
            failures[name] = str(error), specs[name].output_key if name in specs else None
    data = {name: {"error": error, "key": key} for name, (error, key) in failures.items()}
    with contextlib.suppress(OSError):
        atomic_write(project.failures_path, json.dumps(data, indent=1).encode(), durable=False)
