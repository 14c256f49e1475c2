"""`plan --out FILE` and `apply --plan FILE`: a plan saved for review, and an apply that
carries it out only while it is still the plan (Terraform's saved plan).

The file is untrusted input: it may come from a pull request's artifact. It is never
executed. apply plans again from the files on disk with the options of its own command
line, and the file can only make it refuse: where it was saved with other options, or
the plan it records (core/planrecord.py) is not the one made now. Its size is capped,
its shape checked, and what of it is printed goes through `printable`.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nebula_build.cli import markdownfile
from nebula_build.core.planrecord import (
    ACTION_KINDS,
    FILE_STATES,
    ActionLine,
    FileLine,
    PlanRecord,
    carried_out,
    changed_since,
    cheaper,
    differences,
    other_project,
    record,
    stale_line,
)
from nebula_build.errors import UserError
from nebula_build.text import plural, printable

if TYPE_CHECKING:
    from nebula_build.cli.context import Context
    from nebula_build.core.plan import Plan
    from nebula_build.engine.cost import Estimate

FORMAT = "nebula-build-plan"
VERSION = 1
#: the largest file `apply --plan` reads: a plan of 100,000 new images with names and
#: outputs of about 40 characters is 16.4 MiB (bench/saved_plan.py)
MAX_BYTES = 32 * 1024 * 1024
#: the most JSON values (lists, strings, numbers…) it may hold: six a line, room for
#: 300,000 lines; 2,000,000 empty lists would take about 130 MB once parsed
MAX_VALUES = 2_000_000
#: the options a plan is made with, as argparse keeps them, in the order a line names them
PLANNING_OPTIONS = ("target", "replace", "more", "force", "backend", "offline")


@dataclass(frozen=True)
class SavedPlan:
    """A saved plan as read and checked."""

    #: how messages name the file: as the command line did
    name: str
    options: dict[str, Any]
    record: PlanRecord
    #: the estimated cost when it was saved (None where a price was unknown)
    total: Decimal | None


def planning_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this command line that shape a plan, in a form that compares
    equal however they were ordered."""
    return {
        "target": sorted(args.target),
        "replace": sorted(args.replace),
        "more": sorted(args.more),
        "force": bool(args.force),
        "backend": args.backend,
        "offline": bool(args.offline),
    }


# --- plan --out -------------------------------------------------------------------


def write(ctx: Context, plan: Plan, estimate: Estimate) -> None:
    """Write the `--out` file, whole or not at all."""
    if markdownfile.requested(ctx, "out") is not None:
        markdownfile.write(ctx, contents(plan, estimate, planning_options(ctx.args)), "out")


def contents(plan: Plan, estimate: Estimate, options: dict[str, Any]) -> str:
    """The saved plan: JSON, one line per image and per file, the rest indented."""
    saved = record(plan)
    total = estimate.total
    header = {
        "format": FORMAT,
        "version": VERSION,
        "options": options,
        "summary": plan.summary(),
        "generations": len(plan.generations),
        "cost": {"total": None if total is None else str(total), "known": str(estimate.known)},
        "digest": saved.digest,
        "generating": sorted(saved.generating or ()),
    }
    parts = [f"  {json.dumps(key)}: {_dumped(value)}" for key, value in header.items()]
    rows_of: dict[str, tuple[tuple[str | None, ...], ...]] = {
        "actions": saved.actions,
        "files": saved.files,
    }
    for key, rows in rows_of.items():
        listed = ",\n".join(f"    {_dumped(row)}" for row in rows)  # a tuple is a list
        parts.append(f'  "{key}": [\n{listed}\n  ]' if rows else f'  "{key}": []')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _dumped(value: Any) -> str:
    # escaped: a path read from the disk may hold bytes that are not UTF-8
    return json.dumps(value)


# --- apply --plan -----------------------------------------------------------------


def requested(ctx: Context) -> SavedPlan | None:
    """The plan `--plan` names, read and checked, or None without `--plan`; the options
    of this command line must be those it was saved with."""
    given = getattr(ctx.args, "plan", None)
    if not given:
        return None
    name = printable(str(given), limit=200)
    saved = _parsed(name, _read(Path(ctx.start) / given, name))
    _refuse_other_options(saved, planning_options(ctx.args))
    return saved


