"""A lock never removes or moves away a file the lock of another manifest in the folder
records: a pull request's `images.lock` entry copied from `other.lock` names a file
nebula-build really wrote, record and all, but it is other.toml's to remove."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.manifests import PREVIEW

A = '[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
B = '[images.b]\nprompt = "a boat"\noutput = "out/b.png"\n'
STAYS = "out/b.png stays: other.lock records it as b's"


def manifest(*blocks: str) -> str:
    return PREVIEW + "".join(f"\n{block}" for block in blocks)


def two_manifests(project, run_cli, a: str = A, b: str = B) -> Path:
    """images.toml (image a) and other.toml (image b) in one folder, both applied."""
    root = project({"images.toml": manifest(a), "other.toml": manifest(b)})
    assert run_cli("apply").code == 0
    assert run_cli("-f", "other.toml", "apply").code == 0
    return root


def fresh_checkout(root: Path) -> None:
    """What a CI job starts from: the committed files, none of the tool's state."""
    shutil.rmtree(root / ".nebula-build")


def recorded(lock: str, key: str) -> str:
    found = re.search(rf'^{key} = "([^"]*)"$', lock, re.MULTILINE)
    assert found is not None
    return found[1]


def with_b_recorded_for_a(root: Path, *keys: str) -> None:
    """images.lock's entry of a names b's output (and these of b's keys) as its own."""
    lock, other = root / "images.lock", (root / "other.lock").read_text()
    text = lock.read_text()
    for key in ("output", "digest", *keys):
        text = text.replace(recorded(text, key), recorded(other, key))
    lock.write_text(text)


def test_an_entry_copied_from_another_manifests_lock_never_deletes_its_file(project, run_cli):
    root = two_manifests(project, run_cli)
    b = (root / "out/b.png").read_bytes()
    copied = (root / "other.lock").read_text().partition("[images.b]")[2]
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]" + copied)
    fresh_checkout(root)
    code, out, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 0, err
    assert f"removed from the manifest; {STAYS}" in out
    assert STAYS in (root / "plan.md").read_text()
    plan = json.loads(run_cli("plan", "--json").out)
    deleted = next(action for action in plan["actions"] if action["image"] == "zz")
    assert STAYS in deleted["reason"]
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/b.png").read_bytes() == b
    assert "[images.zz]" not in lock.read_text()
    assert run_cli("plan").out.startswith("No changes")
    assert run_cli("-f", "other.toml", "plan").out.startswith("No changes")


def test_an_old_output_another_manifests_lock_records_stays_beside_a_regenerate(project, run_cli):
    root = two_manifests(project, run_cli)
    b = (root / "out/b.png").read_bytes()
    with_b_recorded_for_a(root, "output_key")
    fresh_checkout(root)
    (root / "out/a.png").unlink()  # outputs made in CI, not committed
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "keeps out/b.png: other.lock records it as b's" in out
    plan = json.loads(run_cli("plan", "--json").out)
    action = next(action for action in plan["actions"] if action["image"] == "a")
    assert action["stays_because"] == {"out/b.png": "other.lock records it as b's"}
    assert "removes" not in action
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/b.png").read_bytes() == b
    assert (root / "out/a.png").exists()


def test_an_output_another_manifests_lock_records_is_copied_not_moved(project, run_cli):
    same = B.replace("[images.b]", "[images.a]")  # one spec, two outputs: one output key
    root = two_manifests(project, run_cli, a=same.replace("out/b.png", "out/a.png"), b=same)
    b = (root / "out/b.png").read_bytes()
    with_b_recorded_for_a(root)
    fresh_checkout(root)
    (root / "out/a.png").unlink()
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "output copied from out/b.png, which stays: other.lock records it as a's" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/b.png").read_bytes() == b
    assert (root / "out/a.png").read_bytes() == b
    assert run_cli("-f", "other.toml", "plan").out.startswith("No changes")


