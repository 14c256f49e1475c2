"""The CI examples in examples/ci/ are valid YAML of the right shape, and every
nebula-build command in them parses with the real command line."""

from __future__ import annotations

import shlex
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
