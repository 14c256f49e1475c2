"""The guarded filesystem, attacked through the CLI: a crafted lock, manifest or
journal never touches a file outside the project or the tool's own files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nebula_build.fsutil import TEMP_MARKER
from tests.manifests import PREVIEW


def manifest(*blocks: str) -> str:
    return PREVIEW + "".join(f"\n{block.strip()}\n" for block in blocks)


A = '[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"'


def image_bytes(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the project that nothing may touch."""
    path = tmp_path / "victim" / "notes.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


def lock_entry(name: str, output: str, digest: str, *, variants: str = "") -> str:
    key = "ab" * 32
    return (
        f'\n[images.{name}]\nbackend = "preview"\nmodel = "m"\noutput = "{output}"\n'
        f'digest = "{digest}"\ngeneration_key = "{key}"\noutput_key = "{key}"\n'
        f"params = {{}}\n{variants}"
    )


@pytest.mark.parametrize(
    "output",
    ["../victim/notes.txt", "{victim}", "out/../../victim/notes.txt"],
    ids=["dotdot", "absolute", "inner-dotdot"],
)
def test_a_crafted_lock_never_deletes_a_file_outside_the_project(project, run_cli, victim, output):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    crafted = output.format(victim=victim)
    lock.write_text(lock.read_text() + lock_entry("ghost", crafted, sha(victim)))
    for command in ("plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, out
        assert "images.lock: images.ghost" in err and "Traceback" not in err
    assert victim.read_text() == "precious"


def test_a_crafted_variant_in_the_lock_is_refused(project, run_cli, victim):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    variants = f'variants = {{ "../victim/notes.txt" = "{sha(victim)}" }}\n'
    lock.write_text(
        lock.read_text() + lock_entry("ghost", "out/g.png", "cd" * 32, variants=variants)
    )
    code, _, err = run_cli("apply")
    assert code == 1 and "images.ghost: variant '../victim/notes.txt'" in err
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    ("output", "variant", "said"),
    [
        ("out/g.png", "rows.csv", "variant rows.csv is not in the folder of out/g.png"),
        ("g.png", "other.lock", "variant other.lock is not in the format of g.png"),
        ("notes.txt", None, "`output` notes.txt is not an image file"),
    ],
    ids=["variant-elsewhere", "variant-not-an-image", "output-not-an-image"],
)
def test_a_crafted_lock_cannot_delete_a_project_file_the_plan_does_not_show(
    project, run_cli, output, variant, said
):
    """A removed image's variants were deleted, if their bytes matched, whatever they
    were (its rows file, another manifest's lock), and `plan` named only its output."""
    root = project(
        {
            "images.toml": manifest(A),
            "rows.csv": "sku,desc\na,apple\n",
            "other.lock": "# another manifest's\n",
            "notes.txt": "notes\n",
        }
    )
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    target = root / (variant or output)
    variants = f'variants = {{ "{variant}" = "{sha(target)}" }}\n' if variant else ""
    digest = "cd" * 32 if variant else sha(target)
    lock.write_text(lock.read_text() + lock_entry("ghost", output, digest, variants=variants))
    for command in ("plan", "apply"):
        code, _, err = run_cli(command)
        assert code == 1 and f"images.lock: images.ghost: {said}" in err, err
    assert target.exists()


def test_a_lock_snapshot_from_a_release_with_fewer_checks_is_not_believed(
    project, run_cli, monkeypatch
):
    """The lock's sealed snapshot skips the entry checks: one an older release wrote
    (before variants had to lie beside their output) let a crafted lock through."""
    from nebula_build.state import lockfile

    root = project({"images.toml": manifest(A), "rows.csv": "sku\na\n"})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    variants = f'variants = {{ "rows.csv" = "{sha(root / "rows.csv")}" }}\n'
    lock.write_text(
        lock.read_text() + lock_entry("ghost", "out/g.png", "cd" * 32, variants=variants)
    )
    with monkeypatch.context() as older:
        older.setattr(lockfile, "_SNAPSHOT_LAYOUT", 2)
        older.setattr(lockfile, "_entry_problem", lambda data: None)
        assert run_cli("plan").code == 0  # the older release reads it, and seals it
    code, _, err = run_cli("apply")
    assert code == 1 and "variant rows.csv is not in the folder of out/g.png" in err, err
    assert (root / "rows.csv").exists()