def test_a_conflicted_lock_beside_protects_the_files_of_both_its_sides(project, run_cli):
    root = two_manifests(project, run_cli)
    other = root / "other.lock"
    head, _, table = other.read_text().partition("[images.b]\n")
    other.write_text(  # one side records b, the other side nothing
        f"{head}<<<<<<< HEAD\n=======\n[images.b]\n{table}>>>>>>> branch\n"
    )
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]\n" + table)
    fresh_checkout(root)
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert STAYS in out + err
    assert (root / "out/b.png").exists()


@pytest.mark.parametrize(
    "beside", [{}, {"Cargo.toml": "[package]\n", "Cargo.lock": "version = 3\n"}], ids=["", "cargo"]
)
def test_an_image_really_removed_is_still_deleted_beside_another_manifest(project, run_cli, beside):
    root = two_manifests(project, run_cli, a=A + "\n" + B.replace("b", "c"))
    for name, text in beside.items():
        (root / name).write_text(text)
    (root / "images.toml").write_text(manifest(A))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "stays" not in out
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "out").iterdir()) == ["a.png", "b.png"]


def test_a_plan_that_removes_nothing_reads_no_other_lock(project, run_cli, monkeypatch):
    root = two_manifests(project, run_cli)
    (root / "images.toml").write_text(manifest(A, B.replace("b", "c")))

    def refused(project: object) -> dict[str, str]:
        raise AssertionError("another manifest's lock was read")

    monkeypatch.setattr("nebula_build.state.siblings._recorded_beside", refused)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "new image" in out


ATLAS = """
[images.c]
prompt = "a coat"
output = "out/c.png"

[atlases.boats]
images = ["b", "c"]
output = "sheets/boats.png"
godot = "sheets/boats.tres"
"""


def with_records_copied(root: Path, table: str, name: str | None = None) -> None:
    """images.lock gains other.lock's record of the files made from its images."""
    other = (root / "other.lock").read_text()
    copied = other[other.index(f"[{table}") : other.index("[images.")]
    if name is not None:
        copied = copied.replace(f"[{table}]", f"[{name}]")
    lock = root / "images.lock"
    text = lock.read_text()
    at = text.index("[images.a]")
    lock.write_text(text[:at] + copied + text[at:])


def test_an_atlas_record_copied_from_another_manifests_lock_never_deletes_its_files(
    project, run_cli
):
    root = two_manifests(project, run_cli, b=B + ATLAS)
    sheets = {path.name: path.read_bytes() for path in (root / "sheets").iterdir()}
    with_records_copied(root, "atlases.boats", "atlases.zz")
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "stay (other.lock records them as atlas boats's)" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert {path.name: path.read_bytes() for path in (root / "sheets").iterdir()} == sheets
    assert run_cli("plan").out.startswith("No changes")


def test_an_asset_manifest_record_copied_from_another_manifests_lock_never_deletes_it(
    project, run_cli
):
    assets = '[assets]\nmanifest = "static/images.json"\n'
    root = two_manifests(project, run_cli, b=B + assets)
    written = (root / "static/images.json").read_bytes()
    with_records_copied(root, "assets")
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "static/images.json stays (other.lock records it as the asset manifest's)" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "static/images.json").read_bytes() == written


def parsed_by_siblings(monkeypatch) -> list[int]:
    """The length of each text the reading of the locks beside hands to the TOML parser."""
    sizes: list[int] = []

    def loads(text: str) -> dict[str, object]:
        sizes.append(len(text))
        return tomllib.loads(text)

    parser = SimpleNamespace(loads=loads, TOMLDecodeError=tomllib.TOMLDecodeError)
    monkeypatch.setattr("nebula_build.state.siblings.tomllib", parser)
    return sizes


