"""The backend contract: one `GenerationRequest` in, one encoded image out.

A backend's life, as the engine drives it:

1. `parse_settings(raw)` validates `[backends.<name>]` (a `settings_model`).
2. `models(settings)` declares the models it runs and the parameters each takes;
   `validate` and `plan` check manifests against it without opening anything.
   `secret_variables(settings)` names the environment variables holding its
   secrets: their values are redacted from whatever it says.
3. `preflight(settings, root)` runs before any work of an apply or a watch round
   that will generate with it: raise a `BackendError` saying what to do if the
   backend cannot run here (a key not set, weights not on disk).
4. `Backend(settings, root=...)` then `async with backend:` opens it once per apply
   (once per session in watch mode); `root` is the folder holding images.toml.
5. `generate(request)` runs concurrently, up to `settings.concurrency` at a time.
   It reports progress through `request.on_step` / `request.on_activity`, never by
   printing, and may be cancelled (watch mode, Ctrl-C) at any await. A paid backend
   that holds requests back before sending them says so through `request.on_held`.

A backend whose generations cost money sets `paid = True`. The plan then estimates
the cost from `prices(settings)` (what the manifest configures) and the provider's
`price_list(settings)` (fetched by `apply`, cached a day); before a paid run,
`apply` asks `balance(settings)` whether the account can pay for it, and on a
terminal asks the user to confirm. All three are optional: a backend that does not
implement them has no known prices and no balance to check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nebula_build.errors import RequestRejectedError
from nebula_build.plugin.catalog import ModelSupport

#: called with (steps done, steps in all) as a local model denoises; from any thread
StepCallback = Callable[[int, int], None]
#: called with what the backend is busy with before it can start ("loading …"); any thread
ActivityCallback = Callable[[str], None]
#: called with True as a paid backend holds a request back before it is sent (its own
#: rate limit, a backoff after a refusal that did no work), False as it lets it go;
#: any thread
HeldCallback = Callable[[bool], None]


class BackendSettings(BaseModel):
    """Settings every backend understands, from `[backends.<name>]`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    concurrency: int = Field(4, ge=1, le=256, description="Images generated at once.")
    timeout: float = Field(
        120.0,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="Seconds before one generation gives up.",
    )


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything a backend needs to make one image. Inputs are the exact bytes hashed
    into the key. The parameters are those of `nebula_build.params.PARAMS`; a model
    that does not take one gets None."""

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
    #: the flat key colour (#RRGGBB) to paint the background with, where the manifest
    #: asks for a transparent background (the prompt asks for it too); a backend that
    #: can return alpha may return a transparent image instead
    background: str | None = None
    on_step: StepCallback | None = field(default=None, compare=False, repr=False)
    on_activity: ActivityCallback | None = field(default=None, compare=False, repr=False)
    #: `on_held(True)` while the backend holds this request back before any try of it
    #: was sent (its own pacing), `on_held(False)` once it lets it go: a run stopped
    #: while it is held does not say it may have been billed. A backend that never
    #: calls it has each request counted as sent from the moment it is handed one.
    on_held: HeldCallback | None = field(default=None, compare=False, repr=False)
    #: whether a paid request that failed after reaching the server (a timeout, a cut-off
    #: or garbled answer, a server error) may be sent again: a second try may be billed
    #: too. False in a capped apply (--max-cost, --max-generations, --locked), which
    #: must not pay more than its plan counted; a rate limit or a refused connection
    #: did no work and is retried either way.
    retry_after_send: bool = field(default=True, compare=False)


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """The original bytes a backend produced (PNG, JPEG or WebP) and what it knows."""

    data: bytes
    #: the seed the image was made with, where the backend knows it
    seed: int | None = None
    #: seconds, e.g. {"inference": 1.9, "request": 2.3}; reported, never locked
    timings: Mapping[str, float] = field(default_factory=dict)
    #: things the user should know, e.g. the image came back at another size
    warnings: tuple[str, ...] = ()
    #: bytes of accelerator memory at the generation's peak, where the backend knows it
    peak_memory: int | None = None
    #: what made these pixels beyond the spec, e.g. {"weights": "hf:1a2b…", "dtype":
    #: "bfloat16"}: recorded in the lock entry as provenance, never part of a key
    #: (lowercase names, short printable values; see `Backend.made_with`)
    made_with: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OnDisk:
    """A `made_with` value that files outside the project decide (a local model's
    weights), as `plan` can learn it without loading anything: see
    `Backend.made_with_on_disk`."""

    #: absolute paths of everything the value depends on: the files it reads, the
    #: folders it lists (an entry added or removed changes a folder's signature) and
    #: the paths it looked for and did not find (one appearing is a change)
    paths: tuple[str, ...]
    #: computes the value from those files, or None where they are not there (a
    #: machine without the weights: nothing is noted). The engine keeps the answer
    #: while the stat signatures of `paths` hold, so it may read megabytes.
    compute: Callable[[], str | None]
    #: the environment variables that decided where it looks (HF_HOME…)
    environment: tuple[str, ...] = ()


class Backend(ABC):
    """Base class for backends. Subclasses set `name`, may set `settings_model`,
    declare `models()` and implement `generate()`; the module docstring gives the
    order the engine calls them in."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BackendSettings]] = BackendSettings
    #: whether each generation is billed: `apply` estimates, checks and asks first
    paid: ClassVar[bool] = False
    #: whether `generate` keeps to `settings.timeout` itself (per attempt of several,
    #: say); if not, the engine cancels a `generate` call that runs longer
    keeps_timeout: ClassVar[bool] = False

    def __init__(self, settings: BackendSettings, *, root: Path) -> None:
        self.settings = settings
        #: the folder holding images.toml: relative paths in settings start here
        self.root = root

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
    def secret_variables(cls, settings: BackendSettings) -> Sequence[str]:
        """The environment variables that hold this backend's secrets (an API key, a
        token), as `settings` choose them. The engine takes their values out of
        everything the backend says (its errors, warnings and progress) and refuses a
        `made_with` record that holds one: nebula-build cannot know your token
        otherwise. None by default."""
        return ()

    @classmethod
    def made_with(cls, settings: BackendSettings, model_id: str) -> Mapping[str, str]:
        """The part of `GenerationResult.made_with` that `settings` decide, known
        without loading anything: `plan` notes an image whose lock entry records other
        values ("made with different settings"). Nothing by default."""
        return {}

    @classmethod
    def made_with_on_disk(
        cls, settings: BackendSettings, model_id: str, root: Path
    ) -> Mapping[str, OnDisk]:
        """The part of `GenerationResult.made_with` that files outside the project
        decide (e.g. {"weights": …}), found without loading anything: `plan` notes an
        image whose lock entry records another value, as for `made_with`, and its
        no-op fast path watches each value's `paths`. Only the values an image's lock
        entry records are computed. Nothing by default."""
        return {}

    @classmethod
    def watched_files(cls, settings: BackendSettings, root: Path) -> list[Path]:
        """Files whose change should make `nebula-build watch` run again (a LoRA, a
        prompt library…). None by default."""
        return []

    @classmethod
    async def remote_models(cls, settings: BackendSettings) -> Sequence[Mapping[str, Any]]:
        """What the service behind this backend says it serves, for `nebula-build
        models --remote` (ids, types, prices); raise BackendError if it cannot say."""
        raise RequestRejectedError(f"backend {cls.name!r} has no remote model list")

    @classmethod
    def prices(cls, settings: BackendSettings) -> Mapping[str, float]:
        """The price of one generation per model id, as the settings give it (a paid
        backend's `prices` setting); these win over the provider's list."""
        return {}

    @classmethod
    async def price_list(cls, settings: BackendSettings) -> Mapping[str, float]:
        """The provider's price of one generation per model id, asked by `apply` for a
        paid backend at most once a day (the answer is cached in the project); raise
        BackendError if the provider cannot say. None known by default."""
        return {}

    @classmethod
    async def balance(cls, settings: BackendSettings) -> float | None:
        """What the account can still spend, in the prices' unit, or None where the
        service does not say; raise BackendError if asking fails."""
        return None

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        """Make one image. Raise `BackendError` subclasses for failures."""
