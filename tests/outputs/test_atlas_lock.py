"""An atlas moved or gone from the manifest takes the files its last build wrote with it,
as images.lock records them, and the plan names each; the lock is untrusted."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from tests.manifests import PREVIEW

HERO = (
    PREVIEW
    + """
[images.hero]
prompt = "a hero, {pose} pose"
matrix = { pose = ["idle", "run"] }
output = "sprites/hero-{pose}.png"

[images.coin]
prompt = "a coin"
output = "sprites/coin.png"

[atlases.hero]
images = ["hero[*]"]
output = "atlas/hero.png"
"""
)

ITEMS = """
[atlases.items]
images = ["coin"]
output = "game/items.png"
aseprite = "game/items.aseprite.json"
godot = "game/items.tres"
"""
ITEM_FILES = ["game/items.png", "game/items.aseprite.json", "game/items.json", "game/items.tres"]
ITEMS_REMOVED = f"removes {', '.join(ITEM_FILES)}"


def project_files(root) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".nebula-build" not in p.parts
    }


def applied(project, run_cli, manifest: str, **files: str):
    root = project({"images.toml": manifest, **files})
    code, _, err = run_cli("apply")
    assert code == 0, err
    return root


def test_a_moved_atlas_removes_its_old_files_with_the_rebuild(project, run_cli):
    """Before, `atlas/hero.png` and `atlas/hero.json` stayed, unnamed: an engine
    still imported them; and the plan called the moved atlas a `new atlas`, with the
    sign of a new file (`+`) rather than a move's (`>`)."""
    root = applied(project, run_cli, HERO)
    before = project_files(root)
    (root / "images.toml").write_text(HERO.replace('"atlas/hero.png"', '"assets/atlas/hero.png"'))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "> atlas hero  build  assets/atlas/hero.png\n      output moved from atlas/hero.png\n"
        in out
    ), out
    assert "      removes atlas/hero.png, atlas/hero.json, which it no longer writes\n" in out
    (atlas,) = json.loads(run_cli("plan", "--json").out)["files"]
    assert (atlas["action"], atlas["old_output"]) == ("build", "atlas/hero.png"), atlas
    code, out, err = run_cli("apply")
    assert code == 0, err
    built = "built atlas hero assets/atlas/hero.png; removed atlas/hero.png, atlas/hero.json\n"
    assert built in out + err and "1 atlas built (2 files), 2 files removed, 0 failed" in out
    moved = {"assets/atlas/hero.png", "assets/atlas/hero.json"}
    assert project_files(root) == before - {"atlas/hero.png", "atlas/hero.json"} | moved
    assert not (root / "atlas").exists()
    assert run_cli("plan").out.startswith("No changes")
    lock = (root / "images.lock").read_bytes()
    code, out, _ = run_cli("apply")
    assert code == 0 and out.startswith("No changes")
    assert (root / "images.lock").read_bytes() == lock


def test_a_deleted_atlas_removes_its_sheet_frame_map_and_exports(
    project, run_cli, monkeypatch, tmp_path
):
    """Before: `No changes`, and all four files stayed."""
    root = applied(project, run_cli, HERO + ITEMS)
    before = project_files(root)
    assert set(ITEM_FILES) <= before
    (root / "images.toml").write_text(HERO)

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run_cli("plan")
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert code == 0, err
    expected = (
        "  - atlas items  delete  game/items.png\n"
        "      removed from the manifest\n"
        f"      {ITEMS_REMOVED}\n"
    )
    assert expected in out, out
    assert "1 atlas to delete" in out
    assert f"| atlas items | delete | removed from the manifest; {ITEMS_REMOVED} |" in (
        summary.read_text()
    )
    files = json.loads(run_cli("plan", "--json").out)["files"]
    (atlas,) = (f for f in files if f.get("atlas") == "items")
    assert (atlas["action"], atlas["atlas"], atlas["removes"]) == ("delete", "items", ITEM_FILES)
    assert f"pending delete: removed from the manifest; {ITEMS_REMOVED}" in run_cli("status").out

    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "removed atlas items game/items.png" in out + err and "4 files removed" in out
    assert project_files(root) == before - set(ITEM_FILES)
    assert "atlases.items" not in (root / "images.lock").read_text()
    assert "atlases.hero" in (root / "images.lock").read_text()
    lock = (root / "images.lock").read_bytes()
    code, out, _ = run_cli("apply")
    assert code == 0 and out.startswith("No changes")
    assert (root / "images.lock").read_bytes() == lock


