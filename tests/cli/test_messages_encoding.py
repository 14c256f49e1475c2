"""A manifest saved by an editor that adds a byte-order mark (Notepad) is read as the
same manifest; one saved as UTF-16 or UTF-32 (a UTF-8 byte-order mark before it or not),
or in a legacy encoding, says which and to save it as UTF-8, at the line and column of
the first byte that is not UTF-8; a data file saved so says the same."""

from __future__ import annotations

import pytest

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
    assert err.startswith(
        "error: images.toml:10:10: images.hero.seed: invalid TOML: the line goes on after"
    ), err


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


#: each encoding a manifest or a data file is saved in by mistake, and what it is said to be
WIDE = [
    *((encoding, "saved as UTF-32") for encoding in ("utf-32", "utf-32-le", "utf-32-be")),
    *((encoding, "saved as UTF-16") for encoding in ("utf-16", "utf-16-le", "utf-16-be")),
]
AFTER_BOM = "after a UTF-8 byte-order mark"


def _saved(text: str, encoding: str, *, bom: bool) -> bytes:
    return (BOM if bom else b"") + text.encode(encoding)


@pytest.mark.parametrize("bom", [False, True], ids=["alone", "after-utf8-bom"])
@pytest.mark.parametrize(("encoding", "said"), WIDE)
def test_a_manifest_in_a_wide_encoding_says_which(encoding, said, bom, project, run_cli):
    project({"images.toml": _saved(MANIFEST, encoding, bom=bom)})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    said += f" {AFTER_BOM}" if bom else ""
    assert err == f"error: images.toml: {said}; save it as UTF-8\n"


ROWS = (
    '[images.product]\nrows = "data/p.csv"\nid = "sku"\nprompt = "{description}"\n'
    'output = "out/{sku}.png"\n'
)


@pytest.mark.parametrize("bom", [False, True], ids=["alone", "after-utf8-bom"])
@pytest.mark.parametrize(("encoding", "said"), WIDE)
def test_a_data_file_in_a_wide_encoding_says_which(encoding, said, bom, project, run_cli):
    data = _saved("sku,description\na,tea\n", encoding, bom=bom)
    project({"images.toml": HEAD + ROWS, "data/p.csv": data})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    said += f" {AFTER_BOM}" if bom else ""
    assert err == f"error: data/p.csv:1: images.product: {said}; save it as UTF-8\n"


POSTS = (
    '[images.cover]\nrows = { files = "posts/*.md" }\nprompt = "{title}"\n'
    'output = "out/{slug}.png"\n'
)


@pytest.mark.parametrize("bom", [False, True], ids=["alone", "after-utf8-bom"])
@pytest.mark.parametrize(
    ("declared", "path", "text", "at"),
    [
        (ROWS, "data/p.csv", "sku,description\na,tea\nb,café au lait\n", "3:6: images.product"),
        (
            ROWS.replace("p.csv", "p.json"),
            "data/p.json",
            '[{"sku": "a", "description": "café"}]\n',
            "1:34: images.product",
        ),
        (POSTS, "posts/a.md", "---\ntitle: Déjà vu\n---\n", "2:9: images.cover"),
    ],
)
def test_a_latin1_data_file_names_the_line_and_column_of_the_byte(
    declared, path, text, at, bom, project, run_cli
):
    project({"images.toml": HEAD + declared, path: _saved(text, "latin-1", bom=bom)})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    byte = "byte 0xe9, 'é' in Latin-1"
    assert err == f"error: {path}:{at}: not UTF-8 text ({byte}); save it as UTF-8\n"
