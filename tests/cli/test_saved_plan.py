"""`plan --out FILE` and `apply --plan FILE`: apply does exactly the plan that was
reviewed, or nothing (Terraform's saved plan). The file is untrusted input: it can
only make apply refuse, in one line, never make it do more."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.test_ci_examples import _github_scripts, _gitlab_scripts, nebula_commands
from tests.conftest import fake_manifest, generation_log
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

[images.product]
rows = "data/products.csv"
id = "sku"
prompt = "{name}, product photo"
output = "img/products/{sku}.png"
"""
)
PRODUCTS = "sku,name\ntea,green tea\nbun,cinnamon bun\n"
#: the most `apply --plan` reads
MAX_BYTES = 32 * 2**20
STALE = re.compile(r"error: plan\.json is stale: .+; run plan again\n")


def site(project) -> Path:
    return project({"images.toml": SITE, "data/products.csv": PRODUCTS})


#: what `.nebula-build/` holds that a plan may rewrite: memos of what it read
MEMOS = ("specs.json", "files", "noop", "lock", ".gitignore")


def state(root: Path) -> dict[str, bytes]:
    """Every file of the project but the saved plan and the memos: the manifest, its
    data, the outputs, the lock, the cache and the journal."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and path.name != "plan.json"
        and not (path.parent.name == ".nebula-build" and path.name.startswith(MEMOS))
    }


def one_error_line(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


# --- the review-then-apply guarantee -------------------------------------------------


def test_apply_generates_exactly_the_images_of_the_saved_plan(project, run_cli, fake_site):
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "output": "hero.png"}}
    images |= {"logo": {"prompt": "a fox", "output": "logo.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply", "--target", "hero").code == 0
    code, out, err = run_cli("plan", "--detailed-exitcode", "--out", "plan.json")
    assert code == 2, err
    assert "+ logo  create  logo.png" in out  # printed as ever
    saved = json.loads((root / "plan.json").read_text())
    assert (saved["format"], saved["version"]) == ("nebula-build-plan", 1)
    assert [row[:2] for row in saved["actions"]] == [["hero", "noop"], ["logo", "create"]]
    assert saved["actions"][1][3:] == ["logo.png", "new image"]
    assert saved["options"] == {
        "target": [],
        "replace": [],
        "more": [],
        "force": False,
        "backend": None,
        "offline": False,
    }
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert code == 0, err
    assert generation_log(root / "log") == ["hero", "logo"]  # logo alone, once
    code, out, err = run_cli("apply", "--plan", "plan.json")  # the plan is done
    assert (code, err) == (
        1,
        "error: plan.json was applied already: its 1 change is done, and nothing is left of "
        "it to do; run plan again for a new plan\n",
    )


def _first_round_unordered(log: list[str]) -> list[str]:
    """The generation log with the first apply's two images sorted: they run at once."""
    return sorted(log[:2]) + log[2:]


