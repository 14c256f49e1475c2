"""The exceptions nebula-build raises on purpose.

    NebulaBuildError                  root of everything raised on purpose
    ├── UserError                     printed as "error: …", no traceback, exit 1
    │   ├── ManifestError             one or more problems, each with path, line, column, key
    │   ├── LockfileError
    │   ├── ConflictError             an output changed by hand since the lock
    │   │   └── ChangedMeanwhileError     … after the plan looked at it: .path
    │   ├── DependencyCycleError
    │   ├── ProjectLockedError        another apply holds .nebula-build/lock
    │   ├── UnknownBackendError       lists the known names
    │   ├── OutputRejectedError       a transparency or acceptance check refused the image
    │   └── ApplyError                .failures {image: error}, raised after keep-going
    ├── PluginError                   names the plugin's distribution
    └── BackendError                  .backend .image
        ├── CredentialsError          says which variable to set
        │   └── AccessDeniedError     a 403: the key is known, this request not allowed
        ├── TransientBackendError     timeouts, 429, 5xx: retried
        ├── RequestRejectedError      other 4xx, bad payloads: not retried
        │   └── OutOfCreditsError     stops further requests (like CredentialsError)
        ├── LocalSetupError           local backend cannot run here (extra, device): halts
        ├── WeightsNotFoundError      a local model is not on disk; says where it looked
        └── SkippedError              not attempted after a halting error
    SupersededError                   watch mode: work cancelled by a newer edit

Only the CLI turns these into exit codes. Anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping


class NebulaBuildError(Exception):
    """Root of every error nebula-build raises on purpose."""


class UserError(NebulaBuildError):
    """Something the user can fix: printed as one line, exit code 1."""


class Problem:
    """One thing wrong with a manifest, located as precisely as the source allows.

    A plain class rather than a dataclass: every command imports this module, and
    dataclasses costs a no-op `plan` more than the rest of its start-up."""

    __slots__ = ("column", "line", "loc", "message", "path")

    def __init__(
        self, path: str, loc: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        self.path = path
        self.loc = loc
        self.message = message
        self.line = line
        self.column = column

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f"{self.loc}: " if self.loc else ""
        return f"{where}: {key}{self.message}"


class MoreProblems(Problem):
    """The line that counts the problems past those described (`count` of them)."""

    __slots__ = ("count",)

    def __init__(self, path: str, count: int) -> None:
        super().__init__(
            path, "", f"and {count:,} more problem{'' if count == 1 else 's'}; fix these first"
        )
        self.count = count


class ManifestError(UserError):
    """The manifest cannot be used; carries every problem found, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def single(
        cls, path: str, loc: str, message: str, line: int | None = None, column: int | None = None
    ) -> ManifestError:
        return cls([Problem(path, loc, message, line, column)])


class LockfileError(UserError):
    """images.lock (or its journal) cannot be read."""


class UnsafePathError(UserError):
    """A path would leave the project, touch the tool's own state, or is not a plain file."""


class TooLargeError(UnsafePathError):
    """A file holds more bytes than its reader takes: refused from its size, read no
    further than one byte past the limit. `.size`: what its stat said (None: it grew
    past the limit while being read)."""

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class StateWriteError(UserError):
    """A file could not be written (disk full, permissions); names the path."""


class ConflictError(UserError):
    """An output file was changed by hand; nebula-build will not overwrite it."""


class ChangedMeanwhileError(ConflictError):
    """A file was changed by hand after the plan looked at it, before it was replaced."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


#: the type of a pydantic error a backend's settings raise for options that do not
#: work together: its message names the values itself, so none is shown after it
CONFLICT = "settings_conflict"

#: What to do about a conflict, wherever one is reported.
FORCE_HINT = "re-run with --force to replace it (the old file is kept under .nebula-build/backup/)"


class DependencyCycleError(UserError):
    """Images depend on each other in a circle."""


class ProjectLockedError(UserError):
    """Another nebula-build process holds the project lock."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a mistyped `word` (case aside), if one is close enough:
    the one "did you mean" of keys, commands, backends and models."""
    import difflib  # only when there is a mistake to explain

    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return by_lower[close[0]] if close else None


def one_slip_from(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` is one slip of the keys from (a letter added, left out, changed
    or two swapped, case aside), if any: a typo for sure, where `did_you_mean` may also
    find a name of its own (`nebula-local`, close to `nebula`)."""
    typed = word.lower()
    for choice in choices:
        meant = choice.lower()
        if typed == meant:
            return choice
        if abs(len(typed) - len(meant)) > 1:
            continue
        start = 0
        while start < min(len(typed), len(meant)) and typed[start] == meant[start]:
            start += 1
        rest, wanted = typed[start:], meant[start:]
        swapped = len(rest) >= 2 and rest[:2] == wanted[1::-1] and rest[2:] == wanted[2:]
        if swapped or rest[1:] == wanted[1:] or rest[1:] == wanted or rest == wanted[1:]:
            return choice
    return None


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for a mistyped word, or "" where nothing is close."""
    close = did_you_mean(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def model_suggestion(word: str, models: Iterable[str]) -> str:
    """`suggestion` for a model id, also where it was written by the model's name alone
    (`flux-schnell` for `black-forest-labs/FLUX.1-schnell`), or by a part of it that
    names one model (`seedream`)."""
    names = {_model_name(model): model for model in models}
    close = did_you_mean(word, names.values())
    if close is None:
        written = _model_name(word)
        name = did_you_mean(written, names)
        holding = [model for key, model in names.items() if len(written) >= 4 and written in key]
        close = names[name] if name is not None else holding[0] if len(holding) == 1 else None
    return f"; did you mean {close!r}?" if close else ""


def _model_name(model_id: str) -> str:
    """`flux1schnell` of `black-forest-labs/FLUX.1-schnell`: the name alone, in letters
    and digits."""
    return "".join(c for c in model_id.rsplit("/", 1)[-1].lower() if c.isalnum())


class UnknownBackendError(UserError):
    """A backend name that no installed plugin provides."""

    def __init__(self, name: str, known: list[str], where: str = "") -> None:
        self.name = name
        self.known = known
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}unknown backend {name!r} (known: {', '.join(sorted(known)) or 'none'})"
            + suggestion(name, known)
        )


class ApplyError(UserError):
    """Raised after apply kept going past failures; lists every one."""

    def __init__(
        self,
        failures: Mapping[str, Exception],
        files: Collection[str] = (),
        kept_back: Collection[str] = (),
    ) -> None:
        """`files`: the names in `failures` that are files made from the images (an
        atlas, the asset manifest), not images; `kept_back`: the old names of renamed
        images whose new name failed, listed but not counted (the image is counted once)."""
        self.failures = dict(failures)
        images = len(self.failures) - len(files) - len(kept_back)
        atlases = sum(1 for label in files if label.startswith("atlas "))
        counted = [
            f"{n} {noun if n == 1 else many}"  # the base imports nothing: no text.plural
            for n, noun, many in (
                (images, "image", "images"),
                (atlases, "atlas", "atlases"),
                (len(files) - atlases, "asset manifest", "asset manifests"),
            )
            if n
        ]
        lines = [f"{' and '.join(counted)} failed:"]
        lines += [f"  {name}: {error}" for name, error in sorted(self.failures.items())]
        super().__init__("\n".join(lines))


class OutputRejectedError(UserError):
    """An image its output steps refuse: a transparency that cannot be made from the
    original (refused before it is cached), or an acceptance check that failed (the
    original is cached; the files are not written). The image fails like a failed
    generation; `checks` holds each check's measured value, where checks ran."""

    def __init__(self, message: str, *, checks: Mapping[str, object] | None = None) -> None:
        self.checks = dict(checks or {})
        super().__init__(message)


