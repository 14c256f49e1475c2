"""`rows` with a `matrix`: every row kept times every combination, through the CLI."""

from __future__ import annotations

import json
import time

import pytest

from tests.cli.test_rows import CSV, plan_actions, prompts
from tests.conftest import nebula_manifest

SHOTS = {
    "rows": "data/products.csv",
    "id": "sku",
    "where": "category == 'tea'",
    "matrix": {"shot": ["hero", "thumb"]},
    "prompt": "{shot} photo of {name}",
    "seed": "{stock} * 0 + {index} + 7",
    "output": "img/{sku}-{shot}.png",
}
NAMES = ["product[T-1,hero]", "product[T-1,thumb]", "product[T-2,hero]", "product[T-2,thumb]"]


def preview(images: dict[str, dict[str, object]]) -> str:
    return nebula_manifest(images).replace('backend = "nebula"', 'backend = "preview"')


def test_every_row_kept_makes_every_combination(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"product": SHOTS}), "data/products.csv": CSV})
    assert list(plan_actions(run_cli)) == NAMES  # row by row, the matrix's order in each
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert prompts(nebula_server) == [
        "hero photo of Black tea",
        "hero photo of Green tea",
        "thumb photo of Black tea",
        "thumb photo of Green tea",
    ]
    seeds = {r.body["prompt"]: r.body["seed"] for r in nebula_server.generations}
    assert seeds["hero photo of Green tea"] == 7  # {index}: the combination's place
    assert seeds["thumb photo of Green tea"] == 8
    assert sorted(p.name for p in (root / "img").iterdir()) == [
        "T-1-hero.png",
        "T-1-thumb.png",
        "T-2-hero.png",
        "T-2-thumb.png",
    ]

    nebula_server.reset_counters()  # one row edited: its two images, no other
    data = root / "data/products.csv"
    data.write_text(CSV.replace("Green tea", "Jade tea"))
    assert run_cli("apply").code == 0
    assert prompts(nebula_server) == ["hero photo of Jade tea", "thumb photo of Jade tea"]

    nebula_server.reset_counters()  # a row filtered out: its two images go
    data.write_text(CSV.replace("Green tea,a cup of green tea,tea", "Green tea,a cup,herbal"))
    actions = plan_actions(run_cli)
    assert actions["product[T-1,hero]"] == actions["product[T-1,thumb]"] == "delete"
    assert "its row is gone from the data, or filtered out" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert nebula_server.generations == []
    assert not (root / "img/T-1-hero.png").exists()


def test_limit_counts_rows_and_each_name_selects(project, run_cli):
    product = {**SHOTS, "limit": 1}
    del product["where"]
    manifest = preview(
        {
            "product": product,
            "framed": {
                "model": "black-forest-labs/FLUX.1-Fill-dev",
                "prompt": "a frame",
                "image": "@product[T-1,hero]",
                "mask": "@product[T-1,thumb]",
                "output": "img/framed.png",
            },
            "logo": {"prompt": "a logo", "output": "img/logo.png"},
        }
    )
    project({"images.toml": manifest, "data/products.csv": CSV})
    assert list(plan_actions(run_cli)) == [
        "product[T-1,hero]",
        "product[T-1,thumb]",
        "framed",
        "logo",
    ]
    for target, expected in [
        ("product", ["product[T-1,hero]", "product[T-1,thumb]"]),
        ("product[*]", ["product[T-1,hero]", "product[T-1,thumb]"]),
        ("product[T-1,thumb]", ["product[T-1,thumb]"]),
    ]:
        code, out, err = run_cli("plan", "--json", "--target", target)
        assert code == 0, err
        assert [a["image"] for a in json.loads(out)["actions"]] == expected
    code, out, err = run_cli("apply")
    assert code == 0, err
    code, out, err = run_cli("plan", "--json", "--replace", "product[T-1,hero]")
    assert code == 0, err
    replaced = {a["image"] for a in json.loads(out)["actions"] if a["action"] != "noop"}
    assert {"product[T-1,hero]", "framed"} <= replaced
    code, _, err = run_cli("plan", "--target", "product[T-1]")
    assert code == 1
    assert "unknown image: product[T-1] (known: " in err


def test_an_atlas_takes_them_and_tags_frames_by_a_matrix_key(project, run_cli):
    manifest = preview({"product": SHOTS})
    manifest += (
        '\n[atlases.sheet]\nimages = ["product[*]"]\noutput = "img/sheet.png"\n'
        'tags = "shot"\naseprite = "img/sheet.aseprite.json"\n'
        '\n[atlases.thumbs]\nimages = ["product[*,thumb]"]\noutput = "img/thumbs.png"\n'
        '\n[assets]\nmanifest = "img/images.json"\n'
    )
    root = project({"images.toml": manifest, "data/products.csv": CSV})
    code, _, err = run_cli("apply")
    assert code == 0, err
    frames = json.loads((root / "img/sheet.aseprite.json").read_text())
    assert [tag["name"] for tag in frames["meta"]["frameTags"]] == ["hero", "thumb"]
    thumbs = json.loads((root / "img/thumbs.json").read_text())["frames"]
    assert sorted(thumbs) == ["product[T-1,thumb]", "product[T-2,thumb]"]
    code, out, err = run_cli("plan", "--json", "--target", "product[T-2,*]")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == NAMES[2:]
    assets = json.loads((root / "img/images.json").read_text())["images"]
    assert sorted(assets) == NAMES
    assert assets["product[T-2,thumb]"]["row"] == "T-2"


