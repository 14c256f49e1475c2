"""`-f` given a folder says which manifest file in it to pass instead."""

from __future__ import annotations

from tests.manifests import PREVIEW as HEAD

MANIFEST = HEAD + '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'


def test_f_with_a_folder_names_the_manifest_inside(project, run_cli):
    project({"site/images.toml": MANIFEST, "site/other.toml": MANIFEST})
    for written in ("site", "site/"):
        code, out, err = run_cli("-f", written, "plan")
        assert (code, out) == (1, "")
        assert err == "error: site is a folder; -f names the manifest file: -f site/images.toml\n"


def test_f_with_a_folder_of_other_manifests_names_them(project, run_cli):
    project({"site/a.toml": MANIFEST, "site/b.toml": MANIFEST})
    code, _, err = run_cli("-f", "site", "plan")
    assert code == 1
    assert err == (
        "error: site is a folder; -f names the manifest file: -f site/a.toml or -f site/b.toml\n"
    )


def test_f_with_a_folder_without_a_manifest_says_so(project, run_cli):
    project({"site/readme.txt": "x"})
    code, _, err = run_cli("-f", "site", "plan")
    assert code == 1
    assert err == (
        "error: site is a folder, with no .toml file in it; -f names the manifest file "
        "(-C site runs in that folder)\n"
    )
