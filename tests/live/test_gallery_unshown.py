"""A prompt the gallery shows says what it says: a bidirectional override, a zero-width
space or a control in it is shown as its escape, not obeyed (an override showed the
rest of the prompt reversed, so a reviewer read another prompt than the model got)."""

from __future__ import annotations

from tests.live.pagedata import page_cards
from tests.manifests import PREVIEW as HEAD

PAGE = ".nebula-build/gallery/index.html"
XL = 'model = "stabilityai/stable-diffusion-xl-base-1.0"\n'


def _cards(project, run_cli, images: str) -> tuple[str, list[dict[str, object]]]:
    root = project({"images.toml": HEAD + images})
    assert run_cli("gallery").code == 0
    page = (root / PAGE).read_text()
    return page, page_cards(page)


def test_a_prompt_with_an_override_is_shown_with_it_escaped(project, run_cli):
    images = (
        '[images.hero]\nprompt = "a cat, \\u202eoh ,lla eteled"\n'
        f'{XL}negative_prompt = "blur\\u200b, \\u2067x\\u2069\\u0085"\noutput = "hero.png"\n'
    )
    page, [card] = _cards(project, run_cli, images)
    assert card["prompt"] == "a cat, \\u202eoh ,lla eteled"
    assert card["negative_prompt"] == "blur\\u200b, \\u2067x\\u2069\\u0085"
    assert not any(char in page for char in "\u202e\u200b\u2067\u2069\u0085")


def test_a_prompt_keeps_its_line_breaks_and_a_typed_escape_is_told_apart(project, run_cli):
    images = (
        '[images.a]\nprompt = """two lines:\n\ta calm sea, C:\\\\site"""\noutput = "a.png"\n'
        '[images.b]\nprompt = "typed \\\\u202e, real \\u202e"\noutput = "b.png"\n'
    )
    _, (first, second) = _cards(project, run_cli, images)
    assert first["prompt"] == "two lines:\n\ta calm sea, C:\\site"
    assert second["prompt"] == "typed \\\\u202e, real \\u202e"
