"""Embedded metadata: read by other tools, round-tripped by `inspect`, strippable."""

from __future__ import annotations

import json
import os
import struct

import pytest
from PIL import Image

from nebula_build.outputs.metadata import read
from nebula_build.plugin import FLUX_SCHNELL, SDXL
from nebula_build.state.cache import Store
from tests.conftest import fake_manifest, image_info

LOGO = {
    "model": SDXL,
    "prompt": "minimal fox logo, flat vector",
    "negative_prompt": "text, watermark",
    "num_steps": 25,
    "guidance_scale": 9,
    "width": 128,
    "height": 128,
}
HERO = {
    "model": FLUX_SCHNELL,
    "prompt": "a lighthouse at dusk",
    "num_steps": 4,
    "guidance_scale": 3.5,
    "seed": 1234,
}


def test_png_parameters_are_read_by_sd_parsers(project, run_cli, fake_site, tmp_path):
    from sd_parsers import ParserManager

    root = project(
        {
            "images.toml": fake_manifest(
                tmp_path / "log",
                {"hero": {**HERO, "output": "hero.png"}, "logo": {**LOGO, "output": "logo.png"}},
            )
        }
    )
    assert run_cli("apply").code == 0
    info = ParserManager().parse(root / "hero.png")
    assert info is not None and info.generator.name == "AUTOMATIC1111"
    (sampler,) = info.samplers
    assert sampler.prompts[0].value == "a lighthouse at dusk"
    assert sampler.parameters["seed"] == "1234" and sampler.parameters["steps"] == "4"
    assert sampler.model is not None and sampler.model.name == FLUX_SCHNELL
    (logo,) = ParserManager().parse(root / "logo.png").samplers
    assert logo.negative_prompts[0].value == "text, watermark"
    assert logo.parameters["cfg_scale"] == "9"
    assert "seed" not in logo.parameters  # SDXL takes no seed: none is claimed


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk, parsed here rather than by the code under test."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def test_png_text_comes_before_the_image_data(project, run_cli, fake_site, tmp_path):
    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**HERO, "output": "a.png"}})}
    )
    assert run_cli("apply").code == 0
    with Image.open(root / "a.png") as image:  # no load(): what a streaming reader sees
        assert image.info["parameters"].startswith("a lighthouse at dusk\nSteps: 4")
        record = json.loads(image.info["nebula-build"])
    chunks = _png_chunks((root / "a.png").read_bytes())
    kinds = [kind for kind, _ in chunks]
    first_idat = kinds.index(b"IDAT")
    assert kinds.count(b"iTXt") == 2 and kinds.index(b"iTXt") < first_idat
    assert kinds[-1] == b"IEND" and b"iTXt" not in kinds[first_idat:]
    original = Store(root / ".nebula-build/cache").get(record["generation_key"])
    assert original is not None  # the backend's bytes: the file's image data is theirs
    assert [c for c in chunks if c[0] == b"IDAT"] == [
        c for c in _png_chunks(original.data) if c[0] == b"IDAT"
    ]


def _sd_prompt_reader() -> type:
    """sd-prompt-reader's reader. It pins Pillow 10.3 and a GUI toolkit, so it is installed
    without its dependencies (`pip install --no-deps`, as .ci/run does); its reader needs
    only Pillow and piexif."""
    try:
        from sd_prompt_reader.image_data_reader import ImageDataReader
    except ImportError:
        message = (
            "sd-prompt-reader is not installed "
            "(pip install --no-deps 'sd-prompt-reader>=1.3.5,<1.4')"
        )
        if os.environ.get("NEBULA_BUILD_REQUIRE_READERS"):
            pytest.fail(message)
        pytest.skip(message)
    return ImageDataReader


@pytest.mark.parametrize("output", ["hero.jpg", "hero.webp"])
def test_exif_parameters_are_read_by_sd_prompt_reader_and_sd_parsers(
    output, project, run_cli, fake_site, tmp_path
):
    from sd_parsers import ParserManager

    reader = _sd_prompt_reader()
    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**HERO, "output": output}})}
    )
    assert run_cli("apply").code == 0
    found = reader(str(root / output))
    assert found.tool == "A1111 webUI" and found.positive == "a lighthouse at dusk"
    assert found.parameter["seed"] == "1234" and found.parameter["steps"] == "4"
    assert found.parameter["cfg"] == "3.5" and found.parameter["model"] == FLUX_SCHNELL
    (sampler,) = ParserManager().parse(root / output).samplers
    assert sampler.prompts[0].value == "a lighthouse at dusk"
    assert sampler.parameters["seed"] == "1234" and sampler.parameters["steps"] == "4"


