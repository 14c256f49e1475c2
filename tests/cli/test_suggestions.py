"""A mistyped command, backend or model id gets a "did you mean", as a mistyped
key does; a word close to nothing lists the choices without a guess."""

from __future__ import annotations

import pytest

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""
HERO = '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["aply"], "invalid choice: 'aply'; did you mean 'apply'?"),
        (["vaildate"], "invalid choice: 'vaildate'; did you mean 'validate'?"),
        (["cache", "psh"], "invalid choice: 'psh'; did you mean 'push'?"),
    ],
    ids=str,
)
def test_a_mistyped_command_says_did_you_mean(argv, expected, project, run_cli, capsys):
    project({"images.toml": HEAD + HERO})
    assert run_cli(*argv).code == 1
    assert expected in capsys.readouterr().err


def test_a_command_close_to_nothing_lists_the_commands(project, run_cli, capsys):
    project({"images.toml": HEAD + HERO})
    assert run_cli("xyzzy").code == 1
    err = capsys.readouterr().err
    assert "did you mean" not in err and "(choose from 'init'" in err


def test_a_mistyped_backend_says_did_you_mean(project, run_cli):
    project({"images.toml": HEAD.replace('"preview"', '"previw"') + HERO})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.strip().endswith(
        "defaults.backend: unknown backend 'previw' (known: diffusers, nebula, preview); "
        "did you mean 'preview'?"
    )
    project({"images.toml": HEAD + HERO})
    code, _, err = run_cli("plan", "--backend", "Preview")
    assert code == 1
    assert err.strip().endswith("did you mean 'preview'?")


def test_a_backend_no_plugin_provides_says_to_install_one(project, run_cli):
    """A project cloned where its plugin is not installed: the name is no typo."""
    project({"images.toml": HEAD.replace('"preview"', '"acme"') + HERO})
    code, out, err = run_cli("validate")
    assert code == 1 and out == ""
    assert err == (
        "error: images.toml:3:1: defaults.backend: unknown backend 'acme' "
        "(known: diffusers, nebula, preview); no installed plugin provides it: "
        "install the package that does (docs/plugins.md)\n"
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("black-forest-labs/FLUX.1-schnel", "black-forest-labs/FLUX.1-schnell"),
        ("flux.1-schnell", "black-forest-labs/FLUX.1-schnell"),
        ("stabilityai/stable-diffusion-xl-base-1", "stabilityai/stable-diffusion-xl-base-1.0"),
    ],
)
def test_a_mistyped_model_id_says_did_you_mean(written, meant, project, run_cli):
    project({"images.toml": HEAD.replace("black-forest-labs/FLUX.1-schnell", written) + HERO})
    code, _, err = run_cli("plan")
    assert code == 1
    line = err.strip()
    assert f"defaults.model: unknown model {written!r} for backend 'preview'" in line
    assert line.endswith(f"; did you mean {meant!r}?")


@pytest.mark.parametrize("output", ["static\\img\\hero.png", "C:\\site\\hero.png"])
def test_a_windows_path_in_double_quotes_says_to_write_slashes(output, project, run_cli):
    project({"images.toml": HEAD + HERO.replace('"hero.png"', f'"{output}"')})
    code, _, err = run_cli("plan")
    assert code == 1
    where, _, said = err.partition(": images.hero.output: ")
    assert where.startswith("error: images.toml:9:")  # where tomllib stopped
    assert said == (
        'a \\ in a "…" string starts an escape in TOML: write paths with / '
        "(static/img/hero.png), as on every system, or in '…' quotes\n"
    )  # had been only "invalid TOML: Unescaped '\\' in a string"
