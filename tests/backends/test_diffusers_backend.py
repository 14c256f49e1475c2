"""The diffusers backend, end to end on tiny random-weight pipelines on the CPU.

The pipelines are built from configs (tests/backends/tiny_models.py), saved with
`save_pretrained`, and loaded through the backend's own loading path: from a
folder the manifest names, or from a Hugging Face cache laid out as the hub
lays it out.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nebula_build.plugin import FLUX_FILL, FLUX_SCHNELL, SDXL, GenerationRequest
from tests.conftest import image_info

MODELS = {SDXL: "sdxl", FLUX_SCHNELL: "flux", FLUX_FILL: "flux-fill"}


def _require_local_extra() -> None:
    missing = [
        name
        for name in ("torch", "diffusers", "transformers", "accelerate", "tokenizers")
        if __import__("importlib.util").util.find_spec(name) is None
    ]
    if missing:
        message = f"the local extra is not installed ({', '.join(missing)})"
        if os.environ.get("NEBULA_BUILD_REQUIRE_LOCAL"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model id -> a saved tiny pipeline folder, for all three models."""
    _require_local_extra()
    from tests.backends import tiny_models

    root = tmp_path_factory.mktemp("tiny-models")
    scratch = root / "scratch"
    return {
        SDXL: tiny_models.save_sdxl(root / "sdxl", scratch),
        FLUX_SCHNELL: tiny_models.save_flux(root / "flux", scratch),
        FLUX_FILL: tiny_models.save_flux_fill(root / "flux-fill", scratch),
    }


def png(size: tuple[int, int], color: int | tuple[int, int, int], mode: str = "RGB") -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new(mode, size, color)
    if mode == "L":  # a mask: the middle square is repainted
        ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=255)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def manifest(images: dict[str, dict[str, object]], **settings: object) -> str:
    import tomli_w

    document = {
        "version": 1,
        "defaults": {"backend": "diffusers", "width": 64, "height": 64, "num_steps": 2},
        "backends": {"diffusers": {"device": "cpu", **settings}},
        "images": images,
    }
    return tomli_w.dumps(document)


def folders(tiny: dict[str, Path]) -> dict[str, str]:
    return {model_id: str(path) for model_id, path in tiny.items()}


THREE_IMAGES: dict[str, dict[str, object]] = {
    "castle": {
        "model": SDXL,
        "prompt": "a red castle",
        "negative_prompt": "blue sky",
        "seed": 7,
        "output": "out/castle.png",
    },
    "fox": {
        "model": FLUX_SCHNELL,
        "prompt": "a fox in the forest",
        "seed": 3,
        "output": "out/fox.png",
    },
    "lamp": {
        "model": FLUX_FILL,
        "prompt": "a lamp",
        "image": "room.png",
        "mask": "mask.png",
        "seed": 1,
        "width": 96,
        "output": "out/lamp.png",
    },
}
INPUTS = {"room.png": png((64, 64), (40, 90, 160)), "mask.png": png((64, 64), 0, "L")}


def test_all_three_pipelines_apply_and_a_second_apply_is_a_no_op(tiny, project, run_cli):
    root = project({"images.toml": manifest(THREE_IMAGES, models=folders(tiny)), **INPUTS})

    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "3 done (3 generated), 0 failed" in out
    assert image_info(root / "out/castle.png") == ("PNG", (64, 64))
    assert image_info(root / "out/fox.png") == ("PNG", (64, 64))
    assert image_info(root / "out/lamp.png") == ("PNG", (96, 64))  # the input is 64x64
    assert "load " in err and "inference " in err
    assert "peak GPU memory" not in err  # on the CPU there is none to report
    lock = (root / "images.lock").read_text()
    assert 'backend = "diffusers"' in lock and "seed = 7" in lock

    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "No changes: 3 images up to date." in out

    (root / "out/fox.png").unlink()
    code, out, err = run_cli("apply", "--json")  # restored from the cache, not generated
    assert code == 0, err
    report = json.loads(out)
    assert report["generated"] == 0 and report["results"][0]["action"] == "restore"


def test_flux_sizes_must_be_multiples_of_16(tiny, project, run_cli):
    images = {"fox": {**THREE_IMAGES["fox"], "width": 72}}
    project({"images.toml": manifest(images, models=folders(tiny))})
    code, out, err = run_cli("plan")
    assert code == 1
    assert "fox" in err and "width" in err and "16" in err


