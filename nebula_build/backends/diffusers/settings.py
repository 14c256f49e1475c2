"""`[backends.diffusers]`: the settings, the models a project names itself, hints.

Standard library and pydantic only: `plan` and preflight read these without
importing torch.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nebula_build.backends.diffusers.kinds import KINDS, KNOWN_MODELS, KindName, PipelineKind
from nebula_build.plugin import BackendSettings, RequestRejectedError
from nebula_build.text import model_id_problem

#: what to do when `quantize = "fp8"` is set without torchao
FP8_NEEDS_TORCHAO = 'quantize = "fp8" needs torchao: pip install torchao'


class LocalModel(BaseModel):
    """A model this project names itself: a fine-tune, a merge, a local copy."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    path: str = Field(description="The diffusers folder (with model_index.json).")
    pipeline: KindName = Field(description="Which pipeline runs it: sdxl, flux or flux-fill.")


class DiffusersSettings(BackendSettings):
    """`[backends.diffusers]`."""

    model_config = ConfigDict(defer_build=True)  # built when a project uses it

    concurrency: int = Field(
        1, ge=1, le=256, description="Images queued at once; the GPU runs one at a time."
    )
    timeout: float = Field(
        1800.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="Seconds one generation may denoise before it gives up.",
    )
    device: str = Field(
        "cuda", description='"cuda", "cuda:N", "mps" (Apple silicon) or "cpu" (slow: for tests).'
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="auto: bfloat16 on GPUs that have it, else float16 (and on mps); "
        "float32 on the CPU.",
    )
    models: dict[str, str | LocalModel] = Field(
        default_factory=dict,
        description="Model id -> diffusers folder (relative to images.toml's folder), or "
        "{ path, pipeline } for a model of your own. Default: the Hugging Face cache.",
    )
    allow_download: bool = Field(
        False, description="Download a model missing from disk from the Hugging Face hub."
    )
    compile: Literal[False, True, "regional", "max-autotune"] = Field(
        False,
        description="torch.compile the UNet/transformer: true (CUDA graphs), "
        '"regional" (repeated blocks only: compiles fast) or "max-autotune" (slowest '
        "compile, fastest images). Compiled kernels are cached in compile_cache.",
    )
    compile_cache: str = Field(
        "",
        description="Where compiled kernels are kept: outside the project and the git "
        "checkout that holds it (they are code a pull request must not be able to supply). "
        "Default: "
        "$XDG_CACHE_HOME/nebula-build/inductor, shared by every project.",
    )
    fuse_qkv: bool = Field(False, description="Fuse attention's Q, K, V projections.")
    channels_last: bool = Field(False, description="channels_last memory for the VAE and UNet.")
    quantize: Literal["fp8"] | None = Field(
        None, description='"fp8": float8 transformer/UNet via torchao (Ada/Hopper GPUs).'
    )
    offload: Literal["model", "sequential"] | None = Field(
        None,
        description='Keep weights in CPU memory: "model" moves whole models to the GPU as '
        'needed, "sequential" layer by layer (least memory, slowest).',
    )
    max_memory_gib: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="GPU memory the loaded pipelines may hold; least recently used ones are "
        "unloaded to stay under it. Default: what the GPU has free.",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _known_compile(cls, value: object) -> object:
        if not (isinstance(value, bool) or value in ("regional", "max-autotune")):
            raise ValueError('must be true, false, "regional" or "max-autotune"')
        return value

    @field_validator("models")
    @classmethod
    def _model_ids(cls, value: dict[str, str | LocalModel]) -> dict[str, str | LocalModel]:
        for model in value:
            if (problem := model_id_problem(model)) is not None:
                raise ValueError(f"keys are model ids: {problem}")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"cuda(:\d+)?|mps|cpu", value):
            raise ValueError('must be "cuda", "cuda:N" (a GPU\'s index), "mps" or "cpu"')
        return value


def kind_of(settings: DiffusersSettings, model_id: str) -> PipelineKind:
    declared = settings.models.get(model_id)
    if isinstance(declared, LocalModel):
        return KINDS[declared.pipeline]
    if model_id in KNOWN_MODELS:
        return KINDS[KNOWN_MODELS[model_id]]
    raise RequestRejectedError(
        f"the diffusers backend does not know model {model_id!r}", backend="diffusers"
    )


def made_with(settings: DiffusersSettings) -> dict[str, str]:
    """The settings that change an image's pixels, as the lock records them: known
    from the settings alone (dtype "auto" is decided by the device, so it is left to
    the runtime's record)."""
    record = {
        "device": settings.device.split(":")[0],
        "quantize": settings.quantize or "none",
        "fuse_qkv": str(settings.fuse_qkv).lower(),
        "compile": str(settings.compile).lower(),
    }
    if settings.dtype != "auto":
        record["dtype"] = settings.dtype
    return record
