"""The gallery: a contact sheet of every declared image, as one offline HTML page.

`nebula-build gallery` writes it to `.nebula-build/gallery/index.html`;
`nebula-build watch --serve` serves it live and refreshes it after each round.
An image with candidates shows its draws side by side, the picked one marked: live,
a click (or a key) picks one; offline, each shows the `pick` command to copy.
No external resources: it works offline and from `file://`.

The page carries every card as compact JSON and its script builds the cards of one
page at a time, so 100,000 images open as fast as a hundred; the grid shows
thumbnails (`outputs.thumbnails`), a click opens the full image.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from nebula_build.core.plan import Action, ActionKind, FileAction, FileKind, FileState, Plan
from nebula_build.errors import UserError
from nebula_build.imaging import image_size
from nebula_build.live.draws import Draw
from nebula_build.live.gallerypage import GALLERY_SCRIPT, LIVE_SCRIPT, PAGE, PAGE_SIZE
from nebula_build.live.reviewpage import REVIEW_SCRIPT, REVIEW_STYLE
from nebula_build.live.sprites import check_rows
from nebula_build.state.guard import Guard
from nebula_build.state.project import Project
from nebula_build.text import escaped, page_text, plural, shell_operands
from nebula_build.ui.statuslines import verb

if TYPE_CHECKING:
    from nebula_build.core.spec import AssetSpec, AtlasSpec
    from nebula_build.state.lockfile import LockEntry


#: the index of the candidate that is an earlier generation pinned as the output
PINNED = -1

#: the lines of a round's error the live page shows (the terminal has them all)
ERROR_LINES_SHOWN = 5


@dataclass(frozen=True)
class Candidate:
    """One draw of an image, as its card shows it (or its pinned output: `PINNED`)."""

    index: int
    key: str
    picked: bool
    #: where its picture is; None when there is none here ("not made yet")
    href: str | None
    command: str
    #: the seed it was made with, where the image declares one
    seed: int | None = None


#: the longest side of a file the grid enlarges with crisp pixels (pixel art stays
#: pixel art; a larger file, a photo's thumbnail, is smoothed as it is scaled)
SMALL = 128


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
    #: a file of at most SMALL pixels a side (a sprite), shown enlarged with crisp pixels
    small: bool = False
    #: each acceptance check's result on the file as it is: (text, passed)
    checks: tuple[tuple[str, bool], ...] = ()
    #: where its thumbnail is; None: the grid shows the file itself
    thumb: str | None = None


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
    thumbs: Mapping[str, str] = {},
    atlases: Mapping[str, AtlasSpec] = {},
) -> list[Card]:
    """Cards for every declared image, in manifest order, then one for each of
    `atlases` (its sprite sheet).

    `link` is "relative" (from `base`, for a page written to disk) or "served"
    (`/files/<output>?v=<digest>`, for the live server). `draws` are the candidates
    of the images that have some, shown from `draw_links` (by generation key);
    `thumbs` the images' thumbnails, by image name (see `thumblinks`). `failures`:
    the last apply's error of each image, and of each atlas by its label.
    """
    just_changed = set(changed)
    guard = Guard(project.root)
    # strings, not a Path per image: this loop runs once per image of the project
    up = Path(os.path.relpath(project.root, base or project.root)).as_posix()
    prefix = "" if up == "." else f"{quote(up)}/"
    result = []
    for action in plan.actions:
        spec = action.spec
        if spec is None or action.output is None:  # removed, or a candidate draw (no file)
            continue
        version = action.entry.digest[:10] if action.entry else ""
        path = quote(spec.output)  # a `#` or `?` in a file name is not the URL's
        href = f"/files/{path}?v={version}" if link == "served" else prefix + path
        status, text = _status(action, failures.get(spec.name))
        if spec.pin is not None and action.kind is ActionKind.NOOP:
            unpin = f"pick --unpin {shell_operands(spec.name)}"
            text = f"up to date · pinned to an earlier generation ({unpin})"
        elif action.kind is ActionKind.NOOP and action.entry and action.entry.edited_from:
            text = "up to date · a hand edit kept with nebula-build accept"
        details = [
            ("model", spec.model),
            ("backend", spec.backend),
            ("size", _size(spec)),
            ("seed", _seed(spec, action.entry)),
            ("output", spec.output),
        ]
        if action.entry is not None and action.entry.generation_key == spec.generation_key:
            made_with = ", ".join(f"{k} {v}" for k, v in sorted(action.entry.made_with.items()))
            if made_with:
                details.append(("made with", made_with))
        if spec.num_steps is not None:
            details.insert(3, ("steps", str(spec.num_steps)))
        if spec.guidance_scale is not None:
            details.insert(4, ("guidance", f"{spec.guidance_scale:g}"))
        # up to date: the plan found the file as the lock records it
        exists = action.kind is ActionKind.NOOP or project.path_of(spec.output).is_file()
        if spec.key_color is not None:
            details.append(("background", f"transparent (keyed from {spec.key_color})"))
        checked = check_rows(guard, spec) if exists and status == "ok" else ()
        candidates = _candidates(draws.get(spec.name, ()), draw_links, href if exists else None)
        if candidates and spec.pin is not None and exists:
            candidates = (_pinned(spec, href), *candidates)
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
                candidates,
                transparent=spec.key_color is not None
                or dict(spec.checks).get("alpha") == "required",
                small=max(spec.file_size or spec.delivered_size) <= SMALL,
                checks=checked,
                thumb=thumbs.get(spec.name) if exists else None,
            )
        )
    for file in plan.files:
        atlas = atlases.get(file.name) if file.kind is FileKind.ATLAS else None
        if atlas is not None and file.state is not FileState.DELETE:
            path = quote(atlas.output)
            href = f"/files/{path}?v={file.key[:10]}" if link == "served" else prefix + path
            failure = failures.get(file.label)
            result.append(_atlas_card(file, atlas, href, project, guard, failure=failure))
    return result


#: a sheet larger than this is not read for its size (shown smoothed)
_SHEET_LIMIT = 16 << 20
#: the members an atlas card names before it counts the rest
_MEMBERS_NAMED = 8


def _atlas_card(
    file: FileAction,
    atlas: AtlasSpec,
    href: str,
    project: Project,
    guard: Guard,
    *,
    failure: str | None,
) -> Card:
    """An atlas as the gallery shows it: its sheet, what it packs, and its exports;
    `failure`: why its last build failed, where it is still to be built."""
    if file.state is FileState.NOOP:
        status, text = "ok", "up to date"
    elif file.state is FileState.CONFLICT:
        status, text = "conflict", f"conflict: {file.reason}"
    elif failure is not None:
        status, text = "failed", f"failed: {failure}"
    else:
        status, text = "pending", f"pending build: {file.reason}"
    members = atlas.members
    named = ", ".join(members[:_MEMBERS_NAMED])
    if len(members) > _MEMBERS_NAMED:
        named += f" and {len(members) - _MEMBERS_NAMED:,} more"
    exports = [("frame map", atlas.frames), ("aseprite", atlas.aseprite), ("godot", atlas.godot)]
    details = [("packs", plural(len(members), "image")), ("sheet", atlas.output)]
    details += [(kind, path) for kind, path in exports if path is not None]
    exists = file.state is FileState.NOOP or project.path_of(atlas.output).is_file()
    return Card(
        file.label,
        href,
        exists,
        status,
        text,
        tuple(details),
        f"sprite sheet of {named}",
        None,
        False,
        transparent=True,
        small=exists and _small_sheet(guard, atlas.output),
    )


def _small_sheet(guard: Guard, output: str) -> bool:
    """Whether the sheet is at most SMALL pixels a side (read from its header)."""
    try:
        size = image_size(guard.read(output, what="atlas", limit=_SHEET_LIMIT))
    except (OSError, UserError, ValueError):
        return False
    return max(size) <= SMALL


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
            draw.seed,
        )
        for draw in draws
    )


def _pinned(spec: AssetSpec, href: str) -> Candidate:
    """The output an earlier generation pinned (none of the set's draws), shown first
    and marked as the output; its command ends the pin."""
    command = f"nebula-build pick --unpin {shell_operands(spec.name)}"
    return Candidate(PINNED, spec.generation_key, True, href, command, spec.seed)


def _size(spec: AssetSpec) -> str:
    """The file's size, and the generated one where the output steps change it (a sprite
    resized to 64 × 64 from 512 × 512): what an engine gets is what a card says first."""
    generated = f"{spec.width} × {spec.height}"
    file = spec.file_size
    if file is None:  # trimmed: the visible pixels decide
        width, height = spec.delivered_size
        return f"trimmed from {width} × {height} (generated {generated})"
    if file == (spec.width, spec.height):
        return generated
    return f"{file[0]} × {file[1]} (generated {generated})"


def _seed(spec: AssetSpec, entry: LockEntry | None) -> str:
    """The declared seed, else the one the backend derived for this generation."""
    if spec.seed is not None and spec.draw:
        return f"{spec.seed} (draw {spec.draw})"  # not the declared one: the draw's own
    if spec.seed is not None:
        return str(spec.seed)
    if entry is not None and entry.seed is not None and entry.generation_key == spec.generation_key:
        return f"{entry.seed} (derived)"
    return "—"


def _status(action: Action, failure: str | None) -> tuple[str, str]:
    kind, reason = action.kind, action.reason
    if kind is ActionKind.CONFLICT:
        return "conflict", f"conflict: {reason}"
    if failure is not None and kind is not ActionKind.NOOP:
        return "failed", f"failed: {failure}"
    if kind is ActionKind.NOOP:
        return "ok", "up to date"
    return "pending", f"pending {verb(action)}: {reason}"


def render(
    items: list[Card],
    *,
    title: str,
    live: bool = False,
    round_number: int = 0,
    token: str = "",
    run: str = "",
    error_lines: Sequence[str] = (),
    cards_round: int = 0,
) -> str:
    """The whole page: the cards as compact JSON, drawn a page at a time by its script.
    With `live`, it listens for rounds of the watch `run` and refreshes itself, and
    picks with `token` (the server's, for this run). `error_lines`: the error that
    stopped round `round_number`, shown above the cards, which round `cards_round`
    made (0: none has)."""
    counts = Counter(card.status for card in items)
    summary = "".join(
        f'<button type="button" class="chip {s}" data-status="{s}" aria-pressed="false" '
        f'title="show only these">{n:,} {label}</button>'
        for s, n, label in (
            ("ok", counts["ok"], "up to date"),
            ("pending", counts["pending"], "pending"),
            ("failed", counts["failed"], "failed"),
            ("conflict", counts["conflict"], "conflict"),
        )
        if n
    )
    reviewing = any(card.candidates for card in items)
    token_meta = f'<meta name="nebula-build-token" content="{html.escape(token)}">' if live else ""
    return PAGE.format(
        title=html.escape(title),
        summary=summary,
        data=page_json(items),
        page_size=PAGE_SIZE,
        gallery_script=GALLERY_SCRIPT,
        script=LIVE_SCRIPT if live else "",
        live="live" if live else "",
        round=round_number,
        run=html.escape(run),
        token=token_meta,
        review_style=REVIEW_STYLE,
        keys=_keys(live=live) if reviewing else "",
        review_script=REVIEW_SCRIPT if reviewing else "",
        error=_error_banner(error_lines, round_number, cards_round) if error_lines else "",
        live_dot=_live_dot(round_number if error_lines else None),
    )


def _live_dot(failed_round: int | None) -> str:
    """Watch's state beside the title: live, or live with its latest round failed."""
    if failed_round is None:
        return '<span class="live-dot" title="watch is running">● live</span>'
    return (
        f'<span class="live-dot failed" title="round {failed_round:,} stopped on the error '
        f'shown above the cards; the next save starts another">● round {failed_round:,} '
        "failed</span>"
    )


def _error_banner(lines: Sequence[str], round_number: int, cards_round: int) -> str:
    """The banner saying the error that stopped a round, as the terminal says it."""
    shown = lines[:ERROR_LINES_SHOWN]
    more = len(lines) - len(shown)
    items = "".join(f"<li>{html.escape(escaped(line))}</li>" for line in shown)
    if more:
        lines_left = f"{more:,} more line{'s' if more > 1 else ''}"
        items += f'<li class="more">… and {lines_left}: see the terminal running watch</li>'
    if cards_round:
        kept = f"the cards show the files as round {cards_round:,} left them"
    else:
        kept = "no round has built the images yet"
    return (
        '<section id="round-error" class="round-error" role="alert">'
        f"<p><b>round {round_number:,}: error</b> · {kept}; "
        "waiting for the next save…</p>"
        f"<ul>{items}</ul></section>"
    )


def _keys(*, live: bool) -> str:
    action = "click or step to pick" if live else "click to show its pick command"
    return (
        '<p class="keys" aria-label="keyboard shortcuts"><kbd>n</kbd><kbd>p</kbd> image '
        "<kbd>j</kbd><kbd>k</kbd> candidate <span>(or the arrow keys) · "
        f"{action}</span></p>"
    )


def page_json(items: list[Card]) -> str:
    """The cards as the page's script reads them (see `gallerypage`), safe inside a
    `<script>` element: one object per card, short keys, the texts many cards share
    (status lines, detail names and values) once in `strings`."""
    strings: dict[str, int] = {}

    def intern(text: str) -> int:
        return strings.setdefault(text, len(strings))

    out = []
    for card in items:
        item: dict[str, object] = {
            "n": card.name,
            "h": card.href,
            "s": card.status,
            "x": intern(card.status_text),
            "p": page_text(card.prompt),
            "d": [intern(part) for pair in card.details for part in pair],
        }
        if card.exists:
            item["e"] = 1
        if card.thumb is not None:
            item["t"] = card.thumb
        if card.negative_prompt:
            item["q"] = page_text(card.negative_prompt)
        if card.changed:
            item["c"] = 1
        if card.transparent:
            item["a"] = 1
        if card.small:
            item["m"] = 1
        if card.checks:
            item["k"] = [[text, int(ok)] for text, ok in card.checks]
        if card.candidates:
            item["w"] = [
                [c.index, c.key, int(c.picked), c.href, c.command, c.seed] for c in card.candidates
            ]
        out.append(item)
    text = json.dumps({"strings": list(strings), "cards": out}, ensure_ascii=False)
    # JSON has `<` only inside strings, where \u003c means the same: no `</script>`
    return text.replace("<", "\\u003c")


def page_data(round_number: int, changed: Iterable[str], run: str) -> str:
    """The server-sent event announcing a finished round of the watch `run` (a page of
    another run, one stopped and started again, is stale whatever its round)."""
    return json.dumps({"number": round_number, "changed": sorted(changed), "run": run})
