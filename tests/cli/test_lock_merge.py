"""A team's `git merge` leaves conflict markers in images.lock: every command reads
both sides, `apply` writes the lock resolved, and `images.toml` (or a data file) with
markers left in it is one line naming where."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from nebula_build.engine import noop
from nebula_build.state.lockfile import loads
from tests.manifests import PREVIEW

BASE = (
    "\n"
    + PREVIEW
    + """
[images.hero]
prompt = "a lighthouse"
seed = 1
output = "images/hero.png"
"""
)
CAT = '\n[images.a]\nprompt = "a cat"\nseed = 2\noutput = "images/a.png"\n'
DOG = '\n[images.b]\nprompt = "a dog"\nseed = 3\noutput = "images/b.png"\n'
COW = '\n[images.c]\nprompt = "a cow"\nseed = 4\noutput = "images/c.png"\n'
#: the two branches' versions of hero
RED = BASE.replace("a lighthouse", "a red lighthouse")
BLUE = BASE.replace("a lighthouse", "a blue lighthouse")
#: plan's summary of a lock still in conflict: it had said "No changes: 3 images up to
#: date." alone, beside a note that the lock "had" merge conflicts
STILL_MERGED = (
    "No changes to the images: 3 images up to date.\n"
    "Lock: images.lock still has git's conflict markers: leave them to `nebula-build "
    "apply`, which writes it resolved from both sides (2 + 2 entries); then git add "
    "images.lock images.toml.\n"
)
MERGED_NOTE = (
    "note: images.lock has git's conflict markers: read both sides (2 + 2 entries); "
    "apply writes it resolved, then git add images.lock images.toml\n"
)


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"},
    )


def commit(root: Path, message: str) -> None:
    assert git(root, "add", "-A").returncode == 0
    done = git(root, "commit", "--allow-empty", "-qm", message)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def repo(project, run_cli):
    """A project applied and committed on `main`, with `.nebula-build/` ignored."""

    def make(manifest: str = BASE, files: dict[str, str | bytes] | None = None) -> Path:
        root = project({"images.toml": manifest, ".gitignore": ".nebula-build/\n", **(files or {})})
        assert git(root, "init", "-q", "-b", "main").returncode == 0
        git(root, "config", "user.email", "a@b")
        git(root, "config", "user.name", "a")
        assert run_cli("apply", "-q").code == 0
        commit(root, "base")
        return root

    return make


def branch_and_merge(root: Path, run_cli, theirs: str, ours: str) -> None:
    """On `feat`, the manifest `theirs` applied and committed; back on `main`, `ours`;
    then `git merge feat`, which must leave images.lock in conflict."""
    assert git(root, "checkout", "-qb", "feat").returncode == 0
    (root / "images.toml").write_text(theirs, encoding="utf-8")
    assert run_cli("apply", "-q").code == 0
    commit(root, "theirs")
    assert git(root, "checkout", "-q", "main").returncode == 0
    (root / "images.toml").write_text(ours, encoding="utf-8")
    assert run_cli("apply", "-q").code == 0
    commit(root, "ours")
    merged = git(root, "merge", "feat")
    assert merged.returncode == 1, merged.stdout
    assert "CONFLICT (content): Merge conflict in images.lock" in merged.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finish_merge(root: Path, run_cli, *options: str) -> tuple[dict, str]:
    """`apply` (and its output), then `git add` and commit: the lock read back has no
    markers."""
    applied = run_cli("apply", *options)
    assert applied.code == 0, applied.err
    assert "images.lock had merge conflicts" in applied.err  # and has them no more
    text = (root / "images.lock").read_text(encoding="utf-8")
    assert "<<<<<<<" not in text and ">>>>>>>" not in text
    if (root / ".git/MERGE_HEAD").exists():
        # the command the note gives is all the merge needs: it named the lock alone,
        # and `git commit` refused the files both sides had made
        add = re.search(r"wrote it resolved; git add (.+) to finish the merge\n", applied.err)
        assert add is not None, applied.err
        assert git(root, "add", "--", *shlex.split(add[1])).returncode == 0
        done = git(root, "commit", "--no-edit", "-q")
        assert done.returncode == 0, done.stdout + done.stderr
    else:  # markers written without a merge, as a pull request can commit them
        assert "wrote it resolved; no merge is under way, so they were committed: " in applied.err
        commit(root, "merge")
    again = run_cli("plan")
    assert again.code == 0 and again.err == "", again.err
    return loads(text), applied.out


def test_a_lock_still_in_conflict_is_said_so_by_plan_and_status(repo, run_cli):
    root = repo()
    branch_and_merge(root, run_cli, theirs=BASE + CAT, ours=BASE + DOG)
    (root / "images.toml").write_text(BASE + DOG + CAT, encoding="utf-8")
    planned = run_cli("plan", "--detailed-exitcode")
    assert (planned.code, planned.out) == (2, STILL_MERGED)
    assert run_cli("plan", "--markdown", "plan.md").code == 0
    summary = (root / "plan.md").read_text(encoding="utf-8")
    assert "No changes to the images: 3 images up to date.\n" in summary
    assert "\n**Lock:** images.lock still has git's conflict markers: leave them to " in summary
    status = run_cli("status")
    assert status.code == 0
    assert status.out.endswith(
        "\nStatus: 3 images up to date.\n" + STILL_MERGED.split("\n")[1] + "\n"
    )
    (root / "images.toml").write_text(BASE + DOG + CAT + COW, encoding="utf-8")
    planned = run_cli("plan")
    # the summary and its cost together, then the lock's line, as status ends with it
    assert planned.out.endswith(
        "Plan: 1 to generate, 0 to delete, 3 up to date.\n"
        "Generations: 1 on preview (1 × black-forest-labs/FLUX.1-schnell, free).\n"
        + STILL_MERGED.split("\n")[1]
        + "\n"
    ), planned.out
    (root / "images.toml").write_text(BASE + DOG + CAT, encoding="utf-8")
    finish_merge(root, run_cli)
    assert run_cli("plan").out == "No changes: 3 images up to date.\n"


@pytest.mark.parametrize("style", ["merge", "diff3", "zdiff3"])
def test_both_sides_add_images(repo, run_cli, style):
    root = repo()
    git(root, "config", "merge.conflictStyle", style)
    branch_and_merge(root, run_cli, theirs=BASE + CAT, ours=BASE + DOG)
    lock_text = (root / "images.lock").read_text(encoding="utf-8")
    assert ("|||||||" in lock_text) is (style != "merge")
    (root / "images.toml").write_text(BASE + DOG + CAT, encoding="utf-8")

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert planned.err == MERGED_NOTE
    assert STILL_MERGED in planned.out
    status = run_cli("status")
    assert status.err == MERGED_NOTE and "a     up to date" in status.out
    data = json.loads(run_cli("plan", "--json").out)
    assert data["lock_merge"] == {
        "lock": "images.lock",
        "ours": 2,
        "theirs": 2,
        "contested": [],
        "dropped": [],
        "message": MERGED_NOTE.removeprefix("note: ").strip(),
    }
    # apply would change a committed file: pending, for CI
    assert run_cli("plan", "--detailed-exitcode").code == 2
    assert run_cli("status", "--detailed-exitcode").code == 2
    assert (root / "images.lock").read_text(encoding="utf-8") == lock_text  # plan writes nothing

    entries, _ = finish_merge(root, run_cli)
    assert sorted(entries) == ["a", "b", "hero"]
    for name in entries:
        assert entries[name].digest == sha256(root / entries[name].output)
    assert json.loads(run_cli("plan", "--json").out)["lock_merge"] is None
    assert run_cli("plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(
    ("manifest", "working_tree", "action"),
    [
        ("ours", "ours", "noop"),  # git leaves ours of a binary file
        ("theirs", "ours", "regenerate"),  # from the cache: no generation
        ("theirs", "theirs", "noop"),  # `git checkout --theirs images/hero.png`
        ("theirs", None, "restore"),  # no file: the entry the manifest's keys name
    ],
)
def test_both_sides_changed_the_same_image(repo, run_cli, manifest, working_tree, action):
    """The PNG conflicts too. The entry kept is the one that made the file on disk,
    whichever prompt the merged manifest keeps: never "changed by hand"; with no file,
    the one the manifest declares."""
    root = repo()
    branch_and_merge(root, run_cli, theirs=BLUE, ours=RED)
    hero = root / "images/hero.png"
    if working_tree == "theirs":
        assert git(root, "checkout", "--theirs", "images/hero.png").returncode == 0
    elif working_tree is None:
        hero.unlink()
    (root / "images.toml").write_text(RED if manifest == "ours" else BLUE, encoding="utf-8")

    planned = run_cli("plan", "--json")
    assert planned.code == 0, planned.err
    data = json.loads(planned.out)
    assert data["lock_merge"]["contested"] == ["hero"]
    assert "(1 + 1 entries)" in data["lock_merge"]["message"]
    assert [(a["image"], a["action"]) for a in data["actions"]] == [("hero", action)]
    history = run_cli("history", "hero", "--json")
    assert history.code == 0 and "images.lock has git's conflict markers" in history.err
    assert json.loads(history.out)["output"] == "images/hero.png"

    entries, applied = finish_merge(root, run_cli, "--json")
    assert json.loads(applied)["generated"] == 0
    assert (
        entries["hero"].params["prompt"]
        == f"a {'red' if manifest == 'ours' else 'blue'} lighthouse"
    )
    assert entries["hero"].digest == sha256(hero)


def test_the_note_names_no_unmerged_file_of_the_projects_own(repo, run_cli):
    """A review found: a file of the project's own still in conflict was named in the
    `git add` to run, which would have committed its conflict markers."""
    root = repo(files={"app.cfg": "config = 1\n"})
    assert git(root, "checkout", "-qb", "feat").returncode == 0
    (root / "images.toml").write_text(BASE + CAT, encoding="utf-8")
    (root / "app.cfg").write_text("config = 2\n")
    assert run_cli("apply", "-q").code == 0
    commit(root, "theirs")
    assert git(root, "checkout", "-q", "main").returncode == 0
    (root / "images.toml").write_text(BASE + DOG, encoding="utf-8")
    (root / "app.cfg").write_text("config = 3\n")
    assert run_cli("apply", "-q").code == 0
    commit(root, "ours")
    assert git(root, "merge", "feat").returncode == 1
    assert "<<<<<<<" in (root / "app.cfg").read_text()
    (root / "images.toml").write_text(BASE + CAT + DOG, encoding="utf-8")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (
        f"note: {RESOLVED}; git add images.lock images.toml (app.cfg still has conflict "
        "markers: resolve and add it too) to finish the merge\n"
    ) in err


def test_a_merge_without_the_cache_says_git_holds_the_other_sides_file(repo, run_cli):
    """A teammate's checkout (no cache of theirs) merging a branch whose prompt the
    manifest keeps: the plan paid to generate again the image git held, and nothing
    said `git checkout --theirs`."""
    root = repo()
    branch_and_merge(root, run_cli, theirs=BLUE, ours=RED)
    shutil.rmtree(root / ".nebula-build/cache")
    (root / "images.toml").write_text(BLUE, encoding="utf-8")
    planned = run_cli("plan")
    assert "Plan: 1 to generate" in planned.out, planned.out
    command = "git checkout --theirs -- images/hero.png"
    assert (
        "note: images.lock: hero: git holds the file theirs made of the output the manifest "
        f"declares: `{command}` before apply, and it is not generated again\n"
    ) in planned.err
    assert git(root, *command.split()[1:]).returncode == 0
    assert "No changes to the images" in run_cli("plan").out
    entries, applied = finish_merge(root, run_cli, "--json")
    assert json.loads(applied)["generated"] == 0
    assert entries["hero"].params["prompt"] == "a blue lighthouse"


def test_both_sides_picked_another_draw_says_which_pick_was_dropped(repo, run_cli):
    """Each branch picked its own draw: the merge keeps one, and says which image lost
    which pick, and the `pick` that brings it back."""
    three = BASE.replace("seed = 1\n", "seed = 1\ncandidates = 3\n")
    root = repo(three)
    assert git(root, "checkout", "-qb", "feat").returncode == 0
    assert run_cli("pick", "hero", "1").code == 0
    theirs = sha256(root / "images/hero.png")
    commit(root, "theirs")
    assert git(root, "checkout", "-q", "main").returncode == 0
    assert run_cli("pick", "hero", "2").code == 0
    commit(root, "ours")
    assert git(root, "merge", "feat").returncode == 1

    dropped = (
        "note: images.lock: hero: the merge kept ours (draw 2), not theirs (draw 1): "
        "`nebula-build pick hero 1` brings theirs back\n"
    )
    planned = run_cli("plan", "--json")
    assert planned.code == 0, planned.err
    assert planned.err.endswith(dropped), planned.err
    assert json.loads(planned.out)["lock_merge"]["dropped"] == [
        {
            "image": "hero",
            "side": "theirs",
            "output": "draw 1",
            "command": "nebula-build pick hero 1",
        }
    ]
    finish_merge(root, run_cli)
    assert run_cli("pick", "hero", "1").code == 0
    assert sha256(root / "images/hero.png") == theirs


def test_the_output_of_the_side_not_kept_stays_in_the_history(repo, run_cli):
    """Both branches changed the prompt: the one kept is the output, the other's is its
    first earlier generation, which gc keeps and `pick --pin` brings back for free."""
    root = repo()
    branch_and_merge(root, run_cli, theirs=BLUE, ours=RED)
    (root / "images.toml").write_text(RED, encoding="utf-8")
    planned = run_cli("plan")
    assert planned.err.endswith("`nebula-build pick --pin hero @1` brings theirs back\n"), (
        planned.err
    )
    finish_merge(root, run_cli)
    history = json.loads(run_cli("history", "hero", "--json").out)
    assert history["generations"][1]["changes"]["prompt"]["then"] == "a blue lighthouse"
    assert run_cli("gc").code == 0
    picked = run_cli("pick", "--pin", "hero", "@1")
    assert picked.code == 0, picked.err
    assert "a blue lighthouse" in run_cli("inspect", "images/hero.png").out


SHEET = """
[atlases.{name}]
images = ["{image}"]
output = "sheets/{name}.png"
"""


def test_atlas_records_on_both_sides(repo, run_cli):
    root = repo()
    branch_and_merge(
        root,
        run_cli,
        theirs=BASE + CAT + SHEET.format(name="cats", image="a"),
        ours=BASE + DOG + SHEET.format(name="dogs", image="b"),
    )
    head = (root / "images.lock").read_text(encoding="utf-8").partition("[images.")[0]
    assert "<<<<<<<" in head and "[atlases." in head
    manifest = BASE + DOG + CAT + SHEET.format(name="dogs", image="b")
    (root / "images.toml").write_text(manifest + SHEET.format(name="cats", image="a"), "utf-8")

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert STILL_MERGED in planned.out, planned.out

    finish_merge(root, run_cli)
    lock = (root / "images.lock").read_text(encoding="utf-8")
    assert "[atlases.cats]" in lock and "[atlases.dogs]" in lock
    # the other branch's sheet is the lock's: dropping its atlas removes it
    (root / "images.toml").write_text(manifest, encoding="utf-8")
    assert "sheets/cats.png" in run_cli("plan").out
    assert run_cli("apply", "-q").code == 0
    assert not (root / "sheets/cats.png").exists() and (root / "sheets/dogs.png").exists()


def test_both_sides_rebuilt_the_same_atlas(repo, run_cli):
    """Each branch changed hero, so each rebuilt the atlas of it. The user checked out
    "theirs" of the files and dropped the atlas: its files on disk are those theirs
    records, so they go, rather than stay as "changed by hand"."""
    sheet = SHEET.format(name="heroes", image="hero")
    root = repo(BASE + sheet)
    branch_and_merge(root, run_cli, theirs=BLUE + sheet, ours=RED + sheet)
    for path in ("images/hero.png", "sheets/heroes.png", "sheets/heroes.json"):
        assert git(root, "checkout", "--theirs", path).returncode == 0
    (root / "images.toml").write_text(BLUE, encoding="utf-8")

    planned = run_cli("plan", "--json")
    assert planned.code == 0, planned.err
    data = json.loads(planned.out)
    assert [(a["image"], a["action"]) for a in data["actions"]] == [("hero", "noop")]
    [atlas] = data["files"]
    assert (atlas["atlas"], atlas["action"]) == ("heroes", "delete")
    assert sorted(atlas["removes"]) == ["sheets/heroes.json", "sheets/heroes.png"], atlas

    finish_merge(root, run_cli)
    assert not (root / "sheets/heroes.png").exists()
    assert "[atlases." not in (root / "images.lock").read_text(encoding="utf-8")


def entry_table(lock: str, name: str) -> str:
    """The text of one image's table in a lock."""
    start = lock.index(f"\n[images.{name}]\n")
    end = lock.find("\n[", start + 1)
    return lock[start : end if end >= 0 else len(lock)]


