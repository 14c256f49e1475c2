"""What `validate` spends on a manifest of many images that each fail the same way is
proportionate to what they declare: 100,000 images missing `prompt` took 9.1 s of CPU
where parsing their text takes 2.5 s, most of it checks that had nothing to check (an
output template without a brace, output options none of them sets), a map of every
header to place one problem, and the cycle collector walking what the parse made."""

from __future__ import annotations

import gc
import json
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
        "black-forest-labs/FLUX.1-schnell does not take negative_prompt "
        "(stabilityai/stable-diffusion-xl-base-1.0 does): remove it here, or set it in a "
        "style or [defaults], where it applies only to the models that take it",
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


def test_images_written_alike_are_checked_once_and_a_second_problem_is_still_said(
    project, run_cli, monkeypatch
):
    """1,000 images missing `prompt` fail alike: the first is checked, the others take its
    problems, each counted; one that differs, even in its output alone, still has its own
    problems said, before or after the shared one as it is written."""
    from nebula_build.core import resolve

    checked: list[str] = []
    real = resolve._Resolver.style_fields

    def counting(self: Any, name: str, decl: Any) -> Any:
        checked.append(name)
        return real(self, name, decl)

    monkeypatch.setattr(resolve._Resolver, "style_fields", counting)
    odd = {
        500: ("width = 65\n", "out/i500.png"),
        700: ("", "out/i700.gif"),
        800: ("", "../i800.png"),
        900: ('model = "nope"\n', "out/i900.png"),
        960: ('style = "s"\n', "out/i960.png"),
    }
    # below the head, each image is 3 lines, and one more after i500's width
    written = [odd.get(n, ("", f"out/i{n}.png")) for n in range(1000)]
    images = "".join(
        f'\n[images.i{n}]\n{keys}output = "{output}"\n' for n, (keys, output) in enumerate(written)
    )
    project({"images.toml": PREVIEW + '[styles.s]\nnegative_prompt = "x"\n' + images})
    head = PREVIEW.count("\n") + 2
    code, _, err = run_cli("validate")
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{head + 2}:1: images.i0.prompt: is required; "
        "the same for 998 other images (i1, i2, i3, i4, i5, …)",
        f"error: images.toml:{head + 3 + 3 * 500}:1: images.i500.width: must be a multiple of "
        "8 within 64-2048 (got 65)",
        f"error: images.toml:{head + 4 + 3 * 700}:1: images.i700.output: unsupported file "
        "type '.gif'; use one of .png, .webp, .jpg, .jpeg, .avif",
        f"error: images.toml:{head + 4 + 3 * 800}:1: images.i800.output: must stay inside "
        "the project ('../i800.png' uses '..')",
        f"error: images.toml:{head + 4 + 3 * 900}:1: images.i900.model: unknown model 'nope' "
        "for backend 'preview' (known: stabilityai/stable-diffusion-xl-base-1.0, "
        "black-forest-labs/FLUX.1-schnell, Bytedance-Seedream-3.0, "
        "black-forest-labs/FLUX.1-Fill-dev)",
    ], err
    # each of its own shape (i1 too: i0 was the first to use the backend, which says
    # what is wrong with its settings once)
    assert checked == ["i0", "i1", "i500", "i900", "i960"]
    code, out, _ = run_cli("validate", "--json")
    problems = json.loads(out)["error"]["problems"]
    assert code == 1 and [(p["key"], p["line"], p["message"]) for p in problems] == [
        (key, int(place.split(":")[1]), message)
        for _, place, key, message in (line.split(": ", 3) for line in err.splitlines())
    ]


def test_a_size_in_defaults_that_no_model_takes_is_one_problem(project, run_cli):
    """`width = 500` in [defaults], with images on three models: one line, not one per
    model ("… for black-forest-labs/FLUX.1-schnell", "… for stabilityai/…"); a model
    that asks for more than the others (Fill's 16) is still named."""
    models = ("stabilityai/stable-diffusion-xl-base-1.0", "Bytedance-Seedream-3.0")
    images = "".join(
        f'[images.{name}]\nprompt = "x"\nmodel = "{model}"\noutput = "{name}.png"\n'
        for name, model in zip("ab", models, strict=True)
    )
    text = PREVIEW.replace("width = 64", "width = 504") + '[images.c]\nprompt = "x"\n'
    text += 'output = "c.png"\n' + images
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    assert code == 0, err
    text = text.replace("width = 504", "width = 500")
    text += '[images.d]\nprompt = "x"\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\n'
    text += 'image = "c.png"\nmask = "c.png"\noutput = "d.png"\n'
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    line = text.split("\n").index("width = 500") + 1
    assert code == 1
    assert err.splitlines()[:2] == [
        f"error: images.toml:{line}:1: defaults.width: must be a multiple of 8 within "
        "64-2048 (got 500)",
        f"error: images.toml:{line}:1: defaults.width: must be a multiple of 16 within "
        "64-2048 for black-forest-labs/FLUX.1-Fill-dev (got 500)",
    ], err
