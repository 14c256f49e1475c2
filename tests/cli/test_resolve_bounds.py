"""What a manifest's resolution finds wrong is described within the same bound as what
its validation finds: MAX_PROBLEMS of them, placed at their lines reading only the lines
that can hold them, and the rest counted ("and N more problems; fix these first")."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import install_distribution
from tests.manifests import PREVIEW

IMAGE = '\n[images.a]\nprompt = "a lighthouse"\noutput = "out/a.png"\n'
BOUND = 10


@pytest.fixture
def counted(monkeypatch) -> dict[str, list[int]]:
    """Ten problems are described, by resolution and by validation alike; each setting
    described, and the key paths each map of positions was asked for (None: every key),
    are recorded (describing one took up to 0.2 ms, mapping a key 5 µs: a million of
    either is seconds)."""
    from nebula_build.core import manifest, resolve, sourcemap

    monkeypatch.setattr(manifest, "MAX_PROBLEMS", BOUND)
    monkeypatch.setattr(resolve, "MAX_PROBLEMS", BOUND, raising=False)
    counts: dict[str, list[int | None]] = {"described": [], "placed": []}
    describe, key_positions = resolve.describe_setting_error, sourcemap.key_positions

    def describing(error, known, backend):
        counts["described"].append(1)
        return describe(error, known, backend)

    def mapping(text, within=None):
        counts["placed"].append(None if within is None else len(within))
        return key_positions(text, within)

    monkeypatch.setattr(resolve, "describe_setting_error", describing)
    monkeypatch.setattr(sourcemap, "key_positions", mapping)
    return counts


def described(run_cli) -> tuple[list[str], list[dict]]:
    code, _, err = run_cli("validate")
    assert code == 1 and "Traceback" not in err, err
    code, out, _ = run_cli("validate", "--json")
    assert code == 1
    return err.splitlines(), json.loads(out)["error"]["problems"]


def test_thousands_of_unknown_backend_settings_are_described_up_to_the_bound(
    project, run_cli, counted
):
    """1,190,000 unknown keys in [backends.preview] took 63 s and 2.2 GB: pydantic listed
    each, and each was described (its "did you mean") and placed at its line."""
    keys = "".join(f"k{n} = 1\n" for n in range(400))
    text = PREVIEW + IMAGE + "\n[backends.preview]\n" + keys
    project({"images.toml": text})
    lines, problems = described(run_cli)
    first = (PREVIEW + IMAGE).count("\n") + 3
    assert lines == [
        f"error: images.toml:{first + n}:1: backends.preview.k{n}: unknown key; expected one "
        "of: concurrency, timeout"
        for n in range(BOUND)
    ] + ["error: images.toml: and 390 more problems; fix these first"]
    assert len(problems) == BOUND + 1
    assert problems[-1]["message"] == "and 390 more problems; fix these first"
    assert len(counted["described"]) == 2 * BOUND, len(counted["described"])  # two runs
    assert counted["placed"] == [BOUND, BOUND], counted["placed"]  # two runs


def test_backend_settings_past_the_bound_still_name_a_wrong_value(project, run_cli, counted):
    """A setting of the wrong type is among the problems described, as pydantic finds it
    before the unknown keys; they are shown in the order they are written."""
    keys = "".join(f"k{n} = 1\n" for n in range(30))
    text = PREVIEW + IMAGE + "\n[backends.preview]\n" + keys + 'concurrency = "many"\n'
    project({"images.toml": text})
    lines, _ = described(run_cli)
    at = text.count("\n")
    assert lines[: BOUND - 1] == [
        f"error: images.toml:{at - 30 + n}:1: backends.preview.k{n}: unknown key; expected "
        "one of: concurrency, timeout"
        for n in range(BOUND - 1)
    ]
    assert lines[BOUND - 1] == (
        f"error: images.toml:{at}:1: backends.preview.concurrency: must be a whole number "
        '(got "many")'
    )
    assert lines[-1] == "error: images.toml: and 21 more problems; fix these first"


#: a plugin that reads its settings itself: keys starting with "x-" are its own, and
#: dropped before its model (which forbids any other) validates the rest
LENIENT = """
from nebula_build.plugin import Backend, hookimpl, nebula_models


class Lenient(Backend):
    name = "lenient"

    @classmethod
    def parse_settings(cls, raw):
        return super().parse_settings({k: v for k, v in raw.items() if not k.startswith("x-")})

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        raise NotImplementedError


@hookimpl
def nebula_build_register_backends():
    return [Lenient]