def test_same_seed_same_image_and_another_seed_another(tiny, tmp_path, monkeypatch, run_cli):
    def generate(folder: str, seed: int) -> bytes:
        root = tmp_path / folder
        root.mkdir()
        image = {**THREE_IMAGES["fox"], "seed": seed}
        (root / "images.toml").write_text(manifest({"fox": image}, models=folders(tiny)))
        code, _, err = run_cli("apply", cwd=root)
        assert code == 0, err
        return (root / "out/fox.png").read_bytes()

    first = generate("a", 3)
    assert generate("b", 3) == first  # another project, another process state: same bytes
    assert generate("c", 4) != first


def test_models_from_the_hugging_face_cache(tiny, project, run_cli, monkeypatch, tmp_path):
    cache = tmp_path / "hf-cache"
    repo = cache / "models--black-forest-labs--FLUX.1-schnell"
    shutil.copytree(tiny[FLUX_SCHNELL], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    root = project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]})})

    code, _, err = run_cli("apply")
    assert code == 0, err
    assert image_info(root / "out/fox.png") == ("PNG", (64, 64))


def test_a_model_missing_from_disk_says_where_it_looked(project, run_cli, monkeypatch, tmp_path):
    _require_local_extra()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]})})

    code, out, err = run_cli("apply")
    assert code == 1
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if "fox:" in line and "not on disk" in line)
    assert str(tmp_path / "empty-cache") in line
    assert "hf download black-forest-labs/FLUX.1-schnell" in line
    assert "allow_download = true" in line
    assert not (tmp_path / "proj/out").exists()


def test_a_configured_folder_that_is_missing_fails_before_any_work(project, run_cli, tmp_path):
    _require_local_extra()
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, models={FLUX_SCHNELL: "nope"})})
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.count("\n") == 1, err
    assert f"{tmp_path / 'proj' / 'nope'}, does not exist" in err


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("x" * 300 + "/m", "cannot be read (File name too long)"),
        ("~nosuchuser-nebula/m", "cannot be read (its ~user names no user here)"),
        ("images.toml/m", "cannot be read (Not a directory)"),
        ("m\x00n", "cannot be read (embedded null byte)"),
    ],
    ids=["name-too-long", "unknown-user", "under-a-file", "nul"],
)
def test_a_configured_folder_that_cannot_be_looked_at_is_one_line(project, run_cli, folder, reason):
    _require_local_extra()
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, models={FLUX_SCHNELL: folder})})
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert f"the folder [backends.diffusers] models gives, {folder[:20]!r}"[:-1] in err
    assert reason in err


def test_allow_download_reports_a_failed_download_in_one_line(
    project, run_cli, monkeypatch, tmp_path
):
    _require_local_extra()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: the download must fail cleanly
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, allow_download=True)})
    code, _, err = run_cli("apply")
    assert code == 1
    assert "Traceback" not in err
    assert "is not on disk and downloading it failed" in err


def test_a_folder_holding_another_pipeline_is_refused(tiny, project, run_cli):
    project(
        {
            "images.toml": manifest(
                THREE_IMAGES, models={**folders(tiny), SDXL: str(tiny[FLUX_SCHNELL])}
            ),
            **INPUTS,
        }
    )
    code, _, err = run_cli("apply")
    assert code == 1
    assert "holds a FluxPipeline, but this model runs in a StableDiffusionXLPipeline" in err
    assert image_info(Path("out/fox.png"))[1] == (64, 64)  # the others still ran


