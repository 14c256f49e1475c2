"""The no-op fast path: a plan of an unchanged project is answered from stats alone,
and every change a plan would see still reaches the full path."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nebula_build.engine import noop
from tests.conftest import REPO, fake_manifest

IMAGES = {
    "hero": {"prompt": "a lighthouse", "output": "img/hero.png", "widths": [32]},
    "cap": {
        "model": "black-forest-labs/FLUX.1-Fill-dev",
        "prompt": "a cap",
        "image": "in/photo.png",
        "mask": "in/mask.png",
        "output": "img/cap.png",
    },
}
EXTRA = (
    '\n[atlases.sheet]\nimages = ["hero", "cap"]\noutput = "img/sheet.png"\n'
    '\n[assets]\nmanifest = "img/images.json"\n'
)


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def built(project, run_cli, fake_site, tmp_path, monkeypatch):
    """A project applied and planned once, with a snapshot the next plan can use."""
    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # no waiting for the racy window
    root = project(
        {
            "images.toml": fake_manifest(tmp_path / "log", IMAGES) + EXTRA,
            "in/photo.png": png((10, 20, 30)),
            "in/mask.png": png((255, 255, 255)),
        }
    )
    assert run_cli("apply").code == 0
    assert "No changes" in run_cli("plan").out
    assert noop.unchanged(str(root), "images.toml", None) == 2
    return root


def plan(run_cli) -> str:
    code, out, err = run_cli("plan")
    assert code == 0, err
    return out


def keep_size_and_mtime(path: Path, edit) -> None:
    """Change a file's bytes but not its size or modification time: only ctime shows."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size


def flip_last_byte(data: bytearray) -> None:
    data[-1] ^= 1


def test_an_unchanged_project_is_answered_from_the_snapshot(built, run_cli):
    assert plan(run_cli) == "No changes: 2 images up to date.\n"
    code, _, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0


def test_a_manifest_edit_that_keeps_size_and_mtime_is_seen(built, run_cli):
    manifest = built / "images.toml"
    keep_size_and_mtime(
        manifest, lambda data: data.__setitem__(data.index(b"lighthouse"), ord("L"))
    )
    out = plan(run_cli)
    assert "hero  regenerate" in out and "prompt changed" in out


def test_an_output_edited_by_hand_is_seen(built, run_cli):
    keep_size_and_mtime(built / "img/hero.png", flip_last_byte)
    assert "hero  conflict" in plan(run_cli)


@pytest.mark.parametrize(
    ("path", "seen"),
    [
        ("img/hero.png", "hero  restore"),
        ("img/hero-32.png", "hero  restore"),
        ("img/sheet.png", "atlas sheet  build"),
        ("img/images.json", "asset manifest  build"),
        # the cache remembers the files this output wrote: adopted, not a conflict
        ("images.lock", "(the files already hold this output)"),
    ],
)
def test_a_missing_file_is_seen(built, run_cli, path, seen):
    (built / path).unlink()
    assert seen in plan(run_cli)


def test_an_edited_input_is_seen(built, run_cli):
    (built / "in/mask.png").write_bytes(png((0, 0, 0)))
    assert "cap  regenerate" in plan(run_cli)


def test_an_edited_sheet_is_seen(built, run_cli):
    keep_size_and_mtime(built / "img/sheet.png", flip_last_byte)
    assert "atlas sheet  conflict" in plan(run_cli)


def test_a_journal_a_backend_override_or_new_packages_take_the_full_path(built, monkeypatch):
    assert noop.unchanged(str(built), "images.toml", "preview") is None
    assert noop.unchanged(str(built), "other.toml", None) is None
    journal = built / ".nebula-build/journal"
    journal.write_text("")
    assert noop.unchanged(str(built), "images.toml", None) is None
    journal.unlink()
    assert noop.unchanged(str(built), "images.toml", None) == 2
    monkeypatch.syspath_prepend(str(built / "in"))  # as if a plugin were installed there
    assert noop.unchanged(str(built), "images.toml", None) is None


def test_a_plan_with_changes_or_a_racy_file_leaves_no_snapshot(built, run_cli, monkeypatch):
    (built / "img/cap.png").unlink()
    assert "cap  restore" in plan(run_cli)
    assert not (built / noop.SNAPSHOT).exists()
    assert run_cli("apply").code == 0
    monkeypatch.setattr(noop, "RACY_SECONDS", 3600.0)
    assert "No changes" in plan(run_cli)
    assert not (built / noop.SNAPSHOT).exists()  # cap.png was written within the hour


