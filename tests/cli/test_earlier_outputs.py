"""A file that holds an output nebula-build wrote for an earlier spec, once the lock
went back to another (`git checkout -- .` after a few `watch` or `apply` rounds), is
the tool's to replace, not a hand edit; bytes it never wrote there still are one."""

from __future__ import annotations

import shutil

from tests.cli.test_cli_flow import SITE, digests
from tests.manifests import PREVIEW

HERO = "a flying cat over a neon city at dusk"


def _rounds(root, run_cli, *prompts: str) -> None:
    """Apply each prompt of the hero in turn (as watch does on each save)."""
    for prompt in prompts:
        manifest = (root / "images.toml").read_text()
        (root / "images.toml").write_text(manifest.replace(HERO, prompt, 1))
        assert run_cli("apply").code == 0
        (root / "images.toml").write_text(manifest)


def test_going_back_to_the_committed_lock_restores_the_file_without_a_conflict(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    committed, first = (root / "images.lock").read_text(), digests(root)
    _rounds(root, run_cli, "a flying cat, blue", "a flying cat, green")
    assert digests(root)["static/hero.webp"] != first["static/hero.webp"]
    (root / "images.lock").write_text(committed)  # `git checkout -- images.lock images.toml`

    code, out, _ = run_cli("plan")
    assert code == 0 and "conflict" not in out, out
    assert "< hero  restore  static/hero.webp" in out
    assert "output file holds another output nebula-build wrote, not this one" in out
    assert "the current file is backed up (.nebula-build/backup/), then replaced" in out
    green = (root / "static/hero.webp").read_bytes()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert digests(root) == first
    # the lock no longer lists the green one, so gc would have lost its only copy
    backups = list((root / ".nebula-build/backup").rglob("hero.webp"))
    assert [backup.read_bytes() for backup in backups] == [green]
    assert run_cli("plan").out.startswith("No changes")


def test_a_file_put_back_from_git_is_backed_up_and_can_be_kept(project, run_cli):
    """`git checkout OLD -- static/hero.webp`: the file holds an earlier generation the
    history lists. The plan says how to keep it; apply keeps a copy before replacing."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    hero = root / "static/hero.webp"
    old = hero.read_bytes()
    _rounds(root, run_cli, "a flying cat, blue")
    (root / "images.toml").write_text(SITE.replace(HERO, "a flying cat, blue", 1))
    assert run_cli("plan").out.startswith("No changes")
    hero.write_bytes(old)  # put back from git history, on purpose

    code, out, _ = run_cli("plan")
    assert code == 0 and "conflict" not in out, out
    assert (
        "output file holds another output nebula-build wrote, not this one (its earlier "
        "generation @1: `nebula-build pick --pin hero @1` keeps it)"
    ) in out
    assert run_cli("apply").code == 0
    assert hero.read_bytes() != old
    backups = list((root / ".nebula-build/backup").rglob("hero.webp"))
    assert [backup.read_bytes() for backup in backups] == [old]
    assert run_cli("pick", "--pin", "hero", "@1").code == 0
    assert hero.read_bytes() == old


def test_bytes_nebula_build_wrote_to_another_path_are_still_a_hand_edit(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    hero = root / "static/hero.webp"
    card = (root / "static/card.jpg").read_bytes()
    hero.write_bytes(card)  # copied over by hand: written by nebula-build, elsewhere
    code, out, _ = run_cli("plan")
    assert "! hero  conflict  static/hero.webp" in out and "changed by hand" in out
    assert run_cli("apply").code == 1 and hero.read_bytes() == card


def test_records_another_account_wrote_vouch_for_nothing(project, run_cli, monkeypatch, tmp_path):
    """A checkout that brings `.nebula-build/` (committed, or a CI cache a pull request
    filled) brings markers sealed by another account's key: they name nothing here."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    committed = (root / "images.lock").read_text()
    _rounds(root, run_cli, "a flying cat, blue")
    assert list((root / ".nebula-build/cache/written").glob("*/*"))
    (root / "images.lock").write_text(committed)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-account"))
    code, out, _ = run_cli("plan")
    assert "! hero  conflict  static/hero.webp" in out and "changed by hand" in out


def test_gc_forgets_the_files_the_lock_no_longer_names(project, run_cli):
    root = project({"images.toml": SITE})
    _rounds(root, run_cli, "a flying cat, blue")
    assert run_cli("apply").code == 0  # the first prompt: blue's stays in the history
    written = root / ".nebula-build/cache/written"
    assert len(list(written.glob("*/*"))) == 4
    assert run_cli("gc").code == 0
    assert len(list(written.glob("*/*"))) == 4
    (root / "images.toml").write_text(SITE.split("[images.hero]")[0])  # no image left
    assert run_cli("apply").code == 0
    assert run_cli("gc").code == 0
    assert len(list(written.glob("*/*"))) == 0


def test_two_images_swapping_outputs_lose_neither_file(project, run_cli):
    """Each file is one nebula-build wrote to that path, but the lock records it as the
    other image's: moving over it would lose it (one file left, both wrong)."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    before = digests(root)
    manifest = (root / "images.toml").read_text()
    swapped = manifest.replace('"static/hero.webp"', '"static/TMP"')
    swapped = swapped.replace('"static/card.jpg"', '"static/hero.webp"')
    (root / "images.toml").write_text(swapped.replace('"static/TMP"', '"static/card.jpg"'))

    code, out, _ = run_cli("plan")
    assert "! hero  conflict  static/card.jpg" in out, out
    assert "the file in the way is card's output: move one image at a time" in out
    assert run_cli("apply").code == 1
    assert digests(root) == before


TWO = (
    PREVIEW
    + """\
[images.a]
prompt = "a red apple"
output = "a.png"
[images.b]
prompt = "a blue bird"
output = "b.png"
"""
)


def test_two_images_swapping_outputs_under_force_keep_both_files_without_a_cache(project, run_cli):
    """--force moves each output over the other's: the file moved over is backed up
    first, and the second move takes its bytes from that copy, so neither is lost nor
    generated again (paid again, on a paid backend) where the cache is gone."""
    root = project({"images.toml": TWO})
    assert run_cli("apply").code == 0
    apple, bird = (root / "a.png").read_bytes(), (root / "b.png").read_bytes()
    swapped = TWO.replace('"a.png"', '"TMP"').replace('"b.png"', '"a.png"')
    (root / "images.toml").write_text(swapped.replace('"TMP"', '"b.png"'))
    shutil.rmtree(root / ".nebula-build")  # a fresh checkout: no cache

    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    assert "2 done (0 generated)" in out, out
    assert (root / "b.png").read_bytes() == apple
    assert (root / "a.png").read_bytes() == bird
    # the first move went over the other's file: that copy is what the second moved
    kept = [path.read_bytes() for path in (root / ".nebula-build/backup").rglob("*.png")]
    assert len(kept) == 1 and kept[0] in (apple, bird), kept
    code, out, _ = run_cli("plan")
    assert code == 0 and "No changes" in out, out


BUNDLES = """\
version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
[images.cover]
rows = { files = "content/posts/*/index.md" }
prompt = "{scene}, editorial photo"
output = "content/posts/{slug}/cover.webp"
widths = [32]
"""


def _bundles(project, run_cli):
    root = project(
        {
            "images.toml": BUNDLES,
            "content/posts/sea/index.md": "---\nscene: the sea\n---\nx\n",
            "content/posts/kite/index.md": "---\nscene: a kite\n---\nx\n",
        }
    )
    assert run_cli("apply").code == 0
    return root


def test_a_page_bundle_renamed_with_its_cover_inside_takes_no_force(project, run_cli):
    root = _bundles(project, run_cli)
    posts = root / "content/posts"
    (posts / "sea").rename(posts / "ocean")  # the cover and its variant move with it
    code, out, _ = run_cli("plan")
    # it had been "a file nebula-build did not write is in the way", for both files
    assert code == 0 and "conflict" not in out, out
    assert "+ cover[ocean]  create  content/posts/ocean/cover.webp" in out
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert not (root / ".nebula-build/backup").exists()
    assert run_cli("plan").out.startswith("No changes")
    code, out, _ = run_cli("inspect", "content/posts/ocean/cover.webp")
    assert "image 'cover[ocean]'" in out


def test_a_bundle_copied_with_its_cover_keeps_the_copy_a_hand_edit(project, run_cli):
    import shutil

    root = _bundles(project, run_cli)
    posts = root / "content/posts"
    shutil.copytree(posts / "sea", posts / "ocean")
    (posts / "sea/index.md").unlink()  # the post is gone, its cover still there
    code, out, _ = run_cli("plan")
    assert "! cover[ocean]  conflict  content/posts/ocean/cover.webp" in out, out
    assert run_cli("apply").code == 1


SWAP = (
    PREVIEW
    + """\
[images.a]
prompt = "apple"
output = "out/a2.png"
[images.b]
prompt = "banana"
output = "out/b2.png"
"""
)


def test_a_lock_naming_where_two_swapped_files_were_before_loses_neither(project, run_cli):
    """A pull request's lock may add an entry, for an image no longer declared, at
    each path the two files were moved from: the files look moved there by hand (a
    page bundle renamed), but each is still the other image's."""
    root = project({"images.toml": SWAP.replace("a2.png", "a.png").replace("b2.png", "b.png")})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SWAP)  # each moved once: out/a.png, out/b.png gone
    assert run_cli("apply").code == 0
    files = {p.name: p.read_bytes() for p in (root / "out").iterdir()}
    lock = (root / "images.lock").read_text()
    for name, was in (("a", "out/a.png"), ("b", "out/b.png")):
        entry = lock.split(f"[images.{name}]", 1)[1].split("[images.", 1)[0]
        now = f"out/{name}2.png"
        lock += f"\n[images.old-{name}]" + entry.replace(f'"{now}"', f'"{was}"')
    (root / "images.lock").write_text(lock)
    swapped = SWAP.replace("out/a2.png", "TMP").replace("out/b2.png", "out/a2.png")
    (root / "images.toml").write_text(swapped.replace("TMP", "out/b2.png"))

    code, out, _ = run_cli("plan")
    assert "the file in the way is b's output: move one image at a time" in out, out
    assert run_cli("apply").code == 1
    assert {p.name: p.read_bytes() for p in (root / "out").iterdir()} == files
