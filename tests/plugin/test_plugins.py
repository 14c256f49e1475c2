"""Plugins: third-party backends through the entry-point path, and clashes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

from nebula_build.plugin.manager import load_registry
from tests.conftest import REPO, install_distribution
from tests.plugin.conftest import plugin_source

CLASH = plugin_source(
    "preview",
    """
    async def generate(self, request):
        raise NotImplementedError
    """,
)


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


def test_a_plugin_backend_named_as_a_built_in_one_is_left_out(
    tmp_path, monkeypatch, project, run_cli
):
    """It stopped every command on the machine ("provided twice … uninstall one of
    them", nebula-build itself one of the two), even on a project that never used it."""
    site = tmp_path / "clash-site"
    install_distribution(site, "nebula-clash", {"nebula_clash": CLASH}, {"clash": "nebula_clash"})
    monkeypatch.syspath_prepend(str(site))
    registry = load_registry()
    assert registry.sources["preview"] == "nebula-build (built in)"
    project({"images.toml": MINIMAL})
    code, out, err = run_cli("plan")
    assert code == 0 and "Plan: 1 to generate" in out, err
    assert err == (
        "warning: nebula-clash 0.1: backend 'preview' is one built into nebula-build: the "
        "plugin must name its backend otherwise; its backends are left out until it is "
        "fixed or uninstalled\n"
    )
    assert "Traceback" not in err
    sys.modules.pop("nebula_clash", None)


def test_a_plugin_listing_its_backend_twice_is_one_backend_two_of_one_name_are_refused(
    install, project, run_cli
):
    """Either stopped every command: "provided twice: by hp 0.1.0 and by hp 0.1.0;
    uninstall one of them", which one distribution cannot do."""
    twice = plugin_source("twice").replace("return [Plugin]", "return [Plugin, Plugin]")
    install("twice", twice)
    project({"images.toml": MINIMAL.replace('"preview"', '"twice"')})
    code, _, err = run_cli("apply")
    assert code == 0, err
    two = twice.replace("return [Plugin, Plugin]", "return [Plugin, type('Other', (Plugin,), {})]")
    install("two", two.replace('name = "twice"', 'name = "two"'))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert err == (
        "warning: nebula-two 0.1: registers two backends named 'two'; its backends are left "
        "out until it is fixed or uninstalled\n"
    )


def test_two_entry_points_of_one_module_are_one_plugin(tmp_path, monkeypatch, project, run_cli):
    """`alias = "nebula_alias"` beside `solid = …` of the same module: every command
    warned with pluggy's several-line "Plugin already registered under a different
    name", listing every plugin module, and said its backends were left out (untrue)."""
    site = tmp_path / "alias-site"
    source = CLASH.replace('"preview"', '"aliased"')
    entry = {"aliased": "nebula_alias", "alias2": "nebula_alias"}
    install_distribution(site, "nebula-alias", {"nebula_alias": source}, entry)
    monkeypatch.syspath_prepend(str(site))
    project({"images.toml": MINIMAL})
    code, out, err = run_cli("plan")
    assert (code, err) == (0, ""), err
    assert "aliased" in load_registry().names()
    sys.modules.pop("nebula_alias", None)


def test_two_distributions_with_one_entry_point_name_is_an_error_naming_both(
    tmp_path, monkeypatch, project, run_cli
):
    for dist, module in (("nebula-first", "nebula_first"), ("nebula-second", "nebula_second")):
        site = tmp_path / f"site-{dist}"
        source = CLASH.replace('"preview"', '"studio"')
        install_distribution(site, dist, {module: source}, {"studio": module})
        monkeypatch.syspath_prepend(str(site))
    project({"images.toml": MINIMAL})
    code, out, err = run_cli("plan")
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: plugin 'studio' is provided twice: by nebula-")
    assert "nebula-first 0.1" in err and "nebula-second 0.1" in err
    assert err.endswith("; uninstall one of them\n")
    for module in ("nebula_first", "nebula_second"):
        sys.modules.pop(module, None)


def test_a_plugin_that_fails_to_import_is_left_out_and_named_once(install, project, run_cli):
    """It stopped every command, even on a project that uses only preview. It is a
    warning there, and an error only where its backend (its entry point's name) is used:
    that error alone, no longer a warning before it saying the same; `models` lists it
    as a row of its own."""
    install("broken", "import nebula_missing_dependency\n")
    problem = (
        "nebula-broken 0.1 (entry point broken = 'nebula_broken') could not be loaded: "
        "ModuleNotFoundError: No module named 'nebula_missing_dependency'"
    )
    warning = f"warning: {problem}; its backends are left out until it is fixed or uninstalled\n"
    project({"images.toml": MINIMAL, "broken.toml": MINIMAL.replace('"preview"', '"broken"')})
    code, out, err = run_cli("plan")
    assert code == 0 and err == warning and "Plan: 1 to generate" in out
    code, out, err = run_cli("models")
    assert code == 0 and err == ""
    assert f"\nbackend broken  broken: {problem}\n" in out
    assert out.index("backend preview") < out.index("backend broken")
    code, out, err = run_cli("models", "--json")
    assert code == 0 and err == warning and "broken" not in json.loads(out)
    code, out, err = run_cli("-f", "broken.toml", "validate")
    assert code == 1 and out == ""
    assert err == (
        f"error: broken.toml:3:1: defaults.backend: backend 'broken' cannot be used: {problem}\n"
    )
    code, _, err = run_cli("models", "--backend", "broken")
    assert code == 1 and err == f"error: backend 'broken' cannot be used: {problem}\n"
    code, _, err = run_cli("-f", "broken.toml", "validate", "--backend", "studio")
    assert code == 1
    assert err.endswith(
        "unknown backend 'studio' (known: diffusers, nebula, preview); left out as broken: broken\n"
    )


MINIMAL = (
    'version = 1\n[defaults]\nbackend = "preview"\nmodel = "black-forest-labs/FLUX.1-schnell"\n'
    '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "a.png"\n'
)
MISSPELT = """
from nebula_build.plugin import hookimpl

@hookimpl
def nebula_build_register_backend():
    return []
"""
UNMARKED = """
def nebula_build_register_backend():
    return []
"""
WRONG_ARGUMENTS = """
from nebula_build.plugin import hookimpl

@hookimpl
def nebula_build_register_backends(config):
    return []
"""
CRASHING = plugin_source(
    "crash",
    """
    async def generate(self, request):
        return 1 / 0
    """,
)


@pytest.mark.parametrize("source", [MISSPELT, UNMARKED], ids=["marked", "unmarked"])
def test_a_misspelt_hook_is_one_line_naming_the_plugin(source, install, project, run_cli):
    install("typo", source)
    project({"images.toml": MINIMAL, "typo.toml": MINIMAL.replace('"preview"', '"typo"')})
    problem = (
        "nebula-typo 0.1: 'nebula_build_register_backend' is not a nebula-build hook; "
        "did you mean 'nebula_build_register_backends'?"
    )
    code, out, err = run_cli("-f", "typo.toml", "plan")
    assert code == 1 and out == ""
    assert err.endswith(
        f"error: typo.toml:3:1: defaults.backend: backend 'typo' cannot be used: {problem}\n"
    )
    code, out, err = run_cli("plan")  # a project that does not use it is told, and goes on
    assert code == 0 and err == (
        f"warning: {problem}; its backends are left out until it is fixed or uninstalled\n"
    )


def test_a_hook_with_the_wrong_arguments_is_one_line_naming_the_plugin(install, project, run_cli):
    install("args", WRONG_ARGUMENTS)
    project({"images.toml": MINIMAL.replace('"preview"', '"args"')})
    code, _, err = run_cli("validate")
    assert code == 1 and err.count("\n") == 1  # no warning before it saying the same
    said = "error: images.toml:3:1: defaults.backend: backend 'args' cannot be used: "
    assert said + "nebula-args 0.1 (entry point args = 'nebula_args'): " in err
    assert "nebula_build_register_backends" in err and "config" in err


def test_a_crash_inside_a_plugin_backend_names_the_plugin_not_nebula_build(
    install, project, run_cli
):
    install("crash", CRASHING)
    root = project({"images.toml": MINIMAL.replace('"preview"', '"crash"')})
    code, _, err = run_cli("apply")
    assert code == 1
    assert (
        "a: backend 'crash' from nebula-crash 0.1 failed in generate: "
        "ZeroDivisionError: division by zero (a bug in that plugin" in err
    )
    assert "internal error" not in err and "Traceback" not in err
    assert not (root / "a.png").exists()


@pytest.mark.slow
def test_the_documented_example_plugin_installs_with_pip_and_runs(tmp_path, project):
    example = REPO / "examples" / "plugin-backend"
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*pip, "--no-index", "--target", str(site), str(example)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    guide = (REPO / "docs" / "plugins.md").read_text()
    manifest = next(b for b in re.findall(r"```toml\n(.*?)```", guide, re.S) if "[images." in b)
    root = project({"images.toml": manifest})  # the guide's own manifest
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nebula_build", *args]
        return subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, check=False
        )

    assert cli("apply").returncode == 0
    with Image.open(root / "swatch.png") as image:
        assert image.size == (256, 256)
        assert image.getpixel((128, 128)) != image.getpixel((0, 0))  # the border
    again = cli("apply")
    assert again.returncode == 0 and "No changes" in again.stdout
    listed = cli("models", "--backend", "solid")
    assert "solid/flat" in listed.stdout
    # the heading the guide quotes beside its `models` command is the one shown
    quoted = re.search(r'under "(backend solid \(.*?\))"', guide)
    assert quoted is not None and f"\n{quoted[1]}\n" in f"\n{listed.stdout}"
    described = json.loads(cli("models", "--backend", "solid", "--json").stdout)
    assert described["_backends"]["solid"]["distribution"] in guide
    wrong = (root / "images.toml").read_text().replace("border = 4", "boarder = 4")
    (root / "images.toml").write_text(wrong)
    refused = cli("validate")
    assert refused.returncode == 1 and "did you mean 'border'" in refused.stderr


