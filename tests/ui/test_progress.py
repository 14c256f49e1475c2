"""The apply progress display: finished lines, and the live status line on a TTY."""

from __future__ import annotations

import io

from nebula_build.core.plan import Action, ActionKind
from nebula_build.engine.apply import Outcome
from nebula_build.ui.progress import Progress
from nebula_build.ui.style import Style


def action(name: str) -> Action:
    return Action(name, ActionKind.CREATE, "new image", f"out/{name}.png")


def test_the_status_line_shows_each_running_images_denoising_step():
    stream = io.StringIO()
    progress = Progress(stream, 2, live=True, style=Style(False))
    progress.started(action("hero"))
    progress.step("hero", 1, 30)
    progress.step("hero", 30, 30)  # the last step is always drawn
    assert "working on hero (step 30/30)" in stream.getvalue()
    progress.finished(Outcome(action("hero"), ok=True, generated=True))
    progress.started(action("logo"))
    assert "working on logo" in stream.getvalue().rsplit("\r", 1)[-1]
    assert "hero (step" not in stream.getvalue().rsplit("\r", 1)[-1]


def test_the_status_line_says_what_a_backend_does_before_the_first_step():
    stream = io.StringIO()
    progress = Progress(stream, 1, live=True, style=Style(False))
    progress.started(action("hero"))
    progress.activity("hero", "loading black-forest-labs/FLUX.1-schnell")
    assert stream.getvalue().endswith("working on hero (loading black-forest-labs/FLUX.1-schnell)")
    progress.step("hero", 1, 4)
    assert stream.getvalue().endswith("working on hero (step 1/4)")


def test_steps_are_not_printed_without_a_tty():
    stream = io.StringIO()
    progress = Progress(stream, 1, live=False, style=Style(False))
    progress.started(action("hero"))
    progress.activity("hero", "loading")
    for done in range(1, 31):
        progress.step("hero", done, 30)
    # the activity once, on a line of its own (a CI log has no status line); no step
    assert stream.getvalue() == "hero: loading\n"


def test_activities_without_a_tty_are_lines_but_never_a_flood():
    stream = io.StringIO()
    progress = Progress(stream, 1, live=False, style=Style(False))
    progress.started(action("hero"))
    for n in range(100):
        progress.activity("hero", f"waiting {n} s (Retry-After)")
    assert stream.getvalue() == "hero: waiting 0 s (Retry-After)\n"
    quiet = io.StringIO()
    Progress(quiet, 1, live=False, style=Style(False), quiet=True).activity("hero", "loading")
    assert quiet.getvalue() == ""


def test_a_local_generation_line_reports_load_compile_and_peak_memory():
    stream = io.StringIO()
    progress = Progress(stream, 2, live=False, style=Style(False))
    timings = {"load": 12.34, "compile_cold": 96.2, "inference": 96.2}
    progress.finished(
        Outcome(action("a"), ok=True, generated=True, timings=timings, peak_memory=9 << 30)
    )
    progress.finished(Outcome(action("b"), ok=True, generated=True, timings={"inference": 1.11}))
    first, second = stream.getvalue().splitlines()
    expected = "load 12.3s, first call with compile 96.2s (cold cache), peak GPU memory 9.0 GiB"
    assert expected in first
    assert "inference 96" not in first
    assert second.endswith("inference 1.11s")
