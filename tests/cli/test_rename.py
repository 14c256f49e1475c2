"""Renaming an image (`[images.mob]` → `[images.monster]`, a data file's id column)
through the CLI on the offline preview backend: the new name takes over the file, its
history, its draws and its pin; nothing is generated, `gc` keeps the earlier originals,
and the plan says a rename, not a creation and a deletion."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from nebula_build.plugin import FLUX_FILL
from tests.cli.test_rows_matrix import preview
from tests.conftest import fake_manifest, generation_log
from tests.core.test_chains import mask

MOB = {"prompt": "one", "output": "o/mob.png", "seed": 7}


def _edit(root, old, new):
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace(old, new))


def _lock(root):
    return tomllib.loads((root / "images.lock").read_text())["images"]


def test_a_renamed_image_keeps_its_history_and_gc_its_earlier_original(project, run_cli):
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    _edit(root, '"one"', '"two"')
    assert run_cli("apply").code == 0
    earlier = _lock(root)["mob"]["history"]
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert code == 2, err  # the lock changes
    assert "  > monster  rename  o/mob.png\n      renamed from mob (the file already holds" in out
    assert "mob  delete" not in out
    assert "Plan: 0 to generate, 1 renamed, 0 to delete." in out
    code, out, err = run_cli("plan", "--json")
    actions = {a["image"]: a for a in json.loads(out)["actions"]}
    assert (actions["monster"]["action"], actions["monster"]["renamed_from"]) == ("create", "mob")
    assert (actions["mob"]["action"], actions["mob"]["renamed_to"]) == ("delete", "monster")
    assert not actions["monster"]["generates"]

    code, _, err = run_cli("apply")
    assert code == 0, err
    assert "renamed monster o/mob.png (was mob: the file already held it)" in err
    assert _lock(root)["monster"]["history"] == earlier
    code, out, err = run_cli("history", "monster")
    assert code == 0, err
    assert "monster (o/mob.png): 1 earlier generation" in out
    assert "prompt: [-one-] {+two+}" in out
    code, out, err = run_cli("gc", "--dry-run")
    assert code == 0, err
    assert "would remove 0 cache entries" in out
    assert "kept 1 generation `pick @K` brings back" in out
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_rename_with_a_new_prompt_keeps_the_old_output_as_an_earlier_one(project, run_cli):
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    before = _lock(root)["mob"]
    _edit(root, "[images.mob]", "[images.monster]")
    _edit(root, '"one"', '"two"')

    code, out, err = run_cli("plan")
    # the image goes on under its new name: its output made again ("+ create" read as new)
    assert "  ~ monster  regenerate  o/mob.png\n      renamed from mob; prompt changed\n" in out
    assert '~ prompt: "one" -> "two"' in out
    assert "Plan: 1 to generate, 1 renamed, 0 to delete." in out
    assert run_cli("apply").code == 0
    history = _lock(root)["monster"]["history"]
    assert [(h["generation_key"], h["digest"]) for h in history] == [
        (before["generation_key"], before["digest"])
    ]
    code, out, err = run_cli("gc", "--dry-run")
    assert "would remove 0 cache entries" in out, out


def test_a_renamed_image_keeps_its_draws_and_its_pick(project, run_cli):
    root = project({"images.toml": preview({"mob": {**MOB, "candidates": 3}})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "mob", "2").code == 0
    picked = (root / "o/mob.png").read_bytes()
    draws = _lock(root)["mob"]["draws"]
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("plan")
    assert "Plan: 0 to generate, 1 renamed, 0 to delete." in out, out
    assert run_cli("apply").code == 0
    assert (root / "o/mob.png").read_bytes() == picked
    entry = _lock(root)["monster"]
    assert (entry["draws"], entry["params"]["draw"]) == (draws, 2)
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_renamed_pinned_image_stays_pinned(project, run_cli):
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    first = (root / "o/mob.png").read_bytes()
    _edit(root, '"one"', '"two"')
    assert run_cli("apply").code == 0
    assert run_cli("pick", "--pin", "mob", "@1").code == 0
    assert (root / "o/mob.png").read_bytes() == first
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("plan")
    assert "Plan: 0 to generate, 1 renamed, 0 to delete." in out, out
    assert run_cli("apply").code == 0
    assert (root / "o/mob.png").read_bytes() == first
    assert _lock(root)["monster"]["pinned_against"]
    code, out, err = run_cli("pick", "--unpin", "monster")
    assert code == 0, err
    assert (root / "o/mob.png").read_bytes() != first


ROWS = {
    "prompt": "a {name}",
    "rows": "data/mobs.csv",
    "id": "id",
    "output": "o/{id}.png",
    "seed": 3,
}
CSV = "id,name\nred-bat,red bat\nslime,green slime\n"


def test_a_renamed_row_declaration_keeps_each_row_image_history(project, run_cli):
    root = project({"images.toml": preview({"mob": ROWS}), "data/mobs.csv": CSV})
    assert run_cli("apply").code == 0
    _edit(root, 'a {name}"', 'the {name}"')
    assert run_cli("apply").code == 0
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "  > monster[red-bat]  rename  o/red-bat.png\n" in out
    assert "Plan: 0 to generate, 2 renamed, 0 to delete." in out
    assert run_cli("apply").code == 0
    code, out, err = run_cli("history", "monster[red-bat]")
    assert "1 earlier generation" in out, out + err
    code, out, err = run_cli("gc", "--dry-run")
    assert "would remove 0 cache entries" in out, out


def _chain() -> dict[str, dict[str, object]]:
    """mob[red-slime] → its cap (@mob[red-slime]) → the cap's badge (@mob-cap)."""
    fill = {"model": FLUX_FILL, "mask": "mask.png"}
    return {
        "mob": {"prompt": "a {name}", "rows": "data/mobs.csv", "id": "id", "output": "o/{id}.png"},
        "mob-cap": {**fill, "prompt": "a cap", "image": "@mob[red-slime]", "output": "o/cap.png"},
        "badge": {**fill, "prompt": "a badge", "image": "@mob-cap", "output": "o/badge.png"},
    }