def test_the_plugin_guide_shows_the_example_as_it_is():
    guide = (REPO / "docs" / "plugins.md").read_text()
    source = (REPO / "examples/plugin-backend/nebula_solid/__init__.py").read_text()
    assert f"```python\n{source}```" in guide


ODD_RESULTS = plugin_source(
    "odd",
    """
    async def generate(self, request):
        if request.prompt == "seed":
            return GenerationResult(png(request), seed="forty-two")
        if request.prompt == "memory":
            return GenerationResult(png(request), peak_memory="lots")
        if request.prompt == "negative memory":
            return GenerationResult(png(request), peak_memory=-1)
        if request.prompt == "nan":
            return GenerationResult(png(request), timings={"inference": float("nan")})
        if request.prompt == "inf":
            return GenerationResult(png(request), timings={"load": float("inf")})
        if request.prompt == "negative time":
            return GenerationResult(png(request), timings={"inference": -0.5})
        return GenerationResult(png(request), warnings=(None,))
    """,
)


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ("seed", "returned seed 'forty-two', not an integer from 0 to 2**63 - 1"),
        ("memory", "returned peak_memory 'lots', not an integer"),
        ("negative memory", "returned peak_memory -1, not an integer from 0 to 2**63 - 1"),
        ("nan", "returned timing 'inference' of nan, not a finite number of seconds from 0"),
        ("inf", "returned timing 'load' of inf, not a finite number of seconds from 0"),
        ("negative time", "returned timing 'inference' of -0.5, not a finite number of"),
        ("warnings", "returned warnings that are not strings"),
    ],
)
def test_a_malformed_result_from_a_plugin_is_one_line_naming_it(
    prompt, said, install, project, run_cli
):
    install("odd", ODD_RESULTS)
    manifest = MINIMAL.replace('"preview"', '"odd"').replace('prompt = "x"', f'prompt = "{prompt}"')
    root = project({"images.toml": manifest})
    code, _, err = run_cli("apply")
    assert code == 1
    assert f"a: backend 'odd' from nebula-odd 0.1 {said}" in err
    assert "Traceback" not in err and "internal error" not in err
    assert not (root / "a.png").exists()


