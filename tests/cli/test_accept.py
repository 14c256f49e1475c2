"""`nebula-build accept`: an output retouched by hand becomes the output images.lock
records. Before it, the only ways out of "output file changed by hand" were
`apply --force` (a new generation over the edit) or moving the edit away."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tomllib
from pathlib import Path

from PIL import Image

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 96

[images.hero]
prompt = "a calm sea"
output = "img/hero.png"

[images.logo]
prompt = "a lighthouse"
output = "img/logo.png"
"""


def _retouch(
    path: Path, color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] | None = None
) -> bytes:
    """Paint a corner, as an image editor saves it (no record of nebula-build's left)."""
    with Image.open(path) as image:
        edited = image.convert("RGB")
    if size is not None:
        edited = edited.resize(size)
    edited.putpixel((0, 0), color)
    buffer = io.BytesIO()
    edited.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _entry(root: Path, name: str) -> dict:
    return tomllib.loads((root / "images.lock").read_text())["images"][name]


def test_an_accepted_edit_is_the_output_and_a_new_spec_keeps_a_copy_of_it(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = _entry(root, "hero")["digest"]
    edit = _retouch(root / "img/hero.png")
    code, out, _ = run_cli("plan")
    assert "output file changed by hand" in out
    # what accept takes, where the edit may not be it (saved as JPEG, resized); and
    # "to keep your edit, move it elsewhere" no longer, as if it were the only way
    assert (
        "(the old one goes to .nebula-build/backup/). `nebula-build accept hero` keeps the "
        "edit as the image's output (a PNG of 128×96, as it was made); or move the file "
        "elsewhere to keep it apart." in out
    ), out

    code, out, err = run_cli("accept", "hero")
    assert code == 0, err
    assert "hero: img/hero.png is its output as edited" in out
    entry = _entry(root, "hero")
    assert entry["edited_from"] == generated and entry["digest"] != generated
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert run_cli("apply", "--locked").code == 0  # CI with the edit and the lock committed
    assert (root / "img/hero.png").read_bytes() == edit

    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    code, out, _ = run_cli("plan")
    assert "img/hero.png holds a hand edit kept with `nebula-build accept`" in out
    code, out, _ = run_cli("apply")
    assert code == 0, out
    (copy,) = (root / ".nebula-build/backup").glob("*/img/hero.png")
    assert copy.read_bytes() == edit
    assert (root / "img/hero.png").read_bytes() != edit
    assert "edited_from" not in _entry(root, "hero")  # a generation, not an edit


def test_an_image_removed_leaves_its_accepted_edit_in_place(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/logo.png")
    assert run_cli("accept", "--all").code == 0
    (root / "images.toml").write_text(SITE.split("[images.logo]", maxsplit=1)[0])
    code, out, _ = run_cli("apply")
    assert code == 0, out
    assert "img/logo.png stays: it holds a hand edit `nebula-build accept` made the output" in out
    assert (root / "img/logo.png").read_bytes() == edit


def test_a_file_nebula_build_never_made_for_the_image_is_not_its_edit(project, run_cli):
    root = project({"images.toml": SITE})
    (root / "img").mkdir()
    Image.new("RGB", (128, 96), (9, 9, 9)).save(root / "img/logo.png")
    code, out, _ = run_cli("plan")
    assert "a file nebula-build did not write is in the way" in out
    code, _, err = run_cli("accept", "logo")
    assert code == 1 and "images.logo has not been generated yet" in err
    assert not (root / "images.lock").exists()


def test_another_manifests_file_at_a_declared_again_output_is_not_its_edit(project, run_cli):
    """The image removed, another manifest's image written at its output: declared again,
    plan said "changed by hand" and accept made the other manifest's file its output."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    without_logo = SITE.split("[images.logo]", maxsplit=1)[0]
    (root / "images.toml").write_text(without_logo)
    assert run_cli("apply").code == 0
    theirs = without_logo.split("[images.hero]", maxsplit=1)[0]
    (root / "other.toml").write_text(
        theirs + '[images.banner]\nprompt = "a boat"\noutput = "img/logo.png"\n'
    )
    assert run_cli("-f", "other.toml", "apply").code == 0
    banner = (root / "img/logo.png").read_bytes()
    (root / "images.toml").write_text(SITE)
    code, out, _ = run_cli("plan")
    assert "the file in the way is another manifest's (other.lock records it as banner's)" in out
    assert "accept logo" not in out, out
    code, _, err = run_cli("accept", "logo")
    assert code == 1 and "images.logo has not been generated yet" in err
    assert "logo" not in tomllib.loads((root / "images.lock").read_text())["images"]
    assert (root / "img/logo.png").read_bytes() == banner


def test_an_accepted_edit_moves_with_its_output(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / "images.toml").write_text(SITE.replace("img/hero.png", "img/sea.png"))
    assert run_cli("apply").code == 0
    assert (root / "img/sea.png").read_bytes() == edit
    entry = _entry(root, "hero")
    assert entry["output"] == "img/sea.png" and "edited_from" in entry
    assert entry["digest"] == hashlib.sha256(edit).hexdigest()
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_deleted_edit_brings_back_the_generated_image(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = (root / "img/hero.png").read_bytes()
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / "img/hero.png").unlink()
    code, out, _ = run_cli("apply")
    assert code == 0 and "0 generated" in out, out
    assert (root / "img/hero.png").read_bytes() == generated
    assert "edited_from" not in _entry(root, "hero")


def test_accept_says_why_it_takes_nothing(project, run_cli):
    root = project({"images.toml": SITE})
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "images.hero has not been generated yet" in err
    assert run_cli("apply").code == 0
    before = (root / "images.lock").read_bytes()

    code, _, err = run_cli("accept")
    assert code == 1 and "name the images whose edited output to keep, or give --all" in err
    code, _, err = run_cli("accept", "hreo")
    assert code == 1 and "accept: unknown image: hreo" in err
    # nothing to do is no error (the README's exit codes): a script may accept twice
    code, out, err = run_cli("accept", "hero")
    assert code == 0 and "hero: img/hero.png is already the output images.lock records" in out
    code, out, err = run_cli("accept", "--all")
    assert code == 0 and "Nothing to accept: no output file is changed by hand." in out

    (root / "img/hero.png").write_bytes(b"not an image")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "accept: images.hero: img/hero.png: not a PNG, JPEG" in err, err

    with Image.open(root / "img/logo.png") as image:
        image.convert("RGB").save(root / "img/logo.png", "JPEG")
    code, _, err = run_cli("accept", "logo")
    assert code == 1 and "holds a JPEG image, not the PNG its name asks for" in err

    _retouch(root / "img/logo.png")
    (root / "images.toml").write_text(SITE.replace("a lighthouse", "a lighthouse at night"))
    code, _, err = run_cli("accept", "logo")
    assert code == 1 and "images.toml changed since its last apply" in err
    assert (root / "images.lock").read_bytes() == before  # nothing written by any of them


def test_a_second_edit_is_an_edit_of_the_same_generated_image(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = _entry(root, "hero")["digest"]
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    _retouch(root / "img/hero.png", (0, 255, 0))
    assert run_cli("plan", "--detailed-exitcode").code == 1  # a new edit: a conflict again
    code, out, _ = run_cli("accept", "hero")
    assert code == 0 and "in place of the edit accepted before" in out
    assert _entry(root, "hero")["edited_from"] == generated


def test_a_lock_s_edited_from_must_be_a_digest(project, run_cli):
    """A pull request's lock is untrusted: the new key is checked like the others."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    marker = "[images.hero]\n"
    (root / "images.lock").write_text(
        lock.replace(marker, marker + 'edited_from = "\\u001b[31mred"\n', 1)
    )
    code, _, err = run_cli("plan")
    assert code == 1 and "`edited_from` must be a sha256 digest" in err
    assert "\x1b" not in err


def test_plan_json_and_status_see_an_accepted_edit_as_up_to_date(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    actions = json.loads(run_cli("plan", "--json").out)["actions"]
    assert all(action["action"] == "noop" for action in actions), actions
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 0 and "hero  up to date (hand edit)  img/hero.png" in out, out
    assert "logo  up to date  img/logo.png" in out


def test_the_edit_of_a_picked_draw_is_accepted_as_that_draw(project, run_cli):
    """The lock records the draw picked, not draw 0 of the declaration."""
    root = project(
        {
            "images.toml": SITE.replace(
                'output = "img/hero.png"', 'output = "img/hero.png"\ncandidates = 3'
            )
        }
    )
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    picked = _entry(root, "hero")["digest"]
    edit = _retouch(root / "img/hero.png")
    code, out, err = run_cli("accept", "hero")
    assert code == 0, err
    assert _entry(root, "hero")["edited_from"] == picked
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert (root / "img/hero.png").read_bytes() == edit


def test_a_fresh_checkout_of_an_accepted_edit_is_up_to_date(project, run_cli, tmp_path):
    """CI: the edit and images.lock committed, no cache (`.nebula-build/` is ignored)."""
    import shutil

    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    ci = tmp_path / "ci"
    ci.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(root / name, ci / name)
    shutil.copytree(root / "img", ci / "img")
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=ci)
    assert code == 0, out
    assert run_cli("apply", "--locked", cwd=ci).code == 0
    assert (ci / "img/hero.png").read_bytes() == edit


def test_the_gallery_says_an_output_is_a_hand_edit(project, run_cli):
    from tests.live.pagedata import card as card_of

    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    assert card_of(page, "hero")["status_text"] == (
        "up to date · a hand edit kept with nebula-build accept"
    )
    assert "hand edit" not in card_of(page, "logo")["status_text"]


def test_history_says_the_output_is_a_hand_edit_of_which_file(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = _entry(root, "hero")["digest"]
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    out = run_cli("history", "hero").out
    assert f"(a hand edit of {generated[:12]}, kept with accept)" in out
    assert json.loads(run_cli("history", "hero", "--json").out)["edited_from"] == generated
    assert json.loads(run_cli("history", "logo", "--json").out)["edited_from"] is None


# --- from an attacker's review of the first version ---------------------------------


def test_the_history_lists_the_generated_file_that_pick_brings_back(project, run_cli):
    """It listed the edit's digest under the generation, and `pick @1` brought back the
    generated file: the edit is in the backup, not in any cache."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = _entry(root, "hero")["digest"]
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    (earlier,) = _entry(root, "hero")["history"]
    assert earlier["digest"] == generated
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    assert hashlib.sha256((root / "img/hero.png").read_bytes()).hexdigest() == generated


def test_an_image_another_takes_as_input_is_not_accepted(project, run_cli):
    """`hat` was made from the generated hero and keyed by it: with the edit accepted,
    one key would stand for two images."""
    mask = io.BytesIO()
    Image.new("L", (128, 96), 255).save(mask, "PNG")
    chain = SITE + (
        '\n[images.hat]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "a crown"\n'
        'image = "@hero"\nmask = "mask.png"\noutput = "img/hat.png"\n'
    )
    root = project({"images.toml": chain, "mask.png": mask.getvalue()})
    assert run_cli("apply").code == 0, run_cli("apply").err
    _retouch(root / "img/hero.png")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "images.hero is the input of hat, made from the generated image" in err
    assert "nebula-build accept" not in run_cli("plan").out


def test_an_edit_must_keep_the_size_and_pass_the_image_s_checks(project, run_cli):
    sprite = SITE.replace(
        'output = "img/hero.png"',
        'output = "img/hero.png"\nresize = [64, 48]\npalette = "pico8"\n'
        "checks = { max_colors = 16 }",
    )
    root = project({"images.toml": sprite})
    assert run_cli("apply").code == 0, run_cli("apply").out
    Image.new("RGB", (64, 48), (9, 9, 9)).resize((640, 480)).save(root / "img/hero.png")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "img/hero.png is 640×480, and the image's output is 64×48" in err
    noise = Image.effect_noise((64, 48), 90).convert("RGB")
    noise.save(root / "img/hero.png")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "check failed: max_colors ≤ 16" in err, err


def test_a_renamed_image_keeps_its_accepted_edit(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / "images.toml").write_text(SITE.replace("[images.hero]", "[images.banner]"))
    code, out, _ = run_cli("apply")
    assert code == 0 and "0 generated" in out, out
    assert (root / "img/hero.png").read_bytes() == edit
    assert "edited_from" in _entry(root, "banner")
    assert not (root / ".nebula-build/backup").exists()


def test_accept_all_keeps_what_it_can_and_says_what_it_left(project, run_cli):
    wide = SITE.replace('output = "img/logo.png"', 'output = "img/logo.png"\nwidths = [64]')
    root = project({"images.toml": wide})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    _retouch(root / "img/logo.png")
    plan = run_cli("plan").out
    assert "`nebula-build accept hero` keeps the edit" in plan and "accept logo" not in plan
    code, out, err = run_cli("accept", "--all")
    assert code == 0 and "hero: img/hero.png is its output as edited" in out
    assert "images.logo has responsive variants" in err and "left in conflict" in err
    code, _, err = run_cli("accept", "logo")
    assert code == 1 and "images.logo has responsive variants" in err


def test_a_hint_names_accept_only_where_the_manifest_still_declares_the_lock_s_image(
    project, run_cli
):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert code == 1 and "output file changed by hand" in out
    assert "accept" not in out + err


def test_a_link_or_another_image_s_file_is_not_an_edit(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "img/hero.png").unlink()
    (root / "img/hero.png").symlink_to("logo.png")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "img/hero.png is a symbolic link" in err
    (root / "img/hero.png").unlink()
    (root / "img/hero.png").write_bytes((root / "img/logo.png").read_bytes())
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "carries the record of a file nebula-build made for another" in err
    (root / "img/hero.png").unlink()
    os.mkfifo(root / "img/hero.png")
    code, _, err = run_cli("accept", "hero")
    assert code == 1 and "img/hero.png is not a regular file" in err, err


def test_pick_over_an_accepted_edit_says_where_its_copy_is(project, run_cli):
    """The edit is in no cache: pick backed it up and said nothing of it."""
    root = project(
        {
            "images.toml": SITE.replace(
                'output = "img/hero.png"', 'output = "img/hero.png"\ncandidates = 2'
            )
        }
    )
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    code, out, err = run_cli("pick", "hero", "1")
    assert code == 0, err
    (copy,) = (root / ".nebula-build/backup").glob("*/img/hero.png")
    assert copy.read_bytes() == edit
    folder = copy.parent.parent.relative_to(root).as_posix()
    assert f"1 replaced file backed up in {folder}" in out, out


def test_named_images_are_accepted_all_or_none_and_every_refusal_is_said(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    before = (root / "images.lock").read_bytes()
    (root / "img/hero.png").write_bytes(b"not an image")
    with Image.open(root / "img/logo.png") as image:
        image.convert("RGB").resize((64, 48)).save(root / "img/logo.png", "PNG")
    code, _, err = run_cli("accept", "hero", "logo")
    assert code == 1
    assert "error: accept: images.hero: img/hero.png: not a PNG, JPEG" in err, err
    assert "error: accept: images.logo: img/logo.png is 64×48" in err, err
    assert (root / "images.lock").read_bytes() == before

    edit = _retouch(root / "img/logo.png", size=(128, 96))
    code, out, err = run_cli("accept", "logo")
    assert code == 0, err
    code, out, err = run_cli("accept", "logo")  # twice: nothing more to do
    assert code == 0 and "logo: img/logo.png is already the output images.lock records" in out
    assert (root / "img/logo.png").read_bytes() == edit


def test_inspect_says_the_lock_records_an_accepted_edit(project, run_cli):
    """The editor dropped the record nebula-build embeds: inspect said only "no
    generation metadata"."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    generated = _entry(root, "hero")["digest"]
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / ".nebula-build/lock-snapshot.json").unlink()
    code, out, err = run_cli("inspect", "img/hero.png")
    assert code == 0, err
    assert "no generation metadata" in out
    assert (
        f"images.lock records it as hero's output: a hand edit of {generated[:12]}, kept "
        "with `nebula-build accept` (`nebula-build history hero` lists what made it)" in out
    ), out
    assert not (root / ".nebula-build/lock-snapshot.json").exists()  # inspect wrote it
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    code, out, err = run_cli("inspect", str(root / "img/hero.png"), cwd=elsewhere)
    assert code == 0, err
    assert f"(`nebula-build -C {root} history hero` lists what made it)" in out, out


def test_history_says_where_an_edit_a_new_spec_replaced_went(project, run_cli):
    """Changing the prompt back brings back the generated file, not the edit: the
    history said nothing of the edit, nor of its copy in the backup folder."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    edit = _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    (root / "images.toml").write_text(SITE.replace("a calm sea", "a stormy sea"))
    assert run_cli("apply").code == 0
    (copy,) = (root / ".nebula-build/backup").glob("*/img/hero.png")
    copy_path = copy.relative_to(root).as_posix()
    edited = hashlib.sha256(edit).hexdigest()
    assert _entry(root, "hero")["history"][0]["edited"] == edited

    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    assert f"its output was a hand edit, {edited[:12]}: apply's copy: {copy_path}" in out, out
    code, out, _ = run_cli("history", "hero", "--json")
    (earlier,) = [g for g in json.loads(out)["generations"] if g["index"] == 1]
    assert earlier["edited"] == edited and earlier["edited_copy"] == copy_path

    copy.unlink()  # gc --backups, say
    code, out, _ = run_cli("history", "hero")
    assert "its output was a hand edit" in out and "not in .nebula-build/backup/" in out

    # a link in a backup folder is never followed: it read the file outside it
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "hero.png").write_bytes(edit)
    (copy.parent).rmdir()
    copy.parent.symlink_to(outside)
    code, out, _ = run_cli("history", "hero")
    assert "not in .nebula-build/backup/" in out and "apply's copy" not in out, out

    lock = (root / "images.lock").read_text().replace(edited, "not-a-digest")
    (root / "images.lock").write_text(lock)
    code, _, err = run_cli("plan")
    assert code == 1 and "`edited` must be a sha256 digest" in err, err


def test_a_conflict_accept_cannot_keep_still_says_how_to_keep_it(project, run_cli):
    """One edit accept can keep, one of an image changed since: the advice to move the
    file away was dropped for both."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    _retouch(root / "img/logo.png")
    (root / "images.toml").write_text(SITE.replace("a lighthouse", "a lighthouse at dusk"))
    code, out, _ = run_cli("plan")
    assert "to keep an edit, move the file elsewhere. `nebula-build accept hero` keeps" in out
    assert "keep it apart" not in out, out


def test_apply_refusing_an_edit_says_accept_keeps_it_where_it_can(project, run_cli):
    """apply's failure offered only --force, where the plan it had shown offered accept.
    An edit accept cannot keep (the spec changed since) is not offered it."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    _retouch(root / "img/logo.png")
    (root / "images.toml").write_text(SITE.replace("a lighthouse", "a lighthouse at night"))
    code, _, err = run_cli("apply")
    assert code == 1
    hero, logo = (
        next(line for line in err.splitlines() if line.startswith(f"  {name}: "))
        for name in ("hero", "logo")
    )
    assert hero.endswith("; `nebula-build accept hero` keeps the edit"), hero
    assert "re-run with --force" in logo and "accept" not in logo, logo


def test_picking_another_draw_over_an_accepted_edit_keeps_it_in_the_history(project, run_cli):
    """`pick` of another draw over an accepted hand edit backed the edit up, and the
    history said nothing of it (draws of one set leave none), so nothing told where it
    went; status did not mark the edit of an image with candidates."""
    root = project(
        {
            "images.toml": SITE.replace(
                'prompt = "a calm sea"\n', 'prompt = "a calm sea"\ncandidates = 2\n'
            )
        }
    )
    assert run_cli("apply").code == 0
    _retouch(root / "img/hero.png")
    assert run_cli("accept", "hero").code == 0
    code, out, err = run_cli("status")
    assert "hero  up to date: draw 0 (2 candidates, hand edit)  img/hero.png" in out, out
    code, out, err = run_cli("pick", "hero", "1")
    assert code == 0, err
    backup = next((root / ".nebula-build/backup").rglob("hero.png"))
    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    assert "1 earlier generation" in out, out
    assert "its output was a hand edit, " in out and str(backup.relative_to(root)) in out, out
