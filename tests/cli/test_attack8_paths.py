"""An output path a data row fills in with what a terminal does not show as it is (a
C1 control, a bidirectional override, a zero-width space) is refused: plan would show
`out/a-gnp.exe.png` for the file `out/a-\u202egnp.exe.png`."""

from __future__ import annotations

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


@pytest.mark.parametrize("name", ["\u202egnp.exe", "x\x9b31mRED", "zero\u200bwidth", "x\x85y"])
def test_an_output_path_a_terminal_would_show_as_another_is_refused(project, run_cli, name):
    root = project({"images.toml": MANIFEST, "data/p.csv": f"sku,name\na,{name}\n"})
    for command in ("plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (out, err)
        escaped = repr(f"out/a-{name}.png")
        assert err == (
            f"error: images.toml: images.product[a].output: {escaped} contains a character a "
            "terminal does not show as it is (a control, an invisible or a bidirectional one)\n"
        ), command
    assert not (root / "out").exists()
