"""A mistyped command, backend or model id gets a "did you mean", as a mistyped
key does; a word close to nothing lists the choices without a guess."""

from __future__ import annotations

import pytest

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""
HERO = '[images.hero]\nprompt = "x"\noutput = "hero.png"\n'


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["aply"], "invalid choice: 'aply'; did you mean 'apply'?"),
        (["vaildate"], "invalid choice: 'vaildate'; did you mean 'validate'?"),
        (["cache", "psh"], "invalid choice: 'psh'; did you mean 'push'?"),
    ],
    ids=str,
)
def test_a_mistyped_command_says_did_you_mean(argv, expected, project, run_cli, capsys):
    project({"images.toml": HEAD + HERO})
    assert run_cli(*argv).code == 1
    assert expected in capsys.readouterr().err


def test_a_command_close_to_nothing_lists_the_commands(project, run_cli, capsys):
    project({"images.toml": HEAD + HERO})
    assert run_cli("xyzzy").code == 1
    err = capsys.readouterr().err
    assert "did you mean" not in err and "(choose from 'init'" in err


def test_a_mistyped_backend_says_did_you_mean(project, run_cli):
    project({"images.toml": HEAD.replace('"preview"', '"previw"') + HERO})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.strip().endswith(
        "defaults.backend: unknown backend 'previw' (known: diffusers, nebula, preview); "
        "did you mean 'preview'?"
    )
    project({"images.toml": HEAD + HERO})
    code, _, err = run_cli("plan", "--backend", "Preview")
    assert code == 1
    assert err.strip().endswith("did you mean 'preview'?")


def test_a_mistyped_backends_table_says_did_you_mean(project, run_cli):
    """`[backends.nebulaa]` was passed over as a plugin not installed here, and its
    settings (concurrency, prices) silently dropped; a name close to no backend still
    is one, whose settings are checked where it is installed."""
    table = "[backends.nebulaa]\nconcurrency = 2\n"
    project({"images.toml": HEAD + table + HERO})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml:7:1: backends.nebulaa: unknown backend 'nebulaa' (known: "
        "diffusers, nebula, preview); did you mean 'nebula'?\n"
    )
    # a plugin installed elsewhere may be named near a built-in one: one slip is a typo
    for elsewhere in ("acme-studio", "nebula-local", "previews2"):
        project({"images.toml": HEAD + table.replace("nebulaa", elsewhere) + HERO})
        assert run_cli("validate").code == 0, elsewhere


def test_a_backend_s_number_in_quotes_is_refused_as_the_manifest_s_are(project, run_cli):
    """`concurrency = "4"` and `timeout = "120"` passed in [backends.nebula], where
    `width = "512"` is refused."""
    table = '[backends.nebula]\nconcurrency = "4"\ntimeout = "120"\n'
    project({"images.toml": HEAD + table + HERO})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error: images.toml:8:1: backends.nebula.concurrency: must be an integer, without "
        "quotes (concurrency = 4)",
        "error: images.toml:9:1: backends.nebula.timeout: must be a number, without quotes "
        "(timeout = 120)",
    ]


def test_a_backend_no_plugin_provides_says_to_install_one(project, run_cli):
    """A project cloned where its plugin is not installed: the name is no typo."""
    project({"images.toml": HEAD.replace('"preview"', '"acme"') + HERO})
    code, out, err = run_cli("validate")
    assert code == 1 and out == ""
    assert err == (
        "error: images.toml:3:1: defaults.backend: unknown backend 'acme' "
        "(known: diffusers, nebula, preview); no installed plugin provides it: "
        "install the package that does (docs/plugins.md)\n"
    )


@pytest.mark.parametrize("command", ["validate", "status", "plan"])
def test_a_backend_not_installed_names_the_package_the_lock_records(project, run_cli, command):
    """A teammate's checkout without the plugin: the lock says which distribution made
    the images (`made_with.plugin`), so the error names what to install."""
    root = project({"images.toml": HEAD + HERO})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    text = lock.read_text().replace('backend = "preview"', 'backend = "acme"')
    lock.write_text(text + 'made_with = { plugin = "nebula-acme 1.2.0" }\n')
    (root / "images.toml").write_text(HEAD.replace('"preview"', '"acme"') + HERO)
    code, out, err = run_cli(command)
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml:3:1: defaults.backend: unknown backend 'acme' "
        "(known: diffusers, nebula, preview); the lock records its images as made by "
        "nebula-acme 1.2.0: install nebula-acme (docs/plugins.md)\n"
    )


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("black-forest-labs/FLUX.1-schnel", "black-forest-labs/FLUX.1-schnell"),
        ("flux.1-schnell", "black-forest-labs/FLUX.1-schnell"),
        ("stabilityai/stable-diffusion-xl-base-1", "stabilityai/stable-diffusion-xl-base-1.0"),
        # the model's name alone, or a part that names one model (had no guess)
        ("flux-schnell", "black-forest-labs/FLUX.1-schnell"),
        ("FLUX.1-Fill", "black-forest-labs/FLUX.1-Fill-dev"),
        ("stable-diffusion-xl", "stabilityai/stable-diffusion-xl-base-1.0"),
        ("seedream", "Bytedance-Seedream-3.0"),
    ],
)
def test_a_mistyped_model_id_says_did_you_mean(written, meant, project, run_cli):
    project({"images.toml": HEAD.replace("black-forest-labs/FLUX.1-schnell", written) + HERO})
    code, _, err = run_cli("plan")
    assert code == 1
    line = err.strip()
    assert f"defaults.model: unknown model {written!r} for backend 'preview'" in line
    assert line.endswith(f"; did you mean {meant!r}?")


