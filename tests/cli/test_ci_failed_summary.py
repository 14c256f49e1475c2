"""What a CI job shows when its plan or apply fails: the job summary and the `--markdown`
file say why, as the log does, without a secret; a summary that cannot be written is a
warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_ci import SITE
from tests.conftest import CANARY_KEY
from tests.manifests import PREVIEW

#: a pull request's mistakes: a width that is no multiple of 8, a prompt left out
TWO_PROBLEMS = SITE.replace('output = "img/hero.png"', 'output = "img/hero.png"\nwidth = 1345')
TWO_PROBLEMS = TWO_PROBLEMS.replace('prompt = "a fox"\n', "")
NOT_TOML = SITE.replace("[images.logo]", "[images.logo")


@pytest.fixture
def actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


@pytest.fixture
def comment(tmp_path: Path) -> Path:
    """Where CI keeps the plan it posts on the pull request ($RUNNER_TEMP/plan.md)."""
    (tmp_path / "runner").mkdir()
    return tmp_path / "runner" / "plan.md"


def test_a_plan_whose_manifest_fails_says_why_in_the_job_summary_and_the_comment(
    project, run_cli, actions, comment
):
    """The pull request's comment must say the plan failed and why, not keep the plan
    an earlier push made, and the job's summary page must not be empty."""
    project({"images.toml": SITE})
    assert run_cli("plan", "--markdown", str(comment)).code == 0
    assert "| hero | create |" in comment.read_text()
    project({"images.toml": TWO_PROBLEMS})
    code, out, err = run_cli("plan", "--detailed-exitcode", "--markdown", str(comment))
    assert code == 1
    assert out.count("::error file=images.toml") == 2
    assert err.count("error: images.toml:") == 2
    failed = (
        "### nebula-build plan (images.toml)\n\n**The plan failed:**\n\n"
        "- images.toml:12:1: images.hero.width: must be a multiple of 8 within 64-2048 "
        "(got 1345)\n"
        "- images.toml:14:1: images.logo.prompt: is required\n\n"
    )
    assert comment.read_text() == failed
    assert actions.read_text().endswith(failed)


def test_a_manifest_that_is_no_toml_says_so_in_the_job_summary(project, run_cli, actions, comment):
    project({"images.toml": NOT_TOML})
    code, _, err = run_cli("plan", "--markdown", str(comment))
    assert code == 1 and "invalid TOML" in err
    expected = "### nebula-build plan (images.toml)\n\n**The plan failed:** images.toml:13:"
    assert actions.read_text().startswith(expected)
    assert "invalid TOML: the \\[table\\] header is not closed" in actions.read_text()
    assert comment.read_text() == actions.read_text()


def test_an_apply_whose_manifest_fails_writes_one_summary(project, run_cli, actions, comment):
    project({"images.toml": TWO_PROBLEMS})
    code, _, _ = run_cli("apply", "--markdown", str(comment))
    assert code == 1
    text = actions.read_text()
    assert text.count("### ") == 1
    assert text.startswith("### nebula-build apply (images.toml)\n\n**The apply failed:**\n\n")
    assert comment.read_text() == text


def test_an_apply_a_guard_stopped_still_writes_its_own_summary_only(project, run_cli, actions):
    project({"images.toml": SITE})
    code, _, _ = run_cli("apply", "--max-generations", "1")
    assert code == 1
    text = actions.read_text()
    assert text.count("### ") == 1 and "**Stopped before any generation:**" in text


def test_a_declared_secret_in_a_failed_plan_reaches_neither_file(
    project, run_cli, actions, comment, monkeypatch
):
    """A value the manifest holds is repeated by its error; where it is a backend's
    secret, the job summary and the comment, which anyone reading the pull request
    sees, say `[redacted]`."""
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    manifest = SITE.replace('backend = "preview"', 'backend = "nebula"')
    manifest = manifest.replace('output = "img/logo.png"', f'output = "img/{CANARY_KEY}"')
    project({"images.toml": manifest})
    code, _, err = run_cli("plan", "--markdown", str(comment))
    assert code == 1 and "images.logo.output: has no extension" in err
    for text in (actions.read_text(), comment.read_text()):
        assert "images.logo.output: has no extension; end it with" in text
        assert 'as in output = "img/\\[redacted\\].png"' in text
        assert CANARY_KEY not in text