def test_cuda_without_a_gpu_is_one_clear_error(tiny, project, run_cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    settings = {"device": "cuda", "models": folders(tiny)}
    project({"images.toml": manifest(THREE_IMAGES, **settings), **INPUTS})
    code, _, err = run_cli("apply")
    assert code == 1
    assert "no CUDA GPU is visible to torch" in err
    assert 'device = "cpu"' in err
    # one image says it (whichever ran first); the others were not attempted, and say
    # after which image
    (first,) = re.findall(r"failed (\w+): no CUDA GPU", err)
    skipped = f"not attempted: diffusers stopped sending requests after image {first} failed"
    others = {line.split(": ", 1)[0].split()[-1] for line in err.splitlines() if skipped in line}
    assert others == {"castle", "fox", "lamp"} - {first}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"offload": "model"}, 'offload = "model" moves weights between the CPU and a GPU'),
        ({"quantize": "fp8"}, 'quantize = "fp8" needs'),
        ({"device": "mps"}, 'device = "mps" needs an Apple silicon Mac'),
    ],
)
def test_gpu_only_options_on_the_cpu_say_why(tiny, project, run_cli, setting, message):
    project(
        {"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, models=folders(tiny), **setting)}
    )
    code, _, err = run_cli("apply")
    assert code == 1
    assert message in err and "Traceback" not in err


def test_custom_model_ids_declare_their_pipeline(tiny, project, run_cli):
    models = {"studio/fox-finetune": {"path": str(tiny[FLUX_SCHNELL]), "pipeline": "flux"}}
    image = {**THREE_IMAGES["fox"], "model": "studio/fox-finetune"}
    root = project({"images.toml": manifest({"fox": image}, models=models)})
    code, out, err = run_cli("models")
    assert code == 0 and "studio/fox-finetune" in out
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "out/fox.png").exists()


# --- the backend object, driven the way the engine drives it ---------------------------


def backend_for(tiny: dict[str, Path], root: Path, **settings: object):
    from nebula_build.backends.diffusers import DiffusersBackend, DiffusersSettings

    return DiffusersBackend(
        DiffusersSettings.model_validate({"device": "cpu", "models": folders(tiny), **settings}),
        root=root,
    )


def request(model: str, seed: int = 1, **fields: object) -> GenerationRequest:
    values: dict[str, object] = {
        "image_name": model.rsplit("/", maxsplit=1)[-1],
        "generation_key": hashlib.sha256(f"{model}{seed}".encode()).hexdigest(),
        "model": model,
        "prompt": "a cat on the castle",
        "width": 64,
        "height": 64,
        "num_steps": 3,
        "seed": seed,
        **fields,
    }
    if model == FLUX_FILL:
        values |= {"image": INPUTS["room.png"], "mask": INPUTS["mask.png"]}
    return GenerationRequest(**values)  # type: ignore[arg-type]


def test_pipelines_stay_loaded_and_flux_models_share_encoders_and_vae(tiny, tmp_path):
    async def scenario():
        async with backend_for(tiny, tmp_path) as backend:
            first = await backend.generate(request(FLUX_SCHNELL))
            second = await backend.generate(request(FLUX_SCHNELL, seed=2))
            fill = await backend.generate(request(FLUX_FILL))
            runtime = backend._runtime
            schnell_pipe = runtime.pipelines[FLUX_SCHNELL].pipe
            fill_pipe = runtime.pipelines[FLUX_FILL].pipe
            return first, second, fill, schnell_pipe, fill_pipe

    first, second, fill, schnell_pipe, fill_pipe = asyncio.run(scenario())
    assert "load" in first.timings
    assert "load" not in second.timings  # the second image of a run has no load cost
    for shared in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae"):
        assert getattr(fill_pipe, shared) is getattr(schnell_pipe, shared), shared
    assert fill_pipe.transformer is not schnell_pipe.transformer
    assert fill_pipe.scheduler is not schnell_pipe.scheduler
    assert first.seed == 1 and first.data != second.data


def test_least_recently_used_pipeline_is_unloaded_when_memory_runs_out(tiny, tmp_path):
    from nebula_build.backends.diffusers.weights import component_names, estimated_bytes

    def weights(folder: Path) -> int:
        index = json.loads((folder / "model_index.json").read_text())
        return sum(estimated_bytes(folder / n, None, 4) for n in component_names(index))

    room_for_one = 1.3 * max(weights(tiny[SDXL]), weights(tiny[FLUX_SCHNELL])) / 2**30

    async def scenario():
        async with backend_for(tiny, tmp_path, max_memory_gib=room_for_one) as backend:
            await backend.generate(request(SDXL))
            await backend.generate(request(FLUX_SCHNELL))
            loaded_after_flux = list(backend._runtime.pipelines)
            again = await backend.generate(request(SDXL))
            return loaded_after_flux, list(backend._runtime.pipelines), again

    after_flux, after_sdxl_again, again = asyncio.run(scenario())
    assert after_flux == [FLUX_SCHNELL]
    assert after_sdxl_again == [SDXL]
    assert "load" in again.timings  # it had to come back from disk


