"""Plan cases as data: see tests/core/plan_cases/README.md."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nebula_build.core.manifest import parse
from nebula_build.core.plan import Generating, make_plan
from nebula_build.core.resolve import resolve
from nebula_build.core.spec import AssetSpec
from nebula_build.plugin.manager import load_registry
from nebula_build.state.lockfile import LockEntry

CASES_DIR = Path(__file__).parent / "plan_cases"
HEADER = """version = 1
[defaults]
backend = "{backend}"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""


def _cases() -> list[Any]:
    found = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        for case in tomllib.loads(path.read_text())["case"]:
            found.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return found


def _specs(images: str, inputs: dict[str, str], backend: str) -> dict[str, AssetSpec]:
    text = HEADER.replace("{backend}", backend) + images
    manifest = parse(text, Path("images.toml"), "images.toml")
    digests = {path: hashlib.sha256(tag.encode()).hexdigest() for path, tag in inputs.items()}
    return resolve(manifest, load_registry(), digests.get).specs


def _entry(spec: AssetSpec) -> LockEntry:
    params = spec.generation_params()
    del params["backend"], params["model"]
    return LockEntry(
        backend=spec.backend,
        model=spec.model,
        output=spec.output,
        digest=f"written:{spec.name}",
        generation_key=spec.generation_key,
        output_key=spec.output_key,
        params=params,
        seed=spec.seed,
    )


@pytest.mark.parametrize("case", _cases())
def test_plan_case(case: dict[str, Any], fake_site: Path) -> None:
    backend = case.get("backend", "preview")
    now = _specs(case["now"], case.get("inputs", {}), backend)
    before = (
        _specs(case["before"], case.get("inputs_before", {}), backend) if "before" in case else {}
    )
    lock = {name: _entry(spec) for name, spec in before.items()}
    by_output = {entry.output: entry for entry in lock.values()}
    moved = {spec.output: lock[name] for name, spec in now.items() if name in lock}

    def disk(path: str) -> str | None:
        state = case.get("disk", {}).get(path)
        if state == "ours":
            return by_output[path].digest
        if state == "ours-moved":
            return moved[path].digest
        if state == "produced":
            return next(f"produced:{s.output_key}:{path}" for s in now.values() if path in s.paths)
        return state

    cached = {
        (before if tag.startswith("before:") else now)[tag.split(":")[1]].generation_key
        for tag in case.get("cache", [])
    }
    options = case.get("options", {})
    plan = make_plan(
        now,
        lock,
        digest_of=disk,
        has_cached=cached.__contains__,
        known_output=lambda key: {
            path: f"produced:{key}:{path}"
            for spec in now.values()
            if spec.output_key == key and spec.name not in case.get("unproduced", ())
            for path in spec.paths
        },
        # what the lock records is nebula-build's unless the case says a file is not
        vouched=lambda path, digest, entry: path not in case.get("unvouched", ()),
        targets=options.get("targets", ()),
        replace_images=options.get("replace", ()),
        force=options.get("force", False),
    )
    got = [(a.image, a.kind.value, a.reason) for a in plan.actions]
    want = [(e["image"], e["action"], e["reason"]) for e in case["expect"]]
    assert got == want
    for action, expected in zip(plan.actions, case["expect"], strict=True):
        if "from_cache" in expected:
            assert action.from_cache == expected["from_cache"]
        if "changes" in expected:
            assert [c.field for c in action.changes] == expected["changes"]
        if "note" in expected:
            assert any(expected["note"] in note for note in action.notes)
        if "backup" in expected:
            assert action.backup == expected["backup"]


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        ((3, 0, 3), "3 images"),
        ((2, 0, 1), "2 images in 1 generation"),
        ((1, 2, 3), "1 image and 2 candidate draws"),
        ((2, 1, 2), "2 images and 1 candidate draw in 2 generations"),
        ((0, 0, 0), "0 generations"),
    ],
)
def test_generating_words_what_the_generations_make(counts: tuple[int, int, int], said: str):
    """The one wording of the summary line, --locked, --max-generations and apply's
    question: images of one spec share a generation, and that is said."""
    assert Generating(*counts).said() == said
    shared = Generating(*counts).shared
    assert shared == ("" if counts[2] == counts[0] + counts[1] else said[said.index(" in ") :])
