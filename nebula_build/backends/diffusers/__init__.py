"""The `diffusers` backend: the open models on this machine's GPU.

SDXL base 1.0, FLUX.1 schnell and FLUX.1 Fill dev run through Hugging Face
diffusers from weights already on disk. Needs torch for the machine's CUDA
version (pytorch.org), then the optional extra, from a checkout::

    pip install -e '.[local]'

This module stays light: torch and diffusers are imported by `local.runtime`
on the first generation, in the backend's own worker thread, so `plan` and
every other backend never pay for them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula_build.backends.diffusers import quiet
from nebula_build.backends.diffusers.cancel import Interrupted
from nebula_build.backends.diffusers.compat import incompatible_pairs
from nebula_build.backends.diffusers.kinds import KINDS, KNOWN_MODELS
from nebula_build.backends.diffusers.settings import (
    FP8_NEEDS_TORCHAO,
    DiffusersSettings,
    LocalModel,
    kind_of,
    made_with,
)
from nebula_build.errors import CONFLICT, first_line
from nebula_build.plugin import (
    Backend,
    BackendError,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
    LocalSetupError,
    ModelSupport,
    OnDisk,
    WeightsNotFoundError,
    hookimpl,
)

if TYPE_CHECKING:  # asyncio and threads are imported when the backend opens: `plan` never does
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from nebula_build.backends.diffusers.runtime import Runtime
    from nebula_build.backends.diffusers.weights import WeightsLocation

EXTRA_HINT = "from the nebula-build checkout, pip install -e '.[local]'"
TORCH_HINT = "install torch for your CUDA version first (pytorch.org)"
_REQUIRED = ("torch", "diffusers", "transformers", "accelerate", "safetensors")


def _settings(settings: BackendSettings) -> DiffusersSettings:
    assert isinstance(settings, DiffusersSettings)
    return settings


def _require_extra() -> None:
    """A LocalSetupError naming what to install when the local extra is missing;
    looks the packages up without importing them."""
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalSetupError(
            f"the diffusers backend needs {', '.join(missing)}: {_install_hint(missing)}",
            backend=DiffusersBackend.name,
        )


def _install_hint(missing: list[str]) -> str:
    """The extra is not on PyPI: it installs from a checkout, after a torch that
    matches the machine's CUDA (pip's default torch may not)."""
    return f"{TORCH_HINT}, then {EXTRA_HINT}" if "torch" in missing else EXTRA_HINT


class DiffusersBackend(Backend):
    """Local generation. Pipelines load on first use and stay loaded for the
    backend's life (an apply, or a whole watch session)."""

    name = "diffusers"
    keeps_timeout = True  # between denoising steps
    settings_model = DiffusersSettings

    def __init__(self, settings: BackendSettings, *, root: Path) -> None:
        super().__init__(settings, root=root)
        self._executor: ThreadPoolExecutor | None = None
        self._runtime: Runtime | None = None
        self._cancels: set[threading.Event] = set()

    @classmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        declared = _settings(settings).models
        supported = {mid: KINDS[kind].support(mid) for mid, kind in KNOWN_MODELS.items()}
        for model_id, value in declared.items():
            if isinstance(value, LocalModel):
                supported[model_id] = KINDS[value.pipeline].support(model_id, model_id)
        return supported

    @classmethod
    def made_with(cls, settings: BackendSettings, model_id: str) -> Mapping[str, str]:
        return made_with(_settings(settings))

    @classmethod
    def made_with_on_disk(
        cls, settings: BackendSettings, model_id: str, root: Path
    ) -> Mapping[str, OnDisk]:
        """The weights' identity (`weights.identity`): the Hugging Face cache's
        revision (refs/main), or the fingerprint of the folder the settings give."""
        from nebula_build.backends.diffusers.weights import on_disk

        declared = _settings(settings).models.get(model_id)
        path = declared if isinstance(declared, str | None) else declared.path
        return {"weights": on_disk(model_id, path, root)}

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> BackendSettings:
        """The settings, and one error for each pair of options that do not work
        together (`compat.TABLE`)."""
        settings = super().parse_settings(raw)
        problems = incompatible_pairs(settings)
        if problems:
            from pydantic import ValidationError
            from pydantic_core import InitErrorDetails, PydanticCustomError

            details = [
                InitErrorDetails(
                    type=PydanticCustomError(CONFLICT, message),
                    loc=(key,),
                    input=getattr(settings, key),
                )
                for key, message in problems
            ]
            raise ValidationError.from_exception_data(cls.settings_model.__name__, details)
        return settings

    @classmethod
    def preflight(cls, settings: BackendSettings, root: Path) -> None:
        _require_extra()
        from nebula_build.backends.diffusers.weights import compile_cache_path, locate

        diffusers_settings = _settings(settings)
        if diffusers_settings.quantize == "fp8" and importlib.util.find_spec("torchao") is None:
            raise LocalSetupError(FP8_NEEDS_TORCHAO, backend=cls.name)
        compile_cache_path(diffusers_settings.compile_cache, root)
        for model_id, value in diffusers_settings.models.items():
            locate(model_id, value if isinstance(value, str) else value.path, root)

    def locate(self, model_id: str) -> WeightsLocation:
        """The folder to load `model_id` from; downloads only with allow_download."""
        from nebula_build.backends.diffusers.weights import WeightsLocation, locate

        settings = _settings(self.settings)
        declared = settings.models.get(model_id)
        path = declared if isinstance(declared, str | None) else declared.path
        root = self.root
        try:
            return locate(model_id, path, root)
        except WeightsNotFoundError:
            if path is not None or not settings.allow_download:
                raise
        from diffusers import DiffusionPipeline

        try:
            folder = DiffusionPipeline.download(model_id)
        except Exception as exc:  # the hub's errors are many; each is one line for the user
            raise WeightsNotFoundError(
                f"model {model_id!r} is not on disk and downloading it failed: {first_line(exc)}",
                backend=self.name,
            ) from exc
        return WeightsLocation(model_id, Path(folder), "downloaded")

    async def __aenter__(self) -> DiffusersBackend:
        from concurrent.futures import ThreadPoolExecutor

        # One thread owns the device: images run one at a time, and CUDA graphs
        # captured by torch.compile are replayed from the thread that made them.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nebula-diffusers")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for cancel in self._cancels:
            cancel.set()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if self._runtime is not None:
            executor.submit(self._runtime.close)
        import asyncio

        await asyncio.to_thread(executor.shutdown, wait=True)
        self._runtime = None

    def _get_runtime(self) -> Runtime:
        if self._runtime is None:
            _require_extra()
            quiet.hugging_face_quiet()
            from nebula_build.backends.diffusers.runtime import Runtime
            from nebula_build.backends.diffusers.weights import compile_cache_path

            settings = _settings(self.settings)
            root = self.root
            self._runtime = Runtime(
                settings,
                compile_cache=compile_cache_path(settings.compile_cache, root),
                locate=self.locate,
                kind_of=lambda model_id: kind_of(settings, model_id),
            )
        return self._runtime

    async def adopt(self, model_id: str, pipeline: object) -> None:
        """Use `pipeline` (a diffusers pipeline object) for `model_id` instead of
        loading one from disk; for scripts and benchmarks that build their own."""
        import asyncio

        assert self._executor is not None, "use `async with` to open the backend"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, lambda: self._get_runtime().adopt(model_id, pipeline)
        )

    def _generate_now(
        self, request: GenerationRequest, cancel: threading.Event
    ) -> GenerationResult:
        if cancel.is_set():
            raise Interrupted
        if self._runtime is None and request.on_activity is not None:
            request.on_activity("starting torch")
        return self._get_runtime().generate(request, cancel)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        import asyncio
        import threading

        assert self._executor is not None, "use `async with` to open the backend"
        cancel = threading.Event()
        self._cancels.add(cancel)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._generate_now, request, cancel)
        except BackendError as exc:
            exc.image = exc.image or request.image_name
            raise
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at the next denoising step
            raise
        finally:
            self._cancels.discard(cancel)


@hookimpl
def nebula_build_register_backends() -> list[type[Backend]]:
    return [DiffusersBackend]
