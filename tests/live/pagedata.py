"""The cards a gallery page carries, read back from its JSON as plain dicts."""

from __future__ import annotations

import json
import re
from typing import Any

_DATA = re.compile(r'<script type="application/json" id="gallery-data">(.*?)</script>', re.S)


def page_cards(page: str) -> list[dict[str, Any]]:
    """Every card of the page, in order, with readable keys."""
    match = _DATA.search(page)
    assert match is not None, "the page carries no card data"
    data = json.loads(match.group(1))
    strings = data["strings"]
    cards = []
    for item in data["cards"]:
        pairs = [strings[i] for i in item["d"]]
        cards.append(
            {
                "name": item["n"],
                "href": item["h"],
                "exists": bool(item.get("e")),
                "thumb": item.get("t"),
                "status": item["s"],
                "status_text": strings[item["x"]],
                "prompt": item["p"],
                "negative_prompt": item.get("q"),
                "details": dict(zip(pairs[::2], pairs[1::2], strict=True)),
                "changed": bool(item.get("c")),
                "transparent": bool(item.get("a")),
                "small": bool(item.get("m")),
                "checks": [(text, bool(ok)) for text, ok in item.get("k", [])],
                "draws": [
                    {"index": i, "key": k, "picked": bool(p), "href": h, "command": c, "seed": s}
                    for i, k, p, h, c, s in item.get("w", [])
                ],
            }
        )
    return cards


def card(page: str, name: str) -> dict[str, Any]:
    found = [c for c in page_cards(page) if c["name"] == name]
    assert len(found) == 1, name
    return found[0]
