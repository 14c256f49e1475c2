"""What a newcomer's walkthrough met (ninth pass): a lost lock that cost a picked draw
and made plan and apply disagree on atlases, `inspect` of a sprite sheet, a project
written by hand whose cache git would commit, a plan that hid that apply would stop
for want of a key, a matrix output that misses a key, and two help texts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tomllib

import pytest

from tests.live.pagedata import card
from tests.manifests import PREVIEW as HEAD

SPRITES = f"""\
{HEAD}
[images.enemy]
prompt = "a {{kind}} monster"
matrix = {{ kind = ["slime", "bat"] }}
output = "sprites/{{kind}}.png"

[atlases.enemies]
images = ["enemy[*]"]
output = "sprites/enemies.png"
"""

DRAWS = f"""\
{HEAD}
[images.hero]
prompt = "a knight"
candidates = 3
output = "hero.png"
"""


CROWNED = """
[images.crowned]
model = "black-forest-labs/FLUX.1-Fill-dev"
prompt = "a crown"
image = "@hero"
mask = "mask.png"
candidates = 3
output = "crowned.png"
"""


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_inspect_of_an_atlas_sheet_names_the_atlas(project, run_cli):
    """Before, it said `made by nebula-build: image 'None'` and `generation key: None`."""
    project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("inspect", "sprites/enemies.png")
    assert code == 0, err
    assert "made by nebula-build: atlas 'enemies'\n" in out, out
    assert "a sprite sheet built at sprites/enemies.png" in out
    assert "None" not in out


def test_after_a_lost_lock_plan_and_apply_agree_on_the_atlases(project, run_cli):
    """Before, the plan said "2 atlases to build" (its members were new to the lock) and
    apply, finding the sheet already held them, built none and said nothing of them."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    sheet = _digest(root / "sprites/enemies.png")
    (root / "images.lock").unlink()
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "atlas" not in out, out
    assert "new image (the file already holds this output)" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "atlas" not in out + err
    assert _digest(root / "sprites/enemies.png") == sheet
    lock = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert "enemies" in lock["atlases"]
    assert "Status: 2 images up to date, 1 atlas up to date." in run_cli("status").out


def test_a_lost_lock_keeps_the_draw_that_was_picked(project, run_cli):
    """Before, apply wrote draw 0 over the picked draw 2 without a word: the pick lived
    in the lock alone."""
    root = project({"images.toml": DRAWS})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    picked = _digest(root / "hero.png")
    (root / "images.lock").unlink()
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "note: hero.png holds draw 2, picked before: it stays the output" in out, out
    assert "Plan: 0 to generate" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert _digest(root / "hero.png") == picked
    lock = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert lock["images"]["hero"]["params"]["draw"] == 2
    assert "draw 2 (3 candidates)" in run_cli("history", "hero").out


def test_a_lost_lock_with_draw_0_on_disk_takes_draw_0(project, run_cli):
    root = project({"images.toml": DRAWS})
    assert run_cli("apply").code == 0
    first = _digest(root / "hero.png")
    (root / "images.lock").unlink()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "picked before" not in out
    assert _digest(root / "hero.png") == first
    lock = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert "draw" not in lock["images"]["hero"]["params"]


def test_a_project_written_by_hand_keeps_its_cache_out_of_git(project, run_cli):
    """Before, only `init` wrote a .gitignore line: `git add -A` in a project written by
    hand committed the cache, backups and journal."""
    root = project({"images.toml": SPRITES})
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert run_cli("apply").code == 0
    assert (root / ".nebula-build/.gitignore").read_text(encoding="utf-8").endswith("\n*\n")
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed and not [path for path in listed if path.startswith(".nebula-build")], listed


def test_the_state_folders_gitignore_is_never_written_through_a_link(project, run_cli, tmp_path):
    """A pull request may commit `.nebula-build/.gitignore` as a link to a file of the
    user's: it is left as it is, and what it points to is not touched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("mine\n", encoding="utf-8")
    root = project({"images.toml": SPRITES})
    (root / ".nebula-build").mkdir()
    os.symlink(outside, root / ".nebula-build/.gitignore")
    assert run_cli("plan").code == 0
    assert outside.read_text(encoding="utf-8") == "mine\n"
    assert (root / ".nebula-build/.gitignore").is_symlink()


NEBULA = """\
version = 1

