"""The plugin contract: everything a backend author imports, from this one module.

A backend turns one `GenerationRequest` into one encoded image. A package
provides backends through the `nebula_build` entry-point group::

    # pyproject.toml
    [project.entry-points.nebula_build]
    mybackend = "mypackage.plugin"

    # mypackage/plugin.py
    from nebula_build.plugin import Backend, GenerationResult, ModelSupport, hookimpl

    class MyBackend(Backend):
        name = "mybackend"

        @classmethod
        def models(cls, settings):
            return {"my/model": ModelSupport("my/model", frozenset({"seed"}))}

        async def generate(self, request):
            return GenerationResult(data=render_png(request), seed=request.seed)

    @hookimpl
    def nebula_build_register_backends():
        return [MyBackend]

What is here:

- `hookimpl` and the hook, `nebula_build_register_backends` (see `hookspecs`).
- `Backend`, `BackendSettings`: the class to subclass and its settings model. The
  order the engine calls a backend in, and what it receives before opening (its
  validated settings, the project root, a `preflight` call), is in `Backend`'s
  module, `nebula_build.plugin.backend`.
- `GenerationRequest`, `GenerationResult`, and the progress callbacks a request
  carries (`StepCallback`, `ActivityCallback`, `HeldCallback`); `OnDisk`, what files outside the
  project say of how an image would be made (`Backend.made_with_on_disk`).
- `ModelSupport`: what a backend declares per model. `nebula_models()` and the
  model ids are the hosted Nebula API's table, for backends that mirror it.
- The errors a backend raises: `BackendError` and its kinds. `CredentialsError`
  (and `AccessDeniedError`, a key known but not allowed the request),
  `OutOfCreditsError` and `LocalSetupError` stop further requests to the backend;
  a `CredentialsError` from `price_list` or `balance` stops a paid run before it
  generates, an `AccessDeniedError` there is a note;
  `TransientBackendError` means worth retrying; `RequestRejectedError` means not.
  Any other exception escaping a backend is reported as a bug in the plugin,
  naming its distribution.

`docs/plugins.md` walks through a complete backend and how to test it.
"""

from nebula_build.errors import (
    AccessDeniedError,
    BackendError,
    CredentialsError,
    LocalSetupError,
    OutOfCreditsError,
    RequestRejectedError,
    TransientBackendError,
    WeightsNotFoundError,
)
from nebula_build.plugin.backend import (
    ActivityCallback,
    Backend,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
    HeldCallback,
    OnDisk,
    StepCallback,
)
from nebula_build.plugin.catalog import (
    FLUX_FILL,
    FLUX_SCHNELL,
    SDXL,
    SEEDREAM_DEFAULT_ID,
    ModelSupport,
    nebula_models,
)
from nebula_build.plugin.hookspecs import hookimpl

__all__ = [
    "FLUX_FILL",
    "FLUX_SCHNELL",
    "SDXL",
    "SEEDREAM_DEFAULT_ID",
    "AccessDeniedError",
    "ActivityCallback",
    "Backend",
    "BackendError",
    "BackendSettings",
    "CredentialsError",
    "GenerationRequest",
    "GenerationResult",
    "HeldCallback",
    "LocalSetupError",
    "ModelSupport",
    "OnDisk",
    "OutOfCreditsError",
    "RequestRejectedError",
    "StepCallback",
    "TransientBackendError",
    "WeightsNotFoundError",
    "hookimpl",
    "nebula_models",
]
