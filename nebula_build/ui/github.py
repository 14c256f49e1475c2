"""GitHub Actions: errors as workflow commands (shown on the pull request's diff) and
the plan's Markdown (`ui.markdown`) appended to the job's summary page.

Active only where GitHub sets `GITHUB_ACTIONS=true`; the summary goes to the file
named by `GITHUB_STEP_SUMMARY`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from nebula_build.errors import ManifestError, first_line
from nebula_build.text import printable

if TYPE_CHECKING:
    pass


def active() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    return printable(text).replace("%", "%25")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
) -> str:
    """One workflow command (`::error file=…,line=…::message`)."""
    props = [
        f"{name}={_property(str(value))}"
        for name, value in (("file", file), ("line", line), ("col", col))
        if value is not None
    ]
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{_data(message)}"


def error_annotations(exc: Exception, manifest: str | None, source: str | None = None) -> list[str]:
    """An error as annotations: each manifest problem at its line, each failed image at
    the line that declares it in `source` (the manifest's text), anything else as one
    error on the manifest."""
    if isinstance(exc, ManifestError):
        return [
            annotation(
                "error",
                f"{p.loc}: {p.message}" if p.loc else p.message,
                file=p.path,
                line=p.line,
                col=p.column,
            )
            for p in exc.problems
        ]
    failures: Mapping[str, Exception] | None = getattr(exc, "failures", None)
    if failures:
        locate = _locator(source)
        return [
            annotation("error", f"{name}: {first_line(error)}", file=manifest, line=line, col=col)
            for name, error in failures.items()
            for line, col in [locate(name)]
        ]
    return [annotation("error", first_line(exc), file=manifest)]


def warning_annotations(
    warnings: Iterable[tuple[str, str]], manifest: str | None, source: str | None = None
) -> list[str]:
    """Each image's warning at the line that declares the image in `source`."""
    return image_annotations("warning", warnings, manifest, source)


def image_annotations(
    level: str, messages: Iterable[tuple[str, str]], manifest: str | None, source: str | None
) -> list[str]:
    """Each (image, text) at the line that declares the image (an atlas, the asset
    manifest: their table or key) in `source`."""
    locate = _locator(source)
    return [
        annotation(level, f"{image}: {text}", file=manifest, line=line, col=col)
        for image, text in messages
        for line, col in [locate(image)]
    ]


def declared_at(name: str) -> tuple[str, ...]:
    """The manifest key that declares what a result is named after: an image's table
    (an image of a matrix, `enemy[slime,idle]`, its declaration's), an atlas's, or
    the asset manifest's setting."""
    if name.startswith("atlas "):
        return ("atlases", name.removeprefix("atlas "))
    if name == "asset manifest":
        return ("assets", "manifest")
    return ("images", name.partition("[")[0])


def _locator(source: str | None) -> Callable[[str], tuple[int | None, int | None]]:
    """The line and column that declare a name; None where the source does not say."""
    from nebula_build.core import sourcemap  # not loaded to write a summary alone

    positions = sourcemap.key_positions(source) if source is not None else {}

    def locate(name: str) -> tuple[int | None, int | None]:
        return positions.get(declared_at(name), (None, None))

    return locate


def append_summary(markdown: str) -> str | None:
    """Add to the job summary, if this runs in a GitHub Actions step that has one.
    Returns why it could not (a warning: a summary never fails a build), else None."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not active() or not path:
        return None
    try:
        with open(path, "a", encoding="utf-8") as handle:  # noqa: PTH123
            handle.write(markdown)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (
            f"could not write the job summary to GITHUB_STEP_SUMMARY "
            f"({printable(path, limit=200)}: {reason}); the job's page has no summary of "
            "this step"
        )
    return None
