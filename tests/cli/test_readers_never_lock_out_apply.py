"""Commands that only read the lock (`plan`, `status`, `gallery`, `pick`) never hold the
project lock without need: an `apply` or `watch` starting at that moment (its
--lock-timeout is 0 by default) would be refused as if another apply ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nebula_build.state import lockfile
from nebula_build.state.projectlock import ProjectLock, ProjectLockedError
from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '[images.a]\nprompt = "a calm sea"\noutput = "a.png"\n'


def _apply_starting_meanwhile(monkeypatch: pytest.MonkeyPatch, root: Path) -> list[str]:
    """While the command reads images.lock, an apply tries to lock the project; what
    it was told, if it was refused."""
    refusals: list[str] = []
    read = lockfile.read

    def read_while_an_apply_starts(project):  # type: ignore[no-untyped-def]
        try:
            with ProjectLock(root / ".nebula-build" / "lock", command="apply"):
                pass
        except ProjectLockedError as exc:
            refusals.append(str(exc))
        return read(project)

    monkeypatch.setattr(lockfile, "read", read_while_an_apply_starts)
    return refusals


@pytest.mark.parametrize("command", ["plan", "status"])
def test_an_apply_starting_while_a_reader_reads_the_lock_is_not_refused(
    project, run_cli, monkeypatch, command
):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(MANIFEST.replace("calm", "stormy"), encoding="utf-8")
    refusals = _apply_starting_meanwhile(monkeypatch, root)
    result = run_cli(command)
    assert result.code == 0, result.err
    assert refusals == []


def test_a_reader_still_folds_a_killed_applys_journal(project, run_cli, monkeypatch):
    """With a journal to fold into images.lock, the reader does lock the project to
    write it: the apply starting then waits its turn, as it always has."""
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    entry = lockfile.loads((root / "images.lock").read_text())["a"]
    journal = root / ".nebula-build" / "journal"
    line = {"op": "set", "image": "a", "entry": entry.to_dict()}
    journal.write_text(json.dumps(line) + "\n", encoding="utf-8")
    refusals = _apply_starting_meanwhile(monkeypatch, root)
    result = run_cli("status")
    assert result.code == 0, result.err
    assert "interrupted apply" in result.err
    assert not journal.exists()
    assert len(refusals) == 1 and "(recover)" in refusals[0]
