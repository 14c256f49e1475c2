"""The plugin manager, and the typed façade the rest of the code uses instead.

`load_registry()` builds the manager on demand, never at import time: the
built-in backends by dotted name (the way pytest loads its own plugins), then
every `nebula_build` entry point, then `check_pending()` so a misspelt hook is
an error. The rest of the code sees `BackendRegistry` and `BackendPlugin`, never
raw hook results, and every call into a backend's code goes through
`BackendPlugin.blame`: a crash inside a third-party backend is reported with the
distribution that shipped it, not as a bug in nebula-build.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import threading
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from nebula_build.errors import (
    BackendError,
    NebulaBuildError,
    PluginError,
    UnknownBackendError,
    did_you_mean,
    suggestion,
    typed_line,
)
from nebula_build.params import MAX_SIZE, OPTIONAL
from nebula_build.plugin import hookspecs
from nebula_build.plugin.backend import Backend, BackendSettings, OnDisk
from nebula_build.plugin.catalog import ModelSupport
from nebula_build.plugin.redaction import (
    MIN_SECRET,
    declare,
    declared_secrets,
    secret_in_record,
    shown_safely,
)
from nebula_build.text import (
    MADE_WITH_VALUE,
    made_with_problem,
    model_id_problem,
    printable,
    redact,
)

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

ENTRY_POINT_GROUP = "nebula_build"
#: The built-in plugins, loaded by name so that nothing else imports a backend module.
BUILTIN_PLUGINS = (
    "nebula_build.backends.nebula",
    "nebula_build.backends.preview",
    "nebula_build.backends.diffusers",
)
BUILTIN_SOURCE = "nebula-build (built in)"
#: the `made_with` entry naming the plugin distribution, and its version, that made an image
PLUGIN_RECORD = "plugin"

_NOT_INSTALLED = "no installed plugin provides it: install the package that does (docs/plugins.md)"


class _Manager(pluggy.PluginManager):
    """Takes every `nebula_build_*` function of a plugin as a hook implementation,
    marked or not, so `check_pending()` catches a misspelt or unmarked hook."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(hookspecs.HOOK_PREFIX):
            candidate = inspect.getattr_static(plugin, name, None)
            if inspect.isfunction(candidate):
                return {}
        return opts


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin left out: its import, its hooks or its backends' registration
    failed. Which backends it would provide cannot be known without them: its entry
    point's `name` (by convention its backend's) is what a manifest would ask for."""

    name: str
    #: one line naming its distribution and what went wrong
    problem: str

    @property
    def warning(self) -> str:
        """What a command that does not use it says of it."""
        return f"{self.problem}; its backends are left out until it is fixed or uninstalled"


def make_plugin_manager(
    *,
    load_entry_points: bool = True,
    extra_plugins: Iterable[object] = (),
    broken: list[BrokenPlugin] | None = None,
) -> tuple[pluggy.PluginManager, dict[int, str]]:
    """The manager with the built-ins, installed plugins and `extra_plugins`, and the
    distribution ("name version") of each plugin by id(). An installed plugin that fails
    to load or to register is added to `broken` and left out; without `broken` it is an
    error."""
    pm = _Manager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    sources: dict[int, str] = {}
    for dotted in BUILTIN_PLUGINS:
        module = importlib.import_module(dotted)
        pm.register(module, name=dotted)
        sources[id(module)] = BUILTIN_SOURCE
    for plugin in extra_plugins:
        _register(pm, plugin, None, repr(plugin))
        sources[id(plugin)] = repr(plugin)
    if load_entry_points:
        for plugin, source in _entry_point_plugins(pm, broken):
            sources[id(plugin)] = source
    _check_pending(pm, sources, broken)
    return pm, sources


def _check_pending(
    pm: pluggy.PluginManager, sources: Mapping[int, str], broken: list[BrokenPlugin] | None
) -> None:
    """Every `nebula_build_*` function is a hook: an installed plugin's misspelt one
    leaves that plugin out (into `broken`), anyone else's is an error."""
    while True:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            problem = _unknown_hook(exc, sources)
            name = pm.get_name(exc.plugin)
            if broken is None or sources.get(id(exc.plugin)) == BUILTIN_SOURCE or name is None:
                raise PluginError(problem) from None
            pm.unregister(exc.plugin)
            broken.append(BrokenPlugin(name, problem))
        else:
            return


