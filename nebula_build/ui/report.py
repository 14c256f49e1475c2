"""Render plans, statuses and apply results as text or JSON. Decides nothing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nebula_build.core.plan import Action, ActionKind, Plan
from nebula_build.plugin.catalog import OPTIONAL_PARAMS, ModelSupport
from nebula_build.ui.style import Style

if TYPE_CHECKING:
    from nebula_build.engine.apply import ApplyResult, Outcome
    from nebula_build.outputs.atlas import AtlasAction

SYMBOLS = {
    ActionKind.CREATE: ("+", "green"),
    ActionKind.REGENERATE: ("~", "yellow"),
    ActionKind.REENCODE: ("~", "cyan"),
    ActionKind.RESTORE: ("<", "cyan"),
    ActionKind.MOVE: (">", "cyan"),
    ActionKind.DELETE: ("-", "red"),
    ActionKind.CONFLICT: ("!", "magenta"),
    ActionKind.NOOP: (" ", "dim"),
}
_DIGEST_FIELDS = ("image", "mask")


def _value(field: str, value: Any) -> str:
    if value is None:
        return "(unset)"
    if field in _DIGEST_FIELDS:
        text = str(value)
        if text.startswith("@"):
            upstream, _, key = text.partition(":")
            return f"{upstream} (output {key[:12]}…)"
        return f"sha256:{text[:12]}…"
    return json.dumps(value, ensure_ascii=False)


def action_lines(action: Action, style: Style) -> list[str]:
    symbol, color = SYMBOLS[action.kind]
    cache = (
        " (from cache)"
        if action.from_cache and action.kind in (ActionKind.CREATE, ActionKind.REGENERATE)
        else ""
    )
    head = (
        f"  {style(symbol, color, 'bold')} {style(action.image, 'bold')}  "
        f"{style(action.kind.value, color)}  {action.output or ''}"
    )
    lines = [head, style(f"      {action.reason}{cache}", "dim")]
    if action.spec is not None and action.spec.depends_on:
        lines.append(style(f"      takes the output of {', '.join(action.spec.depends_on)}", "dim"))
    for change in action.changes:
        lines.append(
            f"      {style('~', 'yellow')} {change.field}: "
            f"{_value(change.field, change.old)} -> {_value(change.field, change.new)}"
        )
    if action.backup:
        lines.append(
            style("      --force: the current file is backed up, then replaced", "magenta")
        )
    lines += [style(f"      note: {note}", "yellow") for note in action.notes]
    return lines


def summary_line(plan: Plan) -> str:
    counts = Counter(a.kind for a in plan.actions)
    to_generate = counts[ActionKind.CREATE] + counts[ActionKind.REGENERATE]
    from_cache = sum(
        1
        for a in plan.actions
        if a.kind in (ActionKind.CREATE, ActionKind.REGENERATE) and a.from_cache
    )
    parts = [
        f"{to_generate} to generate ({from_cache} from cache)",
        f"{counts[ActionKind.DELETE]} to delete",
    ]
    labels = (
        (ActionKind.REENCODE, "to re-encode"),
        (ActionKind.RESTORE, "to restore"),
        (ActionKind.MOVE, "to move"),
        (ActionKind.CONFLICT, "in conflict"),
        (ActionKind.NOOP, "up to date"),
    )
    parts += [f"{counts[kind]} {label}" for kind, label in labels if counts[kind]]
    return "Plan: " + ", ".join(parts) + "."


def generation_costs(plan: Plan) -> list[str]:
    """'3 × FLUX.1-schnell on nebula' for each model that will be billed a generation."""
    counts = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
    return [f"{n} × {model} on {backend}" for (backend, model), n in sorted(counts.items())]


def atlas_lines(actions: Iterable[AtlasAction], style: Style) -> list[str]:
    marks = {"build": ("+", "green"), "conflict": ("!", "magenta"), "waiting": (" ", "dim")}
    lines = []
    for action in actions:
        if action.state == "noop":
            continue
        symbol, color = marks[action.state.value]
        lines.append(
            f"  {style(symbol, color, 'bold')} {style('atlas ' + action.atlas.name, 'bold')}"
            f"  {style(action.state.value, color)}  {action.atlas.output}"
        )
        lines.append(style(f"      {action.reason}", "dim"))
    return lines


def plan_text(plan: Plan, style: Style, atlases: Iterable[AtlasAction] = ()) -> str:
    changes = plan.changes
    sheets = atlas_lines(atlases, style)
    if not changes and not sheets:
        return f"No changes: {len(plan.actions)} image(s) up to date."
    lines = ["nebula-build will perform these actions:", ""]
    for action in changes:
        lines += action_lines(action, style)
    lines += sheets
    lines += ["", style(summary_line(plan), "bold")]
    costs = generation_costs(plan)
    if costs:
        lines.append("Generations: " + ", ".join(costs) + ".")
    return "\n".join(lines)


def action_json(action: Action) -> dict[str, Any]:
    data: dict[str, Any] = {
        "image": action.image,
        "action": action.kind.value,
        "reason": action.reason,
        "output": action.output,
        "generates": action.generates,
        "from_cache": action.from_cache,
    }
    if action.spec is not None:
        data |= {
            "backend": action.spec.backend,
            "model": action.spec.model,
            "generation_key": action.spec.generation_key,
        }
    if action.old_output:
        data["old_output"] = action.old_output
    if action.spec is not None and action.spec.depends_on:
        data["depends_on"] = list(action.spec.depends_on)
    if action.changes:
        data["changes"] = [{"field": c.field, "old": c.old, "new": c.new} for c in action.changes]
    if action.notes:
        data["notes"] = list(action.notes)
    return data


def plan_json(plan: Plan, atlases: Iterable[AtlasAction] = ()) -> dict[str, Any]:
    return {
        "actions": [action_json(a) for a in plan.actions],
        "atlases": [
            {
                "atlas": a.atlas.name,
                "action": a.state.value,
                "reason": a.reason,
                "output": a.atlas.output,
            }
            for a in atlases
        ],
        "summary": plan.summary(),
        "generations": len(plan.generations),
    }


def status_text(plan: Plan, style: Style) -> str:
    width = max((len(a.image) for a in plan.actions), default=0)
    lines = []
    for action in plan.actions:
        if action.kind is ActionKind.NOOP:
            state = style("up to date", "green")
        elif action.kind is ActionKind.CONFLICT:
            state = style(f"conflict: {action.reason}", "magenta")
        else:
            state = style(f"pending {action.kind.value}: {action.reason}", "yellow")
        lines.append(f"{action.image.ljust(width)}  {state}  {style(action.output or '', 'dim')}")
    return "\n".join(lines) if lines else "No images declared."


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    data = action_json(outcome.action) | {
        "status": "ok" if outcome.ok else "failed",
        "elapsed": round(outcome.elapsed, 4),
        "generated": outcome.generated,
    }
    if outcome.timings:
        data["timings"] = dict(outcome.timings)
    if outcome.peak_memory is not None:
        data["peak_memory_bytes"] = outcome.peak_memory
    if outcome.warnings:
        data["warnings"] = list(outcome.warnings)
    if outcome.error is not None:
        data["error"] = str(outcome.error)
    return data


def apply_json(plan: Plan, result: ApplyResult | None) -> dict[str, Any]:
    outcomes = result.outcomes if result else []
    return {
        "results": [outcome_json(o) for o in outcomes],
        "summary": plan.summary(),
        "generated": result.generated if result else 0,
        "failed": sorted(result.failures) if result else [],
    }


def models_text(tables: Mapping[str, Mapping[str, ModelSupport]], style: Style) -> str:
    header = ["model", *OPTIONAL_PARAMS, "size"]
    lines = []
    for backend, models in tables.items():
        rows = [
            [
                mid,
                *("yes" if p in m.params else "-" for p in OPTIONAL_PARAMS),
                f"x{m.size_multiple}",
            ]
            for mid, m in models.items()
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += [
            style(f"backend {backend}", "bold"),
            "  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        ]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        ]
        lines.append("")
    lines.append(
        "All models take prompt, width and height. A seed on a model without "
        "'seed' still asks for a new draw, but is not reproducible."
    )
    return "\n".join(lines)