def test_the_plan_names_every_file_an_apply_removes(project, run_cli):
    root = project(
        {
            "images.toml": manifest(
                '[images.a]\nprompt = "a"\noutput = "out/a.png"\nwidths = [16, 32]',
                '[images.b]\nprompt = "b"\noutput = "out/b.png"\nwidths = [16]',
            )
        }
    )
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(
        manifest('[images.a]\nprompt = "a"\noutput = "out/a.png"\nwidths = [16]')
    )
    code, out, _ = run_cli("plan")
    assert "      removes out/a-32.png, which it no longer writes\n" in out, out
    assert "      also removes out/b-16.png\n" in out
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "out").iterdir()) == ["a-16.png", "a.png"]


def test_a_crafted_lock_output_is_kept_and_the_plan_and_summary_say_so(
    project, run_cli, monkeypatch, tmp_path
):
    """A lock entry's output moved to a committed image (its digest forged) while the
    prompt changes: apply removed it (the plan named it, since the last review); it
    carries no record that nebula-build wrote it, so it stays, and the plan says so."""
    root = project({"images.toml": manifest(A), "docs/logo.png": image_bytes(8, 8)})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    text = lock.read_text().replace('output = "out/a.png"', 'output = "docs/logo.png"')
    lock.write_text(text.replace(sha(root / "out/a.png"), sha(root / "docs/logo.png")))
    (root / "images.toml").write_text(manifest(A.replace("a lighthouse", "a windmill")))
    (root / "out/a.png").unlink()  # the pull request deletes it too
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    keeps = "keeps docs/logo.png: it does not carry the record nebula-build writes"
    code, out, _ = run_cli("plan")
    assert f"      {keeps}" in out, out
    assert "removes docs/logo.png" not in out
    assert keeps in summary.read_text()
    data = json.loads(run_cli("plan", "--json").out)
    assert "removes" not in data["actions"][0]
    assert data["actions"][0]["stays"] == ["docs/logo.png"]
    assert run_cli("apply").code == 0
    assert (root / "docs/logo.png").read_bytes() == image_bytes(8, 8)


def test_a_crafted_lock_cannot_move_an_outside_file_in(project, run_cli, victim):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    text = (root / "images.lock").read_text()
    (root / "images.lock").write_text(
        text.replace('output = "out/a.png"', f'output = "{victim}"').replace(
            sha(root / "out/a.png"), sha(victim)
        )
    )
    code, _, err = run_cli("apply")
    assert code == 1 and "is absolute" in err
    assert victim.read_text() == "precious"


def test_a_crafted_lock_cannot_delete_the_manifest(project, run_cli):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(
        lock.read_text() + lock_entry("ghost", "images.toml", sha(root / "images.toml"))
    )
    code, _, err = run_cli("apply")
    assert code == 1 and "`output` images.toml is not an image file" in err
    assert (root / "images.toml").exists()


def test_a_crafted_journal_entry_is_refused(project, run_cli, victim):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    key = "ab" * 32
    entry = (
        '{"op": "set", "image": "ghost", "entry": {"backend": "preview", "model": "m", '
        f'"output": "../victim/notes.txt", "digest": "{sha(victim)}", '
        f'"generation_key": "{key}", "output_key": "{key}", "params": {{}}}}}}\n'
    )
    (root / ".nebula-build/journal").write_text(entry)
    code, _, err = run_cli("apply")
    assert code == 1 and ".nebula-build/journal: images.ghost" in err
    assert victim.read_text() == "precious"


#: names no image has (a manifest's are letters, digits, - and _; a row's id shows as it
#: is): a terminal's escape sequence, a line break, a right-to-left override
NAMES_NO_IMAGE_HAS = ["\x1b[2J\x1b[31mred", "a\n::warning::b", "abc\u202egnp.exe"]


