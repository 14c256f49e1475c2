"""The plan (and what an apply did) as Markdown: a GitHub job summary, a pull or
merge request comment (`--markdown FILE`). Every text in it, which a pull request may
have written, is literal: it renders as typed and pings, links and mentions nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nebula_build.errors import first_line
from nebula_build.text import plural, printable
from nebula_build.ui.statuslines import reason_line, verb

if TYPE_CHECKING:
    from nebula_build.core.plan import Action, Plan
    from nebula_build.engine.cost import Estimate
    from nebula_build.engine.lockmerge import LockMerge


#: what GitHub's Markdown reads as syntax inside a line: emphasis, code, links and
#: images (`[`, `]`, `!`), table cells, strikethrough, math (`$`). Each is escaped
#: with a backslash, as CommonMark allows any ASCII punctuation to be; `(` `)` `.` `-`
#: `/` need not be (no link without `[`, no list mid-line).
_MARKDOWN_SYNTAX = frozenset("\\`*_[]!|~$")
#: HTML (raw tags, autolinks in `<…>`, entities) becomes text
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Mentions (`@org/team`) and references (`#12` and `org/repo#12` on GitHub, also
#: `!12 ~label %milestone $12 &12` on GitLab) are found in the rendered text, after a
#: backslash is gone: a pull request's text would notify a team, or put "mentioned
#: this" on another project's issue. An empty comment after the sign shows nothing and
#: leaves no name or number next to it.
_REFERENCE_SIGNS = frozenset("@#!~%$&")
_BREAK = "<!-- -->"


def _literal(char: str) -> str:
    text = _HTML.get(char) or ("\\" + char if char in _MARKDOWN_SYNTAX else char)
    return text + _BREAK if char in _REFERENCE_SIGNS else text


def markdown_text(text: object, limit: int | None = None) -> str:
    """`text` as one line of literal Markdown (a table cell, a list item): no HTML,
    link, image, code span, emphasis, mention, reference or `|` that ends the cell,
    whatever it holds; at most `limit` characters of it (cut with "…")."""
    return "".join(_literal(char) for char in printable(str(text), limit))


def _code(text: object) -> str:
    """`text` in a monospace span, its content literal (a backtick cannot end it)."""
    return f"<code>{markdown_text(text)}</code>"


def _row(*cells: object) -> str:
    return "| " + " | ".join(markdown_text(cell, _SHOWN_CHARS) for cell in cells) + " |"


#: GitHub drops a step's whole summary past 1 MiB, so a pull request's manifest (long
#: prompts, paths, 10,000 images) could hide it, cost and all: each part of it has a
#: share of that, each cell and line at most `_SHOWN_CHARS` characters (an escaped
#: character takes up to 13, `&amp;<!-- -->`)
SUMMARY_BYTES = 1 << 20
_TABLE_BYTES = 480 << 10
_NOTES_BYTES = 16 << 10
_FAILED_BYTES = 128 << 10
_CHANGED_BYTES = 256 << 10
_SHOWN_CHARS = 500
#: the changed fields and new prompts listed one by one
_SHOWN_CHANGES = 200
_LISTS_ALL = "(`nebula-build plan --json` lists all)"


def _fitting(
    lines: list[str], budget: int, *, most: int | None = None, listed: str = _LISTS_ALL
) -> list[str]:
    """The first of `lines` that fit in `budget` bytes (and `most` lines), then a line
    counting the rest and saying where they are `listed`."""
    kept: list[str] = []
    used = 0
    for line in lines[:most]:
        used += len(line.encode()) + 1
        if used > budget:
            break
        kept.append(line)
    if len(kept) < len(lines):
        kept.append(f"- … and {len(lines) - len(kept):,} more {listed}")
    return kept


def summary(
    title: str,
    plan: Plan,
    *,
    generated: int | None = None,
    generated_refused: int = 0,
    failures: Mapping[str, Exception] | None = None,
    estimate: Estimate | None = None,
    refused: str | None = None,
    started: bool = False,
    notes: Sequence[str] = (),
    merge: LockMerge | None = None,
    budget: int = SUMMARY_BYTES,
    listed: str = _LISTS_ALL,
) -> str:
    """The Markdown a job summary shows for one plan (and what its apply did, or why
    it `refused` to start, or stopped once it had `started` generating), with the
    `notes` the run printed (a remote cache that failed makes the count of
    generations larger than it will be); `generated_refused`: of the `generated`,
    those whose bytes were refused. At most `budget` bytes (so as many characters, or
    fewer): each part gets its share of it, and says where the lines
    cut from it are `listed`. `merge`: the lock still has a merge's conflict markers."""
    lines = [f"### {markdown_text(title, _SHOWN_CHARS)}", ""]
    if refused is not None:
        stopped = "Stopped after generating began" if started else "Stopped before any generation"
        lines += [f"**{stopped}:** {markdown_text(refused, _SHOWN_CHARS)}", ""]
    changes = plan.changes
    changed: list[str] = []  # each field that differs, as the plan shows it under the image
    from nebula_build.ui.report import lock_changes, merge_line

    lock = lock_changes(plan, written=generated is not None)
    lock_lines = [] if merge is None else [merge_line(merge).removeprefix("Lock: ")]
    lock_lines += [] if lock is None else [f"{lock}."]
    if not changes and not any(f.is_change for f in plan.files):
        nothing = "No changes to the images" if lock_lines else "No changes"
        lines.append(f"{nothing}: {plural(len(plan.actions), 'image')} up to date.")
    else:
        from nebula_build.ui.report import backup_note, cache_note

        lines += ["| image | action | reason | output |", "| --- | --- | --- | --- |"]
        rows = [
            _row(
                a.image,
                verb(a),
                reason_line(a) + cache_note(a) + backup_note(a),
                a.output or "",
            )
            for a in changes
        ]
        files = [f for f in plan.files if f.is_change]
        rows += [
            _row(f.label, f.state.value, reason_line(f) + backup_note(f), f.output) for f in files
        ]
        table = _fitting(rows, _share(_TABLE_BYTES, budget), listed=listed)
        if table and not table[-1].startswith("| "):  # the count: a blank line ends the table
            table[-1:] = ["", table[-1]]
        lines += table
        changed = [
            f"- {markdown_text(a.image, _SHOWN_CHARS)}: {markdown_text(line, _SHOWN_CHARS)}"
            for a in changes
            for line in _changed_lines(a)
        ]
    from_cache = sum(1 for a in changes if a.from_cache)
    lines.append("")
    for line in lock_lines:
        lines += [f"**Lock:** {markdown_text(line, _SHOWN_CHARS)}", ""]
    lines += _generations(plan, estimate, _share(_MODELS_BYTES, budget))
    if changes:
        lines.append(f"- **From the cache:** {from_cache}.")
    if from_remote := sum(1 for a in changes if a.from_remote):
        lines.append(f"- **From the remote cache:** {from_remote}.")
    if generated is not None:
        counted = len(changes) + sum(1 for f in plan.files if f.is_change)
        lines += _run_lines(generated, generated_refused, counted, len(failures or {}))
    if notes:
        lines += ["", "**Notes:**", ""]
        noted = [f"- {markdown_text(note, _SHOWN_CHARS)}" for note in notes]
        lines += _fitting(noted, _share(_NOTES_BYTES, budget), listed="(the log lists all)")
    if failures:
        lines += ["", "**Failed:**", ""]
        failed = [
            f"- {markdown_text(name, _SHOWN_CHARS)}: {markdown_text(first_line(e), _SHOWN_CHARS)}"
            for name, e in failures.items()
        ]
        lines += _fitting(failed, _share(_FAILED_BYTES, budget), listed="(the log lists all)")
    if changed:
        lines += ["", "**What changed:**", ""]
        changed_budget = _share(_CHANGED_BYTES, budget)
        lines += _fitting(changed, changed_budget, most=_SHOWN_CHANGES, listed=listed)
    return _cut("\n".join(lines).rstrip("\n") + "\n\n", budget, listed)


