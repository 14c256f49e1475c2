"""The CI examples in examples/ci/ are valid YAML of the right shape, and every
nebula-build command in them parses with the real command line."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nebula_build.cli import build_parser

yaml = pytest.importorskip("yaml")

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
GITHUB = CI / "github" / "images.yml"
GITLAB = CI / "gitlab-ci.yml"

_SHELL_OPERATORS = {"||", "&&", ";", "|", "then", "else", "do"}


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _github_scripts(workflow: dict[Any, Any]) -> Iterator[str]:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield step["run"]


def _gitlab_scripts(pipeline: dict[Any, Any]) -> Iterator[str]:
    for name, job in pipeline.items():
        if isinstance(job, dict) and not name.startswith("."):
            for key in ("before_script", "script", "after_script"):
                yield from job.get(key, [])


def nebula_commands(script: str) -> Iterator[list[str]]:
    """The arguments of every nebula-build command a shell script runs."""
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words):
            if word == "nebula-build" and (index == 0 or words[index - 1] in _SHELL_OPERATORS):
                rest = words[index + 1 :]
                end = next((i for i, w in enumerate(rest) if w in _SHELL_OPERATORS), len(rest))
                yield rest[:end]


def _commands(path: Path) -> list[list[str]]:
    data = _load(path)
    scripts = _github_scripts(data) if path == GITHUB else _gitlab_scripts(data)
    return [argv for script in scripts for argv in nebula_commands(script)]


def test_the_github_workflow_plans_pull_requests_and_applies_main():
    workflow = _load(GITHUB)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"]["branches"] == ["main"]
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    assert "NEBULA_API_KEY" not in str(plan)  # a pull request never sees the key
    assert plan["env"]["NEBULA_BUILD_CACHE_READONLY"] == "1"
    assert apply["env"]["NEBULA_API_KEY"] == "${{ secrets.NEBULA_API_KEY }}"
    uses = [s["uses"] for job in (plan, apply) for s in job["steps"] if "uses" in s]
    assert "actions/checkout@v4" in uses and "actions/setup-python@v5" in uses
    assert all(u.rpartition("@")[2].startswith("v") for u in uses)  # pinned by major version
    (plan_script,) = [s["run"] for s in plan["steps"] if "--detailed-exitcode" in s.get("run", "")]
    assert '"$code" -eq 2' in plan_script  # changes pending is a notice, not a failure


def test_the_gitlab_pipeline_plans_merge_requests_and_applies_the_default_branch():
    pipeline = _load(GITLAB)
    assert pipeline["plan"]["allow_failure"] == {"exit_codes": [2]}
    assert pipeline["plan"]["variables"]["NEBULA_BUILD_CACHE_READONLY"] == "1"
    assert "CI_DEFAULT_BRANCH" in pipeline["apply"]["rules"][0]["if"]


def test_the_gitlab_apply_starts_from_the_branch_s_tip_and_keeps_the_lock():
    pipeline = _load(GITLAB)
    assert "slim" not in pipeline["default"]["image"]  # pip needs git for a git URL
    apply = pipeline["apply"]
    script = "\n".join(apply["script"])
    assert script.index('git checkout --quiet -B "$CI_DEFAULT_BRANCH" FETCH_HEAD') < script.index(
        "nebula-build apply"
    )
    assert "|| code=$?" in script and apply["script"][-1] == 'exit "$code"'
    assert "[skip ci]" in script
    assert apply["artifacts"] == {"when": "always", "paths": ["images.lock", "static/"]}
    # the cache is left out as the GitHub step, which is run below, leaves it out
    github = _github_step(_load(GITHUB)["jobs"]["apply"], "Commit the images")["run"]
    (unstage,) = [line.strip() for line in github.splitlines() if "git rm" in line]
    assert unstage in script


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_every_command_in_the_examples_parses(path):
    commands = _commands(path)
    assert {argv[0] for argv in commands} >= {"plan", "apply"}
    parser = build_parser()
    for argv in commands:
        try:
            _, extras = parser.parse_known_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: nebula-build {shlex.join(argv)} does not parse")
        assert not extras, f"{path.name}: nebula-build {shlex.join(argv)}: unknown {extras}"


def test_shell_lines_are_read_as_commands():
    script = "pip install nebula-build\nx=0\nnebula-build plan --json || code=$?  # note\n"
    assert list(nebula_commands(script)) == [["plan", "--json"]]


def _github_step(job: dict[Any, Any], name: str) -> dict[Any, Any]:
    return next(step for step in job["steps"] if step.get("name") == name)


def test_a_queued_github_apply_starts_from_the_lock_the_run_before_committed():
    """A run that waited behind another checks out main as it is then: from the commit
    that started it, it would pay for the other run's images again and its own commit
    would conflict on images.lock."""
    workflow = _load(GITHUB)
    apply = workflow["jobs"]["apply"]
    checkout = next(s for s in apply["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["ref"] == "${{ github.ref_name }}"
    assert apply["concurrency"]["cancel-in-progress"] is False


def test_the_github_workflow_keeps_the_key_and_the_prices_out_of_a_pull_request_s_reach():
    workflow = _load(GITHUB)
    apply = workflow["jobs"]["apply"]
    assert apply["environment"] == "images"  # a branch other than main cannot deploy to it
    assert workflow["env"]["NEBULA_BUILD_PRICES"] == "${{ vars.NEBULA_BUILD_PRICES }}"
    assert "${{" not in "".join(_github_scripts(workflow))  # no expression pasted into a shell


SITE = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[assets]
manifest = "static/images.json"

[images.hero]
prompt = "a lighthouse"
output = "static/img/hero.png"

[images.logo]
prompt = "a fox"
output = "static/img/logo.png"
"""


