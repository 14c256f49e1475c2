"""Watch and the commands of a second terminal: watch holds the project lock for as
long as it runs, even once `.nebula-build/` is removed under it."""

from __future__ import annotations

import shutil

import pytest

from tests.live.test_watch_hand_edits import SITE, _until
from tests.live.watching import watching


@pytest.mark.slow
def test_apply_is_refused_after_the_state_folder_is_removed_under_watch(project, run_cli):
    root = project({"images.toml": SITE})
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        shutil.rmtree(root / ".nebula-build")  # "clear the cache"

        def refused() -> bool:
            code, out, err = run_cli("apply")
            return (code, out) == (1, "") and "watch is running in this project (pid" in err

        _until(refused, "apply refused again")  # an apply alongside watch loses lock entries
        assert run.printed("note: .nebula-build/lock was removed: locking the project again")
        (root / "images.toml").write_text(SITE.replace("seed = 42", "seed = 43"))
        _until(lambda: run.printed("round 2:"), "round 2")
    assert run.returncode == 0, run.err
    assert "Traceback" not in run.err


@pytest.mark.slow
def test_a_command_refused_while_watch_runs_says_to_stop_watch(project, run_cli):
    root = project({"images.toml": SITE})
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        for command in (["apply"], ["gc"], ["pick", "hero", "0"]):
            code, out, err = run_cli(*command)
            assert (code, out) == (1, ""), err
            assert err.count("\n") == 1 and "and applies each save itself" in err
            assert "stop it first (Ctrl-C where it runs)" in err
        assert run_cli("plan").code == 0  # reading commands run alongside
    assert run.returncode == 0, run.err


@pytest.mark.slow
def test_watch_locks_the_project_again_once_its_state_folder_can_be_made_again(project, run_cli):
    """`.nebula-build` replaced by a file: watch says once that it cannot lock the
    project, and locks it again as soon as the file is gone."""
    root = project({"images.toml": SITE})
    state = root / ".nebula-build"
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        shutil.rmtree(state)
        state.write_text("not a folder\n")
        _until(lambda: run.printed("note: cannot open the project lock"), "the problem said")
        state.unlink()

        def refused() -> bool:
            code, out, err = run_cli("apply")
            return (code, out) == (1, "") and "is running in this project: pid" in err

        _until(refused, "apply refused again")
    assert run.returncode == 0, run.err
    assert run.out.count("cannot open the project lock") == 1
    assert "Traceback" not in run.err
