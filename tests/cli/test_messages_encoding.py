"""A manifest saved by an editor that adds a byte-order mark (Notepad) is read as the
same manifest; one saved as UTF-16 or in a legacy encoding says to save it as UTF-8,
at the line and column of the first byte that is not UTF-8."""

from __future__ import annotations

from tests.manifests import PREVIEW as HEAD

BOM = b"\xef\xbb\xbf"
MANIFEST = HEAD + '[images.hero]\nprompt = "a calm sea"\nseed = 1\noutput = "hero.png"\n'


def test_a_manifest_with_a_byte_order_mark_plans_and_keeps_its_image_keys(project, run_cli):
    project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    project({"images.toml": BOM + MANIFEST.encode()})
    code, out, err = run_cli("plan")
    assert (code, err) == (0, "")
    assert "No changes" in out


def test_a_problem_after_a_byte_order_mark_keeps_its_line_and_column(project, run_cli):
    project({"images.toml": BOM + MANIFEST.replace("seed = 1", "seed = 1 x").encode()})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.startswith("error: images.toml:10:10: invalid TOML: Expected newline"), err


def test_a_manifest_saved_as_utf16_says_to_save_it_as_utf8(project, run_cli):
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        project({"images.toml": MANIFEST.encode(encoding)})
        code, out, err = run_cli("plan")
        assert (code, out) == (1, ""), encoding
        assert err == "error: images.toml: saved as UTF-16; save it as UTF-8\n", encoding


def test_a_latin1_manifest_names_the_line_and_column_of_the_byte(project, run_cli):
    latin1 = MANIFEST.replace("calm sea", "calm séa").encode("latin-1")
    for saved in (latin1, BOM + latin1):
        project({"images.toml": saved})
        code, out, err = run_cli("plan")
        assert (code, out) == (1, "")
        assert err == (
            "error: images.toml:9:19: not UTF-8 text (byte 0xe9, 'é' in Latin-1); "
            "save it as UTF-8\n"
        )