def _entry_point_plugins(
    pm: pluggy.PluginManager, broken: list[BrokenPlugin] | None
) -> Iterator[tuple[object, str]]:
    from importlib.metadata import entry_points

    loaded: dict[str, str] = {}  # entry point name: where it came from
    for point in entry_points(group=ENTRY_POINT_GROUP):
        dist = point.dist
        source = f"{dist.name} {dist.version}" if dist is not None else point.value
        where = f"{source} (entry point {point.name} = {point.value!r})"
        if point.name in loaded or pm.has_plugin(point.name):
            # pluggy would keep the first and drop the other unseen: which backend runs
            # would depend on the order of sys.path
            first = loaded.get(point.name, BUILTIN_SOURCE)
            raise PluginError(
                f"plugin {point.name!r} is provided twice: by {first} and by {where}; "
                "uninstall one of them"
            )
        loaded[point.name] = where
        try:
            plugin = point.load()
            if pm.is_registered(plugin):  # a second entry point of one module: one plugin
                continue
            _register(pm, plugin, point.name, where)
        except Exception as exc:  # its import failed: its error, said once, never ours
            problem = exc if isinstance(exc, PluginError) else None
            said = str(problem) if problem else f"{where} could not be loaded: {_said(exc)}"
            if broken is None:
                raise (problem or PluginError(said)) from exc
            if pm.has_plugin(point.name):  # registered in part: its other hooks go too
                pm.unregister(name=point.name)
            broken.append(BrokenPlugin(point.name, said))
            continue
        yield plugin, source


