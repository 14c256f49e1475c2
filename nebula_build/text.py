"""Text from outside (a server's answer, a plugin's message) made safe to show.

`printable` makes one harmless line: no terminal escape sequences, no control
characters, no bidirectional overrides; `quoted` puts one in quotes, as typed, and
`escaped` writes what a terminal would not show as it is as its escape, and
`json_text` writes a command's --json answer with those characters escaped too, and
`page_text` a prompt as a page shows it.
`redact` takes secrets out, whole or in fragments, and `shown_url` names a configured
URL without the parts that may hold one (`url_secrets`). `plural` counts things in words
("1 image", "2 images"), and `human_size` says a size ("5.8 KiB").
`made_with_problem` checks a backend's provenance record (a plugin's answer, a
lock's entry) and `made_by_stand_in` reads its placeholder mark; `model_id_problem`
checks a model id from a manifest. `shell_option` and `shell_operands` write an
image's name into a command shown to run. Pure functions of the standard library:
every layer may use them.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

REDACTED = "[redacted]"
#: characters in an image's name, a matrix's or a data file's values included: it is
#: printed in every plan and apply, and a lock may not name one longer
MAX_IMAGE_NAME = 1024
#: the shortest run of a secret's characters that `redact` still removes
MIN_SECRET_FRAGMENT = 8
#: the fewest letters and digits of a secret that `redact` still finds with other
#: characters between them: a key of words (`ak_dry_run`) would be found in a sentence
MIN_SPREAD_SECRET = 16

_ESCAPE_SEQUENCE = re.compile(
    r"""
    (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?              # CSI: colours, cursor moves, clear screen
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])         # OSC, DCS, SOS, PM, APC: up to their end
      [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?
    | \x1b [ -/]* [0-~]?                              # the other escape sequences
    """,
    re.VERBOSE,
)
_WHITESPACE = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029 ]+")
_SPACES = re.compile(r" {2,}")
#: controls, format characters (bidirectional overrides show text in another order than
#: it is; zero-width ones hide inside a word, a secret included) and lone surrogates
#: (which no UTF-8 stream or file can take)
_INVISIBLE = re.compile(
    # fillers that show as blanks: Hangul's, the braille blank, Khmer's inherent vowels
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
    "\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f"
    "\u0890\u0891\u08e2\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001-\U000e007f]"
)


def printable(text: str, limit: int | None = None) -> str:
    """`text` as one line a terminal shows as it reads: escape sequences and control
    characters removed, line breaks and tabs turned into single spaces, and at most
    `limit` characters (cut with "…")."""
    if limit is not None:
        text = text[: limit * 4 + 64]  # room for what is removed; the rest is never shown
    if _plain(text):  # most text (every path `status` lists): nothing to remove
        line = text
    else:
        spaced = _WHITESPACE.sub(" ", _ESCAPE_SEQUENCE.sub("", text))
        line = _SPACES.sub(" ", _INVISIBLE.sub("", spaced)).strip()
    if limit is not None and len(line) > limit:
        return line[: max(0, limit - 1)].rstrip() + "…"
    return line


#: invisible characters that belong in words (joiners in emoji and Persian, the soft
#: hyphen): not what `shows_as_it_is` refuses
_IN_WORDS = str.maketrans("", "", "\u200c\u200d\u00ad")


def shows_as_it_is(text: str) -> bool:
    """Whether `text` is on a terminal what it is, as every image's name is: no escape
    sequence, control, line break, bidirectional override or two spaces."""
    plain = text.translate(_IN_WORDS)
    return printable(plain) == plain


def quoted(text: str, limit: int | None = None) -> str:
    """`text` in quotes as a message shows a value from a manifest: as written (a
    Windows path `C:\\site\\x.png` with the backslashes typed, not the doubled ones of
    `repr`), but with what a terminal would not show as it is (a control, a
    bidirectional override, a zero-width space) written as its escape (`\\u202e`), so
    the value shown is never another than the one read; in double quotes where it holds
    a single one and no double one, as `repr` chooses."""
    if limit is not None:
        text = text[: limit * 4 + 64]
    line = escaped_value(text)
    if limit is not None and len(line) > limit:
        line = line[: max(0, limit - 1)].rstrip() + "…"
    quote = '"' if "'" in line and '"' not in line else "'"
    return f"{quote}{line}{quote}"


#: what `quoted` writes as an escape: the invisible, and the line breaks beyond ASCII
_UNSHOWN = re.compile(f"{_INVISIBLE.pattern}|[\u2028\u2029]")
#: the same, for a writer of another format (the lock's TOML strings)
UNSHOWN_CHARACTERS = _UNSHOWN


def escaped(text: str) -> str:
    """`text` with what a terminal would not show as it is (a control, a bidirectional
    override, a zero-width space, a line break beyond ASCII) written as its escape
    (`\\x1b`, `\\u202e`); the rest, a backslash too, as it is: for a line whose values
    `escaped_value` wrote, which it keeps as they are."""
    return _UNSHOWN.sub(_escaped, text)


#: a backslash that, with what follows it, reads as an escape `escaped` writes: a value
#: without one (`C:\site`, `\\server\share`) is told apart from every value shown
#: with its backslashes doubled, which holds one
_READS_AS_ESCAPE = re.compile(r"\\(?:[nrt]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def escaped_value(text: str) -> str:
    """One value (a name, a path, a word of the command line) as a message shows it:
    `escaped`, and told apart from every other value. A typed `\\x1b` (four characters)
    and an escape character would both show as `\\x1b`, so where a backslash could be
    read as an escape, or the value needs one, each backslash is doubled (`\\\\x1b`);
    otherwise it is shown as typed (`C:\\site\\x.png`). Escape a value once, where it
    enters a message: a line escaped with `escaped` after it keeps it as it is."""
    line = escaped(text)
    if "\\" in text and (line != text or _READS_AS_ESCAPE.search(text)):
        return escaped(text.replace("\\", "\\\\"))
    return line


#: what `escaped` writes but a page shows as it is: tabs and the ASCII line breaks
_UNSHOWN_ON_A_PAGE = re.compile(
    _UNSHOWN.pattern.replace("\x00-\x1f", "\x00-\x08\x0b\x0c\x0e-\x1f", 1)
)


#: `_READS_AS_ESCAPE` but for `\\n`, `\\r` and `\\t`, which `page_text` never writes
_READS_AS_ESCAPE_ON_A_PAGE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def page_text(text: str) -> str:
    """Text from a manifest (a prompt) as a page shows it: as `escaped_value` writes it,
    a bidirectional override (which shows the rest of the text reversed), a zero-width
    space or a control made visible as its escape (`\\u202e`), but line breaks and tabs
    kept. The page escapes it as HTML after this, as any text."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # most prompts: checked at C speed, not searched (100,000 in 25 ms, not 140)
    line = _UNSHOWN_ON_A_PAGE.sub(_escaped, text)
    if "\\" in text and (line != text or _READS_AS_ESCAPE_ON_A_PAGE.search(text)):
        return _UNSHOWN_ON_A_PAGE.sub(_escaped, text.replace("\\", "\\\\"))
    return line


def json_text(data: object, *, default: Callable[[Any], object] | None = None) -> str:
    """`data` as the JSON a command prints under --json: UTF-8 as it is, but what a
    terminal would not show as it is (a C1 control, a bidirectional override, a
    zero-width space) written as its JSON escape (`\\u202e`), which JSON already does
    for the C0 controls; the value read back is the same."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=default)
    if text.isascii() and "\x7f" not in text:  # JSON escaped every other ASCII control
        return text
    return _JSON_UNSHOWN.sub(lambda found: json.dumps(found[0])[1:-1], text)


#: what `json_text` escapes: `_UNSHOWN` but the C0 controls, which JSON escapes itself
#: (one class, no look-ahead: it runs over every character of the answer)
_JSON_UNSHOWN = re.compile(_UNSHOWN.pattern.replace("\x00-\x1f", "", 1))


def _escaped(found: re.Match[str]) -> str:
    code = ord(found[0])
    if code < 0x80:
        return repr(found[0])[1:-1]
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _plain(text: str) -> bool:
    """Whether `text` is already one printable line: visible ASCII and single spaces
    between words, which `printable` would return as it is."""
    return (
        text.isascii()
        and text.isprintable()
        and "  " not in text
        and not text.startswith(" ")
        and not text.endswith(" ")
    )


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 image', '3 images', '0 images'; `many` where adding an s is wrong
    ('1 cache entry', '2 cache entries')."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


#: the units `human_size` says sizes in: the binary ones of every limit shown (64 MiB)
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_size(count: int) -> str:
    """A size in bytes as every message says one: '0 bytes', '1 byte', '512 bytes',
    '5.8 KiB', '12.3 MiB', '1.2 GiB' (one decimal, in the largest unit under 1024 of
    it once rounded)."""
    if count < 1024:
        return plural(count, "byte")
    value = count / 1024
    for unit in _SIZE_UNITS[:-1]:
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_SIZE_UNITS[-1]}"


def shown_url(url: str) -> str:
    """A configured URL (a remote cache's) as a message names it: scheme, host, port and
    path, enough to tell which it is, but no user name or password, no query and no
    fragment, and each part of the path that looks like a token (`ghp_…`, a long run of
    letters and digits) said as "…": any of them may carry a credential (a signed URL's
    `?X-Amz-Signature=…`, `?sig=…`) that no one declared a secret."""
    from urllib.parse import urlsplit  # only for a message that names one

    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    path = "/".join("…" if looks_like_token(part) else part for part in parts.path.split("/"))
    return escaped_value(f"{parts.scheme}://{host}{path}" if parts.scheme else path)


def url_secrets(url: str) -> list[str]:
    """What `shown_url` leaves out of `url`, for `redact` to take out of a library's
    message that quotes the URL: the user info, the query and each of its values, the
    fragment, the path's token-like parts."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo, userinfo.partition(":")[2], parts.query, parts.fragment]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [part for part in parts.path.split("/") if looks_like_token(part)]
    return [secret for secret in found if secret]


#: a token's usual alphabet, and the separators a name's words stand between
_TOKEN_PIECES = re.compile(r"[-_.~]")


def looks_like_token(word: str) -> bool:
    """Whether `word` (a part of a URL's path) may be a credential rather than a name:
    a piece of it between `-`, `_`, `.` or `~` of 16 characters or more that mixes
    letters and digits (`ghp_…`, an AWS key, a signature), or of 32 or more."""
    for piece in _TOKEN_PIECES.split(word):
        if len(piece) >= 32:
            return True
        if len(piece) >= 16 and any(c.isdigit() for c in piece) and any(c.isalpha() for c in piece):
            return True
    return False


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "[redacted]": the value itself, lowercased
    or uppercased, its base64 (at any offset in what is encoded: `Bearer <key>`), its
    URL-encoded form (a token in a query string, as an HTTP library's error quotes it),
    any run of at least MIN_SECRET_FRAGMENT of its characters (a key cut short), and its
    letters and digits with anything between them (split into short pieces, spaced
    out). Text that is not ASCII is also read as the ASCII it looks like (fullwidth,
    accented): a secret found only so returns that ASCII, redacted. A form shorter than
    MIN_SECRET_FRAGMENT is taken only where no letter or digit stands beside it. Its
    cost follows the text and the secrets, never their product (a 3 KB key in a 1 MB
    message took 5 s)."""
    forms = _forms(tuple(secrets))
    text = _redact_forms(text, forms)
    if not text.isascii():  # a key in look-alikes: fullwidth, accented, spaced by U+00A0
        folded = _to_ascii(text)
        if _redact_forms(folded, forms) != folded:  # rare: found only so
            return _redact_look_alikes(text, forms)
    return text


#: what `_redact_forms` puts in place of each character it takes out, with `hide`
_HIDDEN = "\x00"


def _redact_forms(text: str, forms: _Forms, *, hide: bool = False) -> str:
    """`text` with the forms taken out: each stretch "[redacted]", or with `hide` each
    character `_HIDDEN` (what is taken out stays where it was)."""

    def cover(found: str) -> str:
        return _HIDDEN * len(found) if hide else REDACTED

    for secret in forms.whole:  # whole values first: a fragment pass must not cut one in two
        text = text.replace(secret, cover(secret))
    if forms.standing_alone is not None:  # a placeholder ("x", "er") is in many a word
        text = forms.standing_alone.sub(lambda found: cover(found[0]), text)
    if forms.windows:
        text = _redact_fragments(text, forms.windows, hide=hide)
    if forms.spread:
        text = _redact_spread(text, forms.spread, hide=hide)
    return text


def _redact_look_alikes(text: str, forms: _Forms) -> str:
    """`text` with the secrets that its ASCII reading shows taken out of it, and the
    rest of it as it is (a file name in another script, an arrow)."""
    import unicodedata

    pieces = [c if c.isascii() else _to_ascii(unicodedata.normalize("NFKD", c)) for c in text]
    folded = "".join(pieces)
    hidden = _redact_forms(folded, forms, hide=True)
    covered: list[bool] = []
    place = 0
    for piece in pieces:
        taken = any(
            hidden[at] == _HIDDEN and folded[at] != _HIDDEN
            for at in range(place, place + len(piece))
        )
        # a mark with no ASCII of its own (an accent) goes with the letter before it
        covered.append(taken if piece else bool(covered and covered[-1]))
        place += len(piece)
    shown: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            shown.append(char)
        elif index == 0 or not covered[index - 1]:
            shown.append(REDACTED)
    return "".join(shown)


def _to_ascii(text: str) -> str:
    """`text` as the ASCII it reads as: compatibility forms decomposed (fullwidth `ａ`,
    U+00A0), then every character still not ASCII (accents, marks) left out."""
    import unicodedata

    return _NOT_ASCII.sub("", unicodedata.normalize("NFKD", text))


_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
#: the bytes `_NOT_ALNUM` matches, for `bytes.translate` (many times faster than re)
_NOT_ALNUM_BYTES = bytes(b for b in range(256) if not chr(b).isascii() or not chr(b).isalnum())


def _redact_spread(text: str, spread: tuple[str, ...], *, hide: bool = False) -> str:
    """Remove a secret spelled out with other characters between its letters and digits
    (`a-k-_-Z-x…`, pieces of 7 on their own lines): `spread` holds each secret's letters
    and digits, lowercased."""
    squeezed = text.encode("ascii", "ignore").translate(None, _NOT_ALNUM_BYTES).lower()
    if not any(letters.encode() in squeezed for letters in spread):
        return text  # the usual case, found at C speed
    squeezed_text = _NOT_ALNUM.sub("", text).lower()
    places = [match.start() for match in re.finditer(r"[A-Za-z0-9]", text)]
    cuts: list[tuple[int, int]] = []
    for letters in spread:
        start = squeezed_text.find(letters)
        while start != -1:
            cuts.append((places[start], places[start + len(letters) - 1] + 1))
            start = squeezed_text.find(letters, start + len(letters))
    pieces, done = [], 0
    for begin, end in sorted(cuts):
        if begin >= done:
            pieces += [text[done:begin], _HIDDEN * (end - begin) if hide else REDACTED]
        elif end > done and hide:
            pieces.append(_HIDDEN * (end - done))
        done = max(done, end)
    return "".join([*pieces, text[done:]])


class _Forms(NamedTuple):
    #: the forms of MIN_SECRET_FRAGMENT characters or more, longest first
    whole: tuple[str, ...]
    #: the shorter forms, where no letter or digit stands beside them
    standing_alone: re.Pattern[str] | None
    #: every run of MIN_SECRET_FRAGMENT characters of the longer forms
    windows: frozenset[str]
    #: the forms shorter than MIN_SECRET_FRAGMENT
    short: tuple[str, ...]
    #: every form, by its first character
    starts: dict[str, tuple[str, ...]]
    #: the length of the longest form
    longest: int
    #: each secret's letters and digits, lowercased, where there are MIN_SPREAD_SECRET
    spread: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4)  # a backend's secrets, asked for at every message
def _forms(secrets: tuple[str, ...]) -> _Forms:
    forms: set[str] = set()
    shifted: set[str] = set()  # base64 at an offset: taken whole, never in pieces
    spread: set[str] = set()
    for secret in secrets:
        if secret:
            # as it is, and as a header or host name lowercased it (or a shout uppercased)
            forms |= {secret, secret.lower(), secret.upper()}
            encoded = base64.b64encode(secret.encode("utf-8", "replace")).decode("ascii")
            forms.add(encoded.rstrip("="))
            shifted |= _base64_forms(secret.encode("utf-8", "replace"))
            if len(letters := _NOT_ALNUM.sub("", secret).lower()) >= MIN_SPREAD_SECRET:
                spread.add(letters)
            if not _URL_SAFE.fullmatch(secret):
                from urllib.parse import quote, quote_plus  # only for such a secret

                forms |= {quote(secret, safe=""), quote_plus(secret, safe="")}
    size = MIN_SECRET_FRAGMENT
    pieced = [form for form in forms if len(form) >= size]
    ordered = sorted(forms | shifted, key=len, reverse=True)
    whole = tuple(form for form in ordered if len(form) >= size)
    short = "|".join(re.escape(form) for form in ordered if len(form) < size)
    starts: dict[str, tuple[str, ...]] = {}
    for form in ordered:
        starts[form[0]] = (*starts.get(form[0], ()), form)
    return _Forms(
        whole,
        re.compile(rf"(?<![A-Za-z0-9])(?:{short})(?![A-Za-z0-9])") if short else None,
        frozenset(form[i : i + size] for form in pieced for i in range(len(form) - size + 1)),
        tuple(form for form in ordered if len(form) < size),
        starts,
        len(ordered[0]) if ordered else 0,
        tuple(sorted(spread, key=len, reverse=True)),
    )


def _base64_forms(secret: bytes) -> set[str]:
    """The base64 of `secret` wherever it starts in what is encoded (`Bearer ` before
    it shifts it by one byte): at each of the three offsets, the characters that only
    its own bits make."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret).decode("ascii")
        first = -(-8 * offset // 6)  # the first character no byte before it takes part in
        last = 8 * (offset + len(secret)) // 6  # past it, the padding's bits or the next byte's
        if last - first >= MIN_SECRET_FRAGMENT:
            forms.add(encoded[first:last])
    return forms


def unfinished_secret(text: str, secrets: Iterable[str], *, end: int | None = None) -> int:
    """Where a secret may have begun that `text` ends before it ends: the start of the
    longest end of `text` that a form of a secret (see `redact`) begins with, moved back
    before any form or piece of one it would cut in two; `len(text)` where there is none.
    A stream that writes `text[:index]` redacted now, and holds the rest for what comes
    next, redacts a secret written in two writes as it would the whole. With `end`, the
    same for `text[:end]`, where what follows it is known: a stream that must pass on
    part of a long line cuts it there, at most at `end`."""
    forms = _forms(tuple(secrets))
    end = len(text) if end is None else end
    cut = _start_of_a_form(text, forms, text.rfind("\n", 0, end) + 1, end)
    while cut < len(text) and (earlier := _before_pieces_across(text, cut, forms)) < cut:
        cut = earlier
    return cut


def _start_of_a_form(text: str, forms: _Forms, line: int, end: int) -> int:
    """The start of the longest stretch of `text` that ends at `end`, from `line` on, that a
    form begins with but is not (a line break ends every secret)."""
    first = max(line, end - forms.longest + 1)
    found = end
    for char, of_char in forms.starts.items():  # a few: found at C speed, not one by one
        index = text.find(char, first, found)
        while index != -1:
            stretch = text[index:end]
            if any(len(stretch) < len(form) and form.startswith(stretch) for form in of_char):
                found = index
                break
            index = text.find(char, index + 1, found)
    return found


def _before_pieces_across(text: str, cut: int, forms: _Forms) -> int:
    """`cut`, or the start of the first form or fragment of a form that runs across it."""
    found = [
        start
        for form in (*forms.whole, *forms.short)
        if (start := text.find(form, max(0, cut - len(form) + 1), cut + len(form) - 1)) != -1
    ]
    size = MIN_SECRET_FRAGMENT
    found += [
        start
        for start in range(max(0, cut - size + 1), cut)
        if text[start : start + size] in forms.windows
    ]
    return min(found, default=cut)


#: what a URL carries as it is: a secret of these characters alone has no other form there
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
#: up to this many windows, each is looked for in the text at C speed; past it, the text's
#: own windows are looked up in them, one at a time
_WINDOWS_SEARCHED = 256


def _redact_fragments(text: str, windows: frozenset[str], *, hide: bool = False) -> str:
    """Remove every stretch of `text` made of `windows` (of MIN_SECRET_FRAGMENT characters)."""
    size = MIN_SECRET_FRAGMENT
    starts = range(len(text) - size + 1)
    if len(starts) > len(windows) and len(windows) <= _WINDOWS_SEARCHED:
        if not any(window in text for window in windows):
            return text  # the usual case, found at C speed: no character-by-character walk
    elif windows.isdisjoint(map(text.__getitem__, map(slice, starts, range(size, len(text) + 1)))):
        return text  # fewer windows of the text (a short write) than of the secrets
    covered = [False] * len(text)
    for start in starts:
        if text[start : start + size] in windows:
            covered[start : start + size] = [True] * size
    pieces: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            pieces.append(char)
        elif hide:
            pieces.append(_HIDDEN)
        elif index == 0 or not covered[index - 1]:
            pieces.append(REDACTED)
    return "".join(pieces)


#: a model id: a letter or digit, then letters, digits and `._/:+@-`. Enough for every
#: provider's ids (`black-forest-labs/FLUX.1-schnell`, `Bytedance-Seedream-3.0-2K`,
#: `org/model@rev`), and no id can start a line a CI runner reads as a command
#: (`::warning`, `##[error]`) or break out of a job summary's Markdown.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:+@-]{0,199}")


def model_id_problem(model: str) -> str | None:
    """What is wrong with a model id from a manifest, or None."""
    if MODEL_ID.fullmatch(model):
        return None
    return "a model id is 1-200 letters, digits and . _ / : + @ -, starting with a letter or digit"


#: a provenance record (`GenerationResult.made_with`, a lock entry's `made_with`):
#: at most this many entries, keys like `dtype`, values one short printable line
MADE_WITH_ENTRIES = 16
MADE_WITH_VALUE = 200
_MADE_WITH_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")


#: a record's size as JSON with every non-ASCII character escaped (as the cache and
#: the remote cache store it): within their limits, whatever the characters
MADE_WITH_BYTES = 4096


def made_with_problem(record: object) -> str | None:
    """What is wrong with a provenance record from outside, or None."""
    if not isinstance(record, dict) or len(record) > MADE_WITH_ENTRIES:
        return f"must be a table of at most {MADE_WITH_ENTRIES} settings"
    for key, value in record.items():
        if not isinstance(key, str) or not _MADE_WITH_KEY.fullmatch(key):
            return "has a key that is not a lowercase name"
        if not isinstance(value, str) or len(value) > MADE_WITH_VALUE or printable(value) != value:
            return f"`{key}` must be one printable line of at most {MADE_WITH_VALUE} characters"
    if len(json.dumps(record)) > MADE_WITH_BYTES:
        return f"must take at most {MADE_WITH_BYTES} bytes as JSON"
    return None


#: the `made_with` entry of an image a stand-in for a service made (the loopback API of
#: `python -m nebula_build.testing`): a placeholder with the real image's key
STAND_IN_SERVER = ("server", "stand-in")


def made_by_stand_in(made_with: object) -> bool:
    """Whether a provenance record marks a stand-in's placeholder (`STAND_IN_SERVER`)."""
    name, value = STAND_IN_SERVER
    return isinstance(made_with, Mapping) and made_with.get(name) == value


def file_key(path: str) -> str:
    """`path` as macOS and Windows tell files apart: in Unicode's composed form (NFC:
    an accent typed two ways is one file on macOS), each character lower-cased where
    that keeps it one character (as NTFS: `ß` is not `ss`, `ﬁ` not `fi`)."""
    if path.isascii():
        return path.lower()
    import unicodedata  # only for a name outside ASCII

    text = unicodedata.normalize("NFC", path)
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def file_keys(paths: Iterable[str]) -> set[str]:
    """`file_key` of each path: the same, a pass over 100,000 paths in about 14 ms."""
    return {path.lower() if path.isascii() else file_key(path) for path in paths}


def shell_option(option: str, value: str) -> str:
    """`option VALUE` for a command shown to run: the value shell-quoted, and joined
    with `=` when it begins with '-' (`--more -x` takes `-x` for an option)."""
    return f"{option}{'=' if value.startswith('-') else ' '}{shlex.quote(value)}"


def shell_operands(*operands: object) -> str:
    """The last words of a command shown to run: each shell-quoted, after `--` when
    one begins with '-' (else it is taken for an option)."""
    words = [str(operand) for operand in operands]
    dashes = ["--"] if any(word.startswith("-") for word in words) else []
    return " ".join(dashes + [shlex.quote(word) for word in words])