def test_a_conflicted_lock_makes_apply_remove_nothing_the_plan_does_not_name(repo, run_cli):
    """Crafted sides (a pull request can commit markers): "theirs" records hero's
    output under another name, and hero itself at a file of the user's with that file's
    digest. Both are kept as files; what the plan names is all apply does."""
    root = repo(files={"notes/keep.png": b"the user's own file"})
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero")
    ghost = hero.replace("[images.hero]", "[images.ghost]")
    moved = hero.replace('"images/hero.png"', '"notes/keep.png"').replace(
        sha256(root / "images/hero.png"), sha256(root / "notes/keep.png")
    )
    theirs = ghost + moved
    crafted = lock.replace(hero, f"\n<<<<<<< HEAD{hero}=======\n{theirs}>>>>>>> feat\n")
    (root / "images.lock").write_text(crafted, encoding="utf-8")
    files = {path: path.read_bytes() for path in root.rglob("*.png")}

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "(1 + 2 entries)" in planned.err
    assert "ghost  delete" in planned.out
    assert "images/hero.png now belongs to hero" in planned.out
    assert "keep.png" not in planned.out

    entries, _ = finish_merge(root, run_cli)
    assert {path: path.read_bytes() for path in root.rglob("*.png")} == files
    assert sorted(entries) == ["hero"] and entries["hero"].output == "images/hero.png"


