"""Source of a third-party backend plugin used by the tests.

It is installed into a temporary site folder as its own distribution
(`nebula-build-fake`), so it is found through the real entry-point path, and
like any third party it imports nothing of nebula-build but `nebula_build.plugin`.
"""

FAKE_BACKEND_SOURCE = """
import asyncio
import json
import os
import time

from pydantic import Field

from nebula_build.plugin import (
    Backend,
    BackendSettings,
    GenerationResult,
    RequestRejectedError,
    hookimpl,
    nebula_models,
)


def render(request):
    # A real PNG of the requested size, its colour from the key: same request, same bytes.
    import hashlib, io
    from PIL import Image

    color = tuple(hashlib.sha256(request.generation_key.encode()).digest()[:3])
    buffer = io.BytesIO()
    Image.new("RGB", (request.width, request.height), color).save(buffer, "PNG")
    return buffer.getvalue()


class FakeSettings(BackendSettings):
    delay: float = Field(0.0, description="seconds each generation takes")
    fail: list[str] = Field(default_factory=list, description="images that fail")
    log: str = Field("", description="file that gets one JSON line per generation")
    watch: str = Field("", description="a file watch mode should follow")
    provenance: dict[str, str] = Field(default_factory=dict, description="the made_with record")
    derive_seed: bool = Field(False, description="report a seed from the key where none is set")


class FakeBackend(Backend):
    name = "fake"
    settings_model = FakeSettings

    @classmethod
    def models(cls, settings):
        return nebula_models()

    @classmethod
    def watched_files(cls, settings, root):
        return [root / settings.watch] if settings.watch else []

    async def __aenter__(self):
        if self.settings.log:
            with open(self.settings.log, "a") as log:
                log.write(json.dumps({"opened": os.getpid()}) + "\\n")
        return self

    async def generate(self, request):
        settings = self.settings
        if settings.log:
            with open(settings.log, "a") as log:
                log.write(json.dumps({"image": request.image_name, "pid": os.getpid(),
                                      "start": time.time()}) + "\\n")
        await asyncio.sleep(settings.delay)
        if request.image_name in settings.fail:
            raise RequestRejectedError(f"{request.image_name} refused on purpose",
                                       backend="fake", image=request.image_name)
        seed = request.seed
        if seed is None and settings.derive_seed:
            seed = int(request.generation_key[:8], 16)
        data = await asyncio.to_thread(render, request)
        return GenerationResult(data, seed=seed, made_with=settings.provenance)


@hookimpl
def nebula_build_register_backends():
    return [FakeBackend]
"""
