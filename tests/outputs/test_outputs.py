"""Output options: formats, quality, resize, variants, and the asset manifest."""

from __future__ import annotations

import json

import pytest

from nebula_build.outputs.schemas import AssetManifest
from nebula_build.outputs.schemas import asset_manifest_schema as json_schema
from nebula_build.state.lockfile import loads
from tests.conftest import REPO, fake_manifest, generation_log, image_info

HERO = {
    "prompt": "a lighthouse",
    "width": 128,
    "height": 64,
    "output": "static/hero.webp",
    "widths": [32, 64, 512],
}


def test_variants_are_written_never_upscaled_and_listed(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project(
        {
            "images.toml": fake_manifest(log, {"hero": HERO})
            + '\n[assets]\nmanifest = "static/images.json"\n'
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert image_info(root / "static/hero.webp") == ("WEBP", (128, 64))
    assert image_info(root / "static/hero-32.webp") == ("WEBP", (32, 16))
    assert image_info(root / "static/hero-64.webp") == ("WEBP", (64, 32))
    assert not (root / "static/hero-512.webp").exists()  # wider than the image
    data = json.loads((root / "static/images.json").read_text())
    AssetManifest.model_validate(data)
    files = data["images"]["hero"]["files"]
    assert [(f["path"], f["url"], f["width"], f["height"]) for f in files] == [
        ("static/hero.webp", "hero.webp", 128, 64),
        ("static/hero-32.webp", "hero-32.webp", 32, 16),
        ("static/hero-64.webp", "hero-64.webp", 64, 32),
    ]
    for entry in files:
        assert entry["bytes"] == (root / entry["path"]).stat().st_size
        assert image_info(root / entry["path"])[1] == (entry["width"], entry["height"])
    assert data["images"]["hero"]["alt"] == "a lighthouse"
    assert "hero-32.webp" in (root / "images.lock").read_text()


def test_a_url_in_the_asset_manifest_is_percent_encoded(project, run_cli, fake_site, tmp_path):
    """A post named "My First Post.md" made `img/My First Post.webp`: its url went into
    a srcset as it was, which splits at the space. Its path stays the file's name."""
    log = tmp_path / "gen.log"
    hero = {**HERO, "output": "static/My First Post, café #1.webp", "widths": [32]}
    root = project(
        {
            "images.toml": fake_manifest(log, {"hero": hero})
            + '\n[assets]\nmanifest = "static/images.json"\n'
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    files = json.loads((root / "static/images.json").read_text())["images"]["hero"]["files"]
    assert [(f["path"], f["url"]) for f in files] == [
        ("static/My First Post, café #1.webp", "My%20First%20Post%2C%20caf%C3%A9%20%231.webp"),
        (
            "static/My First Post, café #1-32.webp",
            "My%20First%20Post%2C%20caf%C3%A9%20%231-32.webp",
        ),
    ]


def test_an_icon_at_2x_keeps_its_at_sign_in_the_asset_manifests_url(
    project, run_cli, fake_site, tmp_path
):
    """`@` may stand in a URL's path (RFC 3986 pchar): an engine reading the url as a
    path finds `icon@2x.png`, not `icon%402x.png`."""
    log = tmp_path / "gen.log"
    icon = {**HERO, "output": "static/icons/potion@2x.png"}
    root = project(
        {
            "images.toml": fake_manifest(log, {"potion": icon})
            + '\n[assets]\nmanifest = "static/images.json"\n'
        }
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    files = json.loads((root / "static/images.json").read_text())["images"]["potion"]["files"]
    assert files[0]["url"] == "icons/potion@2x.png"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"quality": 40}, ("WEBP", (128, 64))),
        ({"lossless": True}, ("WEBP", (128, 64))),
        ({"resize": [96, 96], "fit": "contain"}, ("WEBP", (96, 96))),
        ({"resize": [40, 20], "fit": "exact", "resample": "nearest"}, ("WEBP", (40, 20))),
        ({"output": "static/hero.avif"}, ("AVIF", (128, 64))),
        ({"output": "static/hero.jpg", "quality": 70}, ("JPEG", (128, 64))),
        ({"widths": [48]}, ("WEBP", (128, 64))),
    ],
)
def test_output_only_changes_reencode_from_the_cache(
    change, expected, project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, {"hero": HERO})})
    assert run_cli("apply").code == 0
    before = (root / "static/hero.webp").read_bytes()
    (root / "images.toml").write_text(fake_manifest(log, {"hero": {**HERO, **change}}))
    code, out, _ = run_cli("plan")
    assert "reencode" in out and "0 to generate" in out
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert generation_log(log) == ["hero"]  # nothing generated again
    output = root / change.get("output", "static/hero.webp")
    assert image_info(output) == expected
    if "output" not in change:
        assert output.read_bytes() != before or change == {"widths": [48]}
    if change == {"widths": [48]}:
        assert image_info(root / "static/hero-48.webp") == ("WEBP", (48, 24))
        assert not (root / "static/hero-32.webp").exists()  # stale variants are removed