def test_a_saved_replace_of_a_seeded_image_is_paid_once_however_often_applied(
    project, run_cli, fake_site
):
    """A deterministic draw made again (`--replace` of a seeded image) left the lock as
    it was: applying the saved plan again paid again. The entries it wrote name it, in
    the lock a CI job commits, so a fresh checkout knows it too."""
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "seed": 7, "output": "hero.png"}}
    images |= {"logo": {"prompt": "a fox", "seed": 8, "output": "logo.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply").code == 0
    options = ("--replace", "hero")
    assert run_cli("plan", *options, "--out", "plan.json").code == 0
    assert run_cli("apply", *options, "--plan", "plan.json").code == 0
    assert _first_round_unordered(generation_log(root / "log")) == ["hero", "logo", "hero"]
    shutil.rmtree(root / ".nebula-build")  # the next job's fresh checkout
    code, _, err = run_cli("apply", *options, "--plan", "plan.json")
    assert (code, err) == (
        1,
        "error: plan.json was applied already: its 1 change is done, and nothing is left of "
        "it to do; run plan again for a new plan\n",
    )
    assert _first_round_unordered(generation_log(root / "log")) == ["hero", "logo", "hero"]
    assert run_cli("plan").out.startswith("No changes")
    assert run_cli("plan", *options, "--out", "again.json").code == 0  # asked anew: paid
    assert run_cli("apply", *options, "--plan", "again.json").code == 0
    assert _first_round_unordered(generation_log(root / "log")) == ["hero", "logo", "hero", "hero"]
    code, _, err = run_cli("apply", *options, "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err), err


def test_a_saved_replace_applied_in_part_says_so_and_pays_for_none_again(
    project, run_cli, fake_site
):
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "seed": 7, "output": "hero.png"}}
    images |= {"logo": {"prompt": "a fox", "seed": 8, "output": "logo.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(fake_manifest(root / "log", images, fail=("logo",)))
    options = ("--replace", "hero", "--replace", "logo")
    assert run_cli("plan", *options, "--out", "plan.json").code == 0
    assert run_cli("apply", *options, "--plan", "plan.json").code == 1  # logo failed
    code, _, err = run_cli("apply", *options, "--plan", "plan.json")
    assert (code, err) == (
        1,
        "error: plan.json was partly applied already: 1 of its 2 changes is done (an "
        "earlier apply stopped or failed before the rest); run plan again\n",
    )
    assert generation_log(root / "log").count("hero") == 2


def test_a_plan_applied_in_part_or_drawn_says_so_not_stale(project, run_cli, fake_site):
    """An apply that failed an image leaves the rest of its plan to do; a candidate
    drawn (`--more`) is not a new draw to make: both say what became of the plan."""
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "output": "hero.png"}}
    images |= {"logo": {"prompt": "a fox", "output": "logo.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images, fail=("logo",)))
    assert run_cli("plan", "--out", "plan.json").code == 0
    (root / "plan.json").rename(root / "first.json")
    assert run_cli("apply", "--plan", "first.json").code == 1  # logo failed
    code, _, err = run_cli("apply", "--plan", "first.json")
    assert (code, err) == (
        1,
        "error: first.json was partly applied already: 1 of its 2 changes is done (an "
        "earlier apply stopped or failed before the rest); run plan again\n",
    )
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply").code == 0
    assert run_cli("plan", "--more", "hero", "--out", "plan.json").code == 0
    assert run_cli("apply", "--more", "hero", "--plan", "plan.json").code == 0
    assert _first_round_unordered(generation_log(root / "log")) == ["hero", "logo", "logo", "hero"]
    code, _, err = run_cli("apply", "--more", "hero", "--plan", "plan.json")  # no new draw
    assert code == 1 and err.startswith("error: plan.json was applied already: its 1 change")
    assert _first_round_unordered(generation_log(root / "log")) == ["hero", "logo", "logo", "hero"]


def test_a_plan_applied_whole_then_edited_is_stale_not_partly_applied(project, run_cli):
    """An edit after the apply plans an image the plan made again: it says so, not that
    an earlier apply stopped or failed before the rest (nothing did)."""
    root = site(project)
    assert run_cli("plan", "--out", "plan.json").code == 0
    assert run_cli("apply", "--plan", "plan.json").code == 0
    (root / "images.toml").write_text(SITE.replace('"a fox"', '"a red fox"'))
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert (code, err) == (
        1,
        "error: plan.json was applied already, and the project changed since: logo would now "
        "be regenerated (prompt changed), the saved plan had it created (new image); run plan "
        "again\n",
    )


def _corrupt_cache(root: Path) -> None:
    """Every original and encoded output the project's cache holds, garbled."""
    for path in (root / ".nebula-build/cache").rglob("*"):
        if path.is_file() and len(path.name) == 64:
            path.write_bytes(b"garbled")


def test_an_image_the_plan_restores_is_never_paid_for_when_its_cache_entry_is_bad(
    project, run_cli, fake_site
):
    """The plan counted no generation; an entry found corrupt as it is read is a miss,
    which a plain apply generates: a reviewed plan fails that image instead."""
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "output": "hero.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply").code == 0
    (root / "hero.png").unlink()
    assert run_cli("plan", "--out", "plan.json").code == 0
    assert json.loads((root / "plan.json").read_text())["generations"] == 0
    _corrupt_cache(root)  # as the plan counts it, the entry is still there
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1
    assert generation_log(root / "log") == ["hero"]  # the first apply's, alone
    assert "hero: not generated: cache entry was corrupt" in err
    assert "may only make the generations its plan counted (--plan, " in err
    assert not (root / "hero.png").exists()


def _edit_manifest(root: Path) -> None:
    text = (root / "images.toml").read_text()
    (root / "images.toml").write_text(text.replace("a lighthouse", "a lighthouse at night"))


def _edit_lock(root: Path) -> None:
    lock = (root / "images.lock").read_text()
    start = lock.index("[images.hero]")
    end = lock.index("\n[", start + 1)
    (root / "images.lock").write_text(lock[:start] + lock[end + 1 :])


def _edit_output(root: Path) -> None:
    (root / "img/hero.png").write_bytes(b"touched up by hand")


def _edit_data(root: Path) -> None:
    (root / "data/products.csv").write_text(PRODUCTS.replace("green tea", "white tea"))


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (_edit_manifest, "hero would now be regenerated (prompt changed), the saved plan had "),
        (_edit_lock, "hero would now be "),
        (_edit_output, "hero would now be in conflict (output file changed by hand), "),
        (_edit_data, "product[tea] would now be regenerated (prompt changed), the saved plan "),
    ],
    ids=["manifest", "lock", "output", "data"],
)
def test_a_change_after_the_plan_makes_apply_refuse_and_write_nothing(edit, said, project, run_cli):
    root = site(project)
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SITE.replace('"a fox"', '"a red fox"'))
    assert run_cli("plan", "--out", "plan.json").code == 0
    edit(root)
    before = state(root)
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err), err
    assert said in err
    assert "logo" not in out and "Apply finished" not in out
    assert state(root) == before  # outputs, lock and cache as they were


