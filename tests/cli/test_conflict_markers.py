"""A data file a manifest reads (CSV, JSON, JSON Lines, a post's front matter) with a
merge conflict git left in it is one line naming the file and the line, not rows made
from its markers."""

from __future__ import annotations

import pytest

MANIFEST = """
    version = 1
    [defaults]
    backend = "preview"
    model = "black-forest-labs/FLUX.1-schnell"
    width = 64
    height = 64
    [images.item]
    rows = {rows}
    prompt = "{{prompt}}"
    output = "images/{{{name}}}.png"
    """
CONFLICT = "<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> feat\n"


@pytest.mark.parametrize(
    ("path", "rows", "name", "ours", "theirs"),
    [
        ("data/items.csv", '"data/items.csv"', "id", "x,a cat\n", "x,a dog\n"),
        ("data/items.jsonl", '"data/items.jsonl"', "id", '{"id": "x", "prompt": "a cat"}\n', ""),
    ],
)
def test_a_data_file_left_in_conflict_is_one_line(project, run_cli, path, rows, name, ours, theirs):
    header = "id,prompt\n" if path.endswith(".csv") else ""
    project(
        {
            "images.toml": MANIFEST.format(rows=rows, name=name),
            path: header + CONFLICT.format(ours=ours, theirs=theirs),
        }
    )
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    line = 2 if header else 1
    assert err == (
        f"error: {path}:{line}: images.item: unresolved merge conflict (<<<<<<< HEAD); "
        "resolve it, then run again\n"
    )


def test_a_post_left_in_conflict_is_one_line_and_a_heading_underline_is_none(project, run_cli):
    root = project(
        {
            "images.toml": MANIFEST.format(rows='{ files = "posts/*.md" }', name="slug"),
            "posts/a.md": "---\n"
            + CONFLICT.format(ours="prompt: a cat\n", theirs="prompt: a dog\n")
            + "---\nTitle\n=======\n",
        }
    )
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert err == (
        "error: posts/a.md:2: images.item: unresolved merge conflict (<<<<<<< HEAD); "
        "resolve it, then run again\n"
    )
    (root / "posts/a.md").write_text("---\nprompt: a cat\n---\nTitle\n=======\n", "utf-8")
    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "item[a]  create  images/a.png" in planned.out


def test_a_post_about_merge_conflicts_is_read(project, run_cli):
    """A post may show git's markers in a fenced code block, or lines that start like
    two of them: that is its content, not a conflict left in it."""
    example = "```\n" + CONFLICT.format(ours="a cat\n", theirs="a dog\n") + "```\n"
    project(
        {
            "images.toml": MANIFEST.format(rows='{ files = "posts/*.md" }', name="slug"),
            "posts/a.md": "---\nprompt: a merge\n---\nResolving a conflict.\n\n" + example,
            "posts/b.md": "---\nprompt: a rebase\n---\n~~~diff\n" + example + "~~~\n",
            "posts/c.md": "---\nprompt: arrows\n---\n<<<<<<< before\n\n>>>>>>> after\n",
        }
    )
    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "item[a]  create  images/a.png" in planned.out
    assert "item[b]  create  images/b.png" in planned.out
    assert "item[c]  create  images/c.png" in planned.out


def test_a_conflict_inside_a_multi_line_prompt_is_one_line(project, run_cli):
    """Both branches edited one multi-line prompt: git's markers sit inside the string,
    the TOML is valid, and the image would be paid for with them in its prompt. An
    error elsewhere in the file is still that error; a prompt that shows markers
    escaped is read."""
    prompt = 'prompt = """\na cover for a post about git:\n' + CONFLICT.format(
        ours="ours\n", theirs="theirs\n"
    )
    manifest = MANIFEST.replace('prompt = "{{prompt}}"', prompt + '"""').replace(
        "rows = {rows}\n", ""
    )
    root = project({"images.toml": manifest.format(name="x").replace("{x}", "item")})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert err.startswith(
        "error: images.toml:10: unresolved merge conflict inside a string (<<<<<<< HEAD)"
    ), err
    assert len(err.splitlines()) == 1

    text = (root / "images.toml").read_text(encoding="utf-8")
    (root / "images.toml").write_text(text.replace("height = 64", "height = 64 64"), "utf-8")
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert err.startswith("error: images.toml:6:17: defaults.height: invalid TOML"), err
    assert "merge conflict" not in err

    escaped = text.replace("<<<<<<< HEAD", "\\u003c<<<<<< HEAD")
    (root / "images.toml").write_text(escaped, "utf-8")
    planned = run_cli("plan")
    assert planned.code == 0, planned.err
    assert "item  create  images/item.png" in planned.out
