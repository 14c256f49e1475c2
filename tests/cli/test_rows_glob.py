"""Posts in subfolders (`rows = { files = "content/**/*.md" }`): wildcards in any part
of the pattern, `**` for any depth, Hugo's page bundles, through the CLI on the
offline preview backend. The pattern comes from the manifest, which a pull request
may change: it never leaves the project, follows a link or reads the tool's state,
and its walk is bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import nebula_manifest


def post(title: str) -> str:
    return f"---\ntitle: {title}\n---\nThe text of {title}.\n"


def manifest(files: str, **more: object) -> str:
    cover = {"rows": {"files": files}, "prompt": "cover for {title}", "output": "img/{slug}.png"}
    text = nebula_manifest({"cover": {**cover, **more}})
    return text.replace('backend = "nebula"', 'backend = "preview"', 1)


def planned(run_cli) -> dict[str, str]:
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


def paths(run_cli) -> list[str]:
    """The posts the images come from, in the order of the plan."""
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return [a["image"] for a in json.loads(out)["actions"]]


def test_double_star_reads_posts_at_any_depth_including_none(project, run_cli):
    project(
        {
            "images.toml": manifest("content/**/*.md"),
            "content/top.md": post("Top"),  # `**` matching no folder
            "content/2025/spring.md": post("Spring"),
            "content/2026/06/june.md": post("June"),
            "content/2026/06/notes.txt": "not a post",
            "content/.drafts/secret.md": post("Secret"),  # a hidden folder: skipped
            "other/elsewhere.md": post("Elsewhere"),
        }
    )
    # sorted by path, every time
    assert paths(run_cli) == ["cover[spring]", "cover[june]", "cover[top]"]
    assert paths(run_cli) == ["cover[spring]", "cover[june]", "cover[top]"]
    code, out, _ = run_cli("plan")
    assert code == 0 and "cover[june]  create  img/june.png" in out


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("content/*/*.md", ["cover[spring]"]),
        ("content/20?6/*/*.md", ["cover[june]"]),
        ("content/202[5]/*.md", ["cover[spring]"]),
        ("content/**/06/*.md", ["cover[june]"]),
        ("**/*.md", ["cover[spring]", "cover[june]", "cover[top]"]),
        ("*/2025/spring.md", ["cover[spring]"]),
    ],
)
def test_wildcards_work_in_every_folder_part(project, run_cli, pattern, expected):
    project(
        {
            "images.toml": manifest(pattern),
            "content/top.md": post("Top"),
            "content/2025/spring.md": post("Spring"),
            "content/2026/06/june.md": post("June"),
        }
    )
    assert paths(run_cli) == expected


def test_a_page_bundle_is_named_after_its_folder(project, run_cli):
    project(
        {
            "images.toml": manifest("content/posts/*/index.md"),
            "content/posts/hello-world/index.md": post("Hello"),
            "content/posts/hello-world/photo.md": post("Not the page"),
            "content/posts/renamed/index.md": "---\ntitle: R\nslug: chosen\n---\n",
            "content/posts/flat.md": post("Flat"),  # not a bundle: the pattern skips it
        }
    )
    assert paths(run_cli) == ["cover[hello-world]", "cover[chosen]"]
    (Path("images.toml")).write_text(manifest("content/**/_index.md"))
    Path("content/_index.md").write_text(post("Home"))
    Path("content/posts/_index.md").write_text(post("Posts"))
    assert paths(run_cli) == ["cover[_index]", "cover[posts]"]  # in the base: its own name


def test_an_index_post_right_in_a_plain_folder_keeps_its_name(project, run_cli):
    """`posts/*.md` named `posts/index.md` "index" before folders took wildcards; the
    bundle rule applies only below the pattern's first wildcard, so it still does."""
    project(
        {
            "images.toml": manifest("posts/*.md"),
            "posts/index.md": post("Blog"),
            "posts/hello.md": post("Hello"),
        }
    )
    assert sorted(paths(run_cli)) == ["cover[hello]", "cover[index]"]


def test_two_posts_with_one_slug_are_one_clear_line(project, run_cli):
    root = project(
        {
            "images.toml": manifest("content/**/*.md"),
            "content/2025/hello.md": post("Old"),
            "content/2026/hello/index.md": post("New"),
        }
    )
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.count("\n") == 1, err
    assert (
        "error: content/2026/hello/index.md:1: images.cover: id 'hello' is also the id of the "
        "row at content/2025/hello.md (set `slug` in one's front matter" in err
    )
    (root / "content/2026/hello/index.md").write_text("---\ntitle: New\nslug: hello-again\n---\n")
    assert planned(run_cli) == {"cover[hello]": "create", "cover[hello-again]": "create"}


