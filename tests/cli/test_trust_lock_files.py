"""A lock entry removes or moves away only a file nebula-build wrote for it: one a
pull request's lock names by its digest (a logo drawn by hand) stays, and a fresh
checkout still removes the files of an image really removed, in every format."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pytest

from tests.manifests import PREVIEW

A = '[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
STAYS = "assets/logo.png stays: it does not carry the record nebula-build writes"


def manifest(*blocks: str) -> str:
    return PREVIEW + "".join(f"\n{block}" for block in blocks)


def drawn_by_hand() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh_checkout(root: Path) -> None:
    """What a CI job starts from: the committed files, none of the tool's state."""
    shutil.rmtree(root / ".nebula-build")


def crafted_entry(name: str, output: str, digest: str, key: str = "ab" * 32) -> str:
    return (
        f'\n[images.{name}]\nbackend = "preview"\nmodel = "m"\noutput = "{output}"\n'
        f'digest = "{digest}"\ngeneration_key = "{key}"\noutput_key = "{key}"\nparams = {{}}\n'
    )


def test_a_lock_entry_for_an_undeclared_image_never_deletes_a_file_drawn_by_hand(project, run_cli):
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A), "assets/logo.png": logo})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(lock.read_text() + crafted_entry("x", "assets/logo.png", sha(logo)))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"removed from the manifest; {STAYS}" in out
    assert "delete it by hand if it is not needed" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert STAYS in out + err
    assert (root / "assets/logo.png").read_bytes() == logo
    assert "[images.x]" not in lock.read_text()
    assert run_cli("plan").out.startswith("No changes")


def test_a_lock_entry_naming_a_file_drawn_by_hand_as_an_old_output_copies_it_and_keeps_it(
    project, run_cli
):
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A), "assets/logo.png": logo})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    text = lock.read_text().replace('output = "out/a.png"', 'output = "assets/logo.png"')
    digest = next(line for line in text.splitlines() if line.startswith("digest = "))
    lock.write_text(text.replace(digest, f'digest = "{sha(logo)}"'))
    fresh_checkout(root)
    (root / "out/a.png").unlink()  # outputs made in CI, not committed
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "output copied from assets/logo.png, which stays" in out
    assert run_cli("apply").code == 0
    assert (root / "assets/logo.png").read_bytes() == logo


def test_a_lock_entry_naming_a_file_drawn_by_hand_as_an_output_it_no_longer_writes_keeps_it(
    project, run_cli
):
    logo = drawn_by_hand()
    root = project({"images.toml": manifest(A), "assets/logo.png": logo})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(
        lock.read_text().replace('output = "out/a.png"', 'output = "assets/logo.png"')
        + crafted_entry("b", "out/b.png", "cd" * 32)
    )
    text = lock.read_text()
    first_digest = next(line for line in text.splitlines() if line.startswith("digest = "))
    first_key = next(line for line in text.splitlines() if line.startswith("generation_key"))
    text = text.replace(first_digest, f'digest = "{sha(logo)}"', 1)
    lock.write_text(text.replace(first_key, f'generation_key = "{"ab" * 32}"', 1))
    fresh_checkout(root)
    (root / "out/a.png").unlink()
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "keeps assets/logo.png: it does not carry the record nebula-build writes" in out
    assert "removes assets/logo.png" not in out
    assert run_cli("apply").code == 0
    assert (root / "assets/logo.png").read_bytes() == logo


@pytest.mark.parametrize("ext", ["png", "webp", "jpg", "avif"])
@pytest.mark.parametrize(
    "options",
    ["", "widths = [16, 32]", 'background = "transparent"\ntrim = true'],
    ids=["plain", "variants", "trimmed"],
)
def test_a_fresh_checkout_removes_every_file_of_an_image_removed(project, run_cli, ext, options):
    if ext == "jpg" and "transparent" in options:
        pytest.skip("JPEG has no transparency")
    b = f'[images.b]\nprompt = "a boat"\noutput = "out/b.{ext}"\n{options}\n'
    root = project({"images.toml": manifest(A, b)})
    assert run_cli("apply").code == 0
    written = sorted(p.name for p in (root / "out").iterdir() if p.name.startswith("b"))
    assert written
    (root / "images.toml").write_text(manifest(A))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "stays" not in out
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "out").iterdir()) == ["a.png"]


def test_a_file_written_without_metadata_is_removed_where_it_was_written_and_kept_elsewhere(
    project, run_cli
):
    b = '[images.b]\nprompt = "a boat"\noutput = "out/b.webp"\nmetadata = false\n'
    root = project({"images.toml": manifest(A, b)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(A))
    kept = root / ".nebula-build"
    shutil.copytree(kept, root.parent / "state")
    fresh_checkout(root)
    code, out, _ = run_cli("plan")
    assert "out/b.webp stays: it does not carry the record" in out
    shutil.rmtree(kept)
    shutil.copytree(root.parent / "state", kept)  # the checkout that wrote it
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert not (root / "out/b.webp").exists()


def test_an_output_moved_in_the_manifest_still_moves_in_a_fresh_checkout(project, run_cli):
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(A.replace("out/a.png", "img/a.png")))
    fresh_checkout(root)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "output moved from out/a.png" in out
    assert run_cli("apply").code == 0
    assert not (root / "out/a.png").exists()
    assert (root / "img/a.png").exists()


def test_a_prompt_s_hidden_characters_are_escapes_in_the_lock(project, run_cli):
    """A pull request's diff of images.lock shows a bidirectional override as the text
    it reverses: the lock writes it, and the like, as an escape."""
    hidden = "a lighthouse\\u202e gnp.exe \\u200b \\U000e0041"
    root = project({"images.toml": manifest(A.replace("a lighthouse", hidden))})
    assert run_cli("apply").code == 0
    text = (root / "images.lock").read_text(encoding="utf-8")
    assert "\u202e" not in text and "\u200b" not in text and "\U000e0041" not in text
    assert 'prompt = "a lighthouse\\u202e gnp.exe \\u200b \\U000e0041"' in text
    assert run_cli("plan", "--detailed-exitcode").code == 0  # read back as written


@pytest.mark.parametrize(
    ("lock", "said"),
    [
        (
            "# only a comment\n",
            "images.lock has no `version`: it is not a lock nebula-build wrote; restore it "
            "from version control or delete it",
        ),
        ("", "images.lock has no `version`"),
        ("version = true\n", "images.lock has version true; this nebula-build reads version 1"),
        ("version = 1.0\n", "images.lock has version 1.0; this nebula-build reads version 1"),
    ],
)
def test_a_lock_without_the_integer_version_1_is_refused_in_words(project, run_cli, lock, said):
    """It said `has version None`; `true` and `1.0` passed for 1."""
    project(
        {
            "images.toml": PREVIEW + '[images.a]\nprompt = "x"\noutput = "a.png"\n',
            "images.lock": lock,
        }
    )
    code, out, err = run_cli("status")
    assert code == 1 and out == ""
    assert err.startswith(f"error: {said}") and err.count("\n") == 1
