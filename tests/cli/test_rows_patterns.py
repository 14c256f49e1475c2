"""Several patterns of posts in one declaration (`rows = { files = ["content/posts/*.md",
"content/posts/*/index.md"] }`), through the CLI on the offline preview backend: the
posts of every pattern, each file once, in the order of their paths; each pattern
under the rules one obeys alone, the limits counted over all of them together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import nebula_manifest

HUGO = ["content/posts/*.md", "content/posts/*/index.md"]


def post(title: str) -> str:
    return f"---\ntitle: {title}\n---\nThe text of {title}.\n"


def manifest(files: str | list[object], **more: object) -> str:
    cover = {"rows": {"files": files}, "prompt": "cover for {title}", "output": "img/{slug}.png"}
    text = nebula_manifest({"cover": {**cover, **more}})
    return text.replace('backend = "nebula"', 'backend = "preview"', 1)


def planned(run_cli) -> dict[str, str]:
    """Each image's action, in the order of the plan."""
    code, out, err = run_cli("plan", "--json")
    assert code == 0, err
    return {a["image"]: a["action"] for a in json.loads(out)["actions"]}


def one_error(run_cli, root: Path) -> str:
    code, out, err = run_cli("plan")
    assert code == 1, out + err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (root / "images.lock").exists()
    return err


def test_hugos_posts_and_page_bundles_are_one_declaration(project, run_cli):
    project(
        {
            "images.toml": manifest(HUGO),
            "content/posts/zebra.md": post("Zebra"),
            "content/posts/apple/index.md": post("Apple"),
            "content/posts/apple/photo.md": post("Not a page"),  # neither pattern's
            "content/posts/mango/index.md": post("Mango"),
            "content/posts/_index.md": post("Section"),  # `*.md`: its own name
        }
    )
    # in the order of their paths, whichever pattern matched them
    assert list(planned(run_cli)) == [
        "cover[_index]",
        "cover[apple]",
        "cover[mango]",
        "cover[zebra]",
    ]
    code, out, _ = run_cli("plan")
    assert code == 0 and "cover[apple]  create  img/apple.png" in out


def test_a_post_two_patterns_match_is_one_row(project, run_cli):
    project(
        {
            "images.toml": manifest(["content/posts/*.md", "content/**/*.md"]),
            "content/about.md": post("About"),
            "content/posts/hello.md": post("Hello"),  # both patterns match it
            "content/posts/bundle/index.md": post("Bundle"),
        }
    )
    assert planned(run_cli) == {
        "cover[about]": "create",
        "cover[bundle]": "create",
        "cover[hello]": "create",
    }


def test_the_posts_of_every_pattern_are_counted_together(project, run_cli, monkeypatch):
    from nebula_build.core import rowimages
    from nebula_build.state import datafiles

    root = project(
        {
            "images.toml": manifest(["a/*.md", "b/*.md"]),
            "a/one.md": post("One"),
            "a/two.md": post("Two"),
            "b/three.md": post("Three"),
            "b/four.md": post("Four"),
        }
    )
    monkeypatch.setattr(datafiles, "MAX_FOLDER_FILES", 3)  # each pattern alone: 2
    err = one_error(run_cli, root)
    assert "images.cover.rows.files: a/*.md + b/*.md match more than 3 posts in all" in err
    monkeypatch.setattr(datafiles, "MAX_FOLDER_FILES", 4)
    size = len(post("Three")) * 3  # more than one pattern's posts, less than all
    monkeypatch.setattr(rowimages, "MAX_DATA_READ", size)
    err = one_error(run_cli, root)
    assert "the rows of this manifest come to more than 0 MiB of data files and posts" in err
    monkeypatch.setattr(rowimages, "MAX_DATA_READ", size * 2)
    assert len(planned(run_cli)) == 4


def test_a_string_and_a_list_of_one_are_the_same_declaration(project, run_cli):
    root = project({"images.toml": manifest("posts/*.md"), "posts/a.md": post("A")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert run_cli("plan").out.startswith("No changes")
    (root / "images.toml").write_text(manifest(["posts/*.md"]))
    assert run_cli("plan").out.startswith("No changes")
    (root / "images.toml").write_text(manifest(["posts/*.md", "drafts/*.md"]))
    (root / "drafts").mkdir()
    (root / "drafts/b.md").write_text(post("B"))
    assert planned(run_cli) == {"cover[a]": "noop", "cover[b]": "create"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "images.cover.rows.files: names no pattern: give one, such as"),
        (["posts/*.md", 3], "images.cover.rows.files.1: input should be a valid string (got 3)"),
        (
            ["posts/*.md", "posts/*.md"],
            "images.cover.rows.files.1: 'posts/*.md' is files.0 again: list each pattern once",
        ),
        (
            ["posts/*.md", "drafts/*.md"],
            "images.cover.rows.files.1: folder not found: drafts (where drafts/*.md starts)",
        ),
        (["posts/*.md", "../*.md"], "images.cover.rows.files.1: '../*.md' leaves the project"),
        (
            ["posts/*.md", ".git/*.md"],
            "images.cover.rows.files.1: '.git/*.md' is inside .git/, which belongs to the tool",
        ),
        (["posts/*.md", ""], "images.cover.rows.files.1: must not be empty"),
        ({"a": "posts/*.md"}, "images.cover.rows.files: must be a pattern such as"),
    ],
)
def test_a_bad_list_of_patterns_is_one_clear_line(project, run_cli, files, message):
    root = project({"images.toml": manifest(files), "posts/a.md": post("A")})
    err = one_error(run_cli, root)
    assert err.startswith("error: images.toml:")
    assert message in err, err