def _renamed_upstream(manifest: str) -> str:
    return manifest.replace("[images.mob]", "[images.monster]").replace(
        '"@mob[red-slime]"', '"@monster[red-slime]"'
    )


SLIMES = "id,name\nred-slime,red slime\n"


def test_renaming_an_upstream_generates_none_of_the_images_chained_from_it(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    manifest = fake_manifest(log, _chain())
    root = project({"images.toml": manifest, "mask.png": mask(), "data/mobs.csv": SLIMES})
    assert run_cli("apply").code == 0
    assert generation_log(log) == ["mob[red-slime]", "mob-cap", "badge"]
    (root / "images.toml").write_text(_renamed_upstream(manifest))

    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "Plan: 0 to generate, 1 renamed, 0 to delete, 2 up to date." in out, out
    assert "mob-cap" not in out and "badge" not in out
    assert run_cli("apply").code == 0
    assert generation_log(log) == ["mob[red-slime]", "mob-cap", "badge"]  # nothing more
    assert run_cli("plan", "--detailed-exitcode").code == 0
    # an edit of the upstream still reaches every image chained from it
    (root / "data/mobs.csv").write_text(SLIMES.replace("red slime", "blue slime"))
    assert run_cli("apply").code == 0
    assert generation_log(log)[3:] == ["monster[red-slime]", "mob-cap", "badge"]


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_lock_written_before_renames_were_recognised_still_plans_no_changes(
    project, run_cli, fake_site, tmp_path
):
    """The lock of this chain as nebula-build 0c72fdf wrote it (a committed fixture; its
    digests and `made_with` since the fake plugin's images record its version, its keys
    as they were): its keys name the upstream; it plans no change, and a rename then
    makes nothing."""
    log = tmp_path / "log"
    manifest = fake_manifest(log, _chain())
    root = project({"images.toml": manifest, "mask.png": mask(), "data/mobs.csv": SLIMES})
    assert run_cli("apply").code == 0
    before = (FIXTURES / "chain-before-renames.lock").read_text()
    assert before == (root / "images.lock").read_text()  # the same files, the same keys
    (root / "images.lock").write_text(before)
    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert (code, out) == (0, "No changes: 3 images up to date.\n"), err
    (root / "images.toml").write_text(_renamed_upstream(manifest))
    assert run_cli("apply").code == 0
    assert generation_log(log) == ["mob[red-slime]", "mob-cap", "badge"]


def test_a_rename_refused_for_a_hand_edited_file_keeps_the_old_entry_and_its_history(
    project, run_cli
):
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    _edit(root, '"one"', '"two"')
    assert run_cli("apply").code == 0
    earlier = _lock(root)["mob"]["history"]
    (root / "o/mob.png").write_bytes(b"edited by hand")
    _edit(root, "[images.mob]", "[images.monster]")

    code, _, err = run_cli("apply")
    assert code == 1
    assert "  monster: o/mob.png: output file changed by hand" in err
    assert "  mob: skipped: kept in the lock with its history until monster" in err
    assert _lock(root)["mob"]["history"] == earlier
    code, out, err = run_cli("gc", "--dry-run")
    assert "would remove 0 cache entries" in out, out + err
    code, out, err = run_cli("plan")
    assert "with --force: update (renamed from mob) (from cache, no generation)" in out, out + err
    assert run_cli("apply", "--force").code == 0
    assert _lock(root)["monster"]["history"] == earlier


def test_a_failed_rename_is_counted_once_as_the_plan_counts_it(project, run_cli):
    """The new name's failure is the image's; its old name, kept in the lock, is said
    with it but not counted again."""
    for command in (("apply",), ("apply", "--json"), ("watch", "--once")):
        root = project({"images.toml": preview({"mob": MOB})})
        assert run_cli("apply").code == 0
        (root / "o/mob.png").write_bytes(b"edited by hand")
        _edit(root, "[images.mob]", "[images.monster]")

        code, out, err = run_cli(*command)
        assert code == 1, out + err
        assert "error: 1 image failed:\n" in err, err
        assert "  mob: skipped: kept in the lock with its history until monster" in err
        if "--json" in command:
            assert json.loads(out)["failed"] == ["monster"]
        elif "watch" in command:
            assert "round 1: 0 done (0 generated), 1 in conflict in " in out, out
        else:
            assert ": 0 done (0 generated), 1 failed." in out, out
        code, out, err = run_cli("status")
        assert "Status: 1 image in conflict; 1 image failed in the last apply." in out, out + err
        for leftover in (root / "images.lock", root / ".nebula-build", root / "o"):
            _remove(leftover)


def test_a_renamed_row_declaration_is_counted_once_as_the_plan_counts_it(project, run_cli):
    """Each image renamed is one change, as the plan says "3 renamed": the old names
    dropped from the lock are neither counted nor said again."""
    csv = CSV + "bat,bat\n"
    for command in (("apply",), ("apply", "--json"), ("watch", "--once")):
        root = project({"images.toml": preview({"mob": ROWS}), "data/mobs.csv": csv})
        assert run_cli("apply").code == 0
        _edit(root, "[images.mob]", "[images.monster]")
        assert "Plan: 0 to generate, 3 renamed, 0 to delete." in run_cli("plan").out

        assert "Status: 3 images pending." in run_cli("status").out

        code, out, err = run_cli(*command)
        assert code == 0, err
        said = out + err
        renamed = re.findall(r"^\[(\d)/3\] renamed monster\[\S+\] o/\S+ \(was mob\[", said, re.M)
        assert sorted(renamed) == ([] if "--json" in command else ["1", "2", "3"]), said
        assert "/6]" not in said and "dropped mob" not in said, said
        if "--json" in command:
            applied = json.loads(out)
            assert (applied["done"], applied["summary"]["renamed"]) == (3, 3)
        elif "watch" in command:
            assert "round 1: 3 done (0 generated) in " in out, out
        else:
            assert "Apply finished in " in out and ": 3 done (0 generated), 0 failed." in out
        assert set(_lock(root)) == {"monster[bat]", "monster[red-bat]", "monster[slime]"}
        for leftover in (root / "images.lock", root / ".nebula-build", root / "o"):
            _remove(leftover)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


TWO = {"a": {**MOB, "output": "o/a.png", "seed": 1}, "b": {**MOB, "prompt": "two", "seed": 2}}


def test_swapped_names_keep_both_files(project, run_cli):
    """`[images.a]` and `[images.b]` swap names, each output staying where it was: each
    image takes the other's file as it is; neither removes the file the other takes
    (both failed 'o/a.png disappeared during the apply', with both files deleted)."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    files = {path: (root / path).read_bytes() for path in ("o/a.png", "o/mob.png")}
    _edit(root, "[images.a]", "[images.x]")
    _edit(root, "[images.b]", "[images.a]")
    _edit(root, "[images.x]", "[images.b]")

    code, out, err = run_cli("plan")
    assert "removes" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert {path: (root / path).read_bytes() for path in files} == files
    assert (_lock(root)["a"]["output"], _lock(root)["b"]["output"]) == ("o/mob.png", "o/a.png")
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_an_output_moved_away_from_a_file_another_image_takes_is_copied(project, run_cli):
    """a moves to o/c.png while b, edited to a's spec, takes o/a.png as it is: a copies
    the file, which stays b's (a moved it away and b failed, its own file removed)."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    first = (root / "o/a.png").read_bytes()
    _edit(root, '"o/a.png"', '"o/c.png"')
    _edit(root, '"o/mob.png"', '"o/a.png"')
    _edit(root, '"two"', '"one"')
    _edit(root, "seed = 2", "seed = 1")

    code, out, err = run_cli("plan")
    assert "  > a  move  o/c.png\n      output copied from o/a.png, now b's\n" in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert (root / "o/a.png").read_bytes() == (root / "o/c.png").read_bytes() == first
    assert run_cli("plan", "--detailed-exitcode").code == 0


def _swap(root, *names):
    """Each name takes the next one's declaration (a → b → … → a), outputs staying put."""
    for i, name in enumerate(names):
        _edit(root, f"[images.{name}]", f"[images.{i}-swapped]")
    for i in range(len(names)):
        _edit(root, f"[images.{i}-swapped]", f"[images.{names[(i + 1) % len(names)]}]")


def test_swapped_names_each_keep_the_history_and_pin_of_their_file(project, run_cli):
    """a and b swap names: each is the other renamed, its history and pin following
    the file (a's pin made b fail 'the file in the way is a's output', and a took the
    history of o/a.png to o/b.png)."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    pinned = (root / "o/a.png").read_bytes()
    _edit(root, '"one"', '"uno"')
    _edit(root, '"two"', '"dos"')
    assert run_cli("apply").code == 0
    assert run_cli("pick", "--pin", "a", "@1").code == 0
    before = _lock(root)
    _swap(root, "a", "b")

    code, out, err = run_cli("plan")
    assert "  > b  rename  o/a.png\n      renamed from a (the file already holds" in out, out
    assert "  > a  rename  o/mob.png\n      renamed from b (the file already holds" in out
    assert "Plan: 0 to generate, 2 renamed, 0 to delete." in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert ": 2 done (0 generated), 0 failed." in out, out
    assert (root / "o/a.png").read_bytes() == pinned
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "a")):
        assert after[new]["history"] == before[old]["history"]
        assert after[new].get("pinned_against") == before[old].get("pinned_against")
    code, out, err = run_cli("history", "b")
    assert "b (o/a.png): 1 earlier generation, the last one replaced first · pinned" in out
    assert "Status: 2 images up to date." in run_cli("status").out
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_rename_cycle_keeps_each_file_with_its_history(project, run_cli):
    images = {**TWO, "c": {**MOB, "prompt": "three", "output": "o/c.png", "seed": 3}}
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    for old, new in (("one", "uno"), ("two", "dos"), ("three", "tres")):
        _edit(root, f'"{old}"', f'"{new}"')
    assert run_cli("apply").code == 0
    before = _lock(root)
    _swap(root, "a", "b", "c")

    code, out, err = run_cli("plan")
    assert "Plan: 0 to generate, 3 renamed, 0 to delete." in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert ": 3 done (0 generated), 0 failed." in out, out
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "c"), ("c", "a")):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_two_lock_entries_claiming_a_renamed_output_are_refused(project, run_cli):
    """A forged lock records o/mob.png for mob and for zz: which one monster is renamed
    from (its pin, its draws) would hang on the lock's order; it is refused."""
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    (root / "images.lock").write_text(
        lock + lock[lock.index("\n[images.mob]") :].replace("[images.mob]", "[images.zz]")
    )
    _edit(root, "[images.mob]", "[images.monster]")
    for command in ("plan", "apply", "status"):
        code, out, err = run_cli(command)
        assert code == 1, out + err
        assert err == (
            "error: images.lock: images.mob and images.zz both record o/mob.png, which "
            "images.monster now writes: which one it is renamed from is unclear; restore "
            "the lock from version control or delete the entry that is not its\n"
        ), err
    assert (root / "o/mob.png").exists()


def test_a_name_renamed_away_removes_the_file_of_the_image_it_replaced(project, run_cli):
    """b is deleted and a renamed to b: b's old file, which no image takes over, is
    removed and the plan says so (it was left on disk, untracked, said nowhere)."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    text = manifest.read_text()
    manifest.write_text(text[: text.index("[images.b]")])
    _edit(root, "[images.a]", "[images.b]")

    code, out, err = run_cli("plan")
    assert "  > b  rename  o/a.png\n      renamed from a (the file already holds" in out, out
    assert "      removes o/mob.png, which it no longer writes\n" in out, out
    code, out, err = run_cli("plan", "--json")
    actions = {a["image"]: a for a in json.loads(out)["actions"]}
    assert (actions["b"]["renamed_from"], actions["b"]["removes"]) == ("a", ["o/mob.png"])
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert not (root / "o/mob.png").exists()
    assert (root / "o/a.png").exists()
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_swap_with_one_side_in_conflict_keeps_both_entries(project, run_cli):
    """a and b swap names while b's file was edited by hand: a is in conflict, so b
    keeps its entry too (b took a's entry over its own, b's history lost to gc and
    both entries recording o/a.png); --force then renames both."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    _edit(root, '"one"', '"uno"')
    _edit(root, '"two"', '"dos"')
    assert run_cli("apply").code == 0
    before = _lock(root)
    (root / "o/mob.png").write_bytes(b"edited by hand")
    _swap(root, "a", "b")

    code, out, err = run_cli("plan")
    assert (
        "  ! b  conflict  o/a.png\n      renamed from a, but a, which takes over its file "
        "o/mob.png, is in conflict: b keeps its entry until both can be renamed\n"
    ) in out, out
    assert "Plan: 0 to generate, 0 to delete, 2 in conflict." in out, out
    for command in (("apply",), ("watch", "--once")):
        code, out, err = run_cli(*command)
        assert code == 1, out + err
        assert _lock(root) == before
    code, out, err = run_cli("gc", "--dry-run")
    assert "would remove 0 cache entries" in out, out + err
    assert "kept 2 generations `pick @K` brings back" in out, out

    code, out, err = run_cli("apply", "--force")
    assert code == 0, out + err
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "a")):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )


