"""nebula-build: generated images as declared infrastructure.

Backend authors import from `nebula_build.plugin`, the documented contract; its
names, and the errors the tool raises, are also exported here. They load on
first use, so that `import nebula_build` (every command does it) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

__all__ = [
    "ApplyError",
    "Backend",
    "BackendError",
    "BackendSettings",
    "ConflictError",
    "CredentialsError",
    "DependencyCycleError",
    "GenerationRequest",
    "GenerationResult",
    "LocalSetupError",
    "LockfileError",
    "ManifestError",
    "ModelSupport",
    "NebulaBuildError",
    "OutOfCreditsError",
    "PluginError",
    "ProjectLockedError",
    "RequestRejectedError",
    "TransientBackendError",
    "UnknownBackendError",
    "UserError",
    "WeightsNotFoundError",
    "__version__",
    "hookimpl",
]
#: the plugin contract's names come from its module; the rest are the tool's errors
_PLUGIN_NAMES = frozenset(
    {
        "Backend",
        "BackendSettings",
        "GenerationRequest",
        "GenerationResult",
        "ModelSupport",
        "hookimpl",
    }
)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'nebula_build' has no attribute {name!r}")
    home = "nebula_build.plugin" if name in _PLUGIN_NAMES else "nebula_build.errors"
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from nebula_build.errors import (
        ApplyError,
        ConflictError,
        DependencyCycleError,
        LockfileError,
        ManifestError,
        NebulaBuildError,
        PluginError,
        ProjectLockedError,
        UnknownBackendError,
        UserError,
    )
    from nebula_build.plugin import (
        Backend,
        BackendError,
        BackendSettings,
        CredentialsError,
        GenerationRequest,
        GenerationResult,
        LocalSetupError,
        ModelSupport,
        OutOfCreditsError,
        RequestRejectedError,
        TransientBackendError,
        WeightsNotFoundError,
        hookimpl,
    )
