"""Families of images: matrix expansion and style presets, through plan and apply."""

from __future__ import annotations

import json
import re

import pytest

from nebula_build.plugin import FLUX_FILL
from nebula_build.state.lockfile import loads
from tests.conftest import fake_manifest, generation_log, image_info

ENEMY = {
    "prompt": "pixel art {kind}, {pose} pose",
    "output": "sprites/{kind}-{pose}.png",
    "matrix": {"kind": ["slime", "bat"], "pose": ["idle", "attack"]},
    "seed": "{index} + 100",
}


def plan_json(run_cli) -> dict:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a for a in json.loads(out)["actions"]}


def test_a_matrix_expands_into_addressable_images(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"enemy": ENEMY})})
    actions = plan_json(run_cli)
    assert list(actions) == [
        "enemy[slime,idle]",
        "enemy[slime,attack]",
        "enemy[bat,idle]",
        "enemy[bat,attack]",
    ]
    assert actions["enemy[bat,attack]"]["output"] == "sprites/bat-attack.png"
    assert run_cli("apply", "--target", "enemy[bat,idle]").code == 0
    assert generation_log(log) == ["enemy[bat,idle]"]
    lock = loads((root / "images.lock").read_text())
    assert lock["enemy[bat,idle]"].params["prompt"] == "pixel art bat, idle pose"
    assert lock["enemy[bat,idle]"].params["seed"] == 102  # index 2, recorded once
    # a whole number: a digest may hold the digits
    assert re.findall(r"\b102\b", (root / "images.lock").read_text()) == ["102"]
    assert '[images."enemy[bat,idle]"]' in (root / "images.lock").read_text()
    assert run_cli("apply", "--target", "enemy[*]").code == 0
    assert sorted(generation_log(log)) == sorted(actions)
    assert image_info(root / "sprites/slime-attack.png") == ("PNG", (64, 64))
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_growing_a_matrix_adds_only_the_new_images(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"enemy": ENEMY})})
    run_cli("apply")
    grown = {**ENEMY, "matrix": {"kind": ["slime", "bat", "ghost"], "pose": ["idle", "attack"]}}
    (root / "images.toml").write_text(fake_manifest(log, {"enemy": grown}))
    actions = plan_json(run_cli)
    changed = {name for name, a in actions.items() if a["action"] != "noop"}
    # the seed follows the index: ghost images are appended, so no existing seed moves
    assert changed == {"enemy[ghost,idle]", "enemy[ghost,attack]"}


def test_a_style_change_rekeys_exactly_the_images_that_use_it(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    images = {
        "hero": {"prompt": "a knight", "style": "pixel", "output": "hero.png"},
        "logo": {"prompt": "a fox", "output": "logo.png"},
    }
    styles = (
        '\n[styles.pixel]\nprompt_prefix = "pixel art"\nprompt_suffix = "16-bit"\n'
        'negative_prompt = "blurry"\nmodel = "stabilityai/stable-diffusion-xl-base-1.0"\n'
    )
    root = project({"images.toml": fake_manifest(log, images) + styles})
    assert run_cli("apply").code == 0
    lock = loads((root / "images.lock").read_text())
    assert lock["hero"].params["prompt"] == "pixel art, a knight, 16-bit"
    assert lock["hero"].model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert lock["hero"].params["negative_prompt"] == "blurry"
    (root / "images.toml").write_text(
        fake_manifest(log, images) + styles.replace("16-bit", "32-bit")
    )
    actions = plan_json(run_cli)
    assert actions["hero"]["action"] == "regenerate" and actions["logo"]["action"] == "noop"
    assert actions["hero"]["changes"] == [
        {
            "field": "prompt",
            "old": "pixel art, a knight, 16-bit",
            "new": "pixel art, a knight, 32-bit",
        }
    ]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            {**ENEMY, "prompt": "a {kidn}"},
            "images.enemy.prompt: unknown placeholder {kidn} (did you mean {kind}? known: "
            "{kind}, {pose}, {index})",
        ),
        (
            {**ENEMY, "output": "sprites/enemy.png"},
            "images.enemy.output: does not use {kind}: the images that differ only in 'kind' "
            "would all write one file; put {kind} in the path",
        ),
        (
            {**ENEMY, "seed": "{index} / 2"},
            "images.enemy.seed: '{index} / 2' is '0 / 2' here, and is not an integer expression",
        ),
        (  # a minus sign is an integer's: what is wrong is the range
            {**ENEMY, "seed": "{index} - 3 * -1 - 10"},
            "images.enemy.seed: '{index} - 3 * -1 - 10' gives -7, outside 0-4294967295",
        ),
        ({**ENEMY, "matrix": {"kind": []}}, "images.enemy.matrix: 'kind' has no values"),
        (
            {"prompt": "a knight", "output": "images/{kind}.png"},
            "images.enemy.output: placeholder {kind} in an image without a matrix",
        ),
        (
            {"prompt": "a {kind} knight", "output": "images/knight.png"},
            "images.enemy.prompt: placeholder {kind} in an image without a matrix",
        ),
        (
            {"prompt": "a knight", "output": "images/knight.png", "seed": "{index} + 1"},
            "images.enemy.seed: placeholder {index} in an image without a matrix",
        ),
        (
            {"prompt": "x", "output": "x.png", "style": "pxiel"},
            "images.enemy.style: unknown style 'pxiel' (known: none declared)",
        ),
        (  # a typo in a matrix's declaration is said once, at the declaration
            {**ENEMY, "style": "pxiel"},
            "images.enemy.style: unknown style 'pxiel' (known: none declared; for 4 of its images)",
        ),
    ],
)
def test_family_mistakes_are_one_clear_line(image, message, project, run_cli, fake_site, tmp_path):
    project({"images.toml": fake_manifest(tmp_path / "log", {"enemy": image})})
    code, _, err = run_cli("validate")
    assert code == 1
    assert message in err, err
    assert err.count("error:") == 1, err
    assert "images.toml:" in err  # located in the file even for expanded images


def test_a_placeholder_without_a_matrix_writes_nothing(project, run_cli, fake_site, tmp_path):
    image = {"prompt": "a knight", "output": "images/{kind}.png"}
    root = project({"images.toml": fake_manifest(tmp_path / "log", {"hero": image})})
    code, out, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and "images.hero.output: placeholder {kind}" in err
    assert not (root / "images").exists()


def test_a_broken_matrix_is_not_also_missing_for_the_images_that_use_it(
    project, run_cli, fake_site, tmp_path
):
    """A typo in a matrix's prompt is its one problem: the chain and the atlas that name
    its images do not report them as unknown too."""
    manifest = fake_manifest(
        tmp_path / "log",
        {
            "enemy": {**ENEMY, "prompt": "a {knd}"},
            "hat": {
                "model": FLUX_FILL,
                "prompt": "a hat",
                "image": "@enemy[slime,idle]",
                "mask": "@enemy[bat,idle]",
                "output": "hat.png",
            },
        },
    )
    manifest += '[atlases.enemies]\nimages = ["enemy[*]"]\noutput = "sheet.png"\n'
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.count("error:") == 1 and "unknown placeholder {knd}" in err, err
