"""`-f FOLDER` names the manifests in it as a shell takes them, escaped where a
terminal would obey their names; a link that loops among them is passed over."""

from __future__ import annotations

import os

from tests.manifests import PREVIEW as HEAD

MANIFEST = HEAD + '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'


def test_a_manifest_name_with_escape_sequences_or_a_line_break_is_escaped(project, run_cli):
    project({"site/a\x1b]0;pwned\x07.toml": MANIFEST, "site/b\nerror: forged.toml": MANIFEST})
    code, out, err = run_cli("-f", "site", "plan")
    assert (code, out) == (1, "")
    assert err == (
        "error: site is a folder; -f names the manifest file: "
        "-f 'site/a\\x1b]0;pwned\\x07.toml' or -f 'site/b\\nerror: forged.toml'\n"
    )


def test_a_folder_name_with_escape_sequences_is_escaped(project, run_cli):
    project({"s\x1b[2Jx/readme.txt": "x"})
    code, _, err = run_cli("-f", "s\x1b[2Jx", "plan")
    assert code == 1
    assert err == (
        "error: s\\x1b[2Jx is a folder, with no .toml file in it; -f names the manifest "
        "file (-C 's\\x1b[2Jx' runs in that folder)\n"
    )


def test_a_manifest_name_with_a_space_is_quoted_and_a_link_loop_passed_over(project, run_cli):
    root = project({"site/my site.toml": MANIFEST})
    os.symlink("a.toml", root / "site" / "a.toml")
    code, _, err = run_cli("-f", "site", "plan")
    assert code == 1
    assert err == "error: site is a folder; -f names the manifest file: -f 'site/my site.toml'\n"
