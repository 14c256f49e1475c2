"""The pipelines the diffusers backend runs, and what each takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nebula_build.plugin import FLUX_FILL, FLUX_SCHNELL, SDXL, ModelSupport

KindName = Literal["sdxl", "flux", "flux-fill"]


@dataclass(frozen=True, slots=True)
class PipelineKind:
    """One diffusers pipeline class and the defaults a generation uses with it."""

    name: KindName
    pipeline_class: str
    denoiser: str
    params: frozenset[str]
    size_multiple: int
    default_steps: int
    default_guidance: float
    #: T5 prompt length for FLUX pipelines; None where the pipeline has no T5
    max_sequence_length: int | None
    label: str

    def support(self, model_id: str, label: str = "") -> ModelSupport:
        return ModelSupport(model_id, self.params, self.size_multiple, label or self.label)


KINDS: dict[str, PipelineKind] = {
    kind.name: kind
    for kind in (
        PipelineKind(
            "sdxl",
            "StableDiffusionXLPipeline",
            "unet",
            frozenset({"negative_prompt", "num_steps", "guidance_scale", "seed"}),
            size_multiple=8,
            default_steps=30,
            default_guidance=5.0,
            max_sequence_length=None,
            label="SDXL base 1.0 (local)",
        ),
        PipelineKind(
            "flux",
            "FluxPipeline",
            "transformer",
            frozenset({"num_steps", "guidance_scale", "seed"}),
            size_multiple=16,
            default_steps=4,
            default_guidance=0.0,
            max_sequence_length=256,
            label="FLUX.1 schnell (local)",
        ),
        PipelineKind(
            "flux-fill",
            "FluxFillPipeline",
            "transformer",
            frozenset({"num_steps", "guidance_scale", "seed", "image", "mask"}),
            size_multiple=16,
            default_steps=50,
            default_guidance=30.0,
            max_sequence_length=512,
            label="FLUX.1 Fill dev (local inpainting)",
        ),
    )
}

#: The seed's open models and the pipeline each one runs in.
KNOWN_MODELS: dict[str, KindName] = {SDXL: "sdxl", FLUX_SCHNELL: "flux", FLUX_FILL: "flux-fill"}
