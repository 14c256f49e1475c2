"""What a pull request's lock or manifest holds, shown on a terminal or in a CI log: a
name or value no image could have written is refused or shown escaped, never as the
escape sequence, line break or bidirectional override it is (a forged "Apply finished"
line, a cleared screen, text hidden by `ESC[8m`)."""

from __future__ import annotations

import json
import re

from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '\n[images.a]\nprompt = "a lighthouse"\nseed = 1\noutput = "out/a.png"\n'
#: what a terminal or a CI log would obey or show in another order than it is
UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
FORGED = "Apply finished in 0.1s: 0 done (0 generated), 0 failed."


def applied(project, run_cli):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    return root


def test_a_lock_atlas_record_whose_name_holds_escape_sequences_is_refused(project, run_cli):
    root = applied(project, run_cli)
    name = f"x\\n\\u001b[1A\\u001b[2K{FORGED}\\u001b[8m"
    files = f'{{ "zz/none.png" = "{"0" * 64}" }}'
    record = f'[atlases."{name}"]\noutput = "zz/none.png"\nfiles = {files}\n'
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace("version = 1\n", f"version = 1\n\n{record}", 1))

    for command in ("plan", "apply"):
        result = run_cli(command)
        assert result.code == 1, result
        said = result.out + result.err
        assert not UNSHOWN.search(said), said
        assert f"\n{FORGED}" not in said
        assert "images.lock: atlases.x?" in result.err
        assert "no atlas is named so" in result.err


def edited_lock(root, old: str, new: str) -> None:
    lock = root / "images.lock"
    text = lock.read_text()
    assert old in text
    lock.write_text(text.replace(old, new, 1))


def test_a_changed_value_from_the_lock_or_the_manifest_is_shown_escaped(project, run_cli):
    root = applied(project, run_cli)
    recorded = 'params = { height = 64, prompt = "a lighthouse", seed = 1, width = 64 }'
    edited_lock(root, recorded, recorded.replace("a lighthouse", "X\\u009b2J\\u202eY"))
    manifest = root / "images.toml"
    manifest.write_text(MANIFEST.replace("a lighthouse", "a \\u009b31mred\\u2066 lighthouse"))

    result = run_cli("plan")

    assert result.code == 0, result
    assert not UNSHOWN.search(result.out), result.out
    assert '~ prompt: "X\\u009b2J\\u202eY" -> "a \\u009b31mred\\u2066 lighthouse"' in result.out


def test_a_parameter_the_lock_names_with_escape_sequences_is_shown_without_them(project, run_cli):
    root = applied(project, run_cli)
    (root / "images.toml").write_text(MANIFEST.replace("a lighthouse", "a lighthouse at dusk"))
    assert run_cli("apply").code == 0
    earlier = 'params = { height = 64, prompt = "a lighthouse", seed = 1, width = 64 }'
    edited_lock(root, earlier, earlier.replace(" }", ', "\\u009b2J\\u202ek\\u001b[8m" = 1 }'))

    result = run_cli("history", "a")

    assert result.code == 0, result
    assert not UNSHOWN.search(result.out), result.out
    assert "\n       k: 1 -> (unset)\n" in result.out


def test_a_manifest_key_with_a_c1_control_or_an_override_is_shown_escaped_in_its_error(
    project, run_cli
):
    project({"images.toml": MANIFEST + '\n[images."b\\u009b2J\\u202ec"]\nprompt = "x"\n'})

    result = run_cli("validate")

    assert result.code == 1
    assert not UNSHOWN.search(result.err), result.err
    assert "images.b\\u009b2J\\u202ec: image names may contain only" in result.err


def test_json_answers_carry_what_a_terminal_obeys_only_as_json_escapes(project, run_cli):
    root = applied(project, run_cli)
    recorded = 'params = { height = 64, prompt = "a lighthouse", seed = 1, width = 64 }'
    edited_lock(root, recorded, recorded.replace("a lighthouse", "X\\u009b2J\\u202eY"))
    (root / "images.toml").write_text(MANIFEST.replace("a lighthouse", "é \\u2066 日本"))

    result = run_cli("plan", "--json")

    assert result.code == 0, result
    assert not UNSHOWN.search(result.out), result.out
    assert "\\u009b2J\\u202eY" in result.out and "é \\u2066 日本" in result.out
    change = json.loads(result.out)["actions"][0]["changes"][0]  # the same value, read back
    assert (change["old"], change["new"]) == ("X\x9b2J\u202eY", "é \u2066 日本")