@pytest.mark.parametrize("name", NAMES_NO_IMAGE_HAS, ids=["escape", "line-break", "override"])
@pytest.mark.parametrize("where", ["lock", "journal"])
def test_an_entry_named_as_no_image_is_is_refused(project, run_cli, where, name):
    """A pull request's lock or journal named an entry with a terminal's escape sequence:
    plan printed it to the terminal as it was (clearing the screen, colouring the rest)."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    key = "ab" * 32
    record = {"backend": "preview", "model": "m", "output": "out/b.png", "digest": key}
    record |= {"generation_key": key, "output_key": key, "params": {}}
    if where == "lock":
        lock = root / "images.lock"
        table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in record.items() if k != "params")
        lock.write_text(f"{lock.read_text()}\n[images.{json.dumps(name)}]\n{table}params = {{}}\n")
    else:
        line = {"op": "set", "image": name, "entry": record}
        (root / ".nebula-build/journal").write_text(json.dumps(line) + "\n")
    for command in ("plan", "status", "apply"):
        code, out, err = run_cli(command)
        assert code == 1 and out == "" and err.count("\n") == 1, (command, out, err)
        assert "Traceback" not in err and err[:-1].isprintable(), err
        assert "images." in err and "no image is named so" in err, err


@pytest.mark.parametrize(
    "lock_text",
    [
        b"version = 1\n[images.a]\nparams = { x = 1979-05-27 }\n",
        b"version = 1\n[images.a]\nbackend = \xff\n",
        b"version = 1\n" + b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n",
        b"version = 1\nimages = 3\n",
    ],
    ids=["date-param", "not-utf8", "deep", "not-a-table"],
)
def test_a_malformed_lock_is_one_line_never_a_traceback(project, run_cli, lock_text):
    root = project({"images.toml": manifest(A)})
    (root / "images.lock").write_bytes(lock_text)
    code, _, err = run_cli("plan")
    assert code == 1 and err.startswith("error: images.lock") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("params = { ", f"params = {{ x = {'1' * 5000}, "),
            "an integer has more than 4,300 digits",
        ),
        (("params = { ", f"params = {{ x = 0x{'f' * 5000}, "), "`params` must be a table of plain"),
        (
            ("params = ", f"seed = 0x{'f' * 5000}\nparams = "),
            "`seed` must be an integer of at most",
        ),
    ],
    ids=["decimal-param", "hexadecimal-param", "hexadecimal-seed"],
)
def test_an_integer_python_cannot_print_in_the_lock_is_one_line(project, run_cli, edit, expected):
    """A crafted lock's integer of thousands of digits was a traceback: tomllib raises
    Python's own ValueError past 4,300 digits, and a hexadecimal one read fine but
    could not be written back (the snapshot, --json)."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace(*edit, 1))
    for command in ("plan", "status"):
        code, _, err = run_cli(command)
        assert code == 1 and err.startswith("error: images.lock") and err.count("\n") == 1, err
        assert expected in err


@pytest.mark.parametrize(
    "target",
    ["images.toml", "images.lock", ".nebula-build/lock", ".git/config"],
)
def test_the_asset_manifest_never_replaces_the_tools_own_files(project, run_cli, target):
    root = project({"images.toml": manifest(A, f'[assets]\nmanifest = "{target}"')})
    before = (root / "images.toml").read_bytes()
    code, _, err = run_cli("apply")
    assert code == 1 and "assets.manifest" in err, err
    assert (root / "images.toml").read_bytes() == before


@pytest.mark.parametrize("target", ["README.md", "logo.png"])
def test_the_asset_manifest_is_not_written_over_a_strangers_file(project, run_cli, target):
    root = project(
        {
            "images.toml": manifest(A, f'[assets]\nmanifest = "{target}"'),
            target: b"\x89PNG not ours" if target.endswith(".png") else "# my readme\n",
        }
    )
    before = (root / target).read_bytes()
    code, out, err = run_cli("apply")
    assert code == 1 and "a file nebula-build did not write is in the way" in out + err
    assert (root / target).read_bytes() == before
    assert run_cli("apply", "--force").code == 0
    assert (root / target).read_bytes() != before
    assert list((root / ".nebula-build/backup").rglob(target))


