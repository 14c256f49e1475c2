"""Write index.html from template.html and the asset manifest nebula-build writes.

Each `{{ img NAME SIZES }}` becomes an <img> with src, srcset (every variant),
sizes, width, height (no layout shift) and alt, read from static/images.json.
`{{ products SIZES }}` and `{{ posts SIZES }}` become one card per image made
from a row of data/products.csv or a post in content/posts/, joined to the row
by the id the asset manifest carries. Run it after `nebula-build apply`:
python build.py

Every value from the asset manifest or the data (a path, an alt text, a price) is
escaped: a pull request can change the data, and the page must not run what it says.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\{\{ (?P<kind>img|products|posts) (?:(?P<name>[\w-]+) )?(?P<sizes>[^}]+?) \}\}")


def url(path: str) -> str:
    """A file's path as a URL in an attribute: a quote, a comma or a space in it is text."""
    return html.escape(quote(path))


def image_tag(entry: dict, sizes: str) -> str:
    main = entry["files"][0]
    srcset = ", ".join(f"{url(f['path'])} {int(f['width'])}w"
                       for f in sorted(entry["files"], key=lambda f: f["width"]))
    return (f'<img src="{url(main["path"])}" srcset="{srcset}" sizes="{html.escape(sizes)}" '
            f'width="{int(main["width"])}" height="{int(main["height"])}" '
            f'alt="{html.escape(entry["alt"])}">')


def made_from_rows(images: dict, declaration: str) -> dict[str, dict]:
    """The images of one `rows` declaration, by the id of the row each was made from."""
    return {entry["row"]: entry for name, entry in images.items()
            if name.startswith(f"{declaration}[") and "row" in entry}


def product_cards(images: dict, sizes: str) -> str:
    made = made_from_rows(images, "product")
    with (HERE / "data/products.csv").open(newline="", encoding="utf-8") as file:
        rows = [row for row in csv.DictReader(file) if row["sku"] in made]
    return "\n      ".join(
        f'<article class="card">{image_tag(made[row["sku"]], sizes)}'
        f'<p>{html.escape(row["name"])} · €{html.escape(row["price"])}</p></article>'
        for row in rows
    )


def post_cards(images: dict, sizes: str) -> str:
    made = made_from_rows(images, "cover")
    return "\n      ".join(
        f'<article class="card" id="{html.escape(slug)}">{image_tag(entry, sizes)}'
        f'<p>{html.escape(entry["alt"])}</p></article>'
        for slug, entry in sorted(made.items())
    )


def read_asset_manifest() -> dict:
    manifest = HERE / "static/images.json"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} does not exist yet: run `nebula-build apply` first, "
                         "then `python build.py`")
    return json.loads(manifest.read_text())["images"]


def main() -> None:
    images = read_asset_manifest()

    def fill(match: re.Match[str]) -> str:
        if match["kind"] == "products":
            return product_cards(images, match["sizes"])
        if match["kind"] == "posts":
            return post_cards(images, match["sizes"])
        name = match["name"]
        if name not in images:
            raise SystemExit(f"template.html uses {name!r}, which images.json does not list "
                             "(did `nebula-build apply` fail for it?)")
        return image_tag(images[name], match["sizes"])

    page = PLACEHOLDER.sub(fill, (HERE / "template.html").read_text())
    (HERE / "index.html").write_text(page)
    print(f"wrote {HERE / 'index.html'} ({len(images)} images)")


if __name__ == "__main__":
    main()