@pytest.mark.slow
def test_the_fast_path_loads_no_manifest_parser_validator_or_image_library(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
        '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = (
        "import sys; from nebula_build.cli import main; rc = main(sys.argv[1:]); "
        "loaded = [m for m in ('tomllib', 'pydantic', 'PIL', 'nebula_build.state.lockfile', "
        "'nebula_build.core.manifest', 'nebula_build.plugin') if m in sys.modules]; "
        "print(loaded); sys.exit(rc)"
    )

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    run("apply")
    time.sleep(noop.RACY_SECONDS + 0.1)
    assert run("plan")[-1] != "[]"  # the full path, which leaves a snapshot
    answer = run("plan", "--detailed-exitcode")
    assert answer == ["No changes: 1 image up to date.", "[]"]
    # status and apply with nothing to do too (a.png's folder is the project's own)
    assert run("status", "--detailed-exitcode")[-3:] == ["", "Status: 1 image up to date.", "[]"]
    assert run("apply") == ["No changes: 1 image up to date.", "[]"]


def test_a_file_edited_while_the_plan_runs_is_seen_by_the_next_plan(built, run_cli, monkeypatch):
    from nebula_build.engine import planning

    (built / noop.SNAPSHOT).unlink()
    real = planning.plan_for

    def plan_then_edit(*args, **kwargs):
        plan = real(*args, **kwargs)
        manifest = built / "images.toml"  # saved after the plan read it
        manifest.write_text(manifest.read_text().replace("a lighthouse", "a lighthouse!"))
        return plan

    monkeypatch.setattr(planning, "plan_for", plan_then_edit)
    assert "No changes" in plan(run_cli)
    # whatever the clocks say: the signature recorded is the one before the plan read it
    assert noop.unchanged(str(built), "images.toml", None) is None
    monkeypatch.setattr(planning, "plan_for", real)
    assert "prompt changed" in plan(run_cli)


@pytest.mark.parametrize("given", ["images.toml/", "./images.toml", "x/../images.toml"])
def test_a_manifest_path_that_resolves_differently_takes_the_full_path(given, built):
    assert noop.find_root(str(built), "images.toml") == (str(built), "images.toml")
    assert noop.find_root(str(built), given) is None


def read_snapshot(path: Path) -> str:
    """The snapshot's text, under its seal."""
    from nebula_build.state.seal import unseal

    text = unseal(path.read_bytes())
    assert text is not None
    return text.decode("utf-8", "surrogateescape")


def write_snapshot(path: Path, text: str) -> None:
    """`text` as the snapshot, sealed as this account seals it: what the checks of
    its text see."""
    from nebula_build.state.seal import seal

    sealed = seal(text.encode("utf-8", "surrogateescape"))
    assert sealed is not None
    path.write_bytes(sealed)


def test_a_truncated_or_strange_snapshot_is_a_miss_never_a_crash(built, run_cli):
    snapshot = built / noop.SNAPSHOT
    lines = read_snapshot(snapshot).split("\n")
    write_snapshot(snapshot, "\n".join(lines[:3]))  # the context, but no files
    manifest = built / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a lamp"))
    assert noop.unchanged(str(built), "images.toml", None) is None
    assert "prompt changed" in plan(run_cli)
    snapshot.unlink(missing_ok=True)
    snapshot.symlink_to("/dev/zero")
    assert noop.unchanged(str(built), "images.toml", None) is None


def test_a_manifest_whose_name_is_not_utf8_still_plans(built, run_cli):
    odd = "caf\udce9.toml"  # a byte that is not UTF-8, as Python names it
    os.replace(built / "images.toml", built / odd)
    code, _, err = run_cli("-f", odd, "apply")
    # said escaped, as every name in an error is: the lone byte is no character
    assert code == 1 and "rename images.lock to caf\\udce9.lock" in err
    os.replace(built / "images.lock", built / "caf\udce9.lock")
    assert run_cli("-f", odd, "apply").code == 0
    code, out, err = run_cli("-f", odd, "plan")
    assert code == 0, err
    assert noop.unchanged(str(built), odd, None) == 2
    assert plan(lambda *a: run_cli("-f", odd, *a)) == "No changes: 2 images up to date.\n"