def test_every_denoising_step_is_reported_and_what_comes_before(tiny, tmp_path):
    steps: list[tuple[int, int]] = []
    activities: list[str] = []

    async def scenario():
        async with backend_for(tiny, tmp_path) as backend:
            for _ in range(2):
                await backend.generate(
                    request(SDXL, on_step=lambda *s: steps.append(s), on_activity=activities.append)
                )

    asyncio.run(scenario())
    assert steps == [(1, 3), (2, 3), (3, 3)] * 2
    assert activities == ["starting torch", f"loading {SDXL}"]  # the second image: neither


def test_a_cancelled_generation_stops_at_the_next_step(tiny, tmp_path):
    steps: list[int] = []

    async def scenario():
        async with backend_for(tiny, tmp_path) as backend:
            await backend.generate(request(SDXL))  # loaded: the next one only denoises
            reached_step = asyncio.Event()
            loop = asyncio.get_running_loop()

            def on_step(done: int, total: int) -> None:
                steps.append(done)
                loop.call_soon_threadsafe(reached_step.set)
                if done == 1:
                    import time

                    time.sleep(0.3)  # the cancel lands while this step runs

            task = asyncio.create_task(
                backend.generate(request(SDXL, num_steps=50, on_step=on_step))
            )
            await reached_step.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await backend.generate(request(SDXL, seed=5))  # still usable

    after = asyncio.run(scenario())
    assert steps[:1] == [1] and len(steps) <= 3
    assert after.data


def test_speed_options_keep_images_valid(tiny, tmp_path):
    """fuse_qkv and channels_last change how the models run, not what they make."""
    from PIL import Image

    async def one(**settings: object) -> bytes:
        async with backend_for(tiny, tmp_path, **settings) as backend:
            return (await backend.generate(request(SDXL))).data

    plain = asyncio.run(one())
    tuned = asyncio.run(one(fuse_qkv=True, channels_last=True))
    import numpy as np

    a = np.asarray(Image.open(io.BytesIO(plain)), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(tuned)), dtype=float)
    assert np.abs(a - b).mean() < 1.0  # float reassociation only


@pytest.mark.slow
def test_regional_compile_reports_its_first_call_and_caches_kernels_outside_the_project(
    tiny, tmp_path
):
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")

    async def scenario():
        async with backend_for(tiny, tmp_path, compile="regional") as backend:
            first = await backend.generate(request(FLUX_SCHNELL))
            second = await backend.generate(request(FLUX_SCHNELL, seed=2))
            wider = await backend.generate(request(FLUX_SCHNELL, width=96))
            return first, second, wider

    first, second, wider = asyncio.run(scenario())
    compiled = {"compile_cold", "compile_warm"}
    assert compiled & set(first.timings)
    assert not compiled & set(second.timings)
    assert compiled & set(wider.timings)  # a new size compiles again, and says so
    assert any((Path(os.environ["XDG_CACHE_HOME"]) / "nebula-build/inductor").iterdir())


def test_apply_keeps_torchaos_import_notices_off_the_terminal(tiny, project):
    """With torchao installed (for quantize = "fp8"), loading a pipeline imported it:
    a CPU torch's apply printed that torchao could not load its CUDA extensions, and
    torch 2.13 a deprecation of how torchao registers two enums, on every run, fp8
    or not. A fresh process, as a user runs it (in this one torchao is imported)."""
    pytest.importorskip("torchao")
    images = {"castle": THREE_IMAGES["castle"]}
    root = project({"images.toml": manifest(images, models=folders(tiny))})
    err = apply_in_a_fresh_process(root)
    for notice in ("Failed to load", "register_constant", "torchao"):
        assert notice not in err


