"""Live progress for apply: one line per finished image, plus a status line on a TTY."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from nebula_build.core.plan import Action, ActionKind, FileState
from nebula_build.text import human_size, printable
from nebula_build.ui.report import said_with_its_heir
from nebula_build.ui.style import Style

if TYPE_CHECKING:
    from nebula_build.engine.apply import Outcome
    from nebula_build.engine.derived import FileOutcome

_DONE = {
    ActionKind.CREATE: "created",
    ActionKind.REGENERATE: "regenerated",
    ActionKind.REENCODE: "re-encoded",
    ActionKind.RESTORE: "restored",
    ActionKind.MOVE: "moved",
    ActionKind.DELETE: "deleted",
    ActionKind.CONFLICT: "conflict",
    ActionKind.NOOP: "unchanged",
    ActionKind.DRAW: "drew",
}


#: without a status line, the least time between two activity lines of one image
ACTIVITY_LINE_S = 5.0


class Progress:
    """Prints apply events. On a TTY it keeps a status line of what is running."""

    def __init__(
        self, stream: TextIO, total: int, *, live: bool, style: Style, quiet: bool = False
    ) -> None:
        self.stream = stream
        self.total = total
        self.live = live
        self.style = style
        self.quiet = quiet
        self.done = 0
        self.running: dict[str, float] = {}
        self.steps: dict[str, tuple[int, int]] = {}
        self.activities: dict[str, str] = {}
        #: the activity last given a line of its own, per image, and when (`activity`)
        self._activity_said: dict[str, tuple[str, float]] = {}
        self.started_at = time.perf_counter()
        self._status_at = 0.0

    def started(self, action: Action) -> None:
        self.running.setdefault(action.image, time.perf_counter())
        self._status()

    def step(self, image: str, done: int, total: int) -> None:
        """A local backend finished denoising step `done` of `total` for `image`."""
        self.steps[image] = (done, total)
        now = time.perf_counter()
        if now - self._status_at >= 0.1 or done == total:  # a redraw per step is too many
            self._status_at = now
            self._status()

    def activity(self, image: str, text: str) -> None:
        """What a backend is busy with for `image` before it denoises (loading…, waiting
        for a Retry-After). Without a status line (a CI log) it gets a line of its own:
        a new one for an image, and another at most every ACTIVITY_LINE_S seconds."""
        said = printable(text, limit=120)
        self.activities[image] = said
        if not self.live and not self.quiet:
            now = time.perf_counter()
            last = self._activity_said.get(image)
            if last is None or (said != last[0] and now - last[1] >= ACTIVITY_LINE_S):
                self._activity_said[image] = (said, now)
                self.stream.write(self.style(f"{image}: {said}", "dim") + "\n")
                self.stream.flush()
        self._status()

    def finished(self, outcome: Outcome) -> None:
        self.running.pop(outcome.image, None)
        self.steps.pop(outcome.image, None)
        self.activities.pop(outcome.image, None)
        self._activity_said.pop(outcome.image, None)
        counted = outcome.counted
        if counted:
            self.done += 1
        # the old name of a renamed image: its new name's line said the rename
        if not self.quiet and (counted or not outcome.ok or not said_with_its_heir(outcome.action)):
            self._clear()
            self.stream.write(self._line(outcome) + "\n")
        for warning in outcome.warnings:  # shown even with --quiet
            self._clear()
            said = f"warning: {outcome.image}: {printable(warning)}"
            self.stream.write(self.style(said, "yellow") + "\n")
        self._status()
        self.stream.flush()

    def built(self, outcome: FileOutcome) -> None:
        """A file made from the images (an atlas, the asset manifest) was written."""
        if self.quiet and outcome.ok:
            return
        action, style = outcome.action, self.style
        self._clear()
        if outcome.ok and action.state is FileState.DELETE and not action.removes:
            self.stream.write(
                f"{style('dropped', 'green')} {style(action.label, 'bold')} from the lock "
                f"({printable(action.reason)})\n"
            )
        elif outcome.ok and action.state is FileState.DELETE:
            self.stream.write(
                f"{style('removed', 'green')} {style(action.label, 'bold')} "
                f"{printable(action.output)}\n"
            )
        elif outcome.ok:
            # the files of its last build it no longer writes (an export dropped, moved)
            removed = f"; removed {', '.join(action.removes)}" if action.removes else ""
            self.stream.write(
                f"{style('built', 'green')} {style(action.label, 'bold')} "
                f"{printable(action.output)}{printable(removed)}\n"
            )
        else:
            failed = style("failed", "red", "bold")
            self.stream.write(f"{failed} {action.label}: {printable(str(outcome.error))}\n")
        self._status()
        self.stream.flush()

    def _line(self, outcome: Outcome) -> str:
        action, style = outcome.action, self.style
        elapsed = f"{outcome.elapsed:.2f}s"
        counter = style(f"[{self.done}/{self.total}]", "dim") + " " if outcome.counted else ""
        if not outcome.ok:
            error = printable(str(outcome.error))
            return f"{counter}{style('failed', 'red', 'bold')} {action.image}: {error}"
        if action.kind is ActionKind.DELETE and action.keep_file:
            return (
                f"{counter}{style('dropped', 'green')} {style(action.image, 'bold')} from the "
                f"lock ({printable(action.reason)}) {style(elapsed, 'dim')}"
            )
        verb = _DONE[action.kind]
        source = ""
        if action.kind in (ActionKind.CREATE, ActionKind.REGENERATE, ActionKind.DRAW):
            if outcome.generated:
                source = " (generated)"
            elif action.in_place and action.renamed_from is not None:
                verb, source = "renamed", f" (was {action.renamed_from}: the file already held it)"
            else:  # as the plan said it: nothing was paid for
                if action.in_place:
                    source = " (the file already held it)"
                else:
                    source = " (from remote cache" if action.from_remote else " (from cache"
                    source += ", no generation)"
                if action.kind is ActionKind.REGENERATE:
                    verb = "updated"  # "regenerated" read as a generation paid for
        elif outcome.generated:  # a restore whose cache entry was bad, or a re-encode
            verb, source = "regenerated", " (generated)"
        elif action.from_remote:
            source = " (from remote cache)"
        elapsed += _details(outcome)
        return (
            f"{counter}{style(verb, 'green')} {style(action.image, 'bold')}"
            f"{' ' + printable(action.output) if action.output else ''}{style(source, 'dim')} "
            f"{style(elapsed, 'dim')}"
        )

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")

    def _status(self) -> None:
        if not self.live or not self.running:
            return
        names = ", ".join(self._running_name(name) for name in list(self.running)[:3])
        more = f" +{len(self.running) - 3}" if len(self.running) > 3 else ""
        elapsed = time.perf_counter() - self.started_at
        self._clear()
        self.stream.write(
            self.style(
                f"{self.done}/{self.total} done · {elapsed:.0f}s · working on {names}{more}", "dim"
            )
        )
        self.stream.flush()

    def _running_name(self, image: str) -> str:
        if image in self.steps:
            done, total = self.steps[image]
            return f"{image} (step {done}/{total})"
        if image in self.activities:
            return f"{image} ({self.activities[image]})"
        return image

    def close(self) -> None:
        self._clear()
        self.stream.flush()


def _details(outcome: Outcome) -> str:
    """What a backend measured: load and compile costs, inference, peak memory."""
    timings, parts = outcome.timings, []
    if "load" in timings:
        parts.append(f"load {timings['load']:.1f}s")
    compiled = False
    for key, cache in (("compile_cold", "cold"), ("compile_warm", "warm")):
        if key in timings:
            parts.append(f"first call with compile {timings[key]:.1f}s ({cache} cache)")
            compiled = True
    if "inference" in timings and not compiled:
        parts.append(f"inference {timings['inference']:.2f}s")
    if outcome.peak_memory is not None:
        parts.append(f"peak GPU memory {human_size(outcome.peak_memory)}")
    return "".join(f", {part}" for part in parts)
