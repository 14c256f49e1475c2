"""Pipelines loaded once, kept while memory allows, run one image at a time.

This is the only module that imports torch and diffusers; the backend imports it
on the first generation, in its worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers
import torch
import transformers

from nebula_build.backends.diffusers import compiling, speedups
from nebula_build.backends.diffusers.cancel import Interrupted
from nebula_build.backends.diffusers.devices import (
    pick_device,
    pick_dtype,
    resident_bytes,
)
from nebula_build.backends.diffusers.kinds import PipelineKind
from nebula_build.backends.diffusers.quiet import import_notices_hidden
from nebula_build.backends.diffusers.settings import FP8_NEEDS_TORCHAO, made_with
from nebula_build.backends.diffusers.weights import (
    NotAModelFolderError,
    WeightsLocation,
    component_names,
    estimated_bytes,
    fingerprint,
    identity,
    read_model_index,
    variant_of,
)
from nebula_build.errors import first_line, typed_line
from nebula_build.plugin import (
    BackendError,
    GenerationRequest,
    GenerationResult,
    LocalSetupError,
    RequestRejectedError,
)

if TYPE_CHECKING:
    from nebula_build.backends.diffusers.settings import DiffusersSettings

_GIB = 1 << 30
#: components that are state, not weights: every pipeline gets its own
_NEVER_SHARED = frozenset({"scheduler"})


@dataclass(eq=False)
class LoadedPipeline:
    model_id: str
    kind: PipelineKind
    pipe: Any
    #: component name -> fingerprint, for the components other pipelines may share
    shareable: dict[str, str]
    compiled: bool
    #: the weights' identity: "hf:<revision>" from the Hugging Face cache, else
    #: "files:<fingerprint>" of the folder; "unknown" for an adopted pipeline
    weights: str = "unknown"
    #: (width, height) of the images made so far: a compiled model compiles per size
    sizes: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    #: memory a generation needs beyond the weights, as last measured
    activation_bytes: int = 0


def _quiet_library_progress_bars() -> None:
    """diffusers' and transformers' own bars would break our progress lines."""
    diffusers.utils.logging.disable_progress_bar()
    # untyped where transformers is installed, Any where it is not: no ignore fits both
    transformers_logging: Any = transformers.utils.logging
    transformers_logging.disable_progress_bar()


class Runtime:
    """The pipelines of one diffusers backend on one device. Not thread-safe: the
    backend calls it from its single worker thread."""

    def __init__(
        self,
        settings: DiffusersSettings,
        *,
        compile_cache: Path,
        locate: Callable[[str], WeightsLocation],
        kind_of: Callable[[str], PipelineKind],
    ) -> None:
        _quiet_library_progress_bars()
        self.settings = settings
        self.locate = locate
        self.kind_of = kind_of
        self.compile_cache = compile_cache
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self._check_options()
        self.pipelines: OrderedDict[str, LoadedPipeline] = OrderedDict()
        self.components: dict[str, Any] = {}  # fingerprint -> loaded component
        self.budget = compiling.SizeBudget()

    def _check_options(self) -> None:
        settings, cuda = self.settings, self.device.type == "cuda"
        if settings.offload and not cuda:
            raise LocalSetupError(
                f'offload = "{settings.offload}" moves weights between the CPU and a GPU; '
                'it needs device = "cuda"',
                backend="diffusers",
            )
        if settings.quantize == "fp8":
            if not cuda or torch.cuda.get_device_capability(self.device) < (8, 9):
                raise LocalSetupError(
                    'quantize = "fp8" needs a GPU with float8 support (compute capability '
                    "8.9+: Ada, Hopper or newer)",
                    backend="diffusers",
                )
            try:
                import torchao  # noqa: F401
            except ImportError:
                raise LocalSetupError(FP8_NEEDS_TORCHAO, backend="diffusers") from None

    # -- memory -------------------------------------------------------------------------

    def _modules(self) -> list[torch.nn.Module]:
        return [
            component
            for loaded in self.pipelines.values()
            for component in loaded.pipe.components.values()
            if isinstance(component, torch.nn.Module)
        ]

    def held_bytes(self) -> int:
        """Weights the loaded pipelines hold on the device now, shared ones counted
        once: all of them without offload; with it, what a hook has moved there."""
        return resident_bytes(self._modules(), self.device)

    def host_bytes(self) -> int:
        """Weights offloaded pipelines keep in CPU memory (nothing when the device is
        the CPU: then they are all `held_bytes`)."""
        if self.device.type == "cpu":
            return 0
        return resident_bytes(self._modules(), torch.device("cpu"))

    def _available(self) -> float:
        if self.settings.max_memory_gib is not None:
            return self.settings.max_memory_gib * _GIB - self.held_bytes()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return float(free)
        return float("inf")

    def _make_room(self, needed: int) -> None:
        """Unload least recently used pipelines until `needed` bytes fit on the device
        and, for offloaded weights, in CPU memory."""
        host_needed = needed if self.settings.offload else 0
        while self.pipelines and (
            self._available() < self._on_device(needed) or _host_free() < host_needed
        ):
            self.unload(next(iter(self.pipelines)))
        # with nothing left to unload, try anyway: an OOM says what to do

    def _on_device(self, needed: int) -> int:
        """Of a pipeline's `needed` bytes, those on the device while it runs: model
        offload brings one model at a time (about half of FLUX or SDXL at most),
        sequential offload one layer."""
        if self.settings.offload == "model":
            return needed // 2
        if self.settings.offload == "sequential":
            return 0
        return needed

    def unload(self, model_id: str) -> None:
        loaded = self.pipelines.pop(model_id, None)
        if loaded is not None:
            self._release(loaded.pipe, loaded.kind, compiled=loaded.compiled)
            del loaded
        in_use = {fp for p in self.pipelines.values() for fp in p.shareable.values()}
        for unused in set(self.components) - in_use:
            del self.components[unused]
        self._free_cache()

    def _release(self, pipe: Any, kind: PipelineKind, *, compiled: bool) -> None:
        """Drop what keeps a pipeline's memory alive beyond its own references: the
        compiled graphs (and their CUDA graph pools) and the offload hooks."""
        if compiled:
            compiling.uncompile(getattr(pipe, kind.denoiser))
            everything = not any(p.compiled for p in self.pipelines.values())
            compiling.reset_compiler(self.device.type == "cuda", everything=everything)
            if everything:
                self.budget.clear()
        if self.settings.offload:
            pipe.remove_all_hooks()

    def _free_cache(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        for model_id in list(self.pipelines):
            self.unload(model_id)

    # -- loading ------------------------------------------------------------------------

    def pipeline(self, model_id: str) -> tuple[LoadedPipeline, float | None]:
        """The loaded pipeline for `model_id` and the seconds it took to load now
        (None when it was already loaded)."""
        loaded = self.pipelines.get(model_id)
        if loaded is not None:
            self.pipelines.move_to_end(model_id)
            return loaded, None
        started = time.perf_counter()
        loaded = self._load(model_id)
        self.pipelines[model_id] = loaded
        return loaded, time.perf_counter() - started

    def _load(self, model_id: str) -> LoadedPipeline:
        kind = self.kind_of(model_id)
        location = self.locate(model_id)
        index = read_model_index(location)
        found = index.get("_class_name")
        if found != kind.pipeline_class:
            raise RequestRejectedError(
                f"model {model_id!r}: {location.path} holds a {found}, but this model runs "
                f"in a {kind.pipeline_class}",
                backend="diffusers",
            )
        names = component_names(index)
        try:
            weights = identity(location.path)
            shareable = {}
            if not self.settings.offload:  # offload hooks belong to one pipeline
                shareable = {
                    name: fingerprint(location.path / name)
                    for name in names
                    if name not in _NEVER_SHARED and name != kind.denoiser
                }
            reused = {
                n: self.components[fp] for n, fp in shareable.items() if fp in self.components
            }
            variant = variant_of(location.path / kind.denoiser, half=self.dtype != torch.float32)
            itemsize = torch.empty((), dtype=self.dtype).element_size()
            needed = sum(
                estimated_bytes(location.path / name, variant, itemsize)
                for name in names
                if name not in reused
            )
        except NotAModelFolderError as exc:
            raise RequestRejectedError(f"model {model_id!r}: {exc}", backend="diffusers") from None
        measured = max((p.activation_bytes for p in self.pipelines.values()), default=0)
        self._make_room(needed + max(needed // 5, measured))
        try:
            with import_notices_hidden():
                pipeline_class = getattr(diffusers, kind.pipeline_class)
                pipe = pipeline_class.from_pretrained(
                    location.path,
                    dtype=self.dtype,
                    variant=variant,
                    local_files_only=True,
                    use_safetensors=True,  # never a pickle: a model folder may come with a checkout
                    **reused,
                )
        except (OSError, ValueError, RuntimeError) as exc:
            raise BackendError(
                f"model {model_id!r}: could not load {location.path} ({location.origin}): "
                f"{first_line(exc)}",
                backend="diffusers",
            ) from exc
        fresh = [c for n, c in pipe.components.items() if n not in reused]
        compiled = self._set_up(model_id, pipe, kind, fresh)
        for name, fp in shareable.items():
            self.components.setdefault(fp, pipe.components[name])
        return LoadedPipeline(model_id, kind, pipe, shareable, compiled, weights)

    def adopt(self, model_id: str, pipe: Any) -> None:
        """Run `model_id` with a pipeline built elsewhere (a script's, a benchmark's
        random-weight one): placed and optimised as if it had been loaded here."""
        self.unload(model_id)
        kind = self.kind_of(model_id)
        compiled = self._set_up(model_id, pipe, kind, list(pipe.components.values()))
        self.pipelines[model_id] = LoadedPipeline(model_id, kind, pipe, {}, compiled)

    def _set_up(self, model_id: str, pipe: Any, kind: PipelineKind, fresh: list[Any]) -> bool:
        """Apply the speed options and place the pipeline, in the order that lets them
        combine: weights are rewritten before offload hooks see them, compile comes
        last, over the hooks. Returns whether the denoiser was compiled. A failure is
        one line naming the option, and the half-made pipeline is released."""
        settings = self.settings
        denoiser = getattr(pipe, kind.denoiser)
        vae = pipe.vae if any(c is pipe.vae for c in fresh) else None
        pipe.set_progress_bar_config(disable=True)
        try:
            if settings.fuse_qkv:
                with _blame(model_id, "fuse_qkv = true"):
                    for model in (denoiser, vae):
                        if model is not None:
                            speedups.fuse_qkv(model)
            if settings.channels_last:
                with _blame(model_id, "channels_last = true"):
                    for model in (denoiser if kind.denoiser == "unet" else None, vae):
                        if model is not None:
                            speedups.channels_last(model)
            with _blame(model_id, f'offload = "{settings.offload}"' if settings.offload else ""):
                self._place(pipe)
            if settings.quantize == "fp8":
                with _blame(model_id, 'quantize = "fp8"'):
                    speedups.quantize_fp8(denoiser)
            if settings.compile:
                with _blame(model_id, f"compile = {_toml(settings.compile)}"):
                    compiling.compile_denoiser(
                        denoiser, settings.compile, self.device.type == "cuda"
                    )
        except BaseException:
            self._release(pipe, kind, compiled=bool(settings.compile))
            del pipe, denoiser, vae, fresh
            self._free_cache()
            raise
        return bool(settings.compile)

    def _place(self, pipe: Any) -> None:
        if self.settings.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.settings.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    # -- generating ---------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        """One image. Running out of GPU memory, while loading or denoising, unloads
        the other pipelines and tries once more before it is an error."""
        for attempt in (1, 2):
            try:
                if request.model not in self.pipelines:
                    _tell(request, f"loading {request.model}")
                loaded, load_seconds = self._pipeline_or_error(request.model)
                result = self._run(loaded, request, cancel)
                break
            except torch.OutOfMemoryError:
                others = [m for m in self.pipelines if m != request.model]
                if attempt == 2 or not others:
                    raise self._out_of_memory(request) from None
                for model_id in others:
                    self.unload(model_id)
        if load_seconds is None:
            return result
        return dataclasses.replace(result, timings={"load": load_seconds, **result.timings})

    def _pipeline_or_error(self, model_id: str) -> tuple[LoadedPipeline, float | None]:
        try:
            return self.pipeline(model_id)
        except LocalSetupError as exc:
            message = str(exc)
        # A fresh error, raised outside the handler so that it has no context: the
        # first one's traceback holds the half-made pipeline, which the engine would
        # keep alive until the apply ends.
        raise LocalSetupError(message, backend="diffusers")

    def _out_of_memory(self, request: GenerationRequest) -> BackendError:
        self._free_cache()
        hint = {
            None: 'set offload = "model" (or "sequential") in [backends.diffusers]',
            "model": 'set offload = "sequential"',
            "sequential": "close other programs using the GPU",
        }[self.settings.offload]
        return BackendError(
            f"out of GPU memory running {request.model} at {request.width}x{request.height}; "
            f"{hint}, or use a smaller size",
            backend="diffusers",
            image=request.image_name,
        )

    def _compile_plan(
        self, loaded: LoadedPipeline, request: GenerationRequest
    ) -> tuple[bool, tuple[str, ...]]:
        """(whether to run this size eagerly, the warning to give) for a compiled
        pipeline; says on the status line what is about to happen."""
        size = (request.width, request.height)
        denoiser = getattr(loaded.pipe, loaded.kind.denoiser)
        if not loaded.compiled or size in loaded.sizes:
            return False, ()
        if self.budget.allows(denoiser, size):
            if self.settings.compile == "max-autotune":  # FLUX: well over 150 s on an H200
                _tell(request, "tuning and compiling for this size (once; can take many minutes)")
            else:
                _tell(request, "compiling for this size (once)")
            return False, ()
        _tell(request, "running this size without compile")
        return True, self._limit_warning(denoiser)

    def _limit_warning(self, denoiser: Any) -> tuple[str, ...]:
        if not self.budget.first_refusal(denoiser):
            return ()
        return (
            f"compile: {type(denoiser).__name__} is compiled for "
            f"{compiling.recompile_limit()} image sizes already (torch's recompile limit); "
            "new sizes run without compile until the backend restarts",
        )

    def _run(
        self, loaded: LoadedPipeline, request: GenerationRequest, cancel: threading.Event
    ) -> GenerationResult:
        kind = loaded.kind
        seed = request.seed if request.seed is not None else int(request.generation_key[:8], 16)
        steps = request.num_steps or kind.default_steps
        started = time.perf_counter()
        timeout = self.settings.timeout

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            if cancel.is_set():
                raise Interrupted
            if time.perf_counter() - started > timeout:
                raise TimeoutError
            if request.on_step is not None:
                request.on_step(index + 1, steps)
            return tensors

        arguments = _arguments(kind, request, steps, on_step_end)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        eager, planned_warnings = self._compile_plan(loaded, request)
        misses_before = compiling.kernel_cache_misses()
        graphs_before = compiling.graphs_compiled()
        try:
            output, eager, warnings = self._call_or_fallback(loaded, arguments, seed, eager)
            warnings = planned_warnings + warnings
        except Exception as exc:
            failure = self._failure(request, exc)
            if failure is exc:
                raise
            raise failure from exc
        seconds = time.perf_counter() - started
        timings = {"inference": seconds}
        size = (request.width, request.height)
        if compiling.graphs_compiled() > graphs_before:
            cold = compiling.kernel_cache_misses() > misses_before
            timings["compile_cold" if cold else "compile_warm"] = seconds
        if loaded.compiled and not eager:
            self.budget.record(getattr(loaded.pipe, kind.denoiser), size)
            loaded.sizes.add(size)
        peak = None
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            loaded.activation_bytes = max(loaded.activation_bytes, peak - self.held_bytes())
        buffer = io.BytesIO()
        output.images[0].save(buffer, "PNG")
        return GenerationResult(
            buffer.getvalue(),
            seed=seed,
            timings=timings,
            peak_memory=peak,
            warnings=warnings,
            made_with=self._made_with(loaded, eager=eager),
        )

    def _made_with(self, loaded: LoadedPipeline, *, eager: bool) -> dict[str, str]:
        """What made this image beyond its spec (see `settings.made_with`)."""
        record = made_with(self.settings)
        record["dtype"] = str(self.dtype).removeprefix("torch.")
        record["weights"] = loaded.weights
        if loaded.compiled and eager:
            record["compile"] = "false"  # this size ran past the recompile limit
        return record

    def _call(
        self, loaded: LoadedPipeline, arguments: dict[str, Any], seed: int, *, eager: bool
    ) -> Any:
        generator = torch.Generator("cpu").manual_seed(seed)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if loaded.compiled:
                stack.enter_context(compiling.kernel_cache(self.compile_cache))
                if self.device.type == "cuda":
                    compiling.cuda_graphs_usable_here()
            if eager:
                stack.enter_context(compiling.eagerly())
            return loaded.pipe(**arguments, generator=generator)

    def _call_or_fallback(
        self, loaded: LoadedPipeline, arguments: dict[str, Any], seed: int, eager: bool
    ) -> tuple[Any, bool, tuple[str, ...]]:
        """(output, whether it ran eagerly, warnings): when dynamo refuses a new size
        (another pipeline of this class used up its limit), the image runs eagerly."""
        try:
            return self._call(loaded, arguments, seed, eager=eager), eager, ()
        except Exception as exc:
            if not compiling.is_recompile_limit(exc):
                raise
        denoiser = getattr(loaded.pipe, loaded.kind.denoiser)
        self.budget.exhaust(denoiser)
        warnings = self._limit_warning(denoiser)
        return self._call(loaded, arguments, seed, eager=True), True, warnings

    def _failure(self, request: GenerationRequest, exc: Exception) -> Exception:
        """What an exception from inside the pipeline becomes."""
        if isinstance(exc, TimeoutError):
            return BackendError(
                f"gave up after {self.settings.timeout:g}s (the backend's timeout setting)",
                backend="diffusers",
                image=request.image_name,
            )
        if isinstance(exc, RuntimeError | ValueError) and not isinstance(
            exc, torch.OutOfMemoryError
        ):  # from diffusers or torch: one line
            return BackendError(
                f"{request.model} failed in diffusers: {typed_line(exc)}",
                backend="diffusers",
                image=request.image_name,
            )
        return exc


@contextlib.contextmanager
def _blame(model_id: str, option: str) -> Iterator[None]:
    """An error from a speed option while a pipeline loads: one line naming it."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # torch, accelerate and torchao raise many kinds
        if not option:
            raise
        raise LocalSetupError(
            f"model {model_id!r}: {option} failed while loading it: "
            f"{typed_line(exc)}; remove it from [backends.diffusers]",
            backend="diffusers",
        ) from exc


