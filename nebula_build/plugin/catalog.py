"""Models and the parameters each one takes.

A backend declares, per model id, a `ModelSupport`; validation uses the chosen
backend's declaration so `plan` and `apply` report the same errors. The table
below is the Nebula Block image API's, as its documentation gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Parameters that a model may or may not take. `prompt`, `width` and `height`
#: are taken by every model.
OPTIONAL_PARAMS: tuple[str, ...] = (
    "negative_prompt",
    "num_steps",
    "guidance_scale",
    "seed",
    "image",
    "mask",
)

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
#: The documentation does not give Seedream's id; this guess is unverified and
#: can be overridden per project (see the nebula backend's settings).
SEEDREAM_DEFAULT_ID = "Bytedance-Seedream-3.0"

MIN_SIZE = 64
MAX_SIZE = 2048


@dataclass(frozen=True, slots=True)
class ModelSupport:
    """What one backend can do with one model."""

    id: str
    params: frozenset[str]
    size_multiple: int = 8
    label: str = ""

    @property
    def inpainting(self) -> bool:
        """Whether the model repaints a masked area of an input image."""
        return "image" in self.params

    @property
    def takes_seed(self) -> bool:
        return "seed" in self.params


def nebula_models(seedream_id: str = SEEDREAM_DEFAULT_ID) -> dict[str, ModelSupport]:
    """The Nebula API's models, exactly as DESIGN §7's table."""
    models = [
        ModelSupport(
            SDXL,
            frozenset({"negative_prompt", "num_steps", "guidance_scale"}),
            label="SDXL base 1.0",
        ),
        ModelSupport(
            FLUX_SCHNELL, frozenset({"num_steps", "guidance_scale", "seed"}), label="FLUX.1 schnell"
        ),
        ModelSupport(seedream_id, frozenset({"guidance_scale"}), label="Seedream 3.0"),
        ModelSupport(
            FLUX_FILL,
            frozenset({"num_steps", "guidance_scale", "image", "mask"}),
            size_multiple=16,
            label="FLUX.1 Fill dev (inpainting)",
        ),
    ]
    return {m.id: m for m in models}