def _register(pm: pluggy.PluginManager, plugin: object, name: str | None, where: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{where}: {_signature_problem(str(exc))}") from None
    except ValueError as exc:  # the same plugin or name twice
        raise PluginError(f"{where}: {exc}") from None


def _signature_problem(message: str) -> str:
    """pluggy's several-line complaint about a hook's arguments, as one line."""
    hook = re.search(r"for hook '([^']+)'", message)
    asked = re.search(r"Argument\(s\) \{(.*?)\}", message)
    if hook is None or asked is None:
        return " ".join(message.split())
    spec = getattr(hookspecs, hook[1], None)
    offered = ", ".join(inspect.signature(spec).parameters) if spec else ""
    wanted = asked[1].replace("'", "")
    return (
        f"hook {hook[1]} is called with {offered or 'no arguments'}, "
        f"but its implementation asks for {wanted}"
    )


def _unknown_hook(exc: pluggy.PluginValidationError, sources: Mapping[int, str]) -> str:
    source = sources.get(id(exc.plugin), repr(exc.plugin))
    hook = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
    hooks = [name for name in dir(hookspecs) if name.startswith(hookspecs.HOOK_PREFIX)]
    hint = suggestion(hook, hooks) or f"; the hooks are: {', '.join(hooks)}"
    return f"{source}: {hook!r} is not a nebula-build hook{hint}"


class _EndedItsThread(Exception):
    """A SystemExit, KeyboardInterrupt or GeneratorExit a plugin raised in the thread its
    hook ran in: a bug of the plugin's, failing that hook, never the exit of the command
    (SystemExit(0) would end `apply` as done) nor a Ctrl-C no one pressed."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(raised)
        self.raised = raised


def _said(exc: BaseException) -> str:
    if isinstance(exc, _EndedItsThread):
        exc = exc.raised
    return typed_line(exc)


def _message(exc: BaseException) -> str | None:
    """`str(exc)`, or None where a plugin's exception cannot say it: its `__str__` raises
    (what it raises may hold a secret, and is never shown)."""
    try:
        return str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a SystemExit, or a BaseException of its own
        return None


def _a_real_cancel(exc: BaseException) -> bool:
    """Whether `exc` is the running task being cancelled (a timeout, Ctrl-C, an edit that
    made the image obsolete), not a CancelledError a plugin raised on its own: the
    engine would wait for ever for an image that was never cancelled."""
    import asyncio

    if not isinstance(exc, asyncio.CancelledError):
        return False
    try:
        task = asyncio.current_task()
    except RuntimeError:  # a worker thread: no task of ours to cancel there
        return False
    return task is not None and task.cancelling() > 0


@dataclass(frozen=True)
class BackendPlugin:
    """One backend class and the distribution that provides it. Everything the engine
    asks of a backend goes through here."""

    name: str
    cls: type[Backend]
    source: str
    #: absolute paths of the files its code is in (see `_code_files`); none for a built-in
    code: tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        return self.source == BUILTIN_SOURCE

    def with_source(self, record: Mapping[str, str]) -> dict[str, str]:
        """`record`, a provenance record of this backend's, with the distribution and
        version of the plugin that provides it (`plugin = "nebula-acme 1.2.0"`): where
        that is a plugin installed beside nebula-build, the record names none itself
        and has room for it. `plan` then notes an image an older version made."""
        if self.builtin or PLUGIN_RECORD in record:
            return dict(record)
        stamped = {**record, PLUGIN_RECORD: printable(self.source, limit=MADE_WITH_VALUE)}
        return dict(record) if made_with_problem(stamped) is not None else stamped

    def code_signature(self) -> str:
        """Changes when its code is edited in place, with no new version to say so: the
        size and modification time of each file in `code`. A stat or two per file."""
        return ";".join(_file_signature(path) for path in self.code)

    @contextmanager
    def blame(
        self,
        doing: str,
        *,
        expected: tuple[type[Exception], ...] = (),
        secrets: Collection[str] = (),
    ) -> Iterator[None]:
        """Run plugin code: an exception that is not ours (nor `expected`), or its
        sys.exit(), becomes one line naming the plugin's distribution. A built-in's stray
        exception is our bug and stays one. `secrets` (see `secrets`), and every secret
        declared so far, are taken out of whatever message it raises."""
        ours: tuple[type[Exception], ...] = (NebulaBuildError, *expected)
        secrets = sorted(declared_secrets().union(secrets))  # one order: redact caches by it
        try:
            yield
        except ours as exc:
            said = _message(exc)
            if said is None and not self.builtin:  # its own error class, whose __str__ raises
                raise self._failed(doing, exc, secrets) from exc
            if isinstance(exc, BackendError | PluginError) and exc.args:  # one printable line
                exc.args = (shown_safely(said or "", secrets), *exc.args[1:])
            elif isinstance(exc, NebulaBuildError) and secrets and exc.args:
                exc.args = tuple(
                    redact(arg, secrets) if isinstance(arg, str) else arg for arg in exc.args
                )
            raise
        except BaseException as exc:  # a plugin's sys.exit(), or a BaseException of its own
            if self.builtin or isinstance(exc, KeyboardInterrupt) or _a_real_cancel(exc):
                raise
            raise self._failed(doing, exc, secrets) from exc

    async def awaited(
        self,
        doing: str,
        work: Callable[[], Awaitable[T]],
        *,
        secrets: Collection[str] = (),
    ) -> T:
        """`work()`, plugin code, called and awaited under `blame` in a task of its own (a
        plugin may raise before it returns its coroutine). Where that task is cancelled
        and ours is not, the plugin cancelled it (its own task, or a library of its did):
        its failure, which the engine would otherwise take for a bug of ours."""
        import asyncio

        async def blamed() -> T:
            with self.blame(doing, secrets=secrets):
                return await work()

        task = asyncio.ensure_future(blamed())
        try:
            return await task
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if self.builtin or (current is not None and current.cancelling()):
                raise
            shown = sorted(declared_secrets().union(secrets))
            raise self._failed(doing, exc, shown) from None
        finally:
            if not task.done():
                task.cancel()

    def _failed(self, doing: str, exc: BaseException, secrets: Collection[str]) -> PluginError:
        return PluginError(
            f"backend {self.name!r} from {self.source} failed in {doing}: "
            f"{shown_safely(_said(exc), secrets)} "
            "(a bug in that plugin: report it to its authors; NEBULA_BUILD_DEBUG=1 "
            "shows the traceback)"
        )

    def secrets(self, settings: BackendSettings) -> dict[str, str]:
        """The value of each variable its `secret_variables` names that is set here, by
        name: what is taken out of everything it says, and refused in what it records."""
        found = {name: os.environ.get(name, "").strip() for name in self.secret_names(settings)}
        secrets = {name: value for name, value in found.items() if len(value) >= MIN_SECRET}
        declare(secrets.values())
        return secrets

    def secret_names(self, settings: BackendSettings) -> tuple[str, ...]:
        """The variables its `secret_variables` names, checked."""
        with self.blame("secret_variables"):
            names = self._bounded(
                settings, "name its secret variables", lambda: self.cls.secret_variables(settings)
            )
        if (
            isinstance(names, str)
            or not isinstance(names, Sequence)
            or not all(isinstance(name, str) for name in names)
        ):
            raise PluginError(
                f"{self.source}: {self.name}.secret_variables must return a tuple of "
                "environment variable names"
            )
        return tuple(names)

    def parse_settings(self, raw: Mapping[str, Any]) -> BackendSettings:
        """Validated settings; a pydantic ValidationError passes through for the caller to
        map onto the manifest."""
        from pydantic import ValidationError

        with self.blame("parse_settings", expected=(ValidationError,)):
            settings = self._bounded_within(
                _raw_timeout(raw), "read its settings", lambda: self.cls.parse_settings(raw)
            )
        if not isinstance(settings, BackendSettings):
            raise PluginError(f"{self.source}: {self.name}.parse_settings must return settings")
        with suppress(NebulaBuildError):  # its secrets, known before it says anything
            self.secrets(settings)  # (one it cannot name is said where they are needed)
        return settings

    def models(self, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        with self.blame("models"):
            models = self._bounded(
                settings, "list its models", lambda: _settled(self.cls.models(settings))
            )
        if not isinstance(models, Mapping) or not all(
            isinstance(m, ModelSupport) for m in models.values()
        ):
            raise PluginError(
                f"{self.source}: {self.name}.models must return a mapping of ModelSupport"
            )
        for model, support in models.items():  # shown in `models`, plans, errors and CI's log
            problem = model_id_problem(model) if isinstance(model, str) else "not text"
            if problem is None:
                problem = _support_problem(model, support)
            if problem is not None:
                shown = printable(repr(model), limit=80)
                raise PluginError(f"{self.source}: {self.name}.models: {shown}: {problem}")
        return models

    def made_with(self, settings: BackendSettings, model_id: str) -> dict[str, str]:
        secrets = self.secrets(settings)
        with self.blame("made_with", secrets=secrets.values()):
            record = dict(
                self._bounded(
                    settings,
                    "say what made its images",
                    lambda: _settled(self.cls.made_with(settings, model_id)),
                )
            )
        problem = made_with_problem(record) or secret_in_record(record, secrets)
        if problem is not None:
            raise PluginError(f"{self.source}: {self.name}.made_with: the record {problem}")
        return self.with_source(record)

    def made_with_on_disk(
        self, settings: BackendSettings, model_id: str, root: Path
    ) -> Mapping[str, OnDisk]:
        """What files outside the project decide; OSError passes through (a file that
        cannot be read: nothing is known)."""
        with self.blame("made_with_on_disk", expected=(OSError,)):
            found = self._bounded(
                settings,
                "name the files its images depend on",
                lambda: _settled(self.cls.made_with_on_disk(settings, model_id, root)),
            )
        if not isinstance(found, Mapping) or not all(
            isinstance(name, str) and _well_formed(value) for name, value in found.items()
        ):
            raise PluginError(
                f"{self.source}: {self.name}.made_with_on_disk must return a mapping of OnDisk"
            )
        return {
            name: replace(value, compute=self._blamed(settings, value.compute))
            for name, value in found.items()
        }

    def _blamed(
        self, settings: BackendSettings, compute: Callable[[], str | None]
    ) -> Callable[[], str | None]:
        def blamed() -> str | None:
            with self.blame("made_with_on_disk", expected=(OSError,)):
                value = self._bounded(settings, "compute what its images depend on", compute)
            return value if isinstance(value, str) else None

        return blamed

    def preflight(self, settings: BackendSettings, root: Path) -> None:
        """Whether it can run here; a plugin's refusal names the plugin (a built-in's
        messages name what to set already)."""
        with self.blame("preflight", secrets=self.secrets(settings).values()):
            try:
                self._bounded(
                    settings, "end its preflight", lambda: self.cls.preflight(settings, root)
                )
            except BackendError as exc:
                said = str(exc)
                if not self.builtin and not said.lower().startswith(self.name.lower()):
                    named = f"backend {self.name!r} from {self.source} cannot run here"
                    exc.args = (f"{named}: {said}",)
                raise

    def watched_files(self, settings: BackendSettings, root: Path) -> list[Path]:
        with self.blame("watched_files"):
            files = self._bounded(
                settings,
                "name its watched files",
                lambda: _settled(self.cls.watched_files(settings, root)),
            )
            return [Path(path) for path in files]

    def _bounded(self, settings: BackendSettings, doing: str, call: Callable[[], T]) -> T:
        """`call` into a plugin's blocking code, held to `[backends.NAME] timeout` as its
        generations are: one that does not return by then is left to its thread (a daemon:
        it keeps no process from exiting) and said in one line. A built-in, or a backend
        that `keeps_timeout` itself, is called as it is."""
        return self._bounded_within(settings.timeout, doing, call)

    def _bounded_within(self, timeout: float | None, doing: str, call: Callable[[], T]) -> T:
        """`call` held to `timeout` seconds, as `_bounded` holds it to the settings'."""
        if self.builtin or self.keeps_timeout:
            timeout = None
        if timeout is None:
            return call()
        ended: list[tuple[T | None, BaseException | None]] = []

        def run() -> None:
            try:
                ended.append((call(), None))
            except BaseException as exc:  # raised again in the caller's thread
                ended.append((None, exc))

        thread = threading.Thread(target=run, name=f"{self.name}: {doing}", daemon=True)
        thread.start()
        _join_unless_cancelled(thread, timeout)
        if not ended:
            raise PluginError(
                f"backend {self.name!r} from {self.source} did not {doing} within "
                f"{timeout:g}s; raise [backends.{self.name}] timeout if it takes longer"
            )
        value, error = ended[0]
        if error is None:
            return cast(T, value)
        if not isinstance(error, Exception):  # raised by the plugin, not by a signal to us
            raise _EndedItsThread(error) from error
        raise error

    @property
    def keeps_timeout(self) -> bool:
        """Whether its `generate` keeps to its `timeout` setting itself."""
        return getattr(self.cls, "keeps_timeout", False) is True

    @property
    def paid(self) -> bool:
        """Whether its generations are billed (anything but `paid = True` is not a claim)."""
        return getattr(self.cls, "paid", False) is True

    def prices(self, settings: BackendSettings) -> Mapping[str, Any]:
        with self.blame("prices"):
            return self._bounded(
                settings, "give its prices", lambda: _settled(self.cls.prices(settings))
            )

    async def remote_models(self, settings: BackendSettings) -> list[dict[str, Any]]:
        """What its service says it serves, within its timeout, as the other calls."""
        import asyncio

        timeout = None if self.keeps_timeout else settings.timeout
        try:
            async with asyncio.timeout(timeout):
                with self.blame("remote_models", secrets=self.secrets(settings).values()):
                    return [dict(row) for row in await self.cls.remote_models(settings)]
        except TimeoutError:
            if timeout is None:
                raise
            raise PluginError(
                f"backend {self.name!r} from {self.source} did not list its service's models "
                f"within {timeout:g}s; raise [backends.{self.name}] timeout if it takes longer"
            ) from None

    async def price_list(self, settings: BackendSettings) -> Mapping[str, Any]:
        with self.blame("price_list", secrets=self.secrets(settings).values()):
            return await self.cls.price_list(settings)

    async def balance(self, settings: BackendSettings) -> Any:
        with self.blame("balance", secrets=self.secrets(settings).values()):
            return await self.cls.balance(settings)

    def create(self, settings: BackendSettings, root: Path) -> Backend:
        with self.blame("__init__", secrets=self.secrets(settings).values()):
            return self.cls(settings, root=root)


