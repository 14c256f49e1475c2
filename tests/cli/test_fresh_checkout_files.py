"""A fresh checkout (CI) of a commit that left out one of the files apply changed:
the files are told apart by what nebula-build records, not called changed by hand."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 192

[images.hero]
prompt = "a calm sea"
output = "img/hero.png"
"""


def _checkout(source: Path, to: Path) -> Path:
    """What a clone of `source`'s committed files has: no .nebula-build (no cache)."""
    to.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(source / name, to / name)
    shutil.copytree(source / "img", to / "img")
    return to


def test_a_commit_without_its_lock_leaves_a_file_that_holds_the_new_output(
    project, run_cli, tmp_path
):
    """It read "output file changed by hand", exit 1, and `apply --force` paid for the
    very image the file held."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    old_lock = (root / "images.lock").read_text()
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    made = (root / "img/hero.png").read_bytes()
    (root / "images.lock").write_text(old_lock)  # `git add images.toml img/`: no lock
    ci = _checkout(root, tmp_path / "ci")
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=ci)
    assert code == 2, out
    assert "prompt changed (the file already holds this output, as its record in it says)" in out
    (action,) = json.loads(run_cli("plan", "--json", cwd=ci).out)["actions"]
    assert action["in_place"] and not action["generates"]
    assert "changed by hand" not in out
    code, out, _ = run_cli("apply", cwd=ci)
    assert code == 0 and "1 done (0 generated)" in out, out
    assert (ci / "img/hero.png").read_bytes() == made
    assert run_cli("plan", "--detailed-exitcode", cwd=ci).code == 0


def test_a_file_without_its_record_is_still_a_hand_edit(project, run_cli, tmp_path):
    """`metadata = false`: nothing in the file says which output it holds."""
    bare = SITE.replace('output = "img/hero.png"', 'output = "img/hero.png"\nmetadata = false')
    root = project({"images.toml": bare})
    assert run_cli("apply").code == 0
    old_lock = (root / "images.lock").read_text()
    (root / "images.toml").write_text(bare.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    (root / "images.lock").write_text(old_lock)
    ci = _checkout(root, tmp_path / "ci")
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=ci)
    assert code == 1 and "output file changed by hand" in out, out


def test_a_commit_without_its_new_output_leaves_an_earlier_generation(project, run_cli, tmp_path):
    """`git add images.toml images.lock`, the new file left out: the lock's history
    records the old one, which read "output file changed by hand" (exit 1, and `apply
    --force` to pay for it), where the author's machine said it held an earlier output."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    old = (root / "img/hero.png").read_bytes()
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    (root / "img/hero.png").write_bytes(old)
    ci = _checkout(root, tmp_path / "ci")
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=ci)
    assert code == 2, out
    assert (
        "output file holds another output nebula-build wrote, not this one (its earlier "
        "generation @1: `nebula-build pick --pin hero @1` keeps it; its original is not "
        "cached)"
    ) in out
    assert "changed by hand" not in out
    code, out, _ = run_cli("apply", cwd=ci)
    assert code == 0, out
    backups = list((ci / ".nebula-build/backup").rglob("hero*.png"))
    assert [b.read_bytes() for b in backups] == [old]


def test_plan_json_says_a_restore_is_from_the_cache_and_a_file_taken_as_it_is(
    project, run_cli, tmp_path
):
    """A restore read `"from_cache": false`, though the text plan counts it from cache."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "img/hero.png").unlink()
    (action,) = json.loads(run_cli("plan", "--json").out)["actions"]
    assert (action["action"], action["from_cache"], action["generates"]) == (
        "restore",
        True,
        False,
    )
    assert "in_place" not in action


def _hand_drawn(path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(path)
    return path.read_bytes()


def test_a_file_only_the_locks_history_names_is_backed_up_before_it_is_replaced(project, run_cli):
    """A review found: a lock (a pull request's) listing a hand-drawn file's digest in
    its history had it replaced with no conflict and no copy kept."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    drawn = _hand_drawn(root / "img/hero.png")
    lock = (root / "images.lock").read_text()
    lock += (
        "\n[[images.hero.history]]\n"
        f'generation_key = "{"6" * 64}"\n'
        f'digest = "{hashlib.sha256(drawn).hexdigest()}"\n'
        'made = "2026-12-04T09:07:10Z"\n'
        'backend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\n'
        'params = { height = 192, prompt = "a drawing", width = 256 }\n'
    )
    (root / "images.lock").write_text(lock)
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    code, out, _ = run_cli("plan")
    assert "the current file is backed up (.nebula-build/backup/), then replaced" in out, out
    assert run_cli("apply").code == 0
    backups = list((root / ".nebula-build/backup").rglob("hero.png"))
    assert [b.read_bytes() for b in backups] == [drawn]


def test_a_retouch_that_kept_the_files_record_is_a_hand_edit_where_the_cache_knows(
    project, run_cli
):
    """A review found: a retouch in an editor that keeps the PNG's text, beside the lock
    of the commit before, was taken as the output (the cache here knows what the tool
    wrote), then replaced with no copy by the next change."""
    from PIL import Image, PngImagePlugin

    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    before = (root / "images.lock").read_text()
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    hero = root / "img/hero.png"
    with Image.open(hero) as opened:
        info = PngImagePlugin.PngInfo()
        for key, value in opened.text.items():
            info.add_text(key, value)
        retouched = opened.convert("RGB")
    retouched.paste((200, 10, 10), (0, 0, 20, 20))
    retouched.save(hero, pnginfo=info)
    (root / "images.lock").write_text(before)  # `git checkout images.lock`
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 1 and "output file changed by hand" in out, out


def test_locked_shows_no_escape_sequence_a_lock_names(project, run_cli):
    """A review found: a parameter name a lock made up reached the terminal raw in the
    --locked error, escape sequences and all."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    lock = lock.replace('prompt = "a calm sea",', 'prompt = "a calm sea", "\\u001b[31mEVIL" = 1,')
    (root / "images.lock").write_text(lock)
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    code, _, err = run_cli("apply", "--locked")
    assert code == 2 and "--locked" in err, err
    assert "\x1b" not in err and "(hero: EVIL, prompt changed)" in err, repr(err)
