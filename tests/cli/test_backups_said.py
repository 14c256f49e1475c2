"""Every form of the plan says which files apply copies under .nebula-build/backup/
before it replaces them: the text, `--json` (`"backup"`), `--markdown` and the job
summary; the reason says why (--force, or nothing vouches for the file)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re

from tests.cli.test_cli_flow import SITE
from tests.cli.test_earlier_outputs import HERO, _rounds
from tests.live.scripted import running_watch
from tests.outputs.test_atlas_lock import HERO as SPRITES

BACKED_UP = "the current file is backed up (.nebula-build/backup/), then replaced"
#: what a file --force replaced was said to be, whatever the reason for its copy
FORCED = "--force: the current file is backed up, then replaced"


def _put_back_from_git(project, run_cli):
    """A project whose hero holds an output nebula-build wrote for an earlier prompt:
    apply restores the lock's after a copy, no --force needed."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    committed = (root / "images.lock").read_text()
    _rounds(root, run_cli, "a flying cat, blue")
    (root / "images.lock").write_text(committed)
    return root


def _hand_edited_sprites(project, run_cli):
    """The coin and the hero atlas's sheet, each changed by hand."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    (root / "sprites/coin.png").write_bytes(b"drawn by hand")
    (root / "atlas/hero.png").write_bytes(b"drawn by hand")
    return root


def _sheet_only_its_frame_map_vouches_for(project, run_cli) -> None:
    """A new atlas whose sheet is a logo drawn by hand, which a committed frame map
    records as its sheet: the build goes ahead after a copy, no --force needed."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    logo = buffer.getvalue()
    record = {"digest": hashlib.sha256(logo).hexdigest(), "key": "0" * 64}
    frames = json.dumps({"frames": {}, "meta": {"app": "nebula-build", "nebula_build": record}})
    root = project({"images.toml": SPRITES, "assets/logo.png": logo, "assets/logo.json": frames})
    assert run_cli("apply").code == 0
    atlas = '\n[atlases.items]\nimages = ["coin"]\noutput = "assets/logo.png"\n'
    (root / "images.toml").write_text(SPRITES + atlas)


def test_plan_json_says_which_files_are_backed_up(project, run_cli):
    """Before: no field said so; only the text plan did."""
    _put_back_from_git(project, run_cli)
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    actions = {a["image"]: a for a in json.loads(out)["actions"]}
    assert actions["hero"]["action"] == "restore" and actions["hero"]["backup"] is True
    assert actions["logo"]["backup"] is False


def test_plan_json_says_what_force_backs_up(project, run_cli):
    _hand_edited_sprites(project, run_cli)
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    data = json.loads(out)
    coin = next(a for a in data["actions"] if a["image"] == "coin")
    assert coin["action"] == "conflict" and coin["backup"] is False
    assert coin["with_force"]["backup"] is True
    atlas = next(f for f in data["files"] if f["name"] == "atlas hero")
    assert atlas["action"] == "conflict" and atlas["backup"] is False
    code, out, err = run_cli("plan", "--force", "--json")
    assert code == 0, err
    data = json.loads(out)
    coin = next(a for a in data["actions"] if a["image"] == "coin")
    assert coin["action"] == "restore" and coin["backup"] is True
    atlas = next(f for f in data["files"] if f["name"] == "atlas hero")
    assert atlas["action"] == "build" and atlas["backup"] is True


def test_markdown_says_a_file_is_backed_up_where_the_text_plan_does(project, run_cli, tmp_path):
    """Before: the reason cell was "output file holds another output nebula-build
    wrote, not this one", with no word of the copy the text plan announced."""
    _put_back_from_git(project, run_cli)
    code, out, err = run_cli("plan", "--markdown", str(tmp_path / "plan.md"))
    assert code == 0, err
    assert BACKED_UP in out
    rows = (tmp_path / "plan.md").read_text().splitlines()
    (row,) = [line for line in rows if "| hero |" in line]
    assert f"not this one; {BACKED_UP}" in row, row