def test_an_old_sheet_edited_by_hand_is_kept_and_named(project, run_cli):
    root = applied(project, run_cli, HERO + ITEMS)
    sheet = root / "game/items.png"
    sheet.write_bytes(sheet.read_bytes() + b"edit")
    edited = sheet.read_bytes()
    (root / "images.toml").write_text(HERO)
    code, out, err = run_cli("plan")
    assert code == 0, err
    kept = "game/items.png stays (changed by hand since nebula-build wrote it, or not its file)"
    assert f"      removed from the manifest; {kept}\n" in out, out
    assert f"removes {', '.join(ITEM_FILES[1:])}\n" in out
    assert run_cli("apply", "--force").code == 0  # not even with --force
    assert sheet.read_bytes() == edited
    assert not any((root / path).exists() for path in ITEM_FILES[1:])
    assert run_cli("plan").out.startswith("No changes")  # the lock forgot the atlas


def test_a_moved_atlas_keeps_an_old_frame_map_edited_by_hand(project, run_cli):
    root = applied(project, run_cli, HERO)
    frames = root / "atlas/hero.json"
    frames.write_text(frames.read_text() + " ")
    (root / "images.toml").write_text(HERO.replace('"atlas/hero.png"', '"assets/hero.png"'))
    code, out, _ = run_cli("plan")
    assert "output moved from atlas/hero.png; atlas/hero.json stays (changed by hand" in out, out
    assert "removes atlas/hero.png, which it no longer writes" in out
    assert run_cli("apply").code == 0
    assert frames.is_file() and not (root / "atlas/hero.png").exists()


def test_a_deleted_atlas_waits_under_target_as_a_deleted_image_does(project, run_cli):
    root = applied(project, run_cli, HERO + ITEMS)
    (root / "images.toml").write_text(HERO.replace('"a coin"', '"a gold coin"'))
    code, out, err = run_cli("apply", "--target", "coin")
    assert code == 0, err
    assert all((root / path).is_file() for path in ITEM_FILES)
    assert "atlas items  delete" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert not any((root / path).exists() for path in ITEM_FILES)


def test_a_renamed_atlas_keeps_the_files_it_still_writes(project, run_cli):
    root = applied(project, run_cli, HERO)
    before = {path: (root / path).read_bytes() for path in project_files(root)}
    (root / "images.toml").write_text(HERO.replace("[atlases.hero]", "[atlases.heroes]"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    stay = "atlas/hero.png, atlas/hero.json stay (the manifest writes or reads them)"
    assert (
        f"  - atlas hero  delete  atlas/hero.png\n      removed from the manifest; {stay}\n" in out
    )
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "dropped atlas hero from the lock" in err + out
    after = {path: (root / path).read_bytes() for path in project_files(root)}
    ours = {"images.lock", "images.toml"}
    assert {p: d for p, d in after.items() if p not in ours} == {
        p: d for p, d in before.items() if p not in ours
    }
    assert "[atlases.heroes]" in after["images.lock"].decode()
    assert run_cli("plan").out.startswith("No changes")


def _with_atlas_record(root, table: str) -> None:
    """The lock as a pull request could send it: `table` before the images' tables."""
    lock = root / "images.lock"
    head, images = lock.read_text().split("\n[images.", 1)
    lock.write_text(f"{head}\n{table}\n[images.{images}")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            '{ "a/b.png" = "%s", "../outside.json" = "%s" }',
            "file '../outside.json' leaves the project",
        ),
        ('{ "a/b.png" = "%s", "notes.txt" = "%s" }', "file notes.txt is not a .json or .tres"),
        ('{ "a/b.png" = "%s", "images.toml" = "%s" }', "file images.toml is not a .json"),
        ('{ "a/b.png" = "nope" }', "file a/b.png must have a sha256 digest"),
    ],
    ids=["outside", "not-atlas-file", "manifest", "digest"],
)
def test_a_hostile_atlas_record_in_the_lock_is_refused_in_one_line(
    project, run_cli, files, message
):
    root = applied(project, run_cli, HERO)
    files = files.replace("%s", "0" * 64)
    _with_atlas_record(root, f'[atlases.evil]\noutput = "a/b.png"\nfiles = {files}\n')
    code, out, err = run_cli("plan")
    assert code == 1 and "Traceback" not in err
    assert f"images.lock: atlases.evil: {message}" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_lock_naming_files_it_must_not_remove_removes_none(project, run_cli):
    """Each file named with its true digest: another image's output, the asset
    manifest, a data file, a JSON file nebula-build did not write, the lock's own
    manifest under another atlas's name; none goes."""
    manifest = HERO + '\n[assets]\nmanifest = "assets.json"\n'
    root = applied(project, run_cli, manifest, **{"package.json": '{"name": "game"}'})
    victims = ["sprites/coin.png", "assets.json", "package.json"]
    named = ", ".join(f'"{path}" = "{_digest(root / path)}"' for path in victims)
    _with_atlas_record(
        root, f'[atlases.gone]\noutput = "sprites/coin.png"\nfiles = {{ {named} }}\n'
    )
    before = {path: (root / path).read_bytes() for path in project_files(root)}
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "atlas gone  delete" in out and "removes" not in out, out
    assert "sprites/coin.png, assets.json stay (the manifest writes or reads them)" in out
    assert "package.json stays (changed by hand since nebula-build wrote it, or not its" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert {path: (root / path).read_bytes() for path in before if path != "images.lock"} == {
        path: data for path, data in before.items() if path != "images.lock"
    }
    assert "atlases.gone" not in (root / "images.lock").read_text()