def _raw_timeout(raw: Mapping[str, Any]) -> float:
    """The `timeout` of settings not yet read: as written where it is a valid one, else
    the default (reading them is what says it is not valid)."""
    from pydantic import ValidationError

    try:
        return BackendSettings(timeout=raw["timeout"]).timeout
    except (KeyError, ValidationError):
        return BackendSettings().timeout


#: how often a wait for a plugin's thread looks whether its round was cancelled
_CANCEL_CHECK = 0.1


def _join_unless_cancelled(thread: threading.Thread, timeout: float) -> None:
    """Wait for `thread` at most `timeout` seconds; in an asyncio task (watch's round), raise
    CancelledError once it is cancelled: Ctrl-C or SIGTERM there cancels the task, which
    would otherwise wait for the plugin until the timeout, up to a day."""
    deadline = time.monotonic() + timeout
    task = _running_task()
    while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
        thread.join(left if task is None else min(left, _CANCEL_CHECK))
        if task is not None and task.cancelling() and thread.is_alive():
            import asyncio

            raise asyncio.CancelledError


def _running_task() -> asyncio.Task[Any] | None:
    if "asyncio" not in sys.modules:  # no event loop runs: plan, apply's preparation
        return None
    import asyncio

    try:
        return asyncio.current_task()
    except RuntimeError:  # no loop runs in this thread
        return None