def test_markdown_says_what_force_backs_up(project, run_cli, tmp_path):
    _hand_edited_sprites(project, run_cli)
    code, out, err = run_cli("plan", "--force", "--markdown", str(tmp_path / "plan.md"))
    assert code == 0, err
    rows = (tmp_path / "plan.md").read_text().splitlines()
    (coin,) = [line for line in rows if "| coin |" in line]
    (atlas,) = [line for line in rows if "| atlas hero |" in line]
    assert BACKED_UP in coin and BACKED_UP in atlas, rows


def test_markdown_does_not_say_a_copy_twice(project, run_cli, tmp_path):
    """A reason that says a copy is kept already says it once."""
    _sheet_only_its_frame_map_vouches_for(project, run_cli)
    code, out, err = run_cli("plan", "--markdown", str(tmp_path / "plan.md"))
    assert code == 0, err
    (row,) = [line for line in (tmp_path / "plan.md").read_text().splitlines() if "items" in line]
    assert row.count(".nebula-build/backup/") == 1, row


def test_a_file_backed_up_without_force_is_not_said_to_be_by_force(project, run_cli):
    """A sheet only its frame map vouches for is backed up with no --force given.
    Before: "--force: the current file is backed up, then replaced" under it."""
    _sheet_only_its_frame_map_vouches_for(project, run_cli)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "--force" not in out, out
    assert f"makes)\n      {BACKED_UP}\n" in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "--force" not in out, out


def test_under_force_a_file_nothing_vouches_for_is_not_said_to_be_backed_up_by_force(
    project, run_cli, tmp_path
):
    """The sheet is backed up because nothing shows nebula-build wrote it, --force or
    not. Before, under --force: "--force: the current file is backed up, then replaced"."""
    _sheet_only_its_frame_map_vouches_for(project, run_cli)
    code, out, err = run_cli("plan", "--force", "--markdown", str(tmp_path / "plan.md"))
    assert code == 0, err
    assert "--force" not in out, out
    assert f"makes)\n      {BACKED_UP}\n" in out, out
    (row,) = [line for line in (tmp_path / "plan.md").read_text().splitlines() if "items" in line]
    assert "--force" not in row and BACKED_UP in row, row


def test_a_file_force_replaces_says_force_is_why_and_where_the_copy_goes(project, run_cli):
    """Images and files alike: the reason says --force is why, the line under it where
    the copy goes (it had said "--force: the current file is backed up, then replaced",
    naming no folder, under a file, and the folder under an image)."""
    _hand_edited_sprites(project, run_cli)
    code, out, err = run_cli("plan", "--force")
    assert code == 0, err
    assert f"atlas/hero.png changed by hand; --force overwrites it\n      {BACKED_UP}\n" in out
    assert f"overwrite the hand-edited file\n      {BACKED_UP}\n" in out, out
    assert FORCED not in out
    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    assert FORCED not in out and BACKED_UP in out


def test_an_unchanged_project_backs_nothing_up(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.replace(HERO, "a flying cat, blue", 1))
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert not any(a["backup"] for a in data["actions"]) and not any(
        f["backup"] for f in data["files"]
    )


def test_apply_json_names_each_copy_and_its_folder(project, run_cli):
    """Before: only the text said where the copies went ("1 replaced file backed up in
    .nebula-build/backup/<stamp>/"); --json had `"backup": true` and no path."""
    root = _put_back_from_git(project, run_cli)
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    (backup,) = json.loads(out)["backups"]
    assert backup["file"] == "static/hero.webp"
    assert re.fullmatch(r"\.nebula-build/backup/\d{8}T\d{6}Z/", backup["folder"]), backup
    assert backup["copy"] == backup["folder"] + "static/hero.webp"
    assert (root / backup["copy"]).is_file()
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    assert json.loads(out)["backups"] == []


def test_watch_names_the_folder_a_round_copied_files_into(project, run_cli):
    """Before: the round said "1 done (0 generated)" and no word of the copy."""
    root = _put_back_from_git(project, run_cli)

    async def scenario() -> str:
        async with running_watch(root) as (script, out, _):
            await script.next_round()
            return out.getvalue()

    said = asyncio.run(scenario())
    (copy,) = (root / ".nebula-build/backup").rglob("hero.webp")
    folder = copy.relative_to(root).parents[1].as_posix()
    assert f"round 1: 1 replaced file backed up in {folder}/\n" in said, said