def test_a_lock_without_atlas_records_works_and_records_them_at_the_next_apply(project, run_cli):
    """A lock from before atlases were recorded: its atlas is up to date, and is
    recorded once an apply has something to do."""
    root = applied(project, run_cli, HERO)
    lock = root / "images.lock"
    head, images = lock.read_text().split("\n[images.", 1)
    lock.write_text(head.split("\n[atlases.", 1)[0] + "\n[images." + images)
    assert run_cli("plan").out.startswith("No changes")
    (root / "images.toml").write_text(HERO.replace('"a coin"', '"a gold coin"'))
    assert run_cli("apply").code == 0
    assert '[atlases.hero]\noutput = "atlas/hero.png"' in lock.read_text()


def test_a_fresh_checkout_removes_a_dropped_export_the_lock_records(project, run_cli):
    """Before, a checkout without this machine's cache (CI) kept a dropped export:
    `its file stays (… not written by this machine …)`."""
    import shutil

    root = applied(project, run_cli, HERO + ITEMS)
    shutil.rmtree(root / ".nebula-build")
    (root / "images.toml").write_text(HERO + ITEMS.replace('godot = "game/items.tres"\n', ""))
    code, out, err = run_cli("plan")
    assert code == 0, err
    expected = (
        "      export removed from the manifest\n"
        "      removes game/items.tres, which it no longer writes\n"
    )
    assert expected in out, out
    assert run_cli("apply").code == 0
    assert not (root / "game/items.tres").exists()
    assert (root / "game/items.aseprite.json").is_file()
    assert run_cli("plan").out.startswith("No changes")


ASSETS = HERO + '\n[assets]\nmanifest = "web/assets.json"\n'