@pytest.mark.parametrize("conflicted", [True, False], ids=["merge-conflict", "plain-lock"])
@pytest.mark.parametrize("prompt", ["a lighthouse", "a tall lighthouse"])
def test_a_lock_that_records_another_image_s_output_never_takes_it(
    repo, run_cli, conflicted, prompt
):
    """A pull request's lock (one side of a conflict, or the whole lock) records hero's
    output at images/a.png, image a's, with a's digest, and deletes hero's file. Apply
    had moved a's file to hero's path (or, hero's prompt edited, removed it as hero's
    old output) while the plan said a was up to date."""
    root = repo(BASE + CAT)
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero")
    stolen = hero.replace('"images/hero.png"', '"images/a.png"').replace(
        sha256(root / "images/hero.png"), sha256(root / "images/a.png")
    )
    crafted = f"\n<<<<<<< HEAD{hero}=======\n{stolen}>>>>>>> feat\n" if conflicted else stolen
    (root / "images.lock").write_text(lock.replace(hero, crafted), encoding="utf-8")
    (root / "images/hero.png").unlink()
    (root / "images.toml").write_text(
        (BASE + CAT).replace("a lighthouse", prompt), encoding="utf-8"
    )
    cat = (root / "images/a.png").read_bytes()

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "move" not in planned.out and "removes" not in planned.out
    assert "1 up to date" in planned.out
    applied = run_cli("apply")
    assert applied.code == 0, applied.err
    assert (root / "images/a.png").read_bytes() == cat
    assert (root / "images/hero.png").read_bytes() != cat
    again = run_cli("plan")
    assert again.code == 0 and "No changes: 2 images up to date." in again.out