def test_apply_json_stays_json_when_a_plugin_times_an_image_as_nan(install, project, run_cli):
    install("odd", ODD_RESULTS)
    project({"images.toml": MINIMAL.replace('"preview"', '"odd"').replace('"x"', '"nan"')})
    code, out, _ = run_cli("apply", "--json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    (result,) = json.loads(out, parse_constant=refuse)["results"]
    assert code == 1 and result["status"] == "failed" and "timings" not in result
    assert "timing 'inference' of nan" in result["error"]


def test_a_plugins_preflight_error_is_one_printable_line():
    from nebula_build.errors import CredentialsError
    from nebula_build.plugin import Backend
    from nebula_build.plugin.manager import BackendPlugin

    plugin = BackendPlugin(name="hostile", cls=Backend, source="hostile 1.0")
    with pytest.raises(CredentialsError) as caught, plugin.blame("preflight"):
        raise CredentialsError("no key\x1b[2J\nall images generated\x07")
    assert str(caught.value) == "no key all images generated"


ON_DISK = plugin_source(
    "local",
    """
    @classmethod
    def made_with_on_disk(cls, settings, model_id, root):
        return {"weights": OnDisk((os.environ["ON_DISK_FILE"],), weights, ("ON_DISK_FILE",))}

    async def generate(self, request):
        return GenerationResult(png(request, 64, 64), made_with={"weights": weights()})
    """,
    preamble="""
    def weights():
        with open(os.environ["ON_DISK_FILE"]) as file:
            text = file.read()
        return 1 / 0 if text == "crash" else text
    """,
)


def test_a_plugins_weights_on_disk_are_noted_and_its_crash_is_named(
    install, project, run_cli, monkeypatch, tmp_path
):
    from nebula_build.engine import noop, ondisk

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(ondisk, "RACY_SECONDS", 0.0)
    install("local", ON_DISK)
    weights = tmp_path / "weights.txt"
    weights.write_text("v1")
    monkeypatch.setenv("ON_DISK_FILE", str(weights))
    root = project({"images.toml": MINIMAL.replace('"preview"', '"local"')})
    assert run_cli("apply").code == 0
    assert run_cli("plan").out == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1

    weights.write_text("v2")
    assert noop.unchanged(str(root), "images.toml", None) is None
    code, out, _ = run_cli("plan")
    assert code == 0 and "note for a: made with different settings (weights v1, now v2)" in out
    code, out, _ = run_cli("status")  # said where status says a is up to date
    assert code == 0 and out.startswith(
        "a  up to date  a.png\n   note: made with different settings (weights v1, now v2): "
        "`nebula-build apply --replace a` makes it again\n"
    )
    code, out, _ = run_cli("apply")  # nothing to do, and still the reason to --replace
    assert code == 0 and "note for a: made with different settings (weights v1, now v2)" in out

    weights.write_text("crash")
    code, out, err = run_cli("plan")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "error: backend 'local' from nebula-local 0.1 failed in made_with_on_disk: "
        "ZeroDivisionError: division by zero (a bug in that plugin"
    )