"""


def test_a_plugin_that_reads_its_own_settings_has_its_problems_counted_as_they_are(
    project, run_cli, counted, tmp_path, monkeypatch
):
    """Past the bound, a backend's unknown keys are taken out before it validates again;
    where that does not take out exactly their problems (the plugin keeps keys of its
    own), every problem is listed as before, and none is lost."""
    site = tmp_path / "lenient-site"
    install_distribution(
        site, "nebula-lenient", {"nebula_lenient": LENIENT}, {"lenient": "nebula_lenient"}
    )
    monkeypatch.syspath_prepend(str(site))
    own = "".join(f'"x-{n}" = 1\n' for n in range(30))
    unknown = "".join(f"k{n} = 1\n" for n in range(30))
    text = PREVIEW + IMAGE + "\n[backends.lenient]\n" + own + unknown
    project({"images.toml": text})
    lines, _ = described(run_cli)
    sys.modules.pop("nebula_lenient", None)
    first = (PREVIEW + IMAGE).count("\n") + 3 + 30
    assert lines == [
        f"error: images.toml:{first + n}:1: backends.lenient.k{n}: unknown key; expected one "
        "of: concurrency, timeout"
        for n in range(BOUND)
    ] + ["error: images.toml: and 20 more problems; fix these first"]


def test_thousands_of_problems_of_images_are_placed_reading_only_their_lines(
    project, run_cli, counted
):
    """100,000 images missing `prompt` took 11.6 s: each problem was placed at its line
    when it was found, and the first placing read every line's key."""
    images = "".join(f'\n[images.i{n}]\nprompt = "p"\noutput = "../i{n}.png"\n' for n in range(400))
    project({"images.toml": PREVIEW + images})
    lines, problems = described(run_cli)
    first = PREVIEW.count("\n") + 4
    assert lines == [
        f"error: images.toml:{first + 4 * n}:1: images.i{n}.output: must stay inside "
        f"the project ('../i{n}.png' uses '..')"
        for n in range(BOUND)
    ] + ["error: images.toml: and 390 more problems; fix these first"]
    assert problems[-1]["message"] == "and 390 more problems; fix these first"
    assert counted["placed"] == [BOUND, BOUND], counted["placed"]  # two runs


def test_images_missing_a_prompt_are_one_line_naming_them(project, run_cli, counted):
    """100,000 images missing `prompt` were 100,000 lines (the terminal showed 50 and
    counted the rest): one line, at the first, names a few of the others."""
    images = "".join(f'\n[images.i{n}]\noutput = "out/i{n}.png"\n' for n in range(400))
    project({"images.toml": PREVIEW + images})
    lines, problems = described(run_cli)
    assert lines == [
        f"error: images.toml:{PREVIEW.count(chr(10)) + 2}:1: images.i0.prompt: is required; "
        "the same for 399 other images (i1, i2, i3, i4, i5, …)"
    ]
    assert problems[0]["key"] == "images.i0.prompt" and len(problems) == 1
    assert counted["placed"] == [1, 1], counted["placed"]


def test_a_wrong_value_many_images_share_is_one_line_and_a_few_are_one_each(project, run_cli):
    """50,000 images with `seed = "x"`, or `width = "wide"`, were a line each; nine
    (fewer than GROUPED_FROM) still are, exactly as before."""
    from nebula_build.core.manifest import GROUPED_FROM

    def images(count: int, value: str) -> str:
        return "".join(
            f'\n[images.i{n}]\nprompt = "p"\n{value}\noutput = "out/i{n}.png"\n'
            for n in range(count)
        )

    head = PREVIEW.count("\n") + 4
    for value, said in (
        ('seed = "x"', "'x' is not an integer expression (integers, placeholders, + - * only)"),
        ('width = "wide"', 'must be a whole number (got "wide")'),
    ):
        key = value.split(" ")[0]
        project({"images.toml": PREVIEW + images(GROUPED_FROM - 1, value)})
        code, _, err = run_cli("validate")
        assert code == 1 and err.splitlines() == [
            f"error: images.toml:{head + 5 * n}:1: images.i{n}.{key}: {said}"
            for n in range(GROUPED_FROM - 1)
        ]
        project({"images.toml": PREVIEW + images(500, value)})
        code, _, err = run_cli("validate")
        assert code == 1 and err.splitlines() == [
            f"error: images.toml:{head}:1: images.i0.{key}: {said}; the same for 499 other "
            "images (i1, i2, i3, i4, i5, …)"
        ]


def test_images_sharing_a_problem_beside_others_keep_their_order(project, run_cli):
    """The shared line stands where its first image's problem was; a different message
    at the same key is a line of its own."""
    images = "".join(
        f'\n[images.i{n}]\nprompt = "p"\nseed = "x"\noutput = "out/i{n}.png"\n' for n in range(12)
    )
    odd = '\n[images.z]\nprompt = "p"\nseed = "y"\noutput = "out/z.png"\n'
    project({"images.toml": PREVIEW + odd + images})
    code, _, err = run_cli("validate")
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2, lines
    assert lines[0].endswith(
        "images.z.seed: 'y' is not an integer expression (integers, placeholders, + - * only)"
    )
    assert "images.i0.seed:" in lines[1] and lines[1].endswith(
        "; the same for 11 other images (i1, i2, i3, i4, i5, …)"
    )


def test_a_problem_a_matrix_makes_is_still_one_line_saying_how_many_it_hit(project, run_cli):
    matrix = '\n[images.e]\noutput = "out/{k}.png"\nmatrix = { k = ["a", "b", "c"] }\n'
    project({"images.toml": PREVIEW + matrix})
    code, _, err = run_cli("validate")
    assert code == 1 and err.splitlines() == [
        f"error: images.toml:{PREVIEW.count(chr(10)) + 2}:1: images.e.prompt: is required "
        "(for 3 of its images)"
    ]


def test_the_terminal_counts_every_problem_past_those_it_shows(project, run_cli, monkeypatch):
    """Past its 50 lines the terminal counted the closing "and N more" line as one
    problem ("… and 11 more"), and said validate --json lists them all, which it does
    not past the bound."""
    from nebula_build.core import manifest, resolve

    monkeypatch.setattr(manifest, "MAX_PROBLEMS", 60)
    monkeypatch.setattr(resolve, "MAX_PROBLEMS", 60, raising=False)
    keys = "".join(f"k{n} = 1\n" for n in range(400))
    project({"images.toml": PREVIEW + IMAGE + "\n[backends.preview]\n" + keys})
    code, _, err = run_cli("plan")
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 51, lines
    assert lines[-1] == (
        "error: … and 350 more problems (`nebula-build validate --json` lists the first 60)"
    )