def test_a_pattern_that_matches_nothing_reads_no_post_as_alone(project, run_cli):
    project(
        {
            "images.toml": manifest(["posts/*.md", "drafts/*.md"]),
            "posts/a.md": post("A"),
            "drafts/notes.txt": "no post yet",
        }
    )
    assert planned(run_cli) == {"cover[a]": "create"}


def test_two_posts_of_two_patterns_with_one_slug_are_one_line_naming_both(project, run_cli):
    root = project(
        {
            "images.toml": manifest(HUGO),
            "content/posts/hello.md": post("Old"),
            "content/posts/hello/index.md": post("New"),
        }
    )
    err = one_error(run_cli, root)
    assert (
        "error: content/posts/hello/index.md:1: images.cover: id 'hello' is also the id of "
        "the row at content/posts/hello.md (set `slug` in one's front matter" in err
    )


def test_a_change_in_any_patterns_posts_is_seen_and_nothing_else_is_read_again(
    project, run_cli, monkeypatch
):
    from nebula_build.engine import prepare as preparing
    from nebula_build.state.datafiles import DataReader

    root = project(
        {
            "images.toml": manifest(HUGO),
            "content/posts/a.md": post("A"),
            "content/posts/b/index.md": post("B"),
        }
    )
    assert run_cli("apply").code == 0
    resolved: list[int] = []
    read: list[str] = []
    real_resolve, real_read = preparing.resolve, DataReader.read
    monkeypatch.setattr(
        preparing, "resolve", lambda *a, **k: resolved.append(1) or real_resolve(*a, **k)
    )

    def reading(self: DataReader, path: str, *, limit: int) -> bytes:
        read.append(path)
        return real_read(self, path, limit=limit)

    monkeypatch.setattr(DataReader, "read", reading)
    assert run_cli("plan", "--json").code == 0
    assert resolved == [] and read == []  # the spec cache: no post read again
    (root / "content/posts/c").mkdir()
    (root / "content/posts/c/index.md").write_text(post("C"))  # the second pattern's
    assert planned(run_cli)["cover[c]"] == "create"
    assert resolved == [1]
    (root / "content/posts/b/index.md").write_text(post("B, edited"))
    assert planned(run_cli)["cover[b]"] == "regenerate"


def test_the_docs_hugo_example_builds(project, run_cli):
    import re

    from tests.cli.test_rows_columns import HEAD, locked

    docs = (Path(__file__).parents[2] / "docs/data.md").read_text()
    section = docs.split("### Several patterns of posts", 1)[1]
    snippet = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert snippet is not None
    root = project(
        {
            "images.toml": HEAD + snippet[1],
            "content/posts/spring.md": "---\ntitle: Spring\nscene: a meadow\n---\n",
            "content/posts/hello/index.md": "---\ntitle: Hello\nscene: a harbour\n---\n",
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert locked(root)["cover[hello]"]["prompt"] == "a harbour, editorial photo"
    assert (root / "static/img/covers/spring.webp").is_file()


@pytest.mark.parametrize("order", [1, -1])
def test_reordering_the_patterns_renames_no_post(project, run_cli, order):
    """The section's `_index.md` is `_index` to the pattern that starts in its folder
    and `posts` to one that reaches it from above: the list's order must not choose,
    or moving a pattern up would make every such post's image again."""
    patterns = ["content/**/_index.md", "content/posts/*.md"][::order]
    root = project(
        {
            "images.toml": manifest(patterns),
            "content/posts/_index.md": post("Section"),
            "content/posts/hello.md": post("Hello"),
        }
    )
    assert planned(run_cli) == {"cover[_index]": "create", "cover[hello]": "create"}
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(patterns[::-1]))
    assert run_cli("plan").out.startswith("No changes")


def test_the_patterns_of_a_list_read_each_folder_once(project, run_cli, monkeypatch):
    """Each pattern reading every folder again: 32 over 10,000 folders took 23 s."""
    from nebula_build.state.guard import Guard

    patterns = ["content/**/*.md", "content/**/index.md", "content/posts/**/*.md"]
    project(
        {
            "images.toml": manifest(patterns),
            "content/posts/hello.md": post("Hello"),
            "content/posts/bundle/index.md": post("Bundle"),
            "content/about/team/index.md": post("Team"),
        }
    )
    listed: list[str] = []
    listing = Guard.listing

    def counted(self, folder, below=(), *, limit):
        listed.append("/".join((folder, *below)))
        return listing(self, folder, below, limit=limit)

    monkeypatch.setattr(Guard, "listing", counted)
    assert set(planned(run_cli)) == {"cover[hello]", "cover[bundle]", "cover[team]"}
    assert sorted(listed) == sorted(set(listed)), listed
