"""A complete nebula-build backend: flat-colour images, one colour per generation key.

Install it (`pip install ./examples/plugin-backend`) and a manifest can say
`backend = "solid"` and `model = "solid/flat"`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Mapping

from pydantic import Field

from nebula_build.plugin import (
    Backend,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
    ModelSupport,
    RequestRejectedError,
    hookimpl,
)


class SolidSettings(BackendSettings):
    """`[backends.solid]` in images.toml; an unknown key there is a clear error."""

    border: int = Field(0, ge=0, le=64, description="A darker frame this many pixels wide.")


class SolidBackend(Backend):
    """Paints each image one colour, derived from its generation key and seed."""

    name = "solid"  # letters, digits, '-' and '_', starting with a letter or a digit
    settings_model = SolidSettings
    settings: SolidSettings

    @classmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        # Every model takes prompt, width and height; list the optional parameters
        # it takes too. A manifest setting any other one is told so, by name.
        return {"solid/flat": ModelSupport("solid/flat", frozenset({"seed"}), label="Flat colour")}

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if "forbidden" in request.prompt:  # how a backend refuses: an error of the contract
            raise RequestRejectedError("solid will not paint that", backend=self.name)
        data = await asyncio.to_thread(self._paint, request)  # keep the event loop free
        return GenerationResult(data, seed=request.seed)

    def _paint(self, request: GenerationRequest) -> bytes:
        from PIL import Image, ImageDraw

        material = f"{request.generation_key}:{request.seed}".encode()
        red, green, blue = hashlib.sha256(material).digest()[:3]
        image = Image.new("RGB", (request.width, request.height), (red, green, blue))
        if self.settings.border:
            frame = (red // 2, green // 2, blue // 2)
            box = (0, 0, request.width - 1, request.height - 1)
            ImageDraw.Draw(image).rectangle(box, outline=frame, width=self.settings.border)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()


@hookimpl
def nebula_build_register_backends() -> list[type[Backend]]:
    return [SolidBackend]
