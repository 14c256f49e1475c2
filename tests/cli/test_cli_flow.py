"""End-to-end behaviour through the CLI, as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import fake_manifest, generation_log, image_info

SITE = """
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 128

[images.hero]
prompt = "a flying cat over a neon city at dusk"
seed = 42
output = "static/hero.webp"

[images.logo]
model = "stabilityai/stable-diffusion-xl-base-1.0"
prompt = "minimal fox logo"
negative_prompt = "text"
width = 128
output = "static/logo.png"

[images.card]
prompt = "a paper crane"
seed = 7
output = "static/card.jpg"
"""


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "static").rglob("*"))
        if p.is_file()
    }


def test_fresh_project_plan_apply_then_nothing_to_do(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("plan", "--detailed-exitcode").code == 2
    code, out, err = run_cli("apply")
    assert code == 0, err
    infos = {
        name: image_info(root / "static" / name) for name in ("hero.webp", "logo.png", "card.jpg")
    }
    assert infos == {
        "hero.webp": ("WEBP", (256, 128)),
        "logo.png": ("PNG", (128, 128)),
        "card.jpg": ("JPEG", (256, 128)),
    }
    lock = (root / "images.lock").read_bytes()
    before = digests(root)
    assert run_cli("plan", "--detailed-exitcode").code == 0
    code, out, _ = run_cli("apply")
    assert code == 0 and "No changes" in out
    assert (root / "images.lock").read_bytes() == lock
    assert digests(root) == before


def test_editing_one_prompt_changes_exactly_one_output_and_revert_costs_nothing(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    images = {
        name: {"prompt": f"sprite {name}", "seed": i, "output": f"static/{name}.png"}
        for i, name in enumerate(["a", "b", "c"])
    }
    root = project({"images.toml": fake_manifest(log, images)})
    assert run_cli("apply").code == 0
    first_files, first_lock = digests(root), (root / "images.lock").read_bytes()
    assert generation_log(log) == ["a", "b", "c"] or sorted(generation_log(log)) == ["a", "b", "c"]

    images["b"]["prompt"] = "sprite b, edited"
    (root / "images.toml").write_text(fake_manifest(log, images))
    code, out, _ = run_cli("plan")
    assert '~ prompt: "sprite b" -> "sprite b, edited"' in out
    assert run_cli("apply").code == 0
    changed = {k for k, v in digests(root).items() if first_files[k] != v}
    assert changed == {"static/b.png"}
    assert sorted(generation_log(log)) == ["a", "b", "b", "c"]

    images["b"]["prompt"] = "sprite b"
    (root / "images.toml").write_text(fake_manifest(log, images))
    code, out, _ = run_cli("plan")
    assert "(from cache, no generation)" in out and "0 to generate, 1 from cache," in out
    assert run_cli("apply").code == 0
    assert digests(root) == first_files
    reverted = tomllib.loads((root / "images.lock").read_text())
    history = reverted["images"]["b"].pop("history")
    assert reverted == tomllib.loads(first_lock.decode())
    assert [h["params"]["prompt"] for h in history] == ["sprite b, edited"]
    assert len(generation_log(log)) == 4  # the revert generated nothing


def test_deleted_output_is_restored_from_cache(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project(
        {"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "static/a.png"}})}
    )
    run_cli("apply")
    original = (root / "static/a.png").read_bytes()
    (root / "static/a.png").unlink()
    code, out, _ = run_cli("plan")
    assert "restore" in out and "output file missing" in out
    assert run_cli("apply").code == 0
    assert (root / "static/a.png").read_bytes() == original
    assert generation_log(log) == ["a"]


def test_hand_edited_output_needs_force_and_is_backed_up(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply")
    hero = root / "static/hero.webp"
    hero.write_bytes(b"my own edit")
    code, out, _ = run_cli("plan")
    assert "conflict" in out and "changed by hand" in out
    assert "A file changed by hand is kept: `nebula-build apply --force` replaces it" in out
    code, out, err = run_cli("apply")
    assert code == 1 and "--force" in err
    assert hero.read_bytes() == b"my own edit"
    code, out, _ = run_cli("apply", "--force")
    assert code == 0 and hero.read_bytes() != b"my own edit"
    backups = list((root / ".nebula-build/backup").rglob("hero.webp"))
    assert [b.read_bytes() for b in backups] == [b"my own edit"]
    folder = backups[0].relative_to(root).parents[1]
    assert f"1 replaced file backed up in {folder}/\n" in out, out


def test_apply_says_what_to_do_about_a_hand_edit_on_the_refusal_alone(project, run_cli):
    """apply printed the plan's advice ("A file changed by hand is kept: `nebula-build
    apply --force` replaces it …") and then refused the image with the same advice, on
    its progress line and again in the closing error: three times for one file."""
    root = project({"images.toml": SITE})
    run_cli("apply")
    (root / "static/hero.webp").write_bytes(b"my own edit")
    code, out, err = run_cli("apply")
    assert code == 1
    assert "! hero  conflict  static/hero.webp" in out
    assert "--force" not in out and "kept" not in out, out
    assert err.count("re-run with --force to replace it") == 2, err  # progress, then error


def test_a_renamed_image_is_dropped_from_the_lock_and_its_file_kept(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply")
    (root / "images.toml").write_text(SITE.replace("[images.hero]", "[images.banner]"))
    code, out, _ = run_cli("plan")
    assert "  > banner  rename  static/hero.webp\n" in out
    assert "renamed from hero (the file already holds this output)\n" in out
    assert "  - hero" not in out  # said on banner's line
    code, _, err = run_cli("apply")
    assert code == 0 and "deleted hero" not in err, err
    assert "dropped hero" not in err, err  # said on banner's line, as the plan does
    assert "[1/1] renamed banner static/hero.webp (was hero: the file already held it)" in err
    assert (root / "static/hero.webp").exists()


def test_a_conflict_still_shows_what_else_is_pending_for_the_image(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply")
    (root / "static/hero.webp").write_bytes(b"my own edit")
    (root / "images.toml").write_text(SITE.replace("at dusk", "at dawn"))
    code, out, _ = run_cli("plan")
    assert "! hero  conflict  static/hero.webp\n      output file changed by hand\n" in out
    assert "      with --force: regenerate (prompt changed)\n      ~ prompt: " in out, out
    data = json.loads(run_cli("plan", "--json").out)
    hero = next(a for a in data["actions"] if a["image"] == "hero")
    assert hero["with_force"]["action"] == "regenerate" and hero["with_force"]["generates"]


def test_a_conflict_names_what_force_would_remove(project, run_cli):
    site = SITE.replace(
        'output = "static/hero.webp"', 'output = "static/hero.webp"\nwidths = [64, 32]'
    )
    root = project({"images.toml": site})
    run_cli("apply")
    (root / "static/hero.webp").write_bytes(b"my own edit")
    (root / "images.toml").write_text(site.replace("widths = [64, 32]", "widths = [64]"))
    out = run_cli("plan").out
    assert "      with --force, removes static/hero-32.webp, which it no longer writes\n" in out
    data = json.loads(run_cli("plan", "--json").out)
    hero = next(a for a in data["actions"] if a["image"] == "hero")
    assert hero["with_force"]["removes"] == ["static/hero-32.webp"]
    assert "removes" not in hero  # without --force, nothing is
    said = "output file changed by hand; with --force, removes static/hero-32.webp, which it"
    assert said in run_cli("status").out


def test_with_several_hand_edits_the_plan_says_how_to_replace_one(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply")
    for name in ("static/hero.webp", "static/card.jpg"):
        (root / name).write_bytes(b"my own edit")
    code, out, _ = run_cli("plan")
    assert "`nebula-build apply --force --target hero` only hero's" in out, out
    assert run_cli("apply", "--force", "--target", "hero").code == 0
    assert (root / "static/hero.webp").read_bytes() != b"my own edit"
    assert (root / "static/card.jpg").read_bytes() == b"my own edit"
    code, out, _ = run_cli("plan")
    assert "! card" in out and "A file changed by hand is kept" in out


def test_foreign_file_in_the_way_is_a_conflict(project, run_cli):
    root = project({"images.toml": SITE, "static/logo.png": b"designer's logo"})
    code, _, err = run_cli("apply")
    assert code == 1 and "did not write" in err
    assert (root / "static/logo.png").read_bytes() == b"designer's logo"
    assert (root / "static/hero.webp").exists()  # the others were still built


def test_removed_image_is_deleted_only_when_unmodified(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply")
    (root / "static/card.jpg").write_bytes(b"edited")
    trimmed = SITE.split("[images.logo]", maxsplit=1)[0]
    (root / "images.toml").write_text(trimmed)
    code, out, _ = run_cli("plan")
    assert "- logo" in out and "- card" in out and "stays" in out
    code, out, _ = run_cli("apply")
    assert code == 0
    # as the plan counts them ("2 done (0 generated)" said nothing of what was done)
    assert "2 done (0 generated, 2 deleted), 0 failed." in out, out
    assert not (root / "static/logo.png").exists()
    assert (root / "static/card.jpg").read_bytes() == b"edited"
    assert "logo" not in (root / "images.lock").read_text()


def test_move_and_reencode_cost_no_generation(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "x", "output": "static/a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    run_cli("apply")
    images["a"]["output"] = "art/a.png"
    (root / "images.toml").write_text(fake_manifest(log, images))
    assert "move" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert (root / "art/a.png").exists() and not (root / "static").exists()
    images["a"]["output"] = "art/a.webp"
    (root / "images.toml").write_text(fake_manifest(log, images))
    code, out, _ = run_cli("plan")
    assert "reencode" in out and '~ format: "png" -> "webp"' in out
    assert run_cli("apply").code == 0
    assert image_info(root / "art/a.webp") == ("WEBP", (64, 64))
    assert not (root / "art/a.png").exists()
    assert generation_log(log) == ["a"]


def test_plan_json_shape(project, run_cli):
    project({"images.toml": SITE})
    code, out, _ = run_cli("plan", "--json")
    data = json.loads(out)
    assert data["summary"]["create"] == 3
    first = data["actions"][0]
    assert {"image", "action", "reason", "output"} <= set(first)
    assert first["action"] == "create" and first["reason"] == "new image"


def test_target_and_replace(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {n: {"prompt": n, "output": f"static/{n}.png"} for n in ("a", "b")}
    root = project({"images.toml": fake_manifest(log, images)})
    assert run_cli("apply", "--target", "a").code == 0
    assert generation_log(log) == ["a"] and not (root / "static/b.png").exists()
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--replace", "a").code == 0
    assert generation_log(log) == ["a", "b", "a"]
    code, _, err = run_cli("plan", "--target", "nope")
    assert code == 1 and "unknown image: nope" in err
    code, _, err = run_cli("plan", "--target", "nope", "--target", "nada")
    assert code == 1 and "unknown images: nope, nada (known: a, b)" in err


def test_locked_and_max_generations(project, run_cli):
    root = project({"images.toml": SITE})
    code, _, err = run_cli("apply", "--locked")
    assert code == 2 and "--locked" in err and not (root / "static").exists()
    code, _, err = run_cli("apply", "--max-generations", "2")
    assert code == 1 and "more than --max-generations 2" in err
    assert not (root / "static").exists()
    assert run_cli("apply").code == 0
    (root / "static/hero.webp").unlink()
    assert run_cli("apply", "--locked").code == 0  # restoring from the cache is allowed
    assert (root / "static/hero.webp").exists()


def test_directory_and_file_options_and_walking_up(project, run_cli, tmp_path):
    root = project({"site/images.toml": SITE, "site/deep/er/.keep": ""})
    assert run_cli("-C", "site", "validate").out.startswith("site/images.toml: 3 images")
    assert run_cli("-f", "site/images.toml", "plan", "--detailed-exitcode").code == 2
    code, out, _ = run_cli("plan", cwd=root / "site/deep/er")
    assert code == 0 and "3 to generate" in out
    code, _, err = run_cli("plan", cwd=tmp_path)
    assert code == 1 and "no images.toml" in err and "nebula-build init" in err


def test_init_writes_a_project_that_builds(tmp_path, run_cli):
    code, out, _ = run_cli("-C", str(tmp_path), "init")
    assert code == 0
    assert ".nebula-build/" in (tmp_path / ".gitignore").read_text()
    assert run_cli("-C", str(tmp_path), "apply").code == 0
    assert run_cli("-C", str(tmp_path), "plan", "--detailed-exitcode").code == 0
    assert run_cli("-C", str(tmp_path), "init").code == 1


def test_init_writes_the_manifest_that_f_names_beside_another(project, run_cli):
    root = project({"images.toml": SITE})
    declared = (root / "images.toml").read_text()
    code, out, err = run_cli("-f", "other.toml", "init")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "wrote other.toml"
    assert out.splitlines()[-1] == (
        "next: nebula-build -f other.toml plan, then nebula-build -f other.toml apply"
    )
    assert "Commit this file and other.lock." in (root / "other.toml").read_text()
    assert (root / "images.toml").read_text() == declared
    assert run_cli("-f", "other.toml", "apply").code == 0
    assert (root / "other.lock").is_file() and not (root / "images.lock").exists()
    code, _, err = run_cli("-f", "other.toml", "init")
    assert code == 1 and err == "error: other.toml already exists; pass --force to overwrite it\n"


def test_a_second_starter_beside_an_applied_one_builds_on_the_first_try(tmp_path, run_cli):
    """`init`, apply, then `-f other.toml init` (the README's second manifest in the
    folder): its images had the first one's outputs, so its first apply failed both
    ("the file in the way is another manifest's")."""
    assert run_cli("-C", str(tmp_path), "init").code == 0
    assert run_cli("-C", str(tmp_path), "apply").code == 0
    assert run_cli("-C", str(tmp_path), "-f", "other.toml", "init").code == 0
    code, out, err = run_cli("-C", str(tmp_path), "-f", "other.toml", "apply")
    assert code == 0, err
    assert (tmp_path / "images/other/hero.png").is_file()
    assert run_cli("-C", str(tmp_path), "plan", "--detailed-exitcode").code == 0


def test_init_in_a_subfolder_of_a_project_says_it_starts_another_one(project, run_cli):
    root = project({"images.toml": SITE, "data/items.csv": "id\n"})
    code, out, err = run_cli("init", cwd=root / "data")
    assert code == 0 and "wrote images.toml" in out
    assert err == (
        "note: ../images.toml is a project above this folder: commands run here now read "
        "the new images.toml instead (-f ../images.toml reads that one)\n"
    )
    assert run_cli("-f", "../images.toml", "validate", cwd=root / "data").code == 0
    assert run_cli("-C", str(root), "init", "--force").err == ""  # nothing above the root


@pytest.mark.parametrize("force", [(), ("--force",)])
def test_init_never_writes_through_a_link_a_checkout_planted(tmp_path, run_cli, force):
    """A dangling `images.toml` link was created where it led, `--force` overwrote
    what a link led to, and a `.gitignore` link had a line added to its target."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (project / "images.toml").symlink_to(outside / "created.toml")
    code, out, err = run_cli("init", *force, cwd=project)
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml is a link; init writes a file of its own there: remove the link first\n"
    )
    assert list(outside.iterdir()) == []
    (project / "images.toml").unlink()
    (outside / "bashrc").write_text("export X=1\n")
    (project / ".gitignore").symlink_to(outside / "bashrc")
    code, out, err = run_cli("init", *force, cwd=project)
    assert code == 0, err
    assert "left .gitignore as it is (not a plain file): add .nebula-build/ to it yourself\n" in out
    assert (outside / "bashrc").read_text() == "export X=1\n"
    assert (project / "images.toml").is_file() and not (project / "images.toml").is_symlink()


def test_init_adds_to_a_gitignore_in_another_encoding_as_it_is(tmp_path, run_cli):
    """A Latin-1 .gitignore was a UnicodeDecodeError traceback, after images.toml was
    written; a FIFO there blocked init for good."""
    (tmp_path / ".gitignore").write_bytes(b"caf\xe9\n")
    code, out, err = run_cli("-C", str(tmp_path), "init")
    assert code == 0, err
    assert (tmp_path / ".gitignore").read_bytes() == b"caf\xe9\n.nebula-build/\n"
    other = tmp_path / "fifo"
    other.mkdir()
    os.mkfifo(other / ".gitignore")
    code, out, err = run_cli("init", cwd=other)
    assert code == 0, err
    assert "left .gitignore as it is (not a plain file)" in out


def test_init_says_how_to_install_the_local_extra_from_a_checkout(tmp_path, run_cli):
    assert run_cli("-C", str(tmp_path), "init").code == 0
    starter = (tmp_path / "images.toml").read_text()
    assert "nebula-build[local]" not in starter  # not published on PyPI
    assert "torch for your CUDA version" in starter and "pip install -e '.[local]'" in starter


def test_status_models_schema(project, run_cli):
    root = project({"images.toml": SITE})
    run_cli("apply", "--target", "hero")
    (root / "static/hero.webp").write_bytes(b"edit")
    out = run_cli("status").out
    assert "hero  conflict" in out and "logo  pending create" in out
    out = run_cli("models").out
    assert "backend preview" in out and "black-forest-labs/FLUX.1-Fill-dev" in out
    schema = json.loads(run_cli("schema").out)
    assert "images" in schema["properties"]


def test_gc_keeps_what_is_referenced(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {"a": {"prompt": "one", "output": "a.png"}}
    root = project({"images.toml": fake_manifest(log, images)})
    run_cli("apply")
    images["a"]["prompt"] = "two"
    (root / "images.toml").write_text(fake_manifest(log, images))
    run_cli("apply")
    cache = root / ".nebula-build/cache"
    assert len([p for p in cache.glob("??/*") if p.suffix != ".json"]) == 2
    out = run_cli("gc", "--dry-run").out  # the first is in a's history
    assert (
        "would remove 0 cache entries" in out and "kept 1 generation `pick @K` brings back" in out
    )
    images["b"] = {"prompt": "three", "output": "b.png"}
    (root / "images.toml").write_text(fake_manifest(log, images))
    run_cli("apply")
    del images["b"]
    (root / "images.toml").write_text(fake_manifest(log, images))
    run_cli("apply")  # b and its lock entry are gone: its original is referenced no more
    out = run_cli("gc", "--dry-run").out
    assert "would remove 1 cache entry (" in out
    assert re.search(
        r"^  [0-9a-f]{12} +[0-9.]+ (bytes|KiB)  made for b, \d{4}-\d\d-\d\d \d\d:\d\d UTC$",
        out,
        re.M,
    )
    assert "removed 1 cache entry" in run_cli("gc").out
    assert len([p for p in cache.glob("??/*") if p.suffix != ".json"]) == 2
    (root / "a.png").unlink()
    assert run_cli("apply").code == 0
    assert len(generation_log(log)) == 3  # restored: the live entry was kept


def test_failures_keep_going_and_are_all_reported(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {n: {"prompt": n, "output": f"{n}.png"} for n in ("a", "b", "c", "d")}
    root = project({"images.toml": fake_manifest(log, images, fail=("b", "d"))})
    code, out, err = run_cli("apply")
    assert code == 1
    assert "2 images failed" in err and "b: b refused on purpose" in err and "d:" in err
    assert (root / "a.png").exists() and (root / "c.png").exists()
    assert not (root / "b.png").exists()
    lock = (root / "images.lock").read_text()
    assert "[images.a]" in lock and "[images.c]" in lock and "[images.b]" not in lock
    (root / "images.toml").write_text(fake_manifest(log, images))
    assert run_cli("apply").code == 0
    assert sorted(generation_log(log)) == ["a", "b", "b", "c", "d", "d"]


def test_backend_override_runs_everything_through_preview(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}})})
    assert run_cli("apply", "--backend", "preview").code == 0
    assert generation_log(log) == [] and (root / "a.png").exists()
    assert 'backend = "preview"' in (root / "images.lock").read_text()
    code, _, err = run_cli("plan", "--backend", "nope")
    assert code == 1 and "unknown backend 'nope'" in err and "preview" in err


def test_lost_lock_entry_with_the_file_in_place_is_adopted_without_work(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}})})
    run_cli("apply")
    lock = (root / "images.lock").read_bytes()
    (root / "images.lock").unlink()  # as if killed between the rename and the journal line
    code, out, _ = run_cli("plan")
    assert "the file already holds this output" in out
    assert run_cli("apply").code == 0
    assert (root / "images.lock").read_bytes() == lock
    assert generation_log(log) == ["a"]


def test_an_output_folder_that_links_outside_the_project_is_refused(project, run_cli, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = project({"images.toml": SITE})
    (root / "static").symlink_to(outside, target_is_directory=True)
    code, _, err = run_cli("apply")
    assert code == 1
    assert "leaves the project through a symbolic link" in err
    assert list(outside.iterdir()) == []


def test_progress_on_a_terminal_keeps_a_status_line(project, fake_site, tmp_path, monkeypatch):
    import io

    from nebula_build.cli import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR")
    log = tmp_path / "gen.log"
    images = {n: {"prompt": n, "output": f"{n}.png"} for n in ("a", "b", "c")}
    project({"images.toml": fake_manifest(log, images, delay=0.05, concurrency=1)})
    out, err = Terminal(), Terminal()
    assert main(["apply"], out=out, err=err) == 0
    text = err.getvalue()
    assert "\x1b[K" in text and "working on" in text  # the live line, redrawn in place
    assert "\x1b[32mcreated\x1b[0m" in text  # colour on a terminal
    assert text.count("created") == 3


@pytest.mark.parametrize(
    "argv", [["plan", "--no-such-flag"], ["no-such-command"], ["apply", "--parallelism", "x"], []]
)
def test_a_usage_error_exits_1_never_the_changes_pending_code(project, run_cli, argv):
    project({})
    assert run_cli(*argv).code == 1


def test_help_exits_0(run_cli):
    assert run_cli("--help").code == 0


def test_adding_resize_says_the_size_not_the_defaults_it_records(project, run_cli):
    """`resize` added to an image said `~ fit: (unset) -> "cover"` and `~ resample:
    (unset) -> "lanczos"` beside the size, as if they were edits; a fit written is
    still said."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(SITE.replace("seed = 42\n", "seed = 42\nresize = [64, 32]\n", 1))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "  ~ hero  reencode  static/hero.webp\n      size changed\n" in out, out
    assert "fit" not in out and "resample" not in out, out
    manifest.write_text(
        manifest.read_text().replace("resize = [64, 32]\n", 'resize = [64, 32]\nfit = "contain"\n')
    )
    code, out, err = run_cli("plan")
    assert '~ fit: (unset) -> "contain"' in out and "resample" not in out, out


def test_a_width_no_variant_is_made_at_is_said_in_the_plan(project, run_cli):
    """`widths = [4000, 128]` on a 256-pixel image wrote the 128 one and dropped 4000
    without a word: variants are never upscaled, and the plan now says which."""
    root = project(
        {"images.toml": SITE.replace("seed = 42\n", "seed = 42\nwidths = [4000, 128]\n", 1)}
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "      note: widths 4000: no file, not narrower than the image (256 px; variants are "
        "never upscaled)\n"
    ) in out, out
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "static").glob("hero*")) == ["hero-128.webp", "hero.webp"]


def test_a_resize_that_enlarges_the_image_is_said_in_the_plan(project, run_cli):
    """`resize = [1024, 512]` of a 256x128 image upscaled it fourfold without a word."""
    project({"images.toml": SITE.replace("seed = 42\n", "seed = 42\nresize = [1024, 512]\n", 1)})
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "      note: resize = [1024, 512] enlarges the 256x128 image the model makes: more "
        "pixels, no more detail\n"
    ) in out, out
    assert out.count("enlarges") == 1  # the other images are not resized
