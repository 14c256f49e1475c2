"""A file changed by hand while a watch round runs (after its plan, before the image's
write) is kept and said once as a conflict, never overwritten by the round."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fake_manifest, generation_log
from tests.live.test_watch_hand_edits import _until
from tests.live.watching import watching

HAND = b"edited by hand while the round ran"


def _manifest(log: Path, prompt: str) -> str:
    images = {"hero": {"prompt": prompt, "output": "out/hero.png"}}
    return fake_manifest(log, images, delay=1.5, concurrency=1)


@pytest.mark.slow
def test_watch_keeps_a_file_edited_while_its_round_runs(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project({"images.toml": _manifest(log, "a lighthouse")})
    hero = root / "out/hero.png"
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "the first round")
        (root / "images.toml").write_text(_manifest(log, "a lighthouse at dusk"))
        _until(lambda: len(generation_log(log)) == 2, "the second round's generation")
        with hero.open("ab") as handle:  # planned over, not written yet
            handle.write(HAND)
        _until(lambda: run.printed("round 2:"), "the second round's end")
    out, err = run.out, run.err
    assert run.returncode == 0, err
    assert hero.read_bytes().endswith(HAND)  # never overwritten
    said = [line for line in out.splitlines() if line.startswith("conflict:")]
    assert said == [
        "conflict: hero: out/hero.png: changed by hand while the round ran: kept, not "
        "overwritten; delete it to have it made again, or restart watch with --force to "
        "replace it (a copy goes to .nebula-build/backup/)"
    ], out
    assert "failed" not in out, out
    assert "Traceback" not in err
