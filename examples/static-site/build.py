"""Write index.html from template.html and the asset manifest nebula-build writes.

Each `{{ img NAME SIZES }}` becomes an <img> with src, srcset (every variant),
sizes, width, height (no layout shift) and alt, read from static/images.json.
Run it after `nebula-build apply`: python build.py
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\{\{ img (?P<name>[\w-]+) (?P<sizes>[^}]+?) \}\}")


def image_tag(entry: dict, sizes: str) -> str:
    main = entry["files"][0]
    srcset = ", ".join(f"{f['path']} {f['width']}w"
                       for f in sorted(entry["files"], key=lambda f: f["width"]))
    return (f'<img src="{main["path"]}" srcset="{srcset}" sizes="{html.escape(sizes)}" '
            f'width="{main["width"]}" height="{main["height"]}" '
            f'alt="{html.escape(entry["alt"])}">')


def main() -> None:
    images = json.loads((HERE / "static/images.json").read_text())["images"]

    def fill(match: re.Match[str]) -> str:
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