def test_each_side_is_checked_as_a_whole_lock(repo, run_cli):
    root = repo()
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero")
    outside = hero.replace("[images.hero]", "[images.evil]").replace(
        '"images/hero.png"', '"../outside.png"'
    )
    crafted = lock.replace(hero, f"\n<<<<<<< HEAD{hero}=======\n{hero}{outside}>>>>>>> feat\n")
    (root / "images.lock").write_text(crafted, encoding="utf-8")

    code, out, err = run_cli("apply")
    assert code == 1 and out == ""
    assert err.startswith("error: images.lock (theirs): images.evil: `output` '../outside.png'")
    assert err.count("\n") == 1
    assert (root / "images.lock").read_text(encoding="utf-8") == crafted


@pytest.mark.parametrize(
    ("markers", "line", "problem"),
    [
        ("<<<<<<< HEAD\n{hero}", 5, "the conflict opened here has no `>>>>>>>`"),
        ("<<<<<<< HEAD\n<<<<<<< HEAD\n{hero}=======\n>>>>>>> feat\n", 6, "a conflict opens"),
        ("{hero}=======\n{hero}>>>>>>> feat\n", 13, "`=======` outside a conflict"),
        ("<<<<<<< HEAD\n{hero}>>>>>>> feat\n", 14, "`>>>>>>>` without `=======` before it"),
    ],
)
def test_unbalanced_markers_are_one_line(repo, run_cli, markers, line, problem):
    root = repo()
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero").lstrip("\n")
    (root / "images.lock").write_text(lock.replace(hero, markers.format(hero=hero)), "utf-8")

    for command in ("plan", "status", "apply"):
        code, out, err = run_cli(command)
        assert code == 1 and out == ""
        assert err.startswith(f"error: images.lock:{line}: {problem}"), err
        assert err.count("\n") == 1


