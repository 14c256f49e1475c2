"""What the last runs left to know: which images failed and why.

`.nebula-build/failures.json` maps image names to their last error, so the
gallery can show it. An image's entry goes when it next succeeds or leaves
the manifest. Losing the file loses nothing but that display.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

from nebula_build.core.spec import AssetSpec
from nebula_build.engine.apply import ApplyResult
from nebula_build.errors import SupersededError
from nebula_build.fsutil import atomic_write, read_regular
from nebula_build.state.project import Project
from nebula_build.text import printable

#: a failures file far larger than 100k images' messages is not read
_LIMIT = 64 << 20


def read_failures(project: Project) -> dict[str, str]:
    """The last failure of each image, as printable lines (the file may have come
    with a checkout)."""
    raw = read_regular(project.failures_path, limit=_LIMIT)
    try:
        data = json.loads(raw) if raw is not None else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {printable(str(k), limit=200): printable(str(v), limit=2000) for k, v in data.items()}


def record_failures(project: Project, result: ApplyResult, specs: Mapping[str, AssetSpec]) -> None:
    failures = {name: message for name, message in read_failures(project).items() if name in specs}
    for name in result.succeeded:
        failures.pop(name, None)
    for name, error in result.failures.items():
        if not isinstance(error, SupersededError):
            failures[name] = str(error)
    with contextlib.suppress(OSError):
        atomic_write(project.failures_path, json.dumps(failures, indent=1).encode(), durable=False)
