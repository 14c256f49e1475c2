"""A manifest without `version` says what to write, not only that it is missing."""

from __future__ import annotations


def test_a_manifest_without_version_says_to_put_it_at_the_top(project, run_cli):
    project({"images.toml": '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert (
        err
        == "error: images.toml: version: is required; put `version = 1` at the top of the file\n"
    )