SECRET_ON_DISK = plugin_source(
    "local",
    """
    @classmethod
    def made_with_on_disk(cls, settings, model_id, root):
        return {"weights": OnDisk((os.environ["ON_DISK_FILE"],), weights, ("LOCAL_TOKEN",))}

    async def generate(self, request):
        return GenerationResult(png(request, 64, 64), made_with={"weights": weights()})
    """,
    preamble="""
    def weights():
        with open(os.environ["ON_DISK_FILE"]) as file:
            return file.read()
    """,
)
CANARY = "canary-7f3a9c1e-secret"


def test_a_variable_a_plugins_weights_depend_on_is_checked_not_stored(
    install, project, run_cli, monkeypatch, tmp_path
):
    """The no-op snapshot stored each variable's value ("LOCAL_TOKEN\t=<the token>"):
    a plugin naming a secret variable had it written to .nebula-build/noop."""
    from nebula_build.engine import noop, ondisk

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(ondisk, "RACY_SECONDS", 0.0)
    install("local", SECRET_ON_DISK)
    weights = tmp_path / "weights.txt"
    weights.write_text("v1")
    monkeypatch.setenv("ON_DISK_FILE", str(weights))
    monkeypatch.setenv("LOCAL_TOKEN", CANARY)
    root = project({"images.toml": MINIMAL.replace('"preview"', '"local"')})
    assert run_cli("apply").code == 0
    assert run_cli("plan").out == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1
    written = [path for path in root.rglob("*") if path.is_file()]
    assert root / ".nebula-build/noop" in written
    assert not [path for path in written if CANARY.encode() in path.read_bytes()]

    monkeypatch.setenv("LOCAL_TOKEN", CANARY + "2")  # another value: a miss
    assert noop.unchanged(str(root), "images.toml", None) is None
    assert run_cli("plan").out == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1
    monkeypatch.delenv("LOCAL_TOKEN")  # unset: a miss
    assert noop.unchanged(str(root), "images.toml", None) is None


HOSTILE_MODELS = plugin_source(
    "hostile",
    """
    @classmethod
    def models(cls, settings):
        model = "::error::pwned\\n##[warning]x"
        return {model: ModelSupport(model, frozenset({"seed"}))}
    """,
)