def test_a_stale_plan_says_why_in_the_markdown_file_and_the_job_summary(
    project, run_cli, tmp_path, monkeypatch
):
    """The comment and the summary of an apply a moved plan stopped must not keep the
    plan before, nor be empty."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    root = site(project)
    assert run_cli("plan", "--out", "plan.json").code == 0
    (root / "apply.md").write_text("the comment of the last apply")
    _edit_manifest(root)
    code, out, _ = run_cli("apply", "--plan", "plan.json", "--markdown", "apply.md")
    assert code == 1
    assert "::error file=images.toml::plan.json is stale: hero would now be created" in out
    why = (
        "plan.json is stale: hero would now be created (new image) from another spec than "
        "the saved plan's; run plan again"
    )
    assert f"::error file=images.toml::{why}" in out
    stopped = f"### nebula-build apply (images.toml)\n\n**Stopped before any generation:** {why}"
    assert (root / "apply.md").read_text().startswith(stopped + "\n\n| image | action |")
    assert stopped in summary.read_text()  # after the plan's
    assert not (root / "img").exists()


def test_a_plan_saved_in_another_project_is_refused(project, run_cli, tmp_path):
    root = site(project)
    assert run_cli("plan", "--out", "plan.json").code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "images.toml").write_text(
        SITE.split("[images.hero]", maxsplit=1)[0]
        + ('[images.banner]\nprompt = "a banner"\noutput = "banner.png"\n')
    )
    code, _, err = run_cli("-C", str(other), "apply", "--plan", str(root / "plan.json"))
    assert code == 1
    assert err == (
        f"error: {root / 'plan.json'} was saved for another project: none of its 4 images "
        "is in this manifest; run plan here\n"
    )
    assert sorted(p.name for p in other.iterdir()) == [".nebula-build", "images.toml"]


@pytest.mark.parametrize(
    ("planned", "applied", "said"),
    [
        (["--replace", "hero"], [], "was saved with --replace hero"),
        ([], ["--force"], "was saved without --force"),
        (["--target", "hero"], ["--target", "logo"], "was saved with --target hero"),
        (["--backend", "preview"], [], "was saved with --backend preview"),
        ([], ["--offline"], "was saved without --offline"),
    ],
)
def test_other_options_than_the_plan_s_are_refused(planned, applied, said, project, run_cli):
    root = site(project)
    assert run_cli("plan", "--out", "plan.json", *planned).code == 0
    code, _, err = run_cli("apply", "--plan", "plan.json", *applied)
    assert (code, err) == (1, f"error: plan.json {said}; apply it with the same options\n")
    assert not (root / "img").exists() and not (root / "images.lock").exists()


def test_the_same_options_in_another_order_apply(project, run_cli):
    root = site(project)
    planned = ["--target", "hero", "--target", "logo", "--replace", "logo"]
    assert run_cli("plan", "--out", "plan.json", *planned).code == 0
    applied = ["--replace", "logo", "--target", "logo", "--target", "hero"]
    code, _, err = run_cli("apply", "--plan", "plan.json", *applied)
    assert code == 0, err
    assert sorted(p.name for p in (root / "img").iterdir()) == ["hero.png", "logo.png"]


def test_nothing_to_do_applies_nothing_and_says_so(project, run_cli):
    root = site(project)
    assert run_cli("apply").code == 0
    assert run_cli("plan").code == 0  # the next ones may be answered from the snapshot
    assert run_cli("plan", "--out", "plan.json").code == 0
    assert [row[1] for row in json.loads((root / "plan.json").read_text())["actions"]] == [
        "noop"
    ] * 4
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert (code, out, err) == (0, "No changes: 4 images up to date.\n", "")


def test_locked_and_plan_both_hold(project, run_cli):
    root = site(project)
    assert run_cli("plan", "--out", "plan.json").code == 0
    code, _, err = run_cli("apply", "--locked", "--plan", "plan.json")
    assert code == 2 and "--locked: 4 images would need generating: images.lock " in err
    assert "with the files it makes; without --locked, apply generates them" in err
    _edit_manifest(root)
    code, _, err = run_cli("apply", "--locked", "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err)
    assert not (root / "img").exists()


def test_apply_json_names_the_plan_it_applied(project, run_cli):
    site(project)
    assert run_cli("plan", "--json", "--out", "plan.json").code == 0
    code, out, err = run_cli("apply", "--json", "--plan", "plan.json")
    assert code == 0, err
    assert json.loads(out)["plan"] == "plan.json"
    code, out, _ = run_cli("apply", "--json")
    assert "plan" not in json.loads(out)


def test_out_works_with_json_detailed_exitcode_markdown_and_c(project, run_cli):
    root = project({"site/images.toml": SITE, "site/data/products.csv": PRODUCTS})
    flags = ["--json", "--detailed-exitcode", "--markdown", "plan.md", "--out", "plan.json"]
    code, out, err = run_cli("-C", "site", "plan", *flags)
    assert code == 2, err
    assert json.loads(out)["summary"]["create"] == 4
    assert (root / "site/plan.md").read_text().startswith("### nebula-build plan")
    assert json.loads((root / "site/plan.json").read_text())["generations"] == 4
    assert not (root / "plan.json").exists()
    code, _, err = run_cli("-C", "site", "apply", "--plan", "plan.json")
    assert code == 0, err


# --- a new price list -----------------------------------------------------------------

FLUX = "black-forest-labs/FLUX.1-schnell"


def test_new_prices_are_a_note_with_both_figures_and_max_cost_still_holds(
    project, run_cli, nebula_server, monkeypatch
):
    from tests.conftest import nebula_manifest

    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": nebula_manifest(images)})
    nebula_server.prices[FLUX] = 0.003
    monkeypatch.setenv("NEBULA_BUILD_PRICES", f"{FLUX}=0.003")
    assert run_cli("plan", "--out", "plan.json").code == 0
    monkeypatch.setenv("NEBULA_BUILD_PRICES", f"{FLUX}=0.004")
    code, _, err = run_cli("apply", "--yes", "--plan", "plan.json", "--max-cost", "0.007")
    assert code == 1
    note = (
        "note: the estimated cost moved since plan.json was saved (the prices changed, not "
        "the plan): $0.006 then, $0.008 now\n"
    )
    assert note in err and "error: " in err and nebula_server.generations == []
    code, _, err = run_cli("apply", "--yes", "--plan", "plan.json", "--max-cost", "0.01")
    assert code == 0, err
    assert note in err and len(nebula_server.generations) == 2
    assert (root / "a.png").exists()


# --- where --out may write -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("images.toml", "images.toml, which nebula-build reads and keeps"),
        ("images.lock", "images.lock, which nebula-build reads and keeps"),
        (".nebula-build/plan.json", "inside .nebula-build/, where nebula-build keeps its state"),
        (".git/config", "inside a version control folder (.git/), never the tool's to write"),
        (".Git/hooks/x.json", "inside a version control folder (.git/), never the tool's to write"),
        (".git", "inside a version control folder (.git/), never the tool's to write"),
        ("img/hero.png", "the output of image hero"),
        ("data/products.csv", "read by the manifest as rows"),
    ],
)
def test_out_is_refused_on_a_file_the_project_owns(path, what, project, run_cli):
    root = site(project)
    before = state(root)
    code, out, err = run_cli("plan", "--out", path)
    assert (code, out) == (1, "")
    assert err == f"error: --out {path}: that is {what}; name another file\n"
    assert state(root) == before


INPUTS_AND_ATLAS = """
[images.hat]
model = "black-forest-labs/FLUX.1-Fill-dev"
prompt = "a hat"
image = "in/portrait.png"
mask = "in/mask.png"
output = "img/hat.png"