def test_an_sdxl_compile_in_bfloat16_keeps_dynamos_notices_off_the_terminal(tiny, project):
    """dynamo warned, seven lines with a source excerpt each, that SDXL's upsamplers
    call a function behind lru_cache (a torch version check they make in bfloat16,
    the GPU's default): twice across the output of every SDXL compile. Traced by
    dynamo alone, on the CPU; a fresh process, where the notice has not been given."""
    images = {"castle": THREE_IMAGES["castle"]}
    settings = {"compile": True, "dtype": "bfloat16"}
    root = project({"images.toml": manifest(images, models=folders(tiny), **settings)})
    err = apply_in_a_fresh_process(root, dynamo_only=True)
    assert "first call with compile" in err
    assert "lru_cache" not in err and "UserWarning" not in err


def apply_in_a_fresh_process(root: Path, *, dynamo_only: bool = False) -> str:
    """`apply` as a user runs it, in a process of its own: its stderr."""
    code = (
        "import sys\n"
        "from nebula_build.backends.diffusers import compiling\n"
        f"compiling.COMPILER_BACKEND = {'eager' if dynamo_only else 'inductor'!r}\n"
        "from nebula_build.cli import main\n"
        "sys.exit(main(['apply']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "created castle" in done.stderr + done.stdout
    return done.stderr


def test_import_notices_are_hidden_only_inside_the_block():
    import logging

    from nebula_build.backends.diffusers.quiet import IMPORT_NOISE_LOGGERS, import_notices_hidden

    loggers = [logging.getLogger(name) for name in IMPORT_NOISE_LOGGERS]
    loggers[0].setLevel(logging.DEBUG)
    try:
        with pytest.raises(OSError), import_notices_hidden():
            assert all(logger.level == logging.ERROR for logger in loggers)
            raise OSError("a model folder that cannot be read")
        assert [logger.level for logger in loggers] == [logging.DEBUG, logging.NOTSET]
    finally:
        loggers[0].setLevel(logging.NOTSET)


def test_commands_that_do_not_generate_never_import_torch(tiny, project):
    root = project({"images.toml": manifest(THREE_IMAGES, models=folders(tiny)), **INPUTS})
    code = (
        "import sys; from nebula_build.cli import main\n"
        "commands = (['plan'], ['plan', '--json'], ['validate'], ['status'], ['models'],\n"
        "            ['gallery'], ['gc', '--dry-run'])\n"
        "codes = [int(main(command)) for command in commands]\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print(codes, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0, 0, 0, 0] []", done.stderr


def test_watch_keeps_pipelines_loaded_and_unloads_them_when_settings_change(tiny, project):
    from tests.live.scripted import running_watch

    images = {"fox": dict(THREE_IMAGES["fox"])}
    root = project({"images.toml": manifest(images, models=folders(tiny))})

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert (await script.next_round()).changed == ["fox"]
            backend = watcher._backends.instances["diffusers"]
            loaded = backend._runtime.pipelines[FLUX_SCHNELL]

            images["fox"]["prompt"] = "a fox at night"
            (root / "images.toml").write_text(manifest(images, models=folders(tiny)))
            await script.queue.put({root / "images.toml"})
            assert (await script.next_round()).changed == ["fox"]
            assert watcher._backends.instances["diffusers"] is backend
            assert backend._runtime.pipelines[FLUX_SCHNELL] is loaded  # not loaded again

            # New backend settings: the old backend closes (its GPU memory is freed)
            # before the new one loads anything.
            images["fox"]["seed"] = 11
            (root / "images.toml").write_text(manifest(images, models=folders(tiny), timeout=900))
            await script.queue.put({root / "images.toml"})
            assert (await script.next_round()).changed == ["fox"]
            assert watcher._backends.instances["diffusers"] is not backend
            assert backend._runtime is None  # closed: its pipelines were unloaded

    asyncio.run(scenario())


def test_bad_settings_are_one_clear_line_each(project, run_cli):
    settings = {"device": "gpu", "compile": "fast", "ofload": "model"}
    images = {"fox": THREE_IMAGES["fox"], "owl": {**THREE_IMAGES["fox"], "output": "owl.png"}}
    project({"images.toml": manifest(images, **settings)})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.splitlines() == [
        'error: images.toml:10:1: backends.diffusers.device: must be "cuda", "cuda:N" '
        """(a GPU's index), "mps" or "cpu" (got "gpu")""",
        'error: images.toml:11:1: backends.diffusers.compile: must be true, false, "regional" '
        'or "max-autotune" (got "fast")',
        "error: images.toml:12:1: backends.diffusers.ofload: unknown key (did you mean 'offload'?)",
    ]


def test_half_precision_loads_the_fp16_files_where_a_repo_has_both(tiny, tmp_path):
    """SDXL's hub repo holds fp32 and fp16 files: in half precision, read half the bytes."""
    from tests.backends import tiny_models

    folder = tmp_path / "sdxl-both"
    pipe = tiny_models.sdxl_pipeline(tmp_path / "scratch")
    pipe.save_pretrained(folder)
    pipe.save_pretrained(folder, variant="fp16")  # (the tiny weights stay float32 inside)
    for weights in folder.glob("*/*.safetensors"):
        if ".fp16." not in weights.name:
            weights.write_bytes(b"not weights: loading this file would fail")

    async def scenario():
        settings = {"models": {SDXL: str(folder)}, "dtype": "bfloat16"}
        async with backend_for(tiny, tmp_path, **settings) as backend:
            return await backend.generate(request(SDXL, num_steps=2))

    assert asyncio.run(scenario()).data


def test_configs_saved_elsewhere_still_match_for_sharing(tiny, tmp_path):
    from nebula_build.backends.diffusers.weights import fingerprint

    copy = tmp_path / "vae"
    shutil.copytree(tiny[FLUX_SCHNELL] / "vae", copy)
    config = json.loads((copy / "config.json").read_text())
    config["_name_or_path"] = "/somewhere/else/vae"
    config["_diffusers_version"] = "0.0.1"
    (copy / "config.json").write_text(json.dumps(config, indent=4))
    assert fingerprint(copy) == fingerprint(tiny[FLUX_FILL] / "vae")
    config["latent_channels"] = 4
    (copy / "config.json").write_text(json.dumps(config))
    assert fingerprint(copy) != fingerprint(tiny[FLUX_FILL] / "vae")


def test_an_error_inside_diffusers_is_one_line_naming_the_model(tiny, tmp_path):
    from nebula_build.errors import BackendError

    async def scenario():
        async with backend_for(tiny, tmp_path) as backend:
            # the resolver never lets 60 through for SDXL; the pipeline refuses it too
            with pytest.raises(BackendError) as caught:
                await backend.generate(request(SDXL, width=60))
            return caught.value, await backend.generate(request(SDXL))

    error, after = asyncio.run(scenario())
    assert str(error).startswith(f"{SDXL} failed in diffusers: ValueError: ")
    assert "\n" not in str(error) and error.image == "stable-diffusion-xl-base-1.0"
    assert after.data  # the backend carries on


def test_without_the_local_extra_apply_says_what_to_install(project, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import and find_spec: not installed
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]})})
    code, _, err = run_cli("apply")
    assert code == 1
    line = err.strip()  # (where the extra is absent, torch and the rest are named too)
    assert line.startswith("error: the diffusers backend needs ") and "\n" not in line
    assert "diffusers" in line.removeprefix("error: the diffusers backend")
    assert line.endswith("from the nebula-build checkout, pip install -e '.[local]'")
    assert "nebula-build[local]" not in line  # not published: it installs from a checkout
    code, out, _ = run_cli("plan")  # planning needs none of it
    assert code == 0 and "+ fox" in out