@pytest.mark.parametrize("command", [("models", "--backend", "hostile"), ("validate",)])
def test_a_plugins_model_id_is_checked_as_a_manifests_is(install, project, run_cli, command):
    install("hostile", HOSTILE_MODELS)
    project({"images.toml": MINIMAL.replace('"preview"', '"hostile"')})
    code, out, err = run_cli(*command)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: nebula-hostile 0.1: hostile.models: '::error::pwned")
    assert "a model id is 1-200 letters" in err
    code, out, err = run_cli("models")  # every backend: the others listed, this one a row
    assert code == 0 and "backend preview\n" in out, err
    assert "\nbackend hostile  broken: nebula-hostile 0.1: hostile.models: '::error::" in out
    assert not any(line.startswith(("::", "##[")) for line in out.splitlines())


ODD_MODELS = plugin_source(
    "odd",
    """
    @classmethod
    def models(cls, settings):
        return {"odd/model": ModelSupport("odd/model", ODD_PARAMS, size_multiple=ODD_STEP)}
    """,
)


@pytest.mark.parametrize(
    ("params", "step", "said"),
    [
        ("frozenset({'seed'})", "0", "size_multiple 0 is not a whole number of pixels from 1"),
        ("frozenset()", "-8", "size_multiple -8 is not a whole number of pixels from 1"),
        ("frozenset()", "8.0", "size_multiple 8.0 is not a whole number of pixels from 1"),
        (
            "frozenset({'style', 'seed'})",
            "8",
            "takes 'style', not a parameter nebula-build passes on; a model may take "
            "negative_prompt, num_steps",
        ),
        ("'seed'", "8", "its params are not a set of parameter names"),
    ],
)
@pytest.mark.parametrize("command", [("models", "--backend", "odd"), ("validate",)])
def test_a_plugins_model_declaration_is_checked_before_it_is_used(
    params, step, said, command, install, project, run_cli
):
    install("odd", f"ODD_PARAMS = {params}\nODD_STEP = {step}\n{ODD_MODELS}")
    manifest = MINIMAL.replace('"preview"', '"odd"').replace(
        "black-forest-labs/FLUX.1-schnell", "odd/model"
    )
    project({"images.toml": manifest})
    code, out, err = run_cli(*command)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: nebula-odd 0.1: odd.models: 'odd/model': {said}"), err
    assert "Traceback" not in err


OTHER_SIZE = plugin_source(
    "sized",
    """
    async def generate(self, request):
        return GenerationResult(png(request, request.width * 2, request.height // 2))
    """,
)


@pytest.mark.parametrize("more", [False, True], ids=["output", "draw"])
def test_a_plugins_image_of_another_size_is_said(more, install, project, run_cli):
    install("sized", OTHER_SIZE)
    root = project({"images.toml": MINIMAL.replace('"preview"', '"sized"')})
    if more:  # a candidate draw goes through the cache alone
        assert run_cli("apply").code == 0
    code, _, err = run_cli("apply", *(["--more", "a"] if more else []))
    assert code == 0, err
    drawn = "a#1" if more else "a"
    assert (
        f"warning: {drawn}: sized returned 128x32 for a 64x64 request; the original is cached "
        "and the output is resized to the declared size" in err
    )
    with Image.open(root / "a.png") as image:
        assert image.size == (64, 64)


HANGING = plugin_source(
    "hang",
    """
    async def generate(self, request):
        await asyncio.sleep(3600)
    """,
)


def test_a_plugin_that_never_answers_fails_after_its_timeout_setting(install, project, cli_process):
    install("hang", HANGING)
    manifest = MINIMAL.replace('"preview"', '"hang"')
    root = project({"images.toml": f"{manifest}[backends.hang]\ntimeout = 0.5\n"})
    done = cli_process("apply")
    assert done.returncode == 1, done.stderr
    assert (
        "a: no image from hang within 0.5s; raise [backends.hang] timeout if generations "
        "take longer\n" in done.stderr
    )
    assert "Traceback" not in done.stderr and not (root / "a.png").exists()


EDITED = plugin_source(
    "edited",
    """
    @classmethod
    def models(cls, settings):
        return {MODEL: ModelSupport(MODEL, frozenset())}
    """,
    preamble="""
    MODEL = "edited/first"
    """,
)


