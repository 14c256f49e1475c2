"""GitHub Actions: errors as workflow commands (shown on the pull request's diff) and
a Markdown summary of each plan or apply in the job's summary page.

Active only where GitHub sets `GITHUB_ACTIONS=true`; the summary goes to the file
named by `GITHUB_STEP_SUMMARY`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from nebula_build.core import sourcemap
from nebula_build.core.plan import Action, Plan
from nebula_build.errors import ManifestError, first_line
from nebula_build.text import plural, printable
from nebula_build.ui.statuslines import reason_line

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


#: what GitHub's Markdown reads as syntax inside a line: emphasis, code, links and
#: images (`[`, `]`, `!`), table cells, strikethrough, math (`$`), mentions. Each is
#: escaped with a backslash, as CommonMark allows any ASCII punctuation to be; `(`
#: `)` `.` `-` `/` need not be (no link without `[`, no list mid-line).
_MARKDOWN_SYNTAX = frozenset("\\`*_[]!|~$@")
#: HTML (raw tags, autolinks in `<…>`, entities) becomes text
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_text(text: object) -> str:
    """`text` as one line of literal Markdown (a table cell, a list item): no HTML,
    link, image, code span, emphasis or `|` that ends the cell, whatever it holds."""
    return "".join(
        _HTML.get(char) or ("\\" + char if char in _MARKDOWN_SYNTAX else char)
        for char in printable(str(text))
    )


def _code(text: object) -> str:
    """`text` in a monospace span, its content literal (a backtick cannot end it)."""
    return f"<code>{markdown_text(text)}</code>"


def _row(*cells: object) -> str:
    return "| " + " | ".join(markdown_text(cell) for cell in cells) + " |"


def summary(
    title: str,
    plan: Plan,
    *,
    generated: int | None = None,
    failures: Mapping[str, Exception] | None = None,
    estimate: Estimate | None = None,
) -> str:
    """The Markdown a job summary shows for one plan (and what its apply did)."""
    lines = [f"### {markdown_text(title)}", ""]
    changes = plan.changes
    changed: list[str] = []  # each field that differs, as the plan shows it under the image
    if not changes and not any(f.is_change for f in plan.files):
        lines.append(f"No changes: {plural(len(plan.actions), 'image')} up to date.")
    else:
        from nebula_build.ui.report import cache_note

        lines += ["| image | action | reason | output |", "| --- | --- | --- | --- |"]
        rows = [
            _row(a.image, a.kind.value, reason_line(a) + cache_note(a), a.output or "")
            for a in changes
        ]
        files = [f for f in plan.files if f.is_change]
        rows += [_row(f.label, f.state.value, reason_line(f), f.output) for f in files]
        shown_rows = _listed(rows, _SHOWN_ROWS, _ROWS_BYTES)
        lines += shown_rows
        if len(rows) > len(shown_rows):
            more = len(rows) - len(shown_rows)
            lines.append(f"| … and {more:,} more | | | `nebula-build plan --json` lists all |")
        changed = [
            f"- {markdown_text(a.image)}: {markdown_text(printable(line, _LONGEST_CHANGE))}"
            for a in changes
            for line in _changed_lines(a)
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
        failed = [
            f"- {markdown_text(name)}: {markdown_text(printable(first_line(e), _LONGEST_CHANGE))}"
            for name, e in failures.items()
        ]
        shown_failed = _listed(failed, _SHOWN_CHANGES, _CHANGES_BYTES)
        lines += ["", "**Failed:**", "", *shown_failed]
        if len(failed) > len(shown_failed):
            more = len(failed) - len(shown_failed)
            lines.append(f"- … and {more:,} more (`nebula-build status` lists them)")
    if changed:
        shown = _listed(changed, _SHOWN_CHANGES, _CHANGES_BYTES)
        lines += ["", "**What changed:**", "", *shown]
        if len(changed) > len(shown):
            more = len(changed) - len(shown)
            lines.append(f"- … and {more:,} more (`nebula-build plan --json` lists all)")
    return "\n".join(lines) + "\n\n"


#: GitHub drops a job summary past 1 MiB: the table's rows, and the changed fields
#: and new prompts (a pull request's rows may fill them at any length), are listed one
#: by one up to these counts and bytes, and the rest counted
_SHOWN_ROWS = 1_000
_ROWS_BYTES = 256 << 10
_SHOWN_CHANGES = 200
_CHANGES_BYTES = 256 << 10
#: the characters of one changed field or prompt shown (`plan --json` has them all)
_LONGEST_CHANGE = 1_000


def _listed(lines: list[str], count: int, budget: int) -> list[str]:
    """The first of `lines`, at most `count` of them and `budget` bytes in all."""
    shown: list[str] = []
    size = 0
    for line in lines[:count]:
        size += len(line.encode()) + 1
        if size > budget:
            break
        shown.append(line)
    return shown


def _changed_lines(action: Action) -> list[str]:
    """Each field that differs, old -> new; for a new image that costs a generation,
    its prompt (filled in from its row, which the pull request may have written)."""
    from nebula_build.core.plan import ActionKind
    from nebula_build.ui.report import change_line

    if action.kind is ActionKind.CREATE and action.generates and action.spec is not None:
        return [f"prompt: {json.dumps(action.spec.prompt, ensure_ascii=False)}"]
    instead = action.resolution
    return [change_line(c) for c in action.changes or (instead.changes if instead else ())]


def _generations(plan: Plan, estimate: Estimate | None) -> list[str]:
    """The generations per model (at their price, where known), and the estimate."""
    if estimate is None:
        models = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
        if not models:
            return []
        per_model = ", ".join(
            f"{n} × {_code(m)} on {markdown_text(b)}" for (b, m), n in sorted(models.items())
        )
        return [f"- **Generations:** {per_model}."]
    from nebula_build.engine.cost import money
    from nebula_build.ui.report import price_origin

    if not estimate.lines:
        return []
    parts = []
    for line in estimate.lines:
        part = f"{line.generations} × {_code(line.model)} on {markdown_text(line.backend)}"
        if line.paid and line.price is None:
            part += " at an unknown price"
        elif line.paid and line.price is not None:
            part += " at " + markdown_text(money(line.price) + price_origin(line))
        parts.append(part)
    lines = [f"- **Generations:** {', '.join(parts)}."]
    if estimate.paid_generations:
        total = estimate.total
        said = "unknown" if total is None else money(total)
        if total is None and estimate.known:
            said = f"at least {money(estimate.known)} (some prices unknown)"
        lines.append(f"- **Estimated cost:** {markdown_text(said)}.")  # `$`: math on GitHub
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
