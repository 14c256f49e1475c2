"""Embedded metadata: read by other tools, round-tripped by `inspect`, strippable."""

from __future__ import annotations

import json

import pytest

from nebula_build.outputs.metadata import read
from nebula_build.plugin import FLUX_SCHNELL, SDXL
from tests.conftest import fake_manifest

LOGO = {
    "model": SDXL,
    "prompt": "minimal fox logo, flat vector",
    "negative_prompt": "text, watermark",
    "num_steps": 25,
    "guidance_scale": 9,
    "width": 128,
    "height": 128,
}
HERO = {
    "model": FLUX_SCHNELL,
    "prompt": "a lighthouse at dusk",
    "num_steps": 4,
    "guidance_scale": 3.5,
    "seed": 1234,
}


def test_png_parameters_are_read_by_sd_parsers(project, run_cli, fake_site, tmp_path):
    from sd_parsers import ParserManager

    root = project(
        {
            "images.toml": fake_manifest(
                tmp_path / "log",
                {"hero": {**HERO, "output": "hero.png"}, "logo": {**LOGO, "output": "logo.png"}},
            )
        }
    )
    assert run_cli("apply").code == 0
    info = ParserManager().parse(root / "hero.png")
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    (sampler,) = info.samplers
    assert sampler.prompts[0].value == "a lighthouse at dusk"
    assert sampler.parameters["seed"] == "1234" and sampler.parameters["steps"] == "4"
    assert sampler.model is not None and sampler.model.name == FLUX_SCHNELL
    (logo,) = ParserManager().parse(root / "logo.png").samplers
    assert logo.negative_prompts[0].value == "text, watermark"
    assert logo.parameters["cfg_scale"] == "9"
    assert "seed" not in logo.parameters  # SDXL takes no seed: none is claimed


@pytest.mark.parametrize("output", ["a.png", "a.jpg", "a.webp", "a.avif"])
def test_our_record_round_trips_through_every_format(output, project, run_cli, fake_site, tmp_path):
    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**HERO, "output": output}})}
    )
    assert run_cli("apply").code == 0
    records = read((root / output).read_bytes())
    spec = json.loads(records["nebula-build"])
    lock = (root / "images.lock").read_text()
    assert spec["image"] == "hero" and spec["generation_key"] in lock
    assert spec["generation"]["prompt"] == "a lighthouse at dusk"
    assert records["parameters"].startswith("a lighthouse at dusk\nSteps: 4, Sampler: unknown")
    code, out, _ = run_cli("inspect", output)
    assert code == 0
    assert "made by nebula-build: image 'hero'" in out and "seed: 1234" in out
    data = json.loads(run_cli("inspect", output, "--json").out)
    assert data["spec"]["generation"]["seed"] == 1234 and data["width"] == 64


@pytest.mark.parametrize("output", ["a.png", "a.jpg", "a.webp"])
def test_metadata_false_strips_everything(output, project, run_cli, fake_site, tmp_path):
    root = project(
        {
            "images.toml": fake_manifest(
                tmp_path / "log", {"hero": {**HERO, "output": output, "metadata": False}}
            )
        }
    )
    assert run_cli("apply").code == 0
    assert read((root / output).read_bytes()) == {}
    assert "no generation metadata" in run_cli("inspect", output).out


def test_turning_metadata_off_reencodes_without_generating(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"hero": {**HERO, "output": "a.png"}})})
    run_cli("apply")
    (root / "images.toml").write_text(
        fake_manifest(log, {"hero": {**HERO, "output": "a.png", "metadata": False}})
    )
    assert "reencode" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert read((root / "a.png").read_bytes()) == {}
    assert len(log.read_text().splitlines()) == 2  # one open, one generation


def test_inspect_errors_are_one_line(project, run_cli, tmp_path):
    project({"notes.txt": "hello"})
    code, _, err = run_cli("inspect", "notes.txt")
    assert code == 1 and err.startswith("error: notes.txt: not a PNG, JPEG, WebP or AVIF image")
    code, _, err = run_cli("inspect", "missing.png")
    assert code == 1 and "cannot read" in err


def test_inspect_reads_its_file_relative_to_the_C_folder(
    project, run_cli, fake_site, tmp_path, monkeypatch
):
    image = {**HERO, "output": "art/hero.png"}
    root = project({"images.toml": fake_manifest(tmp_path / "log", {"hero": image})})
    assert run_cli("apply").code == 0
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("-C", root.name, "inspect", "art/hero.png")
    assert code == 0, err
    assert out.startswith(f"{root.name}/art/hero.png: PNG") and "image 'hero'" in out
