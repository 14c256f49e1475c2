"""The CI examples in examples/ci/ are valid YAML of the right shape, and every
nebula-build command in them parses with the real command line."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nebula_build.cli import build_parser
from tests.manifests import PREVIEW

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


SITE = (
    PREVIEW
    + """
[assets]
manifest = "static/images.json"

[images.hero]
prompt = "a lighthouse"
output = "static/img/hero.png"

[images.logo]
prompt = "a fox"
output = "static/img/logo.png"
"""
)


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


MARKER = "<!-- nebula-build plan -->"


@contextlib.contextmanager
def _api(answer: Callable[[str, str], tuple[int, Any, dict[str, str]]]) -> Iterator[Any]:
    """A loopback HTTP server standing for GitHub's or GitLab's API: each request is
    recorded (method, path, headers, JSON body) and answered by `answer(method, path)`."""
    requests: list[tuple[str, str, dict[str, str], Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def serve(self) -> None:
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            requests.append(
                (self.command, self.path, dict(self.headers), json.loads(sent) if sent else None)
            )
            status, data, headers = answer(self.command, self.path)
            payload = json.dumps(data).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = serve

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()


def _no_proxy() -> dict[str, str]:
    """The environment without a proxy: the loopback server is asked directly."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _run_script(script: str, cwd: Path, env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={**_no_proxy(), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def _gitlab_note_script() -> str:
    (script,) = [line for line in _load(GITLAB)["plan"]["script"] if "IMAGES_NOTE_TOKEN" in line]
    return script


def _gitlab(url: str, token: str = "glpat-note") -> dict[str, str]:
    return {
        "IMAGES_NOTE_TOKEN": token,
        "CI_API_V4_URL": f"{url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "9",
        "CI_JOB_URL": "https://gitlab.example/group/site/-/jobs/1",
    }


