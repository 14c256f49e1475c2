"""A file changed by hand while a watch round runs (after its plan, before the image's
write) is kept and said once as a conflict, never overwritten by the round."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import fake_manifest, generation_log
from tests.live.test_watch_hand_edits import _until

HAND = b"edited by hand while the round ran"


def _manifest(log: Path, prompt: str) -> str:
    images = {"hero": {"prompt": prompt, "output": "out/hero.png"}}
    return fake_manifest(log, images, delay=1.5, concurrency=1)


@pytest.mark.slow
def test_watch_keeps_a_file_edited_while_its_round_runs(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project({"images.toml": _manifest(log, "a lighthouse")})
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()

    def printed(start: str) -> bool:
        return any(line.startswith(start) for line in list(lines))

    hero = root / "out/hero.png"
    try:
        _until(lambda: printed("round 1:"), "the first round")
        (root / "images.toml").write_text(_manifest(log, "a lighthouse at dusk"))
        _until(lambda: len(generation_log(log)) == 2, "the second round's generation")
        with hero.open("ab") as handle:  # planned over, not written yet
            handle.write(HAND)
        _until(lambda: printed("round 2:"), "the second round's end")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
        reader.join(timeout=5)
    out = "".join(lines)
    assert process.returncode == 0, err
    assert hero.read_bytes().endswith(HAND)  # never overwritten
    said = [line for line in out.splitlines() if line.startswith("conflict:")]
    assert said == [
        "conflict: hero: out/hero.png: changed by hand while the round ran: kept, not "
        "overwritten; delete it to have it made again, or restart watch with --force to "
        "replace it (a copy goes to .nebula-build/backup/)"
    ], out
    assert "failed" not in out, out
    assert "Traceback" not in err