def test_a_hand_edited_variant_is_a_conflict_and_a_missing_one_is_restored(
    project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, {"hero": HERO})})
    run_cli("apply")
    (root / "static/hero-32.webp").unlink()
    assert "variant static/hero-32.webp missing" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert image_info(root / "static/hero-32.webp")[1] == (32, 16)
    (root / "static/hero-64.webp").write_bytes(b"edited")
    code, out, _ = run_cli("plan")
    assert "variant static/hero-64.webp changed by hand" in out
    assert run_cli("apply").code == 1
    assert run_cli("apply", "--force").code == 0
    assert image_info(root / "static/hero-64.webp")[1] == (64, 32)
    (root / "images.toml").write_text(fake_manifest(log, {}))
    assert run_cli("apply").code == 0
    assert not list(root.glob("static/hero*"))  # every file of a removed image goes
    assert generation_log(log) == ["hero"]


def test_png_passthrough_keeps_the_backend_pixels_byte_for_byte(
    project, run_cli, fake_site, tmp_path
):
    from nebula_build.outputs.metadata import _chunks

    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "x", "output": "a.png"},
        "b": {"prompt": "x", "seed": 2, "output": "b.png", "metadata": False},
    }
    root = project({"images.toml": fake_manifest(log, images)})
    assert run_cli("apply").code == 0
    lock = loads((root / "images.lock").read_text())
    cache = root / ".nebula-build/cache"
    cached = {
        n: (cache / e.generation_key[:2] / e.generation_key).read_bytes() for n, e in lock.items()
    }

    def image_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
        return [c for c in _chunks(data) if c[0] not in (b"tEXt", b"iTXt", b"zTXt")]

    assert image_chunks((root / "a.png").read_bytes()) == image_chunks(cached["a"])
    assert (root / "b.png").read_bytes() == cached["b"]  # metadata = false: nothing added


def test_images_with_one_spec_share_one_generation(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "same", "output": "a.png"},
        "b": {"prompt": "same", "output": "b.webp"},
    }
    root = project({"images.toml": fake_manifest(log, images, delay=0.2)})
    assert run_cli("apply").code == 0
    assert len(generation_log(log)) == 1  # a's or b's, whichever started first
    assert image_info(root / "b.webp") == ("WEBP", (64, 64))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"output": "a.png", "quality": 80}, "images.a.quality: PNG is lossless"),
        ({"output": "a.jpg", "lossless": True}, "images.a.lossless: lossless applies to .webp"),
        ({"output": "a.png", "fit": "contain"}, "images.a.fit: applies only with `resize`"),
        (
            {"output": "a.png", "resize": [10, 20000]},
            "images.a.resize: each side must be within 1-8192 pixels (got 20000)",
        ),
        (
            {"output": "a.png", "widths": [10, 0]},
            "images.a.widths: each must be within 1-8192 pixels (got 0)",
        ),
        (
            {"output": "a.png", "widths": [10, 20, 10]},
            "images.a.widths: must be distinct (10 is there twice)",
        ),
        (
            {"output": "a.png", "widths": [10], "variant_pattern": "{stem}.png"},
            "images.a.variant_pattern: must contain {width}",
        ),
        (
            {"output": "a.png", "widths": [10], "variant_pattern": "{name}{ext}"},
            "images.a.variant_pattern: may use only {stem}, {width} and {ext}",
        ),
        *(
            (
                {"output": "o/a.png", "widths": [32], "variant_pattern": pattern},
                "images.a.variant_pattern: must end with the output's extension .png (use {ext})",
            )
            for pattern in (
                "{stem}-{width}.html",
                "{stem}-{width}.toml",
                "{stem}-{width}.lock",
                "{stem}-{width}.jpg",
                "{stem}-{width}{ext}.bak",
                "{stem}{ext}-{width}",
            )
        ),
    ],
)
def test_bad_output_options_are_one_clear_line(
    fields, message, project, run_cli, fake_site, tmp_path
):
    project({"images.toml": fake_manifest(tmp_path / "log", {"a": {"prompt": "x", **fields}})})
    code, _, err = run_cli("validate")
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("output", "pattern", "variant"),
    [("a.png", "{stem}@{width}.png", "a@32.png"), ("a.PNG", "{width}-{stem}.png", "32-a.png")],
)
def test_a_variant_may_spell_its_outputs_extension_out(
    output, pattern, variant, project, run_cli, fake_site, tmp_path
):
    image = {"prompt": "x", "output": output, "widths": [32], "variant_pattern": pattern}
    root = project({"images.toml": fake_manifest(tmp_path / "log", {"a": image})})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert image_info(root / variant) == ("PNG", (32, 32))


