"""A pull request's lock and manifest are read within bounds: a file past its size, or
one that asks tomllib for more values than any real one holds (64 MiB of `[t1]`,
`[t2]`, … took 95 s and 5.8 GB), is one line naming the file, refused before it is
parsed; a real lock of any size is still read, a batch of its tables at a time."""

from __future__ import annotations

import json
import time

import pytest

from nebula_build.state import lockfile
from tests.manifests import PREVIEW

IMAGE = '\n[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
LOCK_HEAD = "version = 1\n"
COMMANDS = ("plan", "apply", "status")


def entry(name: str, n: int) -> str:
    digest = f"{n:064x}"
    return (
        f'\n[images.{name}]\nbackend = "preview"\nmodel = "m"\noutput = "out/{name}.png"\n'
        f'digest = "{digest}"\ngeneration_key = "{digest}"\noutput_key = "{digest}"\n'
        'params = { prompt = "a, b, c.", seed = 1 }\n'
    )


def one_line_error(run_cli, command: str) -> str:
    started = time.perf_counter()
    code, out, err = run_cli(command)
    elapsed = time.perf_counter() - started
    lines = err.splitlines()
    assert code == 1, (command, out[:500], err[:2000])
    assert len(lines) == 1 and lines[0].startswith("error: "), err[:2000]
    assert "Traceback" not in err
    assert elapsed < 20, (command, elapsed)
    return lines[0]


def test_a_lock_past_its_size_is_refused_before_it_is_read(project, run_cli, monkeypatch):
    monkeypatch.setattr(lockfile, "MAX_LOCK_BYTES", 1 << 20)
    root = project({"images.toml": PREVIEW + IMAGE, "images.lock": LOCK_HEAD})
    with (root / "images.lock").open("a") as handle:
        handle.truncate((1 << 20) + 1)  # sparse: nothing to read
    for command in COMMANDS:
        line = one_line_error(run_cli, command)
        assert "images.lock: 1,048,577 bytes, more than a lock may have (1 MiB)" in line


#: each asks tomllib for millions of values in a few MiB
CRAFTED = {
    "tables": "".join(f"[t{n}]\n" for n in range(400_000)),
    "arrays": "x = [" + "[]," * 1_000_000 + "]\n",
    "dotted keys": "".join(f"k{n}.v = 1\n" for n in range(300_000)),
}


@pytest.mark.parametrize("form", list(CRAFTED))
def test_a_lock_that_asks_for_millions_of_values_is_refused_unparsed(form, project, run_cli):
    project({"images.toml": PREVIEW + IMAGE, "images.lock": LOCK_HEAD + CRAFTED[form]})
    for command in COMMANDS:
        line = one_line_error(run_cli, command)
        assert "images.lock asks for more than 1,000,000 TOML values" in line
        assert "not laid out as nebula-build writes a lock" in line


@pytest.fixture
def light_whole(monkeypatch):
    """A lock parsed whole may weigh 20,000: 2,000 entries weigh more."""
    monkeypatch.setattr(lockfile, "MAX_WHOLE_WEIGHT", 20_000)


def test_an_image_table_that_asks_for_too_many_values_names_the_image(
    project, run_cli, light_whole
):
    tables = "".join(entry(f"i{n}", n) for n in range(2_000))
    crafted = "\n[images.bad]\nx = [" + "[]," * 20_000 + "]\n"
    project({"images.toml": PREVIEW + IMAGE, "images.lock": LOCK_HEAD + tables + crafted})
    line = one_line_error(run_cli, "plan")
    assert "images.lock: [images.bad]: asks for more than 16,384 TOML values" in line


