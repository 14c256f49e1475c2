"""The redaction of what plugins write, made faster for a short write: it takes out what
a plain walk over every window of the text takes out, and holds what it held."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nebula_build.text import (
    MIN_SECRET_FRAGMENT,
    REDACTED,
    _forms,
    _start_of_a_form,
    redact,
    unfinished_secret,
)

#: few characters, so that texts and secrets share pieces often
PIECES = st.text(alphabet="ab/+=-k\n", max_size=40)
SECRETS = st.lists(st.text(alphabet="ab/+=-k", min_size=4, max_size=20), min_size=1, max_size=3)


def walked(text: str, secrets: list[str]) -> str:
    """`redact` as a walk over every window of the text, with no shortcut."""
    forms = _forms(tuple(secrets))
    for secret in forms.whole:
        text = text.replace(secret, REDACTED)
    if forms.standing_alone is not None:
        text = forms.standing_alone.sub(REDACTED, text)
    size = MIN_SECRET_FRAGMENT
    covered = [False] * len(text)
    for start in range(len(text) - size + 1):
        if text[start : start + size] in forms.windows:
            covered[start : start + size] = [True] * size
    return "".join(
        REDACTED if covered[i] and (i == 0 or not covered[i - 1]) else char
        for i, char in enumerate(text)
        if not covered[i] or i == 0 or not covered[i - 1]
    )


def held_from(text: str, secrets: list[str]) -> int:
    """The start of the longest end of the text's last line a form begins with but is not."""
    forms = _forms(tuple(secrets))
    line = text.rfind("\n") + 1
    for index in range(max(line, len(text) - forms.longest + 1), len(text)):
        end = text[index:]
        if any(
            len(end) < len(form) and form.startswith(end) for form in forms.starts.get(end[0], ())
        ):
            return index
    return len(text)


@given(PIECES, SECRETS)
def test_a_short_write_is_redacted_as_a_walk_over_it_would(text, secrets):
    assert redact(text, sorted(secrets)) == walked(text, sorted(secrets))


@given(PIECES, SECRETS)
def test_what_is_held_starts_where_a_walk_over_the_end_would_say(text, secrets):
    forms = _forms(tuple(sorted(secrets)))
    line = text.rfind("\n") + 1
    assert _start_of_a_form(text, forms, line, len(text)) == held_from(text, sorted(secrets))
    assert unfinished_secret(text, sorted(secrets)) <= held_from(text, sorted(secrets))


@given(PIECES, PIECES, SECRETS)
def test_a_cut_before_the_end_cuts_no_secret_in_two(head, tail, secrets):
    """What `end` allows: `text[:cut]` redacted alone, then the rest, shows no more of a
    secret than the whole redacted at once."""
    text, ordered = head + tail, sorted(secrets)
    cut = unfinished_secret(text, ordered, end=len(head))
    assert cut <= len(head)
    in_parts = redact(text[:cut], ordered) + redact(text[cut:], ordered)
    for secret in ordered:
        assert (secret in in_parts) <= (secret in redact(text, ordered))