def test_targeting_one_side_of_a_swap_takes_the_other_along(project, run_cli):
    """a and b swap names, b's file edited by hand: the plan's hint suggested
    `--force --target b`, which renamed b alone, over its own entry (its history and
    pin lost, two entries recording o/a.png); --target b now takes a along."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    _edit(root, '"one"', '"uno"')
    _edit(root, '"two"', '"dos"')
    assert run_cli("apply").code == 0
    assert run_cli("pick", "--pin", "b", "@1").code == 0
    before = _lock(root)
    (root / "o/mob.png").write_bytes(b"edited by hand")
    _swap(root, "a", "b")

    code, out, err = run_cli("plan")
    assert "--target" not in out, out
    assert "`nebula-build apply --force` replaces them" in out, out
    code, out, err = run_cli("plan", "--target", "b")
    assert "  ! a  conflict  o/mob.png\n" in out, out
    assert "note: taken along with b: names that take over each other's entries" in out, out
    code, out, err = run_cli("apply", "--target", "b")
    assert code == 1, out + err
    assert _lock(root) == before

    code, out, err = run_cli("apply", "--force", "--target", "b")
    assert code == 0, out + err
    assert ": 2 done (0 generated), 0 failed." in out, out
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "a")):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )
        assert after[new].get("pinned_against") == before[old].get("pinned_against")
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_targeting_one_name_of_a_rename_cycle_renames_the_whole_cycle(project, run_cli):
    images = {**TWO, "c": {**MOB, "prompt": "three", "output": "o/c.png", "seed": 3}}
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    before = _lock(root)
    _swap(root, "a", "b", "c")

    code, out, err = run_cli("apply", "--target", "c")
    assert code == 0, out + err
    assert ": 3 done (0 generated), 0 failed." in out, out
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "c"), ("c", "a")):
        assert after[new]["output"] == before[old]["output"]
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_an_upstream_renamed_with_its_chained_image_edited_is_no_input_change(project, run_cli):
    """mob is renamed monster while b, which takes its output, gets a new prompt: its
    input is the same output under another name (the plan and history said
    `image: @mob (output e97a…) -> @monster (output e97a…)` as a change)."""
    cap = {"model": FLUX_FILL, "mask": "mask.png", "prompt": "a cap", "output": "o/b.png"}
    images = {"mob": MOB, "b": {**cap, "image": "@mob"}}
    root = project({"images.toml": preview(images), "mask.png": mask()})
    assert run_cli("apply").code == 0
    _edit(root, "[images.mob]", "[images.monster]")
    _edit(root, '"@mob"', '"@monster"')
    _edit(root, '"a cap"', '"a hat"')

    code, out, err = run_cli("plan")
    assert "  ~ b  regenerate  o/b.png\n      prompt changed\n" in out, out
    assert "image:" not in out, out
    code, out, err = run_cli("plan", "--json")
    actions = {a["image"]: a for a in json.loads(out)["actions"]}
    assert [c["field"] for c in actions["b"]["changes"]] == ["prompt"]
    assert run_cli("apply").code == 0
    code, out, err = run_cli("history", "b")
    assert code == 0, err
    assert "prompt: a [-cap-] {+hat+}" in out, out
    assert "image:" not in out, out


def _forget_generation(root, name):
    """Delete `name`'s output and the cache entry of its generation: made again."""
    entry = _lock(root)[name]
    (root / entry["output"]).unlink()
    key = entry["generation_key"]
    for path in (root / ".nebula-build/cache" / key[:2]).glob(f"{key}*"):
        path.unlink()