@pytest.mark.parametrize("name", ["images.toml", "site.toml", "caf\udce9.toml", "plain"])
def test_the_fast_path_finds_each_manifests_lock_and_state_as_the_project_does(tmp_path, name):
    from nebula_build.state.project import Project

    project = Project(tmp_path, tmp_path / name)
    assert noop.lock_of(name) == project.lock_path.name
    assert tmp_path / noop.state_of(name) == project.state_dir


# --- status and apply with nothing to do take the same path --------------------


def full_path_only(monkeypatch) -> None:
    """Make the full paths of plan, status and apply fail, so an answer proves the
    snapshot."""
    from nebula_build.cli import build
    from nebula_build.engine import prepare
    from nebula_build.engine import round as round_module

    def refuse(*args, **kwargs):
        raise AssertionError("took the full path")

    monkeypatch.setattr(build, "prepared_project", refuse)
    monkeypatch.setattr(prepare, "prepare", refuse)
    monkeypatch.setattr(round_module, "apply_round", refuse)


def full_path_answers(run_cli, root: Path, *args: str, cwd: Path | None = None):
    """The answer of the full path: the same command with the snapshot set aside."""
    snapshot = root / noop.SNAPSHOT
    kept = snapshot.read_bytes()
    snapshot.unlink()
    try:
        return run_cli(*args, cwd=cwd)
    finally:
        snapshot.write_bytes(kept)


@pytest.mark.parametrize("color", [False, True])
def test_status_of_an_unchanged_project_matches_the_full_path_byte_for_byte(
    built, run_cli, monkeypatch, color
):
    if color:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("FORCE_COLOR", "1")
    full = full_path_answers(run_cli, built, "status", "--detailed-exitcode")
    assert full.code == 0 and "Status: 2 images up to date, 1 atlas up to date" in full.out
    full_path_only(monkeypatch)
    assert run_cli("status", "--detailed-exitcode") == full
    assert ("\x1b[" in full.out) is color


def test_list_of_an_unchanged_project_answers_from_the_snapshot(built, run_cli, monkeypatch):
    """Shell completion runs `list` on each TAB: resolving 100,000 images from data took
    seconds. Unchanged, it answers from the snapshot, names as the full path gives them
    (an atlas's line is not an image's)."""
    full = full_path_answers(run_cli, built, "list")
    assert full.code == 0 and full.out.splitlines() == ["hero", "cap"]
    from nebula_build.cli import info

    with monkeypatch.context() as patched:
        patched.setattr(info, "prepared_project", lambda ctx: pytest.fail("took the full path"))
        assert run_cli("list") == full
    (built / "images.toml").write_text((built / "images.toml").read_text() + "\n")
    assert run_cli("list") == full  # the full path, again


def test_apply_with_nothing_to_do_matches_the_full_path_byte_for_byte(built, run_cli, monkeypatch):
    for args in (["apply"], ["apply", "-q", "--locked"]):
        full = full_path_answers(run_cli, built, *args)
        assert (full.code, full.out, full.err) == (0, "No changes: 2 images up to date.\n", "")
        with monkeypatch.context() as patched:
            full_path_only(patched)
            assert run_cli(*args) == full


EDITS = {
    "manifest": lambda root: keep_size_and_mtime(
        root / "images.toml", lambda data: data.__setitem__(data.index(b"lighthouse"), ord("L"))
    ),
    "input": lambda root: (root / "in/mask.png").write_bytes(png((0, 0, 0))),
    "output": lambda root: keep_size_and_mtime(root / "img/hero-32.png", flip_last_byte),
    "lock": lambda root: keep_size_and_mtime(
        root / "images.lock", lambda data: data.__setitem__(data.index(b"hero"), ord("H"))
    ),
}


@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("command", ["status", "apply"])
def test_an_edit_to_any_input_makes_status_and_apply_take_the_full_path(
    built, run_cli, command, edit
):
    EDITS[edit](built)
    code, out, err = run_cli(command)
    assert "up to date.\n" not in out.splitlines(keepends=True)[-1], (out, err)


def test_status_json_and_targets_keep_the_full_path(built, run_cli, monkeypatch):
    full_path_only(monkeypatch)
    with pytest.raises(AssertionError, match="took the full path"):
        run_cli("status", "--json")
    with pytest.raises(AssertionError, match="took the full path"):
        run_cli("status", "--target", "hero")
    with pytest.raises(AssertionError, match="took the full path"):
        run_cli("apply", "--target", "hero")


