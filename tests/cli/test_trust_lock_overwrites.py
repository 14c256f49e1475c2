"""A lock entry does not vouch for the file it names: a pull request's lock that records
a committed, hand-drawn logo by its digest as an image's output still has apply make
the image there (a regeneration in CI must not need --force), but the logo is copied
under .nebula-build/backup/ first, and every surface of the plan says so. A normal
project, in a fresh clone or not, plans and applies as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.test_trust_lock_files import (
    A,
    crafted_entry,
    drawn_by_hand,
    fresh_checkout,
    manifest,
    sha,
)

LOGO = '[images.logo]\nprompt = "a fox logo"\noutput = "assets/logo.png"\n'
KEPT = "(assets/logo.png does not carry the record nebula-build writes into the files it makes)"
A_COPY_IS_KEPT = "the current file is backed up (.nebula-build/backup/), then replaced"


def backups(root: Path) -> dict[str, bytes]:
    """The files apply backed up, by their path in the project."""
    folder = root / ".nebula-build/backup"
    if not folder.exists():
        return {}
    return {
        "/".join(path.relative_to(folder).parts[1:]): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def logo_claimed_by_the_lock(project, run_cli, key: str = "ab" * 32) -> tuple[Path, bytes]:
    """A project whose lock (a pull request's) records the committed logo as the output
    of `logo`, a newly declared image, in a fresh checkout."""
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A), "assets/logo.png": logo})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + crafted_entry("logo", "assets/logo.png", sha(logo), key))
    (root / "images.toml").write_text(manifest(A, LOGO))
    fresh_checkout(root)
    return root, logo


def test_a_lock_entry_naming_a_file_drawn_by_hand_has_it_backed_up_before_it_is_replaced(
    project, run_cli
):
    root, logo = logo_claimed_by_the_lock(project, run_cli)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "regenerate  assets/logo.png" in out
    assert KEPT in out
    assert "the current file is backed up (.nebula-build/backup/), then replaced" in out
    code, out, err = run_cli("plan", "--json")
    (action,) = [a for a in json.loads(out)["actions"] if a["image"] == "logo"]
    assert KEPT in action["reason"] and action["backup"] is True
    code, out, err = run_cli("plan", "--markdown", str(root.parent / "plan.md"))
    assert code == 0, err
    markdown = (root.parent / "plan.md").read_text()
    assert KEPT in markdown and A_COPY_IS_KEPT in markdown
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert KEPT in out
    assert "1 replaced file backed up in .nebula-build/backup/" in out + err
    assert backups(root) == {"assets/logo.png": logo}
    assert (root / "assets/logo.png").read_bytes() != logo
    assert run_cli("plan").out.startswith("No changes")


def test_a_lock_entry_whose_keys_match_still_has_a_file_drawn_by_hand_backed_up(project, run_cli):
    """The keys are the manifest's (anyone can compute them): --replace, an edit of the
    prompt, a placeholder made again, all go through the same test."""
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A, LOGO)})
    assert run_cli("apply").code == 0
    (root / "assets/logo.png").write_bytes(logo)
    lock = root / "images.lock"
    text = lock.read_text()
    entry = text[text.index("[images.logo]") :]
    digest = next(line for line in entry.splitlines() if line.startswith("digest = "))
    lock.write_text(text.replace(digest, f'digest = "{sha(logo)}"'))
    fresh_checkout(root)
    assert run_cli("plan").out.startswith("No changes")  # nothing is written over it
    code, out, err = run_cli("plan", "--replace", "logo")
    assert code == 0, err
    assert KEPT in out
    code, out, err = run_cli("apply", "--replace", "logo")
    assert code == 0, err
    assert backups(root) == {"assets/logo.png": logo}


def test_an_undeclared_image_s_entry_naming_a_file_drawn_by_hand_does_not_hand_it_over(
    project, run_cli
):
    """The lock names the logo as the file of an image no longer declared: a new image
    writing there would take it over as a rename does."""
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A), "assets/logo.png": logo})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + crafted_entry("old", "assets/logo.png", sha(logo)))
    (root / "images.toml").write_text(manifest(A, LOGO))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert KEPT in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert backups(root) == {"assets/logo.png": logo}


@pytest.mark.parametrize("fresh", [False, True], ids=["same-checkout", "fresh-clone"])
@pytest.mark.parametrize("options", ["", "widths = [16, 32]"], ids=["plain", "variants"])
@pytest.mark.parametrize("ext", ["png", "webp", "jpg", "avif"])
def test_a_normal_project_regenerates_its_own_files_without_a_backup(
    project, run_cli, fresh, options, ext
):
    b = f'[images.b]\nprompt = "a boat"\noutput = "out/b.{ext}"\n{options}\n'
    root = project({"images.toml": manifest(A, b)})
    assert run_cli("apply").code == 0
    if fresh:
        fresh_checkout(root)
        assert run_cli("plan").out.startswith("No changes")
    (root / "images.toml").write_text(manifest(A, b.replace("a boat", "a red boat")))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "regenerate  out/b." in out
    assert "backed up" not in out
    assert A_COPY_IS_KEPT not in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "backed up" not in out + err
    assert backups(root) == {}
    assert run_cli("plan").out.startswith("No changes")


def test_a_file_written_without_metadata_is_replaced_without_a_backup_where_it_was_written(
    project, run_cli
):
    b = '[images.b]\nprompt = "a boat"\noutput = "out/b.webp"\nmetadata = false\n'
    root = project({"images.toml": manifest(A, b)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(A, b.replace("a boat", "a red boat")))
    code, out, err = run_cli("plan")
    assert "backed up" not in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert backups(root) == {}


def test_a_file_written_without_metadata_is_replaced_in_a_fresh_clone_after_a_copy(
    project, run_cli
):
    """Nothing tells it from a file drawn by hand there: no conflict, no --force, but a
    copy, and the plan says why in words that name the option."""
    b = '[images.b]\nprompt = "a boat"\noutput = "out/b.webp"\nmetadata = false\n'
    root = project({"images.toml": manifest(A, b)})
    assert run_cli("apply").code == 0
    before = (root / "out/b.webp").read_bytes()
    fresh_checkout(root)
    assert run_cli("plan").out.startswith("No changes")
    (root / "images.toml").write_text(manifest(A, b.replace("a boat", "a red boat")))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "regenerate  out/b.webp" in out
    assert (
        "(out/b.webp carries no record of what wrote it (metadata = false), and this "
        "checkout did not write it)"
    ) in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert backups(root) == {"out/b.webp": before}
    assert run_cli("plan").out.startswith("No changes")


def test_force_over_another_manifest_s_file_backs_it_up_and_says_whose_it_is(project, run_cli):
    b = '[images.b]\nprompt = "a boat"\noutput = "out/b.png"\n'
    root = project({"images.toml": manifest(A), "other.toml": manifest(b)})
    assert run_cli("-f", "other.toml", "apply").code == 0
    theirs = (root / "out/b.png").read_bytes()
    (root / "images.toml").write_text(manifest(A, b.replace("a boat", "a ship")))
    code, out, err = run_cli("plan")
    assert "the file in the way is another manifest's (other.lock records it as b's)" in out
    whose = "(out/b.png is another manifest's (other.lock records it as b's))"
    code, out, err = run_cli("plan", "--force")
    assert code == 0, err
    assert whose in out
    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    assert whose in out
    assert backups(root) == {"out/b.png": theirs}


def test_an_entry_copied_from_another_manifest_s_lock_has_its_file_backed_up(project, run_cli):
    """The file carries nebula-build's record, for the output key the entry names: only
    the other lock says it is not this manifest's."""
    b = '[images.b]\nprompt = "a boat"\noutput = "out/b.png"\n'
    root = project({"images.toml": manifest(A), "other.toml": manifest(b)})
    assert run_cli("apply").code == 0
    assert run_cli("-f", "other.toml", "apply").code == 0
    theirs = (root / "out/b.png").read_bytes()
    other = (root / "other.lock").read_text()
    copied = other[other.index("[images.b]") :]
    (root / "images.lock").write_text((root / "images.lock").read_text() + "\n" + copied)
    (root / "images.toml").write_text(manifest(A, b.replace("a boat", "a ship")))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert ("(out/b.png is another manifest's (other.lock records it as b's))") in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert backups(root) == {"out/b.png": theirs}


def test_no_copy_is_kept_where_the_plan_writes_nothing(project, run_cli):
    root, logo = logo_claimed_by_the_lock(project, run_cli)
    shutil.rmtree(root / "assets")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert A_COPY_IS_KEPT not in out
    assert "backed up" not in out