@pytest.mark.parametrize("flags", [(), ("--json",)], ids=["text", "json"])
def test_a_declared_secret_a_manifest_error_repeats_reaches_no_output(
    flags, project, run_cli, actions, monkeypatch
):
    """The log, the --json answer and the annotations on the pull request's diff say
    `[redacted]` where the manifest's error repeats the value of a backend's secret."""
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    manifest = SITE.replace('backend = "preview"', 'backend = "nebula"')
    project(
        {"images.toml": manifest.replace('output = "img/logo.png"', f'output = "img/{CANARY_KEY}"')}
    )
    code, out, err = run_cli("plan", *flags)
    assert code == 1 and "images.logo.output: has no extension" in out + err
    assert "::error file=images.toml" in out or flags  # --json: no annotation
    assert "img/[redacted]" in out + err
    assert CANARY_KEY not in out + err


def test_a_stale_comment_in_the_project_is_replaced_and_an_image_never(project, run_cli):
    """Inside the project a manifest that failed to load cannot tell which files its
    images write: a plan an earlier run wrote is replaced, any other file left as it is."""
    root = project({"images.toml": SITE})
    assert run_cli("apply", "--markdown", "plan.md").code == 0
    image = (root / "img/hero.png").read_bytes()
    (root / "images.toml").write_text(TWO_PROBLEMS, encoding="utf-8")
    code, _, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 1
    assert (root / "plan.md").read_text().startswith("### nebula-build plan (images.toml)\n\n")
    code, _, err = run_cli("plan", "--markdown", "img/hero.png")
    assert code == 1
    assert (root / "img/hero.png").read_bytes() == image
    assert err.endswith(
        "warning: --markdown img/hero.png: left as it is: it holds no plan nebula-build "
        "wrote, and the manifest was not read, to tell whether an image writes or reads it\n"
    )


def test_a_refused_markdown_file_is_not_written_by_the_error_either(project, run_cli, actions):
    root = project({"images.toml": SITE})
    code, _, err = run_cli("apply", "--plan", "missing.json", "--markdown", "images.toml")
    assert code == 1
    assert (root / "images.toml").read_text(encoding="utf-8") == SITE
    assert "warning: --markdown images.toml: that is images.toml" in err
    assert run_cli("plan", "--markdown", "images.toml").code == 1
    assert (root / "images.toml").read_text(encoding="utf-8") == SITE
    assert "**The plan failed:** --markdown images.toml: that is images.toml" in (
        actions.read_text()
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
    project({"images.toml": TWO_PROBLEMS})
    code, _, err = run_cli(command)
    assert code == 1 and err.count(warning) == 1


def test_a_summary_of_many_problems_shows_the_first_twenty_and_counts_the_rest(
    project, run_cli, actions
):
    images = "".join(
        f'\n[images.i{n}]\nprompt = "p"\nwidth = {1001 + 8 * n}\noutput = "img/{n}.png"\n'
        for n in range(30)
    )
    project({"images.toml": PREVIEW + images})
    assert run_cli("plan").code == 1
    text = actions.read_text()
    assert text.count("images.toml:") == 20
    assert text.endswith(
        "- … and 10 more problems (\\`nebula-build validate --json\\` lists all)\n\n"
    )


def test_a_failure_with_no_manifest_writes_nothing_through_a_link_out(project, run_cli, tmp_path):
    """A pull request that removes the manifest and commits `reports -> elsewhere` does
    not choose where the error's `--markdown` file goes: no project found, the folder
    the command runs in is the one no link may lead out of."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = project({"README.md": "no manifest here\n"})
    (root / "reports").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = run_cli("plan", "--markdown", "reports/plan.md")
    assert code == 1 and "error: no images.toml in" in err
    assert not (elsewhere / "plan.md").exists()
    assert err.endswith(
        "warning: --markdown reports/plan.md: that is in a folder a link leads out of the "
        "project; name another file\n"
    )


@pytest.mark.parametrize("folder", ["typo/dir", "images.toml"])
def test_a_folder_that_is_not_there_gets_no_markdown_file_made_in_it(folder, project, run_cli):
    """`-C typo/dir` says "no such folder": the error's `--markdown` file, named from
    it, neither makes that folder nor warns that it cannot be written."""
    root = project({"images.toml": SITE})
    code, _, err = run_cli("-C", folder, "plan", "--markdown", "plan.md")
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: -C {folder}: ")
    assert not (root / "typo").exists()
    assert (root / "images.toml").read_text(encoding="utf-8") == SITE