THREE = {**TWO, "c": {**MOB, "prompt": "three", "output": "o/c.png", "seed": 3}}


def _applied_twice(project, run_cli, log, images):
    """`images` on the fake backend, each with one earlier generation."""
    root = project({"images.toml": fake_manifest(log, images)})
    assert run_cli("apply").code == 0
    for old, new in (("one", "uno"), ("two", "dos"), ("three", "tres")):
        _edit(root, f'"{old}"', f'"{new}"')
    assert run_cli("apply").code == 0
    return root


@pytest.mark.parametrize("names", [("a", "b"), ("a", "b", "c")], ids=["swap", "cycle"])
def test_a_swap_whose_generating_side_fails_keeps_every_entry(
    project, run_cli, fake_site, tmp_path, names
):
    """a and b swap names (or a, b, c cycle); b, taking over a's entry, must generate
    (o/a.png and its cache entry gone) and fails: the others, which take over an entry
    as it is, wait for it and are kept back, so the lock keeps every entry and the next
    apply retries the swap (a took b's entry over its own: a's history lost, a and b
    both recording o/mob.png)."""
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, {name: THREE[name] for name in names})
    before = _lock(root)
    _forget_generation(root, "a")
    _swap(root, *names)
    _edit(root, "fail = []", 'fail = ["b"]')

    code, out, err = run_cli("plan")
    assert "  ~ b  regenerate  o/a.png\n      renamed from a" in out, out
    assert f"  > a  rename  {before[names[-1]]['output']}\n" in out, out
    code, out, err = run_cli("apply")
    assert code == 1, out + err
    assert "[1/" in err and "failed b: b refused on purpose" in err, err
    assert "error: 1 image failed:\n" in err and "\n  b: b refused on purpose\n" in err, err
    for name in set(names) - {"b"}:
        assert (
            f"  {name}: skipped: kept in the lock with its history until b is made: names "
            "that take over each other's entries (swapped, renamed round a cycle"
        ) in err, err
    assert ": 0 done (0 generated), 1 failed." in out, out
    assert _lock(root) == before
    code, out, err = run_cli("watch", "--once")
    assert code == 1, out + err
    assert "round 1: 0 done (0 generated), 1 failed" in out + err, out + err
    assert _lock(root) == before
    code, out, err = run_cli("history", "a")
    assert code == 0, err
    assert "a (o/a.png): 1 earlier generation" in out, out

    _edit(root, 'fail = ["b"]', "fail = []")
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert f": {len(names)} done (1 generated), 0 failed." in out, out
    after = _lock(root)
    for old, new in zip(names, (*names[1:], names[0]), strict=True):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_swap_with_a_generating_side_renames_both_in_one_apply(
    project, run_cli, fake_site, tmp_path
):
    """b, taking over a's entry, generates; a, taking over b's as it is, waits for it:
    both are renamed in one apply, each with its history."""
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, TWO)
    before = _lock(root)
    _forget_generation(root, "a")
    _swap(root, "a", "b")

    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert ": 2 done (1 generated), 0 failed." in out, out
    assert generation_log(log)[4:] == ["b"]
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "a")):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_plain_swap_on_a_paid_backend_renames_both_and_generates_nothing(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, TWO)
    before = _lock(root)
    _swap(root, "a", "b")

    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert ": 2 done (0 generated), 0 failed." in out, out
    assert len(generation_log(log)) == 4
    after = _lock(root)
    for old, new in (("a", "b"), ("b", "a")):
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        )