def _gitlab_notes(pages: list[list[dict[str, Any]]]) -> Callable[..., Any]:
    """GitLab's answers: the token's user is 7; the merge request's notes in `pages`."""

    def answer(method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        if path == "/api/v4/user":
            return 200, {"id": 7, "username": "project_42_bot"}, {}
        if method == "GET" and path.startswith("/api/v4/projects/42/merge_requests/9/notes?"):
            page = int(path.rpartition("page=")[2])
            following = str(page + 1) if page < len(pages) else ""
            return 200, pages[page - 1], {"X-Next-Page": following}
        return (201 if method == "POST" else 200), {"id": 100}, {}

    return answer


def _note(id: int, author: int, body: str) -> dict[str, Any]:
    return {"id": id, "author": {"id": author}, "body": body, "system": False}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gitlab_plan_posts_one_note_on_the_merge_request(tmp_path, project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("plan", "--detailed-exitcode", "--markdown", "plan.md").code == 2
    plan = (root / "plan.md").read_text()
    theirs = _note(1, 3, f"{MARKER}\nquoted by a reviewer")  # not the token's: left alone
    with _api(_gitlab_notes([[theirs], []])) as (url, requests):
        done = _run_script(_gitlab_note_script(), root, _gitlab(url))
    assert done.returncode == 0, done.stderr
    assert "the plan is on the merge request" in done.stdout
    posts = [(m, p, body) for m, p, _, body in requests if m != "GET"]
    assert posts == [
        ("POST", "/api/v4/projects/42/merge_requests/9/notes", {"body": f"{MARKER}\n{plan}"})
    ]
    assert all(headers["Private-Token"] == "glpat-note" for _, _, headers, _ in requests)
    assert "| hero | create | new image | static/img/hero.png |" in plan


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gitlab_plan_updates_its_own_note_found_on_a_later_page(tmp_path, project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("plan", "--markdown", "plan.md").code == 0
    others = [_note(n, 3, "looks good") for n in range(1, 101)]
    pages = [others, [_note(200, 7, f"{MARKER}\nthe plan before")]]
    with _api(_gitlab_notes(pages)) as (url, requests):
        done = _run_script(_gitlab_note_script(), root, _gitlab(url))
    assert done.returncode == 0, done.stderr
    (put,) = [(m, p) for m, p, _, _ in requests if m != "GET"]
    assert put == ("PUT", "/api/v4/projects/42/merge_requests/9/notes/200")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_gitlab_note_says_the_plan_failed_when_it_wrote_nothing(tmp_path):
    with _api(_gitlab_notes([[]])) as (url, requests):
        done = _run_script(_gitlab_note_script(), tmp_path, _gitlab(url))
    assert done.returncode == 0, done.stderr
    (body,) = [body for m, _, _, body in requests if m == "POST"]
    assert body["body"].startswith(f"{MARKER}\n### nebula-build plan\n\nThe plan failed ")
    assert "(https://gitlab.example/group/site/-/jobs/1)" in body["body"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_without_the_note_token_the_gitlab_plan_says_why_and_passes(tmp_path):
    """A merge request from a fork never gets the project's variables."""
    done = _run_script(_gitlab_note_script(), tmp_path, {"IMAGES_NOTE_TOKEN": ""})
    assert done.returncode == 0, done.stderr
    assert "IMAGES_NOTE_TOKEN is not set (a merge request from a fork never gets it)" in (
        done.stdout
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_gitlab_api_error_is_one_line_and_does_not_fail_the_plan(tmp_path):
    with _api(lambda method, path: (403, {"message": "403 Forbidden"}, {})) as (url, _):
        done = _run_script(_gitlab_note_script(), tmp_path, _gitlab(url))
    assert done.returncode == 0
    assert "HTTP Error 403: Forbidden" in done.stderr and "Traceback" not in done.stderr
    assert "glpat-note" not in done.stdout + done.stderr
    assert "could not post the plan on the merge request" in done.stdout


def test_the_gitlab_plan_job_writes_the_plan_and_keeps_its_exit_code():
    script = _load(GITLAB)["plan"]["script"]
    assert script[0] == "rm -f plan.md"  # a plan that fails posts no plan before it
    assert "nebula-build plan --detailed-exitcode --markdown plan.md || code=$?" in script
    assert script[-1] == 'exit "$code"'


def _github_with_the_comment_step() -> str:
    """The GitHub workflow with its optional comment step and permission uncommented."""
    lines = GITHUB.read_text(encoding="utf-8").splitlines()
    start = lines.index("      # - name: Comment the plan")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("      #   "))
    for index in range(start, end):
        lines[index] = lines[index].replace("      # ", "      ", 1)
    (permission,) = [i for i, line in enumerate(lines) if "# pull-requests: write" in line]
    lines[permission] = lines[permission].replace("# pull-requests", "pull-requests", 1)
    return "\n".join(lines) + "\n"


def test_the_github_comment_step_uncommented_is_a_valid_step_of_the_plan_job():
    workflow = yaml.safe_load(_github_with_the_comment_step())
    plan = workflow["jobs"]["plan"]
    assert plan["permissions"]["pull-requests"] == "write"
    assert "pull-requests" not in workflow["permissions"]  # that job's only
    assert "pull-requests" not in workflow["jobs"]["apply"]["permissions"]
    step = _github_step(plan, "Comment the plan")
    assert plan["steps"][-1] is step
    assert "!cancelled()" in step["if"]  # a conflict (exit 1) is commented too
    assert "head.repo.full_name == github.repository" in step["if"]  # a fork's is read-only
    assert "${{" not in step["run"]
    assert "pull-requests" not in _load(GITHUB)["jobs"]["plan"]["permissions"]  # opt-in


@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="needs bash, curl and jq (GitHub's runners have them)",
)
@pytest.mark.parametrize(
    "existing", [None, 0, 1], ids=["first-push", "next-push", "past-100-comments"]
)
def test_the_github_comment_step_keeps_one_sticky_comment(existing, tmp_path, project, run_cli):
    """`existing`: on which page of 100 comments its own comment is, if any."""
    root = project({"images.toml": SITE})
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    assert run_cli("plan", "--markdown", str(temp / "plan.md")).code == 0
    plan = (temp / "plan.md").read_text()
    pages: list[list[dict[str, Any]]] = [
        [{"id": 1, "user": {"login": "someone"}, "body": f"{MARKER}\nquoted"}]
        + [{"id": 2, "user": {"login": "github-actions[bot]"}, "body": "another"}] * 99,
        [{"id": 4, "user": {"login": "someone"}, "body": "a late review"}],
    ]
    if existing is not None:
        pages[existing].append({"id": 3, "user": {"login": "github-actions[bot]"}, "body": MARKER})

    def answer(method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        if method == "GET":
            page = int(path.rpartition("&page=")[2])
            return 200, pages[page - 1] if page <= len(pages) else [], {}
        return (200 if method == "PATCH" else 201), {"id": 3}, {}

    step = _github_step(
        yaml.safe_load(_github_with_the_comment_step())["jobs"]["plan"], "Comment the plan"
    )
    with _api(answer) as (url, requests):
        env = {
            "GITHUB_API_URL": url,
            "GITHUB_REPOSITORY": "owner/site",
            "GH_TOKEN": "ghs-token",
            "PR_NUMBER": "5",
            "RUNNER_TEMP": str(temp),
        }
        done = _run_script(step["run"], root, env)
    assert done.returncode == 0, done.stderr
    reads = [r[1] for r in requests if r[0] == "GET"]
    asked = {None: 3, 0: 1, 1: 2}[existing]  # pages asked for: until the comment or the end
    listing = "/repos/owner/site/issues/5/comments?per_page=100&page="
    assert reads == [f"{listing}{page}" for page in range(1, asked + 1)]
    (write,) = requests[asked:]
    if existing is not None:
        assert write[:2] == ("PATCH", "/repos/owner/site/issues/comments/3")
    else:
        assert write[:2] == ("POST", "/repos/owner/site/issues/5/comments")
    assert write[3] == {"body": f"{MARKER}\n{plan}"}
    assert all(r[2]["Authorization"] == "Bearer ghs-token" for r in requests)
