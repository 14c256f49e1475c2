"""`plan --markdown FILE` and `apply --markdown FILE`: the job summary's Markdown in a
file, for a pull or merge request comment (GitLab has no job summary), sized for
GitHub's 65,536 characters, with nothing a pull request writes read as markup."""

from __future__ import annotations

import functools
import json
import re

import pytest

from tests.cli.test_ci import SITE
from tests.conftest import fake_manifest
from tests.ui.test_github import _UNESCAPED, HOSTILE_CELL, HOSTILE_PATH, MENTION_BREAK

ROW_HERO = "| hero | create | new image | img/hero.png |"


def test_a_plan_with_changes_is_written_as_markdown_and_printed_as_ever(project, run_cli):
    root = project({"images.toml": SITE})
    code, out, err = run_cli("plan", "--detailed-exitcode", "--markdown", "plan.md")
    assert code == 2, err
    assert "Plan: 2 to generate, 0 to delete." in out and "|" not in out
    text = (root / "plan.md").read_text()
    assert text.startswith("### nebula-build plan (images.toml)\n\n| image | action |")
    assert ROW_HERO in text
    assert "- **Generations:** 2 × <code>black-forest-labs/FLUX.1-schnell</code> on preview." in (
        text
    )
    assert '- hero: prompt: "a lighthouse"' in text


