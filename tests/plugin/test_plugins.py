"""Plugins: third-party backends through the entry-point path, and clashes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nebula_build.errors import PluginError
from nebula_build.plugin.manager import load_registry
from tests.conftest import install_distribution

CLASH = """
from nebula_build import Backend, hookimpl
from nebula_build.plugin.catalog import nebula_models

class Clash(Backend):
    name = "preview"
    @classmethod
    def models(cls, settings):
        return nebula_models()
    async def generate(self, request):
        raise NotImplementedError

@hookimpl
def nebula_build_register_backends():
    return [Clash]
"""


def test_third_party_backend_is_found_through_its_entry_point(fake_site, project, run_cli):
    registry = load_registry()
    assert "fake" in registry.names()
    assert registry.sources["fake"] == "nebula-build-fake 0.1"
    assert registry.sources["preview"] == "nebula-build (built in)"
    assert "backend fake" in run_cli("models").out


def test_third_party_backend_works_in_a_fresh_process(fake_site, project, tmp_path):
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "fake"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n[images.a]\n'
            'prompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "nebula_build", "apply"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'backend = "fake"' in (root / "images.lock").read_text()


def test_two_distributions_with_one_backend_name_is_an_error_naming_both(
    tmp_path, monkeypatch, project, run_cli
):
    site = tmp_path / "clash-site"
    install_distribution(site, "nebula-clash", {"nebula_clash": CLASH}, {"clash": "nebula_clash"})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match=r"nebula-build \(built in\) and by nebula-clash 0\.1"):
        load_registry()
    project({"images.toml": "version = 1\n"})
    code, _, err = run_cli("plan")
    assert code == 1 and "provided twice" in err and "Traceback" not in err
    sys.modules.pop("nebula_clash", None)


def test_a_broken_plugin_is_named(tmp_path, monkeypatch):
    site = tmp_path / "broken-site"
    install_distribution(
        site,
        "nebula-broken",
        {"nebula_broken": "raise ImportError('oops')"},
        {"broken": "nebula_broken"},
    )
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match="oops"):
        load_registry()
