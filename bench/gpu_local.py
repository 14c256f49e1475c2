"""The diffusers backend on a GPU: full-size SDXL base 1.0 and FLUX.1 schnell.

Both are built from their published configs with random weights seeded with
WEIGHTS_SEED (speed does not depend on weight values, but the fp8 row's PSNR
needs the very weights the eager row ran): nothing is downloaded or saved.
1024x1024 images, SDXL 30 steps with guidance, FLUX.1 schnell 4 steps, batch 1,
in one process, in these modes:

  plain            the diffusers pipeline called directly, eager: the baseline script
  plain-thread     plain, called from a worker thread as the backend calls it: beside
                   plain and eager, it tells the thread's cost from the backend's own
  plain-compile    plain + torch.compile(mode="reduce-overhead"): the best plain script
  eager            through the backend, no options
  compile          compile = true
  tuned            compile = "max-autotune", fuse_qkv = true, channels_last = true
  fp8              (FLUX) compile = true, fuse_qkv, quantize = "fp8"; PSNR against eager
  offload-model    offload = "model"
  offload-seq      offload = "sequential"

How it is timed, so that a 3 % difference can be judged:

- plain, plain-thread and eager share one pipeline object (the same weights by
  construction) and run interleaved, A B C A B C, as do plain-compile and compile
  (two pipelines from the same seed); the other modes run alone.
- each mode's first image is the warm-up (a compile, if any, is in it: "first");
  then --rounds (at least 5) timed images: min, median and max.
- every compile mode starts from a fresh, empty kernel cache of its own, and the
  backend's first image runs before the plain script's: "first" of the
  backend's compile modes is a cold compile (plain-compile's "first" may reuse
  code torch keeps in memory from it, so it is not one). Between rows the
  compiler is reset (torch.compiler.reset()) and its settings are checked
  against those at start.
- --check first asserts the invariants: two builds from the seed have the same
  weights (a digest of every tensor), the plain script and the backend make the
  same image from the same weights and inputs (PSNR >= SAME_IMAGE_DB: the
  backend's thread may sum in another order), and a backend compile leaves the
  compiler's settings and the variables nebula-build sets as they were (those
  torch sets for itself once per process, such as TRITON_PTXAS_PATH, are named).
  While timing, every row's weights are compared with the first row's. Peak
  memory is the process's: a pair of compile rows holds two pipelines.

  python bench/gpu_local.py --check                          # all modes, both models
  python bench/gpu_local.py --models flux --modes plain,eager,plain-compile,compile,fp8
  python bench/gpu_local.py --tiny --device cpu --check --modes plain,eager  # smoke test

The GPU session for issue 14 is bench/gpu_session.sh: the parts it names run in
one call, each under what is left of one budget. Seen on an H200 (2026-12-04,
torch 2.11): a call starts in about 35 s; the GPU tests take about 100 s; the flux
part about 330 s (--check about 60 s; each cold compile of FLUX.1 schnell at
1024² takes 80-110 s); fp8's cold compile 160 s; tuned's, with max-autotune, had
not finished after 150 s; SDXL's eager images take about 2.5 s each.

On a lent device machine (its image has torch, transformers and accelerate, but
not diffusers, pydantic or torchao; nothing can be fetched there), carry wheels.
Here, in the repository root (torchao 0.17 is the release built for torch 2.11):

  echo /.whl/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    diffusers==0.42.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types \
    typing-inspection tomli-w torchao==0.17.0

and there, with carry=[".whl"] and a timeout_s 40 s above BUDGET_S:

  BUDGET_S=540 bash bench/gpu_session.sh tests sdxl-eager sdxl-compile
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX = "black-forest-labs/FLUX.1-schnell"
MODES = (
    "plain",
    "plain-thread",
    "plain-compile",
    "eager",
    "compile",
    "tuned",
    "fp8",
    "offload-model",
    "offload-seq",
)
BACKEND_SETTINGS: dict[str, dict[str, object]] = {
    "eager": {},
    "compile": {"compile": True},
    "tuned": {"compile": "max-autotune", "fuse_qkv": True, "channels_last": True},
    "fp8": {"compile": True, "fuse_qkv": True, "quantize": "fp8"},
    "offload-model": {"offload": "model"},
    "offload-seq": {"offload": "sequential"},
}
CUDA_ONLY = {"fp8", "offload-model", "offload-seq"}
#: seconds per image on one H100 (issue 6): the best plain script, and the goals
GOALS = {
    SDXL: {"plain-compile": 1.11, "compile": 1.11, "tuned": 0.95},
    FLUX: {"plain-compile": 0.633, "compile": 0.633, "tuned": 0.55, "fp8": 0.45},
}

# --- published configs (config.json of each component on the Hugging Face hub) -------

CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
CLIP_BIGG = {  # SDXL's text_encoder_2 (OpenCLIP ViT-bigG)
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
# this script's tokenizers: ids 0/1/2 for start, pad and end (legacy CLIP pooling)
CLIP_TOKENS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": False,  # bf16 decode, as the backend runs it
}
SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
FLUX_TRANSFORMER = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 16,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}
T5_XXL = {  # google/t5-v1_1-xxl, the encoder FLUX uses
    "vocab_size": 32128,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "is_encoder_decoder": False,
    "use_cache": False,
}
FLUX_SCHEDULER = {"shift": 1.0, "use_dynamic_shifting": False}


@contextmanager
def building_on(device: Any, dtype: Any):
    """New modules are created on `device` in `dtype`: random init on the GPU takes
    seconds where the CPU takes minutes."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def full_sdxl(scratch: Path, device: Any, dtype: Any) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.backends.tiny_models import clip_tokenizer

    with building_on(device, dtype):
        models = {
            "unet": UNet2DConditionModel(**SDXL_UNET),
            "vae": AutoencoderKL(**SDXL_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L, **CLIP_TOKENS)),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig(**CLIP_BIGG, **CLIP_TOKENS)
            ),
        }
    return StableDiffusionXLPipeline(
        **models,
        tokenizer=clip_tokenizer(scratch / "clip"),
        tokenizer_2=clip_tokenizer(scratch / "clip"),
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER),
    )