def test_a_plugin_edited_in_place_is_asked_again_not_answered_from_the_caches(
    install, project, run_cli, monkeypatch, tmp_path
):
    from nebula_build.engine import noop

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    install("edited", EDITED)
    manifest = MINIMAL.replace('"preview"', '"edited"').replace(
        "black-forest-labs/FLUX.1-schnell", "edited/first"
    )
    root = project({"images.toml": manifest})
    assert run_cli("apply").code == 0
    assert run_cli("plan").out == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1
    assert run_cli("validate").code == 0

    # the same version, another model: what a plugin's author does while writing it
    module = tmp_path / "site-edited" / "nebula_edited.py"
    module.write_text(EDITED.replace('"edited/first"', '"edited/second"'))
    sys.modules.pop("nebula_edited")  # as a new process would import it
    assert noop.unchanged(str(root), "images.toml", None) is None
    for command in ("validate", "plan"):
        code, out, err = run_cli(command)
        assert code == 1 and out == "", (command, out)
        assert "'edited/first'" in err and "edited/second" in err, err


def test_a_paid_plugin_cut_off_by_its_timeout_says_it_may_have_billed(install, project, run_cli):
    install("hang", HANGING.replace('name = "hang"', 'name = "hang"\n    paid = True'))
    manifest = MINIMAL.replace('"preview"', '"hang"')
    project({"images.toml": f"{manifest}[backends.hang]\ntimeout = 0.2\n"})
    code, _, err = run_cli("apply", "--yes")
    assert code == 1, err
    assert (
        "a: no image from hang within 0.2s: hang bills its generations, so it may have "
        "billed this one; raise [backends.hang] timeout if generations take longer\n" in err
    )


HANGING_OPEN = plugin_source(
    "stuck",
    """
    async def __aenter__(self):
        with open(os.environ["STUCK_LOG"], "a") as log:
            log.write("opening\\n")
        await asyncio.sleep(3600)
        return self

    async def generate(self, request):
        raise AssertionError("never opened")
    """,
)


def test_a_plugin_that_never_opens_fails_after_its_timeout_setting(
    install, project, tmp_path, cli_process
):
    """Its generate was bounded by the timeout, but opening it was not: apply hung."""
    install("stuck", HANGING_OPEN)
    manifest = MINIMAL.replace('"preview"', '"stuck"')
    manifest += '[images.b]\nprompt = "b"\nwidth = 64\nheight = 64\noutput = "b.png"\n'
    project({"images.toml": f"{manifest}[backends.stuck]\ntimeout = 0.5\n"})
    done = cli_process("apply", STUCK_LOG=str(tmp_path / "opened.log"))
    assert done.returncode == 1, done.stderr
    said = (
        "stuck did not open within 0.5s; raise [backends.stuck] timeout if opening it takes longer"
    )
    assert f"\n  a: {said}\n" in done.stderr and f"\n  b: {said}\n" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # b waited for a's try, and was told its outcome: no second wait as long
    assert (tmp_path / "opened.log").read_text() == "opening\n"


SLOW_HOOKS = plugin_source(
    "slow",
    """
    @classmethod
    def models(cls, settings):
        if "models" in hangs:
            released.wait(5)
        return nebula_models()

    @classmethod
    def preflight(cls, settings, root):
        if "preflight" in hangs:
            released.wait(5)

    @classmethod
    def made_with(cls, settings, model_id):
        if "made_with" in hangs:
            released.wait(5)
        return {"server": "v1"}

    async def generate(self, request):
        return GenerationResult(png(request), made_with={"server": "v1"})

    @classmethod
    async def remote_models(cls, settings):
        if "remote_models" in hangs:
            await asyncio.sleep(5)
        return []

    async def __aexit__(self, *exc):
        if "closing" in hangs:
            await asyncio.sleep(5)
    """,
    preamble="""
    hangs = set()  # the hooks that hang, set by the test
    released = threading.Event()  # set by the test: a thread left hanging ends with it
    """,
)