[defaults]
backend = "nebula"
model = "black-forest-labs/FLUX.1-schnell"

[images.a]
prompt = "a cat"
output = "a.png"
"""


def test_plan_says_apply_would_stop_for_want_of_the_key(project, run_cli, monkeypatch):
    """Before, plan said nothing, and apply printed the whole plan before stopping."""
    project({"images.toml": NEBULA})
    code, out, err = run_cli("plan")
    assert code == 0
    assert "Plan: 1 to generate" in out
    assert err == (
        "note: apply here would stop before generating: NEBULA_API_KEY is not set: export "
        "NEBULA_API_KEY=<your key> (from your Nebula Block account), or build offline with "
        "--backend preview\n"
    )
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # a pull request's plan runs without it
    assert "::notice" not in run_cli("plan").out
    monkeypatch.setenv("NEBULA_API_KEY", "k-123")
    code, _, err = run_cli("plan")
    assert code == 0 and err == ""


def test_a_matrix_output_without_one_of_its_keys_is_one_error_naming_it(project, run_cli):
    """Before, each pair of images writing one file was its own error, none saying why."""
    project(
        {
            "images.toml": f"""\
{HEAD}
[images.enemy]
prompt = "a {{kind}} monster, {{mood}}"
matrix = {{ kind = ["slime", "bat"], mood = ["happy", "sad"] }}
output = "sprites/{{kind}}.png"
"""
        }
    )
    code, out, err = run_cli("validate")
    assert code == 1
    assert err == (
        "error: images.toml:12:1: images.enemy.output: does not use {mood}: the images that "
        "differ only in 'mood' would all write one file; put {mood} in the path\n"
    )


@pytest.mark.parametrize(
    ("command", "said"),
    [
        ("validate", "writes no file but its cache; of an input image it reads the header"),
        ("apply", "more than N generations (each candidate draw is one)"),
    ],
)
def test_help_says_what_the_command_does(command, said, run_cli):
    """Before, validate's said it "reads no image" (it reads inputs' sizes) and
    --max-generations counted "images" (it counts draws)."""
    code, out, _ = run_cli("help", command)
    assert code == 0
    assert said in " ".join(out.split())


def test_validate_notes_a_default_no_image_takes(project, run_cli):
    """Before, a negative_prompt added to [defaults] of FLUX.1 images changed nothing
    and nothing said why: the plan had no image to note it on."""
    project(
        {
            "images.toml": HEAD.replace(
                "height = 64\n", 'height = 64\nnegative_prompt = "blurry"\n'
            )
            + '\n[images.a]\nprompt = "x"\noutput = "a.png"\n\n'
            + '[images.b]\nprompt = "y"\noutput = "b.png"\n'
        }
    )
    code, out, err = run_cli("validate")
    assert code == 0
    assert out == "images.toml: 2 images, valid\n"
    assert err == (
        "note: black-forest-labs/FLUX.1-schnell does not take negative_prompt: left out "
        "(defaults.negative_prompt): 2 images (a, b)\n"
    )


@pytest.mark.parametrize(
    ("target", "meant"),
    [
        ("icons[*]", "icon[*]"),
        ("icons", "icon"),
        ("icn[1]", "icon[1]"),
        ("icon[3]", "icon[2]"),
        ("icn[1,2]", "icon[2]"),
    ],
)
def test_a_mistyped_declaration_is_suggested_with_what_follows_it(target, meant, project, run_cli):
    """Before, `--target 'icons[*]'` asked "did you mean 'icon[2]'?": one image of all."""
    project(
        {
            "images.toml": HEAD
            + '\n[images.icon]\nprompt = "x {n}"\nmatrix = { n = ["1", "2"] }\n'
            + 'output = "i{n}.png"\n'
        }
    )
    code, _, err = run_cli("plan", "--target", target)
    assert code == 1
    assert err.endswith(f"(known: icon[1], icon[2]); did you mean {meant!r}?\n"), err


def test_a_new_image_never_takes_a_siblings_picked_draw(project, run_cli):
    """A review found: a new image whose file is not there "held" the draw its sibling
    of the same spec picked (a missing file matched a path the record does not list)."""
    root = project(
        {
            "images.toml": HEAD
            + '\n[images.slot]\nprompt = "a knight"\ncandidates = 3\n'
            + 'matrix = { n = ["a", "b"] }\noutput = "slots/{n}.png"\n'
        }
    )
    assert run_cli("apply").code == 0
    assert run_cli("pick", "slot[a]", "1").code == 0
    manifest = root / "images.toml"
    manifest.write_text(
        manifest.read_text().replace('["a", "b"]', '["a", "b", "c"]'), encoding="utf-8"
    )
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "picked before" not in out
    lock = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert "draw" not in lock["images"]["slot[c]"]["params"]
    assert lock["images"]["slot[a]"]["params"]["draw"] == 1


def test_a_lost_lock_keeps_the_draws_of_an_image_made_from_a_picked_one(project, run_cli):
    """A review found: after a lost lock, the draws of an image taking a picked image's
    output were not recorded again (worked out from draw 0), so a fresh checkout would
    pay for one again."""
    from PIL import Image

    root = project(
        {
            "images.toml": DRAWS
            + '\n[images.crowned]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\n'
            + 'prompt = "a crown"\nimage = "@hero"\nmask = "mask.png"\ncandidates = 2\n'
            + 'output = "crowned.png"\n'
        }
    )
    Image.new("L", (64, 64), 255).save(root / "mask.png")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    assert run_cli("apply").code == 0
    before = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    (root / "images.lock").unlink()
    assert run_cli("apply").code == 0
    after = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert after["images"]["crowned"]["draws"] == before["images"]["crowned"]["draws"]
    assert after["images"]["hero"]["params"]["draw"] == 2


def test_after_a_lost_lock_pick_next_steps_from_the_draw_the_file_holds(project, run_cli):
    """Before, `pick --next` counted from draw 0 (the lock held the pick), so draw 1
    went back to draw 1 instead of on to draw 2."""
    root = project({"images.toml": DRAWS})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "1").code == 0
    (root / "images.lock").unlink()
    code, out, err = run_cli("pick", "hero", "--next")
    assert code == 0, err
    assert "draw 2 (3 candidates) is the output" in out + err
    lock = tomllib.loads((root / "images.lock").read_text(encoding="utf-8"))
    assert lock["images"]["hero"]["params"]["draw"] == 2


def test_after_a_lost_lock_pick_next_of_an_image_made_from_a_picked_one(project, run_cli):
    """A review found: its draws were worked out as if its input were on draw 0, so
    none matched the file and `--next` stepped from draw 0."""
    from PIL import Image

    root = project({"images.toml": DRAWS + CROWNED})
    Image.new("L", (64, 64), 255).save(root / "mask.png")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    assert run_cli("apply").code == 0  # the draws of crowned, from draw 2 of hero
    assert run_cli("pick", "crowned", "1").code == 0
    (root / "images.lock").unlink()
    code, out, err = run_cli("pick", "crowned", "--next")
    assert code == 0, err
    assert "draw 2 (3 candidates) is the output" in out + err


def test_after_a_lost_lock_the_gallery_marks_the_draw_the_file_holds(project, run_cli):
    root = project({"images.toml": DRAWS})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    (root / "images.lock").unlink()
    code, _, err = run_cli("gallery")
    assert code == 0, err
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    assert [draw["index"] for draw in card(page, "hero")["draws"] if draw["picked"]] == [2]


def test_a_change_the_cache_spares_is_planned_as_the_update_apply_says(project, run_cli):
    """Before, the plan said "regenerate" (read as a generation paid for) where apply
    said "updated … (from cache, no generation)"."""
    root = project({"images.toml": DRAWS.replace("candidates = 3", "seed = 1")})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("seed = 1", "seed = 2"))
    assert run_cli("apply").code == 0
    manifest.write_text(manifest.read_text().replace("seed = 2", "seed = 1"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "~ hero  update  hero.png\n      seed changed (from cache, no generation)" in out
    assert "regenerate" not in out
    assert "hero  pending update: seed changed (from cache" in run_cli("status").out
    code, out, _ = run_cli("plan", "--json")
    assert json.loads(out)["actions"][0]["action"] == "regenerate"  # the kind, for scripts
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    assert card(page, "hero")["status_text"] == "pending update: seed changed"
    code, out, err = run_cli("apply")
    assert code == 0 and "updated hero hero.png (from cache, no generation)" in out + err


ASSETS = f"""\
{HEAD}
[assets]
manifest = "static/images.json"

