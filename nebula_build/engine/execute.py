"""Run a plan: backends opened on first use, the lock writer, the Applier.

Kept apart from `prepare.py` so that commands which only plan never import
asyncio or the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import operator
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from nebula_build.core.plan import Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.apply import Applier, ApplyResult, GenerateFn, ProgressSink
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import PluginAnswerError, PluginError, TransientBackendError
from nebula_build.plugin.backend import (
    ActivityCallback,
    Backend,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
    HeldCallback,
    StepCallback,
)
from nebula_build.plugin.manager import BackendPlugin
from nebula_build.plugin.redaction import secret_in_record, shown_safely
from nebula_build.state.lockfile import Entries, LockWriter
from nebula_build.state.remote import Remote
from nebula_build.text import made_with_problem, printable


def concurrency_limits(prepared: Prepared, parallelism: int | None) -> dict[str, int]:
    return {
        name: parallelism or settings.concurrency
        for name, settings in prepared.resolved.settings.items()
    }


class OpenBackends:
    """Backends opened on first use, kept open, and closed together.

    Opening lazily means a plan that only restores from the cache never needs a
    backend's credentials. Watch mode keeps one of these across rounds, so a
    local model loads once. Every call into a backend goes through its plugin's
    `blame`, so a third-party crash names the plugin.
    """

    def __init__(
        self,
        plugins: Mapping[str, BackendPlugin],
        settings: Mapping[str, BackendSettings],
        *,
        root: Path,
    ) -> None:
        self.root = root
        self._plugins = dict(plugins)
        self._settings = dict(settings)
        self._opening = asyncio.Lock()
        #: the last time each backend did not open within its timeout, by name
        self._stuck: dict[str, TransientBackendError] = {}
        self.instances: dict[str, Backend] = {}
        #: what went wrong closing them at the end: after every image was recorded
        self.closing_failures: list[str] = []

    async def __aenter__(self) -> OpenBackends:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in list(self.instances):  # one failing close stops no other
            try:
                await self._close(name)
            except PluginError as error:
                self.closing_failures.append(f"{error} (its images are written and recorded)")

    async def _close(self, name: str) -> None:
        """Close `name` within its timeout, as it was opened: one that never closes would
        keep the run (and every later command's project lock) waiting for good."""
        backend = self.instances.pop(name)
        plugin = self._plugins[name]
        timeout = None if plugin.keeps_timeout else self._settings[name].timeout
        try:
            async with asyncio.timeout(timeout):
                with plugin.blame("closing", secrets=self._secrets(name).values()):
                    await backend.__aexit__(None, None, None)
        except TimeoutError:
            if timeout is None:
                raise
            raise PluginError(
                f"backend {name!r} from {plugin.source} did not close within {timeout:g}s; "
                f"raise [backends.{name}] timeout if closing it takes longer"
            ) from None

    def _secrets(self, name: str) -> dict[str, str]:
        """The values of the backend's secret variables: read at each call, a few lookups
        beside a generation, so an edited manifest's settings always count."""
        return self._plugins[name].secrets(self._settings[name])

    async def update(
        self, plugins: Mapping[str, BackendPlugin], settings: Mapping[str, BackendSettings]
    ) -> None:
        """New settings from an edited manifest: a backend whose settings changed is
        closed now (freeing what it holds, a GPU's memory say) and opened again on
        its next use."""
        for name, value in settings.items():
            if self._settings.get(name) != value and name in self.instances:
                await self._close(name)
        self._plugins.update(plugins)
        self._settings.update(settings)

    async def get(self, name: str) -> Backend:
        if name not in self.instances:
            stuck_before = self._stuck.get(name)
            async with self._opening:
                stuck = self._stuck.get(name)
                if name not in self.instances and stuck is not stuck_before and stuck:
                    raise stuck  # it did not open while this image waited: nor would it now
                if name not in self.instances:
                    plugin = self._plugins[name]
                    backend = plugin.create(self._settings[name], self.root)
                    with plugin.blame("opening", secrets=self._secrets(name).values()):
                        self.instances[name] = await self._opened(plugin, backend)
        return self.instances[name]

    async def _opened(self, plugin: BackendPlugin, backend: Backend) -> Backend:
        """`backend` opened within its timeout, as a generation is: one that never opens
        fails the image that asked, and the round asks it no more (it `halts`)."""
        timeout = None if plugin.keeps_timeout else self._settings[plugin.name].timeout
        try:
            async with asyncio.timeout(timeout):
                return await backend.__aenter__()
        except TimeoutError:
            if timeout is None:
                raise
            error = TransientBackendError(
                f"{plugin.name} did not open within {timeout:g}s; raise "
                f"[backends.{plugin.name}] timeout if opening it takes longer",
                backend=plugin.name,
            )
            error.halts = True  # each image would wait as long again, one after another
            self._stuck[plugin.name] = error
            raise error from None

    async def generate(self, spec: AssetSpec, request: GenerationRequest) -> GenerationResult:
        """One generation, through the plugin's boundary: what the backend says (its
        errors, warnings, progress) comes back as printable lines without its secrets,
        and a result whose shape or provenance record is wrong is its bug."""
        backend = await self.get(spec.backend)
        plugin = self._plugins[spec.backend]
        secrets = self._secrets(spec.backend)
        timeout = None if plugin.keeps_timeout else self._settings[spec.backend].timeout
        request = _callbacks_checked(request, secrets.values())
        try:
            async with asyncio.timeout(timeout):
                result = await plugin.awaited(
                    "generate", lambda: backend.generate(request), secrets=secrets.values()
                )
        except TimeoutError:
            if timeout is None:
                raise
            raise _timed_out(plugin, spec, timeout) from None
        problem = _malformed(result) or _secret_recorded(result, secrets)
        if problem is not None:
            raise PluginAnswerError(
                f"backend {plugin.name!r} from {plugin.source} returned {problem} "
                "(a bug in that plugin: report it to its authors)"
            )
        result = _shown_warnings(result, plugin.name, secrets.values())
        stamped = plugin.with_source(result.made_with)
        return (
            result
            if stamped == result.made_with
            else dataclasses.replace(result, made_with=stamped)
        )


def _timed_out(plugin: BackendPlugin, spec: AssetSpec, timeout: float) -> TransientBackendError:
    """A generation cancelled at its timeout; a paid backend's may have been billed (the
    server's work goes on, its answer is lost), which the user must hear."""
    name = spec.backend
    billed = (
        f": {name} bills its generations, so it may have billed this one" if plugin.paid else ""
    )
    return TransientBackendError(
        f"no image from {name} within {timeout:g}s{billed}; raise [backends.{name}] timeout "
        "if generations take longer",
        backend=name,
        image=spec.name,
    )


def _callbacks_checked(request: GenerationRequest, secrets: Collection[str]) -> GenerationRequest:
    """`request` with progress callbacks that pass on only what the status line can say:
    a backend's wrong types would fail there, in the event loop's thread."""
    changes: dict[str, Any] = {}
    if request.on_activity is not None:
        changes["on_activity"] = _redacting(request.on_activity, secrets)
    if request.on_step is not None:
        changes["on_step"] = _counting(request.on_step)
    if request.on_held is not None:
        changes["on_held"] = _holding(request.on_held)
    return dataclasses.replace(request, **changes) if changes else request


def _counting(report: StepCallback) -> StepCallback:
    """`report` given whole step counts: a numpy or torch integer as an int, a step past
    the total (a scheduler's extra one) as the last; anything else is not said."""

    def counted(done: int, total: int) -> None:
        whole_done, whole_total = _whole(done), _whole(total)
        if whole_done is None or whole_total is None:
            return
        if whole_done >= 0 and 0 <= whole_total <= MAX_STEPS:
            report(min(whole_done, whole_total), whole_total)

    return counted


def _whole(count: object) -> int | None:
    """`count` as an int where it is a whole number of any integer type (not a bool)."""
    if isinstance(count, bool):
        return None
    try:
        return operator.index(count)  # type: ignore[arg-type]
    except Exception:  # a plugin's own type may fail in any way
        return None


def _holding(report: HeldCallback) -> HeldCallback:
    def held(holding: bool) -> None:
        if type(holding) is bool:
            report(holding)

    return held


def _redacting(report: ActivityCallback, secrets: Collection[str]) -> ActivityCallback:
    """`report` given the backend's activity without its secrets; anything but a string
    is not said (the status line would fail on it, in the event loop's thread)."""

    def redacted(text: str) -> None:
        if isinstance(text, str):
            report(shown_safely(text, secrets))

    return redacted


def _secret_recorded(result: GenerationResult, secrets: Mapping[str, str]) -> str | None:
    problem = secret_in_record(result.made_with, secrets) if secrets else None
    return None if problem is None else f"a made_with record that {problem}"


def _shown_warnings(
    result: GenerationResult, backend: str, secrets: Collection[str]
) -> GenerationResult:
    """The warnings as the terminal, --json and the gallery show them: printable lines
    without the backend's secrets, `MAX_WARNINGS` of them at most."""
    warnings = tuple(shown_safely(w, secrets) for w in result.warnings[:MAX_WARNINGS])
    if len(result.warnings) > MAX_WARNINGS:
        more = len(result.warnings) - MAX_WARNINGS
        warnings += (f"… and {more:,} more warnings from {backend} (not shown)",)
    if warnings == tuple(result.warnings):
        return result
    return dataclasses.replace(result, warnings=warnings)


#: the most steps a progress report may count (a backend's own, beyond `num_steps`)
MAX_STEPS = 100_000
#: warnings shown of one generation: a backend's 100,000 took 100 MB of the terminal
MAX_WARNINGS = 20
#: a seed is below 2**63: what a TOML integer (images.lock) and a signed 64-bit field hold
SEED_END = 2**63
#: a byte count (peak_memory) is below 2**63 too: what a signed 64-bit field holds
BYTES_END = 2**63


def _shown(value: object) -> str:
    """`value` for a message: short, whatever its size (an int of 5000 digits has no repr
    under Python's default limit)."""
    if type(value) is int and value.bit_length() > 64:
        power = f"2**{value.bit_length() - 1}"
        return f"-{power} or less" if value < 0 else f"{power} or more"
    return printable(repr(value), limit=40)


def _malformed(result: object) -> str | None:
    """What is wrong with a backend's answer, in its own shape (the bytes themselves are
    checked where they are decoded)."""
    if not isinstance(result, GenerationResult):
        return f"{type(result).__name__}, not a GenerationResult"
    if not isinstance(result.data, bytes):
        return "data that is not bytes"
    if result.seed is not None and (
        type(result.seed) is not int or not 0 <= result.seed < SEED_END
    ):
        return f"seed {_shown(result.seed)}, not an integer from 0 to 2**63 - 1"
    if result.peak_memory is not None and (
        type(result.peak_memory) is not int or not 0 <= result.peak_memory < BYTES_END
    ):
        return f"peak_memory {_shown(result.peak_memory)}, not an integer from 0 to 2**63 - 1"
    if not isinstance(result.warnings, tuple | list) or not all(
        isinstance(w, str) for w in result.warnings
    ):
        return "warnings that are not strings"
    timings = result.timings
    if not isinstance(timings, Mapping) or not all(
        isinstance(k, str) and type(v) in (int, float) for k, v in timings.items()
    ):
        return "timings that are not {name: seconds}"
    for name, seconds in timings.items():
        # NaN compares false, so it is refused with inf, -0.5 and an int too big for a float
        if not 0 <= seconds <= sys.float_info.max:
            return (
                f"timing {_shown(name)} of {_shown(seconds)}, not a finite number of seconds from 0"
            )
    made_with = result.made_with
    problem = made_with_problem(dict(made_with) if isinstance(made_with, Mapping) else made_with)
    if problem is not None:
        return f"a made_with record that {problem}"
    return None


async def execute(
    prepared: Prepared,
    plan: Plan,
    lock: Entries,
    *,
    progress: ProgressSink,
    parallelism: int | None = None,
    generate: GenerateFn | None = None,
    backends: OpenBackends | None = None,
    on_start: Callable[[Applier], None] | None = None,
    remote: Remote | None = None,
    planned_only: bool = False,
    paid_as_planned: bool = False,
    keep_outcomes: bool = True,
    force: bool = False,
    applied_plan: str | None = None,
) -> ApplyResult:
    """Run `plan`; the caller holds the project lock. images.lock is left
    consistent whatever happens, cancellation included.

    `backends` keeps backends open across runs (watch mode); by default they are
    opened for this run only. `on_start` receives the Applier (to cancel images);
    `remote` supplies the generations the plan marked, and takes the new ones;
    `planned_only` forbids generations the plan did not count (a failed restore);
    `paid_as_planned` forbids those of paid backends (a plan someone was shown);
    `keep_outcomes` keeps each image's outcome in the result (see `ApplyResult`);
    `force` backs up and overwrites a file changed by hand while the plan ran;
    `applied_plan` is the digest of the saved plan carried out, kept in each entry.
    """
    project = prepared.project
    assert prepared.inputs is not None, "prepare(read_inputs=True) for apply"
    writer = LockWriter(project, lock)
    resolved = prepared.resolved
    opened: OpenBackends | None = None  # what this run opens, and closes at its end
    try:
        async with contextlib.AsyncExitStack() as stack:
            if backends is None:
                opened = OpenBackends(resolved.backends, resolved.settings, root=project.root)
                backends = await stack.enter_async_context(opened)
            else:
                await backends.update(resolved.backends, resolved.settings)
            applier = Applier(
                project,
                generate=generate or backends.generate,
                limits=concurrency_limits(prepared, parallelism),
                writer=writer,
                files=prepared.files,
                store=prepared.store,
                inputs=prepared.inputs,
                progress=progress,
                guard=prepared.guard,
                remote=remote,
                planned_only=planned_only,
                unplanned_refused=frozenset(
                    name for name, backend in resolved.backends.items() if backend.paid
                )
                if paid_as_planned
                else frozenset(),
                keep_outcomes=keep_outcomes,
                force=force,
                lock=lock,
                applied_plan=applied_plan,
            )
            if on_start is not None:
                on_start(applier)
            result = await applier.run(plan)
    finally:
        writer.close()
        prepared.files.save()
    result.lock = writer.entries
    if opened is not None:
        result.notes.extend(opened.closing_failures)
    return result