@pytest.mark.parametrize(
    ("hook", "command", "said"),
    [
        (
            "models",
            "validate",
            "did not list its models within 0.5s; raise [backends.slow] timeout if it takes longer",
        ),
        (
            "preflight",
            "apply",
            "did not end its preflight within 0.5s; raise [backends.slow] "
            "timeout if it takes longer",
        ),
        (
            "remote_models",
            "models --remote --backend slow",
            "did not list its service's models within 0.5s; raise [backends.slow] timeout if "
            "it takes longer",
        ),
    ],
)
def test_a_plugin_hook_that_never_returns_fails_after_its_timeout_setting(
    hook, command, said, install, project, run_cli
):
    """Its generate and its opening were bounded by the timeout, but its models(), its
    preflight and its closing were not: every command on the project hung."""
    import importlib
    import time

    install("slow", SLOW_HOOKS)
    manifest = MINIMAL.replace('"preview"', '"slow"')
    root = project({"images.toml": f"{manifest}[backends.slow]\ntimeout = 0.5\n"})
    plugin = importlib.import_module("nebula_slow")
    plugin.hangs.add(hook)
    started = time.perf_counter()
    try:
        code, _, err = run_cli(*command.split())
    finally:
        plugin.released.set()
    assert time.perf_counter() - started < 4
    assert code == 1 and err.endswith(f"error: backend 'slow' from nebula-slow 0.1 {said}\n"), err
    assert not (root / "a.png").exists()


def test_a_plugin_that_never_closes_leaves_the_run_said_and_its_images_kept(
    install, project, run_cli
):
    """Closing comes after every image was written and recorded: a closing that never
    ends is a note, and apply --json still prints what the run did (it had printed
    the closing's error alone, exit 1)."""
    import importlib
    import time

    install("slow", SLOW_HOOKS)
    manifest = MINIMAL.replace('"preview"', '"slow"')
    root = project({"images.toml": f"{manifest}[backends.slow]\ntimeout = 0.5\n"})
    plugin = importlib.import_module("nebula_slow")
    plugin.hangs.add("closing")
    started = time.perf_counter()
    try:
        code, out, err = run_cli("apply", "--json")
    finally:
        plugin.released.set()
    assert time.perf_counter() - started < 4
    assert code == 0, err
    data = json.loads(out)
    assert data["failed"] == [] and data["generated"] == 1, data
    said = (
        "backend 'slow' from nebula-slow 0.1 did not close within 0.5s; raise "
        "[backends.slow] timeout if closing it takes longer (its images are written "
        "and recorded)"
    )
    assert f"note: {said}\n" in err, err
    assert said in data["notes"], data
    assert (root / "a.png").exists() and "[images.a]" in (root / "images.lock").read_text()


def test_a_plugin_whose_registration_fails_is_left_out_where_unused(install, project, run_cli):
    install(
        "fails",
        "from nebula_build.plugin import hookimpl\n\n@hookimpl\n"
        "def nebula_build_register_backends():\n    raise RuntimeError('no licence')\n",
    )
    project({"images.toml": MINIMAL})
    code, out, err = run_cli("plan")
    assert code == 0 and "+ a  create" in out
    assert err == (
        "warning: nebula-fails 0.1: nebula_build_register_backends failed: RuntimeError: "
        "no licence; its backends are left out until it is fixed or uninstalled\n"
    )


def test_a_plugins_made_with_that_never_returns_is_said_after_its_timeout(
    install, project, run_cli
):
    """plan asks what made an image recorded in the lock: it hung there too. Past the
    timeout the plan goes on without the settings note (a plugin's bug costs the note,
    never the plan)."""
    import importlib

    install("slow", SLOW_HOOKS)
    manifest = MINIMAL.replace('"preview"', '"slow"')
    root = project({"images.toml": f"{manifest}[backends.slow]\ntimeout = 0.5\n"})
    assert run_cli("apply").code == 0
    with (root / "images.toml").open("a") as file:  # a plan to make, not "No changes"
        file.write('[images.b]\nprompt = "b"\nwidth = 64\nheight = 64\noutput = "b.png"\n')
    plugin = importlib.import_module("nebula_slow")
    plugin.hangs.add("made_with")
    try:
        code, _, err = run_cli("plan")
    finally:
        plugin.released.set()
    assert code == 0 and err.endswith(
        "note: backend 'slow' from nebula-slow 0.1 did not say what made its images within "
        "0.5s; raise [backends.slow] timeout if it takes longer; the plan cannot say which "
        "images were made otherwise\n"
    ), err