def test_a_moved_asset_manifest_removes_the_old_file_with_the_new_build(project, run_cli):
    """Before, web/assets.json stayed beside the new one, listing the images still."""
    root = applied(project, run_cli, ASSETS)
    (root / "images.toml").write_text(ASSETS.replace("web/assets.json", "site/assets.json"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    expected = (
        "  + asset manifest  build  site/assets.json\n"
        "      missing\n"
        "      removes web/assets.json, which it no longer writes\n"
    )
    assert expected in out, out
    assert run_cli("apply").code == 0
    assert (root / "site/assets.json").is_file() and not (root / "web").exists()
    code, out, _ = run_cli("apply")
    assert code == 0 and out.startswith("No changes")


def test_a_dropped_asset_manifest_is_deleted_and_one_edited_by_hand_stays(project, run_cli):
    root = applied(project, run_cli, ASSETS)
    (root / "images.toml").write_text(HERO)
    code, out, err = run_cli("plan")
    assert code == 0, err
    expected = (
        "  - asset manifest  delete  web/assets.json\n"
        "      removed from the manifest\n"
        "      removes web/assets.json\n"
    )
    assert expected in out, out
    data = json.loads(run_cli("plan", "--json").out)["files"]
    assert {"action": "delete", "removes": ["web/assets.json"]}.items() <= data[-1].items()

    edited = root / "web/assets.json"
    edited.write_text(edited.read_text().replace('"version": 1', '"version": 1 '))
    code, out, _ = run_cli("plan")
    assert "removed from the manifest; web/assets.json stays (changed by hand" in out, out
    assert run_cli("apply").code == 0
    assert edited.is_file()
    assert "[assets]" not in (root / "images.lock").read_text()
    assert run_cli("plan").out.startswith("No changes")


def test_an_asset_manifest_record_outside_the_project_is_refused_in_one_line(project, run_cli):
    root = applied(project, run_cli, HERO)
    _with_atlas_record(root, f'[assets]\nmanifest = "../x.json"\ndigest = "{"0" * 64}"\n')
    code, _, err = run_cli("plan")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "images.lock: assets: `manifest` '../x.json' leaves the project" in err, err


def test_a_moved_sheet_rewrites_the_exports_that_stay_where_they_were(project, run_cli):
    """Before: the Aseprite export, which names the sheet, read as "not written by
    nebula-build" once the sheet moved (its frame map moved with it): a conflict."""
    root = applied(project, run_cli, HERO + ITEMS)
    moved = (HERO + ITEMS).replace('output = "game/items.png"', 'output = "game/sheets/items.png"')
    (root / "images.toml").write_text(moved)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "> atlas items  build  game/sheets/items.png\n      output moved from game/items.png\n"
        in out
    ), out
    assert "removes game/items.png, game/items.json, which it no longer writes" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    exported = json.loads((root / "game/items.aseprite.json").read_text())
    assert exported["meta"]["image"] == "sheets/items.png"
    assert not (root / "game/items.png").exists() and not (root / "game/items.json").exists()
    assert run_cli("plan").out.startswith("No changes")


def test_a_lock_vouches_for_no_file_nebula_build_did_not_write(project, run_cli):
    """A pull request names a JSON file of the project as an export and its lock says
    the atlas wrote it, digest and all: still a conflict, the file kept."""
    root = applied(project, run_cli, HERO + ITEMS, **{"config.json": '{"port": 8080}'})
    lock = root / "images.lock"
    exported = _digest(root / "game/items.aseprite.json")
    lock.write_text(
        lock.read_text().replace(
            f'"game/items.aseprite.json" = "{exported}"',
            f'"config.json" = "{_digest(root / "config.json")}"',
        )
    )
    hostile = (HERO + ITEMS).replace('"game/items.aseprite.json"', '"config.json"')
    (root / "images.toml").write_text(hostile.replace('"game/items.png"', '"game/s/items.png"'))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "! atlas items  conflict" in out and "config.json was not written by nebula-build" in out
    assert run_cli("apply").code == 1
    assert (root / "config.json").read_text() == '{"port": 8080}'


def test_an_atlas_a_member_left_says_which(project, run_cli):
    """Before: "a member changed", with no word of which (a row deleted, a value
    dropped from a matrix)."""
    root = applied(project, run_cli, HERO)
    (root / "images.toml").write_text(HERO.replace('["idle", "run"]', '["idle"]'))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "~ atlas hero  build  atlas/hero.png\n      hero[run] left\n" in out, out


def test_an_atlas_whose_members_failed_says_it_was_not_built(project, run_cli):
    """Before: the plan said "1 atlas to build" and apply said nothing of it."""
    failing = HERO.replace(
        'output = "sprites/hero-{pose}.png"\n',
        'output = "sprites/hero-{pose}.png"\nchecks = { max_kb = 0.1 }\n',
    )
    root = project({"images.toml": failing})
    code, out, err = run_cli("apply")
    assert code == 1
    assert "failed atlas hero: not built: hero[idle], hero[run] failed\n" in err, err
    assert "error: 2 images and 1 atlas failed:\n" in err
    assert not (root / "atlas").exists()


def test_an_atlas_whose_members_failed_again_says_it_keeps_its_last_build(project, run_cli):
    """Before: the plan said the atlas would be built with its members; their new
    generations failed, and apply said nothing of the atlas."""
    root = applied(project, run_cli, HERO)
    sheet = (root / "atlas/hero.png").read_bytes()
    failing = HERO.replace(
        'prompt = "a hero, {pose} pose"\n', 'prompt = "a hero, {pose}"\nchecks = { max_kb = 0.1 }\n'
    )
    (root / "images.toml").write_text(failing)
    assert "~ atlas hero  build" in run_cli("plan").out
    code, _, err = run_cli("apply")
    assert code == 1
    expected = "failed atlas hero: not rebuilt: hero[idle], hero[run] failed; the sheet keeps"
    assert expected in err, err
    assert (root / "atlas/hero.png").read_bytes() == sheet


def test_a_lock_naming_an_image_through_a_folder_link_removes_nothing(project, run_cli):
    """A pull request adds `alias` (a link to `sprites/`) and a record of a deleted
    atlas whose sheet is `alias/coin.png`, with coin's digest: another image's output
    by another name. Before, the plan said it goes and apply deleted sprites/coin.png."""
    root = applied(project, run_cli, HERO)
    (root / "alias").symlink_to("sprites", target_is_directory=True)
    coin = _digest(root / "sprites/coin.png")
    _with_atlas_record(
        root,
        f'[atlases.gone]\noutput = "alias/coin.png"\nfiles = {{ "alias/coin.png" = "{coin}" }}\n',
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "alias/coin.png stays (the manifest writes or reads it)" in out, out
    assert "removes" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert _digest(root / "sprites/coin.png") == coin
    assert "atlases.gone" not in (root / "images.lock").read_text()


def test_many_atlas_records_cost_one_look_at_the_manifest(project, run_cli, monkeypatch):
    """A lock holds up to 16 MiB of records: each record of a deleted atlas whose file
    is there worked out what the manifest claims again (20,000 records and 300 images
    took 37 s to plan). Now once a plan, however many records; counted, not timed."""
    from nebula_build.engine import derived

    root = applied(project, run_cli, HERO)
    (root / "hand.png").write_bytes((root / "sprites/coin.png").read_bytes() + b"x")
    hand = _digest(root / "hand.png")
    _with_atlas_record(
        root,
        "".join(
            f'[atlases.g{n}]\noutput = "hand.png"\nfiles = {{ "hand.png" = "{hand}" }}\n\n'
            for n in range(50)
        ),
    )
    looks = []
    claimed = derived._claimed
    monkeypatch.setattr(derived, "_claimed", lambda prepared: looks.append(1) or claimed(prepared))
    code, out, err = run_cli("plan")
    assert code == 0, err
    # a file drawn by hand, whatever the lock says: no record, no marker
    assert out.count("hand.png stays (changed by hand since nebula-build wrote it") == 50, out
    assert len(looks) == 1, len(looks)


def test_a_lock_naming_a_file_outside_through_a_link_plans_to_keep_it(project, run_cli, tmp_path):
    """A pull request adds `ext`, a link to a folder outside the project, and a record
    of a deleted atlas naming a sheet there with its digest. Before, plan said it
    goes and apply then failed on it (the guard refuses); now plan says it stays."""
    root = applied(project, run_cli, HERO)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes((root / "sprites/coin.png").read_bytes())
    (root / "ext").symlink_to(outside, target_is_directory=True)
    sheet = _digest(outside / "x.png")
    _with_atlas_record(
        root, f'[atlases.gone]\noutput = "ext/x.png"\nfiles = {{ "ext/x.png" = "{sheet}" }}\n'
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "ext/x.png stays (a link leads out of the project to it)" in out, out
    assert "removes" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (outside / "x.png").read_bytes() == (root / "sprites/coin.png").read_bytes()


def test_an_image_made_in_the_apply_is_not_removed_as_an_old_atlas_file(project, run_cli, tmp_path):
    """The plan cannot name a file that is not there yet: a record naming
    `alias/gem.png` (a link to `sprites/`) with the digest the new image `gem` will
    have made apply, which plans the atlases again once the images are written,
    remove gem's output though the plan never said so."""
    gem = '\n[images.gem]\nprompt = "a gem"\noutput = "sprites/gem.png"\n'
    made = applied(project, run_cli, HERO + gem)
    gem_digest = _digest(made / "sprites/gem.png")
    root = made.parent / "second"
    root.mkdir()
    (root / "images.toml").write_text(HERO)
    assert run_cli("apply", cwd=root).code == 0
    (root / "images.toml").write_text(HERO + gem)
    (root / "alias").symlink_to("sprites", target_is_directory=True)
    files = f'{{ "alias/gem.png" = "{gem_digest}" }}'
    _with_atlas_record(root, f'[atlases.gone]\noutput = "alias/gem.png"\nfiles = {files}\n')
    code, out, err = run_cli("plan")
    assert code == 0 and "atlas gone  delete" in out and "removes" not in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert _digest(root / "sprites/gem.png") == gem_digest, out


def _drawn_by_hand() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _sheet_record(atlas: str, sheet: str, digest: str) -> str:
    return f'[atlases.{atlas}]\noutput = "{sheet}"\nfiles = {{ "{sheet}" = "{digest}" }}\n'


def test_a_lock_atlas_record_naming_a_file_drawn_by_hand_as_its_sheet_never_deletes_it(
    project, run_cli
):
    """Before: `removes assets/logo.png`, and apply deleted the logo in a fresh checkout."""
    import shutil

    logo = _drawn_by_hand()
    root = applied(project, run_cli, HERO, **{"assets/logo.png": logo})
    digest = hashlib.sha256(logo).hexdigest()
    _with_atlas_record(root, _sheet_record("gone", "assets/logo.png", digest))
    shutil.rmtree(root / ".nebula-build")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "removes assets/logo.png" not in out, out
    assert "assets/logo.png stays (changed by hand since nebula-build wrote it, or not" in out
    assert run_cli("apply").code == 0
    assert (root / "assets/logo.png").read_bytes() == logo


def test_a_lock_atlas_record_naming_a_file_drawn_by_hand_keeps_a_build_from_it(project, run_cli):
    """Before: `new atlas`, and the build wrote its sheet over the logo, no copy kept;
    now the conflict it is without the lock's record."""
    import shutil

    logo = _drawn_by_hand()
    root = applied(project, run_cli, HERO, **{"assets/logo.png": logo})
    digest = hashlib.sha256(logo).hexdigest()
    (root / "images.toml").write_text(
        HERO + '\n[atlases.items]\nimages = ["coin"]\noutput = "assets/logo.png"\n'
    )
    _with_atlas_record(root, _sheet_record("items", "assets/logo.png", digest))
    shutil.rmtree(root / ".nebula-build")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "assets/logo.png exists and was not written by nebula-build" in out, out
    assert run_cli("apply").code == 1
    assert (root / "assets/logo.png").read_bytes() == logo


def test_a_frame_map_path_over_a_file_nebula_build_did_not_write_is_a_conflict(project, run_cli):
    """Before: `new atlas`, and the build wrote its frame map over config.json."""
    root = applied(project, run_cli, HERO, **{"config.json": '{"port": 8080}'})
    (root / "images.toml").write_text(
        HERO
        + '\n[atlases.items]\nimages = ["coin"]\noutput = "game/items.png"\n'
        + 'frames = "config.json"\n'
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "! atlas items  conflict" in out, out
    assert "config.json exists and was not written by nebula-build" in out
    assert run_cli("apply").code == 1
    assert (root / "config.json").read_text() == '{"port": 8080}'
    assert run_cli("apply", "--force").code == 0
    backups = list((root / ".nebula-build/backup").rglob("config.json"))
    assert [p.read_text() for p in backups] == ['{"port": 8080}']


def test_a_fresh_checkout_removes_and_rebuilds_atlases_as_before(project, run_cli):
    """A sheet nebula-build built carries its record, as an image does: in a fresh
    checkout it goes with its atlas, and is rebuilt without a copy."""
    import shutil

    root = applied(project, run_cli, HERO + ITEMS)
    shutil.rmtree(root / ".nebula-build")
    (root / "images.toml").write_text(HERO.replace('"a coin"', '"a gold coin"') + ITEMS)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "backup" not in out, out
    assert run_cli("apply").code == 0
    assert not (root / ".nebula-build/backup").exists()
    shutil.rmtree(root / ".nebula-build")
    (root / "images.toml").write_text(HERO)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"      {ITEMS_REMOVED}\n" in out, out
    assert run_cli("apply").code == 0
    assert not any((root / path).exists() for path in ITEM_FILES)


def test_a_frame_map_naming_a_file_drawn_by_hand_as_its_sheet_has_it_backed_up(project, run_cli):
    """A pull request commits a frame map whose record gives the logo's digest as the
    sheet's: the build still happens, after a copy."""
    logo = _drawn_by_hand()
    record = {"digest": hashlib.sha256(logo).hexdigest(), "key": "0" * 64}
    frames = json.dumps({"frames": {}, "meta": {"app": "nebula-build", "nebula_build": record}})
    root = applied(project, run_cli, HERO, **{"assets/logo.png": logo, "assets/logo.json": frames})
    (root / "images.toml").write_text(
        HERO + '\n[atlases.items]\nimages = ["coin"]\noutput = "assets/logo.png"\n'
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    kept = "(assets/logo.png does not carry the record nebula-build writes into the files it makes)"
    assert kept in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    backups = list((root / ".nebula-build/backup").rglob("logo.png"))
    assert [p.read_bytes() for p in backups] == [logo]


#: a SpriteFrames resource as the Godot editor saves it: drawn by hand, not exported
GODOT_BY_HAND = """\
[gd_resource type="SpriteFrames" load_steps=3 format=3 uid="uid://b8k3xq2m1a0cd"]

[ext_resource type="Texture2D" uid="uid://c1y7wq" path="res://art/walk.png" id="1_k2v8p"]

[sub_resource type="AtlasTexture" id="AtlasTexture_x1"]
atlas = ExtResource("1_k2v8p")
region = Rect2(0, 0, 32, 32)

[resource]
animations = [{
"frames": [{
"duration": 1.0,
"texture": SubResource("AtlasTexture_x1")
}],
"loop": true,
"name": &"walk",
"speed": 8.0
}]
"""


def test_a_lock_naming_a_godot_resource_made_in_the_editor_does_not_remove_it(project, run_cli):
    """Any SpriteFrames resource had read as an export of nebula-build's: a lock's
    record of a removed atlas that named one, by its digest, had apply delete it."""
    root = applied(project, run_cli, HERO, **{"game/player.tres": GODOT_BY_HAND})
    digest = _digest(root / "game/player.tres")
    named = f'"atlas/gone.png" = "{"0" * 64}", "game/player.tres" = "{digest}"'
    _with_atlas_record(root, f'[atlases.gone]\noutput = "atlas/gone.png"\nfiles = {{ {named} }}\n')
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "removes" not in out, out  # had been "removes game/player.tres"
    assert "game/player.tres stays (changed by hand since nebula-build wrote it" in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "game/player.tres").read_text() == GODOT_BY_HAND


def test_a_lock_naming_a_godot_resource_made_in_the_editor_has_no_build_over_it(project, run_cli):
    """An atlas exporting to it, vouched for by a lock's record of its digest, had
    overwritten it with no conflict and no copy ("new atlas")."""
    root = applied(project, run_cli, HERO, **{"game/player.tres": GODOT_BY_HAND})
    atlas = '\n[atlases.items]\nimages = ["coin"]\noutput = "game/items.png"\n'
    (root / "images.toml").write_text(HERO + atlas + 'godot = "game/player.tres"\n')
    digest = _digest(root / "game/player.tres")
    named = f'"game/items.png" = "{"0" * 64}", "game/player.tres" = "{digest}"'
    _with_atlas_record(root, f'[atlases.items]\noutput = "game/items.png"\nfiles = {{ {named} }}\n')
    code, out, err = run_cli("apply")
    assert code == 1, out
    assert "game/player.tres was not written by nebula-build, or changed by hand since" in err
    assert (root / "game/player.tres").read_text() == GODOT_BY_HAND


def test_a_member_changed_by_hand_does_not_fail_its_atlas(project, run_cli):
    """Before: the plan said the atlas was up to date, and apply (and each watch round)
    said 'failed atlas hero: not rebuilt: hero[idle] failed; the sheet keeps its last
    build' beside the member's conflict, and counted the atlas as failed. Now the atlas
    waits for the member, as the plan says, and its sheet stays as built."""
    root = applied(project, run_cli, HERO)
    sheet = (root / "atlas/hero.png").read_bytes()
    (root / "sprites/hero-idle.png").write_bytes(b"drawn by hand")
    code, out, _ = run_cli("plan")
    assert "! hero[idle]  conflict" in out, out
    assert (
        "atlas hero  waiting  atlas/hero.png\n      waiting for hero[idle] (changed by hand)" in out
    )
    code, out, err = run_cli("apply")
    assert code == 1
    assert "output file changed by hand" in err, err
    assert "failed atlas" not in out + err, out + err
    assert "0 done (0 generated), 1 failed." in out, out
    assert (root / "atlas/hero.png").read_bytes() == sheet
