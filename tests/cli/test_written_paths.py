"""Every file the manifest writes (outputs, variants, atlas sheets, frame maps and
exports, the asset manifest) is checked against every other and against what the
manifest reads, by `validate` and `plan`, before anything is paid for: none is
written inside another, and none over an input image or a data file of `rows`
(nor where a pattern of posts would read it back)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_trust_paths import image_bytes
from tests.conftest import nebula_manifest

PNG = "89504e470d0a1a0a"


def preview(images: dict[str, dict[str, object]], *tables: str) -> str:
    """A manifest on the offline preview backend, with more tables after the images."""
    text = nebula_manifest(images).replace('backend = "nebula"', 'backend = "preview"', 1)
    return text + "".join(f"\n{table.strip()}\n" for table in tables)


def refused_before_anything_is_made(run_cli, root: Path, message: str) -> None:
    """validate, plan and `apply --force` all stop at one line; nothing is written."""
    before = sorted(path for path in root.rglob("*") if ".nebula-build" not in path.parts)
    for command in (["validate"], ["plan"], ["apply", "--force"]):
        code, _, err = run_cli(*command)
        assert code == 1, (command, err)
        assert message in err and len(err.strip().splitlines()) == 1, (command, err)
        assert "Traceback" not in err
    after = sorted(path for path in root.rglob("*") if ".nebula-build" not in path.parts)
    assert after == before


COVER = {"rows": {"files": "posts/*.md"}, "prompt": "cover for {slug}", "output": "img/{slug}.png"}
PRODUCT = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
FILES = {
    "posts/hello.md": "---\ntitle: Hello\n---\nText.\n",
    "data/p.csv": "sku,name\nA1,tea\n",
    "img/x/hello-32.png": "---\ntitle: A post named like a variant\n---\n",
}


@pytest.mark.parametrize(
    ("images", "tables", "message"),
    [
        (
            {"cover": COVER},
            ['[assets]\nmanifest = "posts/0.md"'],
            "assets.manifest: posts/0.md is read by images.cover as a post (posts/*.md)",
        ),
        (
            {"cover": COVER},
            ['[assets]\nmanifest = "posts/hello.md"'],
            "assets.manifest: posts/hello.md is read by images.cover as a post (posts/*.md)",
        ),
        (
            {"product": PRODUCT},
            ['[assets]\nmanifest = "data/p.csv"'],
            "assets.manifest: data/p.csv is read by images.product as its rows",
        ),
        (
            {"product": {**PRODUCT, "rows": {"file": "data/p.csv"}}},
            ['[atlases.s]\nimages = ["product"]\noutput = "sheet.png"\naseprite = "data/p.csv"'],
            "atlases.s.aseprite: data/p.csv is read by images.product as its rows",
        ),
        (
            {
                "cover": {**COVER, "rows": {"files": "img/*"}},
                "a": {"prompt": "x", "output": "img/a.png"},
            },
            [],
            "images.a.output: img/a.png is read by images.cover as a post (img/*)",
        ),
        (
            {
                "cover": {**COVER, "rows": {"files": "img/**/*-32.png"}, "output": "o/{slug}.png"},
                "a": {"prompt": "x", "output": "img/x/a.png", "widths": [32]},
            },
            [],
            "images.a.widths: img/x/a-32.png is read by images.cover as a post (img/**/*-32.png)",
        ),
        (  # on macOS and Windows, Data/p.csv is data/p.csv
            {"product": PRODUCT},
            ['[assets]\nmanifest = "Data/P.csv"'],
            "assets.manifest: Data/P.csv is read by images.product as its rows",
        ),
        (
            {"cover": COVER},
            ['[assets]\nmanifest = "Posts/0.MD"'],
            "assets.manifest: Posts/0.MD is read by images.cover as a post (posts/*.md)",
        ),
    ],
)
def test_a_file_the_rows_read_is_never_written(images, tables, message, project, run_cli):
    root = project({"images.toml": preview(images, *tables), **FILES})
    before = {name: (root / name).read_bytes() for name in FILES}
    refused_before_anything_is_made(run_cli, root, message)
    assert {name: (root / name).read_bytes() for name in FILES} == before


def test_files_beside_a_pattern_of_posts_or_a_data_file_are_written(project, run_cli):
    cover = {**COVER, "rows": {"files": "img/**/*-32.png"}, "output": "o/{slug}.png"}
    a = {"prompt": "x", "output": "img/x/a.png", "widths": [16]}
    tables = ['[assets]\nmanifest = "data/p.json"']
    root = project({"images.toml": preview({"cover": cover, "a": a}, *tables), **FILES})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "img/x/a-16.png").read_bytes()[:8].hex() == PNG
    assert (root / "o/hello-32.png").is_file() and (root / "data/p.json").is_file()


def test_an_input_image_is_never_written_even_by_another_image(project, run_cli):
    fill = {
        "model": "black-forest-labs/FLUX.1-Fill-dev",
        "prompt": "x",
        "image": "in/base.png",
        "mask": "in/mask.png",
        "output": "out/fill.png",
    }
    root = project(
        {
            "images.toml": preview({"fill": fill, "b": {"prompt": "y", "output": "in/mask.png"}}),
            "in/base.png": image_bytes(64, 64),
            "in/mask.png": image_bytes(64, 64),
        }
    )
    message = "images.b.output: in/mask.png is read by images.fill as its mask"
    refused_before_anything_is_made(run_cli, root, message)


@pytest.mark.parametrize(
    ("images", "tables", "message"),
    [
        (
            {
                "a": {"prompt": "x", "output": "o/a.png"},
                "b": {"prompt": "y", "output": "o/a.png/b.png"},
            },
            [],
            "images.b.output: o/a.png/b.png is inside o/a.png, which images.a writes as a file",
        ),
        (
            {
                "b": {"prompt": "y", "output": "o/a.png/x/b.png"},
                "a": {"prompt": "x", "output": "o/a.png"},
            },
            [],
            "images.b.output: o/a.png/x/b.png is inside o/a.png, which images.a writes as a file",
        ),
        (
            {
                "a": {"prompt": "x", "output": "o/a.png", "widths": [32]},
                "b": {"prompt": "y", "output": "o/a-32.png/b.png"},
            },
            [],
            "images.b.output: o/a-32.png/b.png is inside o/a-32.png, which images.a writes",
        ),
        (
            {"a": {"prompt": "x", "output": "o/a.png"}},
            ['[atlases.s]\nimages = ["a"]\noutput = "o/s.png"\nframes = "o/a.png/s.json"'],
            "atlases.s.frames: o/a.png/s.json is inside o/a.png, which images.a writes as a file",
        ),
        (
            {"a": {"prompt": "x", "output": "o/a.png"}},
            [
                '[atlases.s]\nimages = ["a"]\noutput = "o/s.png"',
                '[assets]\nmanifest = "o/s.json/assets.json"',
            ],
            "assets.manifest: o/s.json/assets.json is inside o/s.json, which atlases.s writes",
        ),
        (
            {
                "a": {"prompt": "x", "output": "o/a.png"},
                "b": {"prompt": "y", "output": "O/A.png/b.png"},
            },
            [],
            "images.b.output: O/A.png/b.png is inside o/a.png, which images.a writes as a file",
        ),
        (
            {"a": {"prompt": "x", "output": "o/a.png"}, "b": {"prompt": "y", "output": "O/A.png"}},
            [],
            "images.b.output: O/A.png is also written by images.a, as o/a.png: paths that differ "
            "only in case (or Unicode form) are one file on macOS and Windows",
        ),
        (  # é composed, and e with a combining accent: one name on macOS
            {
                "a": {"prompt": "x", "output": "o/caf\u00e9.png"},
                "b": {"prompt": "y", "output": "o/cafe\u0301.png"},
            },
            [],
            "images.b.output: o/cafe\u0301.png is also written by images.a, as o/caf\u00e9.png",
        ),
    ],
)
def test_a_file_written_where_another_is_a_folder_is_refused(
    images, tables, message, project, run_cli
):
    root = project({"images.toml": preview(images, *tables)})
    refused_before_anything_is_made(run_cli, root, message)


def test_names_that_only_full_case_folding_joins_are_two_files(project, run_cli):
    """`ß` is not `ss`, nor `ﬁ` `fi`, to NTFS or APFS: both pairs are written."""
    images = {
        "a": {"prompt": "x", "output": "o/stra\u00dfe.png"},
        "b": {"prompt": "y", "output": "o/strasse.png"},
        "c": {"prompt": "z", "output": "o/\ufb01le.png"},
        "d": {"prompt": "w", "output": "o/file.png"},
    }
    root = project({"images.toml": preview(images)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(list((root / "o").iterdir())) == 4


def test_written_files_in_many_folders_side_by_side_are_fine(project, run_cli):
    images = {
        f"i{n}": {"prompt": "x", "output": f"o/{n % 3}/{n}.png", "widths": [32]} for n in range(9)
    }
    tables = ['[atlases.s]\nimages = ["i0"]\noutput = "o/0.png"', '[assets]\nmanifest = "o/a.json"']
    root = project({"images.toml": preview(images, *tables)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "o/0.png").read_bytes()[:8].hex() == PNG
    assert "i8" in json.loads((root / "o/a.json").read_text())["images"]


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("o/a:b.png", "o/a:b.png' contains :, which Windows does not allow in a file's name"),
        ('o/a"b.png', "contains \", which Windows does not allow in a file's name"),
        ("o/con.png", "has a name Windows keeps for a device ('con.png': CON, NUL, COM1, …)"),
        ("o/NUL.tar.png", "has a name Windows keeps for a device ('NUL.tar.png'"),
        ("o/x./a.png", "has a name that ends with a dot ('x.'), which Windows drops"),
        ("o/x /a.png", "has a name that ends with a space ('x '), which Windows drops"),
    ],
)
def test_a_file_a_checkout_on_windows_cannot_write_is_refused(written, message, project, run_cli):
    """Outputs are committed: a name Windows refuses makes git there fail to check out."""
    root = project({"images.toml": preview({"a": {"prompt": "x", "output": written}})})
    refused_before_anything_is_made(run_cli, root, f"images.a.output: '{written}")
    refused_before_anything_is_made(run_cli, root, message)


@pytest.mark.parametrize("sku", ['a<b>"c', "CON", "com1"])
def test_a_row_that_would_name_a_file_windows_refuses_is_an_error(sku, project, run_cli):
    """A pull request's data file fills in names: one Windows refuses is refused."""
    csv = f'sku,name\nok,fine\n"{sku.replace(chr(34), chr(34) * 2)}",odd\n'
    root = project({"images.toml": preview({"p": PRODUCT}), "data/p.csv": csv})
    refused_before_anything_is_made(run_cli, root, f"images.p[{sku}].output: 'img/{sku}.png")


@pytest.mark.parametrize("kind", ["atlas", "variant", "asset manifest"])
def test_every_file_written_is_held_to_windows_names(kind, project, run_cli):
    image = {"prompt": "x", "output": "o/a.png"}
    tables = []
    if kind == "atlas":
        tables = ['[atlases.s]\nimages = ["a"]\noutput = "o/aux.png"\nframes = "o/s.json"']
    elif kind == "variant":
        image |= {"widths": [32], "variant_pattern": "{stem}:{width}{ext}"}
    else:
        tables = ['[assets]\nmanifest = "o/assets?.json"']
    root = project({"images.toml": preview({"a": image}, *tables)})
    refused_before_anything_is_made(run_cli, root, "Windows")


def test_a_device_name_with_a_superscript_is_refused_too(project, run_cli):
    root = project({"images.toml": preview({"a": {"prompt": "x", "output": "o/COM\u00b9.png"}})})
    refused_before_anything_is_made(run_cli, root, "has a name Windows keeps for a device")