def test_a_large_lock_as_nebula_build_writes_it_is_read_a_batch_of_tables_at_a_time(
    project, run_cli, light_whole
):
    """Entries that weigh more than a lock parsed whole may are still read, every entry
    checked (the last one's problem is found), a problem's line is the file's."""
    tables = "".join(entry(f"i{n:05}", n) for n in range(2_000))
    lock = LOCK_HEAD + tables
    root = project({"images.toml": PREVIEW + IMAGE, "images.lock": lock})
    code, out, err = run_cli("status")
    assert code != 1, err[:2000]
    outside = lock.replace('output = "out/i01999.png"', 'output = "/x.png"')
    (root / "images.lock").write_text(outside)
    line = one_line_error(run_cli, "plan")
    assert "images.lock: images.i01999: `output` '/x.png'" in line
    broken = lock.replace("seed = 1 }\n\n[images.i01500]", "seed = 1 }\n\n[images.i01500]\n=")
    (root / "images.lock").write_text(broken)
    line = one_line_error(run_cli, "plan")
    expected_line = broken[: broken.index("\n=\n")].count("\n") + 2
    assert f"images.lock is not valid TOML: line {expected_line}, column 1" in line


def test_an_image_recorded_twice_in_a_large_lock_is_one_line(project, run_cli, light_whole):
    tables = "".join(entry(f"i{n:05}", n) for n in range(2_000))
    lock = LOCK_HEAD + tables + entry("i00000", 1)
    project({"images.toml": PREVIEW + IMAGE, "images.lock": lock})
    line = one_line_error(run_cli, "plan")
    assert "images.lock: images.i00000 is recorded twice" in line


@pytest.mark.parametrize("form", list(CRAFTED))
def test_a_manifest_that_asks_for_millions_of_values_is_refused_unparsed(form, project, run_cli):
    crafted = CRAFTED[form] * 3  # past 8,000,000
    if form == "arrays":
        crafted = "x = [" + "[]," * 1_000_000 + "]\n"  # 9,000,000: a value and a table each
    project({"images.toml": PREVIEW + crafted + IMAGE})
    for command in ("validate", *COMMANDS):
        line = one_line_error(run_cli, command)
        assert line.startswith("error: images.toml: asks for more than 8,000,000 TOML values")


def test_toml_front_matter_of_too_many_values_is_refused_before_it_is_parsed(project, run_cli):
    """YAML front matter was counted as it was read; TOML front matter was parsed whole:
    4 MiB of `[t1]`, `[t2]`, … asks tomllib for gigabytes."""
    tables = "".join(f"[t{n}]\n" for n in range(30_000))  # 240,000
    manifest = (
        PREVIEW
        + '\n[images.cover]\nrows = { files = "posts/*.md" }\nprompt = "cover for {title}"\n'
        'output = "{slug}.png"\n'
    )
    project(
        {
            "images.toml": manifest,
            "posts/a.md": '+++\ntitle = "A"\n+++\nhello\n',
            "posts/b.md": f'+++\ntitle = "B"\n{tables}+++\nhello\n',
        }
    )
    line = one_line_error(run_cli, "plan")
    assert line == (
        "error: posts/b.md:1: images.cover: the TOML front matter asks for more than 200,000 "
        "values (a table counting 8), more than nebula-build reads from a post"
    )


def test_a_lock_without_conflict_markers_is_not_walked_for_them(project, run_cli, monkeypatch):
    """The walk for git's markers keeps a string per line: 64 MiB of `[t1]`, `[t2]`, …
    took 980 MB for it, after the count had refused the lock."""
    from nebula_build.state import conflicts

    def walked(text: str) -> None:
        raise AssertionError("walked line by line")

    monkeypatch.setattr(conflicts, "sides", walked)
    project({"images.toml": PREVIEW + IMAGE, "images.lock": LOCK_HEAD + CRAFTED["tables"]})
    assert "asks for more than 1,000,000 TOML values" in one_line_error(run_cli, "plan")


def marks_then_open_quotes(marks: int) -> str:
    """A comment of `marks` dots (each weighs 8: past the count where strings are set
    aside), then a line of 60,000 characters whose every quote opens a string that no
    quote closes (`"\\"\\"\\…`): each used to be looked for to the line's end."""
    return "# " + "." * marks + "\n" + '"\\' * 30_000 + "\n"