@pytest.mark.parametrize("output", ["static\\img\\hero.png", "C:\\site\\hero.png"])
def test_a_windows_path_in_double_quotes_says_to_write_slashes(output, project, run_cli):
    project({"images.toml": HEAD + HERO.replace('"hero.png"', f'"{output}"')})
    code, _, err = run_cli("plan")
    assert code == 1
    where, _, said = err.partition(": images.hero.output: ")
    assert where.startswith("error: images.toml:9:")  # where tomllib stopped
    assert said == (
        'a \\ in a "…" string starts an escape in TOML: write paths with / '
        "(static/img/hero.png), as on every system, or in '…' quotes\n"
    )  # had been only "invalid TOML: Unescaped '\\' in a string"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (
            '"a mountain lake',
            "8:26: images.hero.prompt: invalid TOML: the text is not closed on its line: end "
            'it with " (text over several lines goes between """ and """)',
        ),
        (
            "'it's a lake'",
            "8:14: images.hero.prompt: invalid TOML: a ' inside '…' ends the text: write text "
            'that holds an apostrophe in double quotes ("it\'s")',
        ),
        (
            '"a lake",',
            "8:18: images.hero.prompt: invalid TOML: a comma after the value: remove it "
            "(commas go between the items of a [list] or an { inline table })",
        ),
        (
            "a mountain lake",
            '8:10: images.hero.prompt: invalid TOML: text goes in double quotes: prompt = "…"',
        ),
        (
            "True",
            "8:10: images.hero.prompt: invalid TOML: true and false are written in lower case",
        ),
        (
            '"a lake" "at dawn"',
            "8:19: images.hero.prompt: invalid TOML: the line goes on after its value: one "
            "key = value a line, text in double quotes, a comment after #",
        ),
        (
            "'a mountain lake\"",  # no ' after it to the end: the line was not said
            "8:10: images.hero.prompt: invalid TOML: the text is not closed on its line: end "
            "it with ' (text over several lines goes between ''' and ''')",
        ),
        (
            "",
            "8:10: images.hero.prompt: invalid TOML: no value after =: write one (a number, "
            'true or false, text in double quotes "…")',
        ),
        (
            "\u201ca mountain lake\u201d",
            '8:10: images.hero.prompt: invalid TOML: text goes in straight double quotes "…" '
            "(these are a word processor's curly quotes)",
        ),
    ],
    ids=[
        "open-string",
        "apostrophe",
        "comma",
        "unquoted",
        "True",
        "two-values",
        "quotes-mismatched",
        "no-value",
        "curly-quotes",
    ],
)
def test_a_newcomers_toml_mistake_says_what_to_write(value, said, project, run_cli):
    """tomllib's own words named no fix ("Illegal character '\\n'", "Expected newline
    or end of document after a statement", "Invalid value") for the mistakes made
    first; a string opened with ' and closed with " was said with no line at all."""
    project({"images.toml": HEAD + HERO.replace('prompt = "x"', f"prompt = {value}")})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == f"error: images.toml:{said}\n"


