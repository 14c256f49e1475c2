"""nebula-build: generated images as declared infrastructure.

The public API below is what backend plugins import.
"""

from nebula_build.errors import (
    ApplyError,
    BackendError,
    ConflictError,
    CredentialsError,
    DependencyCycleError,
    LocalSetupError,
    LockfileError,
    ManifestError,
    NebulaBuildError,
    PluginError,
    ProjectLockedError,
    RequestRejectedError,
    TransientBackendError,
    UnknownBackendError,
    UserError,
    WeightsNotFoundError,
)
from nebula_build.plugin.backend import (
    Backend,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
)
from nebula_build.plugin.catalog import ModelSupport
from nebula_build.plugin.hookspecs import hookimpl

__version__ = "0.1.0"

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
