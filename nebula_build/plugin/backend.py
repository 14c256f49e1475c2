"""The backend contract: one `GenerationRequest` in, one encoded image out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nebula_build.plugin.catalog import ModelSupport


class BackendSettings(BaseModel):
    """Settings every backend understands, from `[backends.<name>]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(4, ge=1, le=256, description="Images generated at once.")
    timeout: float = Field(120.0, gt=0, description="Seconds before one generation gives up.")


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything a backend needs to make one image. Inputs are the exact bytes hashed
    into the key."""

    image_name: str
    generation_key: str
    model: str
    prompt: str
    width: int
    height: int
    negative_prompt: str | None = None
    num_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    image: bytes | None = None
    mask: bytes | None = None
    #: called with (steps done, steps in all) as a local model denoises; any thread
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)
    #: called with what the backend is busy with before it can start ("loading …");
    #: any thread
    on_activity: Callable[[str], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The original bytes a backend produced (PNG, JPEG or WebP) and what it knows."""

    data: bytes
    seed: int | None = None
    #: seconds, e.g. {"inference": 1.9, "request": 2.3}; reported, never locked
    timings: Mapping[str, float] = field(default_factory=dict)
    #: things the user should know, e.g. the image came back at another size
    warnings: tuple[str, ...] = ()
    #: bytes of accelerator memory at the generation's peak, where the backend knows it
    peak_memory: int | None = None


class Backend(ABC):
    """Base class for backends. Subclasses set `name`, may set `settings_model`,
    declare `models()` and implement `generate()`.

    The engine opens a backend once per apply (or once per watch session) with
    `async with`, then calls `generate` concurrently up to `settings.concurrency`.
    Before opening it sets `project_root`, the folder holding images.toml.
    """

    name: ClassVar[str]
    settings_model: ClassVar[type[BackendSettings]] = BackendSettings
    project_root: Path | None = None

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings

    @classmethod
    @abstractmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        """The models this backend can run and the parameters each takes."""

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> BackendSettings:
        """Validate `[backends.<name>]`; pydantic errors are mapped by the caller."""
        return cls.settings_model.model_validate(dict(raw))

    @classmethod  # noqa: B027 (an optional hook: doing nothing is the right default)
    def preflight(cls, settings: BackendSettings, root: Path) -> None:
        """Check, before any work starts, that this backend can run (credentials,
        weights on disk…); raise a BackendError saying what to do if not. `root` is
        the folder holding images.toml."""

    @classmethod
    def watched_files(cls, settings: BackendSettings, root: Path) -> list[Path]:
        """Files whose change should make `nebula-build watch` run again (a LoRA, a
        prompt library…). None by default."""
        return []

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Make one image. Raise `BackendError` subclasses for failures."""