def test_links_are_never_followed(project, run_cli, tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "stolen.md").write_text(post("Stolen"))
    (outside / "deep/stolen-too.md").write_text(post("Stolen too"))
    root = project(
        {
            "images.toml": manifest("content/**/*.md"),
            "content/mine.md": post("Mine"),
            "elsewhere/inside.md": post("Inside"),
        }
    )
    (root / "content/out").symlink_to(outside)  # a folder outside the project
    (root / "content/in").symlink_to(root / "elsewhere")  # and one inside it
    (root / "content/2026").mkdir()
    (root / "content/2026/link.md").symlink_to(outside / "stolen.md")  # a file
    assert paths(run_cli) == ["cover[mine]"]
    (root / "images.toml").write_text(manifest("content/*/*.md"))
    code, out, err = run_cli("plan")
    assert "Stolen" not in out + err and "Inside" not in out


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("../*.md", "images.cover.rows: '../*.md' leaves the project (`..`)"),
        ("content/*/../../*.md", "'content/*/../../*.md' leaves the project (`..`)"),
        ("/etc/*.md", "is absolute; paths are relative to the project folder"),
        (".nebula-build/**/*.md", "is inside .nebula-build/, which belongs to the tool"),
        ("content/.nebula-build/*.md", "is inside .nebula-build/, which belongs to the tool"),
        ("content/a**/*.md", "`**` stands for any number of folders, so it is a whole part"),
        ("content/**", "ends in `**`: its last part names the files (content/**/*.md)"),
    ],
)
def test_a_pattern_that_escapes_is_one_clear_line(project, run_cli, pattern, message):
    root = project({"images.toml": manifest(pattern), "content/a.md": post("A")})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith("error: images.toml:")
    assert "images.cover.rows: " in err and message in err, err
    assert not (root / "images.lock").exists()


def test_the_tools_own_state_is_never_read(project, run_cli, monkeypatch):
    from nebula_build.state import guard

    root = project({"images.toml": manifest("**/*.md"), "content/a.md": post("A")})
    assert run_cli("apply").code == 0
    (root / ".nebula-build/planted.md").write_text(post("Planted"))
    (root / ".git").mkdir()
    (root / ".git/planted.md").write_text(post("Planted"))
    listed: list[str] = []
    real = guard.Guard.listing

    def listing(self, folder, below=(), *, limit):
        listed.append("/".join([folder, *below]))
        return real(self, folder, below, limit=limit)

    monkeypatch.setattr(guard.Guard, "listing", listing)
    assert planned(run_cli) == {"cover[a]": "noop"}
    assert listed and not any(".nebula-build" in f or ".git" in f for f in listed), listed


def test_a_post_in_a_new_subfolder_is_seen_by_the_next_plan(project, run_cli, monkeypatch):
    from nebula_build.engine import noop

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    root = project(
        {
            "images.toml": manifest("content/**/*.md"),
            "content/2025/a.md": post("A"),
            "content/2026/empty-for-now.txt": "",
        }
    )

    def quiet() -> None:
        assert run_cli("plan").out.startswith("No changes")
        assert run_cli("plan").out.startswith("No changes")  # from the snapshot
        assert (root / noop.SNAPSHOT).exists()

    assert run_cli("apply").code == 0
    quiet()
    (root / "content/2027/spring").mkdir(parents=True)  # a new subfolder, two deep
    (root / "content/2027/spring/b.md").write_text(post("B"))
    assert "cover[b]  create" in run_cli("plan").out
    assert run_cli("apply").code == 0
    quiet()
    (root / "content/2026/c.md").write_text(post("C"))  # a folder that held no post
    assert "cover[c]  create" in run_cli("plan").out
    assert run_cli("apply").code == 0
    quiet()
    (root / "content/2027/spring/b.md").rename(root / "content/2027/spring/b2.md")
    assert {"cover[b]": "delete", "cover[b2]": "create"}.items() <= planned(run_cli).items()
    (root / "content/2027/spring/b2.md").rename(root / "content/2027/spring/b.md")
    quiet()
    os.rename(root / "content/2027", root / "content/.2027")  # now hidden: skipped
    assert planned(run_cli).get("cover[b]") == "delete"


def test_the_spec_cache_sees_a_post_in_a_new_subfolder(project, run_cli, monkeypatch):
    from nebula_build.engine import prepare as preparing

    root = project({"images.toml": manifest("content/**/*.md"), "content/2025/a.md": post("A")})
    assert "cover[a]  create" in run_cli("plan").out
    resolved: list[int] = []
    real = preparing.resolve
    monkeypatch.setattr(preparing, "resolve", lambda *a, **k: resolved.append(1) or real(*a, **k))
    assert "cover[a]  create" in run_cli("plan").out
    assert resolved == []  # answered from the spec cache
    (root / "content/2026/06").mkdir(parents=True)
    assert "cover[a]  create" in run_cli("plan").out
    assert resolved == []  # an empty folder matches nothing new: still the cache
    (root / "content/2026/06/b.md").write_text(post("B"))
    out = run_cli("plan").out
    assert "cover[b]  create" in out
    assert resolved == [1]