def test_watch_says_a_plugin_that_never_closes_when_it_ends(install, project, run_cli):
    import importlib

    install("slow", SLOW_HOOKS)
    manifest = MINIMAL.replace('"preview"', '"slow"')
    root = project({"images.toml": f"{manifest}[backends.slow]\ntimeout = 0.5\n"})
    plugin = importlib.import_module("nebula_slow")
    plugin.hangs.add("closing")
    try:
        code, out, err = run_cli("watch", "--once")
    finally:
        plugin.released.set()
    assert code == 0, out + err
    assert (
        "did not close within 0.5s" in out + err and "images are written and recorded" in out + err
    )
    assert (root / "a.png").exists()


SLOW_TO_SAY = plugin_source(
    "slowsay",
    """
    @classmethod
    def parse_settings(cls, raw):
        if "parse_settings" in hangs:
            released.wait(5)
        return super().parse_settings(raw)

    @classmethod
    def secret_variables(cls, settings):
        if "secret_variables" in hangs:
            released.wait(5)
        return ()

    @classmethod
    def made_with_on_disk(cls, settings, model_id, root):
        def compute():
            if "compute" in hangs:
                released.wait(5)
            return "v1"

        return {"weights": OnDisk(paths=(str(root / "images.toml"),), compute=compute)}

    async def generate(self, request):
        return GenerationResult(png(request), made_with={"weights": "v1"})
    """,
    preamble="""
    hangs = set()  # the hooks that hang, set by the test
    released = threading.Event()  # set by the test: a thread left hanging ends with it
    """,
)


@pytest.mark.parametrize(
    ("hook", "command", "said"),
    [
        ("parse_settings", "plan", "did not read its settings within 0.5s"),
        ("secret_variables", "apply", "did not name its secret variables within 0.5s"),
        ("compute", "plan", "did not compute what its images depend on within 0.5s"),
    ],
)
def test_a_plugins_settings_secrets_or_files_that_never_return_fail_after_its_timeout(
    hook, command, said, install, project, run_cli
):
    """parse_settings, secret_variables and an OnDisk's compute were called as they were,
    not held to [backends.NAME] timeout as the plugin's other hooks: plan or apply hung
    for good."""
    import importlib
    import time

    install("slowsay", SLOW_TO_SAY)
    manifest = MINIMAL.replace('"preview"', '"slowsay"')
    project({"images.toml": f"{manifest}[backends.slowsay]\ntimeout = 0.5\n"})
    if hook == "compute":  # asked of what an image was made with: one made first
        code, _, err = run_cli("apply", "--quiet")
        assert code == 0, err
        os.utime("images.toml", (0, 0))  # a plan that reads the manifest, not a no-op's
    plugin = importlib.import_module("nebula_slowsay")
    plugin.hangs.add(hook)
    started = time.perf_counter()
    try:
        code, _, err = run_cli(command)
    finally:
        plugin.released.set()
    assert time.perf_counter() - started < 4
    assert code == 1, err
    assert f"backend 'slowsay' from nebula-slowsay 0.1 {said}; raise [backends.slowsay] " in err
    assert err.count("\n") == 1, err


def test_the_lock_records_which_plugin_version_made_an_image(install, project, cli_process, sites):
    """An image a plugin installed beside nebula-build made records the plugin's
    distribution and version (`made_with.plugin`); once the plugin is upgraded, `plan`
    notes the images the older version made, with how to make them again, and makes
    none by itself (the lock said nothing of which version made an image)."""
    install("acme", plugin_source("acme"))
    root = project({"images.toml": MINIMAL.replace('"preview"', '"acme"')})
    done = cli_process("apply")
    assert done.returncode == 0, done.stderr
    lock = (root / "images.lock").read_text()
    assert 'made_with = { plugin = "nebula-acme 0.1" }' in lock, lock
    assert cli_process("plan").stdout == "No changes: 1 image up to date.\n"

    (metadata,) = sites[0].glob("*.dist-info/METADATA")
    metadata.write_text(metadata.read_text().replace("Version: 0.1", "Version: 0.2"))
    done = cli_process("plan")
    assert done.returncode == 0, done.stderr
    assert (
        "note for a: made with different settings (plugin nebula-acme 0.1, now nebula-acme 0.2)"
        in done.stdout
    ), done.stdout
    assert "0 to generate" in done.stdout or "No changes" in done.stdout, done.stdout
    done = cli_process("apply", "--replace", "a")
    assert done.returncode == 0, done.stderr
    assert 'plugin = "nebula-acme 0.2"' in (root / "images.lock").read_text()
    assert cli_process("plan").stdout == "No changes: 1 image up to date.\n"