def test_an_atlas_frame_map_cannot_be_the_manifest(project, run_cli):
    atlas = '[atlases.sheet]\nimages = ["a"]\noutput = "out/sheet.png"\nframes = "images.toml"'
    root = project({"images.toml": manifest(A, atlas)})
    before = (root / "images.toml").read_bytes()
    code, _, err = run_cli("apply")
    assert code == 1 and "atlases.sheet.frames" in err
    assert (root / "images.toml").read_bytes() == before


def test_outputs_and_derived_files_never_go_through_a_link_out(project, run_cli, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    atlas = '[atlases.sheet]\nimages = ["a"]\noutput = "link/sheet.png"\nframes = "ok/sheet.json"'
    for extra, where in (
        ('[images.b]\nprompt = "b"\noutput = "link/b.png"', "images.b.output"),
        (atlas, "atlases.sheet.output"),
        ('[assets]\nmanifest = "link/images.json"', "assets.manifest"),
    ):
        root = project({"images.toml": manifest(A, extra)})
        if not (root / "link").exists():
            (root / "link").symlink_to(outside)
        code, _, err = run_cli("apply")
        assert code == 1 and where in err and "symbolic link" in err, err
        assert not list(outside.iterdir())


def test_a_folder_swapped_for_a_link_at_write_time_is_refused(tmp_path):
    from nebula_build.errors import UnsafePathError
    from nebula_build.state.guard import Guard

    root, outside = tmp_path / "proj", tmp_path / "outside"
    (root / "out").mkdir(parents=True)
    outside.mkdir()
    guard = Guard(root)
    parts = guard._real_parts("out/a.png", what="output", follow_last=False)
    (root / "out").rmdir()
    (root / "out").symlink_to(outside)  # after the check, before the write
    with (
        pytest.raises(UnsafePathError, match="not a plain folder"),
        guard._folder(parts[:-1], what="out/a.png", create=True),
    ):
        pass
    assert not list(outside.iterdir())


@pytest.mark.parametrize(
    "output", [".nebula-build/a.png", ".nebula-build/journal/a.png", ".git/hooks/a.png"]
)
def test_an_output_inside_the_tools_state_is_refused(project, run_cli, output):
    project({"images.toml": manifest(f'[images.a]\nprompt = "x"\noutput = "{output}"')})
    for command in ("validate", "plan", "apply"):
        code, _, err = run_cli(command)
        assert code == 1 and "images.a.output" in err, (command, err)
    assert run_cli("status").code in (0, 1)


def test_an_output_over_an_input_is_refused(project, run_cli):
    fill = (
        '[images.fill]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'image = "in/base.png"\nmask = "in/mask.png"\noutput = "out/fill.png"\n'
        '[images.b]\nprompt = "y"\noutput = "in/base.png"'
    )
    root = project(
        {
            "images.toml": manifest(fill),
            "in/base.png": image_bytes(64, 64),
            "in/mask.png": image_bytes(64, 64),
        }
    )
    before = (root / "in/base.png").read_bytes()
    code, _, err = run_cli("apply")
    assert code == 1, err
    assert (root / "in/base.png").read_bytes() == before


def _input_manifest() -> str:
    return manifest(
        '[images.fill]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
        'image = "in/base.png"\nmask = "in/mask.png"\noutput = "out/fill.png"'
    )


def test_a_fifo_as_an_input_is_refused_without_hanging(project, tmp_path):
    root = project({"images.toml": _input_manifest(), "in/mask.png": image_bytes(64, 64)})
    os.mkfifo(root / "in/base.png")
    for command in ("validate", "plan", "apply"):
        done = subprocess.run(
            [sys.executable, "-m", "nebula_build", command],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert "'in/base.png' is not a regular file" in done.stderr, done.stderr


def test_an_input_linked_outside_the_project_is_refused_by_plan_too(project, run_cli, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(image_bytes(64, 64))
    root = project({"images.toml": _input_manifest(), "in/mask.png": image_bytes(64, 64)})
    (root / "in/base.png").symlink_to(outside)
    for command in ("plan", "apply"):
        code, _, err = run_cli(command)
        assert code == 1 and "leaves the project through a symbolic link" in err, err


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_state_folder_that_is_a_link_or_a_file_is_refused(project, run_cli, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = project({"images.toml": manifest(A)})
    if kind == "link":
        (root / ".nebula-build").symlink_to(elsewhere)
    else:
        (root / ".nebula-build").write_text("x")
    for command in ("plan", "apply", "gc"):
        code, _, err = run_cli(command)
        assert code == 1 and ".nebula-build is" in err and "Traceback" not in err, err
    assert not list(elsewhere.iterdir())


def test_a_lock_or_project_lock_that_is_a_folder_is_one_line(project, run_cli):
    root = project({"images.toml": manifest(A)})
    (root / "images.lock").mkdir()
    code, _, err = run_cli("apply")
    assert code == 1 and "images.lock is not a file" in err
    (root / "images.lock").rmdir()
    (root / ".nebula-build/lock").unlink(missing_ok=True)
    (root / ".nebula-build/lock").mkdir(parents=True)
    code, _, err = run_cli("apply")
    assert code == 1 and ".nebula-build/lock is not a file" in err and err.count("\n") == 1


def test_a_kill_between_an_output_and_its_variants_needs_no_force(project, run_cli):
    root = project(
        {"images.toml": manifest('[images.a]\nprompt = "x"\noutput = "out/a.png"\nwidths = [32]')}
    )
    assert run_cli("apply").code == 0
    # as a kill after the main file's rename, before its variant and journal line
    (root / "out/a-32.png").unlink()
    (root / "images.lock").unlink()
    code, out, _ = run_cli("plan")
    assert code == 0 and "conflict" not in out
    assert run_cli("apply").code == 0
    assert (root / "out/a-32.png").exists()
    # and a lost lock with the whole set in place adopts it as is
    (root / "images.lock").unlink()
    code, out, _ = run_cli("plan")
    assert "the files already hold this output" in out
    assert run_cli("apply").code == 0
    assert run_cli("plan").out.startswith("No changes")


def test_a_lost_lock_over_images_that_share_a_spec_needs_no_force(project, run_cli):
    """One spec, one output key: the record of what it wrote kept only the last image's
    file, and the others read as files nebula-build did not write."""
    same = 'prompt = "one spec"\nseed = 3'
    root = project(
        {
            "images.toml": manifest(
                *(f'[images.{n}]\n{same}\noutput = "out/{n}.png"' for n in ("a", "b", "c"))
            )
        }
    )
    assert run_cli("apply").code == 0
    (root / "images.lock").unlink()  # as a kill before any journal line
    code, out, _ = run_cli("plan")
    assert code == 0 and "conflict" not in out and out.count("already hold") == 3, out
    assert run_cli("apply").code == 0
    assert run_cli("plan").out.startswith("No changes")


def test_temp_files_left_anywhere_are_removed_by_apply_and_gc(project, run_cli):
    root = project({"images.toml": manifest(A, '[assets]\nmanifest = "meta/images.json"')})
    assert run_cli("apply").code == 0
    shard = next(p for p in (root / ".nebula-build/cache").iterdir() if len(p.name) == 2)
    leftovers = [
        shard / f".{'0' * 64}{TEMP_MARKER}abcd1234",
        root / "out" / f".a.png{TEMP_MARKER}abcd1234",
        root / "meta" / f".images.json{TEMP_MARKER}abcd1234",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    assert run_cli("apply").code == 0
    assert not any(path.exists() for path in leftovers)
    for path in leftovers:
        path.write_bytes(b"partial")
    assert run_cli("gc").code == 0
    assert not any(path.exists() for path in leftovers)


def test_a_second_manifest_in_the_folder_has_its_own_lock(project, run_cli):
    root = project(
        {
            "images.toml": manifest(A),
            "other.toml": manifest('[images.b]\nprompt = "b"\noutput = "out/b.png"'),
        }
    )
    assert run_cli("apply").code == 0
    assert run_cli("-f", "other.toml", "apply").code == 0
    assert (root / "other.lock").exists()
    for args in (("apply",), ("-f", "other.toml", "apply")):
        code, out, _ = run_cli(*args)
        assert code == 0 and "delete" not in out
    assert (root / "out/a.png").exists() and (root / "out/b.png").exists()


@pytest.mark.parametrize(
    ("state_path", "command"),
    [
        ("cache", "apply"),
        ("cache/outputs", "apply"),
        ("cache/written", "apply"),
        ("gallery", "gallery"),
        ("gallery/index.html", "gallery"),
        ("backup", "apply"),
        ("manifests", "apply"),
        ("journal", "plan"),
        ("lock-snapshot.json", "plan"),
        ("files.json", "plan"),
        ("specs.json", "plan"),
        ("failures.json", "status"),
    ],
)
def test_a_link_inside_the_state_folder_is_refused(project, run_cli, tmp_path, state_path, command):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bashrc").write_text("precious")
    root = project({"images.toml": manifest(A)})
    link = root / ".nebula-build" / state_path
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / "bashrc" if "." in state_path or state_path == "journal" else outside)
    code, _, err = run_cli(command)
    assert code == 1 and f".nebula-build/{state_path} is a symbolic link" in err, err
    assert sorted(p.name for p in outside.iterdir()) == ["bashrc"]
    assert (outside / "bashrc").read_text() == "precious"


def test_a_lock_linked_to_a_device_or_a_fifo_is_refused_without_hanging(project):
    root = project({"images.toml": manifest(A)})
    (root / "images.lock").symlink_to("/dev/zero")
    os.mkfifo(root / "journal-fifo")
    for setup in ("link", "fifo"):
        if setup == "fifo":
            (root / "images.lock").unlink()
            (root / ".nebula-build").mkdir(exist_ok=True)
            os.mkfifo(root / ".nebula-build/journal")
        done = subprocess.run(
            [sys.executable, "-m", "nebula_build", "plan"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["files.json", "failures.json", "lock-snapshot.json"])
@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"out/a.png": 5}', "[1, 2]"])
def test_odd_state_files_are_ignored_never_a_traceback(project, run_cli, name, content):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    (root / ".nebula-build" / name).write_text(content)
    for command in ("plan", "status", "gallery", "apply"):
        code, _, err = run_cli(command)
        assert code == 0 and "Traceback" not in err, (command, err)


def test_a_spec_cache_from_a_checkout_is_not_believed(project, run_cli, tmp_path, monkeypatch):
    """specs.json lets a plan skip validation: one that was not written on this account
    (committed in a pull request, with a forged size) is a miss."""
    from PIL import Image

    root = project({"images.toml": manifest(A)})
    assert run_cli("plan").code == 0
    specs = root / ".nebula-build/specs.json"
    mac, _, text = specs.read_bytes().partition(b"\n")
    forged = text.replace(b", 64, 64, ", b", 4000, 4000, ")
    assert forged != text
    for crafted in (forged, b"0" * 64 + b"\n" + forged, mac + b"\n" + forged):
        specs.write_bytes(crafted)
        code, _, err = run_cli("apply", "--replace", "a")
        assert code == 0, err
        with Image.open(root / "out/a.png") as image:
            assert image.size == (64, 64)


def test_a_cache_shard_linked_out_is_never_read_written_or_emptied(project, run_cli, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("c" * 64)
    victim.write_text("precious")
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    cache = root / ".nebula-build/cache"
    shard = next(p for p in cache.iterdir() if len(p.name) == 2)
    (cache / "cc").symlink_to(outside)
    assert run_cli("gc").code == 0
    assert victim.read_text() == "precious"
    # the image's own shard swapped for a link: a miss, and a plain folder again
    for entry in shard.iterdir():
        (outside / entry.name).write_bytes(entry.read_bytes())
    import shutil

    shutil.rmtree(shard)
    shard.symlink_to(outside)
    (root / "out/a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert not shard.is_symlink() and "(generated)" in err
    assert victim.read_text() == "precious"


def test_a_seal_key_that_came_with_the_checkout_is_never_used(project, run_cli, monkeypatch):
    """XDG_CACHE_HOME inside the project (a CI cache pattern): a committed key (0644)
    must not let a forged specs.json skip validation."""
    import hmac
    from hashlib import sha256

    from PIL import Image

    from nebula_build.state import seal

    root = project({"images.toml": manifest(A)})
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / ".cache"))
    seal._key.cache_clear()
    key = b"k" * 32
    (root / ".cache/nebula-build").mkdir(parents=True)
    (root / ".cache/nebula-build/state.key").write_bytes(key)  # as git checks it out: 0644
    assert run_cli("plan").code == 0
    specs = root / ".nebula-build/specs.json"
    assert not specs.exists()  # nothing is sealed with a key others can read
    text = json_specs_of(root, run_cli)
    forged = text.replace(b", 64, 64, ", b", 4000, 4000, ")
    specs.write_bytes(hmac.new(key, forged, sha256).hexdigest().encode() + b"\n" + forged)
    assert run_cli("apply").code == 0
    with Image.open(root / "out/a.png") as image:
        assert image.size == (64, 64)
    seal._key.cache_clear()


def json_specs_of(root: Path, run_cli) -> bytes:
    """The spec cache's JSON as this account would seal it (written with a private key)."""
    import shutil

    from nebula_build.state import seal

    (root / ".cache").rename(root / ".cache-committed")
    seal._key.cache_clear()
    assert run_cli("plan").code == 0
    text = (root / ".nebula-build/specs.json").read_bytes().partition(b"\n")[2]
    (root / ".nebula-build/specs.json").unlink()
    shutil.rmtree(root / ".cache")
    (root / ".cache-committed").rename(root / ".cache")
    seal._key.cache_clear()
    return text


@pytest.mark.parametrize("how", ["default", "-f"])
def test_a_manifest_that_is_a_link_is_refused(project, run_cli, tmp_path, how):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "site.toml").write_text(manifest(A))
    name = "images.toml" if how == "default" else "other.toml"
    root = project({})
    (root / name).symlink_to(elsewhere / "site.toml")
    args = ("apply",) if how == "default" else ("-f", name, "apply")
    code, _, err = run_cli(*args)
    assert code == 1 and f"{name} is a symbolic link" in err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["site.toml"]


@pytest.mark.parametrize("name", [".toml", "..toml"])
def test_a_manifest_without_a_name_is_refused(project, run_cli, name):
    project({name: manifest(A)})
    code, _, err = run_cli("-f", name, "plan")
    assert code == 1 and "is not a manifest name" in err


def test_odd_folders_and_fifos_in_the_state_folder_are_never_a_traceback_or_a_hang(project):
    root = project({"images.toml": manifest(A)})
    run = [sys.executable, "-m", "nebula_build"]
    assert subprocess.run([*run, "apply"], cwd=root, check=False, timeout=60).returncode == 0
    state = root / ".nebula-build"
    _chain(state, 1100)  # deeper than any recursion limit
    shard = next(p for p in (state / "cache/outputs").iterdir())
    record = next(shard.iterdir())
    record.unlink()
    record.mkdir()
    (state / "cache/cd" / ("c" * 64)).mkdir(parents=True)
    (state / "noop").unlink(missing_ok=True)
    os.mkfifo(state / "noop")
    try:
        for command in ("plan", "apply", "gc", "status"):
            done = subprocess.run(
                [*run, command], cwd=root, capture_output=True, text=True, timeout=60, check=False
            )
            assert "Traceback" not in done.stderr, (command, done.stderr)
            assert done.returncode in (0, 1), (command, done.stderr)
    finally:
        _chain(state, 0)  # shutil.rmtree (pytest's clean-up) recurses: remove it here


def _chain(folder: Path, depth: int) -> None:
    """Make `folder/a/a/…` `depth` levels deep, or with 0 remove the whole chain;
    level by level through descriptors, as no recursive tool copes with it."""
    fds = [os.open(folder, os.O_RDONLY)]
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fds[-1])
            fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
        while depth == 0 and os.path.isdir(f"/proc/self/fd/{fds[-1]}/a"):
            fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
        while depth == 0 and len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("a", dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


def test_a_lock_entry_naming_another_image_s_file_through_a_link_is_refused(project, run_cli):
    """A pull request adds `alias` (a link to `img/`) and a lock entry for an image the
    manifest does not declare, its output `alias/logo.png` with logo's digest. The
    names differ, so the plan deleted it, and apply deleted img/logo.png, another
    image's output. Now the entry is refused in one line."""
    root = project(
        {
            "images.toml": manifest(
                '[images.hero]\nprompt = "a hero"\noutput = "img/hero.png"',
                '[images.logo]\nprompt = "a fox"\noutput = "img/logo.png"',
            )
        }
    )
    assert run_cli("apply").code == 0
    logo = (root / "img/logo.png").read_bytes()
    (root / "alias").symlink_to("img", target_is_directory=True)
    lock = (root / "images.lock").read_text()
    table = lock[lock.index("[images.logo]") :].split("\n[", 1)[0]
    evil = table.replace("[images.logo]", "[images.evil]")
    evil = evil.replace('"img/logo.png"', '"alias/logo.png"')
    assert hashlib.sha256(logo).hexdigest() in evil
    (root / "images.lock").write_text(f"{lock}\n{evil}\n")
    for command in ("plan", "apply"):
        code, _, err = run_cli(command)
        assert code == 1 and "Traceback" not in err, err
        assert (
            "images.lock: images.evil: alias/logo.png is img/logo.png of logo under another "
            "name (a link); restore the lock" in err
        ), err
        assert len(err.strip().splitlines()) == 1, err
    assert (root / "img/logo.png").read_bytes() == logo


def test_a_lock_entry_behind_a_link_out_of_the_project_is_refused(project, run_cli, tmp_path):
    """A pull request adds `ext`, a link out of the project, and a lock entry whose
    output is a file there: the plan hashed that file (a large one stalled it, and the
    plan told whether it held a digest the pull request named). Now refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not yours")
    root = project(
        {"images.toml": manifest('[images.hero]\nprompt = "a hero"\noutput = "hero.png"')}
    )
    assert run_cli("apply").code == 0
    (root / "ext").symlink_to(outside, target_is_directory=True)
    lock = (root / "images.lock").read_text()
    table = lock[lock.index("[images.hero]") :].split("\n[", 1)[0]
    evil = table.replace("[images.hero]", "[images.evil]").replace('"hero.png"', '"ext/secret.png"')
    (root / "images.lock").write_text(f"{lock}\n{evil}\n")
    code, _, err = run_cli("plan")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "images.lock: images.evil: ext/secret.png is outside the project (a link" in err


def test_a_lock_entry_whose_file_is_a_link_out_of_the_project_is_not_read(
    project, run_cli, tmp_path
):
    """The same with the file itself a link out of the project, `secret.png`: the plan
    hashed what it leads to, and said "delete secret.png" where that held the digest
    the entry named, "changed by hand" where not. Now it is never read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"not yours")
    root = project(
        {"images.toml": manifest('[images.hero]\nprompt = "a hero"\noutput = "hero.png"')}
    )
    assert run_cli("apply").code == 0
    (root / "secret.png").symlink_to(outside / "secret.png")
    lock = (root / "images.lock").read_text()
    table = lock[lock.index("[images.hero]") :].split("\n[", 1)[0]
    digest = table.split('digest = "')[1][:64]
    plans = []
    for named in (hashlib.sha256(b"not yours").hexdigest(), "0" * 64):
        evil = table.replace("[images.hero]", "[images.evil]").replace('"hero.png"', '"secret.png"')
        (root / "images.lock").write_text(f"{lock}\n{evil.replace(digest, named)}\n")
        planned = run_cli("plan")
        assert planned.code == 0, planned.err
        plans.append(planned.out)
    assert plans[0] == plans[1], plans
    assert run_cli("apply").code == 0
    assert (outside / "secret.png").read_bytes() == b"not yours"