def test_a_lock_whose_strings_never_close_is_refused_in_linear_time(project, run_cli):
    project({"images.toml": PREVIEW + IMAGE, "images.lock": marks_then_open_quotes(125_001)})
    line = one_line_error(run_cli, "plan")
    assert "images.lock is not valid TOML" in line


def test_a_manifest_whose_strings_never_close_is_refused_in_linear_time(project, run_cli):
    project({"images.toml": PREVIEW + marks_then_open_quotes(1_000_001) + IMAGE})
    line = one_line_error(run_cli, "validate")
    assert line.startswith("error: images.toml:"), line


def test_toml_front_matter_whose_strings_never_close_is_refused_in_linear_time(project, run_cli):
    manifest = (
        PREVIEW
        + '\n[images.cover]\nrows = { files = "posts/*.md" }\nprompt = "cover for {title}"\n'
        'output = "{slug}.png"\n'
    )
    open_quotes = marks_then_open_quotes(25_001)
    project(
        {
            "images.toml": manifest,
            "posts/a.md": '+++\ntitle = "A"\n+++\nhello\n',
            "posts/b.md": f'+++\ntitle = "B"\n{open_quotes}+++\nhello\n',
        }
    )
    line = one_line_error(run_cli, "plan")
    assert line.startswith("error: posts/b.md:"), line


@pytest.fixture
def heavy_manifest(monkeypatch):
    """A manifest weighing more than 2,000 has its tables named and counted before it
    is parsed (as one of more than 1,000,000 is)."""
    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_WHOLE_WEIGHT", 2_000)


def images(count: int) -> str:
    return "".join(
        f'\n[images.i{n}]\nprompt = "a lighthouse"\noutput = "out/i{n}.png"\n' for n in range(count)
    )


def test_a_heavy_manifest_of_unknown_tables_is_one_line_before_it_is_parsed(
    project, run_cli, heavy_manifest
):
    """990,000 `[t1]`, `[t2]`, … (weighing just under 8,000,000) took 91 s and 1.9 GB,
    then printed an "unknown key" per table."""
    tables = "".join(f"[t{n}]\n" for n in range(400))
    project({"images.toml": PREVIEW + images(3) + tables})
    line_of_t0 = (PREVIEW + images(3)).count("\n") + 1
    for command in ("validate", *COMMANDS):
        line = one_line_error(run_cli, command)
        assert line == (
            f"error: images.toml:{line_of_t0}:1: t0: unknown key; expected one of: version, "
            "max_images, defaults, backends, images, styles, atlases, assets, cache"
        )


def test_a_heavy_manifest_of_quoted_unknown_tables_is_one_line(project, run_cli, heavy_manifest):
    tables = "".join(f'  ["t{n}".x]\n' for n in range(400))
    project({"images.toml": PREVIEW + '["images"]\n' + images(3) + tables})
    line_of_t0 = (PREVIEW + '["images"]\n' + images(3)).count("\n") + 1
    line = one_line_error(run_cli, "validate")
    assert line.startswith(f"error: images.toml:{line_of_t0}:3: t0: unknown key;"), line


def test_a_heavy_manifest_past_its_tables_names_the_first_too_many(
    project, run_cli, heavy_manifest, monkeypatch
):
    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_TABLES", 40)
    text = PREVIEW + images(100)
    project({"images.toml": text})
    line_of_41st = text.index("[images.i39]")
    line = one_line_error(run_cli, "plan")
    assert line == (
        f"error: images.toml:{text[:line_of_41st].count(chr(10)) + 1}:1: images.i39: is past "
        "the 40 tables a manifest may have ([images.NAME] and the others); declare fewer "
        "images, or make them with a matrix or rows"
    )