def test_variant_colliding_with_another_output_is_refused(project, run_cli, fake_site, tmp_path):
    images = {
        "a": {"prompt": "x", "width": 128, "output": "a.png", "widths": [64]},
        "b": {"prompt": "y", "output": "a-64.png"},
    }
    project({"images.toml": fake_manifest(tmp_path / "log", images)})
    code, _, err = run_cli("validate")
    assert code == 1 and "a-64.png is also written by images.a" in err


def test_asset_files_are_in_the_order_the_schema_states(project, run_cli, fake_site, tmp_path):
    """files[0] is the main output (an <img>'s src, width, height), then the variants
    narrowest first, whatever order `widths` declares them in; the schema says so."""
    hero = {**HERO, "widths": [96, 32, 64]}
    root = project(
        {
            "images.toml": fake_manifest(tmp_path / "log", {"hero": hero})
            + '\n[assets]\nmanifest = "static/images.json"\n'
        }
    )
    assert run_cli("apply").code == 0
    files = json.loads((root / "static/images.json").read_text())["images"]["hero"]["files"]
    assert [f["width"] for f in files] == [128, 32, 64, 96]
    image = json_schema()["$defs"]["AssetImage"]
    described = image["description"] + image["properties"]["files"]["description"]
    assert "largest first" not in described
    assert "main output first" in described and "narrowest first" in described


def test_committed_asset_schema_is_up_to_date():
    committed = json.loads((REPO / "schema/assets.schema.json").read_text())
    assert committed == json_schema()


def _noise(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


ENCODINGS = {
    "png kept": ("png", (64, 64), {}),
    "png kept, variants": ("png", (64, 64), {"variants": (("{stem}-32", 32, 32),)}),
    "png resized": ("png", (32, 32), {}),
    "png lossless webp": ("webp", (64, 64), {"lossless": True}),
    "jpeg": ("jpeg", (64, 64), {"quality": 80}),
    "contain": ("webp", (96, 48), {"fit": "contain"}),
}


@pytest.mark.parametrize(("fmt", "size", "options"), ENCODINGS.values(), ids=ENCODINGS.keys())
def test_render_from_pixels_already_decoded_writes_the_same_files(fmt, size, options):
    """Verification decodes once and hands the pixels to render; the files are those a
    render that decodes by itself writes, and render reads them without changing them."""
    import io

    from PIL import Image

    from nebula_build.outputs.encode import Encoding, keeps_original, needs_pixels, render

    original = _noise((64, 64))
    encoding = Encoding(fmt, size, texts=(("parameters", "p"), ("nebula-build", "{}")), **options)
    with Image.open(io.BytesIO(original)) as opened:
        pixels = opened.copy()
    before = pixels.tobytes()
    assert render(original, encoding, pixels=pixels) == render(original, encoding)
    assert pixels.tobytes() == before and pixels.size == (64, 64)
    kept = keeps_original(encoding, "png", (64, 64))
    assert kept == (fmt == "png" and size == (64, 64))
    assert needs_pixels(encoding, "png", (64, 64)) == (not kept or bool(encoding.variants))


def test_a_jpeg_original_is_never_kept_as_it_is():
    from nebula_build.outputs.encode import Encoding, keeps_original, needs_pixels

    encoding = Encoding("jpeg", (64, 64))
    assert not keeps_original(encoding, "jpeg", (64, 64))
    assert needs_pixels(encoding, "jpeg", (64, 64))


def test_an_encoders_option_in_defaults_goes_to_the_outputs_it_fits(
    project, run_cli, fake_site, tmp_path
):
    """`quality = 50` in [defaults] failed every PNG image ("defaults.quality: PNG is
    lossless"), naming no image: set for many images, it now goes to the lossy ones and
    is left out of the others; set on a PNG image itself, it is still refused."""
    images = {"a": {"prompt": "a", "output": "a.png"}, "b": {"prompt": "b", "output": "b.jpg"}}
    manifest = fake_manifest(tmp_path / "log", images).replace(
        "[defaults]\n", "[defaults]\nquality = 50\n", 1
    )
    assert "quality = 50" in manifest
    root = project({"images.toml": manifest})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert image_info(root / "a.png")[0] == "PNG" and image_info(root / "b.jpg")[0] == "JPEG"
    root.joinpath("images.toml").write_text(
        manifest.replace('output = "a.png"', 'output = "a.png"\nquality = 50')
    )
    code, _, err = run_cli("validate")
    assert code == 1 and "images.a.quality: PNG is lossless" in err, err
