"""Image-to-image chains: `image = "@hero"` takes another image's output as input."""

from __future__ import annotations

import io
import json

from PIL import Image

from nebula_build.plugin import FLUX_FILL
from nebula_build.state.lockfile import loads
from tests.conftest import fake_manifest, generation_log
from tests.manifests import PREVIEW


def mask() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, "PNG")
    return buffer.getvalue()


def chain(hero_prompt: str = "a lighthouse", **extra: object) -> dict:
    return {
        "hero": {"prompt": hero_prompt, "output": "hero.png"},
        "hero-cap": {
            "model": FLUX_FILL,
            "prompt": "a red cap",
            "image": "@hero",
            "mask": "mask.png",
            "output": "hero-cap.png",
            **extra,
        },
    }


def test_upstream_runs_first_and_its_output_is_the_input(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, chain(), delay=0.05), "mask.png": mask()})
    code, out, _ = run_cli("plan")
    assert "takes the output of hero" in out
    assert json.loads(run_cli("plan", "--json").out)["actions"][1]["depends_on"] == ["hero"]
    assert run_cli("apply").code == 0
    assert generation_log(log) == ["hero", "hero-cap"]  # in dependency order
    lock = loads((root / "images.lock").read_text())
    assert lock["hero-cap"].params["image"] == f"@hero:{lock['hero'].output_key}"
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_changed_upstream_rekeys_its_dependents(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, chain()), "mask.png": mask()})
    run_cli("apply")
    (root / "images.toml").write_text(fake_manifest(log, chain("a lighthouse, stormy")))
    code, out, _ = run_cli("plan")
    assert "~ hero  regenerate" in out and "~ hero-cap  regenerate" in out
    assert "~ image: @hero (output" in out
    assert run_cli("apply").code == 0
    assert generation_log(log) == ["hero", "hero-cap", "hero", "hero-cap"]


def test_a_failed_upstream_skips_its_dependents(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    images = {**chain(), "other": {"prompt": "unrelated", "output": "other.png"}}
    root = project({"images.toml": fake_manifest(log, images, fail=("hero",)), "mask.png": mask()})
    code, _, err = run_cli("apply")
    assert code == 1
    assert "hero-cap: skipped: it takes the output of hero, which failed" in err
    assert (root / "other.png").exists() and not (root / "hero-cap.png").exists()
    assert "hero-cap" not in generation_log(log)


def test_a_cycle_is_an_error_naming_it(project, run_cli, fake_site, tmp_path):
    images = {
        "a": {
            "model": FLUX_FILL,
            "prompt": "x",
            "image": "@b",
            "mask": "mask.png",
            "output": "a.png",
        },
        "b": {
            "model": FLUX_FILL,
            "prompt": "y",
            "image": "@a",
            "mask": "mask.png",
            "output": "b.png",
        },
    }
    project({"images.toml": fake_manifest(tmp_path / "log", images), "mask.png": mask()})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.strip() == (
        "error: images.toml:18:1: images.a.image: images depend on each other in a cycle: "
        "a -> b -> a; an image cannot take its own output as input"
    )


def test_a_cycle_is_said_beside_the_other_images_problems(project, run_cli):
    """It stopped the resolution, with no file, line or key, and hid every other
    problem until it was fixed."""
    project(
        {
            "images.toml": PREVIEW
            + '[images.a]\nmodel = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "x"\n'
            + 'image = "in.png"\nmask = "@a"\noutput = "a.png"\n'
            + '[images.c]\nprompt = "z"\nstyle = "nope"\noutput = "c.png"\n',
            "in.png": mask(),
        }
    )
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml:12:1: images.a.mask: images depend on each other in a cycle: "
        "a -> a; an image cannot take its own output as input\n"
        "error: images.toml:16:1: images.c.style: unknown style 'nope' (known: none declared)\n"
    )