@pytest.mark.parametrize(
    "keys",
    [
        "".join(f"t{n}.a = 1\n" for n in range(400)),  # at the root: no header names them
        "[images]\n" + "".join(f'i{n}."x".y = 1\n' for n in range(200)),
        "k = [" + ", ".join(f"{{ t{n}.a = 1 }}" for n in range(400)) + "]\n",
    ],
    ids=["root", "under a header", "in inline tables"],
)
def test_a_heavy_manifest_whose_dotted_keys_make_too_many_tables_is_one_line(
    project, run_cli, heavy_manifest, monkeypatch, keys
):
    """A dotted key makes a table as a header does, and no header names it: 880,000
    `t1.a = 1`, `t2.a = 1`, … (weighing 7.9 million) took 52 s and 1.7 GB, then an
    "unknown key" per table."""
    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_TABLES", 40)
    project({"images.toml": "version = 1\n" + keys + PREVIEW.removeprefix("version = 1\n")})
    line = one_line_error(run_cli, "validate")
    assert line == (
        "error: images.toml: makes more than the 40 tables a manifest may have (each "
        "[header] and each dotted key, a.b = 1); write an image's keys under its "
        "[images.NAME], declare fewer images, or make them with a matrix or rows"
    )


def test_a_heavy_manifest_with_dotted_keys_floats_and_comments_within_its_tables_is_read(
    project, run_cli, heavy_manifest, monkeypatch
):
    """The `.` of a float, a string, a comment or a header is no dotted key's: 42
    headers and 41 dotted keys are 83 tables, within 83."""
    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_TABLES", 83)
    text = PREVIEW + images(40).replace(
        'prompt = "a lighthouse"', 'prompt = "a.b = 1, a lighthouse"\nrows.file = "d.csv"'
    )
    text = text.replace("[images.i3]", "[images.i3]\ncache.a = 1.5\n# a.b = 1.0.0").replace(
        "height = 64", "height = 64\n[images.i0.matrix]\nk = [1.5, 2.5]"
    )
    project({"images.toml": text})
    code, out, err = run_cli("validate")
    assert "tables a manifest may have" not in err, err


def test_a_heavy_manifest_past_its_keys_and_values_is_one_line(
    project, run_cli, heavy_manifest, monkeypatch
):
    """A key costs tomllib up to 10 µs: 8,000,000 of them (weighing 8,000,000) took minutes."""
    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_MANIFEST_VALUES", 1_000)
    keys = "".join(f"k{n} = 1\n" for n in range(2_500))
    project({"images.toml": "version = 1\n" + keys + PREVIEW.removeprefix("version = 1\n")})
    line = one_line_error(run_cli, "validate")
    assert line.startswith("error: images.toml: asks for more than 1,000 TOML keys and values")
    assert "move the keys images share to [defaults] or a style" in line


def test_a_valid_heavy_manifest_still_plans_and_its_errors_keep_their_lines(
    project, run_cli, heavy_manifest
):
    """A table's header in a multi-line prompt is no table; a problem is found where it was."""
    prompt = '\n[images.x]\nprompt = """a lighthouse\n[t0]\n[[t1]]\n"""\noutput = "out/x.png"\n'
    text = PREVIEW + images(40) + prompt
    root = project({"images.toml": text})
    code, out, err = run_cli("plan")
    assert code == 0, err
    (root / "images.toml").write_text(text.replace('output = "out/i30.png"', "output = 3"))
    code, out, err = run_cli("validate")
    line_of_i30 = text[: text.index('output = "out/i30.png"')].count("\n") + 1
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{line_of_i30}:1: images.i30.output: input should be a valid "
        "string (got 3)"
    ], err


def test_thousands_of_problems_are_described_up_to_a_bound(project, run_cli, monkeypatch):
    """Describing a problem takes up to 0.2 ms: a million of them took minutes."""
    import json

    from nebula_build.core import manifest

    monkeypatch.setattr(manifest, "MAX_PROBLEMS", 10)
    project({"images.toml": PREVIEW + "".join(f"k{n} = 1\n" for n in range(30)) + IMAGE})
    code, out, _ = run_cli("validate", "--json")
    problems = json.loads(out)["error"]["problems"]
    assert code == 1 and len(problems) == 11, problems
    assert problems[-1]["message"] == "and 20 more problems; fix these first", problems[-1]