def test_targeting_a_renamed_image_drops_its_old_name(project, run_cli):
    """`apply --target monster` renamed mob to monster but left mob in the lock, both
    recording o/mob.png: the next rename was refused as a forged lock
    (`images.mob and images.monster both record o/mob.png`)."""
    root = project({"images.toml": preview({"mob": MOB})})
    assert run_cli("apply").code == 0
    before = _lock(root)["mob"]
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("apply", "--target", "monster")
    assert code == 0, out + err
    assert _lock(root) == {"monster": before}
    assert run_cli("plan", "--detailed-exitcode").code == 0
    _edit(root, "[images.monster]", "[images.beast]")
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert _lock(root) == {"beast": before}


def test_targeting_the_end_of_a_rename_chain_drops_the_name_it_started_from(project, run_cli):
    """a gone, b takes a's declaration, new c takes b's: `--target c` took b along but
    left a in the lock beside b, both recording o/a.png."""
    images = {"a": {**MOB, "output": "o/a.png"}, "b": {**MOB, "prompt": "two", "seed": 2}}
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    before = _lock(root)
    (root / "images.toml").write_text(preview({"b": images["a"], "c": images["b"]}))

    code, out, err = run_cli("plan", "--target", "c")
    assert (
        "  > b  rename  o/a.png\n      renamed from a (the file already holds this output)\n"
        "      note: taken along with c: names that take over each other's entries (swapped, "
        "renamed round a cycle or along a chain) are renamed together"
    ) in out, out
    code, out, err = run_cli("apply", "--target", "c")
    assert code == 0, out + err
    assert _lock(root) == {"b": before["a"], "c": before["b"]}
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_name_taking_over_the_entry_of_one_in_conflict_along_a_chain_waits(project, run_cli):
    """a gone, b takes a's declaration (a's file edited by hand: b in conflict), new c
    takes b's: c copied b's entry while b kept it, both recording o/b.png, and the
    next rename was refused as a forged lock."""
    images = {"a": {**MOB, "output": "o/a.png"}, "b": {**MOB, "prompt": "two", "seed": 2}}
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    before = _lock(root)
    (root / "o/a.png").write_bytes(b"edited by hand")
    (root / "images.toml").write_text(preview({"b": images["a"], "c": images["b"]}))

    code, out, err = run_cli("plan")
    assert (
        "  ! c  conflict  o/mob.png\n      renamed from b, but b is in conflict and keeps its "
        "entry: c takes it over once b can be renamed\n"
    ) in out, out
    assert run_cli("apply").code == 1
    assert _lock(root) == before
    (root / "images.toml").write_text(preview({"b": images["a"], "d": images["b"]}))
    assert run_cli("plan").code == 0
    code, out, err = run_cli("apply", "--force")
    assert code == 0, out + err
    after = _lock(root)
    assert sorted(after) == ["b", "d"]
    assert after["d"] == before["b"]
    assert after["b"]["output"] == before["a"]["output"]
    assert run_cli("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(
    ("forgotten", "failing", "kept_back"),
    [("b", "c", "b"), ("a", "b", "c")],
    ids=["end-generates", "middle-generates"],
)
def test_a_rename_chain_whose_generating_name_fails_keeps_every_entry(
    project, run_cli, fake_site, tmp_path, forgotten, failing, kept_back
):
    """a gone, b takes a's declaration, new c takes b's; the name taking over
    `forgotten`'s entry must generate (its file and cache entry gone) and fails: the
    other, taking over an entry as it is, waits for it and is kept back. Renamed, b
    lost its own entry and history (the end failing), or c copied b's entry while b
    kept it, both recording o/mob.png, and the next rename was refused as a forged
    lock (the middle failing)."""
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, TWO)
    before = _lock(root)
    _forget_generation(root, forgotten)
    _edit(root, "[images.b]", "[images.c]")
    _edit(root, "[images.a]", "[images.b]")
    _edit(root, "fail = []", f'fail = ["{failing}"]')

    code, out, err = run_cli("apply")
    assert code == 1, out + err
    assert f"failed {failing}: {failing} refused on purpose" in err, err
    assert f"  {kept_back}: skipped: kept in the lock with its history until {failing}" in err
    assert ": 0 done (0 generated), 1 failed." in out, out
    assert _lock(root) == before
    code, out, err = run_cli("watch", "--once")
    assert code == 1, out + err
    assert "0 done (0 generated), 1 failed" in out + err, out + err
    assert _lock(root) == before
    code, out, err = run_cli("history", "b")
    assert code == 0, err
    assert "b (o/mob.png): 1 earlier generation" in out, out

    _edit(root, f'fail = ["{failing}"]', "fail = []")
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    after = _lock(root)
    assert set(after) == {"b", "c"}, after
    assert (after["c"]["output"], after["c"]["history"]) == (
        before["b"]["output"],
        before["b"]["history"],
    )
    assert (after["b"]["output"], after["b"]["history"]) == (
        before["a"]["output"],
        before["a"]["history"],
    )
    assert run_cli("plan", "--detailed-exitcode").code == 0