def test_keys_of_rows_only_and_matrix_only_images_are_unchanged(project, run_cli):
    """Keys taken before rows and a matrix could be combined: an upgrade remakes nothing."""
    images = {
        "product": {
            "rows": "data/products.csv",
            "id": "sku",
            "prompt": "product photo of {name}",
            "seed": "{year} * 100",
            "output": "img/{sku}.png",
        },
        "enemy": {
            "matrix": {"kind": ["slime", "bat"], "pose": ["idle", "attack"]},
            "prompt": "a {kind} monster, {pose} pose",
            "seed": "{index} + 100",
            "output": "sprites/{kind}-{pose}.png",
        },
    }
    root = project(
        {
            "images.toml": preview(images),
            "data/products.csv": "sku,name,year\nT-1,Green tea,20\nB-1,Sourdough,21\n",
        }
    )
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    keys = dict(
        zip(
            (line.split('"')[1] for line in lock.splitlines() if line.startswith("[images.")),
            (line.split('"')[1] for line in lock.splitlines() if line.startswith("generation_key")),
            strict=True,
        )
    )
    assert keys == {
        "enemy[bat,attack]": "0d3c0ff42cd4cd1b59406d07509dd13c0f0259756021ed356a91118c74fcdf2e",
        "enemy[bat,idle]": "9e0737986a5c2c53e679b630dd75ffe0cf010d43596b57a7fb4f6ac9a6a79b63",
        "enemy[slime,attack]": "8b740eae0d7a919f1d58e7e364558c96c4a24aca5dbd6bdd8dc6bad24ae42fa9",
        "enemy[slime,idle]": "1d3a787968608d8edd25d457304c7357acc6aa0d9d201c0f77ca3b394cd5f23d",
        "product[B-1]": "b499c0795aa245ba750561806c4f7009f9dbb95941c39d07258f6553bc04af84",
        "product[T-1]": "d295b606f1c4a215944a20d10b12242671a23004d9db92786cdbde0885d844a4",
    }


@pytest.mark.parametrize(
    ("data", "changes", "message"),
    [
        (
            CSV,
            {"matrix": {"name": ["a", "b"]}},
            "images.product.matrix.name: 'name' is also data/products.csv's column 'name': "
            "{name} would read either; give the matrix key another name",
        ),
        (
            CSV,
            {"rows": {"file": "data/products.csv", "columns": {"shot": "name"}}},
            "images.product.matrix.shot: 'shot' is also data/products.csv's column 'name' "
            "(as 'shot')",
        ),
        (
            CSV.replace("T-2,", '"T,2",'),
            {},
            "data/products.csv:3:1: images.product: id column 'sku': 'T,2' has a comma, which "
            "separates the id from the matrix's values in an image's name",
        ),
        (
            CSV,
            {"matrix": {"shot": ["hero", "wide,thumb"]}},
            "images.product.matrix.shot: 'wide,thumb' has a comma",
        ),
        (
            CSV,
            {"matrix": {"shot": ["hero", "hero"]}},
            "images.product.matrix: makes two images named product[T-1,hero]",
        ),
        (
            CSV.replace("stock", "index"),
            {},
            "images.product.seed: {index} is the combination's place in the matrix, but "
            "data/products.csv has a column 'index' too",
        ),
        (
            CSV,
            {"output": "img/{sku}.png"},
            "images.product.output: does not use {shot}: the images that differ only in "
            "'shot' would all write one file; put {shot} in the path",
        ),
        (
            CSV,
            {"where": "shot == 'hero'"},
            "images.product.where: 'shot' is a key of the matrix: `where` chooses rows",
        ),
        (
            CSV,
            {"prompt": "{shoot} of {name}"},
            "images.product.prompt: unknown placeholder {shoot} (did you mean {shot}? "
            "data/products.csv and the matrix have: {sku}",
        ),
        (
            CSV,
            {"matrix": {"shot": ["hero", ""]}, "prompt": "{shot}"},
            "data/products.csv:2: images.product: prompt is empty with this row's values "
            "and the matrix's shot = '' (and defaults)",
        ),
        (
            CSV,
            {"seed": "{price} * 100"},
            "data/products.csv:2: images.product: seed: '{price} * 100' is '4.5 * 100' here, "
            "and is not an integer expression",
        ),
        (
            CSV,
            {
                "matrix": {f"k{i}": list(range(10)) for i in range(9)},
                "prompt": "{k0}",
                "output": "{sku}{index}.png",
            },
            "images.product.matrix: makes 2,000,000,000 images (2 rows × 1,000,000,000 "
            "combinations of the matrix), more than max_images = 10000",
        ),
    ],
)
def test_a_broken_combination_is_one_clear_line(project, run_cli, data, changes, message):
    product = {**SHOTS, **changes}
    root = project(
        {"images.toml": nebula_manifest({"product": product}), "data/products.csv": data}
    )
    started = time.process_time()  # CPU seconds: other jobs' load does not count
    code, _, err = run_cli("plan")
    assert time.process_time() - started < 10  # a billion combinations are counted, not made
    assert code == 1
    assert "Traceback" not in err
    assert message in err, err
    assert all(line.startswith("error: ") for line in err.strip().splitlines()), err
    assert not (root / "images.lock").exists()