def test_the_no_op_fast_path_does_not_answer_for_a_conflicted_lock(repo, run_cli, monkeypatch):
    """A plan with nothing to do keeps a snapshot that answers the next plan and apply
    from stats alone: never for a lock with conflicts, which apply must write."""
    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # no waiting for the racy window
    root = repo()
    assert run_cli("plan").out.startswith("No changes")  # the snapshot
    branch_and_merge(root, run_cli, theirs=BASE + CAT, ours=BASE + DOG)
    (root / "images.toml").write_text(BASE + DOG + CAT, encoding="utf-8")

    for _ in range(2):
        planned = run_cli("plan")
        assert planned.code == 0 and planned.err == MERGED_NOTE
        assert not (root / ".nebula-build/noop").exists()
    assert run_cli("status").err == MERGED_NOTE
    finish_merge(root, run_cli)
    assert run_cli("plan").out.startswith("No changes")
    assert (root / ".nebula-build/noop").exists()


def test_gc_waits_for_the_merge(repo, run_cli):
    """The side not kept for an image would lose its cache entry: gc is refused until
    apply has written the lock resolved."""
    root = repo()
    ours, theirs = RED, BLUE
    branch_and_merge(root, run_cli, theirs=theirs, ours=ours)
    (root / "images.toml").write_text(ours, encoding="utf-8")
    cache = sorted((root / ".nebula-build/cache").rglob("*"))

    code, out, err = run_cli("gc")
    assert (code, out) == (1, "")
    assert err == (
        "error: gc: images.lock has merge conflicts; run `nebula-build apply` to write it "
        "resolved (then git add images.lock), then gc again\n"
    )
    assert sorted((root / ".nebula-build/cache").rglob("*")) == cache
    finish_merge(root, run_cli)
    assert run_cli("gc").code == 0


def test_a_manifest_left_in_conflict_is_one_line(repo, run_cli):
    root = repo()
    branch_and_merge(root, run_cli, theirs=BASE + CAT, ours=BASE + DOG)
    line = (root / "images.toml").read_text(encoding="utf-8").splitlines().index("<<<<<<< HEAD")

    for command in ("plan", "apply", "validate"):
        code, out, err = run_cli(command)
        assert (code, out) == (1, "")
        assert err == (
            f"error: images.toml:{line + 1}: unresolved merge conflict (<<<<<<< HEAD); "
            "resolve it, then run again\n"
        )