def test_a_string_left_open_at_the_end_of_the_file_says_so(project, run_cli):
    project({"images.toml": HEAD + '[images.hero]\noutput = "hero.png"\nprompt = "x'})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err == (
        "error: images.toml:9:10: images.hero.prompt: invalid TOML: the text is not closed "
        'on its line: end it with " (text over several lines goes between """ and """)\n'
    )


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (
            "[images.red potion]",
            "7:13: invalid TOML: a name in a [table] header has no spaces: write "
            "[images.red-potion]",
        ),
        (
            "[images . red  potion ]",
            "7:16: invalid TOML: a name in a [table] header has no spaces: write "
            "[images.red-potion]",
        ),
        (
            "[images.hero  # the banner",
            "7:15: invalid TOML: the [table] header is not closed: end it with ] ([images.hero])",
        ),
        (
            "[images.h\u00e9ro]",
            "7:10: invalid TOML: a name in a [table] header takes ASCII letters, digits, - "
            "and _ (or goes in double quotes)",
        ),
        (
            "[images.hero] banner",
            "7:15: invalid TOML: the line goes on after its [table] header: a comment goes "
            "after #, keys on the lines below",
        ),
        (  # had offered [images-hero], which is no table of images
            "[images hero]",
            "7:9: invalid TOML: a name in a [table] header has no spaces: write [images.hero]",
        ),
    ],
    ids=["space", "spaces-around-dots", "not-closed", "accent", "text-after", "dot-left-out"],
)
def test_a_broken_table_header_says_what_to_write(header, said, project, run_cli):
    """tomllib said "Expected ']' at the end of a table declaration" of a name with a
    space in it, and named the key of the table above the header, which is not where
    the mistake is."""
    project({"images.toml": HEAD + header + '\nprompt = "x"\noutput = "hero.png"\n'})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == f"error: images.toml:{said}\n"


def test_an_image_key_above_every_table_says_where_it_goes(project, run_cli):
    """Keys written at the top of the file, before any [images.NAME]: the list of the
    top-level keys named no way out."""
    project({"images.toml": 'version = 1\nprompt = "a lake"\noutput = "lake.png"\n'})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        f"error: images.toml:{n}:1: {key}: is an image's key, written above every table: "
        "put it under [images.<name>] (one image), or [defaults] (every image)"
        for n, key in ((2, "prompt"), (3, "output"))
    ]


ITEMS = "id,name,price,rarity\nsword,Sword,10.5,rare\n"
ITEM = (
    '[images.item]\nrows = "data/items.csv"\nid = "id"\nprompt = "{name}"\noutput = "i/{id}.png"\n'
)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (
            ("", 'filter = "rarity == rare"\n'),
            "images.item.filter: unknown key (did you mean 'where'?)",
        ),
        (("", "steps = 4\n"), "images.item.steps: unknown key (did you mean 'num_steps'?)"),
        (
            ("", 'at = "items"\n'),
            'images.item.at: goes inside rows, with the file: rows = { file = "…", at = … }',
        ),
        (
            ('rows = "data/items.csv"', 'rows = { path = "data/items.csv" }'),
            "images.item.rows.path: unknown key (did you mean 'file'?)",
        ),
        (
            ("", 'where = "rarity == rare"\n'),
            "images.item.where: data/items.csv has no column 'rare' (to compare with the "
            "text, write it in quotes: 'rare'; columns: id, name, price, rarity)",
        ),
        (
            ("", 'seed = "{price}"\n'),
            "data/items.csv:2: images.item: seed: '{price}' is '10.5' here, and is not an "
            "integer expression (integers, placeholders, + - * only)",
        ),
    ],
    ids=["filter", "steps", "at", "path", "where-text", "seed-value"],
)
def test_a_key_or_value_written_as_another_tool_would_is_named(edit, said, project, run_cli):
    """ "did you mean" by meaning where the spelling is far (`filter` is not `fit`), and
    what a value read as a name or a row's value is."""
    old, new = edit
    item = ITEM.replace(old, new) if old else ITEM + new
    project({"images.toml": HEAD + item, "data/items.csv": ITEMS})
    code, _, err = run_cli("validate")
    assert code == 1 and said in err, err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (
            "resize = 64\n",
            "images.hero.resize: must be a width and a height in brackets (resize = [64, 64]) "
            "(got 64)",
        ),
        (
            "resize = [32]\n",
            "images.hero.resize: must be a width and a height in brackets (resize = [32, 32]) "
            "(got [32])",
        ),
        (
            'style = ["pixel", "dark"]\n',
            'images.hero.style: takes one value in quotes, not a list (style = "pixel"); an '
            "image takes one style: make one that sets what both do",
        ),
        ("widths = 480\n", "images.hero.widths: must be a list, in brackets (widths = [480])"),
    ],
    ids=["resize-number", "resize-one", "two-styles", "widths-number"],
)
def test_a_value_of_the_wrong_shape_says_how_to_write_it(image, said, project, run_cli):
    styles = '[styles.pixel]\nprompt_suffix = "pixel art"\n[styles.dark]\nprompt_suffix = "x"\n'
    project({"images.toml": HEAD + HERO + image + styles})
    code, _, err = run_cli("validate")
    assert code == 1 and said in err, err
    assert len(err.splitlines()) == 1