def test_without_torch_apply_says_to_install_it_first(project, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]})})
    code, _, err = run_cli("apply")
    assert code == 1
    line = err.strip()
    assert "install torch for your CUDA version first (pytorch.org), then " in line
    assert line.endswith("from the nebula-build checkout, pip install -e '.[local]'")


def test_a_compile_cache_inside_the_project_is_refused(tmp_path):
    from nebula_build.backends.diffusers.weights import compile_cache_path
    from nebula_build.plugin import LocalSetupError

    with pytest.raises(LocalSetupError, match="is inside the project"):
        compile_cache_path("evil/inductor", tmp_path)
    assert compile_cache_path("", tmp_path).name == "inductor"
    assert not compile_cache_path("", tmp_path).is_relative_to(tmp_path)


def _committed_sdxl(tiny: dict[str, Path], project: Callable[..., Path]) -> Path:
    """A project whose SDXL weights are a folder committed with it (a pull request's)."""
    images = {"castle": THREE_IMAGES["castle"]}
    root = project({"images.toml": manifest(images, models={SDXL: "m"})})
    shutil.copytree(tiny[SDXL], root / "m")
    return root


def _safetensors(header: bytes, length: int | None = None) -> bytes:
    """A file that starts as safetensors do: the header's length, the header, data."""
    return (len(header) if length is None else length).to_bytes(8, "little") + header + bytes(64)