def full_flux(scratch: Path, device: Any, dtype: Any) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from tests.backends.tiny_models import clip_tokenizer, t5_tokenizer

    with building_on(device, dtype):
        models = {
            "transformer": FluxTransformer2DModel(**FLUX_TRANSFORMER),
            "vae": AutoencoderKL(**FLUX_VAE),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L, **CLIP_TOKENS)),
            "text_encoder_2": T5EncoderModel(T5Config(**T5_XXL)),
        }
    return FluxPipeline(
        **models,
        tokenizer=clip_tokenizer(scratch / "clip"),
        tokenizer_2=t5_tokenizer(),
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER),
    )


WEIGHTS_SEED = 1234
#: two images this close (PSNR) are the same image up to float summation order
SAME_IMAGE_DB = 45.0
PROMPT = "a lighthouse on a cliff at dusk"
#: the variables nebula-build sets while it compiles: a compile must leave them as it found them
OWNED_VARIABLES = ("TORCHINDUCTOR_", "TRITON_CACHE_DIR", "TORCH_COMPILE", "TORCHDYNAMO_")
#: rows that share a process compare best interleaved: (plain scripts…, backend); the
#: first group shares one pipeline
GROUPS = (("plain", "plain-thread", "eager"), ("plain-compile", "compile"))