def test_a_killed_apply_s_journal_waits_for_the_merge_to_be_settled(repo, run_cli):
    """A journal left by a killed apply beside a conflicted lock: plan folds it in
    without writing the lock, the contested image is still settled by the file on
    disk, and apply writes the lock resolved and empties the journal."""
    root = repo()
    branch_and_merge(root, run_cli, theirs=BLUE, ours=RED)
    assert git(root, "checkout", "--theirs", "images/hero.png").returncode == 0
    (root / "images.toml").write_text(BLUE, encoding="utf-8")
    journal = root / ".nebula-build/journal"
    journal.write_text('{"op": "delete", "image": "gone"}\n', encoding="utf-8")
    lock_text = (root / "images.lock").read_text(encoding="utf-8")

    planned = run_cli("plan", "--json")
    assert planned.code == 0, planned.err
    assert "images.lock has git's conflict markers" in planned.err
    data = json.loads(planned.out)
    assert data["lock_merge"]["contested"] == ["hero"]
    assert [(a["image"], a["action"]) for a in data["actions"]] == [("hero", "noop")]
    assert (root / "images.lock").read_text(encoding="utf-8") == lock_text  # plan writes nothing

    entries, _ = finish_merge(root, run_cli)
    assert entries["hero"].params["prompt"] == "a blue lighthouse"
    assert not journal.exists()


def test_a_side_that_does_not_parse_names_the_lock_s_line(repo, run_cli):
    root = repo()
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero")
    broken = hero.replace('backend = "preview"', 'backend = = "preview"')
    crafted = lock.replace(hero, f"\n<<<<<<< HEAD{hero}=======\n{broken}>>>>>>> feat\n")
    (root / "images.lock").write_text(crafted, encoding="utf-8")
    line = crafted.splitlines().index('backend = = "preview"') + 1

    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: images.lock (theirs) is not valid TOML: line {line}, column 11: Invalid value;"
    ), err


def test_markers_of_git_s_conflict_marker_size(repo, run_cli):
    """`images.lock conflict-marker-size=9` in .gitattributes: git's markers are nine
    characters long, and are read as its seven-character ones are."""
    root = repo(files={".gitattributes": "images.lock conflict-marker-size=9\n"})
    branch_and_merge(root, run_cli, theirs=BASE + CAT, ours=BASE + DOG)
    assert "\n<<<<<<<<< HEAD\n" in (root / "images.lock").read_text(encoding="utf-8")
    (root / "images.toml").write_text(BASE + DOG + CAT, encoding="utf-8")

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert planned.err == MERGED_NOTE
    assert STILL_MERGED in planned.out
    entries, _ = finish_merge(root, run_cli)
    assert sorted(entries) == ["a", "b", "hero"]


def test_lines_are_split_where_git_splits_them(repo, run_cli):
    """A prompt may hold U+0085 or U+2028, which Python's splitlines takes for line
    breaks: git and TOML do not, so neither a marker nor a line number comes of it."""
    manifest = BASE.replace("a lighthouse", "a lighthouse\u0085=======\u2028>>>>>>> x")
    root = repo(manifest)
    lock = (root / "images.lock").read_text(encoding="utf-8")
    hero = entry_table(lock, "hero")
    ghost = hero.replace("[images.hero]", "[images.ghost]")
    (root / "images.lock").write_text(
        lock.replace(hero, f"\n<<<<<<< HEAD{hero}=======\n{hero}{ghost}>>>>>>> feat\n"), "utf-8"
    )
    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "(1 + 2 entries)" in planned.err
    assert "ghost  delete" in planned.out

    unclosed = lock.replace(hero, f"\n<<<<<<< HEAD{hero}")
    (root / "images.lock").write_text(unclosed, encoding="utf-8")
    line = unclosed.split("\n").index("<<<<<<< HEAD") + 1
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.startswith(f"error: images.lock:{line}: the conflict opened here has no"), err


def test_an_asset_manifest_git_merged_with_markers_is_built_again(repo, run_cli):
    assets = '[assets]\nmanifest = "images.json"\n\n'
    with_assets = BASE.replace("[images.hero]", assets + "[images.hero]")
    root = repo(with_assets)
    branch_and_merge(root, run_cli, theirs=with_assets + CAT, ours=with_assets + DOG)
    assert "<<<<<<<" in (root / "images.json").read_text(encoding="utf-8")
    (root / "images.toml").write_text(with_assets + DOG + CAT, encoding="utf-8")

    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    # had been a conflict, "a file nebula-build did not write is in the way", and
    # `apply` failed on it until --force
    assert "asset manifest  build  images.json" in planned.out
    assert (
        "git left merge conflict markers in it\n      the current file is backed up" in planned.out
    )
    said = planned.out.replace("merge conflict markers", "").replace("git's conflict markers", "")
    assert "conflict" not in said
    assert "Lock: images.lock still has git's conflict markers" in planned.out
    finish_merge(root, run_cli)
    listed = json.loads((root / "images.json").read_text(encoding="utf-8"))["images"]
    assert sorted(listed) == ["a", "b", "hero"]
    # a side may hold a hand edit (a review found one lost): the merged file is copied
    [kept] = (root / ".nebula-build/backup").glob("*/images.json")
    assert "<<<<<<<" in kept.read_text(encoding="utf-8")


