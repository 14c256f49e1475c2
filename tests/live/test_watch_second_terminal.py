"""Watch and the commands of a second terminal: watch holds the project lock for as
long as it runs, even once `.nebula-build/` is removed under it."""

from __future__ import annotations

import shutil
import time

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
        # the lock is taken before the note is written: it may reach the pipe just after
        note = "note: .nebula-build/lock was removed: locking the project again"
        _until(lambda: run.printed(note), "the note")
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
@pytest.mark.parametrize("replaced_by", ["a file", "a symbolic link"])
def test_watch_locks_the_project_again_once_its_state_folder_can_be_made_again(
    project, run_cli, tmp_path, replaced_by
):
    """`.nebula-build` replaced by a file, or by a link to a folder elsewhere: watch
    says once that it cannot lock the project (and writes nothing through the link),
    and locks it again as soon as it is gone."""
    root = project({"images.toml": SITE})
    state, elsewhere = root / ".nebula-build", tmp_path / "elsewhere"
    elsewhere.mkdir()
    said = "not a plain file" if replaced_by == "a file" else "is a symbolic link"
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        shutil.rmtree(state)
        if replaced_by == "a file":
            state.write_text("not a folder\n")
        else:
            state.symlink_to(elsewhere, target_is_directory=True)
        _until(lambda: said in run.out, "the problem said")
        time.sleep(1.5)  # a look or two more
        assert list(elsewhere.iterdir()) == []
        state.unlink()

        def refused() -> bool:
            code, out, err = run_cli("apply")
            return (code, out) == (1, "") and "watch is running in this project (pid" in err

        _until(refused, "apply refused again")
    assert run.returncode == 0, run.err
    assert run.out.count(said) == 1
    assert "Traceback" not in run.err
