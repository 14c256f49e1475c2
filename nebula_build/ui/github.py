"""GitHub Actions: errors as workflow commands (shown on the pull request's diff) and
a Markdown summary of each plan or apply in the job's summary page.

Active only where GitHub sets `GITHUB_ACTIONS=true`; the summary goes to the file
named by `GITHUB_STEP_SUMMARY`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from nebula_build.core import sourcemap
from nebula_build.core.plan import Plan
from nebula_build.errors import ManifestError, first_line
from nebula_build.text import plural, printable

if TYPE_CHECKING:
    from nebula_build.engine.cost import Estimate


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
    locate = _locator(source)
    return [
        annotation("warning", f"{image}: {text}", file=manifest, line=line, col=col)
        for image, text in warnings
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
    positions = sourcemap.key_positions(source) if source is not None else {}

    def locate(name: str) -> tuple[int | None, int | None]:
        return positions.get(declared_at(name), (None, None))

    return locate


def _cell(text: object) -> str:
    return printable(str(text)).replace("|", "\\|")


def summary(
    title: str,
    plan: Plan,
    *,
    generated: int | None = None,
    failures: Mapping[str, Exception] | None = None,
    estimate: Estimate | None = None,
) -> str:
    """The Markdown a job summary shows for one plan (and what its apply did)."""
    lines = [f"### {_cell(title)}", ""]
    changes = plan.changes
    if not changes and not any(f.is_change for f in plan.files):
        lines.append(f"No changes: {plural(len(plan.actions), 'image')} up to date.")
    else:
        lines += ["| image | action | reason | output |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {_cell(a.image)} | {a.kind.value} | {_cell(a.reason)} | {_cell(a.output or '')} |"
            for a in changes
        ]
        lines += [
            f"| {_cell(f.label)} | {f.state.value} | {_cell(f.reason)} | {_cell(f.output)} |"
            for f in plan.files
            if f.is_change
        ]
    from_cache = sum(1 for a in changes if a.from_cache)
    lines.append("")
    lines += _generations(plan, estimate)
    lines.append(f"- **From the cache:** {from_cache}.")
    if from_remote := sum(1 for a in changes if a.from_remote):
        lines.append(f"- **From the remote cache:** {from_remote}.")
    if generated is not None:
        lines.append(f"- **Generated in this run:** {generated}.")
    if failures:
        lines += ["", "**Failed:**", ""]
        lines += [f"- {_cell(name)}: {_cell(first_line(e))}" for name, e in failures.items()]
    return "\n".join(lines) + "\n\n"


def _generations(plan: Plan, estimate: Estimate | None) -> list[str]:
    """The generations per model (at their price, where known), and the estimate."""
    if estimate is None:
        models = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
        if not models:
            return []
        per_model = ", ".join(f"{n} × `{m}` on {b}" for (b, m), n in sorted(models.items()))
        return [f"- **Generations:** {per_model}."]
    from nebula_build.engine.cost import money

    if not estimate.lines:
        return []
    parts = []
    for line in estimate.lines:
        part = f"{line.generations} × `{_cell(line.model)}` on {_cell(line.backend)}"
        if line.paid:
            part += " at an unknown price" if line.price is None else f" at {money(line.price)}"
        parts.append(part)
    lines = [f"- **Generations:** {', '.join(parts)}."]
    if estimate.paid_generations:
        total = estimate.total
        said = "unknown" if total is None else money(total)
        if total is None and estimate.known:
            said = f"at least {money(estimate.known)} (some prices unknown)"
        lines.append(f"- **Estimated cost:** {said}.")
    return lines


def append_summary(markdown: str) -> None:
    """Add to the job summary, if this runs in a GitHub Actions step that has one."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not active() or not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:  # noqa: PTH123
            handle.write(markdown)
    except OSError:
        return  # a summary is a courtesy: never fail a build over it