One = Callable[[int], tuple[float, bytes]]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch
        import torch._inductor.config as inductor

        self.args = args
        self.torch = torch
        self.inductor = inductor
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.scratch = Path(tempfile.mkdtemp(prefix="nebula-bench-"))
        self.size = 64 if args.tiny else 1024
        self.eager_images: dict[tuple[str, int], bytes] = {}
        self.weights: dict[str, str] = {}  # model -> digest of the eager row's weights
        self.rows: list[dict[str, Any]] = []
        self.compiler_config = inductor.save_config_portable()
        self.problems: list[str] = []

    def steps(self, model: str) -> tuple[int, float]:
        if self.args.tiny:
            return 2, 5.0 if model == SDXL else 0.0
        return (30, 5.0) if model == SDXL else (4, 0.0)

    def build(self, model: str, on: Any) -> tuple[Any, float]:
        """A pipeline with the same random weights every time (seeded), on `on`."""
        started = time.perf_counter()
        self.torch.manual_seed(WEIGHTS_SEED)
        if self.args.tiny:
            from tests.backends import tiny_models

            make = tiny_models.sdxl_pipeline if model == SDXL else tiny_models.flux_pipeline
            pipe = make(self.scratch).to(on, self.dtype)
        else:
            pipe = (full_sdxl if model == SDXL else full_flux)(self.scratch, on, self.dtype)
        pipe.set_progress_bar_config(disable=True)
        self.sync()
        return pipe, time.perf_counter() - started

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def fresh_compiler(self) -> None:
        """Each row starts as a new process would: no compiled graphs (nor the memory
        pools their CUDA graphs hold), the compiler's settings as they were at start."""
        self.torch.compiler.reset()
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
        if self.inductor.save_config_portable() != self.compiler_config:
            self.problems.append("a row left torch._inductor.config changed")
            self.inductor.load_config(self.compiler_config)

    def peak_reset(self) -> None:
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**30

    # -- the plain script a user would write ----------------------------------------

    def plain(self, model: str, pipe: Any, *, compiled: bool) -> One:
        torch = self.torch
        from nebula_build.backends.diffusers.compiling import (
            cuda_graphs_usable_here,
            kernel_cache,
        )

        cache = Path(tempfile.mkdtemp(prefix="nebula-inductor-plain-"))
        if compiled:
            name = "unet" if model == SDXL else "transformer"
            mode = "reduce-overhead" if self.cuda else "default"
            setattr(pipe, name, torch.compile(getattr(pipe, name), mode=mode, fullgraph=True))
        steps, guidance = self.steps(model)
        # as FLUX.1 schnell's model card calls it (and the backend does)
        extra = {"max_sequence_length": 256} if model == FLUX else {}

        def one(seed: int) -> tuple[float, bytes]:
            if compiled and self.cuda:  # torch 2.11: the backend's thread may have been first
                cuda_graphs_usable_here()
            started = time.perf_counter()
            with torch.inference_mode(), kernel_cache(cache):
                image = pipe(
                    PROMPT,
                    **extra,
                    width=self.size,
                    height=self.size,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator("cpu").manual_seed(seed),
                ).images[0]
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            return time.perf_counter() - started, buffer.getvalue()

        return one

    # -- through the backend ----------------------------------------------------------

    @contextmanager
    def backend(self, model: str, mode: str, pipe: Any) -> Iterator[One]:
        """The backend, open on an event loop of its own, running `pipe` with the
        mode's settings; kernels go to a fresh cache (a cold compile)."""
        from nebula_build.backends.diffusers import DiffusersBackend, DiffusersSettings
        from nebula_build.plugin.backend import GenerationRequest

        cache = Path(tempfile.mkdtemp(prefix="nebula-inductor-backend-"))
        settings = DiffusersSettings.model_validate(
            {"device": str(self.device), "compile_cache": str(cache), **BACKEND_SETTINGS[mode]}
        )
        steps, guidance = self.steps(model)
        backend = DiffusersBackend(settings, root=self.scratch)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        def call(coroutine: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        def one(seed: int) -> tuple[float, bytes]:
            request = GenerationRequest(
                image_name=f"bench-{seed}",
                generation_key=f"{seed:064x}",
                model=model,
                prompt=PROMPT,
                width=self.size,
                height=self.size,
                num_steps=steps,
                guidance_scale=guidance,
                seed=seed,
            )
            started = time.perf_counter()
            result = call(backend.generate(request))
            return time.perf_counter() - started, result.data

        call(backend.__aenter__())
        try:
            call(backend.adopt(model, pipe))
            yield one
        finally:
            # torch 2.13 keeps compiler settings per thread: read the backend's own
            if backend._executor is not None:
                config = backend._executor.submit(self.inductor.save_config_portable).result()
                if config != self.compiler_config:
                    self.problems.append(f"{model} {mode}: left torch._inductor.config changed")
            call(backend.__aexit__(None, None, None))
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # -- timing -----------------------------------------------------------------------

    def interleaved(self, runners: dict[str, One]) -> dict[str, dict[str, Any]]:
        """Each runner's first call (the warm-up: compile included), then A B A B …
        for --rounds rounds: min, median and max of those."""
        rows: dict[str, dict[str, Any]] = {name: {"peak_gib": None} for name in runners}
        images: dict[str, dict[int, bytes]] = {name: {} for name in runners}

        def timed(name: str, seed: int) -> float:
            self.peak_reset()
            seconds, data = runners[name](seed)
            images[name][seed] = data
            peak = self.peak_gib()
            if peak is not None:
                rows[name]["peak_gib"] = max(rows[name]["peak_gib"] or 0.0, peak)
            return seconds

        # the backend's first image before the plain script's: in a pair of compile
        # modes, the first to compile pays in full (torch keeps compiled code in memory)
        for name in reversed(runners):
            rows[name]["first_s"] = timed(name, 0)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for seed in range(1, self.args.rounds + 1):
            for name in runners:
                times[name].append(timed(name, seed))
        for name, row in rows.items():
            row |= {
                "min_s": min(times[name]),
                "median_s": statistics.median(times[name]),
                "max_s": max(times[name]),
                "images": images[name],
            }
        return rows

    # -- the rows ---------------------------------------------------------------------

    def run(self) -> None:
        for model in self.args.models:
            modes = [m for m in self.args.modes if self.applies(model, m)]
            for group in GROUPS:
                if chosen := [m for m in group if m in modes]:
                    self.pair(model, chosen)
            for mode in modes:
                if not any(mode in group for group in GROUPS):
                    self.pair(model, [mode])

    def applies(self, model: str, mode: str) -> bool:
        if mode in CUDA_ONLY and not self.cuda:
            return False
        return mode != "fp8" or model == FLUX

    def pair(self, model: str, modes: list[str]) -> None:
        """Time `modes` side by side. The eager group shares one pipeline (the same
        weights, by construction); other rows build their own from the same seed."""
        self.fresh_compiler()
        shared = set(modes) <= set(GROUPS[0])
        with contextlib.ExitStack() as stack:
            runners: dict[str, One] = {}
            built: dict[str, float] = {}
            pipe = None
            for mode in modes:
                if pipe is None or not shared:
                    # offload starts from the CPU, as a loaded-from-disk pipeline would
                    on = "cpu" if mode.startswith("offload") else self.device
                    pipe, built[mode] = self.build(model, on)
                self.note_weights(model, mode, pipe)
                if mode == "plain-thread":
                    worker = stack.enter_context(ThreadPoolExecutor(1))
                    runners[mode] = on_thread(worker, self.plain(model, pipe, compiled=False))
                elif mode.startswith("plain"):
                    runners[mode] = self.plain(model, pipe, compiled=mode == "plain-compile")
                else:
                    runners[mode] = stack.enter_context(self.backend(model, mode, pipe))
            del pipe
            rows = self.interleaved(runners)
        for mode in modes:
            row = rows[mode] | {"model": model, "mode": mode, "tiny": self.args.tiny}
            images = row.pop("images")
            row["build_s"] = built.get(mode)
            row["pipelines_held"] = len(built)
            if mode == "eager":
                self.eager_images.update(((model, seed), data) for seed, data in images.items())
            if mode == "fp8":
                row["psnr_db"] = self.worst_psnr(model, images)
            self.rows.append(row)
            print(format_row(row), flush=True)
        self.fresh_compiler()

    def worst_psnr(self, model: str, images: dict[int, bytes]) -> float | None:
        """fp8 against the eager row's images of the same seeds and weights."""
        pairs = [(self.eager_images.get((model, s)), d) for s, d in images.items()]
        values = [psnr(reference, data) for reference, data in pairs if reference is not None]
        return min(values, default=None)

    def note_weights(self, model: str, mode: str, pipe: Any) -> None:
        """Every row of a model must run the same weights (fp8's PSNR means nothing
        otherwise): a digest of them is compared across rows."""
        digest = weights_digest(pipe)
        known = self.weights.setdefault(model, digest)
        if digest != known:
            self.problems.append(f"{model} {mode}: built with other weights than the first row")

    # -- --check: the invariants, before any timing --------------------------------------

    def check(self) -> None:
        """Same weights from the same seed; the plain script and the backend, given
        the same inputs, make the same image; a backend compile leaves the compiler's
        settings and the process environment as they were."""
        for model in self.args.models:
            first, _ = self.build(model, self.device)
            second, _ = self.build(model, self.device)
            if weights_digest(first) != weights_digest(second):
                self.problems.append(f"{model}: two builds from one seed have other weights")
            del second
            plain = self.plain(model, first, compiled=False)(7)[1]
            with self.backend(model, "eager", first) as ours:
                theirs = ours(7)[1]
            # not always bit-identical: the backend runs on its own thread, where
            # parallel reductions may add up in another order
            if psnr(plain, theirs) < SAME_IMAGE_DB:
                self.problems.append(
                    f"{model}: the plain script and the backend made different images from "
                    f"the same weights and inputs (PSNR {psnr(plain, theirs):.1f} dB)"
                )
            del first
            self.check_compile_leaves_no_trace(model)
            self.fresh_compiler()
        if self.problems:
            raise SystemExit("check failed: " + "; ".join(self.problems))
        print("check passed: same weights, same inputs, same images; compiler state clean")

    def check_compile_leaves_no_trace(self, model: str) -> None:
        """A compile through the backend, then the compiler's settings (checked by
        fresh_compiler) and the environment must be as they were. On the tiny
        pipeline, which costs seconds: on a GPU compile = true with inductor (a
        max-autotune compile would take minutes even there; its options are passed
        to the compile, never set: tests/backends/test_diffusers_options.py), on
        the CPU "tuned" traced by dynamo without inductor."""
        from nebula_build.backends.diffusers import compiling
        from tests.backends import tiny_models

        environment = dict(os.environ)
        backend_before = compiling.COMPILER_BACKEND
        if not self.cuda:
            compiling.COMPILER_BACKEND = "eager"
        try:
            make = tiny_models.sdxl_pipeline if model == SDXL else tiny_models.flux_pipeline
            pipe = make(self.scratch).to(self.device, self.dtype)
            with self.backend(model, "compile" if self.cuda else "tuned", pipe) as ours:
                ours(7)
            del pipe
        finally:
            compiling.COMPILER_BACKEND = backend_before
        changed = sorted(
            k for k in {*environment, *os.environ} if environment.get(k) != os.environ.get(k)
        )
        ours = [k for k in changed if k.startswith(OWNED_VARIABLES)]
        if ours:
            self.problems.append(f"a backend compile left {', '.join(ours)} changed")
        if theirs := [k for k in changed if k not in ours]:
            # torch's own, set once per process whoever compiles (the paths of its
            # bundled ptxas and libdevice, for instance): reported, not a failure
            print(f"set by torch on its first compile: {', '.join(theirs)}", flush=True)


def weights_digest(pipe: Any) -> str:
    """A digest of every weight of the pipeline's models (names, shapes and values)."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, component in sorted(pipe.components.items()):
        if not isinstance(component, torch.nn.Module):
            continue
        for key, tensor in sorted(component.state_dict().items()):
            digest.update(f"{name}.{key}{tuple(tensor.shape)}".encode())
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 4096)][:4096]  # evenly spread values
            digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()


def psnr(reference: bytes, other: bytes) -> float:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(reference)).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(io.BytesIO(other)).convert("RGB"), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def on_thread(worker: ThreadPoolExecutor, run: One) -> One:
    return lambda seed: worker.submit(run, seed).result()


def format_row(row: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        return f"{row[key]:7.3f}s" if row.get(key) is not None else "      -"

    peak = f"{row['peak_gib']:5.1f} GiB" if row.get("peak_gib") is not None else "    - GiB"
    if row.get("peak_gib") is not None and row.get("pipelines_held", 1) > 1:
        peak += f" (the process's, {row['pipelines_held']} pipelines held)"
    extra = []
    if row.get("psnr_db") is not None:
        extra.append(f"PSNR vs eager, same weights (worst image) {row['psnr_db']:.1f} dB")
    goal = None if row.get("tiny") else GOALS.get(row["model"], {}).get(row["mode"])
    if goal is not None:
        extra.append(f"goal ≤ {goal}s (unclaimed until run on the GPU it names)")
    name = row["model"].split("/")[-1]
    return (
        f"{name:26} {row['mode']:14} build {seconds('build_s')}  first {seconds('first_s')}  "
        f"min {seconds('min_s')} median {seconds('median_s')} max {seconds('max_s')}  "
        f"peak {peak}  {'; '.join(extra)}"
    )


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The backend beside the plain script, from rows timed interleaved."""
    lines = []
    by = {(r["model"], r["mode"]): r for r in rows}
    for model in (SDXL, FLUX):
        for *plains, ours in GROUPS:
            b = by.get((model, ours))
            for plain in plains:
                a = by.get((model, plain))
                if a and b:
                    overhead = b["median_s"] / a["median_s"] - 1
                    lines.append(
                        f"{model.split('/')[-1]}: {ours} through the backend vs the plain "
                        f"script ({plain}), medians of {a['rounds']} interleaved rounds: "
                        f"{overhead:+.1%}"
                    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sdxl,flux", help="sdxl, flux or both")
    parser.add_argument("--modes", default=",".join(MODES), help=",".join(MODES))
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds after the warm-up (at least 5)"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test")
    parser.add_argument("--check", action="store_true", help="assert the invariants before timing")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds: a median needs at least 5 rounds")
    args.models = [{"sdxl": SDXL, "flux": FLUX}[m] for m in args.models.split(",")]
    args.modes = [m for m in MODES if m in args.modes.split(",")]
    # The plain script runs on the main thread, the backend on its worker thread: on
    # the CPU, OpenMP threads left spinning by one would slow the other.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    started = time.perf_counter()
    import diffusers
    import torch

    import_s = time.perf_counter() - started
    bench = Bench(args)
    if not args.json:
        device = torch.cuda.get_device_name(bench.device) if bench.cuda else "CPU"
        print(
            f"{device} · torch {torch.__version__} · diffusers {diffusers.__version__} · "
            f"{bench.size}² · {'tiny models' if args.tiny else 'full-size'}, random weights "
            f"seeded {WEIGHTS_SEED} · {args.rounds} interleaved rounds after a warm-up · "
            f"imports {import_s:.1f}s",
            flush=True,
        )
    with stdout_to_stderr(args.json):
        if args.check:
            bench.check()
        bench.run()
    for row in bench.rows:
        row["rounds"] = args.rounds
    if bench.problems:
        raise SystemExit("invariants broken while timing: " + "; ".join(bench.problems))
    if args.json:
        print(json.dumps(bench.rows))
    else:
        for line in summary(bench.rows):
            print(line)


@contextmanager
def stdout_to_stderr(quiet: bool):
    """With --json, the rows go to stdout once, at the end."""
    if not quiet:
        yield
        return
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = stdout


if __name__ == "__main__":
    main()