[images.hero]
prompt = "a knight"
output = "hero.png"
"""


def test_a_hand_edit_of_the_asset_manifest_is_named_and_backed_up(project, run_cli):
    """Before, an edit that kept the file's layout (an alt text changed in place) was
    written over with no copy, and the plan said only "does not list the images as
    they are"."""
    root = project({"images.toml": ASSETS})
    assert run_cli("apply").code == 0
    listing = root / "static/images.json"
    edited = listing.read_text(encoding="utf-8").replace('"alt": "a knight"', '"alt": "Sir K"')
    listing.write_text(edited, encoding="utf-8")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "differs from the file the lock records, at images.hero.alt; it is written from the "
        "manifest (set `alt` on the image there)\n      the current file is backed up "
        "(.nebula-build/backup/), then replaced"
    ) in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert json.loads(listing.read_text(encoding="utf-8"))["images"]["hero"]["alt"] == "a knight"
    kept = list((root / ".nebula-build/backup").glob("*/static/images.json"))
    assert [path.read_text(encoding="utf-8") for path in kept] == [edited]


def test_an_asset_manifest_edited_before_images_change_is_backed_up(project, run_cli):
    root = project({"images.toml": ASSETS})
    assert run_cli("apply").code == 0
    listing = root / "static/images.json"
    edited = listing.read_text(encoding="utf-8").replace('"alt": "a knight"', '"alt": "Sir K"')
    listing.write_text(edited, encoding="utf-8")
    manifest = root / "images.toml"
    manifest.write_text(ASSETS.replace("a knight", "a queen"), encoding="utf-8")
    code, out, err = run_cli("plan")
    assert "images change (static/images.json was edited since it was written)" in out, out
    assert run_cli("apply").code == 0
    kept = list((root / ".nebula-build/backup").glob("*/static/images.json"))
    assert [path.read_text(encoding="utf-8") for path in kept] == [edited]


