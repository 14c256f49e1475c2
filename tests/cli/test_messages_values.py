"""A value a newcomer gets wrong (a size past the range, a number in quotes, an empty
prompt, an output without an extension) says what to write instead, in one line
naming the file, line, image and key."""

from __future__ import annotations

import pytest

from tests.manifests import PREVIEW as HEAD


def _said(project, run_cli, image: str) -> str:
    project({"images.toml": HEAD + "\n[images.hero]\n" + image})
    code, out, err = run_cli("plan")
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("written", "said"),
    [
        (
            "width = 4096",
            "images.toml:12:1: images.hero.width: must be a multiple of 8 within 64-2048 "
            "(got 4096)",
        ),
        (
            "height = 32",
            "images.toml:12:1: images.hero.height: must be a multiple of 8 within 64-2048 (got 32)",
        ),
        (
            'width = "1344"',
            "images.toml:12:1: images.hero.width: must be an integer, without quotes "
            "(width = 1344)",
        ),
        (
            'guidance_scale = "7.5"',
            "images.toml:12:1: images.hero.guidance_scale: must be a number, without quotes "
            "(guidance_scale = 7.5)",
        ),
        ("num_steps = 0", "images.toml:12:1: images.hero.num_steps: must be at least 1 (got 0)"),
    ],
)
def test_a_value_out_of_range_or_in_quotes_says_what_to_write(written, said, project, run_cli):
    image = f'prompt = "x"\noutput = "hero.png"\n{written}\n'
    assert _said(project, run_cli, image) == f"error: {said}\n"


def test_an_empty_prompt_says_it_must_not_be_empty(project, run_cli):
    err = _said(project, run_cli, 'prompt = ""\noutput = "hero.png"\n')
    assert err == "error: images.toml:10:1: images.hero.prompt: must not be empty\n"


def test_an_output_without_an_extension_says_which_to_end_it_with(project, run_cli):
    err = _said(project, run_cli, 'prompt = "x"\noutput = "images/hero"\n')
    assert err == (
        "error: images.toml:11:1: images.hero.output: has no extension; end it with .png, "
        '.webp, .jpg, .jpeg or .avif, as in output = "images/hero.png"\n'
    )


def test_an_output_that_names_a_folder_says_to_add_the_files_name(project, run_cli):
    """`output = "images/"` was told to end with an extension, `output = "images.png"`,
    which drops the folder."""
    err = _said(project, run_cli, 'prompt = "x"\noutput = "images/"\n')
    assert err == (
        "error: images.toml:11:1: images.hero.output: names a folder, not a file: add the "
        'file\'s name, as in output = "images/hero.png"\n'
    )


def test_a_written_json_file_that_names_a_folder_says_to_add_the_files_name(project, run_cli):
    """`[assets] manifest = "static/"` wrote a file named `static`, which then stood where
    every later `static/…` output goes; an atlas's `frames = "meta/"` the same."""
    root = project(
        {
            "images.toml": HEAD
            + '[images.hero]\nprompt = "x"\noutput = "img/hero.png"\n'
            + '[assets]\nmanifest = "static/"\n'
            + '[atlases.s]\nimages = ["hero"]\noutput = "sheets/s.png"\nframes = "meta/"\n'
        }
    )
    code, out, err = run_cli("apply")
    assert (code, out) == (1, "")
    assert err == (
        "error: images.toml:12:1: assets.manifest: names a folder, not a file: add the "
        'file\'s name, as in manifest = "static/images.json"\n'
        "error: images.toml:16:1: atlases.s.frames: names a folder, not a file: add the "
        'file\'s name, as in frames = "meta/frames.json"\n'
    )
    assert not (root / "static").exists() and not (root / "meta").exists()


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("1024.0", "must be a whole number, without a decimal point (width = 1024)"),
        ("1000.5", "must be a whole number (got 1000.5)"),
    ],
)
def test_a_size_written_with_a_decimal_point_says_to_write_a_whole_number(
    written, said, project, run_cli
):
    """pydantic's own words, "input should be a valid integer (got 1024.0)", beside the
    manifest's for a number in quotes ("must be an integer, without quotes")."""
    err = _said(project, run_cli, f'prompt = "x"\nwidth = {written}\noutput = "hero.png"\n')
    assert err == f"error: images.toml:11:1: images.hero.width: {said}\n"