def test_the_walk_is_bounded(project, run_cli, monkeypatch):
    from nebula_build.state import datafiles

    files = {"images.toml": manifest("content/**/*.md"), "content/a/b/c/d/x.md": post("X")}
    files |= {f"content/f{n}/y{n}.md": post(f"Y{n}") for n in range(4)}
    files["content/f0/z.md"] = post("Z")
    project(files)
    assert len(planned(run_cli)) == 6
    monkeypatch.setattr(datafiles, "MAX_GLOB_DEPTH", 3)
    code, _, err = run_cli("plan")
    assert code == 1 and err.count("\n") == 1, err
    assert (
        "images.cover.rows: cannot read content/**/*.md: the pattern reaches a folder more "
        "than 3 deep (content/a/b/c/d)" in err
    )
    monkeypatch.setattr(datafiles, "MAX_GLOB_DEPTH", 32)
    monkeypatch.setattr(datafiles, "MAX_GLOB_FOLDERS", 6)
    code, _, err = run_cli("plan")
    assert code == 1 and err.count("\n") == 1, err
    assert "images.cover.rows: cannot read content/**/*.md: the pattern walks more than 6" in err
    monkeypatch.setattr(datafiles, "MAX_GLOB_FOLDERS", 100)
    monkeypatch.setattr(datafiles, "MAX_FOLDER_FILES", 5)  # no folder holds more
    code, _, err = run_cli("plan")
    assert code == 1 and "cannot read content/**/*.md: the pattern matches more than 5" in err
    monkeypatch.setattr(datafiles, "MAX_FOLDER_FILES", 4)
    code, _, err = run_cli("plan")
    assert code == 1 and "folder 'content' holds more than 4 files" in err, err


def test_a_link_in_the_fixed_part_never_reaches_a_nested_checkouts_git(project, run_cli):
    """A pull request adds a link to a nested checkout's .git (where CI keeps a token)
    and a pattern through it: before, the config's text showed in plan's output."""
    leaky = manifest("content/*", prompt="cover {excerpt}", output="img/{excerpt}.png")
    root = project({"images.toml": leaky})
    git = root / "vendor/lib/.git"
    git.mkdir(parents=True)
    (git / "config").write_text("[http]\n\textraheader = AUTHORIZATION: basic SECRETTOKEN\n")
    (root / "content").symlink_to("vendor/lib/.git")
    code, out, err = run_cli("plan")
    assert code == 1 and "SECRETTOKEN" not in out + err
    assert ".git/" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_folder_name_that_is_not_text_is_skipped(project, run_cli):
    """Before: a traceback (surrogates in the canonical JSON of the spec)."""
    root = project(
        {"images.toml": manifest("content/*/index.md"), "content/ok/index.md": post("Ok")}
    )
    odd = os.path.join(os.fsencode(root / "content"), b"\xff")
    os.mkdir(odd)
    with open(os.path.join(odd, b"index.md"), "w") as file:
        file.write(post("Odd"))
    assert paths(run_cli) == ["cover[ok]"]


def test_two_stars_in_the_file_name_match_as_one_as_before(project, run_cli):
    project({"images.toml": manifest("posts/**.md"), "posts/a.md": post("A")})
    assert paths(run_cli) == ["cover[a]"]


@pytest.mark.parametrize("rows", ['"content/**/*.md"', '{ file = "content/**/*.md" }'])
def test_a_pattern_written_as_a_data_file_says_where_it_goes(project, run_cli, rows):
    """`rows = "content/**/*.md"`, the way a CSV's path is written, said that it was
    not a data file nebula-build reads, and not how to give a pattern of posts."""
    text = manifest("x").replace('rows = { files = "x" }', f"rows = {rows}")
    assert f"rows = {rows}" in text
    project({"images.toml": text, "content/a.md": post("A")})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err.endswith(
        "images.cover.rows: 'content/**/*.md' is a pattern: files that match one (posts "
        'with front matter) go in `rows = { files = "content/**/*.md" }`\n'
    ), err


def test_a_mistyped_folder_or_array_says_which_was_meant(project, run_cli):
    """`files = "content/post/*.md"` said only "folder not found", and `at =
    "data.recipe"` only "has no 'data.recipe'", where a missing CSV already named the
    file meant."""
    text = manifest("content/post/*.md") + (
        '\n[images.recipe]\nrows = { file = "data/export.json", at = "data.recipe" }\n'
        'id = "id"\nprompt = "{name}"\noutput = "img/r-{id}.png"\n'
    )
    export = json.dumps({"data": {"recipes": [{"id": "a", "name": "A"}]}})
    project({"images.toml": text, "content/posts/a.md": post("A"), "data/export.json": export})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0].endswith(
        "images.cover.rows: folder not found: content/post (where content/post/*.md "
        "starts); did you mean 'content/posts'?"
    ), err
    assert lines[1] == (
        "error: data/export.json: images.recipe: has no 'data.recipe' (from `at`); did you "
        "mean 'data.recipes'?"
    ), err


def test_a_folder_a_pattern_may_not_name_is_never_offered(project, run_cli):
    """`.gi/*.md` was offered `.git`, which a pattern may not name (an attacker's
    review)."""
    project({"images.toml": manifest(".gi/*.md"), ".git/HEAD": "ref: x\n"})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err.endswith("folder not found: .gi (where .gi/*.md starts)\n"), err
