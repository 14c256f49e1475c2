"""What the lock records about how a local image was made, beyond its spec: the
weights' identity and the settings that change pixels. Not in the key: a change is
noted by `plan`, and `apply --replace` makes the image again."""

from __future__ import annotations

import json
import shutil
import tomllib

from nebula_build.outputs.metadata import SPEC_KEY, read
from nebula_build.plugin import FLUX_SCHNELL
from tests.backends import test_diffusers_backend
from tests.backends.test_diffusers_backend import THREE_IMAGES, folders, manifest

tiny = test_diffusers_backend.tiny  # the saved tiny pipelines (a session fixture)

FOX = {"fox": {key: value for key, value in THREE_IMAGES["fox"].items() if key != "seed"}}


def recorded(root) -> dict:
    return tomllib.loads((root / "images.lock").read_text())["images"]["fox"]


def test_the_lock_records_the_weights_the_settings_and_the_derived_seed(tiny, project, run_cli):
    root = project({"images.toml": manifest(FOX, models=folders(tiny))})
    code, _, err = run_cli("apply")
    assert code == 0, err
    entry = recorded(root)
    made_with = entry["made_with"]
    assert made_with == {
        "compile": "false",
        "device": "cpu",
        "dtype": "float32",
        "fuse_qkv": "false",
        "quantize": "none",
        "weights": made_with["weights"],
    }
    assert made_with["weights"].startswith("files:") and len(made_with["weights"]) == 22
    assert isinstance(entry["seed"], int)  # no seed declared: the one derived is recorded
    embedded = json.loads(read((root / entry["output"]).read_bytes())[SPEC_KEY])
    assert embedded["made_with"] == made_with and embedded["seed"] == entry["seed"]
    lock = (root / "images.lock").read_text()
    assert sum(line.startswith("made_with = {") for line in lock.splitlines()) == 1  # one line


def test_other_settings_are_noted_by_plan_and_replace_makes_the_image_again(tiny, project, run_cli):
    root = project({"images.toml": manifest(FOX, models=folders(tiny))})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(FOX, models=folders(tiny), dtype="bfloat16"))

    note = (
        "made with different settings (dtype float32, now bfloat16): "
        "`nebula-build apply --replace fox` makes it again"
    )
    for _ in range(2):  # the second plan must not take the no-op fast path past the note
        code, out, err = run_cli("plan", "--detailed-exitcode")
        assert code == 0, err  # not a change: the key is the same
        assert note in out
    code, out, err = run_cli("apply")
    assert code == 0 and "No changes" in out

    code, out, err = run_cli("apply", "--replace", "fox")
    assert code == 0, err
    assert recorded(root)["made_with"]["dtype"] == "bfloat16"
    code, out, _ = run_cli("plan")
    assert "made with different settings" not in out


def test_weights_from_the_hugging_face_cache_are_named_by_revision(
    tiny, project, run_cli, monkeypatch, tmp_path
):
    cache = tmp_path / "hf-cache"
    repo = cache / "models--black-forest-labs--FLUX.1-schnell"
    shutil.copytree(tiny[FLUX_SCHNELL], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    root = project({"images.toml": manifest(FOX)})
    assert run_cli("apply").code == 0
    assert recorded(root)["made_with"]["weights"] == "hf:0123abcd"


def test_a_lock_without_a_record_still_loads_and_a_hostile_one_is_refused(tiny, project, run_cli):
    root = project({"images.toml": manifest(FOX, models=folders(tiny))})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    text = lock.read_text()
    record = next(line for line in text.splitlines() if line.startswith("made_with = "))

    lock.write_text(text.replace(record + "\n", ""))  # as written before made_with existed
    code, out, err = run_cli("plan")
    assert code == 0 and "No changes" in out, err

    for hostile, problem in (
        ('made_with = { dtype = "\\u001b[2Jfloat16" }', "`dtype` must be one printable line"),
        ('made_with = { "Bad Key" = "x" }', "has a key that is not a lowercase name"),
        ("made_with = [1, 2]", "must be a table of at most 16 settings"),
    ):
        lock.write_text(text.replace(record, hostile))
        code, _, err = run_cli("plan")
        assert code == 1 and "Traceback" not in err
        assert err.count("\n") == 1, err
        assert "images.lock: images.fox: `made_with` " + problem in err