def _toml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'


def _host_free() -> float:
    """CPU memory available now, page cache included (Linux's MemAvailable; where
    that cannot be read: unknown, no limit)."""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("inf")


def _arguments(
    kind: PipelineKind, request: GenerationRequest, steps: int, on_step_end: Any
) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "num_inference_steps": steps,
        "guidance_scale": (
            request.guidance_scale if request.guidance_scale is not None else kind.default_guidance
        ),
        "callback_on_step_end": on_step_end,
        "output_type": "pil",
    }
    if kind.max_sequence_length is not None:
        arguments["max_sequence_length"] = kind.max_sequence_length
    if "negative_prompt" in kind.params and request.negative_prompt is not None:
        arguments["negative_prompt"] = request.negative_prompt
    if kind.name == "flux-fill":
        arguments["image"], arguments["mask_image"] = _input_images(request)
    return arguments


def _tell(request: GenerationRequest, activity: str) -> None:
    if request.on_activity is not None:
        request.on_activity(activity)


def _input_images(request: GenerationRequest) -> tuple[Any, Any]:
    from PIL import Image

    assert request.image is not None and request.mask is not None
    image = Image.open(io.BytesIO(request.image)).convert("RGB")
    mask = Image.open(io.BytesIO(request.mask)).convert("L")
    return image, mask