@pytest.fixture
def listed(monkeypatch) -> dict[str, list[int]]:
    """Ten problems are described, each a line of its own; how many errors each
    validation listed, and each key read to place them, are recorded (listing one took
    pydantic 5 µs, reading a line 5 µs: a million of either is seconds)."""
    from nebula_build.core import manifest, sourcemap

    monkeypatch.setattr(manifest, "MAX_PROBLEMS", 10)
    monkeypatch.setattr(manifest, "GROUPED_FROM", 1_000_000)
    counts: dict[str, list[int]] = {"errors": [], "keys read": []}
    one_per_value, split_key = manifest._one_per_value, sourcemap._split_key

    def listing(exc):
        errors = one_per_value(exc)
        counts["errors"].append(len(errors))
        return errors

    def reading(raw):
        counts["keys read"].append(1)
        return split_key(raw)

    monkeypatch.setattr(manifest, "_one_per_value", listing)
    monkeypatch.setattr(sourcemap, "_split_key", reading)
    return counts


def described(run_cli) -> tuple[list[str], list[dict]]:
    code, _, err = run_cli("validate")
    assert code == 1 and "Traceback" not in err, err
    code, out, _ = run_cli("validate", "--json")
    return err.splitlines(), json.loads(out)["error"]["problems"]


UNKNOWN_IN_IMAGE = (
    "unknown key; expected one of: background, key, key_softness, despill, pixel_grid, "
    "palette, trim, pad, extrude, checks, quality, lossless, resize, fit, resample, widths, "
    "metadata, variant_pattern, candidates, backend, model, prompt, negative_prompt, width, "
    "height, num_steps, guidance_scale, seed, image, mask, alt, style, matrix, rows, id, "
    "where, limit, output"
)


def test_thousands_of_unknown_keys_in_one_table_are_described_without_listing_them_all(
    project, run_cli, listed
):
    """1,190,000 unknown keys in one table, within every bound, took 32 s and 1.9 GB:
    pydantic listed every one, and every key's line was read to place them."""
    keys = "".join(f"k{n} = 1\n" for n in range(400))
    text = PREVIEW + IMAGE + keys + '\n[images.b]\nprompt = "b"\n'
    project({"images.toml": text})
    lines, problems = described(run_cli)
    first = (PREVIEW + IMAGE).count("\n") + 1
    assert lines == [
        f"error: images.toml:{first + n}:1: images.a.k{n}: {UNKNOWN_IN_IMAGE}" for n in range(10)
    ] + ["error: images.toml: and 391 more problems; fix these first"]
    assert problems[-1]["message"] == "and 391 more problems; fix these first"
    assert max(listed["errors"]) == 11 and len(listed["keys read"]) < 40, listed


def test_thousands_of_empty_and_unknown_tables_are_described_without_listing_them_all(
    project, run_cli, listed
):
    """199,000 empty `[images.tN]` took 6.3 s and 381 MB; a style's problem after them
    is still counted, and one before them still described first."""
    tables = "".join(f"[images.t{n}]\n" for n in range(200))
    unknown = "".join(f'\n[images.u{n}]\noutput = "out/u{n}.png"\nk = 1\n' for n in range(200))
    text = (
        PREVIEW.replace("width = 64", 'width = "wide"') + tables + unknown + "[styles.s]\nq = 1\n"
    )
    project({"images.toml": text})
    lines, problems = described(run_cli)
    width = text[: text.index("width")].count("\n") + 1
    assert lines[:3] == [
        f'error: images.toml:{width}:1: defaults.width: must be a whole number (got "wide")',
        f"error: images.toml:{width + 2}:1: images.t0.output: is required",
        f"error: images.toml:{width + 3}:1: images.t1.output: is required",
    ]
    assert lines[-1] == "error: images.toml: and 392 more problems; fix these first"
    assert len(problems) == 11 and max(listed["errors"]) == 11, listed