# What apply says to do with a lock it wrote resolved: `git add` it where a merge is
# under way, commit it where the markers were committed (a CI runner's checkout), and
# nothing of git outside a checkout.

RESOLVED = "images.lock had merge conflicts: read both sides (2 + 2 entries) and wrote it resolved"


@pytest.fixture
def committed(repo, run_cli) -> Path:
    """A checkout of a commit whose images.lock holds git's conflict markers: no merge
    is under way, as on the runner that checks it out."""
    root = repo()
    branch_and_merge(root, run_cli, BASE + CAT, BASE + DOG)
    (root / "images.toml").write_text(BASE + CAT + DOG, encoding="utf-8")
    commit(root, "merged, markers and all")
    assert not (root / ".git/MERGE_HEAD").exists()
    assert "<<<<<<<" in (root / "images.lock").read_text(encoding="utf-8")
    return root


def test_a_lock_committed_with_markers_is_to_be_committed_not_added(
    committed, run_cli, monkeypatch
):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = run_cli("apply")
    assert code == 0, err
    said = f"{RESOLVED}; no merge is under way, so they were committed: commit images.lock"
    assert f"note: {said}\n" in err
    assert f"::notice::{said}\n" in out
    assert "git add" not in out + err
    assert "<<<<<<<" not in (committed / "images.lock").read_text(encoding="utf-8")


def test_a_lock_resolved_during_a_rebase_says_to_continue_it(committed, run_cli):
    (committed / ".git/rebase-merge").mkdir()  # as `git rebase` leaves it on a conflict
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert f"note: {RESOLVED}; git add images.lock, then git rebase --continue\n" in err


def test_outside_a_git_checkout_the_lock_is_said_resolved_alone(committed, run_cli):
    shutil.rmtree(committed / ".git")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert f"note: {RESOLVED}\n" in err


def test_a_merge_under_way_in_a_linked_worktree_is_found(repo, run_cli, tmp_path):
    """A worktree's `.git` is a file naming its git folder, where MERGE_HEAD is."""
    root = repo()
    assert git(root, "checkout", "-qb", "feat").returncode == 0
    (root / "images.toml").write_text(BASE + CAT, encoding="utf-8")
    assert run_cli("apply", "-q").code == 0
    commit(root, "theirs")
    side = tmp_path / "side"
    assert git(root, "worktree", "add", "-q", "-b", "side", str(side), "main").returncode == 0
    assert (side / ".git").is_file()
    (side / "images.toml").write_text(BASE + DOG, encoding="utf-8")
    assert run_cli("apply", "-q", cwd=side).code == 0
    commit(side, "ours")
    assert git(side, "merge", "feat").returncode == 1
    (side / "images.toml").write_text(BASE + CAT + DOG, encoding="utf-8")
    code, _, err = run_cli("apply", cwd=side)
    assert code == 0, err
    assert f"note: {RESOLVED}; git add images.lock images.toml to finish the merge\n" in err


# plan, status and gc say the same: what is left once apply has written the lock
# resolved fits what git is in the middle of.

UNWRITTEN = "images.lock has git's conflict markers: read both sides (2 + 2 entries); "
STILL = (
    "Lock: images.lock still has git's conflict markers: leave them to `nebula-build apply`, "
    "which writes it resolved from both sides (2 + 2 entries)"
)
GC_REFUSED = (
    "error: gc: images.lock has merge conflicts; run `nebula-build apply` to write it resolved"
)


def said_before_apply(root: Path, run_cli) -> tuple[str, str, str, str, str]:
    """What plan (its note, its summary line, its --json message and its Markdown),
    status and gc say of the lock, all in one string each."""
    planned = run_cli("plan", "--markdown", "plan.md")
    assert planned.code == 0, planned.err
    markdown = (root / "plan.md").read_text(encoding="utf-8")
    as_json = run_cli("plan", "--json")
    assert as_json.code == 0, as_json.err
    message = json.loads(as_json.out)["lock_merge"]["message"]
    status = run_cli("status")
    assert status.code == 0, status.err
    gc = run_cli("gc")
    assert gc.code == 1
    return planned.err + planned.out, markdown, message, status.err + status.out, gc.err