class PluginError(NebulaBuildError):
    """A plugin is broken or clashes with another; names its distribution."""


class PluginAnswerError(PluginError):
    """A plugin answered a generation with a result nebula-build refuses (malformed, or
    a record holding a secret): the backend generated it, and may have billed it."""


class BackendError(NebulaBuildError):
    """A backend could not produce an image."""

    #: every later request to this backend would fail the same way: stop sending them
    halts: bool = False

    def __init__(self, message: str, *, backend: str = "", image: str = "") -> None:
        self.backend = backend
        self.image = image
        super().__init__(message)


class CredentialsError(BackendError):
    """Missing or rejected credentials; the message names the variable to set."""

    halts = True


class AccessDeniedError(CredentialsError):
    """The key was read but this request is not allowed (HTTP 403): every generation
    refused so halts, but an account page (prices, balance) refused so may be all."""


class LocalSetupError(BackendError):
    """A local backend cannot run on this machine (missing extra, no GPU); says what
    to install or set."""

    halts = True


class WeightsNotFoundError(BackendError):
    """A local model's weights are not on disk; says where it looked and how to
    provide them."""


class TransientBackendError(BackendError):
    """A failure worth retrying: timeouts, rate limits, server errors."""


class RequestRejectedError(BackendError):
    """The backend refused the request; retrying will not help."""


class OutOfCreditsError(RequestRejectedError):
    """The account has no credits left; nothing more can be generated."""

    halts = True


class SkippedError(BackendError):
    """Not attempted: an earlier answer showed every request would fail."""


class SupersededError(NebulaBuildError):
    """Watch mode stopped this image's work: a newer edit changed what it should be."""


#: a manifest's problems said one by one: the rest are counted (a generated manifest
#: can have thousands, each as the one before)
SHOWN_PROBLEMS = 50


def error_lines(exc: BaseException, shown: int = SHOWN_PROBLEMS) -> list[str]:
    """The lines that say `exc`: a manifest's first `shown` problems, the rest counted."""
    # parted at "\n" alone: a value the message holds may hold another line break
    lines = (str(exc) or type(exc).__name__).rstrip("\n").split("\n")
    if isinstance(exc, ManifestError) and len(exc.problems) > shown:
        described, uncounted, last = exc.problems, 0, exc.problems[-1]
        if isinstance(last, MoreProblems):  # past the bound: not described at all
            described, uncounted = described[:-1], last.count
        more = len(described) - shown + uncounted
        lists = f"the first {len(described):,}" if uncounted else "all"
        lines = [str(problem) for problem in described[:shown]]
        problems = "problem" if more == 1 else "problems"
        lines.append(
            f"… and {more:,} more {problems} (`nebula-build validate --json` lists {lists})"
        )
    return lines


def first_line(exc: BaseException) -> str:
    """An exception from a library as one line: its message's first line, else its
    type's name (also where making the message fails: a plugin's `__str__` may raise)."""
    try:
        text = str(exc).strip()
    except KeyboardInterrupt:
        raise
    except BaseException:  # a SystemExit, or a BaseException of a plugin's own
        return type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def typed_line(exc: BaseException) -> str:
    """`first_line`, after the exception's type: `ValueError: bad size`, and for an
    exception with no message (a MemoryError) its type alone, not `MemoryError:
    MemoryError`."""
    name, line = type(exc).__name__, first_line(exc)
    return name if line == name else f"{name}: {line}"
