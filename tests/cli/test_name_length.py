"""An image's name is printed in every plan and apply: a lock from a pull request may
not name one longer than MAX_IMAGE_NAME (an entry named with 2,000,000 characters made
`plan` print 2 MB and `apply` 4 MB into the CI log), and a matrix that would make such
a name says so, so that no lock nebula-build writes is one it then refuses."""

from __future__ import annotations

import tomllib

from nebula_build.text import MAX_IMAGE_NAME
from tests.manifests import PREVIEW

IMAGE = '[images.mob]\nprompt = "x"\noutput = "o/mob.png"\n'


def test_a_lock_entry_with_a_name_too_long_is_refused_in_one_line(project, run_cli):
    root = project({"images.toml": PREVIEW + IMAGE})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    table = lock[lock.index("[images.mob]") :]
    long = "g" * 2_000_000
    forged = table.replace("[images.mob]", f"[images.{long}]").replace("o/mob.png", "o/g.png")
    (root / "images.lock").write_text(lock + "\n" + forged)
    for command in ("plan", "apply", "status"):
        code, out, err = run_cli(command)
        assert code == 1, command
        assert len(out + err) < 1000, command
        assert err.startswith(f"error: images.lock: images.{'g' * 80}: its name is longer than")
        assert "1,024 characters, and no image is named so" in err
    assert "mob" in tomllib.loads((root / "images.lock").read_text())["images"]


def test_a_name_at_the_bound_is_an_image_of_its_own(project, run_cli):
    """The lock takes every name a manifest can make: a matrix's longest allowed."""
    value = "v" * 128
    keys = (MAX_IMAGE_NAME - len("m[]")) // (len(value) + 1)
    matrix = ", ".join(f'k{n} = ["{value}"]' for n in range(keys))
    declaration = f'[images.m]\nprompt = "x"\noutput = "o/{{index}}.png"\nmatrix = {{ {matrix} }}\n'
    root = project({"images.toml": PREVIEW + declaration})
    code, _, err = run_cli("apply")
    assert code == 0, err
    (name,) = tomllib.loads((root / "images.lock").read_text())["images"]
    assert len(name) <= MAX_IMAGE_NAME
    assert run_cli("plan", "--detailed-exitcode").code == 0

    matrix += f', k{keys} = ["{value}"]'
    declaration = f'[images.m]\nprompt = "x"\noutput = "o/{{index}}.png"\nmatrix = {{ {matrix} }}\n'
    project({"images.toml": PREVIEW + declaration})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        f"error: images.toml:{PREVIEW.count(chr(10)) + 4}:1: images.m.matrix: makes an image "
        f"whose name has {len(name) + len(value) + 1:,} characters, more than 1,024: use fewer "
        "or shorter values"
    ]
