"""A file changed by hand while an apply runs (after its plan, before the image's write)
is a conflict, never overwritten: the generation stays in the cache, --force backs the
file up. The apply runs in a process of its own; the edit waits for the fake backend's
generation log, which says the plan is made and the image is being generated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nebula_build.state.lockfile import loads
from tests.cli.test_rows_matrix import preview
from tests.conftest import fake_manifest, generation_log
from tests.engine.test_crash_and_lock import _wait_for

pytestmark = pytest.mark.slow

HAND = b"edited by hand while the apply ran"


def _manifest(log: Path, prompt: str, *, delay: float = 0.0) -> str:
    images = {
        "a": {"prompt": f"{prompt} a", "output": "out/a.png"},
        "b": {"prompt": f"{prompt} b", "output": "out/b.png"},
    }
    return fake_manifest(log, images, delay=delay, concurrency=1)


def _apply_editing(
    root: Path, log: Path, edit: Path, before: int, *options: str
) -> tuple[int, str]:
    """Run `apply` in a process of its own; once the backend starts generating the
    image whose file is `edit` (the plan is made), change that file by hand."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply", "--yes", *options],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: edit.stem in generation_log(log)[before:])
        with edit.open("ab") as handle:  # the stat changes: the next look hashes it
            handle.write(HAND)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err


@pytest.fixture
def changed(project, fake_site, tmp_path, run_cli) -> tuple[Path, Path, int]:
    """A project applied once, then its prompts changed (slow generations ahead): its
    root, the generation log and how many generations that log had."""
    log = tmp_path / "gen.log"
    root = project({"images.toml": _manifest(log, "first")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    first = len(generation_log(log))
    (root / "images.toml").write_text(_manifest(log, "second", delay=1.5))
    return root, log, first


def test_a_file_edited_during_an_apply_is_a_conflict_not_overwritten(changed, run_cli):
    root, log, first = changed
    edited = root / "out/b.png"

    code, err = _apply_editing(root, log, edited, before=first)

    assert code == 1, err
    assert edited.read_bytes().endswith(HAND)  # the hand edit is there
    # said as a conflict the plan saw is: one line in the failures' summary
    assert (
        "  b: out/b.png: changed by hand during the apply; not overwritten: re-run with "
        "--force to replace it (the old file is kept under .nebula-build/backup/)"
    ) in err.splitlines(), err
    assert "Traceback" not in err
    assert not (root / ".nebula-build/backup").exists()
    lock = loads((root / "images.lock").read_text())
    assert lock["a"].digest != lock["b"].digest  # a was written, b's entry is the old one

    # the next plan sees the conflict; --force keeps the edit in a backup and writes
    # the generation from the cache, without paying for it again
    code, out, err = run_cli("plan")
    assert "changed by hand" in out + err
    paid = len(generation_log(log))
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    assert len(generation_log(log)) == paid
    assert not edited.read_bytes().endswith(HAND)
    backups = list((root / ".nebula-build/backup").rglob("b.png"))
    assert len(backups) == 1 and backups[0].read_bytes().endswith(HAND)


def test_a_file_made_by_hand_where_an_apply_creates_one_is_a_conflict(
    project, fake_site, tmp_path, run_cli
):
    log = tmp_path / "gen.log"
    root = project({"images.toml": _manifest(log, "new", delay=1.5)})
    made = root / "out/b.png"
    made.parent.mkdir(parents=True, exist_ok=True)

    code, err = _apply_editing(root, log, made, before=0)

    assert code == 1, err
    assert made.read_bytes() == HAND
    assert "out/b.png: changed by hand during the apply" in err
    assert (root / "out/a.png").exists()
    assert "b" not in loads((root / "images.lock").read_text())


def test_with_force_a_file_edited_during_the_apply_is_backed_up(changed):
    root, log, first = changed
    edited = root / "out/b.png"
    code, err = _apply_editing(root, log, edited, first, "--force")
    assert code == 0, err
    assert not edited.read_bytes().endswith(HAND)
    backups = list((root / ".nebula-build/backup").rglob("b.png"))
    assert len(backups) == 1 and backups[0].read_bytes().endswith(HAND)


def test_renaming_a_declaration_whose_images_share_a_spec_is_no_conflict(project, run_cli):
    """A matrix whose value only picks the folder: every image has one output key, and
    each write replaces the key's record of its files with its own paths. The image
    taken over in place is checked against the record's bytes, not its paths."""
    hero = {
        "prompt": "a lighthouse at dusk",
        "seed": 7,
        "matrix": {"lang": [f"l{i}" for i in range(100)]},
        "output": "img/{lang}/hero.png",
    }
    root = project({"images.toml": preview({"hero": hero})})
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    (root / "images.toml").write_text(preview({"banner": hero}))
    code, _, err = run_cli("apply", "--yes")
    assert code == 0 and "changed by hand" not in err, err
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    assert {a["action"] for a in json.loads(out)["actions"]} == {"noop"}, out


def test_with_force_a_file_edited_during_the_apply_is_backed_up_once(
    project, fake_site, tmp_path, run_cli, monkeypatch
):
    """With --force a file is looked at once, just before its rename: one copy, even
    where the stamps of two looks would differ."""
    import itertools

    from nebula_build.engine import apply

    log = tmp_path / "gen.log"
    root = project({"images.toml": _manifest(log, "first")})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(_manifest(log, "second"))
    edited, render = root / "out/b.png", apply.render_checked

    def editing(data, encoding, **kwargs):
        if not edited.read_bytes().endswith(HAND):
            with edited.open("ab") as handle:
                handle.write(HAND)
        return render(data, encoding, **kwargs)

    monkeypatch.setattr(apply, "render_checked", editing)
    ticks = itertools.count()  # each stamp a second later, as on a slow disk
    monkeypatch.setattr(apply.time, "strftime", lambda *_: f"20260101T0000{next(ticks):02d}")
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    backups = list((root / ".nebula-build/backup").rglob("b.png"))
    assert len(backups) == 1 and backups[0].read_bytes().endswith(HAND)
