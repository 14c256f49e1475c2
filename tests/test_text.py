"""nebula_build.text: outside text made printable, secrets taken out."""

from __future__ import annotations

import argparse
import base64
import re
import shlex
import unicodedata

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from nebula_build.text import (
    REDACTED,
    escaped_value,
    model_id_problem,
    plural,
    printable,
    redact,
    shell_operands,
    shell_option,
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain words", "plain words"),
        ("\x1b[2J\x1b[Hall images generated", "all images generated"),
        ("\x1b[1;31mred\x1b[0m", "red"),
        ("\x1b]0;a window title\x07after", "after"),
        ("\x1b]8;;https://evil.test\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1bPdevice control\x1b\\after", "after"),
        ("\x9b2J8-bit CSI", "8-bit CSI"),
        ("\x1b7saved\x1b8", "saved"),
        ("line one\nline two\r\n\tindented", "line one line two indented"),
        ("  padded   out  ", "padded out"),
        ("bell\x07 back\x08space nul\x00 del\x7f", "bell backspace nul del"),
        ("abc\u202edcba\u2066x\u2069", "abcdcbax"),
        ("lone \udc80 surrogate", "lone surrogate"),
        ("ünïcödé and 漢字 stay", "ünïcödé and 漢字 stay"),
        ("", ""),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown


def test_printable_cuts_at_the_limit():
    assert printable("a" * 50, limit=10) == "a" * 9 + "…"
    assert printable("short", limit=10) == "short"
    assert printable("\x1b[31m" * 1000 + "visible", limit=10) == ""  # what a terminal shows


@given(st.text())
def test_printable_leaves_no_control_character(text):
    line = printable(text, limit=200)
    assert len(line) <= 200
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in line)
    assert "\u202e" not in line and line == line.strip()


@given(st.text(alphabet=st.sampled_from("ab /.-_\t\x1b[0m"), max_size=60))
@example("out/01/sprite-01000.png")
@example("two  spaces")
@example(" leading and trailing ")
@example("a\tb")
@example("\x1b[31mred")
def test_printable_answers_plain_text_as_the_full_cleaning_does(text):
    # a NUL in front takes the full path (the NUL is removed) whatever the text is
    assert printable(text) == printable("\x00" + text)
    assert printable(text, limit=5) == printable("\x00" + text, limit=5)


KEY = "ak_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {KEY}",
        f"{KEY}{KEY}",
        f"cut short: {KEY[:10]}",
        f"cut at the start: {KEY[-9:]}",
        f"split: {KEY[:15]} {KEY[15:]}",
        f"encoded: {base64.b64encode(KEY.encode()).decode()}",
    ],
)
def test_redact_takes_the_key_out_in_every_form(text):
    redacted = redact(text, [KEY])
    assert REDACTED in redacted
    for start in range(len(KEY) - 7):
        assert KEY[start : start + 8] not in redacted


def test_redact_leaves_other_text_alone():
    assert redact("no secret here: ak_other", [KEY]) == "no secret here: ak_other"
    assert redact("text", []) == "text"
    assert redact("text", [""]) == "text"


def test_redact_a_short_secret_only_whole():
    assert redact("the pin is 1234, not 12", ["1234"]) == f"the pin is {REDACTED}, not 12"


def test_no_format_character_survives_so_none_can_hide_a_secret():
    import sys

    key = "ak_live_SECRET0123456789abcdef"
    assert redact(printable("key " + "\u200b".join(key) + " end"), [key]) == "key [redacted] end"
    hidden = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Cf" and printable(f"a{chr(code)}b") != "ab"
    ]
    assert hidden == []


def test_plural_says_one_thing_in_the_singular():
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(3, "image") == "3 images"
    assert plural(2, "cache entry", "cache entries") == "2 cache entries"


@pytest.mark.parametrize(
    "model",
    [
        "black-forest-labs/FLUX.1-schnell",
        "black-forest-labs/FLUX.1-Fill-dev",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "Bytedance-Seedream-3.0",
        "Bytedance-Seedream-3.0-2K",
        "bytedance/seedream-3",
        "studio/castle-lora-merged",
        "org/model@main",
        "llava:13b",
        "m",
    ],
)
def test_every_real_model_id_is_a_model_id(model):
    assert model_id_problem(model) is None


