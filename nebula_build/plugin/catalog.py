"""Models and the parameters each one takes.

A backend declares, per model id, a `ModelSupport`; validation uses the chosen
backend's declaration so `plan` and `apply` report the same errors. The table
below is the Nebula Block image API's, as its documentation gives it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nebula_build.params import BY_NAME, FILES

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
#: The documentation does not give Seedream's id; this guess is unverified and
#: can be overridden per project (see the nebula backend's settings).
SEEDREAM_DEFAULT_ID = "Bytedance-Seedream-3.0"
#: the field, and its value, that the loopback stand-in for the API
#: (`nebula_build.testing`) adds to each image answer, and the real API never sends:
#: its images are placeholders, and the nebula backend records them as such
STAND_IN_ANSWER = ("served_by", "nebula-build stand-in")


@dataclass(frozen=True, slots=True)
class ModelSupport:
    """What one backend can do with one model: which of the optional parameters
    (`nebula_build.params.OPTIONAL`) it takes; every model takes prompt, width and
    height."""

    id: str
    params: frozenset[str]
    size_multiple: int = 8
    label: str = ""

    def takes(self, param: str) -> bool:
        """Whether the model takes `param`: the one answer to "does this model take a
        seed?" that the resolver, the plan and the backends all use."""
        return param in self.params or BY_NAME[param].universal

    @property
    def inpainting(self) -> bool:
        """Whether the model repaints a masked area of an input image."""
        return all(self.takes(name) for name in FILES)


def nebula_models(seedream_id: str = SEEDREAM_DEFAULT_ID) -> dict[str, ModelSupport]:
    """The Nebula API's models, exactly as the provider's documentation gives them."""
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