@pytest.mark.parametrize(
    ("matrix", "name"),
    [
        ({"kind": ["slime", "slime"]}, "enemy[slime]"),
        ({"kind": ["a,b", "a"], "pose": ["c", "b,c"]}, "enemy[a,b,c]"),
    ],
)
def test_a_matrix_that_names_two_images_alike_is_refused(project, run_cli, matrix, name):
    """It used to drop one of them silently (the second replaced the first)."""
    enemy = {"matrix": matrix, "prompt": "{kind}", "output": "e/{index}.png"}
    project({"images.toml": nebula_manifest({"enemy": enemy})})
    code, _, err = run_cli("plan")
    assert code == 1
    assert f"images.enemy.matrix: makes two images named {name}" in err, err


def test_a_star_in_place_of_one_value_selects_across_a_matrix(project, run_cli):
    enemy = {
        "matrix": {"kind": ["slime", "bat"], "pose": ["idle", "attack"]},
        "prompt": "a {kind}, {pose}",
        "output": "e/{kind}-{pose}.png",
    }
    project({"images.toml": preview({"enemy": enemy})})
    code, out, err = run_cli("plan", "--json", "--target", "enemy[*,idle]")
    assert code == 0, err
    assert [a["image"] for a in json.loads(out)["actions"]] == [
        "enemy[slime,idle]",
        "enemy[bat,idle]",
    ]
    code, _, err = run_cli("plan", "--target", "enemy[*,sleep]")
    assert code == 1
    assert "unknown image: enemy[*,sleep] (known: enemy[slime,idle], enemy[slime,attack]" in err


def test_the_docs_example_builds(project, run_cli):
    import re
    from pathlib import Path

    from tests.cli.test_rows_columns import HEAD, locked

    docs = (Path(__file__).parents[2] / "docs/data.md").read_text()
    section = docs.split("## Rows and a matrix", 1)[1]
    snippet = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    root = project(
        {
            "images.toml": HEAD + snippet[1],
            "data/products.csv": "sku,description,stock,seed\nT-1,Green tea,4,10\nT-2,Black,0,20\n",
            "content/posts/a.md": "---\ntitle: A\nscene: a harbour\n---\n",
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    params = locked(root)
    assert {n: p["seed"] for n, p in params.items() if n.startswith("product")} == {
        "product[T-1,hero]": 10,
        "product[T-1,thumb]": 11,
    }
    assert params["cover[a,tall]"]["prompt"] == "a harbour, editorial photo, tall framing"
    assert (root / "static/img/covers/a-square.webp").is_file()


def test_a_matrix_added_removed_or_narrowed_says_why_images_go(project, run_cli):
    plain = {k: v for k, v in SHOTS.items() if k not in ("matrix", "seed")}
    plain.update(prompt="photo of {name}", output="img/{sku}.png")
    root = project({"images.toml": preview({"product": plain}), "data/products.csv": CSV})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(preview({"product": SHOTS}))
    out = run_cli("plan").out
    assert "row is gone" not in out
    assert "its declaration now has a matrix: its row makes product[T-1,hero] …" in out, out
    assert run_cli("apply").code == 0
    manifest.write_text(preview({"product": {**SHOTS, "matrix": {"shot": ["hero"]}}}))
    out = run_cli("plan").out
    assert out.count("its matrix no longer has these values") == 2, out
    assert run_cli("apply").code == 0
    manifest.write_text(preview({"product": plain}))
    out = run_cli("plan").out
    assert "its declaration no longer has a matrix: its row makes product[T-2]" in out, out


def test_a_row_whose_id_has_a_comma_is_gone_not_renamed(project, run_cli):
    """Without a matrix an id may hold a comma: product[a,b] is its row's image, not
    product[a]'s with a matrix value."""
    plain = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{f}.png"}
    root = project(
        {
            "images.toml": preview({"product": plain}),
            "data/p.csv": 'sku,name,f\n"a,b",tea,ab\na,coffee,a\n',
        }
    )
    assert run_cli("apply").code == 0
    (root / "data/p.csv").write_text("sku,name,f\na,coffee,a\n")
    out = run_cli("plan").out
    assert "- product[a,b]  delete  img/ab.png\n      its row is gone from the data" in out, out