def test_a_plan_with_nothing_to_do_says_so_even_when_the_last_plan_found_nothing(project, run_cli):
    """The snapshot that answers a plan with nothing to do has no plan to write: a
    comment must still be replaced by one that says nothing changes."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    assert run_cli("plan").code == 0  # the next plan is answered from the snapshot
    code, _, err = run_cli("plan", "--detailed-exitcode", "--markdown", "plan.md")
    assert code == 0, err
    assert (root / "plan.md").read_text() == (
        "### nebula-build plan (images.toml)\n\nNo changes: 2 images up to date.\n\n"
    )


def test_apply_writes_what_it_generated(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply", "--markdown", "apply.md").code == 0
    text = (root / "apply.md").read_text()
    assert text.startswith("### nebula-build apply (images.toml)\n")
    assert ROW_HERO in text and "- **Generated in this run:** 2." in text
    code, _, _ = run_cli("apply", "--markdown", "apply.md")  # nothing to do: said so
    assert code == 0
    assert "No changes: 2 images up to date." in (root / "apply.md").read_text()


@pytest.mark.parametrize(
    ("flags", "exit_code", "why"),
    [
        (["--max-generations", "1"], 1, "this apply would generate 2 images, more than"),
        (["--locked"], 2, "--locked: 2 images would need generating"),
        ([], 1, "NEBULA_API_KEY is not set"),
    ],
    ids=["max-generations", "locked", "no-key"],
)
def test_a_refused_apply_writes_its_plan_and_why(flags, exit_code, why, project, run_cli):
    root = project({"images.toml": SITE.replace('backend = "preview"', 'backend = "nebula"')})
    code, _, err = run_cli("apply", "--yes", "--markdown", "apply.md", *flags)
    assert code == exit_code, err
    text = (root / "apply.md").read_text()
    assert text.startswith(
        "### nebula-build apply (images.toml)\n\n**Stopped before any generation:** "
    )
    assert why in text.replace("\\", "")
    assert "| hero | create | new image | img/hero.png |" in text
    assert not (root / "img").exists()


def test_a_conflict_fails_the_plan_and_is_in_the_file(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "img/logo.png").write_bytes(b"my edit")
    code, _, err = run_cli("plan", "--detailed-exitcode", "--markdown", "plan.md")
    assert code == 1 and "1 output changed by hand (img/logo.png)" in err
    text = (root / "plan.md").read_text()
    assert "| logo | conflict | output file changed by hand | img/logo.png |" in text


def _many(count: int) -> str:
    names = ", ".join(f'"{n:05}"' for n in range(count))
    long = "/".join(["d" * 180] * 5)
    return SITE + (
        f'\n[images.spam]\nmatrix = {{ n = [{names}] }}\nprompt = "{{n}} {"<" * 9000}"\n'
        f'output = "img/{long}/{{n}}.png"\n'
    )


@pytest.mark.slow
def test_ten_thousand_new_images_fit_in_a_github_comment_and_say_what_is_left_out(project, run_cli):
    """Each new image's prompt of 9,000 `<` (each `&lt;` in the file) and its long path:
    the file stays under GitHub's 65,536 characters, the cost with it, and says where
    the rest is; `--markdown-limit` makes room for more."""
    root = project({"images.toml": _many(9_998)})  # 10,000 with hero and logo
    code, out, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 0, err
    text = (root / "plan.md").read_text()
    assert len(text) <= 65_000 and len(text.encode()) <= 65_000  # a line for the script
    assert "- **Generations:** 10000 × <code>black" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    counted = text.split(rows[-1] + "\n\n", 1)[1].splitlines()[0]
    assert counted == f"- … and {10_000 - (len(rows) - 2):,} more (the job log lists all)"
    assert "(the job log lists all)" in text.split("**What changed:**")[1]
    assert out.count("\n  + spam[") == 9_998  # the job log does list all

    assert run_cli("plan", "--markdown", "plan.md", "--markdown-limit", "1000000").code == 0
    bigger = (root / "plan.md").read_text()
    assert 65_536 < len(bigger.encode()) <= 1_000_000
    assert len([line for line in bigger.splitlines() if line.startswith("| ")]) > len(rows)


def test_a_small_limit_is_kept_whatever_the_parts_every_plan_has(project, run_cli):
    root = project({"images.toml": _many(60)})
    assert run_cli("plan", "--markdown", "plan.md", "--markdown-limit", "10000").code == 0
    text = (root / "plan.md").read_text()
    assert len(text.encode()) <= 10_000
    assert "(the job log lists all)" in text
    assert run_cli("plan", "--markdown-limit", "9999").code == 1  # too small for any plan


def test_a_quiet_apply_does_not_say_its_job_log_lists_all(project, run_cli):
    """`apply -q` prints no line per image: what the file leaves out is in `plan --json`."""
    root = project({"images.toml": _many(300)})
    assert run_cli("apply", "-q", "--markdown", "apply.md", "--markdown-limit", "10000").code == 0
    text = (root / "apply.md").read_text()
    assert "(the job log lists all)" not in text
    assert "(`nebula-build plan --json` lists all)" in text


def test_an_empty_file_name_is_refused_not_ignored(project, run_cli, capsys):
    project({"images.toml": SITE})
    assert run_cli("plan", "--markdown", "").code == 1
    assert "error: argument --markdown: must name a file\n" in capsys.readouterr().err


def test_a_pull_request_s_names_prompts_and_paths_are_text_in_the_file(
    project, run_cli, monkeypatch
):
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")  # the terminal's colours stay out of the file
    hostile = HOSTILE_CELL + " <!-- nebula-build plan --> @team"
    manifest = f"""\
    version = 1
    [defaults]
    backend = "preview"
    model = "black-forest-labs/FLUX.1-schnell"
    width = 64
    height = 64
    [images.c]
    prompt = "a {{v}} <script>x</script> [l](javascript:alert(1)) \\u001b[31m"
    output = "c-{{w}}.png"
    matrix = {{ v = [{json.dumps(hostile)}], w = [{json.dumps(HOSTILE_PATH + " @team")}] }}
    """
    root = project({"images.toml": manifest})
    code, out, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 0, err
    assert "\x1b[" in out  # coloured where a terminal would be
    text = (root / "plan.md").read_text()
    assert "\x1b" not in text and "<script" not in text
    assert "<!-- nebula-build plan -->" not in text  # the line a script finds its comment by
    tags = ("<code>", "</code>", "<!-- -->")
    assert "<" not in functools.reduce(lambda text, tag: text.replace(tag, ""), tags, text)
    row = next(line for line in text.splitlines() if line.startswith("| c\\["))
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == 4  # the value's `|` ends no cell
    (prompt,) = [line for line in text.splitlines() if line.startswith("- c\\[")]
    for part in (cells[0], cells[3], prompt):
        assert _UNESCAPED.search(part.replace(MENTION_BREAK, "")) is None, part
    assert "@<!-- -->team" in prompt and "&lt;script&gt;" in prompt


def test_a_pull_request_s_mention_pings_nobody(project, run_cli, monkeypatch, tmp_path):
    """GitHub and GitLab find mentions in the rendered text, where `\\@` has become
    `@`: a prompt naming a team had it notified by the bot's comment."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    manifest = """\
    version = 1
    [defaults]
    backend = "preview"
    model = "black-forest-labs/FLUX.1-schnell"
    width = 64
    height = 64
    [images.a]
    prompt = "ping @acme/everyone and @root, mail ops@acme.example"
    output = "a.png"
    """
    root = project({"images.toml": manifest})
    code, _, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 0, err
    for text in ((root / "plan.md").read_text(), (tmp_path / "summary.md").read_text()):
        assert "ping @<!-- -->acme/everyone and @<!-- -->root" in text
        assert re.search(r"@[\\\w]", text) is None


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("images.toml", "images.toml, which nebula-build reads and keeps"),
        ("images.lock", "images.lock, which nebula-build reads and keeps"),
        (".nebula-build/plan.md", "inside .nebula-build/, where nebula-build keeps its state"),
        (".git/config", "inside a version control folder (.git/), never the tool's to write"),
        (".Git/hooks/x.md", "inside a version control folder (.git/), never the tool's to write"),
        (".git", "inside a version control folder (.git/), never the tool's to write"),
        ("img/hero.png", "the output of image hero"),
        ("static/images.json", "the output of asset manifest"),
        ("img/../images.toml", "images.toml, which nebula-build reads and keeps"),
    ],
)
def test_a_file_the_project_owns_is_refused_before_anything_is_done(
    command, path, what, project, run_cli
):
    manifest = SITE.replace(
        "[images.hero]", '[assets]\nmanifest = "static/images.json"\n\n[images.hero]'
    )
    root = project({"images.toml": manifest})
    (root / "img").mkdir()
    code, _, err = run_cli(command, "--markdown", path)
    assert code == 1
    assert err == f"error: --markdown {path}: that is {what}; name another file\n"
    assert (root / "images.toml").read_text() == manifest
    assert not (root / "images.lock").exists()
    assert list((root / "img").iterdir()) == []  # nothing generated
    assert not (root / "static").exists()


def test_a_link_to_the_lock_is_refused(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_bytes()
    (root / "plan.md").symlink_to("images.lock")
    code, _, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 1 and "that is images.lock" in err
    assert (root / "images.lock").read_bytes() == lock


def test_with_c_the_file_is_named_from_that_folder_and_json_is_unchanged(project, run_cli):
    root = project({"site/images.toml": SITE})
    code, out, err = run_cli("-C", "site", "plan", "--json", "--markdown", "plan.md")
    assert code == 0, err
    assert json.loads(out)["summary"]["create"] == 2
    assert ROW_HERO in (root / "site/plan.md").read_text()
    assert not (root / "plan.md").exists()
    code, out, err = run_cli("-C", "site", "apply", "--json", "--markdown", "apply.md")
    assert code == 0, err
    assert json.loads(out)
    assert "- **Generated in this run:** 2." in (root / "site/apply.md").read_text()


def test_a_file_that_cannot_be_written_is_one_line_and_leaves_nothing_behind(project, run_cli):
    root = project({"images.toml": SITE})
    (root / "plan.md").mkdir()
    code, _, err = run_cli("plan", "--markdown", "plan.md")
    assert code == 1
    assert err == "error: --markdown plan.md: cannot write it: Is a directory\n"
    assert sorted(p.name for p in root.iterdir()) == [".nebula-build", "images.toml", "plan.md"]


def test_an_apply_with_failed_images_lists_them(project, run_cli, fake_site, tmp_path):
    images = {"a": {"prompt": "a", "output": "a.png"}, "b": {"prompt": "b", "output": "b.png"}}
    root = project({"images.toml": fake_manifest(tmp_path / "log", images, fail=("b",))})
    code, _, _ = run_cli("apply", "--markdown", "apply.md")
    assert code == 1
    text = (root / "apply.md").read_text()
    assert "- **Generated in this run:** 1." in text
    assert "**Failed:**\n\n- b: " in text


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_a_file_the_rows_would_read_as_a_post_is_refused(command, project, run_cli):
    """`plan.md` beside posts that `rows` finds as `*.md` would be the next plan's post:
    a new image, paid for, from the plan itself."""
    manifest = SITE + (
        '\n[images.cover]\nrows = { files = "*.md" }\n'
        'prompt = "{title}: {excerpt}"\noutput = "img/{slug}.png"\n'
    )
    root = project({"images.toml": manifest, "a.md": "---\ntitle: A\n---\nOld harbour.\n"})
    code, _, err = run_cli(command, "--markdown", "plan.md")
    assert (code, err) == (
        1,
        "error: --markdown plan.md: that is read by the manifest as a post (*.md); "
        "name another file\n",
    )
    assert not (root / "plan.md").exists() and not (root / "img").exists()
    assert run_cli(command, "--markdown", "plan.markdown").code in (0, 2)