def _git(cwd: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize(
    ("ignored", "folder"),
    [(True, ""), (False, ""), (False, "site")],
    ids=["cache-ignored", "cache-not-ignored", "in-a-subfolder"],
)
def test_the_github_commit_step_commits_everything_the_apply_wrote_and_no_cache(
    ignored, folder, tmp_path, run_cli, monkeypatch
):
    """The header's `-C path/to/site` puts the cache in that folder: the commit step,
    run at the repository's root, must leave it out there too."""
    import subprocess

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(work))
    site = work / folder
    site.mkdir(exist_ok=True)
    (site / "images.toml").write_text(SITE, encoding="utf-8")
    (work / ".gitignore").write_text(".nebula-build/\n" if ignored else "", encoding="utf-8")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "dev")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "dev@example.com")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "manifest")
    _git(work, "push", "-q", "origin", "main")
    assert run_cli("-C", folder or ".", "apply", cwd=work).code == 0
    assert (site / ".nebula-build").is_dir()

    commit = _github_step(_load(GITHUB)["jobs"]["apply"], "Commit the images")
    assert commit["if"] == "${{ !cancelled() }}"  # what a partly failed apply made is kept
    done = subprocess.run(
        ["bash", "-e", "-c", commit["run"]],
        cwd=work,
        env={**os.environ, "GITHUB_SHA": _git(work, "rev-parse", "HEAD").strip()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pushed = _git(origin, "show", "--name-only", "--format=%s", "main").split()
    assert "[skip" in pushed and "ci]" in pushed
    made = {"images.lock", "static/images.json", "static/img/hero.png"}
    assert {str(Path(folder, name)) for name in made} <= set(pushed)
    assert not any(".nebula-build" in Path(name).parts for name in pushed)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_fork_s_plan_job_says_why_it_cannot_install_nebula_build():
    """GitHub passes no configuration variables to a pull request from a fork, so
    `vars.NEBULA_BUILD_INSTALL` is empty there although the repository sets it: the
    install step must say so, not only that the variable is unset."""
    import subprocess

    workflow = _load(GITHUB)
    assert workflow["env"]["NEBULA_BUILD_INSTALL"] == "${{ vars.NEBULA_BUILD_INSTALL }}"
    install = _github_step(workflow["jobs"]["plan"], "Install nebula-build")
    fork = {**os.environ, "NEBULA_BUILD_INSTALL": ""}  # what `vars.…` is for a fork
    done = subprocess.run(
        ["bash", "-e", "-c", install["run"]], env=fork, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "a pull request from a fork gets no variables" in done.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_gitlab_commit_back_commits_the_images_and_not_the_job_s_pip_cache(
    tmp_path, run_cli, monkeypatch
):
    """GitLab's own Python template puts pip's cache in the checkout
    (`PIP_CACHE_DIR: $CI_PROJECT_DIR/.cache/pip`): a pipeline that has it commits
    what the apply made, never the wheels its install left there."""
    import subprocess

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    _git(tmp_path, "clone", "-q", str(origin), str(work))
    (work / "images.toml").write_text(SITE, encoding="utf-8")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "dev")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "dev@example.com")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "manifest")
    _git(work, "push", "-q", "origin", "main")
    push_url = "https://oauth2:glpat-test@gitlab.example/group/site.git"
    _git(work, "config", f"url.{origin}.insteadOf", push_url)  # the push goes to origin
    wheel = work / ".cache" / "pip" / "wheels" / "nebula_build-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"PK\x03\x04")  # what `pip install` left in the checkout
    assert run_cli("apply", cwd=work).code == 0

    script = _load(GITLAB)["apply"]["script"]
    (commit_back,) = [line for line in script if "IMAGES_PUSH_TOKEN" in line]
    ci = {
        "IMAGES_PUSH_TOKEN": "glpat-test",
        "CI_SERVER_HOST": "gitlab.example",
        "CI_PROJECT_PATH": "group/site",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_SHORT_SHA": "abc1234",
    }
    done = subprocess.run(
        ["bash", "-e", "-c", commit_back],
        cwd=work,
        env={**os.environ, **ci},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pushed = _git(origin, "show", "--name-only", "--format=%s", "main").split()
    assert "[skip" in pushed and "ci]" in pushed
    assert {"images.lock", "static/images.json", "static/img/hero.png"} <= set(pushed)
    assert not [name for name in pushed if name.startswith((".cache", ".nebula-build"))]
