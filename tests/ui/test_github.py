"""What a pull request writes (a model id, a matrix value) cannot forge a workflow
command in CI's log, nor HTML, a link or an image in the job summary."""

from __future__ import annotations

import re

import pytest

from nebula_build.core.plan import Plan
from nebula_build.errors import UserError
from nebula_build.ui.markdown import markdown_text, summary
from tests.conftest import nebula_manifest

INJECTED = "x\n::warning title=INJ::INJECTED_FROM_PR\n"
HOSTILE_CELL = "<b>bold</b>|`tick`![i](evil.example/i.png)"
#: what of it an output's name may hold (Windows allows no `<>|` in a file's name)
HOSTILE_PATH = "`tick`![i](evil.example/i.png)_~$"
#: what GitHub's Markdown would read as syntax if it were not preceded by a backslash
_UNESCAPED = re.compile(r"(?<!\\)[`!\[\]|*_~$]")
#: what follows each `@` (and `#`, and GitLab's reference signs), so that no mention
#: or reference is found in the text GitHub or GitLab renders
MENTION_BREAK = "<!-- -->"
REFERENCE_SIGNS = "@#!~%$&"


@pytest.fixture
def actions(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def _commands(text: str) -> list[str]:
    """The lines a GitHub runner reads as workflow commands."""
    return [line for line in text.splitlines() if line.lstrip().startswith(("::", "##["))]


def test_a_model_id_cannot_inject_a_workflow_command(project, run_cli, actions):
    images = {"a": {"prompt": "fox", "output": "a.png", "model": INJECTED}}
    project({"images.toml": nebula_manifest(images, seedream_model=INJECTED)})
    code, out, err = run_cli("plan")
    assert code == 1
    assert "images.a.model: a model id is 1-200 letters, digits and" in err
    assert all(line.startswith("::error file=images.toml,") for line in _commands(out + err))
    assert "\n::warning" not in out + err


def test_a_diffusers_model_name_is_a_model_id(project, run_cli, actions):
    project(
        {
            "images.toml": """\
            version = 1
            [backends.diffusers]
            models = { "x\\n::warning::INJ" = "weights/x" }
            [images.a]
            backend = "diffusers"
            model = "black-forest-labs/FLUX.1-schnell"
            prompt = "fox"
            output = "a.png"
            """
        }
    )
    code, out, err = run_cli("plan")
    assert code == 1
    assert err.startswith("error: images.toml:3:1: backends.diffusers.models: keys are model ids")
    assert len(err.splitlines()) == 1
    assert all(line.startswith("::error ") for line in _commands(out + err))


def test_the_job_summary_shows_a_hostile_value_as_text(project, run_cli, actions):
    project(
        {
            "images.toml": f"""\
            version = 1
            [defaults]
            backend = "preview"
            model = "black-forest-labs/FLUX.1-schnell"
            width = 64
            height = 64
            [images.c]
            prompt = "a {{v}}"
            output = "c-{{w}}.png"
            matrix = {{ v = [{HOSTILE_CELL!r}], w = [{HOSTILE_PATH!r}] }}
            """
        }
    )
    assert run_cli("plan").code == 0
    row = next(line for line in actions.read_text().splitlines() if line.startswith("| c\\["))
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == 4  # image, action, reason, output: the value's `|` ends none
    name, output = (cells[at].replace(MENTION_BREAK, "") for at in (0, 3))
    assert "<" not in name and "&lt;b&gt;bold&lt;/b&gt;" in name
    assert "evil.example" in output
    for cell in (name, output):
        assert _UNESCAPED.search(cell) is None, cell


@pytest.mark.parametrize(
    "hostile",
    [
        HOSTILE_CELL,
        "[link](javascript:alert(1)) <img src=x onerror=alert(1)>",
        "**bold** _it_ ~~gone~~ $x^2$ @someone",
        "a\\|b `` code `` \\`",
        "line\n## heading\n| --- |",
        "&lt;b&gt; &#60;script&#62;",
        "fixes #12, see acme/site#3 and !4 ~bug %v1 $5 &6",
    ],
)
def test_markdown_text_leaves_no_markup(hostile):
    text = markdown_text(hostile)
    assert text.count(MENTION_BREAK) == sum(hostile.count(sign) for sign in REFERENCE_SIGNS)
    shown = re.sub(r"\\(.)", r"\1", text)  # as rendered, but for the breaks
    shown = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert re.search(r"[@#!~%$&]\w", shown) is None, shown  # each sign broken off
    text = text.replace(MENTION_BREAK, "")  # what GitHub shows
    assert "\n" not in text and "<" not in text and ">" not in text
    assert _UNESCAPED.search(text) is None, text
    # every `&` is one of the entities written for `&`, `<`, `>`: the value's own stay text
    assert re.sub("&(amp|lt|gt);", "", text).count("&") == 0
    assert text.count("&amp;") == hostile.count("&")


def test_markdown_text_keeps_ordinary_text_readable():
    assert markdown_text("black-forest-labs/FLUX.1-schnell") == "black-forest-labs/FLUX.1-schnell"
    assert markdown_text("img/hero (v2).png") == "img/hero (v2).png"


def test_the_failures_of_a_job_summary_stay_far_under_a_mebibyte():
    """GitHub drops a summary past 1 MiB: 3,000 images out of credits, each with a long
    reason from a server, had listed every one."""
    failures = {f"cover[{n}]": UserError("out of credits " + "x" * 2000) for n in range(3000)}
    text = summary("apply", Plan(actions=[]), failures=failures)
    assert len(text.encode()) < 300 << 10
    failed = text.split("**Failed:**\n\n")[1].strip().splitlines()
    assert failed[-1] == f"- … and {3000 - (len(failed) - 1):,} more (the log lists all)"


def test_a_summary_is_cut_to_its_budget_whatever_the_parts_every_summary_has():
    """A small budget (a comment's) is kept when the title, the reason and the notes
    alone would fill it: the text is cut after a whole line, and says so."""
    text = summary(
        "<" * 600,
        Plan(actions=()),
        refused="&" * 600,
        notes=["<" * 600] * 10,
        budget=4000,
        listed="(the job log lists all)",
    )
    assert len(text.encode()) <= 4000
    assert text.startswith("### &lt;&lt;")
    assert text.endswith("\n\n… cut to 4,000 bytes (the job log lists all)\n\n")
