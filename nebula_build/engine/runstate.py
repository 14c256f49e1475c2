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
from nebula_build.fsutil import atomic_write
from nebula_build.state.project import Project


def read_failures(project: Project) -> dict[str, str]:
    try:
        data = json.loads(project.failures_path.read_bytes())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_failures(project: Project, result: ApplyResult, specs: Mapping[str, AssetSpec]) -> None:
    failures = {name: message for name, message in read_failures(project).items() if name in specs}
    for outcome in result.outcomes:
        if outcome.ok:
            failures.pop(outcome.image, None)
        elif not isinstance(outcome.error, SupersededError):
            failures[outcome.image] = str(outcome.error)
    with contextlib.suppress(OSError):
        atomic_write(project.failures_path, json.dumps(failures, indent=1).encode(), durable=False)