def test_apply_takes_the_full_path_to_sweep_a_killed_runs_temp_file(built, run_cli):
    leftover = built / "img" / ".hero.png.nebula-tmp-1234"
    leftover.write_bytes(b"half an image")
    # its folder changed: plan too takes the full path (once, while the file is there)
    assert noop.unchanged(str(built), "images.toml", None) is None
    assert noop.nothing_to_apply(str(built), "images.toml", None) is None
    assert run_cli("apply").out == "No changes: 2 images up to date.\n"
    assert not leftover.exists()


def test_a_snapshot_taken_beside_a_temp_file_never_answers_apply(built, run_cli):
    (built / noop.SNAPSHOT).unlink()
    leftover = built / "img" / ".hero.png.nebula-tmp-1234"
    leftover.write_bytes(b"half an image")
    os.utime(built / "img", ns=(0, 0))  # old enough to be trusted, were it not for the file
    assert "No changes" in plan(run_cli)
    assert (built / noop.SNAPSHOT).exists()  # its folders left out: the next plan re-records
    assert noop.unchanged(str(built), "images.toml", None) is None
    assert noop.nothing_to_apply(str(built), "images.toml", None) is None


def test_an_output_folder_moved_behind_a_link_makes_apply_take_the_full_path(
    built, run_cli, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    os.replace(built / "img", elsewhere)  # the files keep their signatures
    (built / "img").symlink_to(elsewhere)
    assert noop.unchanged(str(built), "images.toml", None) is None
    assert noop.nothing_to_apply(str(built), "images.toml", None) is None
    code, _, err = run_cli("apply")
    assert code == 1 and "symbolic link" in err


def test_a_plan_that_says_a_note_leaves_no_snapshot(built, run_cli, monkeypatch):
    from nebula_build.engine import planning

    real = planning.plan_for

    def noting(*args, **kwargs):
        kwargs["notice"]("the remote cache is not reachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "plan_for", noting)
    (built / noop.SNAPSHOT).unlink()
    code, out, err = run_cli("plan")
    assert code == 0 and "No changes" in out and "not reachable" in err
    assert not (built / noop.SNAPSHOT).exists()  # the next plan says it again


@pytest.fixture
def job_summary(built, monkeypatch) -> Path:
    """Under GitHub Actions: the step's job summary file (outside the project)."""
    summary = built.parent / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def full_and_fast(run_cli, root: Path, summary: Path, monkeypatch, *args: str, cwd=None):
    """(the full path's answer and job summary, the snapshot's) of one command; a
    summary None where none was written."""

    def written() -> str | None:
        text = summary.read_text(encoding="utf-8") if summary.exists() else None
        summary.unlink(missing_ok=True)
        return text

    full = full_path_answers(run_cli, root, *args, cwd=cwd), written()
    with monkeypatch.context() as patched:
        full_path_only(patched)
        fast = run_cli(*args, cwd=cwd), written()
    return full, fast


NOTHING_TO_DO = "No changes: 2 images up to date.\n"
PLANNED = f"### nebula-build plan (images.toml)\n\n{NOTHING_TO_DO}\n"
APPLIED = (
    f"### nebula-build apply (images.toml)\n\n{NOTHING_TO_DO}\n- **Generated in this run:** 0.\n\n"
)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["plan"], PLANNED),
        (["plan", "--detailed-exitcode"], PLANNED),
        (["apply", "-q", "--locked"], APPLIED),
    ],
    ids=["plan", "plan --detailed-exitcode", "apply"],
)
def test_under_github_actions_nothing_to_do_writes_the_job_summary_from_the_snapshot(
    built, run_cli, monkeypatch, job_summary, args, said
):
    full, fast = full_and_fast(run_cli, built, job_summary, monkeypatch, *args)
    assert fast == full
    assert (tuple(full[0]), full[1]) == ((0, "No changes: 2 images up to date.\n", ""), said)
    # with changes, the whole plan (or what the apply did)
    (built / "img/hero.png").unlink()
    assert run_cli(*args).code == (2 if "--detailed-exitcode" in args else 0)
    text = job_summary.read_text(encoding="utf-8")
    assert "| hero | restore | output file missing | img/hero.png |" in text