@pytest.mark.parametrize(
    "model",
    [
        "",
        "x\n::warning title=INJ::INJECTED",
        "::add-mask::x",
        "##[error]x",
        "-flag",
        "a`b",
        "a b",
        "<img src=x>",
        "a|b",
        "x" * 201,
        "ｆｕｌｌ",
    ],
)
def test_a_model_id_has_a_safe_alphabet(model):
    assert model_id_problem(model) is not None


@given(st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1))
def test_a_name_shown_in_a_command_reaches_argparse_whole(name):
    assume(name != "--")  # argparse reads `--more=--` as no value at all
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--more")
    parser.add_argument("-x", action="store_true")  # a short option a name could resemble
    parser.add_argument("name")
    parser.add_argument("index", nargs="?")
    line = f"{shell_option('--more', name)} {shell_operands(name, '@1')}"
    args = parser.parse_args(shlex.split(line))
    assert (args.more, args.name, args.index) == (name, name, "@1")


def test_shown_url_keeps_names_and_drops_what_may_be_a_credential():
    from nebula_build.text import shown_url

    for kept in ("s3://my-bucket/nebula-build", "az://acct/container/site-cache-2024", "gs://b/p"):
        assert shown_url(kept) == kept
    assert shown_url("s3://u:p@b/x/y?sig=abc#f") == "s3://b/x/y"
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
    assert shown_url(f"s3://b/{token}/cache") == "s3://b/…/cache"
    assert shown_url("s3://b/AKIAIOSFODNN7EXAMPLE/x") == "s3://b/…/x"


_AN_ESCAPE = re.compile(r"\\(\\|[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _read_back(shown: str) -> str:
    """The value `escaped_value` showed: read as typed where no escape is in it."""
    if not re.search(r"\\(?:[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})", shown):
        return shown
    named = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
    return _AN_ESCAPE.sub(lambda m: named.get(m[1]) or chr(int(m[1][1:], 16)), shown)


@given(st.text(alphabet=st.sampled_from("\\xnu1b0aZ \x1b\n\u202e\x85")))
@example("C:\\site\\x.png")
@example("\\\\server\\share")
@example("a\\x1b")
def test_escaped_value_is_read_back_as_the_value(text):
    shown = escaped_value(text)
    assert shown.isprintable()
    assert _read_back(shown) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("C:\\site\\x.png", "C:\\site\\x.png"),
        ("\\\\server\\share", "\\\\server\\share"),
        ("a\\x1b", "a\\\\x1b"),
        ("a\x1b", "a\\x1b"),
        ("C:\\new\x1b", "C:\\\\new\\x1b"),
    ],
)
def test_escaped_value_doubles_backslashes_only_where_one_could_be_misread(text, shown):
    assert escaped_value(text) == shown


def test_a_key_in_look_alikes_is_taken_out_and_the_rest_stays_as_written():
    """The whole message came back folded to ASCII: a file name in another script, the
    arrows and the accents were gone with the key."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in KEY)
    said = redact(f"error: {fullwidth} refused — ファイル 猫.png → café", [KEY])
    assert said == f"error: {REDACTED} refused — ファイル 猫.png → café"
    accented = "\u0301".join(KEY)
    assert redact(f"é {accented} é", [KEY]) == f"é {REDACTED} é"


def test_a_short_key_of_words_is_not_looked_for_between_other_words():
    """A key's letters and digits are looked for spread out only where there are 16 or
    more: `ak_dry_run` was found in "a weak dry run", `…-12345678` in "12,345,678"."""
    assert redact("a weak dry run, then AK_DRY_RUN", ["ak_dry_run"]) == (
        f"a weak dry run, then {REDACTED}"
    )
    assert redact("wrote 12,345,678 bytes", ["пароль-секрет-12345678"]) == (
        "wrote 12,345,678 bytes"
    )
    assert redact(" ".join(KEY[i : i + 7] for i in range(0, len(KEY), 7)), [KEY]) == REDACTED