def test_an_image_without_steps_is_still_read_by_both_readers(
    project, run_cli, fake_site, tmp_path
):
    """Both readers take the settings line for part of the prompt unless it starts with
    `Steps:`; a manifest that leaves the steps to the model says `Steps: unknown`."""
    from sd_parsers import ParserManager

    reader = _sd_prompt_reader()
    stepless = {"model": FLUX_SCHNELL, "prompt": "a lighthouse at dusk", "seed": 7}
    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**stepless, "output": "a.png"}})}
    )
    assert run_cli("apply").code == 0
    found = reader(str(root / "a.png"))
    assert found.positive == "a lighthouse at dusk" and found.parameter["steps"] == "unknown"
    (sampler,) = ParserManager().parse(root / "a.png").samplers
    assert sampler.prompts[0].value == "a lighthouse at dusk"
    assert sampler.parameters["seed"] == "7"


@pytest.mark.parametrize("output", ["a.jpg", "a.webp", "a.avif"])
def test_exif_user_comment_is_typed_undefined(output, project, run_cli, fake_site, tmp_path):
    """EXIF 2.3 section 4.6.5: UserComment is UNDEFINED; piexif (sd-prompt-reader's EXIF
    reader) returns such a field as bytes, a BYTE one as a tuple of numbers."""
    import piexif
    import piexif.helper

    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**HERO, "output": output}})}
    )
    assert run_cli("apply").code == 0
    with Image.open(root / output) as image:
        exif = piexif.load(image.info["exif"])
    comment = exif["Exif"][piexif.ExifIFD.UserComment]
    assert isinstance(comment, bytes)
    records = read((root / output).read_bytes())
    assert piexif.helper.UserComment.load(comment) == records["parameters"]


@pytest.mark.parametrize("output", ["a.png", "a.jpg", "a.webp", "a.avif"])
def test_our_record_round_trips_through_every_format(output, project, run_cli, fake_site, tmp_path):
    root = project(
        {"images.toml": fake_manifest(tmp_path / "log", {"hero": {**HERO, "output": output}})}
    )
    assert run_cli("apply").code == 0
    records = read((root / output).read_bytes())
    spec = json.loads(records["nebula-build"])
    lock = (root / "images.lock").read_text()
    assert spec["image"] == "hero" and spec["generation_key"] in lock
    assert spec["generation"]["prompt"] == "a lighthouse at dusk"
    assert records["parameters"].startswith("a lighthouse at dusk\nSteps: 4, Sampler: unknown")
    code, out, _ = run_cli("inspect", output)
    assert code == 0
    assert "made by nebula-build: image 'hero'" in out and "seed: 1234" in out
    data = json.loads(run_cli("inspect", output, "--json").out)
    assert data["spec"]["generation"]["seed"] == 1234 and data["width"] == 64


@pytest.mark.parametrize("output", ["a.png", "a.webp"])
def test_a_resized_file_says_the_generated_size_and_records_its_own(
    output, project, run_cli, fake_site, tmp_path
):
    """A1111's `Size` is what was generated; the file's own size is in our record."""
    hero = {**HERO, "width": 128, "height": 96, "resize": [64, 48], "output": output}
    root = project({"images.toml": fake_manifest(tmp_path / "log", {"hero": hero})})
    assert run_cli("apply").code == 0
    assert image_info(root / output)[1] == (64, 48)
    records = read((root / output).read_bytes())
    assert "Size: 128x96," in records["parameters"]
    record = json.loads(records["nebula-build"])
    assert record["generation"]["width"] == 128 and record["output"]["size"] == [64, 48]


@pytest.mark.parametrize("output", ["a.png", "a.jpg", "a.webp"])
def test_metadata_false_strips_everything(output, project, run_cli, fake_site, tmp_path):
    root = project(
        {
            "images.toml": fake_manifest(
                tmp_path / "log", {"hero": {**HERO, "output": output, "metadata": False}}
            )
        }
    )
    assert run_cli("apply").code == 0
    assert read((root / output).read_bytes()) == {}
    assert "no generation metadata" in run_cli("inspect", output).out


def test_turning_metadata_off_reencodes_without_generating(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"hero": {**HERO, "output": "a.png"}})})
    run_cli("apply")
    (root / "images.toml").write_text(
        fake_manifest(log, {"hero": {**HERO, "output": "a.png", "metadata": False}})
    )
    assert "reencode" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert read((root / "a.png").read_bytes()) == {}
    assert len(log.read_text().splitlines()) == 2  # one open, one generation


def test_inspect_errors_are_one_line(project, run_cli, tmp_path):
    project({"notes.txt": "hello"})
    code, _, err = run_cli("inspect", "notes.txt")
    assert code == 1 and err.startswith("error: notes.txt: not a PNG, JPEG, WebP or AVIF image")
    code, _, err = run_cli("inspect", "missing.png")
    assert code == 1 and "cannot read" in err


def _png_with_chunks(*chunks: tuple[bytes, bytes]) -> bytes:
    """An 8x8 PNG with `chunks` (type, body) before its pixel data."""
    import io
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = buffer.getvalue()
    pixels = data.index(b"IDAT") - 4
    stored = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    return data[:pixels] + stored + data[pixels:]


