"""A long prompt edited in a word or two: the plan says which words changed under the
whole old -> new line, which a terminal wraps and an eye has to compare."""

from __future__ import annotations

from tests.manifests import PREVIEW as HEAD

PROMPT = "a lighthouse on a cliff at dusk, warm light in the windows, calm sea, wide shot"


def _manifest(prompt: str) -> str:
    return HEAD + f'[images.hero]\nprompt = "{prompt}"\noutput = "hero.png"\n'


def _plan_after(edit: str, project, run_cli) -> list[str]:
    root = project({"images.toml": _manifest(PROMPT)})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(_manifest(edit), encoding="utf-8")
    code, out, err = run_cli("plan")
    assert code == 0, err
    return out.splitlines()


def test_a_word_changed_in_a_long_prompt_is_named(project, run_cli):
    lines = _plan_after(PROMPT.replace("calm", "stormy"), project, run_cli)
    at = lines.index(f'      ~ prompt: "{PROMPT}" -> "{PROMPT.replace("calm", "stormy")}"')
    assert lines[at + 1] == '        words: "calm" -> "stormy"'


def test_words_added_and_removed_are_shown_as_typed(project, run_cli):
    edit = "a lighthouse on a cliff at dusk, warm light, dramatic stormy sea"
    lines = _plan_after(edit, project, run_cli)
    assert (
        '        words: - "in the windows", "calm" -> "dramatic stormy", - ", wide shot"' in lines
    )


def test_a_prompt_rewritten_throughout_keeps_only_the_whole_values(project, run_cli):
    edit = "one red apple, alone, on a plain wooden kitchen table, soft north light, still life"
    lines = _plan_after(edit, project, run_cli)
    assert any(line.startswith("      ~ prompt: ") for line in lines)
    assert not any("words:" in line for line in lines)


def test_a_short_prompt_change_says_it_once(project, run_cli):
    root = project({"images.toml": _manifest("a cat")})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(_manifest("a dog"), encoding="utf-8")
    out = run_cli("plan").out
    assert '      ~ prompt: "a cat" -> "a dog"' in out
    assert "words:" not in out


def test_a_changed_word_a_terminal_would_obey_is_escaped(project, run_cli):
    edit = PROMPT.replace("calm", "\\u009b2J\\u202ecalm")
    lines = _plan_after(edit, project, run_cli)
    assert '        words: + "\\u009b2J\\u202e"' in lines
    assert not any("\x9b" in line or "\u202e" in line for line in lines)
