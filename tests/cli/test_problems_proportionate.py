"""What `validate` spends on a manifest of many images that each fail the same way is
proportionate to what they declare: 100,000 images missing `prompt` took 9.1 s of CPU
where parsing their text takes 2.5 s, most of it checks that had nothing to check (an
output template without a brace, output options none of them sets), a map of every
header to place one problem, and the cycle collector walking what the parse made."""

from __future__ import annotations

import gc
from collections import Counter
from typing import Any

import pytest

from tests.manifests import PREVIEW

IMAGES = 400


def missing_prompt(count: int) -> str:
    return "".join(f'\n[images.i{n}]\noutput = "out/i{n}.png"\n' for n in range(count))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each check that has nothing to find in an image as plain as these ran."""
    from nebula_build.core import expand, resolve, sourcemap, spriterules

    counted: Counter[str] = Counter()

    def counting(owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def count(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, count)

    counting(expand, "placeholders")  # a template read for its {names}
    counting(spriterules.SpriteRules, "check_sprite_options")
    counting(resolve._Resolver, "drop_inherited")

    class Header:
        """sourcemap's pattern for a table's header, its matches counted."""

        def __init__(self, pattern: Any) -> None:
            self.pattern = pattern

        def match(self, line: str) -> Any:
            counted["header matched"] += 1
            return self.pattern.match(line)

    monkeypatch.setattr(sourcemap, "_HEADER", Header(sourcemap._HEADER))
    return counted


def test_images_missing_a_prompt_pay_for_no_check_they_cannot_fail(project, run_cli, calls):
    project({"images.toml": PREVIEW + missing_prompt(IMAGES)})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        f"error: images.toml:{PREVIEW.count(chr(10)) + 2}:1: images.i0.prompt: is required; "
        f"the same for {IMAGES - 1} other images (i1, i2, i3, i4, i5, …)"
    ]
    assert calls == Counter(), calls  # each was once per image, or per header


def test_the_checks_still_run_where_an_image_sets_what_they_check(project, run_cli, calls):
    """A brace, an output option, a parameter the model does not take, a header with a
    quoted key: each is read as before, and said where it is wrong."""
    images = (
        '\n[images.a]\nprompt = "{kind} cat"\noutput = "out/a.png"\n'
        '\n[images.b]\nprompt = "b"\noutput = "out/b.jpg"\nbackground = "transparent"\n'
        '\n[images.c]\nprompt = "c"\noutput = "out/c.png"\nnegative_prompt = "x"\n'
        '\n[images."d"]\noutput = "out/d.png"\n'
    )
    project({"images.toml": PREVIEW + images})
    code, _, err = run_cli("validate")
    head = PREVIEW.count("\n")
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{head + 3}:1: images.a.prompt: placeholder {{kind}} in an image "
        "without a matrix: declare a `matrix` or `rows` to fill it in, or write the text "
        "without braces",
        f"error: images.toml:{head + 9}:1: images.b.background: a JPEG has no transparency: "
        "write the image as .png, .webp or .avif",
        f"error: images.toml:{head + 14}:1: images.c.negative_prompt: "
        "black-forest-labs/FLUX.1-schnell does not take negative_prompt; in a style or "
        "[defaults] it would apply only where a model takes it",
        f"error: images.toml:{head + 16}:1: images.d.prompt: is required",
    ], err
    assert calls["placeholders"] == 1 and calls["check_sprite_options"] == 1
    assert calls["drop_inherited"] == 1 and calls["header matched"] == 1


def test_the_cycle_collector_waits_while_a_manifest_is_parsed_and_resolved(
    project, run_cli, monkeypatch
):
    """It ran every 700 containers made, each time walking those the parse had made: a
    fifth of the CPU at 100,000 images, to free nothing. It runs again once done."""
    from nebula_build.core import manifest, resolve

    collecting: list[bool] = []
    validate, resolve_image = manifest.ManifestModel.model_validate, resolve._Resolver.resolve

    def validating(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return validate(*args, **kwargs)

    def resolving(*args: Any, **kwargs: Any) -> Any:
        collecting.append(gc.isenabled())
        return resolve_image(*args, **kwargs)

    monkeypatch.setattr(manifest.ManifestModel, "model_validate", validating)
    monkeypatch.setattr(resolve._Resolver, "resolve", resolving)
    project({"images.toml": PREVIEW + missing_prompt(3)})
    assert gc.isenabled()
    code, _, _ = run_cli("validate")
    assert code == 1 and collecting == [False] * 4 and gc.isenabled()
    gc.disable()  # where it is off, it is left off
    try:
        run_cli("validate")
        assert not gc.isenabled()
    finally:
        gc.enable()