@pytest.mark.parametrize(
    "weights",
    [
        _safetensors(b"{}", 1 << 62),  # read as said: a MemoryError
        _safetensors(b"{}", 10_000),  # past the end of the file
        _safetensors(b"[]"),
        _safetensors(b'{"w": {"dtype": "F32", "shape": ["1", "2"]}}'),
        _safetensors(b'{"w": {"dtype": "F32", "shape": 3}}'),
        _safetensors(b'{"w": {"dtype": "F32", "shape": [' + b"1," * 16 + b"1]}}"),
        _safetensors(b'{"w": {"dtype": "F32", "shape": [' + b"[" * 100_000 + b"]}}"),
        b"\x01",
    ],
    ids=["huge", "past-end", "list", "text-dims", "no-list", "17-dims", "deep", "short"],
)
def test_a_safetensors_header_that_lies_is_one_line_naming_the_file(
    tiny, project, run_cli, weights
):
    root = _committed_sdxl(tiny, project)
    (root / "m/unet/diffusion_pytorch_model.safetensors").write_bytes(weights)
    code, _, err = run_cli("apply")
    assert code == 1
    assert "Traceback" not in err and "internal error" not in err
    assert (
        f"failed castle: model '{SDXL}': {root}/m/unet/diffusion_pytorch_model.safetensors" in err
    )
    assert "is not a safetensors file (" in err


def test_a_component_linked_to_a_large_folder_is_not_walked(tiny, project, run_cli, tmp_path):
    """A component folder linked to / (or the home folder) would have every file on the
    disk sampled before the pipeline loads: hours, and reads of everything readable."""
    root = _committed_sdxl(tiny, project)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(root / "m/text_encoder_2", elsewhere)
    for index in range(21):
        (elsewhere / f"{index}").mkdir()
        for file in range(100):
            (elsewhere / f"{index}/{file}").touch()
    shutil.rmtree(root / "m/text_encoder_2")
    (root / "m/text_encoder_2").symlink_to(elsewhere)
    code, _, err = run_cli("apply")
    assert code == 1
    assert "Traceback" not in err and "internal error" not in err
    assert f"model '{SDXL}': {root}/m/text_encoder_2 holds more than 2,000 entries" in err


def test_a_compile_cache_elsewhere_in_the_checkout_is_refused(tiny, project, run_cli, tmp_path):
    """A manifest in a folder of the repository: `../kernels` is outside the project
    but a pull request commits it all the same, and torch runs the Python wrappers
    and loads the libraries it finds there."""
    (tmp_path / ".git").mkdir()  # tmp_path is the checkout, the project one folder of it
    images = {"castle": THREE_IMAGES["castle"]}
    settings = {"models": folders(tiny), "compile_cache": "../kernels"}
    root = project({"images.toml": manifest(images, **settings)})
    assert root.parent == tmp_path
    code, _, err = run_cli("apply")
    assert code == 1
    assert (
        "[backends.diffusers] compile_cache = '../kernels' is inside the checkout that holds "
        f"the project ({tmp_path})"
    ) in err
    assert not (root / "out/castle.png").exists()


@pytest.mark.parametrize(
    ("folder", "reason"),
    [
        ("~nosuchuser-nebula/kernels", "its ~user names no user here"),
        ("/" + "k" * 300 + "/kernels", "File name too long"),
        ("/dev/null/kernels", "Not a directory"),
    ],
    ids=["unknown-user", "name-too-long", "under-a-file"],
)
def test_a_compile_cache_that_cannot_be_used_is_refused_before_any_work(
    project, run_cli, folder, reason
):
    """A review found the name too long and the path under a file passed the check
    (pathlib's resolve takes them for paths not made yet) and failed every image."""
    _require_local_extra()
    settings = {"compile_cache": folder}
    root = project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, **settings)})
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.count("\n") == 1, err
    assert f"[backends.diffusers] compile_cache = '{folder[:20]}" in err
    assert f"cannot be used ({reason})" in err
    assert not (root / "out").exists()