JOURNAL_SAYS = (
    "it is what an interrupted apply left: remove it and re-run, which loses only that "
    "run's record of the images it finished"
)


def test_a_journal_past_its_size_is_refused_before_it_is_read(project, run_cli, monkeypatch):
    """`.nebula-build/journal` was read whole, however large (a pull request may commit
    one, a crashed run leave one huge)."""
    monkeypatch.setattr(lockfile, "MAX_JOURNAL_BYTES", 1_000, raising=False)
    torn = b'{"op": "set", "image": "a", "ent\n' * 100  # lines a crash cut short: skipped
    project({"images.toml": PREVIEW + IMAGE, ".nebula-build/journal": torn.decode()})
    for command in COMMANDS:
        line = one_line_error(run_cli, command)
        assert line == (
            "error: .nebula-build/journal: 3,300 bytes, more than a journal may have "
            f"(1,000 bytes); {JOURNAL_SAYS}"
        )


def test_a_journal_line_past_a_record_is_refused_before_it_is_parsed(project, run_cli, monkeypatch):
    monkeypatch.setattr(lockfile, "MAX_JOURNAL_LINE", 100, raising=False)
    lines = '{"op": "delete", "image": "b"}\n' + '{"op": "delete", "image": "' + "x" * 200 + '"}\n'
    project({"images.toml": PREVIEW + IMAGE, ".nebula-build/journal": lines})
    line = one_line_error(run_cli, "plan")
    assert line == (
        "error: .nebula-build/journal: line 2 has more than 100 bytes, more than an image's "
        f"record ever holds; {JOURNAL_SAYS}"
    )


def test_a_journal_line_holding_a_lone_surrogate_is_refused(project, run_cli):
    """JSON may escape half of a UTF-16 pair (\\ud800), which UTF-8 cannot hold: folded
    into the lock, it was a UnicodeEncodeError traceback on every command."""
    digest = "ab" * 32
    record = (
        '{"backend": "preview", "model": "m", "output": "out/b.png", '
        f'"digest": "{digest}", "generation_key": "{digest}", "output_key": "{digest}", '
        '"params": {"prompt": "a \\ud800 b"}}'
    )
    journal = (
        '{"op": "delete", "image": "c"}\n' + f'{{"op": "set", "image": "b", "entry": {record}}}\n'
    )
    project({"images.toml": PREVIEW + IMAGE, ".nebula-build/journal": journal})
    for command in COMMANDS:
        line = one_line_error(run_cli, command)
        assert line == (
            "error: .nebula-build/journal: line 2 holds a lone surrogate (half of a UTF-16 "
            f"pair), which no image's record holds; {JOURNAL_SAYS}"
        )


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("[1, 2]", "images.b: is not a table"),
        (
            '{"backend": "preview", "model": "m", "output": "images.toml", "digest": "DIGEST", '
            '"generation_key": "DIGEST", "output_key": "DIGEST", "params": {}}',
            "images.b: `output` images.toml is not an image file (.png, .webp, .jpg, .avif)",
        ),
    ],
    ids=["not-a-table", "the-manifest"],
)
def test_a_journal_entry_that_fails_says_to_remove_the_journal(project, run_cli, record, problem):
    """It said "the journal: …; restore the lock from version control or delete the
    entry": the lock was fine, and the entry was in a file of JSON lines."""
    record = record.replace("DIGEST", "ab" * 32)
    journal = f'{{"op": "set", "image": "b", "entry": {record}}}\n'
    project({"images.toml": PREVIEW + IMAGE, ".nebula-build/journal": journal})
    for command in COMMANDS:
        line = one_line_error(run_cli, command)
        assert line == f"error: .nebula-build/journal: {problem}; {JOURNAL_SAYS}"