def test_an_asset_manifest_as_written_whose_images_changed_is_not_called_edited(project, run_cli):
    """An output changed by hand drops out of the listing: the file is as the tool
    wrote it, so nothing of the user's is in it to copy."""
    root = project({"images.toml": ASSETS})
    assert run_cli("apply").code == 0
    (root / "hero.png").write_bytes((root / "hero.png").read_bytes() + b"\0")
    code, out, err = run_cli("plan")
    assert "does not list the images as they are (at images.hero)\n" in out, out
    assert "was edited" not in out and "backed up" not in out


def test_a_lost_lock_never_costs_an_edit_of_the_asset_manifest(project, run_cli):
    """A review found: with no record of its write in the lock, an edited listing was
    written over with no copy."""
    root = project({"images.toml": ASSETS})
    assert run_cli("apply").code == 0
    listing = root / "static/images.json"
    edited = listing.read_text(encoding="utf-8").replace('"alt": "a knight"', '"alt": "Sir K"')
    listing.write_text(edited, encoding="utf-8")
    (root / "images.lock").unlink()
    code, out, err = run_cli("plan")
    assert "(static/images.json is not recorded in the lock as written)" in out, out
    assert run_cli("apply").code == 0
    kept = list((root / ".nebula-build/backup").glob("*/static/images.json"))
    assert [path.read_text(encoding="utf-8") for path in kept] == [edited]


def test_a_file_that_already_holds_the_output_is_planned_as_an_update(project, run_cli):
    """A review found "regenerate" where the file already held the output (a lock from
    before an edit the file has): nothing is paid for."""
    root = project({"images.toml": DRAWS.replace("candidates = 3", "seed = 1")})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    before = lock.read_bytes()
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("seed = 1", "seed = 2"))
    assert run_cli("apply").code == 0
    lock.write_bytes(before)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "~ hero  update  hero.png" in out and "regenerate" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "updated hero hero.png (the file already held it)" in out + err


def test_a_conflict_says_force_would_take_the_output_from_the_cache(project, run_cli):
    root = project({"images.toml": DRAWS.replace("candidates = 3", "seed = 1")})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("seed = 1", "seed = 2"))
    assert run_cli("apply").code == 0
    (root / "hero.png").write_bytes((root / "hero.png").read_bytes() + b"\0")
    manifest.write_text(manifest.read_text().replace("seed = 2", "seed = 1"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "with --force: update (seed changed) (from cache, no generation)\n" in out, out
