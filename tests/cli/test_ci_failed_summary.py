"""What a CI job shows when things go wrong: a job summary that cannot be written is a
warning."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW

SITE = (
    PREVIEW
    + """
[images.hero]
prompt = "a lighthouse"
output = "img/hero.png"

[images.logo]
prompt = "a fox"
output = "img/logo.png"
"""
)


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_job_summary_that_cannot_be_written_is_a_warning(command, project, run_cli, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", "/nonexistent/dir/s.md")
    project({"images.toml": SITE})
    warning = (
        "warning: could not write the job summary to GITHUB_STEP_SUMMARY "
        "(/nonexistent/dir/s.md: No such file or directory); the job's page has no "
        "summary of this step\n"
    )
    for _ in range(3):  # the whole plan, then the no-op snapshot's answer
        code, _, err = run_cli(command)
        assert code == 0 and err.count(warning) == 1