def test_plan_and_status_say_to_commit_a_lock_committed_with_markers(committed, run_cli):
    plan, markdown, message, status, gc = said_before_apply(committed, run_cli)
    then = "commit images.lock (no merge is under way: the markers were committed)"
    assert f"note: {UNWRITTEN}apply writes it resolved, then {then}\n" in plan
    assert f"{STILL}; then {then}.\n" in plan
    assert f"(2 + 2 entries); then {then}.\n" in markdown
    assert f"- {UNWRITTEN}apply writes it resolved, then {then}\n" in markdown
    assert message == f"{UNWRITTEN}apply writes it resolved, then {then}"
    assert f"{STILL}; then {then}.\n" in status
    assert gc == f"{GC_REFUSED} (then {then}), then gc again\n"
    assert "git add" not in plan + markdown + message + status + gc


def test_plan_and_status_say_to_continue_a_rebase(committed, run_cli):
    (committed / ".git/rebase-merge").mkdir()
    plan, markdown, message, status, gc = said_before_apply(committed, run_cli)
    then = "git add images.lock and git rebase --continue"
    assert f"note: {UNWRITTEN}apply writes it resolved, then {then}\n" in plan
    assert f"{STILL}; then {then}.\n" in plan
    assert message == f"{UNWRITTEN}apply writes it resolved, then {then}"
    assert f"{STILL}; then {then}.\n" in status
    assert gc == f"{GC_REFUSED} (then {then}), then gc again\n"


def test_outside_a_git_checkout_plan_and_status_say_nothing_of_git(committed, run_cli):
    shutil.rmtree(committed / ".git")
    plan, markdown, message, status, gc = said_before_apply(committed, run_cli)
    assert f"note: {UNWRITTEN}apply writes it resolved\n" in plan
    assert f"{STILL}.\n" in plan
    assert message == f"{UNWRITTEN}apply writes it resolved"
    assert f"{STILL}.\n" in status
    assert gc == f"{GC_REFUSED}, then gc again\n"
    assert "git" not in (plan + markdown + message + status + gc).replace("git's", "")


PAIR = BASE + CAT + DOG
PAIR_SHEET = """
[atlases.pets]
images = ["a", "b"]
output = "sheets/pets.png"
godot = "sheets/pets.tres"
"""


@pytest.mark.parametrize("spaced", [False, True], ids=["a-member", "padding"])
def test_a_merge_of_two_rebuilds_of_an_atlas_is_built_again_without_force(repo, run_cli, spaced):
    """A CI walkthrough found: each branch rebuilt the atlas (one for a member, the
    other for a member or its padding); git left markers in its frame map (and its
    Godot export, laid out anew with the padding; its sheet as ours), and apply refused
    them as "not written by nebula-build" until --force, which also overrides the
    protection of real hand edits."""
    root = repo(PAIR + PAIR_SHEET)
    theirs = PAIR.replace("a cat", "a black cat") + PAIR_SHEET
    if spaced:
        theirs = PAIR + PAIR_SHEET + "padding = 6\n"
    ours = PAIR.replace("a dog", "a brown dog") + PAIR_SHEET
    branch_and_merge(root, run_cli, theirs=theirs, ours=ours)
    assert "<<<<<<<" in (root / "sheets/pets.json").read_text(encoding="utf-8")

    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "~ atlas pets  build  sheets/pets.png" in out, out
    assert "! atlas" not in out and "--force" not in out
    finish_merge(root, run_cli)
    for path in ("sheets/pets.json", "sheets/pets.tres"):
        assert "<<<<<<<" not in (root / path).read_text(encoding="utf-8")
    assert "Status: 3 images up to date, 1 atlas up to date." in run_cli("status").out


def test_a_merged_frame_map_whose_sheet_was_edited_stays_a_conflict(repo, run_cli):
    root = repo(PAIR + PAIR_SHEET)
    branch_and_merge(
        root,
        run_cli,
        theirs=PAIR.replace("a cat", "a black cat") + PAIR_SHEET,
        ours=PAIR.replace("a dog", "a brown dog") + PAIR_SHEET,
    )
    sheet = root / "sheets/pets.png"
    sheet.write_bytes(sheet.read_bytes() + b"\0")
    code, out, err = run_cli("plan")
    assert "! atlas pets  conflict  sheets/pets.png" in out, out


def test_a_frame_map_committed_with_markers_and_odd_values_is_no_traceback(repo, run_cli):
    """A review found a list where a side records an export's digest ended plan,
    status and apply in a traceback."""
    root = repo(PAIR + PAIR_SHEET)
    frames = root / "sheets/pets.json"
    record = json.loads(frames.read_text(encoding="utf-8"))
    record["meta"]["nebula_build"]["export:sheets/pets.tres"] = ["x"]
    side = json.dumps(record, indent=2) + "\n"
    frames.write_text(f"<<<<<<< HEAD\n{side}=======\n{side}>>>>>>> feat\n", encoding="utf-8")
    for command in ("plan", "status"):
        code, out, err = run_cli(command)
        assert "Traceback" not in err and code in (0, 1), err
        assert "atlas pets" in out