def _settled(value: T) -> T:
    """What a hook returned, with what it would compute as it is read computed now, in
    the thread held to the timeout: a generator (`yield` in `watched_files`) as a list,
    a mapping as a dict. Read later, on the command's thread, it would run unbounded."""
    if isinstance(value, Iterator):
        return cast(T, list(value))
    if isinstance(value, Mapping):
        return cast(T, dict(value))
    return value


def _support_problem(model: str, support: ModelSupport) -> str | None:
    """What is wrong with a model's declaration, that validation would otherwise crash
    on or ignore unseen."""
    if support.id != model:
        return f"its ModelSupport has the id {printable(repr(support.id), limit=80)}"
    if not isinstance(support.params, frozenset | set) or not all(
        isinstance(param, str) for param in support.params
    ):
        return "its params are not a set of parameter names"
    unknown = sorted(set(support.params) - set(OPTIONAL))
    if unknown:
        named = ", ".join(printable(repr(param), limit=40) for param in unknown[:3])
        return (
            f"takes {named}, not a parameter nebula-build passes on; "
            f"a model may take {', '.join(OPTIONAL)}"
        )
    step = support.size_multiple
    if type(step) is not int or not 1 <= step <= MAX_SIZE:
        shown = printable(repr(step), limit=40)
        return f"size_multiple {shown} is not a whole number of pixels from 1 to {MAX_SIZE}"
    return None


