"""Keep the contract honest: schema, hooks, public API, start-up cost."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nebula_build
from nebula_build.core.manifest import Defaults, ImageDecl, ManifestModel, json_schema
from nebula_build.plugin import hookspecs
from nebula_build.plugin.manager import builtin_settings

ROOT = Path(__file__).resolve().parents[1]


def test_committed_schema_is_up_to_date():
    committed = json.loads((ROOT / "schema/images.schema.json").read_text())
    assert committed == json_schema(builtin_settings()), (
        "schema/images.schema.json is stale: run `nebula-build schema > schema/images.schema.json`"
    )


def _schema_errors(manifest: str) -> list[str]:
    """What an editor reading the committed schema says about `manifest`."""
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "schema/images.schema.json").read_text())
    validator = Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(tomllib.loads(manifest))]


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("examples/*/images.toml")), ids=lambda p: p.parent.name
)
def test_the_schema_accepts_every_example(path):
    assert _schema_errors(path.read_text()) == []


@pytest.mark.parametrize("backend", ["nebula", "preview", "diffusers"])
def test_the_schema_rejects_a_typo_in_a_builtin_backends_settings_as_validate_does(
    backend, project, run_cli
):
    manifest = (
        f'version = 1\n[defaults]\nbackend = "{backend}"\n'
        f"[backends.{backend}]\nconcurrency = 2\ntimout = 30\n"
    )
    errors = _schema_errors(manifest)
    assert len(errors) == 1 and "'timout' was unexpected" in errors[0]
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1 and "timout" in err
    fixed = manifest.replace("timout", "timeout")
    assert _schema_errors(fixed) == []


def test_the_schema_leaves_a_plugins_backend_settings_open():
    assert _schema_errors('version = 1\n[backends.fake]\nlog = "x"\nanything = 1\n') == []


@pytest.mark.parametrize(
    ("files", "errors"),
    [
        ('"posts/*.md"', 0),
        ('["posts/*.md", "posts/*/index.md"]', 0),
        ("[]", 1),  # as validate says: names no pattern
        ('["posts/*.md", "posts/*.md"]', 1),  # the same pattern twice
        ('["posts/*.md", 3]', 1),
    ],
)
def test_the_schema_takes_one_pattern_of_posts_or_a_list_as_validate_does(files, errors):
    manifest = (
        'version = 1\n[images.cover]\nprompt = "{title}"\noutput = "img/{slug}.png"\n'
        f"rows = {{ files = {files} }}\n"
    )
    assert len(_schema_errors(manifest)) == errors


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


def test_validate_of_a_manifest_in_error_loads_no_plan_lock_or_watch_module(tmp_path):
    """Each module costs its compile where no `.pyc` is written (CI): `validate` of
    100,000 images missing a prompt paid ~0.1 s for these, which it never runs."""
    (tmp_path / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\n[images.a]\noutput = "a.png"\n'
    )
    unused = ("core.plan", "state.lockfile", "core.incremental", "core.chunks")
    code = (
        "import sys; from nebula_build.cli import main; rc = main(['validate']); "
        f"print([m for m in {unused!r} if 'nebula_build.' + m in sys.modules]); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "images.a.prompt: is required" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "nebula_build", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("nebula-build ")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def _headings(markdown: str) -> set[str]:
    outside_code = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    return {_anchor(line.lstrip("#")) for line in outside_code.splitlines() if line.startswith("#")}


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))], ids=lambda p: p.name
)
def test_every_link_between_the_docs_resolves(page):
    """The README points into docs/ and docs/ back at examples: a moved section or a
    renamed heading must not leave a reader at a 404 or the top of a page."""
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", text, flags=re.DOTALL)):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in _headings(linked.read_text())
        ):
            broken.append(target)
    assert broken == []


def test_the_readme_command_table_names_every_option():
    """Each row of the README's command table lists every option its command takes."""
    import argparse

    from nebula_build.cli import build_parser

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `nebula-build (\w+)[^|]*\| (.*) \|$", text, re.MULTILINE)
    table = dict(rows)
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for command, parser in sub.choices.items():
        parsers = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
        for option in {o for p in parsers for a in p._actions for o in a.option_strings}:
            if option not in ("-h", "--help") and f"`{option}" not in table.get(command, ""):
                missing.append(f"{command} {option}")
    assert missing == []


