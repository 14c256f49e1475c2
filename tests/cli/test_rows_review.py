"""What an attacker's review of images from data (issue 17) found, through the CLI."""

from __future__ import annotations

import json

from tests.conftest import nebula_manifest


def plan_json(run_cli) -> dict[str, str]:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


def test_a_new_id_column_keeps_the_files_the_old_ids_wrote(project, run_cli, nebula_server):
    csv = "sku,code,name\na,a,Green tea\nb,b,Black tea\n"
    product = {"rows": "data/p.csv", "id": "sku", "prompt": "{name}", "output": "img/{sku}.png"}
    root = project({"images.toml": nebula_manifest({"p": product}), "data/p.csv": csv})
    assert run_cli("apply").code == 0
    before = {p.name: p.read_bytes() for p in (root / "img").iterdir()}
    assert sorted(before) == ["a.png", "b.png"]

    renamed = csv.replace("sku,code", "sku,Code").replace("a,a", "a,A")
    root.joinpath("data/p.csv").write_text(renamed)
    manifest = nebula_manifest({"p": {**product, "id": "Code"}})
    root.joinpath("images.toml").write_text(manifest)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert "0 failed" in out and "disappeared" not in out + err
    assert {p.name: p.read_bytes() for p in (root / "img").iterdir()} == before
    assert nebula_server.generations == []
    assert set(plan_json(run_cli).values()) == {"noop"}
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "img").iterdir()) == ["a.png", "b.png"]


def test_a_renamed_image_keeping_its_output_keeps_its_file(project, run_cli, nebula_server):
    hero = {"prompt": "a castle", "output": "img/hero.png"}
    root = project({"images.toml": nebula_manifest({"a": hero})})
    assert run_cli("apply").code == 0
    data = (root / "img/hero.png").read_bytes()

    root.joinpath("images.toml").write_text(nebula_manifest({"b": hero}))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "img/hero.png" in out
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert (root / "img/hero.png").read_bytes() == data
    assert set(plan_json(run_cli).values()) == {"noop"}
