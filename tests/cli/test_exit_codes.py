"""The exit codes are the README's table: 0 done or nothing to do, 1 error (usage
errors included), 2 changes pending (only `plan --detailed-exitcode`,
`status --detailed-exitcode` and `apply --locked`), 130 interrupted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nebula_build.cli import ExitCode, build_parser
from tests.conftest import fake_manifest, nebula_manifest
from tests.manifests import PREVIEW

README = Path(__file__).resolve().parents[2] / "README.md"

SITE = (
    PREVIEW
    + """
[images.hero]
prompt = "a lighthouse"
output = "img/hero.png"
"""
)


def _commands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(sub.choices)


def test_the_readme_has_one_table_of_exactly_these_codes():
    text = README.read_text(encoding="utf-8")
    assert text.count("| code | meaning |") == 1
    table = text[text.index("| code | meaning |") :].split("\n\n", 1)[0]
    codes = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)]
    assert codes == [*sorted(ExitCode), 130]


@pytest.mark.parametrize("command", _commands())
def test_a_bad_flag_on_any_command_is_1(command, project, run_cli, capsys):
    project({"images.toml": SITE})
    positional = {
        "inspect": ["x.png"],
        "cache": ["status"],
        "pick": ["hero"],
        "history": ["hero"],
        "completion": ["bash"],
    }.get(command, [])
    code, out, _ = run_cli(command, *positional, "--no-such-flag")
    assert code == ExitCode.ERROR and out == ""
    said = capsys.readouterr().err  # the mistake first, then where the command's options are
    usage = " ".join(["nebula-build", command, *(positional if command == "cache" else [])])
    assert said == (
        f"{usage}: error: unrecognized arguments: --no-such-flag\n"
        f"  (`{usage} --help` lists its options)\n"
    ), said


@pytest.mark.parametrize(
    "argv", [[], ["no-such-command"], ["-C"], ["apply", "--parallelism", "0"]], ids=str
)
def test_other_usage_errors_are_1(argv, project, run_cli):
    project({"images.toml": SITE})
    assert run_cli(*argv).code == ExitCode.ERROR


def test_help_and_version_are_0(run_cli, capsys):
    assert run_cli("--help").code == 0
    assert run_cli("--version").code == 0


def test_changes_pending_is_2_only_where_asked_for(project, run_cli):
    project({"images.toml": SITE})
    assert run_cli("plan").code == 0  # changes, but nobody asked
    assert run_cli("status").code == 0
    assert run_cli("validate").code == 0
    assert run_cli("plan", "--detailed-exitcode").code == 2
    assert run_cli("status", "--detailed-exitcode").code == 2
    assert run_cli("apply", "--locked").code == 2
    assert run_cli("apply", "--max-generations", "0").code == 1  # a refusal is an error
    assert run_cli("apply").code == 0
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert run_cli("status", "--detailed-exitcode").code == 0
    assert run_cli("apply", "--locked").code == 0
    assert run_cli("apply").code == 0  # nothing to do


def test_an_error_is_1(project, run_cli):
    project({"images.toml": SITE.replace("width = 64", "width = 65")})
    for command in ("validate", "plan", "status", "apply", "gc", "gallery"):
        assert run_cli(command).code == 1, command


def test_an_interrupted_command_is_130(project, run_cli, monkeypatch):
    from nebula_build.cli import build

    def interrupted(ctx):
        raise KeyboardInterrupt

    project({"images.toml": SITE})
    monkeypatch.setattr(build, "cmd_apply", interrupted)
    code, _, err = run_cli("apply")
    assert code == 130 and err == "interrupted\n"


def test_an_interrupted_watch_once_is_130_like_apply(project, run_cli, monkeypatch):
    from nebula_build.live import watch

    async def interrupted(self, changes, *, once=False):
        raise KeyboardInterrupt

    project({"images.toml": SITE})
    monkeypatch.setattr(watch.Watcher, "run", interrupted)
    code, _, err = run_cli("watch", "--once")
    assert code == 130 and err.endswith("interrupted\n")


def test_a_failure_counts_no_more_once_the_manifest_declares_the_image_otherwise(project, run_cli):
    """A check that failed, then was put back (apply: nothing to do), had left the image
    "failed in the last apply" with that check's message: the next edit of its prompt
    made `status --detailed-exitcode` 1, not 2."""
    sprite = {"prompt": "a potion", "output": "potion.png", "checks": {"max_kb": 64}}
    manifest = nebula_manifest({"potion": sprite}).replace('"nebula"', '"preview"')
    root = project({"images.toml": manifest})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest.replace("max_kb = 64", "max_kb = 0.1"))
    assert run_cli("apply").code == 1
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 1 and "(last apply failed: check failed: max_kb ≤ 0.1" in out, out
    (root / "images.toml").write_text(manifest)
    assert run_cli("apply").code == 0  # nothing to do: the file is as the lock says
    (root / "images.toml").write_text(manifest.replace("a potion", "a red potion"))
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 2, out
    assert "last apply failed" not in out and "failed in the last apply" not in out, out


def test_plan_and_status_detailed_exitcode_are_1_for_a_conflict_or_a_failed_image(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(log, images, fail=("b",))})
    assert run_cli("apply").code == 1
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 1
    assert re.search(r"^b +pending create: .*\(last apply failed: .+\)", out, re.M)
    assert out.endswith(
        "Status: 2 images (1 up to date, 1 pending); 1 image failed in the last apply.\n"
    )
    assert run_cli("status").code == 0  # nobody asked
    (root / "images.toml").write_text(fake_manifest(log, images))
    assert run_cli("apply").code == 0
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 0 and out.endswith("Status: 2 images up to date.\n")
    (root / "a.png").write_bytes(b"my edit")
    code, out, _ = run_cli("status", "--detailed-exitcode", "--json")
    assert (
        code == 1 and json.loads(out)["status"] == "Status: 2 images (1 up to date, 1 in conflict)."
    )
    # plan agrees: apply would refuse the hand edit, so a pull request's plan fails
    assert run_cli("plan", "--detailed-exitcode").code == 1
    assert run_cli("plan", "--detailed-exitcode", "--force").code == 2
    assert run_cli("plan").code == 0  # nobody asked
    code, out, _ = run_cli("status", "--detailed-exitcode", "--target", "b")
    assert code == 0 and out.startswith("b  up to date")


@pytest.mark.parametrize("actions", [False, True], ids=["terminal", "github-actions"])
@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_command_with_stdout_or_stderr_closed_keeps_its_exit_code(
    closed, actions, project, monkeypatch
):
    """`plan --detailed-exitcode >&-`, as a script that wants the code alone might run
    it: the output has nowhere to go, and the code is still 2 (it was a traceback and 1,
    and under GitHub Actions a traceback and 120)."""
    import os
    import subprocess
    import sys

    if actions:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    else:
        monkeypatch.delenv("GITHUB_ACTIONS", raising=False)

    root = project({"images.toml": SITE})
    repo = Path(__file__).resolve().parents[2]
    command = f'"{sys.executable}" -m nebula_build plan --detailed-exitcode {closed}'
    if closed == ">&-":
        command += " 2>errors.txt"
    done = subprocess.run(
        ["sh", "-c", command],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=closed == "2>&-",
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    said = (root / "errors.txt").read_text() if closed == ">&-" else done.stdout
    assert "Traceback" not in said and "Error" not in said, said


def test_status_says_a_conflict_apply_stopped_at_once(project, run_cli):
    """The line said the conflict, then "(last apply failed: …" with the same reason
    again, cut off mid-sentence at 120 characters."""
    manifest = nebula_manifest({"hero": {"prompt": "x", "output": "hero.png"}})
    root = project({"images.toml": manifest.replace('"nebula"', '"preview"')})
    assert run_cli("apply").code == 0
    (root / "hero.png").write_bytes((root / "hero.png").read_bytes() + b"edited")
    (root / "images.toml").write_text(
        manifest.replace('"nebula"', '"preview"').replace('"x"', '"y"')
    )
    assert run_cli("apply").code == 1
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("hero"))
    assert "conflict: output file changed by hand" in line
    assert "last apply failed" not in line and line.count("changed by hand") == 1, line
    assert "1 image failed in the last apply" in out
