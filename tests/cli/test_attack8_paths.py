"""An output path a data row fills in with what a terminal does not show as it is (a
C1 control, a bidirectional override, a zero-width space) is refused: plan would show
`out/a-gnp.exe.png` for the file `out/a-\u202egnp.exe.png`."""

from __future__ import annotations

import re

import pytest

MANIFEST = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[images.product]
rows = "data/p.csv"
id = "sku"
prompt = "a {name}"
output = "out/{sku}-{name}.png"
"""


UNSHOWN = (
    "contains a character a terminal does not show as it is (a control, an invisible or "
    "a bidirectional one)"
)
#: a row's value that puts such a character in its output, said at the row
MAKES_UNSHOWN = "would make the output {} contain" + UNSHOWN.removeprefix("contains")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("x\x9b31mRED", "x\\u009b31mRED"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("x\x85y", "x\\u0085y"),
        ("x\u3164y", "x\\u3164y"),  # a Hangul filler: shows as a blank
    ],
)
def test_an_output_path_a_terminal_would_show_as_another_is_refused(project, run_cli, name, shown):
    root = project({"images.toml": MANIFEST, "data/p.csv": f"sku,name\na,{name}\n"})
    for command in ("plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (out, err)
        assert err == (
            f"error: data/p.csv:2:3: images.product: column 'name': '{shown}' "
            + MAKES_UNSHOWN.format(f"'out/a-{shown}.png'")
            + "\n"
        ), command
    assert not (root / "out").exists()


def test_every_row_whose_output_a_terminal_would_show_as_another_is_said(project, run_cli):
    """Each row at its line in the data file, naming the value: plan stopped at the
    first such path, said without a line, then said each at the manifest's key."""
    rows = "sku,name\na,\u202egnp.exe\nb,fine\nc,x\u200by\nd,\x9b\n"
    project({"images.toml": MANIFEST, "data/p.csv": rows})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        f"error: data/p.csv:{line}:3: images.product: column 'name': '{name}' "
        + MAKES_UNSHOWN.format(f"'out/{sku}-{name}.png'")
        for line, sku, name in (
            (2, "a", "\\u202egnp.exe"),
            (4, "c", "x\\u200by"),
            (5, "d", "\\u009b"),
        )
    ]


def test_an_output_template_a_terminal_would_show_as_another_is_said_once(project, run_cli):
    text = MANIFEST.replace("out/{sku}-{name}.png", "out/\u202e{sku}.png")
    project({"images.toml": text, "data/p.csv": "sku,name\na,x\nb,y\nc,z\n"})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        f"error: images.toml:13:1: images.product.output: 'out/\\u202e{{sku}}.png' "
        f"{UNSHOWN[:-1]}; for 3 of its images)\n"
    )


LOOSE = "have an empty or '.' folder (written elsewhere than it reads)"
CLIMB = "use '..' (a value may name folders, not climb out of one)"


@pytest.mark.parametrize(
    ("template", "sku", "path", "said"),
    [
        ("out/{sku}.png", "/abs", "out//abs.png", LOOSE),
        ("out/{sku}.png", "./b", "out/./b.png", LOOSE),
        # beside another value's folder, the empty part an empty value would make hid it
        ("out/{name}/{sku}.png", "/abs", "out/y//abs.png", LOOSE),
        ("out/{name}/{sku}/x.png", "b/", "out/y/b//x.png", LOOSE),
        ("out/{name}/{sku}.png", "a//b", "out/y/a//b.png", LOOSE),
        ("out/{sku}-{name}.png", "../../etc", "out/../../etc-y.png", CLIMB),
    ],
)
def test_a_value_that_would_write_elsewhere_than_its_output_reads_is_refused_at_its_row(
    project, run_cli, template, sku, path, said
):
    """`out/{sku}.png` with sku `/abs` was written to out/abs.png without a word, and
    `out/{name}/{sku}.png` still was; the row is what to fix, so it is said there."""
    text = MANIFEST.replace("out/{sku}-{name}.png", template)
    root = project({"images.toml": text, "data/p.csv": f"sku,name\nok,x\n{sku},y\n"})
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err)
        assert err == (
            f"error: data/p.csv:3:1: images.product: column 'sku': '{sku}' would make the "
            f"output '{path}' {said}\n"
        ), command
    assert not (root / "out").exists()


@pytest.mark.parametrize(
    ("template", "sku"),
    [
        ("out/{sku}-{name}.png", "."),  # out/.-y.png: a file, where the path says
        ("out/{sku}{name}.png", "a/"),  # out/a/y.png
        ("out/{sku}.png", "v1.2"),
    ],
)
def test_a_value_with_a_dot_or_slash_that_writes_where_the_path_reads_is_made(
    project, run_cli, template, sku
):
    """Refused, where a value was held to the rule alone, not to what it makes."""
    text = MANIFEST.replace("out/{sku}-{name}.png", template)
    project({"images.toml": text, "data/p.csv": f"sku,name\nok,x\n{sku},y\n"})
    code, out, err = run_cli("plan")
    assert code == 0 and "2 to generate" in out, err


