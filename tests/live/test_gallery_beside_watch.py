"""`gallery` runs without the project lock, beside a `watch` that makes thumbnails as
its rounds finish: gallery's pruning removes the thumbnails no image shows that were
there before it looked, never one another process wrote while it ran."""

from __future__ import annotations

from nebula_build.live import thumblinks
from tests.live.test_gallery_scale import LARGE


def test_a_thumbnail_made_while_gallery_runs_stays(project, run_cli, monkeypatch):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    folder = root / ".nebula-build/thumbs"
    stale = folder / ("0" * 64 + ".webp")
    folder.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"RIFF")  # no image shows it, and it was there before: it goes
    new = folder / ("1" * 64 + ".webp")
    links = thumblinks.thumbnail_links

    def watch_finishes_a_round_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        made = links(*args, **kwargs)
        new.write_bytes(b"RIFF")
        return made

    monkeypatch.setattr(thumblinks, "thumbnail_links", watch_finishes_a_round_meanwhile)
    code, _, err = run_cli("gallery")
    assert code == 0, err
    assert not stale.exists()
    assert new.exists()