@pytest.mark.parametrize("conflicted", [False, True], ids=["", "conflicted"])
def test_a_lock_beside_is_read_by_the_lines_that_name_files(
    project, run_cli, monkeypatch, conflicted
):
    root = two_manifests(project, run_cli)
    other = root / "other.lock"
    head, _, table = other.read_text().partition("[images.b]\n")
    junk = "junk = [" + "[]," * 300_000 + "]\n"  # 900 KB: 1.3 s and 30 MB parsed whole
    head = head.replace("version = 1\n", f"version = 1\n{junk}")
    if conflicted:
        other.write_text(f"{head}<<<<<<< HEAD\n=======\n[images.b]\n{table}>>>>>>> branch\n")
    else:
        other.write_text(f"{head}[images.b]\n{table}")
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]\n" + table)
    fresh_checkout(root)
    sizes = parsed_by_siblings(monkeypatch)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert STAYS in out
    assert 0 < max(sizes) < 1000


def test_a_lock_beside_is_read_again_only_once_it_changed(project, run_cli, monkeypatch):
    root = two_manifests(project, run_cli, b=B + B.replace("b", "c"))
    copied = (root / "other.lock").read_text().partition("[images.b]")[2]
    copied = copied.partition("[images.c]")[0]
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]" + copied)
    sizes = parsed_by_siblings(monkeypatch)
    for _ in range(3):  # as watch plans each round
        assert STAYS in run_cli("plan").out
    assert len(sizes) == 1
    other = root / "other.lock"  # a pull brings other.lock without b
    other.write_text(other.read_text().replace("[images.b]" + copied, ""))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "stays" not in out  # other.lock no longer records out/b.png
    assert len(sizes) == 2


def test_an_image_whose_output_another_manifest_wrote_says_whose_file_is_in_its_way(
    project, run_cli
):
    root = two_manifests(project, run_cli)
    b = (root / "out/b.png").read_bytes()
    (root / "images.toml").write_text(manifest(A, B))  # b copied into this manifest too
    code, out, _ = run_cli("plan")
    assert code == 0
    assert (
        "the file in the way is another manifest's (other.lock records it as b's): give "
        "this image another output"
    ) in out
    assert "nebula-build did not write" not in out
    code, _, err = run_cli("apply")
    assert code == 1 and "out/b.png: the file in the way is another manifest's" in err
    assert (root / "out/b.png").read_bytes() == b


def beside_a_copied_entry(project, run_cli) -> Path:
    """images.lock records image zz, no longer declared, at b's output: other.lock's."""
    root = two_manifests(project, run_cli)
    copied = (root / "other.lock").read_text().partition("[images.b]")[2]
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]" + copied)
    fresh_checkout(root)
    return root


def grown(lock: Path, size: int) -> None:
    """`lock` made `size` bytes long (sparse: nothing written) by a line of NUL bytes
    after its header, before its tables."""
    head, _, tables = lock.read_bytes().partition(b"\n[images.")
    tables = b"\n\n[images." + tables
    with lock.open("wb") as handle:
        handle.write(head)
        handle.seek(size - len(tables))
        handle.write(tables)
    assert lock.stat().st_size == size


def test_a_lock_beside_larger_than_it_used_to_be_read_still_protects_its_files(project, run_cli):
    root = beside_a_copied_entry(project, run_cli)
    grown(root / "other.lock", 300 << 20)  # a lock may have 1 GiB; 256 MiB were read
    b = (root / "out/b.png").read_bytes()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert f"removed from the manifest; {STAYS}" in out
    assert (root / "out/b.png").read_bytes() == b
    (root / "images.toml").write_text(manifest(A, B))  # b copied into this manifest too
    code, _, err = run_cli("apply")
    assert code == 1 and "out/b.png: the file in the way is another manifest's" in err
    assert (root / "out/b.png").read_bytes() == b


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_a_lock_beside_is_read_across_its_chunks(project, run_cli, monkeypatch, chunk):
    beside_a_copied_entry(project, run_cli)
    monkeypatch.setattr("nebula_build.state.siblings._CHUNK", chunk)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"removed from the manifest; {STAYS}" in out