def test_a_style_s_prompt_every_image_replaces_is_a_warning(project, run_cli):
    """A prompt replaces a style's, as any key does: a style's prompt no image keeps
    reads as words added, and is never used."""
    style = '[styles.pixel]\nprompt = "pixel art"\n'
    image = HERO.replace('prompt = "x"', 'prompt = "x"\nstyle = "pixel"')
    project({"images.toml": HEAD + image + style})
    code, out, err = run_cli("validate")
    assert code == 0 and out == "images.toml: 1 image, valid\n"
    assert err == (
        "warning: images.toml:12:1: styles.pixel.prompt: every image of this style sets its "
        "own prompt, which replaces this one: to add words to theirs, write them as "
        "prompt_prefix or prompt_suffix\n"
    )
    kept = image + '[images.b]\nstyle = "pixel"\noutput = "b.png"\n'  # b takes the style's
    project({"images.toml": HEAD + kept + style})
    assert run_cli("validate").err == ""


def test_a_key_with_a_dot_is_shown_in_quotes_as_toml_writes_it(project, run_cli):
    project({"images.toml": HEAD + HERO.replace("[images.hero]", '[images."hero.png"]')})
    code, _, err = run_cli("validate")
    assert code == 1 and err.startswith('error: images.toml:7:1: images."hero.png": image names')


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (
            'key = "green"',
            'images.hero.key: must be a colour written #RRGGBB (key = "#00FF00") (got "green")',
        ),
        (
            'widths = ["480"]',
            "images.hero.widths.0: must be an integer, without quotes (widths = [480])",
        ),
        (
            'fit = "cover2"',
            "images.hero.fit: must be 'cover', 'contain' or 'exact' (got \"cover2\")",
        ),
        (
            'resize = "32x48"',
            "images.hero.resize: must be a width and a height in brackets (resize = [32, 48]) "
            '(got "32x48")',
        ),
    ],
    ids=["key-colour", "list-item-in-quotes", "one-of-a-few-words", "size-as-text"],
)
def test_a_value_s_fix_is_written_as_the_key_takes_it(line, said, project, run_cli):
    """A key colour said pydantic's regular expression ('string should match pattern
    '^#[0-9A-Fa-f]{6}$''); a list's item in quotes said `(0 = 480)`; `resize = "32x48"`
    offered [64, 64]."""
    hero = HERO.replace('output = "hero.png"\n', f'output = "hero.png"\n{line}\n')
    hero = hero.replace("[images.hero]\n", '[images.hero]\nbackground = "transparent"\n')
    project({"images.toml": HEAD + hero})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err == f"error: images.toml:11:1: {said}\n"


@pytest.mark.parametrize(
    ("tail", "said"),
    [
        ("widths = [", "10:10: images.hero.widths: invalid TOML: the list opened here"),
        ("widths = [480, 960", "10:10: images.hero.widths: invalid TOML: the list opened here"),
        ("widths = [\n  480,\n  960,", "10:10: images.hero.widths: invalid TOML: the list"),
        ("widths = [480,\nseed = 4", "10:10: images.hero.widths: invalid TOML: the list"),
        (
            "checks = { max_kb = 40",
            "10:23: images.hero.checks: invalid TOML: the inline table { … } is not closed on "
            "its line: end it with } (an inline table is written on one line)",
        ),
    ],
    ids=["empty-at-end", "values-at-end", "lines-at-end", "key-after", "inline-table"],
)
def test_a_list_left_open_is_said_where_it_opens(tail, said, project, run_cli):
    """A list never closed said tomllib's 'Invalid value (at end of document)' or
    'Unclosed array', with no line, in validate, plan and every watch round; a key
    after it was told to put its value in quotes."""
    project({"images.toml": HEAD + HERO + tail + "\n"})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: images.toml:{said}"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("tail", "said"),
    [
        ("widths = [\n  480,\n  sixforty,\n]", "12:3: images.hero.widths: invalid TOML: text"),
        ('prompt2 = "a sign: \\"[SALE\\""\nseed = abc', "11:8: images.hero.seed: invalid TOML"),
        ('negative_prompt = """\n- [draft\n"""\nseed = abc', "13:8: images.hero.seed: invalid"),
    ],
    ids=["a-value-in-a-closed-list", "bracket-after-an-escaped-quote", "bracket-in-long-text"],
)
def test_a_list_that_is_closed_is_not_said_to_be_open(tail, said, project, run_cli):
    """The list hint took a bad value inside a list closed below it, and a [ in a
    string of several lines or after an escaped quote, for a list never closed: the
    mistake was said at the wrong line, in the wrong words (an attacker's review)."""
    project({"images.toml": HEAD + HERO + tail + "\n"})
    code, out, err = run_cli("validate")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: images.toml:{said}"), err
    assert "the list opened here" not in err