def _outputs_recorded_once(lock):
    outputs = [entry["output"] for entry in lock.values()]
    assert len(outputs) == len(set(outputs)), lock


@pytest.mark.parametrize(
    ("names", "failing"),
    [(("a", "b"), ("b",)), (("a", "b", "c"), ("b",)), (("a", "b", "c"), ("a", "b"))],
    ids=["swap", "cycle", "cycle-two-failing"],
)
def test_a_swap_where_every_name_generates_and_one_fails_loses_no_entry(
    project, run_cli, fake_site, tmp_path, names, failing
):
    """a and b swap names (or a, b, c cycle) and every name must generate (files and
    cache entries gone); b fails: the names that were made recorded their new entries,
    and b takes over the entry it was to take over as it was, so each earlier entry,
    with its history, lives on under one name (a's entry was lost, a and b both
    recording o/mob.png)."""
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, {name: THREE[name] for name in names})
    before = _lock(root)
    for name in names:
        _forget_generation(root, name)
    _swap(root, *names)
    _edit(root, "fail = []", f"fail = {json.dumps(list(failing))}")
    takes = dict(zip(names, (*names[1:], names[0]), strict=True))  # old name -> new name

    code, out, err = run_cli("apply")
    assert code == 1, out + err
    made = len(names) - len(failing)
    assert f": {made} done ({made} generated), {len(failing)} failed." in out, out
    after = _lock(root)
    _outputs_recorded_once(after)
    for old, new in takes.items():
        assert (after[new]["output"], after[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        ), (old, new, after)
        if new in failing:
            assert after[new] == before[old], (old, new)
            assert f"{new}: took over {old}'s entry as it was" in out + err, out + err
    for name in names:
        code, out, err = run_cli("history", name)
        assert code == 0, err

    _edit(root, f"fail = {json.dumps(list(failing))}", "fail = []")
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert f": {len(failing)} done ({len(failing)} generated), 0 failed." in out, out
    final = _lock(root)
    for old, new in takes.items():
        assert (final[new]["output"], final[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        ), (old, new, final)
    assert run_cli("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("failing", ["b", "c"])
def test_a_rename_chain_where_both_names_generate_and_one_fails_loses_no_entry(
    project, run_cli, fake_site, tmp_path, failing
):
    """a gone, b takes a's declaration, new c takes b's, both generating; one fails:
    no output is recorded by two names and each earlier entry lives on under one name."""
    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, TWO)
    before = _lock(root)
    for name in ("a", "b"):
        _forget_generation(root, name)
    _edit(root, "[images.b]", "[images.c]")
    _edit(root, "[images.a]", "[images.b]")
    _edit(root, "fail = []", f'fail = ["{failing}"]')

    code, out, err = run_cli("apply")
    assert code == 1, out + err
    after = _lock(root)
    _outputs_recorded_once(after)
    histories = sorted(json.dumps(entry["history"][:1]) for entry in after.values())
    assert histories == sorted(json.dumps(entry["history"][:1]) for entry in before.values())

    _edit(root, f'fail = ["{failing}"]', "fail = []")
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    final = _lock(root)
    assert set(final) == {"b", "c"}, final
    for old, new in (("a", "b"), ("b", "c")):
        assert (final[new]["output"], final[new]["history"]) == (
            before[old]["output"],
            before[old]["history"],
        ), (old, new, final)
    assert run_cli("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("metadata", [True, False], ids=["record", "metadata-false"])
def test_a_rename_in_a_fresh_checkout_generates_nothing(project, run_cli, metadata):
    """No `.nebula-build/` (a fresh CI checkout: no cache, no index of outputs
    written): the lock records the file the old name made, which holds those bytes, so
    the new name takes it as it is (was: '+ monster create', a generation paid for a
    rename, and with `metadata = false` a backup of the file it then wrote over)."""
    root = project({"images.toml": preview({"mob": {**MOB, "metadata": metadata}})})
    assert run_cli("apply").code == 0
    before = _lock(root)["mob"]
    shutil.rmtree(root / ".nebula-build")
    _edit(root, "[images.mob]", "[images.monster]")

    code, out, err = run_cli("plan")
    assert "  > monster  rename  o/mob.png\n      renamed from mob (the file already" in out, out
    assert "Plan: 0 to generate, 1 renamed, 0 to delete." in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert "(0 generated)" in out, out
    assert _lock(root) == {"monster": before}
    assert not (root / ".nebula-build/backup").exists()


@pytest.mark.parametrize("names", [("a", "b"), ("a", "b", "c")], ids=["swap", "cycle"])
def test_a_swap_after_deleting_the_state_folder_is_still_renames(project, run_cli, names):
    """With `.nebula-build/` deleted (its caches and the index of outputs written: a
    fresh CI checkout), the lock's record shows each file is the output its new name
    takes over: a swap or cycle is renamed, each file keeping its history (was: a
    conflict for each name, 'the file in the way is a's output: move one image at a
    time'). A file edited by hand is still a conflict."""
    root = project({"images.toml": preview({name: THREE[name] for name in names})})
    assert run_cli("apply").code == 0
    before = _lock(root)
    shutil.rmtree(root / ".nebula-build")
    _swap(root, *names)

    code, out, err = run_cli("plan")
    assert code == 0, out + err
    assert f"Plan: 0 to generate, {len(names)} renamed, 0 to delete." in out, out
    assert "conflict" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    after = _lock(root)
    for old, new in zip(names, (*names[1:], names[0]), strict=True):
        kept = ("output", "digest", "generation_key", "history")
        assert [after[new].get(k) for k in kept] == [before[old].get(k) for k in kept]
    assert run_cli("plan", "--detailed-exitcode").code == 0

    shutil.rmtree(root / ".nebula-build")
    (root / "o/a.png").write_bytes(b"edited by hand")
    _swap(root, *names)
    code, out, err = run_cli("plan")
    assert "conflict" in out, out


def test_a_name_renamed_onto_a_deleted_one_says_its_hand_edited_file_stays(project, run_cli):
    """b deleted, a renamed to b: b's old file, edited by hand since it was made, stays,
    and the plan says so (was: kept without a word, untracked)."""
    images = {"a": {**MOB, "output": "o/a.png"}, "b": {**MOB, "prompt": "two", "seed": 2}}
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    (root / "o/mob.png").write_bytes(b"edited by hand")
    (root / "images.toml").write_text(preview({"b": images["a"]}))

    code, out, err = run_cli("plan")
    assert (
        "  > b  rename  o/a.png\n      renamed from a (the file already holds this output)\n"
        "      keeps o/mob.png: changed by hand since it was made\n"
    ) in out, out
    code, out, err = run_cli("plan", "--json")
    (action,) = [a for a in json.loads(out)["actions"] if a["image"] == "b"]
    assert action["stays"] == ["o/mob.png"], action
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert (root / "o/mob.png").read_bytes() == b"edited by hand"
    assert set(_lock(root)) == {"b"}
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_outputs_swapped_between_two_images_are_not_said_to_be_edited(project, run_cli):
    """a and b trade outputs: each file in the way is the other's output, which no one
    edited; the plan's advice said "Files changed by hand are kept … to keep an edit"."""
    root = project({"images.toml": preview(TWO)})
    assert run_cli("apply").code == 0
    _edit(root, '"o/a.png"', '"o/x.png"')
    _edit(root, '"o/mob.png"', '"o/a.png"')
    _edit(root, '"o/x.png"', '"o/mob.png"')
    code, out, _ = run_cli("plan")
    assert code == 0
    assert "the file in the way is b's output: move one image at a time" in out
    assert "Files in the way are kept: `nebula-build apply --force` replaces them" in out
    assert "changed by hand" not in out and "edit" not in out
