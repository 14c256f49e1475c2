"""Pipelines loaded once, kept while memory allows, run one image at a time.

This is the only module that imports torch and diffusers; the backend imports it
on the first generation, in its worker thread.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import itertools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers
import torch
import transformers

from nebula_build.backends.diffusers.cancel import Interrupted
from nebula_build.backends.diffusers.kinds import PipelineKind
from nebula_build.backends.diffusers.settings import FP8_NEEDS_TORCHAO
from nebula_build.backends.diffusers.weights import (
    WeightsLocation,
    component_names,
    estimated_bytes,
    fingerprint,
    read_model_index,
    variant_of,
)
from nebula_build.errors import first_line
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
    #: (width, height) of the images made so far: a compiled model compiles per size
    sizes: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    #: memory a generation needs beyond the weights, as last measured
    activation_bytes: int = 0


def pick_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise LocalSetupError(
                'device = "mps" needs an Apple silicon Mac with a torch build that has MPS',
                backend="diffusers",
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise LocalSetupError(
            f"no CUDA GPU is visible to torch {torch.__version__} ({build}); the diffusers "
            "backend runs on a GPU: install a CUDA build of torch, or set "
            '[backends.diffusers] device = "cpu" to run (slowly) on the CPU',
            backend="diffusers",
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise LocalSetupError(
            f"[backends.diffusers] device = {name!r}, but torch sees "
            f"{torch.cuda.device_count()} GPU(s)",
            backend="diffusers",
        )
    return device


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting != "auto":
        dtype: torch.dtype = getattr(torch, setting)
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def module_bytes(module: torch.nn.Module) -> int:
    return sum(
        t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers())
    )


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
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self._check_options()
        if settings.compile:
            # Inductor and Triton keep compiled kernels here: the next process skips
            # the cold compile. (Read when inductor compiles, not when torch loads.)
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache)
        self.pipelines: OrderedDict[str, LoadedPipeline] = OrderedDict()
        self.components: dict[str, Any] = {}  # fingerprint -> loaded component

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

    def held_bytes(self) -> int:
        """Weights the loaded pipelines hold on the device, shared ones counted once."""
        if self.settings.offload:
            return 0
        seen: dict[int, int] = {}
        for loaded in self.pipelines.values():
            for component in loaded.pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    seen.setdefault(id(component), module_bytes(component))
        return sum(seen.values())

    def _available(self) -> float:
        if self.settings.max_memory_gib is not None:
            return self.settings.max_memory_gib * _GIB - self.held_bytes()
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return float(free)
        return float("inf")

    def _make_room(self, needed: int) -> None:
        """Unload least recently used pipelines until `needed` bytes fit."""
        while self.pipelines and self._available() < needed:
            self.unload(next(iter(self.pipelines)))
        # with nothing left to unload, try anyway: an OOM says what to do

    def unload(self, model_id: str) -> None:
        self.pipelines.pop(model_id, None)
        in_use = {fp for p in self.pipelines.values() for fp in p.shareable.values()}
        for unused in set(self.components) - in_use:
            del self.components[unused]
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
        shareable = {}
        if not self.settings.offload:  # offload hooks belong to one pipeline
            shareable = {
                name: fingerprint(location.path / name)
                for name in names
                if name not in _NEVER_SHARED and name != kind.denoiser
            }
        reused = {n: self.components[fp] for n, fp in shareable.items() if fp in self.components}
        variant = variant_of(location.path / kind.denoiser, half=self.dtype != torch.float32)
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        needed = sum(
            estimated_bytes(location.path / name, variant, itemsize)
            for name in names
            if name not in reused
        )
        if not self.settings.offload:
            measured = max((p.activation_bytes for p in self.pipelines.values()), default=0)
            self._make_room(needed + max(needed // 5, measured))
        pipeline_class = getattr(diffusers, kind.pipeline_class)
        try:
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
        pipe.set_progress_bar_config(disable=True)
        self._place(pipe)
        fresh = [c for n, c in pipe.components.items() if n not in reused]
        compiled = self._optimize(pipe, kind, fresh)
        for name, fp in shareable.items():
            self.components.setdefault(fp, pipe.components[name])
        return LoadedPipeline(model_id, kind, pipe, shareable, compiled)

    def adopt(self, model_id: str, pipe: Any) -> None:
        """Run `model_id` with a pipeline built elsewhere (a script's, a benchmark's
        random-weight one): placed and optimised as if it had been loaded here."""
        self.unload(model_id)
        kind = self.kind_of(model_id)
        pipe.set_progress_bar_config(disable=True)
        self._place(pipe)
        compiled = self._optimize(pipe, kind, list(pipe.components.values()))
        self.pipelines[model_id] = LoadedPipeline(model_id, kind, pipe, {}, compiled)

    def _place(self, pipe: Any) -> None:
        if self.settings.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.settings.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    def _optimize(self, pipe: Any, kind: PipelineKind, fresh: list[Any]) -> bool:
        """The opt-in speed-ups, applied once to each newly loaded component.
        Returns whether the denoiser was compiled."""
        settings = self.settings
        denoiser = getattr(pipe, kind.denoiser)
        vae = pipe.vae if any(c is pipe.vae for c in fresh) else None
        if settings.fuse_qkv:
            denoiser.fuse_qkv_projections()
            if vae is not None:
                vae.fuse_qkv_projections()
        if settings.channels_last:
            if vae is not None:
                vae.to(memory_format=torch.channels_last)
            if kind.denoiser == "unet":
                denoiser.to(memory_format=torch.channels_last)
        if settings.quantize == "fp8":
            from torchao.quantization import (
                Float8DynamicActivationFloat8WeightConfig,
                PerRow,
                quantize_,
            )

            quantize_(
                denoiser,
                Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
                filter_fn=_fp8_friendly,
            )
        if not settings.compile:
            return False
        if settings.compile == "regional":
            denoiser.compile_repeated_blocks(fullgraph=True)
            return True
        if settings.compile == "max-autotune":
            mode = "max-autotune"
            inductor = torch._inductor.config
            inductor.conv_1x1_as_mm = True
            inductor.coordinate_descent_tuning = True
            inductor.coordinate_descent_check_all_directions = True
            inductor.epilogue_fusion = False
        else:  # CUDA graphs: the shapes of one image size are static
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
        denoiser.compile(mode=mode, fullgraph=True, dynamic=False)
        return True

    # -- generating ---------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancel: threading.Event) -> GenerationResult:
        """One image. Running out of GPU memory, while loading or denoising, unloads
        the other pipelines and tries once more before it is an error."""
        for attempt in (1, 2):
            try:
                if request.model not in self.pipelines:
                    _tell(request, f"loading {request.model}")
                loaded, load_seconds = self.pipeline(request.model)
                if loaded.compiled and (request.width, request.height) not in loaded.sizes:
                    _tell(request, "compiling for this size: once")
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

    def _out_of_memory(self, request: GenerationRequest) -> BackendError:
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        hint = (
            'set offload = "sequential"'
            if self.settings.offload == "model"
            else 'set offload = "model" (or "sequential") in [backends.diffusers]'
        )
        return BackendError(
            f"out of GPU memory running {request.model} at {request.width}x{request.height}; "
            f"{hint}, or use a smaller size",
            backend="diffusers",
            image=request.image_name,
        )

    def _run(
        self, loaded: LoadedPipeline, request: GenerationRequest, cancel: threading.Event
    ) -> GenerationResult:
        from torch._dynamo.utils import counters

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

        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "width": request.width,
            "height": request.height,
            "num_inference_steps": steps,
            "guidance_scale": (
                request.guidance_scale
                if request.guidance_scale is not None
                else kind.default_guidance
            ),
            "generator": torch.Generator("cpu").manual_seed(seed),
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        if kind.max_sequence_length is not None:
            arguments["max_sequence_length"] = kind.max_sequence_length
        if "negative_prompt" in kind.params and request.negative_prompt is not None:
            arguments["negative_prompt"] = request.negative_prompt
        if kind.name == "flux-fill":
            arguments["image"], arguments["mask_image"] = _input_images(request)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        misses_before = counters["inductor"]["fxgraph_cache_miss"]
        try:
            with torch.inference_mode():
                output = loaded.pipe(**arguments)
        except TimeoutError:
            raise BackendError(
                f"gave up after {timeout:g}s (the backend's timeout setting)",
                backend="diffusers",
                image=request.image_name,
            ) from None
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError) as exc:  # from diffusers or torch: one line
            raise BackendError(
                f"{request.model} failed in diffusers: {type(exc).__name__}: {first_line(exc)}",
                backend="diffusers",
                image=request.image_name,
            ) from exc
        seconds = time.perf_counter() - started
        timings = {"inference": seconds}
        if loaded.compiled and (request.width, request.height) not in loaded.sizes:
            cold = counters["inductor"]["fxgraph_cache_miss"] > misses_before
            timings["compile_cold" if cold else "compile_warm"] = seconds
        loaded.sizes.add((request.width, request.height))
        peak = None
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            loaded.activation_bytes = max(loaded.activation_bytes, peak - self.held_bytes())
        buffer = io.BytesIO()
        output.images[0].save(buffer, "PNG")
        return GenerationResult(buffer.getvalue(), seed=seed, timings=timings, peak_memory=peak)


def _tell(request: GenerationRequest, activity: str) -> None:
    if request.on_activity is not None:
        request.on_activity(activity)


def _fp8_friendly(module: torch.nn.Module, name: str) -> bool:
    """float8 matmuls want both dimensions in multiples of 16: the few layers that
    are not (a patch embedding) stay in bf16."""
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def _input_images(request: GenerationRequest) -> tuple[Any, Any]:
    from PIL import Image

    assert request.image is not None and request.mask is not None
    image = Image.open(io.BytesIO(request.image)).convert("RGB")
    mask = Image.open(io.BytesIO(request.mask)).convert("L")
    return image, mask