def test_a_line_too_long_to_name_a_file_is_not_read_across_chunks(project, run_cli, monkeypatch):
    root = beside_a_copied_entry(project, run_cli)
    other = root / "other.lock"
    head, _, tables = other.read_text().partition("\n[images.")
    long = 'output = "' + "x" * 70_000 + '"'  # no line of nebula-build's
    other.write_text(f"{head}\n{long}\n[images.{tables}")
    monkeypatch.setattr("nebula_build.state.siblings._CHUNK", 4096)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"removed from the manifest; {STAYS}" in out
    assert "note" not in err


UNREAD = (
    "note: other.lock is not read: {}, so nothing keeps this plan from removing or moving "
    "other.toml's files"
)
WHAT_IS_WRONG = "; `nebula-build -f other.toml plan` says what is wrong with it"
PAST_THE_BUDGET = (
    "with the other locks in the folder it is more than one plan reads (1,000 lines, "
    "64 MiB of lines that name files or 2,000,000 values)"
)


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (lambda lock: grown(lock, (1 << 30) + 1), "it has more than a lock may have (1,024 MiB)"),
        (
            lambda lock: lock.write_bytes(lock.read_bytes().replace(b"out/b.png", b"out/\xff.png")),
            "its lines that name files are not UTF-8",
        ),
        (
            lambda lock: lock.write_text(lock.read_text().replace("[images.b]", "[images.b")),
            "it is not laid out as nebula-build writes a lock",
        ),
        (
            lambda lock: lock.write_text(lock.read_text() + "\n" * 1_000),
            PAST_THE_BUDGET,
        ),
    ],
    ids=["past-its-size", "not-utf-8", "not-toml", "past-the-budget"],
)
def test_a_lock_beside_that_cannot_be_read_is_said_once(project, run_cli, monkeypatch, spoil, why):
    monkeypatch.setattr("nebula_build.state.siblings._LINES_LIMIT", 1_000)
    root = beside_a_copied_entry(project, run_cli)
    spoil(root / "other.lock")
    note = UNREAD.format(why) + ("" if why == PAST_THE_BUDGET else WHAT_IS_WRONG)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert err.count("note: other.lock") == 1 and note + "\n" in err
    assert "stays" not in out  # it protects nothing, as before: the plan says why
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert err.count("note: other.lock") == 1 and note in err
    assert not (root / "out/b.png").exists()
    assert run_cli("plan").err == ""


def test_an_entry_copied_from_a_nested_projects_lock_never_deletes_its_file(project, run_cli):
    """`sub/images.toml` is a project of its own: the root lock's entry copied from
    `sub/images.lock` (paths made the root's) had apply delete sub's output."""
    root = project({"images.toml": manifest(A), "sub/images.toml": manifest(B)})
    assert run_cli("apply").code == 0
    assert run_cli("apply", cwd=root / "sub").code == 0
    b = (root / "sub/out/b.png").read_bytes()
    copied = (root / "sub/images.lock").read_text().partition("[images.b]")[2]
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]" + copied.replace("out/b", "sub/out/b"))
    fresh_checkout(root)
    shutil.rmtree(root / "sub/.nebula-build")
    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert "sub/out/b.png stays: sub/images.lock records it as b's" in out
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert (root / "sub/out/b.png").read_bytes() == b
    assert "zz" not in tomllib.loads(lock.read_text())["images"]


def test_a_nested_lock_that_cannot_be_read_is_said(project, run_cli):
    """It was silent: a broken `sub/images.lock` protected nothing and no note said so,
    where a broken lock beside the root's did."""
    root = project({"images.toml": manifest(A), "sub/images.toml": manifest(B)})
    assert run_cli("apply").code == 0
    assert run_cli("apply", cwd=root / "sub").code == 0
    copied = (root / "sub/images.lock").read_text().partition("[images.b]")[2]
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + "\n[images.zz]" + copied.replace("out/b", "sub/out/b"))
    nested = root / "sub/images.lock"
    nested.write_text(nested.read_text().replace("[images.b]", "[images.b"))
    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert (
        "note: sub/images.lock is not read: it is not laid out as nebula-build writes a lock, "
        "so nothing keeps this plan from removing or moving sub/images.toml's files"
    ) in err