def _run_lines(generated: int, refused: int, counted: int, failed: int) -> list[str]:
    """An apply's own lines: what it generated, and how many of the `counted` actions
    the table lists it carried out (all but those that `failed`)."""
    then = f" ({refused} then refused)" if refused else ""
    lines = [f"- **Generated in this run:** {generated}{then}."]
    if counted:
        lines.append(f"- **Done:** {max(counted - failed, 0)} of {counted}; {failed} failed.")
    return lines


def up_to_date(title: str, images: int, *, applied: bool = False) -> str:
    """What `summary` writes for a plan that found all its `images` up to date and had
    nothing else to say (no note, lock change or cost), from the count alone: the
    job summary of the no-op snapshot's fast path. `applied`: an apply's, which
    says it generated nothing."""
    lines = [
        f"### {markdown_text(title, _SHOWN_CHARS)}",
        "",
        f"No changes: {plural(images, 'image')} up to date.",
    ]
    if applied:
        lines += ["", "- **Generated in this run:** 0."]
    return "\n".join(lines) + "\n\n"


def failed(title: str, command: str, lines: Sequence[str], *, budget: int = SUMMARY_BYTES) -> str:
    """What `summary` writes for a `command` (plan, apply) that ended in an error before
    it had a plan to show: the same title, then the error's `lines` (a manifest's
    problems, each on its own), at most `budget` bytes."""
    said = [markdown_text(line.strip(), _SHOWN_CHARS) for line in lines if line.strip()]
    head = [f"### {markdown_text(title, _SHOWN_CHARS)}", ""]
    if len(said) == 1:
        head.append(f"**The {command} failed:** {said[0]}")
    else:
        listed = "(the job log lists all)"
        items = [f"- {line}" for line in said]
        head += [f"**The {command} failed:**", ""]
        head += _fitting(items, budget // 2, listed=listed)
    return _cut("\n".join(head) + "\n\n", budget, "(the job log lists all)")


def _share(part: int, budget: int) -> int:
    """A part's share of `budget`: what it has of the 1 MiB of a job summary."""
    return part * budget // SUMMARY_BYTES


def _cut(text: str, budget: int, listed: str) -> str:
    """`text` if it fits in `budget` bytes; else its first whole lines that do, then a
    line saying it was cut (a small budget, filled by the parts every summary has)."""
    if len(text.encode()) <= budget:
        return text
    end = f"\n\n… cut to {budget:,} bytes {listed}\n\n"
    room = budget - len(end.encode())
    kept = text.encode()[: max(room, 0)].decode(errors="ignore")
    return kept.rpartition("\n")[0] + end


def _changed_lines(action: Action) -> list[str]:
    """Each field that differs, old -> new; for a new image that costs a generation,
    its prompt (filled in from its row, which the pull request may have written)."""
    from nebula_build.core.plan import ActionKind
    from nebula_build.ui.report import change_line

    if action.kind is ActionKind.CREATE and action.generates and action.spec is not None:
        return [f"prompt: {json.dumps(action.spec.prompt, ensure_ascii=False)}"]
    instead = action.resolution
    return [change_line(c) for c in action.changes or (instead.changes if instead else ())]


def _generations(plan: Plan, estimate: Estimate | None, budget: int) -> list[str]:
    """The generations per model (at their price, where known, named in at most
    `budget` bytes), and the estimate."""
    if estimate is None:
        models = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
        if not models:
            return []
        per_model = _some(
            [f"{n} × {_code(m)} on {markdown_text(b)}" for (b, m), n in sorted(models.items())],
            budget,
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
    lines = [f"- **Generations:** {_some(parts, budget)}."]
    if estimate.paid_generations:
        total = estimate.total
        said = "unknown" if total is None else money(total)
        if total is None and estimate.known:
            said = f"at least {money(estimate.known)} (some prices unknown)"
        lines.append(f"- **Estimated cost:** {markdown_text(said)}.")  # `$`: math on GitHub
    return lines


#: the generations per model a job summary names (a manifest may give each image its own)
_MODELS_BYTES = 32 << 10


def _some(parts: list[str], budget: int) -> str:
    """`parts` joined with commas, as many as fit in `budget` bytes, then how many more."""
    shown = _fitting(parts, budget, listed="")
    if len(shown) < len(parts):
        shown[-1] = shown[-1].removeprefix("- ").rstrip() + " models"
    return ", ".join(shown)