def test_under_github_actions_the_snapshot_s_job_summary_names_the_manifest_as_shown(
    built, run_cli, monkeypatch, job_summary
):
    full, fast = full_and_fast(run_cli, built, job_summary, monkeypatch, "plan", cwd=built / "img")
    assert fast == full
    assert full[1] is not None
    assert full[1].startswith("### nebula-build plan (../images.toml)\n")


@pytest.mark.parametrize("command", ["status", "list"])
def test_under_github_actions_status_and_list_answer_from_the_snapshot(
    built, run_cli, monkeypatch, job_summary, command
):
    full, fast = full_and_fast(run_cli, built, job_summary, monkeypatch, command)
    assert fast == full
    assert full[0].code == 0 and full[1] is None  # neither writes a job summary


# --- review findings: what the snapshot cannot see takes the full path ------------


def in_process_only(root: Path) -> None:
    """The project's folder is not on sys.path (as with `python -m`, where its signature
    would join the context and hide what these tests look for)."""
    assert not any(os.path.realpath(entry or ".") == str(root) for entry in sys.path)


def test_a_plan_that_asked_the_cache_about_a_draw_leaves_no_snapshot(
    project, run_cli, monkeypatch, tmp_path
):
    import re

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n[images.hero]\nprompt = "x"\n'
            'width = 64\nheight = 64\ncandidates = 2\noutput = "hero.png"\n'
        }
    )
    in_process_only(root)
    assert run_cli("apply", "-q").code == 0
    lock = root / "images.lock"
    draw = re.findall(r'\{ key = "([0-9a-f]+)"', lock.read_text())[1]
    lock.write_text(re.sub(r"draws = \[\n(.*\n)*?\]\n", "", lock.read_text()))
    assert "No changes" in plan(run_cli)  # the cache holds the draw the lock forgot
    assert "No changes" in plan(run_cli)
    assert not (root / noop.SNAPSHOT).exists()  # that answer came from the cache
    os.replace(root / ".nebula-build/cache" / draw[:2], tmp_path / "moved")
    assert "hero#1  draw" in plan(run_cli)
    assert run_cli("status", "--detailed-exitcode").code == 2


@pytest.mark.parametrize("folder", ["in", ".nebula-build/cache"])
@pytest.mark.parametrize("command", ["plan", "status", "apply"])
def test_a_folder_swapped_for_a_link_takes_the_full_path(built, run_cli, tmp_path, folder, command):
    in_process_only(built)
    elsewhere = tmp_path / "outside" / folder
    elsewhere.parent.mkdir(parents=True)
    os.replace(built / folder, elsewhere)  # the files keep their signatures
    (built / folder).symlink_to(elsewhere)
    code, out, err = run_cli(command)
    assert (code, out) == (1, ""), err
    assert "symbolic link" in err and "Traceback" not in err


def test_apply_while_another_run_holds_the_project_takes_the_full_path(built, run_cli):
    from nebula_build.state.projectlock import ProjectLock

    in_process_only(built)
    with ProjectLock(built / ".nebula-build/lock", command="gc"):
        code, out, err = run_cli("apply")
    assert (code, out) == (1, "") and "another nebula-build is running" in err
    assert run_cli("apply").out == "No changes: 2 images up to date.\n"


def test_apply_after_a_killed_run_takes_over_its_lock_on_the_full_path(built, run_cli):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (built / ".nebula-build/lock").write_text(f"pid {dead} (apply)\n")
    code, out, err = run_cli("apply")
    assert code == 0 and "took over the project lock" in err
    assert out == "No changes: 2 images up to date.\n"


def mutations(text: str, seed: int) -> str:
    import random

    chance = random.Random(seed)
    lines = text.split("\n")
    for _ in range(chance.randint(1, 3)):
        at = chance.randrange(len(lines))
        choice = chance.randrange(6)
        if choice == 0:
            lines[at] = "²"
        elif choice == 1:
            lines[at] = str(chance.randint(0, 20))
        elif choice == 2:
            del lines[at]
        elif choice == 3:
            lines.insert(at, lines[chance.randrange(len(lines))])
        elif choice == 4:
            lines[at] = "-"
        elif lines[at]:
            spot = chance.randrange(len(lines[at]))
            lines[at] = lines[at][:spot] + chance.choice("²\t\n0-x") + lines[at][spot + 1 :]
    return "\n".join(lines)