def _well_formed(value: object) -> bool:
    return (
        isinstance(value, OnDisk)
        and all(isinstance(path, str) for path in value.paths)
        and all(isinstance(name, str) for name in value.environment)
        and callable(value.compute)
    )


@dataclass(frozen=True)
class BackendRegistry:
    """Every backend available here, by name, and the installed plugins left out."""

    plugins: dict[str, BackendPlugin]
    #: by entry point name
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)
    #: the distribution a project's lock says made a backend's images, for the error
    #: of a backend not installed here (asked only then: it reads the lock)
    recorded_by: Callable[[str], str | None] | None = field(default=None, compare=False)

    def get(self, name: str, where: str = "") -> BackendPlugin:
        found = self.plugins.get(name)
        if found is not None:
            return found
        prefix = f"{where}: " if where else ""
        if name in self.broken:
            raise PluginError(
                f"{prefix}backend {name!r} cannot be used: {self.broken[name].problem}"
            )
        error = UnknownBackendError(name, list(self.plugins), where)
        if self.broken:  # one of them may be the one asked for
            left_out = ", ".join(sorted(self.broken))
            error.args = (f"{error}; left out as broken: {left_out}",)
        elif did_you_mean(name, self.plugins) is None:  # no typo: a plugin not installed here
            made = self.recorded_by(name) if self.recorded_by is not None else None
            if made is not None:
                package = made.rsplit(" ", 1)[0]
                error.args = (
                    f"{error}; the lock records its images as made by {made}: install "
                    f"{package} (docs/plugins.md)",
                )
            else:
                error.args = (f"{error}; {_NOT_INSTALLED}",)
        raise error

    def names(self) -> list[str]:
        return sorted(self.plugins)

    @property
    def sources(self) -> dict[str, str]:
        """The distribution of each backend, by name."""
        return {name: plugin.source for name, plugin in self.plugins.items()}

    def fingerprint(self) -> list[tuple[str, str, str]]:
        """Each backend's name, distribution and `code_signature`: what changes when a
        backend is installed, removed, upgraded or edited in place."""
        return sorted(
            (name, plugin.source, plugin.code_signature()) for name, plugin in self.plugins.items()
        )