def _options_of_each_command() -> dict[str, set[str]]:
    """Every option each command takes, the global ones (-C, -f) included."""
    import argparse

    from nebula_build.cli import build_parser

    parser = build_parser()
    global_options = {o for a in parser._actions for o in a.option_strings}
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = {}
    for command, command_parser in sub.choices.items():
        parsers = [command_parser]
        for action in command_parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
        taken = {o for p in parsers for a in p._actions for o in a.option_strings}
        options[command] = global_options | taken
    return options


#: commands in the docs whose "options" are not nebula-build's: image names the
#: README's completion notes type (`pick -d`), and Terraform's `plan -out`
_NOT_OPTIONS = frozenset({"pick -d", "plan -d", "plan -out"})


def _commands_shown(markdown: str) -> list[str]:
    """Inline code spans, and the lines of shell blocks (comments and `$ ` cut off)."""
    shown = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.DOTALL))
    for block in re.findall(r"```(?:sh|console)\n(.*?)```", markdown, flags=re.DOTALL):
        shown += [line.removeprefix("$ ").split(" #")[0] for line in block.splitlines()]
    return shown


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))], ids=lambda p: p.name
)
def test_every_option_the_docs_give_a_command_exists(page):
    """A command shown (`apply --locked`, `nebula-build -C x plan --out p`) takes each
    option shown with it: a renamed or removed flag must not stay in the docs."""
    options = _options_of_each_command()
    commands = "|".join(options)
    unknown = []
    for code in _commands_shown(page.read_text(encoding="utf-8")):
        for part in re.split(r"&&|\|\||;|\|", code):
            shown = re.match(
                rf"\s*(?:nebula-build(?:\s+-[Cf]\s+\S+)*\s+)?({commands})(\s.*)?$", part
            )
            if shown is None or part.strip() in _NOT_OPTIONS:
                continue
            rest = (shown[2] or "").split(" -- ")[0]
            for option in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", rest):
                if option not in options[shown[1]]:
                    unknown.append(f"{part.strip()}: {option}")
    assert unknown == []


def test_the_architecture_page_names_every_module_of_the_base():
    """docs/architecture.md's picture lists the base (top-level modules), as the
    layers contract in pyproject.toml does: a new one must be drawn too."""
    modules = {p.name for p in (ROOT / "nebula_build").glob("*.py")} - {
        "__init__.py",
        "__main__.py",
    }
    picture = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    base = picture[picture.index("\nbase ") : picture.index("nothing of ours")]
    assert set(re.findall(r"\w+\.py", base)) == modules


def _bench_runs_shown(markdown: str) -> list[tuple[str, str]]:
    """Each `bench/x.py --flag …` (or `x.py --flag`) the page shows: the script and
    what follows its name in that code span or shell line."""
    runs = []
    for code in _commands_shown(markdown):
        runs += re.findall(r"(?<![\w/-])(?:bench/)?(\w+)\.py((?:\s+[^\s`]+)*)", code)
    return [(script, rest) for script, rest in runs if (ROOT / "bench" / f"{script}.py").exists()]


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))], ids=lambda p: p.name
)
def test_every_option_the_docs_give_a_benchmark_exists(page):
    """`python bench/scale.py --100k`, `watch_latency.py --images 10000`: a benchmark's
    option the docs show is one its parser declares (in the script or bench/_common.py)."""
    common = (ROOT / "bench/_common.py").read_text(encoding="utf-8")
    unknown = []
    for script, rest in _bench_runs_shown(page.read_text(encoding="utf-8")):
        source = (ROOT / "bench" / f"{script}.py").read_text(encoding="utf-8") + common
        for option in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", rest):
            if f'"{option}"' not in source:
                unknown.append(f"{script}.py {option}")
    assert unknown == []