[atlases.icons]
images = ["hero", "logo"]
output = "img/icons.png"
godot = "img/icons.tres"
"""


def _png(mode: str) -> bytes:
    import io

    from PIL import Image

    data = io.BytesIO()
    Image.new(mode, (64, 64)).save(data, "PNG")
    return data.getvalue()


@pytest.mark.parametrize("option", ["--out", "--markdown"])
@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("img/logo.png", "the output of image logo"),
        ("in/mask.png", "an input of image hat"),
        ("img/icons.tres", "the output of atlas icons"),
    ],
)
def test_out_is_refused_on_a_file_of_an_image_the_plan_does_not_list(
    option, path, what, project, run_cli
):
    """Under --target the plan lists one image; the files of the others (an input, an
    atlas's export) are the project's all the same."""
    root = project(
        {
            "images.toml": SITE + INPUTS_AND_ATLAS,
            "data/products.csv": PRODUCTS,
            "in/portrait.png": _png("RGB"),
            "in/mask.png": _png("L"),
        }
    )
    assert run_cli("apply").code == 0
    before = state(root)
    code, out, err = run_cli("plan", "--target", "hero", option, path)
    assert (code, out) == (1, "")
    assert err == f"error: {option} {path}: that is {what}; name another file\n"
    assert state(root) == before


@pytest.mark.parametrize("option", ["--out", "--markdown"])
def test_out_through_a_link_out_of_the_project_is_refused(option, project, run_cli, tmp_path):
    """A folder link a pull request commits must not choose where the plan is written."""
    root = site(project)
    outside = tmp_path / "home"
    outside.mkdir()
    (root / "reports").symlink_to(outside)
    code, out, err = run_cli("plan", option, "reports/authorized_keys")
    assert (code, out) == (1, "")
    assert err == (
        f"error: {option} reports/authorized_keys: that is in a folder a link leads out of "
        "the project; name another file\n"
    )
    assert list(outside.iterdir()) == []
    assert run_cli("plan", option, str(outside / "plan.txt")).code == 0  # named outside: yours


def test_out_and_markdown_on_one_file_is_refused(project, run_cli):
    root = site(project)
    code, _, err = run_cli("plan", "--out", "plan.json", "--markdown", "./plan.json")
    assert (code, err) == (1, "error: --out plan.json: --markdown writes that file too\n")
    assert not (root / "plan.json").exists()


def test_out_that_cannot_be_written_is_one_line(project, run_cli):
    root = site(project)
    (root / "plan.json").mkdir()
    code, _, err = run_cli("plan", "--out", "plan.json")
    assert (code, err) == (1, "error: --out plan.json: cannot write it: Is a directory\n")


# --- the file is untrusted -----------------------------------------------------------


def _saved(run_cli, root: Path) -> dict:
    assert run_cli("plan", "--out", "plan.json").code in (0, 2)
    return json.loads((root / "plan.json").read_text())


def _with(saved: dict, **fields: object) -> str:
    return json.dumps(saved | fields)


@pytest.mark.parametrize(
    ("contents", "said"),
    [
        ("", "plan.json is not a saved plan (not JSON); save one with `nebula-build plan --out`"),
        ("\udcff", "plan.json is not a saved plan (not JSON)"),
        ("[1, 2", "plan.json is not a saved plan (not JSON)"),
        ("[]", 'plan.json is not a saved plan (no "format": "nebula-build-plan")'),
        ("[" * 100_000 + "]" * 100_000, "(nested deeper than 32 levels)"),
        ("[" + "[]," * 1_000_000 + "0]", "(made of more than 2,000,000 JSON values)"),
        ('{"format": "terraform"}', 'plan.json is not a saved plan (no "format"'),
        ("1" * 5000, "plan.json is not a saved plan (not JSON)"),
        ("\ufeff" + json.dumps({"format": "nebula-build-plan", "version": 1}), '"options"'),
        (
            {"version": 2},
            "plan.json is a saved plan of format version 2, which this nebula-build does not "
            "read (it reads 1); run plan again",
        ),
        ({"version": True}, "plan.json is a saved plan of format version true, "),
        ({"version": "1"}, 'plan.json is a saved plan of format version "1", '),
        ({"actions": {"hero": "noop"}}, '("actions" is not a list); run plan again'),
        ({"actions": [["hero", "noop"]]}, '("actions" item 1 is not [image, action, key, '),
        ({"actions": [["a", "launch", "k", None, "r"]]}, '("actions" item 1 is not '),
        ({"files": [[1, 2, 3, 4]]}, '("files" item 1 is not [name, action, output, reason])'),
        ({"options": []}, '("options" is not an object)'),
        ({"options": {"force": "yes"}}, '("options" has no valid "target")'),
        ({"digest": 7}, '("digest" is not a string)'),
        ({"cost": {"total": "NaN"}}, '("cost" has no valid "total")'),
        ({"cost": {"total": 1e308}}, '("cost" has no valid "total")'),
    ],
)
def test_a_file_that_is_not_a_saved_plan_is_one_line(contents, said, project, run_cli):
    root = site(project)
    if isinstance(contents, dict):
        contents = _with(_saved(run_cli, root), **contents)
    (root / "plan.json").write_bytes(contents.encode("utf-8", "surrogateescape"))
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and one_error_line(err), err
    assert said in err
    assert not (root / "img").exists() and not (root / "images.lock").exists()


def test_a_truncated_plan_is_one_line(project, run_cli):
    root = site(project)
    _saved(run_cli, root)
    text = (root / "plan.json").read_bytes()
    (root / "plan.json").write_bytes(text[: len(text) // 2])
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and one_error_line(err)
    assert err.startswith("error: plan.json is not a saved plan (not JSON)")


def test_a_huge_file_is_refused_unread(project, run_cli):
    root = site(project)
    with (root / "plan.json").open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: nothing to write
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert (code, err) == (
        1,
        "error: plan.json: more than 32 MiB, larger than any saved plan; is it the right file?\n",
    )


def test_a_missing_file_or_a_folder_is_one_line(project, run_cli):
    root = site(project)
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert (code, err) == (
        1,
        "error: plan.json: no such file; save a plan with `nebula-build plan --out plan.json`\n",
    )
    (root / "plan.json").mkdir()
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and one_error_line(err) and "plan.json" in err


def test_what_the_file_says_is_printed_as_plain_text(project, run_cli):
    root = site(project)
    saved = _saved(run_cli, root)
    hostile = "\x1b]0;owned\x07x\n::error::forged"
    rows = [*saved["actions"], [hostile, "create", "0" * 16, "x.png", "\x1b[2Jwhy"]]
    (root / "plan.json").write_text(_with(saved, actions=rows))
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and one_error_line(err) and "\x1b" not in err and "\x07" not in err
    assert "x ::error::forged is no longer planned" in err
    options = saved["options"] | {"replace": [hostile]}
    (root / "plan.json").write_text(_with(saved, options=options))
    code, _, err = run_cli("apply", "--plan", "plan.json", "--replace", "hero")
    assert code == 1 and one_error_line(err) and "\x1b" not in err
    assert err == "error: plan.json was saved with --replace x ::error::forged; apply it " + (
        "with the same options\n"
    )


@pytest.mark.parametrize("option", ["backend", "offline", "replace"])
def test_a_plan_without_an_option_is_refused_in_one_line(project, run_cli, option):
    root = site(project)
    saved = _saved(run_cli, root)
    options = {key: value for key, value in saved["options"].items() if key != option}
    (root / "plan.json").write_text(_with(saved, options=options))
    before = state(root)
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and one_error_line(err), err
    assert f'"options" has no valid "{option}"' in err
    assert state(root) == before


def test_a_forged_plan_cannot_make_apply_do_what_the_disk_does_not_say(project, run_cli):
    """A file that lists only what the reviewer would accept, for a project whose
    manifest asks for more: apply compares the plan it makes now and refuses."""
    root = site(project)
    saved = _saved(run_cli, root)
    only_hero = [row for row in saved["actions"] if row[0] == "hero"]
    (root / "plan.json").write_text(_with(saved, actions=only_hero))
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err)
    assert "logo would now be created (new image), the saved plan does not list it" in err
    # every line kept but one key changed: the digest still holds the whole plan
    rows = [[*row[:2], "f" * 16, *row[3:]] if row[0] == "hero" else row for row in saved["actions"]]
    (root / "plan.json").write_text(_with(saved, actions=rows))
    assert STALE.fullmatch(run_cli("apply", "--plan", "plan.json").err)
    (root / "plan.json").write_text(_with(saved, digest="0" * 64))
    err = run_cli("apply", "--plan", "plan.json").err
    assert STALE.fullmatch(err) and "what its lines do not show" in err
    assert not (root / "img").exists()


def _mutated() -> st.SearchStrategy[object]:
    leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )


FIELDS = ["format", "version", "options", "actions", "files", "digest", "cost", "summary"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300).map(lambda data: ("bytes", data)),
        st.tuples(st.sampled_from(FIELDS), _mutated()).map(lambda change: ("field", change)),
        st.tuples(st.integers(0, 2000), st.binary(max_size=20)).map(lambda cut: ("cut", cut)),
    )
)
def test_any_file_is_applied_unchanged_or_refused_in_one_line(project, run_cli, fuzz):
    root = project({"images.toml": SITE, "data/products.csv": PRODUCTS})
    if not (root / "images.lock").exists():
        assert run_cli("apply").code == 0
    text = _with(_saved(run_cli, root)).encode()
    how, change = fuzz
    if how == "bytes":
        data = change
    elif how == "field":
        key, value = change
        data = json.dumps(json.loads(text) | {key: value}).encode()
    else:
        at, inserted = change
        data = text[:at] + inserted + text[at + len(inserted) :]
    (root / "plan.json").write_bytes(data)
    before = state(root)
    code, _, err = run_cli("apply", "--plan", "plan.json")
    assert code == 0 or (code == 1 and one_error_line(err)), err
    assert state(root) == before  # nothing to do, whatever the file says


# --- the documented commands ---------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def _section_commands() -> list[list[str]]:
    """The nebula-build commands of the section's GitLab jobs and GitHub steps, in order."""
    yaml = pytest.importorskip("yaml")
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Apply exactly what was reviewed", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL):
        data = yaml.safe_load(block)
        scripts = _github_scripts(data) if "jobs" in data else _gitlab_scripts(data)
        commands += [argv for script in scripts for argv in nebula_commands(script)]
    return commands


def test_the_docs_commands_run_as_written(project, run_cli, monkeypatch, tmp_path):
    commands = _section_commands()
    assert [argv[0] for argv in commands] == ["plan", "apply"] * 2  # GitLab, GitHub
    root = site(project)
    monkeypatch.setenv("NEBULA_API_KEY", "unused by the preview backend")
    runner_temp = tmp_path / "runner-temp"  # where GitHub's apply job downloads the plan
    runner_temp.mkdir()
    monkeypatch.setenv("RUNNER_TEMP", str(runner_temp))
    for argv in commands:
        code, _, err = run_cli(*map(os.path.expandvars, argv))
        assert code in (0, 2), (argv, err)
        if argv[0] == "plan":  # the artifact, as the download step places it
            shutil.copy(root / "plan.json", runner_temp / "plan.json")
    assert (root / "img/hero.png").exists()


def test_a_restore_leaves_the_lock_as_it_was(project, run_cli):
    """A CI walkthrough found: an apply that only restored files (`--locked` in a fresh
    clone with a remote cache) wrote the lock anew without its entries' `applied_plan`,
    so the job's commit-back step had a lock to commit and a saved plan applied again
    was no longer known as such."""
    root = site(project)
    assert run_cli("plan", "--out", "plan.json").code == 0
    assert run_cli("apply", "--plan", "plan.json").code == 0
    lock = (root / "images.lock").read_bytes()
    assert b"applied_plan" in lock
    shutil.rmtree(root / "img")
    code, out, err = run_cli("apply", "--locked")
    assert code == 0, err
    assert "4 done (0 generated)" in out + err
    assert (root / "images.lock").read_bytes() == lock


def test_a_saved_plan_run_again_after_the_cache_filled_applies_for_less(
    project, run_cli, tmp_path, monkeypatch
):
    """A CI walkthrough found: an approved `apply --plan` whose push failed, run again
    on a fresh checkout, was refused as stale because the remote cache now held what
    the plan was to generate (the documented recovery needed a new plan and a new
    approval). Paying for less than the plan counted is applied, and said."""
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    root = site(project)
    assert run_cli("apply").code == 0
    _edit_manifest(root)
    fresh = tmp_path / "fresh"  # the second run's checkout: the files, no cache
    shutil.copytree(root, fresh, ignore=shutil.ignore_patterns(".nebula-build"))
    code, out, err = run_cli("plan", "--out", "plan.json")
    assert code == 0 and "Plan: 1 to generate" in out, out
    shutil.copy(root / "plan.json", fresh / "plan.json")
    assert run_cli("apply", "--yes", "--plan", "plan.json").code == 0  # its push failed
    code, out, err = run_cli("apply", "--yes", "--plan", "plan.json", cwd=fresh)
    assert code == 0, err
    assert (
        "note: plan.json: 1 image it would generate is in a cache now (hero): restored, "
        "not paid for; the rest as saved"
    ) in err, err
    assert "0 generated" in out + err
    assert (fresh / "img/hero.png").read_bytes() == (root / "img/hero.png").read_bytes()


def test_a_saved_plan_that_would_now_pay_for_another_image_stays_stale(
    project, run_cli, tmp_path, monkeypatch
):
    root = site(project)
    assert run_cli("apply").code == 0
    _edit_manifest(root)
    assert run_cli("plan", "--out", "plan.json").code == 0
    (root / "img/logo.png").unlink()
    shutil.rmtree(root / ".nebula-build/cache")  # the logo now costs a generation
    code, _, err = run_cli("apply", "--yes", "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err), err


def test_a_seeded_replace_run_by_hand_is_no_saved_plans_doing(project, run_cli, fake_site):
    """A review found: keeping a restored entry's `applied_plan` also kept it over a
    paid `--replace` run by hand that made the same bytes, so a plan saved before that
    run applied (and paid) again instead of being stale."""
    root = project({})
    images = {"hero": {"prompt": "a lighthouse", "seed": 7, "output": "hero.png"}}
    (root / "images.toml").write_text(fake_manifest(root / "log", images))
    assert run_cli("apply").code == 0
    options = ("--replace", "hero")
    assert run_cli("plan", *options, "--out", "first.json").code == 0
    assert run_cli("apply", *options, "--plan", "first.json").code == 0
    assert run_cli("plan", *options, "--out", "plan.json").code == 0
    assert run_cli("apply", *options).code == 0  # by hand: paid, the same bytes
    paid = len(generation_log(root / "log"))
    code, _, err = run_cli("apply", *options, "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err), err
    assert len(generation_log(root / "log")) == paid


def test_a_saved_plan_naming_more_images_to_generate_gains_nothing(
    project, run_cli, tmp_path, monkeypatch
):
    """A review found: the file's list of images to generate was trusted, so a plan
    whose logo came from the cache, edited to list the logo as generated, applied and
    paid for it once the cache had lost it. The saved digest decides."""
    root = site(project)
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace("a fox", "a red fox"))
    assert run_cli("apply").code == 0
    manifest.write_text(text.replace("a lighthouse", "a lighthouse at night"))
    code, out, _ = run_cli("plan", "--out", "plan.json")
    assert "Plan: 1 to generate, 1 from cache" in out, out
    saved = json.loads((root / "plan.json").read_text())
    assert saved["generating"] == ["hero"]
    other = tmp_path / "other"  # a run whose push failed: hero is in the remote cache
    shutil.copytree(root, other)
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    assert run_cli("apply", "--yes", cwd=other).code == 0
    shutil.rmtree(root / ".nebula-build/cache")  # and the logo is in no cache here
    saved["generating"] = ["hero", "logo"]
    (root / "plan.json").write_text(json.dumps(saved))
    code, _, err = run_cli("apply", "--yes", "--plan", "plan.json", cwd=root)
    assert code == 1 and STALE.fullmatch(err), err


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ((), "a fresh checkout reads the team's remote cache where [cache] remote or "),
        (("--offline",), "--offline: the remote cache is not read"),
    ],
)
def test_locked_says_why_no_cache_held_the_images(project, run_cli, options, why):
    """The lock records the images as declared: their files and their cache are gone."""
    root = site(project)
    assert run_cli("apply").code == 0
    shutil.rmtree(root / "img")
    shutil.rmtree(root / ".nebula-build/cache")
    code, _, err = run_cli("apply", "--locked", *options)
    assert code == 2, err
    assert f"no cache this run reads holds those ({why}" in err, err
    assert err.rstrip().endswith("without --locked, apply generates them")


def test_a_plan_saved_where_a_cache_held_the_image_says_so_where_none_does(project, run_cli):
    """The plan job's runner had the image in its cache, the apply job's had none: apply
    said the plan 'differs in what its lines do not show', naming nothing (a newcomer's
    walkthrough of the two-job workflow)."""
    root = site(project)
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(SITE.replace("a lighthouse", "a foggy lighthouse"))
    assert run_cli("apply").code == 0
    manifest.write_text(SITE)
    saved = _saved(run_cli, root)
    assert [row[:2] for row in saved["actions"] if row[0] == "hero"] == [["hero", "regenerate"]]
    shutil.rmtree(root / ".nebula-build")  # the apply job's runner: no cache
    code, out, err = run_cli("apply", "--plan", "plan.json")
    assert code == 1 and STALE.fullmatch(err), err
    assert (
        "hero would now be generated, where the saved plan had it from a cache that is not "
        "here (plan and apply on two machines: give both one remote cache, docs/ci.md)"
    ) in err
