"""The diffusers backend on a GPU: full-size SDXL base 1.0 and FLUX.1 schnell.

Both are built from their published configs with random weights (speed does not
depend on weight values): nothing is downloaded or saved. 1024x1024 images,
SDXL 30 steps with guidance, FLUX.1 schnell 4 steps, batch 1, timed side by side
in one process in these modes:

  plain            the diffusers pipeline called directly, eager: the baseline script
  plain-compile    plain + torch.compile(mode="reduce-overhead"): the best plain script
  eager            through the backend, no options
  compile          compile = true
  tuned            compile = "max-autotune", fuse_qkv = true, channels_last = true
  fp8              (FLUX) compile = true, fuse_qkv, quantize = "fp8"; PSNR against eager
  offload-model    offload = "model"
  offload-seq      offload = "sequential"

Each row: build (random init on the GPU), first image (compile included), the
steady-state median of --steady images, peak GPU memory. With --warm-cache the
compile modes run again in a child process over the same kernel cache: their
first image there is the warm-cache compile cost.

  python bench/gpu_local.py                                  # all modes, both models
  python bench/gpu_local.py --models flux --modes plain,eager,compile --warm-cache
  python bench/gpu_local.py --tiny --device cpu              # a smoke test of this script

Budget: a cold compile takes 1-2 minutes per model; "tuned" (max-autotune) can
take over 7 minutes cold for SDXL. Offload modes build a CPU copy first.

On a lent device machine (its image has torch, transformers, accelerate, but not
diffusers, pydantic or torchao; nothing can be fetched there), carry wheels.
Here, in the repository root:

  echo /.whl/ >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 pydantic pydantic-core \
    annotated-types typing-inspection tomli-w torchao

and there (carry=[".whl"]), one model per call to stay inside 10 minutes:

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 &&
  python3 bench/gpu_local.py --models flux --modes plain,plain-compile,eager,compile,fp8
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX = "black-forest-labs/FLUX.1-schnell"
MODES = (
    "plain",
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


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.torch = torch
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.scratch = Path(tempfile.mkdtemp(prefix="nebula-bench-"))
        self.size = 64 if args.tiny else 1024
        self.eager_images: dict[tuple[str, int], bytes] = {}
        self.psnr_db: list[float] = []
        self.rows: list[dict[str, Any]] = []

    def steps(self, model: str) -> tuple[int, float]:
        if self.args.tiny:
            return 2, 5.0 if model == SDXL else 0.0
        return (30, 5.0) if model == SDXL else (4, 0.0)

    def build(self, model: str, on: Any) -> tuple[Any, float]:
        started = time.perf_counter()
        if self.args.tiny:
            from tests.backends import tiny_models

            make = tiny_models.sdxl_pipeline if model == SDXL else tiny_models.flux_pipeline
            pipe = make(self.scratch).to(on, self.dtype)
        else:
            pipe = (full_sdxl if model == SDXL else full_flux)(self.scratch, on, self.dtype)
        self.sync()
        return pipe, time.perf_counter() - started

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_memory(self) -> None:
        """Each mode starts clean: the last mode's compiled graphs (and the memory
        pools their CUDA graphs hold) go; kernels on disk stay, as for a user."""
        self.torch._dynamo.reset()
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 2**30

    # -- the plain script a user would write ----------------------------------------

    def run_plain(self, model: str, compiled: bool) -> dict[str, Any]:
        torch = self.torch
        self.reset_memory()
        pipe, build_s = self.build(model, self.device)
        pipe.set_progress_bar_config(disable=True)
        if compiled:
            denoiser = pipe.unet if model == SDXL else pipe.transformer
            mode = "reduce-overhead" if self.cuda else "default"
            compiled_module = torch.compile(denoiser, mode=mode, fullgraph=True)
            if model == SDXL:
                pipe.unet = compiled_module
            else:
                pipe.transformer = compiled_module
        steps, guidance = self.steps(model)
        # as FLUX.1 schnell's model card calls it (and the backend does)
        extra = {"max_sequence_length": 256} if model == FLUX else {}

        def one(seed: int) -> float:
            started = time.perf_counter()
            with torch.inference_mode():
                image = pipe(
                    "a lighthouse on a cliff at dusk",
                    **extra,
                    width=self.size,
                    height=self.size,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator("cpu").manual_seed(seed),
                ).images[0]
            image.save(io.BytesIO(), "PNG")
            return time.perf_counter() - started

        row = self.timed(one)
        return {"build_s": build_s, **row}

    # -- through the backend ----------------------------------------------------------

    def run_backend(self, model: str, mode: str) -> dict[str, Any]:
        from nebula_build.backends.diffusers import DiffusersBackend, DiffusersSettings
        from nebula_build.plugin.backend import GenerationRequest

        self.reset_memory()
        offload = mode.startswith("offload")
        # offload starts from the CPU, as a loaded-from-disk pipeline would
        pipe, build_s = self.build(model, "cpu" if offload else self.device)
        settings = DiffusersSettings.model_validate(
            {
                "device": str(self.device),
                "compile_cache": str(self.args.cache),
                **BACKEND_SETTINGS[mode],
            }
        )
        steps, guidance = self.steps(model)
        backend = DiffusersBackend(settings, root=self.scratch)
        compile_cache: dict[str, str] = {}

        async def scenario() -> dict[str, Any]:
            async with backend:
                started = time.perf_counter()
                await backend.adopt(model, pipe)
                adopt_s = time.perf_counter() - started
                loop = asyncio.get_running_loop()

                def one(seed: int) -> float:
                    request = GenerationRequest(
                        image_name=f"bench-{seed}",
                        generation_key=f"{seed:064x}",
                        model=model,
                        prompt="a lighthouse on a cliff at dusk",
                        width=self.size,
                        height=self.size,
                        num_steps=steps,
                        guidance_scale=guidance,
                        seed=seed,
                    )
                    started = time.perf_counter()
                    future = asyncio.run_coroutine_threadsafe(backend.generate(request), loop)
                    result = future.result()
                    seconds = time.perf_counter() - started
                    for key in ("compile_cold", "compile_warm"):
                        if key in result.timings:
                            compile_cache["first_call"] = key.removeprefix("compile_")
                    self.keep_image(model, mode, seed, result.data)
                    return seconds

                row = await asyncio.to_thread(self.timed, one)
                return {"adopt_s": adopt_s, **row}

        row = asyncio.run(scenario())
        return {"build_s": build_s, **row, **compile_cache}

    def keep_image(self, model: str, mode: str, seed: int, data: bytes) -> None:
        """Eager images are the bf16 reference that fp8 images are compared with."""
        if mode == "eager":
            self.eager_images[(model, seed)] = data
        elif mode == "fp8" and (model, seed) in self.eager_images:
            self.psnr_db.append(psnr(self.eager_images[(model, seed)], data))

    def timed(self, one: Any) -> dict[str, Any]:
        first = one(0)
        steady = [one(seed) for seed in range(1, self.args.steady + 1)]
        return {
            "first_s": first,
            "median_s": statistics.median(steady) if steady else None,
            "peak_gib": self.peak_gib(),
        }

    def run(self) -> None:
        for model in self.args.models:
            for mode in self.args.modes:
                if mode in CUDA_ONLY and not self.cuda:
                    continue
                if mode == "fp8" and model != FLUX:
                    continue
                self.psnr_db = []
                if mode.startswith("plain"):
                    row = self.run_plain(model, compiled=mode == "plain-compile")
                else:
                    row = self.run_backend(model, mode)
                row |= {"model": model, "mode": mode, "tiny": self.args.tiny}
                if self.psnr_db:
                    row["psnr_db"] = min(self.psnr_db)
                self.rows.append(row)
                print(format_row(row), flush=True)
                gc.collect()


def psnr(reference: bytes, other: bytes) -> float:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(reference)).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(io.BytesIO(other)).convert("RGB"), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def format_row(row: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        return f"{row[key]:7.3f}s" if row.get(key) is not None else "      -"

    peak = f"{row['peak_gib']:5.1f} GiB" if row.get("peak_gib") is not None else "    - GiB"
    extra = []
    if "first_call" in row:
        extra.append(f"{row['first_call']} compile cache")
    if "psnr_db" in row:
        extra.append(f"PSNR vs bf16 (worst image) {row['psnr_db']:.1f} dB")
    goal = None if row.get("tiny") else GOALS.get(row["model"], {}).get(row["mode"])
    if goal is not None and row.get("median_s") is not None:
        extra.append(f"goal ≤ {goal}s: {'met' if row['median_s'] <= goal else 'NOT met'}")
    name = row["model"].split("/")[-1]
    return (
        f"{name:26} {row['mode']:15} build {seconds('build_s')}  first {seconds('first_s')}  "
        f"median {seconds('median_s')}  peak {peak}  {'; '.join(extra)}"
    )


def summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    by = {(r["model"], r["mode"]): r for r in rows}
    for model in (SDXL, FLUX):
        plain, eager = by.get((model, "plain")), by.get((model, "eager"))
        if plain and eager and plain["median_s"] and eager["median_s"]:
            overhead = eager["median_s"] / plain["median_s"] - 1
            verdict = "met" if overhead <= 0.03 else "NOT met"
            lines.append(
                f"{model.split('/')[-1]}: backend eager overhead over plain diffusers "
                f"{overhead:+.1%} (goal ≤ 3%: {verdict})"
            )
    return lines


def warm_cache_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The compile modes again, in a new process over the same kernel cache."""
    modes = [m for m in args.modes if m in ("plain-compile", "compile", "tuned", "fp8")]
    if not modes:
        return []
    command = [
        sys.executable,
        __file__,
        "--models",
        args.model_names,
        "--modes",
        ",".join(modes),
        "--steady",
        "1",
        "--device",
        args.device,
        "--cache",
        str(args.cache),
        "--json",
    ] + (["--tiny"] if args.tiny else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    for row in rows:
        row["mode"] += " (warm)"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="sdxl,flux", help="sdxl, flux or both")
    parser.add_argument("--modes", default=",".join(MODES), help=",".join(MODES))
    parser.add_argument("--steady", type=int, default=5, help="images for the median")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test")
    parser.add_argument("--cache", type=Path, help="kernel cache (default: a fresh one)")
    parser.add_argument("--warm-cache", action="store_true", help="also time a warm cache")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    args.model_names = args.models
    args.models = [{"sdxl": SDXL, "flux": FLUX}[m] for m in args.models.split(",")]
    args.modes = [m for m in MODES if m in args.modes.split(",")]
    args.cache = args.cache or Path(tempfile.mkdtemp(prefix="nebula-inductor-"))
    # every compile in this process, plain or backend, uses (and fills) this cache
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(args.cache)
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
            f"{bench.size}² · {'tiny models' if args.tiny else 'full-size, random weights'} · "
            f"imports {import_s:.1f}s · kernel cache {args.cache}",
            flush=True,
        )
    with stdout_to_stderr(args.json):
        bench.run()
    rows = bench.rows
    if args.warm_cache:
        warm = warm_cache_rows(args)
        for row in warm:
            print(format_row(row), flush=True)
        rows += warm
    if args.json:
        print(json.dumps(rows))
    else:
        for line in summary(rows):
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