def test_two_values_that_make_an_empty_folder_together_are_refused(project, run_cli):
    text = MANIFEST.replace("out/{sku}-{name}.png", "out/{sku}{name}.png")
    project({"images.toml": text, "data/p.csv": "sku,name\nx/,/y\n"})
    code, _, err = run_cli("plan")
    assert code == 1 and err.startswith("error: data/p.csv:2:1: images.product: column 'sku': "), (
        err
    )


def test_a_matrix_value_that_would_write_elsewhere_than_its_output_reads_is_refused(
    project, run_cli
):
    text = MANIFEST.replace("out/{sku}-{name}.png", "out/{pose}/{sku}.png").replace(
        'id = "sku"', 'id = "sku"\nmatrix = { pose = ["idle", "./run"] }'
    )
    project({"images.toml": text, "data/p.csv": "sku,name\na,x\n"})
    code, _, err = run_cli("plan")
    assert code == 1
    assert err == (
        "error: images.toml:12:1: images.product.matrix.pose: './run' would make the output "
        f"'out/./run/x.png' {LOOSE}\n"
    )


@pytest.mark.parametrize(
    ("matrix", "rows"),
    [('{ a = ["y/"], b = ["/b"] }', None), ('{ a = ["y/"] }', "sku,name\n/b,x\n")],
    ids=["matrix", "rows and matrix"],
)
def test_matrix_values_that_make_an_empty_folder_together_are_refused(
    project, run_cli, matrix, rows
):
    """Each value was held to the path alone: out/{a}{b}.png wrote out/y/b.png."""
    if rows is None:
        head = MANIFEST.partition("[images.product]")[0]
        text = (
            head + f'[images.m]\nprompt = "p"\nmatrix = {matrix}\noutput = "out/{{a}}{{b}}.png"\n'
        )
        files = {"images.toml": text}
    else:
        text = MANIFEST.replace("out/{sku}-{name}.png", "out/{a}{sku}.png").replace(
            'id = "sku"', f'id = "sku"\nmatrix = {matrix}'
        )
        files = {"images.toml": text, "data/p.csv": rows}
    root = project(files)
    code, _, err = run_cli("apply")
    assert code == 1 and "would make the output 'out/y//b.png' have an empty" in err, err
    assert not (root / "out").exists()


def test_a_template_written_with_dot_parts_still_fills_in(project, run_cli):
    text = MANIFEST.replace("out/{sku}-{name}.png", "./out//{sku}.png")
    root = project({"images.toml": text, "data/p.csv": "sku,name\na,x\n"})
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/a.png").exists()


def test_an_optional_folder_left_empty_still_fills_in(project, run_cli):
    """An empty value makes the same empty part for every row, as the template allows."""
    text = MANIFEST.replace("out/{sku}-{name}.png", "out/{name}/{sku}.png").replace(
        'rows = "data/p.csv"', 'rows = { file = "data/p.csv", defaults = { name = "" } }'
    )
    root = project({"images.toml": text, "data/p.csv": "sku,name\na,x\nb,\n"})
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/x/a.png").exists() and (root / "out/b.png").exists()


def test_an_output_an_earlier_version_wrote_under_a_refused_name_stays_and_is_said(
    project, run_cli, monkeypatch
):
    """Before these names were refused, right-to-left data wrote `o/שלום\u200f.png`;
    once the data lost the mark, every apply failed deleting the old file ("file to
    delete … contains a character …") and the plan showed its name without the mark."""
    text = MANIFEST.replace("out/{sku}-{name}.png", "o/{name}.png")
    root = project({"images.toml": text, "data/p.csv": "sku,name\na,שלום\u200f\n"})
    with monkeypatch.context() as earlier:  # as the version before wrote it
        earlier.setattr("nebula_build.state.guard._UNSHOWN", re.compile("(?!)"))
        earlier.setattr("nebula_build.core.resolve.path_problem", lambda path: None)
        earlier.setattr("nebula_build.core.spec._unshown", lambda value: False)
        code, out, err = run_cli("apply")
        assert code == 0, err
    assert (root / "o/שלום\u200f.png").exists()
    (root / "data/p.csv").write_text("sku,name\na,שלום\n", encoding="utf-8")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "keeps o/שלום\\u200f.png: its name contains a character a terminal" in out, out
    for _ in range(2):
        code, out, err = run_cli("apply")
        assert code == 0, out + err
    assert (root / "o/שלום.png").exists() and (root / "o/שלום\u200f.png").exists()
