"""The gallery: a contact sheet of every declared image, as one offline HTML page.

`nebula-build gallery` writes it to `.nebula-build/gallery/index.html`;
`nebula-build watch --serve` serves it live and refreshes it after each round.
An image with candidates shows its draws side by side, the picked one marked: live,
a click (or a key) picks one; offline, each shows the `pick` command to copy.
No external resources: it works offline and from `file://`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nebula_build.core.plan import ActionKind, Plan
from nebula_build.live.draws import Draw
from nebula_build.live.reviewpage import REVIEW_SCRIPT, REVIEW_STYLE
from nebula_build.live.sprites import check_rows
from nebula_build.state.guard import Guard
from nebula_build.state.project import Project


@dataclass(frozen=True)
class Candidate:
    """One draw of an image, as its card shows it."""

    index: int
    key: str
    picked: bool
    #: where its picture is; None when there is none here ("not made yet")
    href: str | None
    command: str


@dataclass(frozen=True)
class Card:
    """One image as the gallery shows it."""

    name: str
    href: str
    exists: bool
    status: str  # "ok" | "pending" | "failed" | "conflict"
    status_text: str
    details: tuple[tuple[str, str], ...]
    prompt: str
    negative_prompt: str | None
    changed: bool
    candidates: tuple[Candidate, ...] = ()
    #: shown over a checkerboard: the image asks for a transparent background
    transparent: bool = False
    #: each acceptance check's result on the file as it is: (text, passed)
    checks: tuple[tuple[str, bool], ...] = ()


def cards(
    plan: Plan,
    project: Project,
    *,
    failures: Mapping[str, str],
    link: str = "relative",
    base: Path | None = None,
    changed: Iterable[str] = (),
    draws: Mapping[str, tuple[Draw, ...]] = {},
    draw_links: Mapping[str, str] = {},
) -> list[Card]:
    """Cards for every declared image, in manifest order.

    `link` is "relative" (from `base`, for a page written to disk) or "served"
    (`/files/<output>?v=<digest>`, for the live server). `draws` are the candidates
    of the images that have some, shown from `draw_links` (by generation key).
    """
    just_changed = set(changed)
    guard = Guard(project.root)
    result = []
    for action in plan.actions:
        spec = action.spec
        if spec is None or action.output is None:  # removed, or a candidate draw (no file)
            continue
        path = project.path_of(spec.output)
        version = action.entry.digest[:10] if action.entry else ""
        if link == "served":
            href = f"/files/{spec.output}?v={version}"
        else:
            href = Path(os.path.relpath(path, base or project.root)).as_posix()
        status, text = _status(action.kind, action.reason, failures.get(spec.name))
        if spec.pin is not None and action.kind is ActionKind.NOOP:
            text = f"up to date · pinned to an earlier generation (pick {spec.name} --unpin)"
        details = [
            ("model", spec.model),
            ("backend", spec.backend),
            ("size", f"{spec.width} × {spec.height}"),
            ("seed", "—" if spec.seed is None else str(spec.seed)),
            ("output", spec.output),
        ]
        if spec.num_steps is not None:
            details.insert(3, ("steps", str(spec.num_steps)))
        if spec.guidance_scale is not None:
            details.insert(4, ("guidance", f"{spec.guidance_scale:g}"))
        exists = path.is_file()
        if spec.key_color is not None:
            details.append(("background", f"transparent (keyed from {spec.key_color})"))
        checked = check_rows(guard, spec) if exists and status == "ok" else ()
        result.append(
            Card(
                spec.name,
                href,
                exists,
                status,
                text,
                tuple(details),
                spec.prompt,
                spec.negative_prompt,
                spec.name in just_changed,
                _candidates(draws.get(spec.name, ()), draw_links, href if exists else None),
                transparent=spec.key_color is not None
                or dict(spec.checks).get("alpha") == "required",
                checks=checked,
            )
        )
    return result


def _candidates(
    draws: Iterable[Draw], links: Mapping[str, str], output: str | None
) -> tuple[Candidate, ...]:
    """The draws as shown: the picked one falls back to the output file when the cache
    here lacks its bytes (a checkout with the lock and the outputs)."""
    return tuple(
        Candidate(
            draw.index,
            draw.generation_key,
            draw.picked,
            links.get(draw.generation_key) or (output if draw.picked else None),
            draw.pick_command,
        )
        for draw in draws
    )


def _status(kind: ActionKind, reason: str, failure: str | None) -> tuple[str, str]:
    if kind is ActionKind.CONFLICT:
        return "conflict", f"conflict: {reason}"
    if failure is not None and kind is not ActionKind.NOOP:
        return "failed", f"failed: {failure}"
    if kind is ActionKind.NOOP:
        return "ok", "up to date"
    return "pending", f"pending {kind.value}: {reason}"


def render(
    items: list[Card], *, title: str, live: bool = False, round_number: int = 0, token: str = ""
) -> str:
    """The whole page. With `live`, it listens for rounds and refreshes itself, and
    picks with `token` (the server's, for this run)."""
    counts = {s: sum(c.status == s for c in items) for s in ("ok", "pending", "failed", "conflict")}
    summary = " · ".join(
        f'<span class="chip {s}">{n} {label}</span>'
        for s, n, label in (
            ("ok", counts["ok"], "up to date"),
            ("pending", counts["pending"], "pending"),
            ("failed", counts["failed"], "failed"),
            ("conflict", counts["conflict"], "conflict"),
        )
        if n
    )
    body = "\n".join(_card(card, live=live) for card in items)
    body = body or '<p class="empty">No images declared.</p>'
    script = _LIVE_SCRIPT if live else ""
    reviewing = any(card.candidates for card in items)
    token_meta = f'<meta name="nebula-build-token" content="{html.escape(token)}">' if live else ""
    return _PAGE.format(
        title=html.escape(title),
        summary=summary,
        cards=body,
        script=script,
        live="live" if live else "",
        round=round_number,
        token=token_meta,
        review_style=REVIEW_STYLE,
        keys=_keys(live=live) if reviewing else "",
        review_script=REVIEW_SCRIPT if reviewing else "",
    )


def _keys(*, live: bool) -> str:
    action = "click or step to pick" if live else "click to show its pick command"
    return (
        '<p class="keys" aria-label="keyboard shortcuts"><kbd>n</kbd><kbd>p</kbd> image '
        "<kbd>j</kbd><kbd>k</kbd> candidate <span>(or the arrow keys) · "
        f"{action}</span></p>"
    )


def _card(card: Card, *, live: bool) -> str:
    e = html.escape
    if card.candidates:
        image = _strip(card, live=live)
    elif card.exists:
        image = (
            f'<a class="thumb" href="{e(card.href)}"><img src="{e(card.href)}" '
            f'alt="{e(card.prompt)}" loading="lazy"></a>'
        )
    else:
        image = '<div class="thumb missing">not generated yet</div>'

    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in card.details)
    negative = (
        f'<p class="negative"><b>not:</b> {e(card.negative_prompt)}</p>'
        if card.negative_prompt
        else ""
    )
    changed = " changed" if card.changed else ""
    changed += " transparent" if card.transparent else ""
    checks = "".join(
        f'<li class="{"pass" if ok else "fail"}">{"✓" if ok else "✗"} {e(text)}</li>'
        for text, ok in card.checks
    )
    checks = f'<ul class="checks" aria-label="checks">{checks}</ul>' if checks else ""
    flag = '<span class="flag">just changed</span>' if card.changed else ""
    search = e(f"{card.name} {card.prompt}".lower())
    drawn = " has-draws" if card.candidates else ""
    return (
        f'<article class="card {card.status}{changed}{drawn}" id="image-{e(card.name)}" '
        f'tabindex="-1" data-name="{e(card.name)}" data-search="{search}">{image}'
        f'<div class="meta"><h2>{e(card.name)}{flag}</h2>'
        f'<p class="status {card.status}">{e(card.status_text)}</p>'
        f'<p class="prompt">{e(card.prompt)}</p>{negative}{checks}<dl>{rows}</dl></div></article>'
    )