def _read(path: Path, name: str) -> bytes:
    try:  # non-blocking: a FIFO named by mistake must not hang the apply
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(
            f"{name}: no such file; save a plan with `nebula-build plan --out {name}`"
        ) from None
    except OSError as exc:
        raise _unreadable(name, exc) from None
    try:
        data = _read_open(fd, name)
    except OSError as exc:
        raise _unreadable(name, exc) from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UserError(
            f"{name}: more than {MAX_BYTES // 2**20} MiB, larger than any saved plan; "
            "is it the right file?"
        )
    return data


def _read_open(fd: int, name: str) -> bytes:
    """At most MAX_BYTES + 1 bytes of a plain file: as much as it holds (a read takes
    the memory it asks for), and what it grew by since, up to the cap."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{name}: not a file, so not a saved plan")
    wanted = min(info.st_size, MAX_BYTES) + 1
    with os.fdopen(os.dup(fd), "rb") as handle:
        data = handle.read(wanted)
        if len(data) == wanted <= MAX_BYTES:
            data += handle.read(MAX_BYTES + 1 - wanted)
    return data


def _unreadable(name: str, exc: OSError) -> UserError:
    return UserError(f"{name}: cannot read it: {exc.strerror or type(exc).__name__}")


def _parsed(name: str, data: bytes) -> SavedPlan:
    from nebula_build.jsonparse import parse_json

    try:
        top = parse_json(data, values=MAX_VALUES)
    except ValueError as exc:
        raise _not_saved(name, str(exc)) from None
    if not isinstance(top, dict) or top.get("format") != FORMAT:
        raise _not_saved(name, f'no "format": "{FORMAT}"')
    version = top.get("version")
    if type(version) is not int or version != VERSION:
        shown = printable(json.dumps(version), limit=20)
        raise UserError(
            f"{name} is a saved plan of format version {shown}, which this nebula-build "
            f"does not read (it reads {VERSION}); run plan again"
        )
    return _checked(name, top)


def _not_saved(name: str, why: str) -> UserError:
    return UserError(f"{name} is not a saved plan ({why}); save one with `nebula-build plan --out`")


def _checked(name: str, top: dict[str, Any]) -> SavedPlan:
    options = _field(name, top, "options", dict, "an object")
    for option in PLANNING_OPTIONS:
        if option not in options or not _option_fits(option, options[option]):
            raise _malformed(name, f'"options" has no valid "{option}"')
    actions = _rows(name, top, "actions", _action_row, "[image, action, key, output, reason]")
    files = _rows(name, top, "files", _file_row, "[name, action, output, reason]")
    digest = _field(name, top, "digest", str, "a string")
    cost = _field(name, top, "cost", dict, "an object")
    generating = top.get("generating")
    if generating is not None and not (
        isinstance(generating, list) and all(isinstance(image, str) for image in generating)
    ):
        raise _malformed(name, '"generating" is not a list of image names')
    saved = PlanRecord(
        actions=tuple(ActionLine(*row) for row in actions),
        files=tuple(FileLine(*row) for row in files),
        digest=digest,
        generating=None if generating is None else frozenset(generating),
    )
    chosen = {option: options[option] for option in PLANNING_OPTIONS}
    return SavedPlan(name, chosen, saved, _amount(name, cost.get("total")))


def _field(name: str, top: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = top.get(key)
    if not isinstance(value, kind):
        raise _malformed(name, f'"{key}" is not {what}')
    return value


def _rows(
    name: str, top: dict[str, Any], key: str, fits: Callable[[Any], bool], shape: str
) -> list[list[Any]]:
    rows: list[list[Any]] = _field(name, top, key, list, "a list")
    for index, row in enumerate(rows):
        if not fits(row):
            raise _malformed(name, f'"{key}" item {index + 1} is not {shape}')
    return rows


def _action_row(row: Any) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 5
        and all(isinstance(row[i], str) for i in (0, 1, 2, 4))
        and (row[3] is None or isinstance(row[3], str))
        and row[1] in ACTION_KINDS
    )


def _file_row(row: Any) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 4
        and all(isinstance(item, str) for item in row)
        and row[1] in FILE_STATES
    )


def _option_fits(option: str, value: Any) -> bool:
    if option in ("force", "offline"):
        return isinstance(value, bool)
    if option == "backend":
        return value is None or isinstance(value, str)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _amount(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value) if isinstance(value, str) and len(value) <= 40 else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise _malformed(name, '"cost" has no valid "total"')
    return amount


def _malformed(name: str, why: str) -> UserError:
    return UserError(f"{name} is not a saved plan nebula-build wrote ({why}); run plan again")


def _refuse_other_options(saved: SavedPlan, options: dict[str, Any]) -> None:
    if saved.options == options:
        return
    differing = [option for option in PLANNING_OPTIONS if saved.options[option] != options[option]]
    recorded = {option: saved.options[option] for option in differing}
    said = _options_text(recorded)
    how = f"with {said}" if said else "without " + " or ".join(f"--{o}" for o in differing)
    raise UserError(f"{saved.name} was saved {how}; apply it with the same options")


def _options_text(options: dict[str, Any]) -> str:
    """Planning options as a command line gives them: `--replace hero --force`."""
    words: list[str] = []
    for option, value in options.items():
        if value is True:
            words.append(f"--{option}")
        elif isinstance(value, str):
            words.append(f"--{option} {printable(value, limit=80)}")
        elif isinstance(value, list):
            words += [f"--{option} {printable(item, limit=80)}" for item in value[:5]]
            words += [f"(and {len(value) - 5} more)"] if len(value) > 5 else []
    return " ".join(words)


def check(saved: SavedPlan, plan: Plan) -> str | None:
    """Refuse, before anything is written, a plan made now that is not the one saved;
    the note to say where it is, but for images a cache makes now (it pays for less)."""
    now = record(plan)
    if other_project(saved.record, now):
        images = plural(len(saved.record.actions), "image")
        raise UserError(
            f"{saved.name} was saved for another project: none of its {images} is in "
            "this manifest; run plan here"
        )
    found = differences(saved.record, now)
    if not found:
        return None
    if (spared := cheaper(saved.record, plan)) is not None:  # names of the plan made now
        images = plural(len(spared), "image")
        named = ", ".join(spared[:3]) + (f" and {len(spared) - 3} more" if len(spared) > 3 else "")
        return (
            f"{saved.name}: {images} it would generate {'is' if len(spared) == 1 else 'are'} "
            f"in a cache now ({named}): restored, not paid for; the rest as saved"
        )
    # the images whose entry this plan's apply wrote: done, even where made as they were
    applied = {
        action.image
        for action in plan.actions
        if action.entry is not None and action.entry.applied_plan == saved.record.digest
    }
    carried = carried_out(saved.record, now, applied)
    if carried is not None and not carried.left:
        raise UserError(
            f"{saved.name} was applied already: its {plural(carried.done, 'change')} "
            f"{'is' if carried.done == 1 else 'are'} done, and nothing is left of it to do; "
            "run plan again for a new plan"
        )
    if carried is not None:
        done = plural(carried.done + carried.left, "change")
        raise UserError(
            f"{saved.name} was partly applied already: {carried.done} of its {done} "
            f"{'is' if carried.done == 1 else 'are'} done (an earlier apply stopped or "
            "failed before the rest); run plan again"
        )
    since = changed_since(saved.record, now, applied) if applied else []
    if since:
        raise UserError(
            f"{saved.name} was applied already, and the project changed since: "
            f"{stale_line(since)}; run plan again"
        )
    raise UserError(f"{saved.name} is stale: {stale_line(found)}; run plan again")


def cost_note(saved: SavedPlan, estimate: Estimate) -> str | None:
    """A note where the estimate moved since the plan was saved (the prices, since the
    plan is the same); None where it did not."""
    from nebula_build.engine.cost import money

    now = estimate.total
    if now == saved.total:
        return None

    def said(total: Decimal | None) -> str:
        return "unknown" if total is None else money(total)

    return (
        f"the estimated cost moved since {saved.name} was saved (the prices changed, not "
        f"the plan): {said(saved.total)} then, {said(now)} now"
    )
