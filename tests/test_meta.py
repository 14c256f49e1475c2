"""Keep the contract honest: schema, hooks, public API, start-up cost."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import nebula_build
from nebula_build.core.manifest import Defaults, ImageDecl, ManifestModel, json_schema
from nebula_build.plugin import hookspecs

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schema_is_up_to_date():
    committed = json.loads((ROOT / "schema/images.schema.json").read_text())
    assert committed == json_schema(), (
        "schema/images.schema.json is stale: run `nebula-build schema > schema/images.schema.json`"
    )


def test_every_manifest_field_has_a_description():
    for model in (ManifestModel, Defaults, ImageDecl):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


def test_every_hook_is_documented_and_prefixed():
    hooks = [
        f
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(f, "nebula_build_spec")
    ]
    assert hooks
    for hook in hooks:
        assert hook.__name__.startswith("nebula_build_")
        assert hook.__doc__ and len(hook.__doc__.strip()) > 40


def test_public_api_is_complete():
    import nebula_build.plugin as contract

    for module in (nebula_build, contract):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    defined = {
        n for n, v in vars(contract).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert defined <= set(contract.__all__), "nebula_build.plugin defines names it does not export"
    needed = {"Backend", "GenerationRequest", "GenerationResult", "ModelSupport", "hookimpl"}
    assert needed | {"OutOfCreditsError", "CredentialsError"} <= set(nebula_build.__all__)
    assert needed <= set(contract.__all__)


def test_plan_imports_no_image_or_network_library(tmp_path):
    (tmp_path / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\n[images.a]\nprompt = "x"\n'
        'output = "a.png"\n'
    )
    code = (
        "import sys; from nebula_build.cli import main; rc = main(['plan']); "
        "heavy = [m for m in ('PIL', 'httpx', 'torch', 'diffusers', 'watchfiles') "
        "if m in sys.modules]; print(heavy); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "nebula_build", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("nebula-build ")