def test_unknown_upstream_is_named(project, run_cli, fake_site, tmp_path):
    images = chain()
    images["hero-cap"]["image"] = "@heor"
    project({"images.toml": fake_manifest(tmp_path / "log", images), "mask.png": mask()})
    code, _, err = run_cli("validate")
    assert code == 1 and "images.hero-cap.image: '@heor' names no image" in err


def test_replacing_an_upstream_redraws_its_dependents(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    project(
        {
            "images.toml": fake_manifest(
                log, {**chain(), "other": {"prompt": "unrelated", "output": "other.png"}}
            ),
            "mask.png": mask(),
        }
    )
    run_cli("apply")
    assert run_cli("apply", "--replace", "hero").code == 0
    assert generation_log(log)[3:] == ["hero", "hero-cap"]  # not "other"


def test_a_target_takes_its_upstream_along(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    images = {**chain(), "other": {"prompt": "unrelated", "output": "other.png"}}
    root = project({"images.toml": fake_manifest(log, images), "mask.png": mask()})
    code, out, _ = run_cli("plan", "--target", "hero-cap")
    assert "+ hero  create" in out and "+ hero-cap  create" in out and "other" not in out
    code, _, err = run_cli("apply", "--target", "hero-cap")
    assert code == 0, err
    assert generation_log(log) == ["hero", "hero-cap"]
    assert not (root / "other.png").exists()
    assert run_cli("plan", "--target", "hero-cap", "--detailed-exitcode").code == 0


def test_an_image_replace_brings_in_takes_its_upstream_along(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    images = {**chain(), "other": {"prompt": "unrelated", "output": "other.png"}}
    project({"images.toml": fake_manifest(log, images), "mask.png": mask()})
    code, _, err = run_cli("apply", "--target", "other", "--replace", "hero-cap")
    assert code == 0, err
    assert sorted(generation_log(log)) == ["hero", "hero-cap", "other"]


FILL_HEAD = PREVIEW.replace("FLUX.1-schnell", "FLUX.1-Fill-dev")


def test_an_input_a_style_gives_orders_the_images_and_closes_cycles(project, run_cli):
    """`image = "@b"` in a style was not seen when ordering: an image before its
    upstream was dropped without a word, and a cycle through a style said nothing."""
    style = '[styles.s]\nimage = "@b"\n'
    a = '[images.a]\nprompt = "a"\nstyle = "s"\nmask = "m.png"\noutput = "a.png"\n'
    b = '[images.b]\nprompt = "b"\nimage = "m.png"\nmask = "m.png"\noutput = "b.png"\n'
    root = project({"images.toml": FILL_HEAD + style + a + b, "m.png": mask()})
    code, out, err = run_cli("validate")
    assert (code, out, err) == (0, "images.toml: 2 images, valid\n", "")
    assert run_cli("apply").code == 0
    assert (root / "a.png").is_file() and (root / "b.png").is_file()

    (root / "images.toml").write_text(FILL_HEAD + style + a + b.replace('"m.png"', '"@a"', 1))
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml:9:1: styles.s.image: images depend on each other in a cycle: "
        "a -> b -> a; an image cannot take its own output as input\n"
    )


def test_a_style_s_input_overrides_the_defaults_reference_in_the_order(project, run_cli):
    """[defaults] mask = "@b" under a style's own mask is no edge: there was a cycle
    said where none is."""
    head = FILL_HEAD + 'mask = "@b"\n[styles.s]\nmask = "m.png"\n'
    a = '[images.a]\nprompt = "a"\nstyle = "s"\nimage = "m.png"\noutput = "a.png"\n'
    b = '[images.b]\nprompt = "b"\nimage = "@a"\nmask = "m.png"\noutput = "b.png"\n'
    project({"images.toml": head + a + b, "m.png": mask()})
    code, out, err = run_cli("validate")
    assert (code, out, err) == (0, "images.toml: 2 images, valid\n", "")
