"""`plan` names the output options that changed (quality, a sprite step, a check),
from the options this machine's cache recorded with the files it wrote; without
that record (a fresh clone) or with one that is not this tool's, it says "output
options changed", as before."""

from __future__ import annotations

import json
import shutil
import tomllib

from tests.manifests import PREVIEW

MANIFEST = (
    PREVIEW
    + """
[images.slime]
prompt = "a green slime"
seed = 1
background = "transparent"
trim = true
output = "sprites/slime.webp"
quality = 80
"""
)


def test_plan_names_the_output_options_that_changed(project, run_cli):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    edited = MANIFEST.replace("trim = true", "pad = 2").replace("quality = 80", "quality = 60")
    (root / "images.toml").write_text(edited + "checks = { max_kb = 40 }\n")
    code, out, _ = run_cli("plan")
    assert code == 0
    assert "checks.max_kb, pad, quality, trim changed" in out
    assert "~ quality: 80 -> 60" in out and "~ trim: true -> (unset)" in out

    code, out, _ = run_cli("plan", "--json")
    (action,) = json.loads(out)["actions"]
    assert {c["field"] for c in action["changes"]} == {"checks.max_kb", "pad", "quality", "trim"}


def test_without_this_machines_record_the_plan_says_less(project, run_cli, tmp_path):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    key = tomllib.loads((root / "images.lock").read_text())["images"]["slime"]["output_key"]
    record = root / ".nebula-build/cache/outputs" / key[:2] / key
    data = json.loads(record.read_text())
    data["params"]["quality"] = "\x1b[2J\u202e80"  # not a record this tool wrote
    record.write_text(json.dumps(data))
    (root / "images.toml").write_text(MANIFEST.replace("quality = 80", "quality = 60"))
    code, out, _ = run_cli("plan")
    assert code == 0 and "output options changed" in out and "\x1b" not in out

    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(root / name, clone / name)
    shutil.copytree(root / "sprites", clone / "sprites")
    code, out, _ = run_cli("plan", cwd=clone)
    assert code == 0 and "output options changed" in out
    assert "regenerate" in out and "(its original is not cached)" in out  # a clone has no cache


def test_a_record_this_account_did_not_write_is_no_witness(project, run_cli):
    """A record from a checkout (or a pull request) could put a workflow command in the
    plan's reason or hide a move; unsealed or with a forged seal, it counts for nothing."""
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    key = tomllib.loads((root / "images.lock").read_text())["images"]["slime"]["output_key"]
    record = root / ".nebula-build/cache/outputs" / key[:2] / key
    data = json.loads(record.read_text())
    data["params"]["::error title=Secrets leaked::see"] = 1
    data["params"]["output"] = "sprites/other.webp"
    for mac in (data["mac"], None, "0" * 64):
        record.write_text(json.dumps({**data, "mac": mac}))
        moved = MANIFEST.replace("quality = 80", "quality = 60").replace("slime.webp", "other.webp")
        (root / "images.toml").write_text(moved)
        code, out, _ = run_cli("plan")
        assert code == 0 and "      output changed\n" in out  # what the lock alone says
        assert "::" not in out and '~ output: "sprites/slime.webp" -> "sprites/other.webp"' in out


def test_a_record_with_many_variants_is_still_read(tmp_path):
    """Variants' paths are in both the files and the options: a record of 48 widths with
    long paths (18 KB) was over the metadata limit and read as none."""
    from nebula_build.state.cache import Store

    store = Store(tmp_path)
    key = "ab" * 32
    files = {f"{'long-folder-name/' * 8}image-{w}w.webp": "cd" * 32 for w in range(48)}
    params = {"variants": [[path, 8, 8] for path in files], "format": "webp"}
    store.record_output(key, files, params)
    assert store.output_files(key) == files
    assert store.output_params(key) == params