def _strip(card: Card, *, live: bool) -> str:
    """The card's draws side by side, the picked one marked."""
    items = "".join(_candidate(card.name, c, live=live) for c in card.candidates)
    count = len(card.candidates)
    return (
        f'<div class="draws" role="group" aria-label="{count} candidates of '
        f'{html.escape(card.name)}" style="--count: {count}">{items}</div>'
    )


def _candidate(name: str, candidate: Candidate, *, live: bool) -> str:
    e = html.escape
    picked = " picked" if candidate.picked else ""
    badge = '<span class="badge">picked</span>' if candidate.picked else ""
    label = f'<span class="index">draw {candidate.index}</span>{badge}'
    if candidate.href is None:
        return (
            f'<figure class="draw missing{picked}" data-index="{candidate.index}">'
            f'<div class="shot">not made yet</div><figcaption>{label}</figcaption></figure>'
        )
    verb = "pick" if live else "show the command to pick"
    copy = (
        "" if live else '<button type="button" class="copy" title="copy the command">copy</button>'
    )
    command = "" if live else f'<code class="command">{e(candidate.command)}</code>'
    return (
        f'<figure class="draw{picked}" data-index="{candidate.index}" '
        f'data-key="{e(candidate.key)}">'
        f'<button type="button" class="shot choose" title="{verb} draw {candidate.index}">'
        f'<img src="{e(candidate.href)}" alt="draw {candidate.index} of {e(name)}" '
        f'loading="lazy"></button><figcaption>{label}{copy}</figcaption>{command}</figure>'
    )