def test_inspect_reads_text_chunks_within_bounds(project, run_cli):
    """A PNG's compressed text chunk is unpacked to at most 1 MiB, and 16 MiB for all
    of them: a 64 KB chunk that unpacks to 64 MiB is one line, not 64 MiB of memory
    (1 MB took 2 GB and 4 s). A chunk cut short or corrupt is one line too, where it
    had been a traceback (IndexError, zlib.error); zTXt is read like iTXt."""
    import tracemalloc
    import zlib

    bomb = zlib.compress(b"a" * (64 << 20), 9)
    just_under = zlib.compress(b"b" * ((1 << 20) - 1), 9)
    crafted = {
        "itxt.png": [(b"iTXt", b"comment\0\x01\0\0\0" + bomb), (b"tEXt", b"Software\0paint")],
        "ztxt.png": [(b"zTXt", b"comment\0\0" + bomb)],
        "corrupt.png": [(b"iTXt", b"comment\0\x01\0\0\0not zlib")],
        "cut.png": [(b"iTXt", b"comment")],
        "many.png": [(b"zTXt", b"k%d\0\0" % n + just_under) for n in range(17)],
        "fine.png": [(b"zTXt", b"note\0\0" + zlib.compress(b"made by hand"))],
    }
    root = project({})
    for name, chunks in crafted.items():
        (root / name).write_bytes(_png_with_chunks(*chunks))
    tracemalloc.start()
    try:
        results = {name: run_cli("inspect", name) for name in crafted}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"{peak / 2**20:.0f} MiB"
    for name, (code, _, err) in results.items():
        assert code == 0 and err == "", (name, err)
    assert "comment: a text longer than 1 MiB, not read\n" in results["itxt.png"].out
    assert "Software: paint\n" in results["itxt.png"].out
    assert "comment: a text longer than 1 MiB, not read\n" in results["ztxt.png"].out
    assert "comment: a compressed text that does not unpack, not read" in results["corrupt.png"].out
    assert "comment: an iTXt chunk cut short" in results["cut.png"].out
    assert "k16: a text past the 16 MiB of text read from one file, not read" in (
        results["many.png"].out
    )
    assert "k15: a text past" not in results["many.png"].out
    assert "note: made by hand\n" in results["fine.png"].out
    shown = json.loads(run_cli("inspect", "--json", "ztxt.png").out)
    assert shown["metadata"] == {}
    assert shown["unread"] == ["comment: a text longer than 1 MiB, not read"]


@pytest.mark.parametrize(
    ("fmt", "at", "value", "said"),
    [
        ("WEBP", 9, b"\x6a", "EXIF: corrupt, not read\n"),  # the TIFF header's magic number
        ("JPEG", 38, b"\xff\xff\xff", "no generation metadata\n"),  # the comment's length
    ],
)
def test_inspect_of_a_file_whose_exif_is_corrupt_says_so(fmt, at, value, said, project, run_cli):
    """EXIF that Pillow's TIFF reader refuses (a WebP's was a SyntaxError traceback) or
    warns about (printed as Python warnings) is one line, or none."""
    import io

    from nebula_build.outputs.metadata import exif_with_user_comment

    exif = bytearray(exif_with_user_comment(b"UNICODE\0" + "fox".encode("utf-16-be")))
    exif[at : at + len(value)] = value
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, fmt, exif=bytes(exif))
    project({"bad.img": buffer.getvalue()})
    code, out, err = run_cli("inspect", "bad.img")
    assert (code, err) == (0, "")
    assert said in out


def test_inspect_reads_its_file_relative_to_the_C_folder(
    project, run_cli, fake_site, tmp_path, monkeypatch
):
    image = {**HERO, "output": "art/hero.png"}
    root = project({"images.toml": fake_manifest(tmp_path / "log", {"hero": image})})
    assert run_cli("apply").code == 0
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("-C", root.name, "inspect", "art/hero.png")
    assert code == 0, err
    assert out.startswith(f"{root.name}/art/hero.png: PNG") and "image 'hero'" in out


def test_inspect_of_a_device_a_fifo_or_a_huge_file_is_one_line(project, run_cli, tmp_path):
    """`inspect /dev/zero` read until the process was killed for memory; a FIFO waited
    for a writer forever."""
    import os

    root = project({})
    os.mkfifo(root / "pipe.png")
    with (root / "huge.png").open("wb") as handle:
        handle.truncate(300 << 20)  # sparse: nothing written
    for file, said in (
        ("/dev/zero", "/dev/zero: not a regular file"),
        ("pipe.png", "pipe.png: not a regular file"),
        ("huge.png", "huge.png: over 256.0 MiB, larger than any image nebula-build reads"),
    ):
        code, out, err = run_cli("inspect", file)
        assert (code, out, err) == (1, "", f"error: {said}\n")