def test_a_mangled_snapshot_never_crashes_nor_hides_a_change(built, run_cli):
    snapshot = built / noop.SNAPSHOT
    real = read_snapshot(snapshot)
    root = str(built)
    answers = (noop.unchanged, noop.nothing_to_apply, noop.status)
    for seed in range(300):  # the project as the snapshot saw it: any answer, no crash
        write_snapshot(snapshot, mutations(real, seed))
        for answer in answers:
            answer(root, "images.toml", None)
    manifest = built / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a lamp"))
    for seed in range(300):  # a change: never "nothing to do"
        write_snapshot(snapshot, mutations(real, seed))
        assert all(answer(root, "images.toml", None) is None for answer in answers), seed
    lines = real.split("\n")
    lines[3] = "²"  # the file count
    write_snapshot(snapshot, "\n".join(lines))
    for command in ("plan", "status", "apply"):
        code, out, err = run_cli(command)
        assert "Traceback" not in err and "prompt changed" in out, (command, err)


def forged_from(text: str) -> str:
    """What a pull request can commit once it has seen a workspace's snapshot (an
    artifact, a kept runner): the context and the signatures of the manifest and the
    lock, which it leaves alone, and no other file to check."""
    lines = text.split("\n")
    at = lines.index(noop.FORMAT)  # after the seal, where there is one
    files = lines[at + 4 : at + 6]  # the manifest's and the lock's
    summary = "Status: 2 images up to date."
    return "\n".join([*lines[: at + 3], "2", *files, "0", "0", "0", "0", "0", summary])


def test_a_snapshot_not_written_on_this_account_is_never_believed(
    built, run_cli, monkeypatch, job_summary
):
    """A committed .nebula-build/noop listing only the files a pull request leaves as
    they were would hide every other change from CI's plan: an output swapped for
    any image read "No changes" (exit 0) where the whole plan refuses it."""
    snapshot = built / noop.SNAPSHOT
    seen = snapshot.read_text(encoding="utf-8", errors="surrogateescape")
    snapshot.write_text(forged_from(seen), encoding="utf-8", errors="surrogateescape")
    (built / "img/hero.png").write_bytes(png((255, 0, 0)))
    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert code == 1 and "output file changed by hand" in out, (out, err)
    assert "| hero | conflict | output file changed by hand |" in job_summary.read_text()
    assert noop.unchanged(str(built), "images.toml", None) is None
    for command in ("status", "apply"):
        assert "changed by hand" in run_cli(command).out, command


def test_a_remote_cache_variable_takes_the_full_path(built, run_cli, monkeypatch):
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "ftp://x")
    for command in ("plan", "status", "apply"):
        code, out, err = run_cli(command)
        if command != "status":  # status does not ask for the remote
            assert code == 1 and "NEBULA_BUILD_CACHE_REMOTE" in err, (command, err)
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "")
    assert noop.nothing_to_apply(str(built), "images.toml", None) is None


@pytest.mark.parametrize("where", [".", ".nebula-build", ".nebula-build/cache/outputs"])
def test_apply_sweeps_a_killed_runs_temp_file_wherever_the_full_path_would(built, run_cli, where):
    in_process_only(built)
    leftover = built / where / ".files.json.nebula-tmp-1234"
    leftover.write_bytes(b"half a file")
    assert run_cli("apply").out == "No changes: 2 images up to date.\n"
    assert not leftover.exists()


def test_apply_takes_the_full_path_while_a_rescued_generation_waits(built, run_cli, monkeypatch):
    from nebula_build.state.rescue import rescue_root

    (rescue_root() / "ab").mkdir(parents=True)
    full_path_only(monkeypatch)
    with pytest.raises(AssertionError, match="took the full path"):
        run_cli("apply")


def test_a_folder_changed_after_the_snapshot_makes_plan_record_a_fresh_one(built, run_cli):
    in_process_only(built)
    (built / "img" / ".DS_Store").write_bytes(b"")
    assert noop.nothing_to_apply(str(built), "images.toml", None) is None
    assert "No changes" in plan(run_cli)
    assert noop.nothing_to_apply(str(built), "images.toml", None) == 2  # apply is fast again


def test_the_state_folders_checked_are_the_projects(tmp_path):
    from nebula_build.fsutil import TEMP_MARKER
    from nebula_build.state import guard, project

    assert noop.STATE_FOLDERS == project._STATE_FOLDERS
    assert noop.STATE_FILES == project._STATE_FILES
    assert noop.STATE_DEPTH == guard._MAX_STATE_DEPTH
    assert noop.TEMP_MARKER == TEMP_MARKER