def registry_from(
    pm: pluggy.PluginManager,
    sources: Mapping[int, str],
    *,
    broken: Sequence[BrokenPlugin] | None = None,
) -> BackendRegistry:
    """Collect every plugin's backends; duplicate ones are errors. With `broken` (what
    `make_plugin_manager` left out), an installed plugin whose backends cannot be
    registered is left out too, and the registry says which were."""
    plugins: dict[str, BackendPlugin] = {}
    left_out = {plugin.name: plugin for plugin in broken or ()}
    # the built-in backends first: a plugin may not take one's name, whatever the order
    impls = sorted(
        pm.hook.nebula_build_register_backends.get_hookimpls(),
        key=lambda impl: sources.get(id(impl.plugin), impl.plugin_name) != BUILTIN_SOURCE,
    )
    for impl in impls:
        source = sources.get(id(impl.plugin), impl.plugin_name)
        try:
            provided = _backend_classes(impl.function, source)
            _refuse_built_in_names(provided, plugins, source)
        except PluginError as exc:
            if broken is None or source == BUILTIN_SOURCE:
                raise
            left_out[impl.plugin_name] = BrokenPlugin(impl.plugin_name, str(exc))
            continue
        for cls in provided:
            name = cls.name
            if name in plugins:
                raise PluginError(
                    f"backend {name!r} is provided twice: by {plugins[name].source} and by "
                    f"{source}; uninstall one of them"
                )
            code = () if source == BUILTIN_SOURCE else _code_files(impl.plugin, cls)
            plugins[name] = BackendPlugin(name, cls, source, code)
    return BackendRegistry(plugins, left_out)


