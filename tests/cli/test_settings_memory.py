"""1,190,000 unknown keys in [backends.preview] still peaked at 595 MB after they were
described within the bound: pydantic validated them all at once, an error each held
together (340 MB), and placing the ten thousand shown split the manifest into all of its
lines at once (80 MB). Each is done a piece at a time now, with the same lines shown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests import PREVIEW

IMAGE = '\n[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
BOUND = 10
SLICE = 50


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The bound and the slice made small; how many keys each validation of a backend's
    settings is given."""
    from nebula_build.core import backendsettings, manifest, resolve
    from nebula_build.plugin.manager import BackendPlugin

    monkeypatch.setattr(manifest, "MAX_PROBLEMS", BOUND)
    monkeypatch.setattr(resolve, "MAX_PROBLEMS", BOUND)
    monkeypatch.setattr(backendsettings, "SLICE", SLICE)
    sizes: list[int] = []
    parse = BackendPlugin.parse_settings

    def parsing(self: BackendPlugin, raw: Any) -> Any:
        sizes.append(len(raw))
        return parse(self, raw)

    monkeypatch.setattr(BackendPlugin, "parse_settings", parsing)
    return sizes


def test_unknown_settings_past_the_bound_are_validated_a_slice_at_a_time(
    project, run_cli, validated
):
    keys = "".join(f"k{n} = 1\n" for n in range(400)) + 'concurrency = "many"\n'
    text = PREVIEW + IMAGE + "\n[backends.preview]\n" + keys
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    first = (PREVIEW + IMAGE).count("\n") + 3
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{first + n}:1: backends.preview.k{n}: unknown key; expected one "
        "of: concurrency, timeout"
        for n in range(BOUND - 1)
    ] + [
        f"error: images.toml:{first + 400}:1: backends.preview.concurrency: must be a whole "
        'number (got "many")',
        "error: images.toml: and 391 more problems; fix these first",
    ], err
    assert max(validated) <= SLICE + 1, validated  # the whole table was one validation


def test_a_few_unknown_settings_are_validated_together_as_before(project, run_cli, validated):
    keys = "".join(f"k{n} = 1\n" for n in range(BOUND))
    project({"images.toml": PREVIEW + IMAGE + "\n[backends.preview]\n" + keys})
    code, _, err = run_cli("validate")
    assert code == 1 and len(err.splitlines()) == BOUND, err
    assert validated == [BOUND], validated


def test_the_lines_placed_keep_their_numbers_read_a_piece_at_a_time(project, run_cli, monkeypatch):
    from nebula_build.core import sourcemap

    keys = "".join(f"k{n} = 1\n" for n in range(30))
    text = PREVIEW + IMAGE.replace("\n", "\r\n") + "\n[backends.preview]\n" + keys
    project({"images.toml": text})
    whole = run_cli("validate")
    monkeypatch.setattr(sourcemap, "PIECE", 7)
    pieces = run_cli("validate")
    first = (PREVIEW + IMAGE).count("\n") + 3
    assert whole.code == pieces.code == 1 and whole.err == pieces.err
    assert whole.err.splitlines()[-1] == (
        f"error: images.toml:{first + 29}:1: backends.preview.k29: unknown key; expected one "
        "of: concurrency, timeout"
    )
