"""In CI: errors as GitHub workflow commands on the manifest's lines, a Markdown summary
of each plan and apply in the job summary, and errors as JSON under --json."""

from __future__ import annotations

import errno
import json
import os

import pytest

from nebula_build.ui.github import annotation
from nebula_build.ui.markdown import _LISTS_ALL
from tests.conftest import CANARY_KEY, fake_manifest
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


@pytest.fixture
def actions(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    return summary


def test_a_manifest_error_is_an_annotation_on_its_line(project, run_cli, actions):
    project({"images.toml": SITE.replace("width = 64", "width = 65")})
    code, out, err = run_cli("plan")
    assert code == 1 and "error:" in err
    assert "::error file=images.toml,line=6,col=1::defaults.width: " in out


def test_failed_images_are_annotations_on_their_tables(
    project, run_cli, fake_site, actions, tmp_path
):
    images = {"a": {"prompt": "a", "output": "a.png"}, "b": {"prompt": "b", "output": "b.png"}}
    manifest = fake_manifest(tmp_path / "log", images, fail=("b",))
    project({"images.toml": manifest})
    code, out, _ = run_cli("apply")
    assert code == 1
    line = manifest.splitlines().index("[images.b]") + 1
    assert f"::error file=images.toml,line={line},col=1::b: " in out
    assert "::a" not in out
    # the table lists b as it lists a: the summary says how many were done
    assert "- **Generated in this run:** 1.\n- **Done:** 1 of 2; 1 failed.\n" in actions.read_text()


NEBULA_SITE = """\
version = 1

[defaults]
backend = "nebula"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[backends.nebula]
retry_backoff = 0.01

[images.hero]
prompt = "a lighthouse"
output = "img/hero.png"

[images.logo]
prompt = "an unlucky fox"
output = "img/logo.png"

[images.enemy]
prompt = "a {kind} monster"
matrix = { kind = ["slime", "bat"] }
output = "img/{kind}.png"
"""


@pytest.mark.parametrize("command", [["apply"], ["watch", "--once"]])
def test_a_failed_image_points_at_its_line_and_a_matrix_image_at_its_declaration(
    command, project, run_cli, nebula_server, actions
):
    project({"images.toml": NEBULA_SITE})
    nebula_server.add_faults("422", prompt="unlucky")
    nebula_server.add_faults("422", prompt="a bat monster")
    code, out, err = run_cli(*command)
    assert code == 1 and "2 images failed" in err
    errors = sorted(line for line in out.splitlines() if line.startswith("::error"))
    assert [line.partition("::")[2].partition(": ")[0] for line in errors] == [
        "error file=images.toml,line=16,col=1::logo",
        "error file=images.toml,line=20,col=1::enemy[bat]",
    ]
    assert "injected HTTP 422" in errors[0]


def test_a_warning_points_at_its_image(project, run_cli, nebula_server, actions):
    project({"images.toml": NEBULA_SITE})
    nebula_server.add_faults("wrong_size", prompt="a lighthouse")
    code, out, _ = run_cli("apply")
    assert code == 0
    (warning,) = [line for line in out.splitlines() if line.startswith("::warning")]
    assert warning.startswith(
        "::warning file=images.toml,line=12,col=1::hero: nebula returned 128x64 for a 64x64"
    )


def test_an_image_is_located_however_it_is_declared():
    from nebula_build.ui.github import warning_annotations

    source = """version = 1
[images]
hero = { prompt = "x", output = "a.png" }
[images."logo"]
prompt = "y"
[atlases.sheet]
images = ["hero"]
"""
    warnings = [("hero", "w"), ("logo", "w"), ("atlas sheet", "w"), ("gone", "w")]
    assert warning_annotations(warnings, "images.toml", source) == [
        "::warning file=images.toml,line=3,col=1::hero: w",
        "::warning file=images.toml,line=4,col=1::logo: w",
        "::warning file=images.toml,line=6,col=1::atlas sheet: w",
        "::warning file=images.toml::gone: w",
    ]


def test_plan_and_apply_write_the_job_summary(project, run_cli, actions):
    project({"images.toml": SITE})
    assert run_cli("plan").code == 0
    assert run_cli("apply").code == 0
    text = actions.read_text()
    assert "### nebula-build plan (images.toml)" in text
    assert "| hero | create | new image | img/hero.png |" in text
    assert (
        "- **Generations:** 2 × <code>black-forest-labs/FLUX.1-schnell</code> on preview."
    ) in text
    assert "### nebula-build apply (images.toml)" in text
    assert "- **Generated in this run:** 2." in text


def test_a_plan_with_nothing_to_do_writes_the_job_summary_without_planning_again(
    project, run_cli, actions, monkeypatch
):
    from nebula_build.engine import noop, prepare

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # no waiting for the racy window
    project({"site_[v2].toml": SITE})
    manifest = ["-f", "site_[v2].toml"]
    assert run_cli(*manifest, "apply").code == 0
    actions.unlink()
    assert run_cli(*manifest, "plan").out == "No changes: 2 images up to date.\n"
    planned = actions.read_text()
    actions.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("took the full path")

    monkeypatch.setattr(prepare, "prepare", refuse)  # the snapshot answers, or this fails
    assert run_cli(*manifest, "plan").out == "No changes: 2 images up to date.\n"
    assert actions.read_text() == planned
    title = "### nebula-build plan (site\\_\\[v2\\].toml)"
    assert planned.startswith(f"{title}\n\nNo changes: 2 images up to date.\n")


@pytest.mark.parametrize(
    ("manifest", "flags", "exit_code", "why"),
    [
        (SITE, ["--max-generations", "1"], 1, "this apply would generate 2 images, more than"),
        (SITE, ["--locked"], 2, "--locked: 2 images would need generating"),
        (NEBULA_SITE, [], 1, "NEBULA\\_API\\_KEY is not set"),
    ],
    ids=["max-generations", "locked", "no-key"],
)
def test_an_apply_stopped_before_any_generation_says_why_in_the_job_summary(
    manifest, flags, exit_code, why, project, run_cli, actions
):
    project({"images.toml": manifest})
    code, out, _ = run_cli("apply", *flags)
    assert code == exit_code
    assert out.count("::error file=images.toml::") == 1
    text = actions.read_text()
    assert text.startswith(
        "### nebula-build apply (images.toml)\n\n**Stopped before any generation:** "
    )
    assert why in text
    assert "| hero | create | new image | img/hero.png |" in text
    assert "Generated in this run" not in text


def test_an_apply_stopped_after_it_generated_does_not_say_before_any_generation(
    project, run_cli, actions, monkeypatch
):
    """The images were made (and paid for) when the lock could not be written: the
    summary must not tell whoever reads it that nothing was generated."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # a full disk, once the lock has to land
        if "images.lock" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    project({"images.toml": SITE})
    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = run_cli("apply")
    assert code == 1 and "could not write images.lock: No space left on device" in err
    text = actions.read_text()
    assert "before any generation" not in text
    assert "**Stopped after generating began:** could not write images.lock: " in text
    assert "| hero | create | new image | img/hero.png |" in text


def test_a_note_of_the_apply_is_a_notice_and_in_the_job_summary_without_the_key(
    project, run_cli, nebula_server, actions
):
    project({"images.toml": NEBULA_SITE})
    nebula_server.add_credits_faults("echo")  # an answer that repeats the key
    code, out, err = run_cli("apply")
    assert code == 0, err
    (notice,) = [line for line in out.splitlines() if line.startswith("::notice")]
    assert notice.startswith("::notice::nebula: could not check the account's balance (")
    text = actions.read_text()
    assert "**Notes:**\n\n- nebula: could not check the account's balance (" in text
    assert "Bearer \\[redacted\\]" in text
    assert CANARY_KEY not in out + err + text


def test_a_rejected_key_stops_the_apply_and_says_why_in_the_job_summary(
    project, run_cli, nebula_server, actions
):
    project({"images.toml": NEBULA_SITE})
    nebula_server.add_credits_faults("echo:401")
    code, out, err = run_cli("apply")
    assert code == 1 and "NEBULA_API_KEY was rejected" in err
    text = actions.read_text()
    assert "NEBULA\\_API\\_KEY was rejected" in text and "nothing was generated" in text
    assert "Bearer \\[redacted\\]" in text
    assert nebula_server.generations == []
    assert CANARY_KEY not in out + err + text


def test_a_plan_failed_by_a_hand_edit_says_why_on_the_image_s_line(project, run_cli, actions):
    """`plan --detailed-exitcode` fails a pull request that edits an output by hand: the
    job's log and the diff must say so, not only the exit code."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "img/logo.png").write_bytes(b"my edit")
    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert code == 1
    assert err == (
        "error: 1 output changed by hand (img/logo.png), which apply would refuse to "
        "overwrite: keep it as the output with `nebula-build accept logo`, move it "
        "elsewhere (apply then puts back what it made), or replace it with `nebula-build "
        "apply --force` (which keeps a backup)\n"
    )
    line = SITE.splitlines().index("[images.logo]") + 1
    (annotation,) = [line for line in out.splitlines() if line.startswith("::")]
    assert annotation == (
        f"::error file=images.toml,line={line},col=1::logo: img/logo.png: output file "
        "changed by hand; apply would refuse to overwrite it"
    )
    assert "| logo | conflict | output file changed by hand | img/logo.png |" in actions.read_text()


def test_the_job_summary_shows_a_reviewer_what_changed_and_what_comes_from_the_cache(
    project, run_cli, actions
):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(
        SITE.replace('prompt = "a lighthouse"', 'prompt = "a <b>red</b> lighthouse | at dusk"')
        .replace("img/logo.png", "img/brand.png")
        .replace("[images.logo]", "[images.brand]")
    )
    actions.unlink()
    assert run_cli("plan", "--detailed-exitcode").code == 2
    text = actions.read_text()
    assert "| brand | create | new image (from cache, no generation) | img/brand.png |" in text
    assert "| hero | regenerate | prompt changed | img/hero.png |" in text
    assert (
        '- hero: prompt: "a lighthouse" -&gt; "a &lt;b&gt;red&lt;/b&gt; lighthouse \\| at dusk"'
    ) in text


def test_a_new_post_shows_its_filled_in_prompt_before_anything_is_paid(project, run_cli, actions):
    manifest = SITE + (
        '\n[images.cover]\nrows = { files = "posts/*.md" }\n'
        'prompt = "{title}: {excerpt}"\noutput = "img/{slug}.png"\n'
    )
    root = project({"images.toml": manifest, "posts/a.md": "---\ntitle: A\n---\nOld harbour.\n"})
    assert run_cli("apply").code == 0
    (root / "posts/b.md").write_text("---\ntitle: B <i>x</i>\n---\nA lighthouse at dusk.\n")
    actions.unlink()
    code, out, _ = run_cli("plan", "--json")
    assert code == 0
    by_image = {a["image"]: a for a in json.loads(out)["actions"]}
    assert by_image["cover[b]"]["prompt"] == "B <i>x</i>: A lighthouse at dusk."
    assert "prompt" not in by_image["cover[a]"]  # up to date: nothing to pay for
    assert '- cover\\[b\\]: prompt: "B &lt;i&gt;x&lt;/i&gt;: A lighthouse at dusk."' in (
        actions.read_text()
    )


def test_the_job_summary_lists_two_hundred_changes_and_counts_the_rest(project, run_cli, actions):
    """A job summary holds 1 MiB: 10,000 new posts' prompts would not fit."""
    manifest = SITE + (
        '\n[images.cover]\nrows = { files = "posts/*.md" }\n'
        'prompt = "{title}"\noutput = "img/{slug}.png"\n'
    )
    posts = {f"posts/{n:03}.md": f"---\ntitle: post {n}\n---\n" for n in range(250)}
    project({"images.toml": manifest, **posts})
    assert run_cli("plan").code == 0
    changed = actions.read_text().split("**What changed:**\n\n")[1].strip().splitlines()
    assert len(changed) == 201 and all(line.startswith("- ") for line in changed)
    assert changed[-1] == "- … and 52 more (`nebula-build plan --json` lists all)"  # 252 new


def test_the_job_summary_stays_under_a_mebibyte_with_long_prompts(project, run_cli, actions):
    """GitHub drops a job summary past 1 MiB: 200 prompts of a pull request's posts, of
    any length, must not reach it."""
    manifest = SITE + (
        '\n[images.cover]\nrows = { files = "posts/*.md" }\n'
        'prompt = "{title}"\noutput = "img/{slug}.png"\n'
    )
    long_title = "<b>a lighthouse</b> at dusk, " * 300  # 9,000 characters: under 10,000
    posts = {f"posts/{n:03}.md": f"---\ntitle: {long_title}{n}\n---\n" for n in range(190)}
    project({"images.toml": manifest, **posts})

    assert run_cli("plan").code == 0

    summary = actions.read_bytes()
    assert len(summary) < 1 << 20, len(summary)
    changed = summary.decode().split("**What changed:**\n\n")[1].strip().splitlines()
    first = next(line for line in changed if line.startswith("- cover\\[000\\]: "))
    assert first.startswith('- cover\\[000\\]: prompt: "&lt;b&gt;a lighthouse&lt;/b&gt; at')
    assert first.endswith("…") and len(first) < 3_000  # plan --json has it all


@pytest.mark.slow
def test_the_job_summary_of_ten_thousand_new_posts_stays_under_a_mebibyte(
    project, run_cli, actions
):
    """Its table had a row per change: 10,000 new posts made 1.4 MB, which GitHub drops
    whole, the estimated cost with it."""
    manifest = SITE + (
        '\n[images.cover]\nrows = { files = "posts/*.md" }\n'
        'prompt = "{title}"\noutput = "static/images/covers/{slug}.webp"\n'
    )
    slug = "a-fairly-typical-blog-post-slug"
    posts = {f"posts/{slug}-{n:05}.md": f"---\ntitle: post {n}\n---\n" for n in range(9_990)}
    project({"images.toml": manifest, **posts})

    assert run_cli("plan").code == 0

    summary = actions.read_text()
    assert len(summary.encode()) < 1 << 20, len(summary.encode())
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    assert rows[2].startswith("| hero | create | new image |")
    counted = summary.split(rows[-1] + "\n\n", 1)[1].splitlines()[0]
    assert counted == f"- … and {9_992 - (len(rows) - 2):,} more {_LISTS_ALL}"
    assert "- **Estimated cost:**" in summary or "- **Generations:**" in summary


def test_nothing_is_written_outside_github_actions(project, run_cli, tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    project({"images.toml": SITE.replace("width = 64", "width = 65")})
    code, out, _ = run_cli("plan")
    assert code == 1 and "::error" not in out
    assert not (tmp_path / "summary.md").exists()


def test_an_annotation_cannot_be_split_or_forged():
    line = annotation("error", "bad\n::warning::fake 100%", file="a,b:c.toml", line=3)
    assert line == "::error file=a%2Cb%3Ac.toml,line=3::bad ::warning::fake 100%25"
    assert "\n" not in line


def test_under_json_an_error_is_a_json_object_on_stdout(project, run_cli):
    import json

    project({"images.toml": SITE.replace("width = 64", "width = 65")})
    for command in ("plan", "apply", "status"):
        code, out, err = run_cli(command, "--json")
        assert code == 1 and err.startswith("error: images.toml:6:1: defaults.width")
        error = json.loads(out)["error"]
        assert error["kind"] == "ManifestError"
        assert error["message"] == err.removeprefix("error: ").strip()
        assert error["problems"][0] | {"message": ""} == {
            "file": "images.toml",
            "line": 6,
            "column": 1,
            "key": "defaults.width",
            "message": "",
        }


def test_validate_and_gc_report_in_json(project, run_cli):
    import json

    root = project({"images.toml": SITE})
    code, out, _ = run_cli("validate", "--json")
    assert code == 0
    assert json.loads(out) == {
        "manifest": "images.toml",
        "images": 2,
        "valid": True,
        "warnings": [],
        "notes": [],
    }
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.split("[images.logo]", maxsplit=1)[0])
    assert run_cli("apply").code == 0  # the logo's original is now unreferenced
    code, out, _ = run_cli("gc", "--dry-run", "--json")
    dry = json.loads(out)
    assert code == 0 and dry["removed"] == 1 and dry["bytes"] > 0 and dry["dry_run"] is True
    [entry] = dry["entries"]
    assert entry["image"] == "logo" and entry["bytes"] == dry["bytes"] and len(entry["key"]) == 64
    code, out, _ = run_cli("gc", "--json")
    assert code == 0 and json.loads(out) == dry | {"dry_run": False}
    assert json.loads(run_cli("gc", "--json").out) == {
        "removed": 0,
        "bytes": 0,
        "dry_run": False,
        "entries": [],
        "candidates": {"draws": 0, "bytes": 0},
        "history": {"generations": 0, "bytes": 0},
        "backups": {"path": ".nebula-build/backup/", "folders": 0, "files": 0, "bytes": 0},
    }


@pytest.mark.parametrize("command", ["validate", "gc"])
def test_validate_and_gc_errors_are_json_too(command, project, run_cli):
    import json

    project({"images.toml": SITE.replace("width = 64", "width = 65")})
    code, out, _ = run_cli(command, "--json")
    assert code == 1
    assert json.loads(out)["error"]["problems"][0]["key"] == "defaults.width"


def test_a_job_summary_stays_under_github_s_limit_whatever_the_prompts(project, run_cli, actions):
    """GitHub drops a step's summary past 1 MiB, so a pull request whose 250 new images
    each have a 9,000-character prompt of `<` (each `&lt;` on the page) and a long
    output path hid the whole summary, cost included: it is cut to fit, and says so."""
    names = ", ".join(f'"{n:03}"' for n in range(250))
    long = "/".join(["d" * 180] * 5)
    manifest = SITE + (
        f'\n[images.spam]\nmatrix = {{ n = [{names}] }}\nprompt = "{{n}} {"<" * 9000}"\n'
        f'output = "img/{long}/{{n}}.png"\n'
    )
    project({"images.toml": manifest})
    code, _, err = run_cli("plan")
    assert code == 0, err
    text = actions.read_text()
    assert len(text.encode()) < 1 << 20, len(text.encode())
    assert "- **Generations:** 252 × <code>black" in text
    assert "(`nebula-build plan --json` lists all)" in text.split("**What changed:**")[1]


def test_locked_on_a_manifest_edited_without_apply_says_the_lock_was_not_brought_along(
    project, run_cli
):
    """A pull request that edited a prompt and committed no apply: --locked said no
    cache held the generation, and pointed at setting up the remote cache."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.replace("a fox", "a red fox"))
    code, _, err = run_cli("apply", "--locked")
    assert code == 2
    assert err == (
        "error: --locked: 1 image would need generating: images.lock does not record it as "
        "the manifest declares it (logo: prompt changed): run apply, and commit images.lock "
        "with the files it makes; without --locked, apply generates it\n"
    )


def test_a_refused_apply_json_says_why_and_what_would_need_generating(project, run_cli):
    """`apply --locked --json` printed no error and no action: a script could not tell
    why it exited 2, nor which images stopped it."""
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.replace("a fox", "a red fox"))
    code, out, err = run_cli("apply", "--locked", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["error"] == {"kind": "Refused", "message": err.removeprefix("error: ").strip()}
    assert [(a["image"], a["action"], a["reason"]) for a in data["refused_actions"]] == [
        ("logo", "regenerate", "prompt changed")
    ]