_LIVE_SCRIPT = """<script>
(() => {
  const source = new EventSource("/events");
  source.onmessage = (event) => {
    const round = JSON.parse(event.data);
    if (round.number <= Number(document.body.dataset.round || 0)) return;
    // a pick in flight reloads once it has its answer (see the review script)
    const wanted = new CustomEvent("nebula-build:round", { cancelable: true });
    if (document.dispatchEvent(wanted)) location.reload();
  };
})();
</script>"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{token}
<style>
  :root {{ color-scheme: dark; --bg: #111318; --card: #1b1e26; --line: #2b303b;
          --text: #e7e9ee; --dim: #9aa3b2; --ok: #4cc38a; --pending: #e5b84b;
          --failed: #ef6461; --conflict: #c678dd; --accent: #6ea8fe; }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; background: var(--bg); color: var(--text);
         font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }}
  header {{ position: sticky; top: 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 12px;
           align-items: center; padding: 14px 24px; background: #111318ee;
           border-bottom: 1px solid var(--line); backdrop-filter: blur(6px); }}
  h1 {{ font-size: 16px; margin: 0 12px 0 0; }}
  input {{ flex: 1; min-width: 180px; max-width: 360px; padding: 7px 10px; border-radius: 8px;
          border: 1px solid var(--line); background: var(--card); color: var(--text); }}
  .chip {{ padding: 2px 8px; border-radius: 999px; background: var(--card);
          border: 1px solid var(--line); }}
  .chip.ok {{ color: var(--ok); }} .chip.pending {{ color: var(--pending); }}
  .chip.failed {{ color: var(--failed); }} .chip.conflict {{ color: var(--conflict); }}
  .live-dot {{ display: none; color: var(--ok); }} body.live .live-dot {{ display: inline; }}
  main {{ display: grid; gap: 18px; padding: 24px;
         grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); }}
  .card {{ background: var(--card); border: 1px solid var(--line); border-radius: 12px;
          overflow: hidden; display: flex; flex-direction: column; }}
  .card[hidden] {{ display: none; }}
  .card.changed {{ border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent); }}
  .thumb {{ display: block; aspect-ratio: 4 / 3; overflow: hidden; background:
           repeating-conic-gradient(#252a34 0 25%, #1e222b 0 50%) 50% / 20px 20px; }}
  .card.transparent .thumb:not(.missing), .card.transparent .draw .shot {{ background:
           repeating-conic-gradient(#c8ccd4 0 25%, #f4f5f7 0 50%) 50% / 16px 16px; }}
  .checks {{ list-style: none; margin: 0 0 6px; padding: 0; font-size: 12px; }}
  .checks .pass {{ color: var(--ok); }} .checks .fail {{ color: var(--failed); }}
  .thumb img {{ width: 100%; height: 100%; object-fit: contain; display: block; }}
  .thumb.missing {{ display: grid; place-items: center; color: var(--dim); }}
  .meta {{ padding: 12px 14px 14px; }}
  h2 {{ font-size: 15px; margin: 0 0 4px; display: flex; gap: 8px; align-items: center; }}
  .flag {{ font-size: 11px; font-weight: 600; color: #0b1220; background: var(--accent);
          border-radius: 6px; padding: 1px 6px; }}
  .status {{ margin: 0 0 8px; font-size: 12px; }}
  .status.ok {{ color: var(--ok); }} .status.pending {{ color: var(--pending); }}
  .status.failed {{ color: var(--failed); }} .status.conflict {{ color: var(--conflict); }}
  .prompt {{ margin: 0 0 6px; }} .negative {{ margin: 0 0 6px; color: var(--dim); }}
  dl {{ display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 8px 0 0;
       font-size: 12px; color: var(--dim); }}
  dt {{ color: #6f7888; }} dd {{ margin: 0; overflow-wrap: anywhere; }}
  .empty {{ color: var(--dim); }}
{review_style}
</style>
</head>
<body class="{live}" data-round="{round}">
<header>
  <h1>{title}</h1>
  <input id="filter" type="search" placeholder="Filter by name or prompt" autocomplete="off">
  {summary}
  <span class="live-dot">● live</span>
  {keys}
  <output id="note" aria-live="polite"></output>
</header>
<main id="cards">
{cards}
</main>
<script>
  const filter = document.getElementById("filter");
  filter.addEventListener("input", () => {{
    const words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    for (const card of document.querySelectorAll(".card")) {{
      card.hidden = !words.every((w) => card.dataset.search.includes(w));
    }}
  }});
</script>
{review_script}
{script}
</body>
</html>
"""


def page_data(round_number: int, changed: Iterable[str]) -> str:
    """The server-sent event announcing a finished round."""
    return json.dumps({"number": round_number, "changed": sorted(changed)})