def _refuse_built_in_names(
    provided: Sequence[type[Backend]], plugins: Mapping[str, BackendPlugin], source: str
) -> None:
    """A plugin's backend named as one built into nebula-build: the plugin is left out
    (uninstalling nebula-build is no way out), the built-in one stays."""
    if source == BUILTIN_SOURCE:
        return
    for cls in provided:
        taken = plugins.get(cls.name)
        if taken is not None and taken.source == BUILTIN_SOURCE:
            raise PluginError(
                f"{source}: backend {cls.name!r} is one built into nebula-build: the plugin "
                "must name its backend otherwise"
            )


def _backend_classes(register: Callable[[], object], source: str) -> list[type[Backend]]:
    """What a plugin's nebula_build_register_backends returns, checked."""
    try:
        provided = register()
    except Exception as exc:
        raise PluginError(f"{source}: nebula_build_register_backends failed: {_said(exc)}") from exc
    if not isinstance(provided, list | tuple):
        raise PluginError(f"{source}: nebula_build_register_backends must return a list")
    names: dict[str, type[Backend]] = {}
    for cls in provided:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise PluginError(f"{source}: {cls!r} is not a nebula_build.plugin.Backend subclass")
        name = getattr(cls, "name", None)
        if isinstance(name, str) and names.setdefault(name, cls) is not cls:
            raise PluginError(
                f"{source}: registers two backends named {printable(repr(name), limit=80)}"
            )
        if not isinstance(name, str) or not name:
            raise PluginError(f"{source}: backend {cls.__qualname__} has no name")
        if not _BACKEND_NAME.fullmatch(name):
            raise PluginError(
                f"{source}: backend name {printable(repr(name), limit=80)} is not one "
                "nebula-build takes: letters, digits, '-' and '_', starting with a letter "
                "or a digit"
            )
    return list(names.values())  # a class listed twice is one backend


#: a backend's name: a TOML bare key, and never `models --json`'s own `_backends`
_BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _code_files(plugin: object, cls: type[Backend]) -> tuple[str, ...]:
    """The files of a plugin's own code: every module loaded so far of the packages
    that hold the module its entry point loads and its backend class and that
    class's bases (nebula-build's and Python's left out)."""
    names = {getattr(plugin, "__name__", "")} if inspect.ismodule(plugin) else set()
    names |= {base.__module__ for base in cls.__mro__}
    packages = {name.partition(".")[0] for name in names} - {"", "nebula_build", *_NOT_PLUGINS}
    files = set()
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in packages:
            module_file = getattr(module, "__file__", None)
            if isinstance(module_file, str):
                files.add(str(Path(module_file).absolute()))
    return tuple(sorted(files))


#: the modules Backend's own bases come from
_NOT_PLUGINS = ("abc", "builtins")


def _file_signature(path: str) -> str:
    try:
        found = Path(path).stat()
    except OSError:
        return "-"
    return f"{found.st_size}:{found.st_mtime_ns}"


def load_registry(*, extra_plugins: Iterable[object] = ()) -> BackendRegistry:
    """The registry of every backend available in this environment; an installed plugin
    that cannot be loaded is left out, and named in its `broken`."""
    broken: list[BrokenPlugin] = []
    pm, sources = make_plugin_manager(extra_plugins=extra_plugins, broken=broken)
    return registry_from(pm, sources, broken=broken)


def builtin_settings() -> dict[str, type[BackendSettings]]:
    """The settings model of each built-in backend, by name: what the committed
    schema/images.schema.json describes (installed plugins are left out, so the file
    does not depend on the machine that wrote it)."""
    registry = registry_from(*make_plugin_manager(load_entry_points=False))
    return {name: plugin.cls.settings_model for name, plugin in registry.plugins.items()}
