"""The diffusers backend's speed options on the CPU: compile across many sizes,
which options combine (and in what order they are set up), memory that comes
back on unload, the dtype `auto` picks, and failures that stay one line.

Compile tests use dynamo's "eager" backend: dynamo traces, guards and counts
recompiles exactly as with inductor, without inductor's code generation (minutes
per graph on a small CPU). One slow test in test_diffusers_backend.py compiles
for real.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from nebula_build.plugin import FLUX_SCHNELL, SDXL
from tests.backends import test_diffusers_backend
from tests.backends.test_diffusers_backend import (
    THREE_IMAGES,
    backend_for,
    folders,
    manifest,
    request,
)
from tests.conftest import image_info

tiny = test_diffusers_backend.tiny  # the saved tiny pipelines (a session fixture)


@pytest.fixture
def dynamo_only(monkeypatch: pytest.MonkeyPatch):
    """compile = … traces with dynamo and runs the graphs eagerly; torch's compiler
    state is reset after the test."""
    import torch

    from nebula_build.backends.diffusers import compiling

    monkeypatch.setattr(compiling, "COMPILER_BACKEND", "eager")
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.fixture
def offload_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """accelerate's offload hooks with the CPU as the execution device: the hooks and
    the setup order are the real ones, without a GPU to move weights to."""
    from nebula_build.backends.diffusers.runtime import Runtime

    monkeypatch.setattr(Runtime, "_check_options", lambda self: None)


def run(tiny, root: Path, requests: list, look=lambda runtime: None, **settings: object):
    """The results of `requests`, and what `look` found in the runtime that made
    them before the backend closed."""

    async def scenario():
        async with backend_for(tiny, root, **settings) as backend:
            results = [await backend.generate(r) for r in requests]
            return results, look(backend._runtime)

    return asyncio.run(scenario())


# --- which options work together ----------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "lines"),
    [
        (
            {"compile": True, "offload": "model"},
            [
                'compile = true does not work with offload = "model": a whole-model graph '
                "cannot run through the hooks that move each model to the GPU; use compile = "
                '"regional" with offload = "model" (images.fox and every other image on '
                "diffusers would fail)"
            ],
        ),
        (
            {"compile": "regional", "offload": "sequential", "quantize": "fp8"},
            [
                'compile = "regional" does not work with offload = "sequential"',
                'quantize = "fp8" does not work with offload = "sequential"',
            ],
        ),
    ],
)
def test_options_that_fail_every_image_are_refused_by_validate_one_line_each(
    project, settings, lines
):
    root = project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, **settings)})
    code = (
        "import sys; from nebula_build.cli import main\n"
        "code = int(main(['validate']))\n"
        "print(code, [m for m in ('torch', 'diffusers') if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "1 []", done.stderr  # refused, and torch never imported
    errors = done.stderr.strip().splitlines()
    assert len(errors) == len(lines), errors
    for error, line in zip(errors, lines, strict=True):
        assert error.startswith("error: images.toml:")
        assert "backends.diffusers.offload: " + line in error
        assert error.endswith("(images.fox and every other image on diffusers would fail)")


def test_options_that_conflict_where_no_image_uses_the_backend_are_a_warning(project, run_cli):
    """Not an error (no image fails), but `validate` says so before the first image on
    the backend does; with such an image it is the error above."""
    fox = {**THREE_IMAGES["fox"], "backend": "preview"}
    root = project({"images.toml": manifest({"fox": fox}, compile=True, offload="model")})
    code, out, err = run_cli("validate")
    assert code == 0 and out == "images.toml: 1 image, valid\n"
    (warning,) = err.splitlines()
    assert warning.startswith("warning: images.toml:")
    assert "backends.diffusers.offload: compile = true does not work with offload" in warning
    assert warning.endswith("(no image uses diffusers yet; the first that does will fail)")
    code, out, _ = run_cli("validate", "--json")
    assert code == 0 and json.loads(out)["warnings"] == [warning.removeprefix("warning: ")]

    (root / "images.toml").write_text(manifest({"fox": fox}, compile="regional", offload="model"))
    code, out, err = run_cli("validate")
    assert code == 0 and err == ""


def test_validate_answered_by_the_spec_cache_does_not_parse_the_manifest_again(
    project, run_cli, monkeypatch
):
    """The idle-settings check reads `[backends]` from the text outside the image
    tables; the whole parse (seconds at 100,000 images) only locates a conflict."""
    from nebula_build.core import manifest as manifest_module

    fox = {**THREE_IMAGES["fox"], "backend": "preview"}
    project({"images.toml": "# nebula and diffusers, in a comment\n" + manifest({"fox": fox})})
    assert run_cli("validate").code == 0  # fills the spec cache

    def parse_again(*args, **kwargs):
        raise AssertionError("the manifest was parsed again")

    monkeypatch.setattr(manifest_module, "load", parse_again)
    code, out, err = run_cli("validate")
    assert code == 0 and err == "", err


def test_validate_under_another_backend_does_not_call_the_declared_one_idle(project, run_cli):
    """`--backend preview` moves every image off diffusers for this run: its settings
    are not idle, and the conflict is not reported as "no image uses diffusers yet"."""
    project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, compile=True, offload="model")})
    code, _, err = run_cli("validate", "--backend", "preview")
    assert "no image uses diffusers yet" not in err
    assert run_cli("validate").code == 1  # as written, every image would fail


def test_options_that_combine_validate(project, run_cli):
    for settings in (
        {"compile": "regional", "offload": "model"},
        {"fuse_qkv": True, "offload": "sequential", "channels_last": True},
        {"compile": "max-autotune", "fuse_qkv": True, "quantize": "fp8"},
    ):
        project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, **settings)})
        code, _, err = run_cli("validate")
        assert code == 0, (settings, err)


def test_regional_compile_runs_over_model_offload_hooks(
    tiny, tmp_path, dynamo_only, offload_on_the_cpu
):
    plain, _ = run(tiny, tmp_path, [request(FLUX_SCHNELL)])
    (compiled,), hooked = run(
        tiny,
        tmp_path,
        [request(FLUX_SCHNELL)],
        lambda runtime: hasattr(runtime.pipelines[FLUX_SCHNELL].pipe.transformer, "_hf_hook"),
        compile="regional",
        offload="model",
    )
    assert hooked  # accelerate's hook is on the model
    assert {"compile_cold", "compile_warm"} & set(compiled.timings)  # the blocks compiled
    assert compiled.data == plain[0].data


def test_fused_qkv_is_done_before_offload_hooks_and_drops_the_unfused_layers(
    tiny, tmp_path, offload_on_the_cpu
):
    """Fused before the hooks are placed, so the hooks move the fused layers (with
    sequential offload the fused weights would otherwise be made from `meta` ones;
    that mode only runs with a GPU: tests/backends/test_diffusers_gpu.py)."""
    from PIL import Image

    def layers(runtime) -> tuple[int, int]:
        unet = runtime.pipelines[SDXL].pipe.unet
        fused = sum(hasattr(m, "to_qkv") or hasattr(m, "to_kv") for m in unet.modules())
        unfused = sum(hasattr(m, "to_k") for m in unet.modules())
        return fused, unfused

    (plain,), _ = run(tiny, tmp_path, [request(SDXL)])
    (fused,), (fused_layers, unfused_layers) = run(
        tiny, tmp_path, [request(SDXL)], layers, fuse_qkv=True, offload="model"
    )
    assert fused_layers and not unfused_layers
    import numpy as np

    a = np.asarray(Image.open(io.BytesIO(plain.data)), dtype=float)
    b = np.asarray(Image.open(io.BytesIO(fused.data)), dtype=float)
    assert np.abs(a - b).mean() < 1.0


# --- compile across sizes -----------------------------------------------------------------


def test_compile_survives_twenty_sizes_in_one_watch_session(tiny, project, dynamo_only):
    from nebula_build.backends.diffusers import compiling
    from tests.live.scripted import Script, make_watcher

    limit = compiling.recompile_limit()
    widths = [64 + 16 * n for n in range(20)]
    images = {"fox": {**THREE_IMAGES["fox"], "num_steps": 1}}
    root = project({"images.toml": manifest(images, models=folders(tiny), compile=True)})

    def write(width: int) -> None:
        images["fox"]["width"] = width
        text = manifest(images, models=folders(tiny), compile=True)
        (root / "images.toml").write_text(text)

    async def scenario() -> str:
        script, out = Script(), io.StringIO()
        write(widths[0])
        watcher = make_watcher(root, script, out)
        task = asyncio.create_task(watcher.run(script.changes()))
        for index, width in enumerate(widths):
            if index:
                write(width)
                await script.queue.put({root / "images.toml"})
            done = await script.next_round(timeout=120)
            assert done.changed == ["fox"] and not done.error, out.getvalue()
            assert image_info(root / "out/fox.png") == ("PNG", (width, 64))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return out.getvalue()

    out = asyncio.run(scenario())
    assert "failed" not in out and "Traceback" not in out
    assert out.count("first call with compile") == limit  # one per compiled size
    assert out.count("recompile limit") == 1  # said once, when the first size runs eagerly
    assert "new sizes run without compile" in out


def test_a_size_seen_before_does_not_say_it_compiled(tiny, tmp_path, dynamo_only):
    requests = [request(FLUX_SCHNELL, seed=s, width=w) for s, w in ((1, 64), (2, 80), (3, 64))]
    results, sizes = run(
        tiny,
        tmp_path,
        requests,
        lambda runtime: runtime.pipelines[FLUX_SCHNELL].sizes,
        compile=True,
    )
    compiled = [bool({"compile_cold", "compile_warm"} & set(r.timings)) for r in results]
    assert compiled == [True, True, False]
    assert sizes == {(64, 64), (80, 64)}


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        (True, "compiling for this size (once)"),
        ("max-autotune", "tuning and compiling for this size (once; can take many minutes)"),
    ],
)
def test_the_status_line_says_a_compile_is_coming_and_how_long(
    tiny, tmp_path, dynamo_only, mode, said
):
    """max-autotune's first FLUX image takes many minutes on an H200: the line says so."""
    activities: list[str] = []
    requests = [request(FLUX_SCHNELL, seed=s, on_activity=activities.append) for s in (1, 2)]
    run(tiny, tmp_path, requests, compile=mode)
    assert activities.count(said) == 1  # the second image of the size: compiled already


def test_when_dynamo_refuses_a_size_the_image_runs_eagerly(tiny, tmp_path, dynamo_only):
    """Another pipeline of the same class can use up dynamo's limit behind the
    budget's back: the refused image runs again without compile."""
    import torch

    requests = [request(FLUX_SCHNELL, width=64 + 16 * n) for n in range(3)]

    def limit(value: int) -> None:  # dynamo's settings belong to the thread that reads them
        torch._dynamo.config.recompile_limit = value

    async def scenario():
        async with backend_for(tiny, tmp_path, compile=True) as backend:
            worker = backend._executor
            before = await asyncio.get_running_loop().run_in_executor(
                worker, lambda: torch._dynamo.config.recompile_limit
            )
            await asyncio.get_running_loop().run_in_executor(worker, limit, 2)
            try:
                results = [await backend.generate(r) for r in requests[:2]]
                backend._runtime.budget.clear()  # as if it had not counted them
                results.append(await backend.generate(requests[2]))
            finally:
                await asyncio.get_running_loop().run_in_executor(worker, limit, before)
            return results

    results = asyncio.run(scenario())
    assert results[2].data
    assert any("recompile limit" in w for w in results[2].warnings), results
    assert not {"compile_cold", "compile_warm"} & set(results[2].timings)


def test_max_autotune_leaves_the_compiler_settings_of_the_process_alone(tiny, tmp_path):
    import os

    import torch._inductor.config as inductor

    from nebula_build.backends.diffusers.compiling import compile_arguments

    variable_before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    arguments = compile_arguments("max-autotune", cuda=True)
    assert arguments["options"]["max_autotune"] and arguments["options"]["conv_1x1_as_mm"]
    assert "mode" not in arguments  # torch.compile takes a mode or options, not both

    async def scenario():  # loads and compiles (lazily) without running an image
        async with backend_for(tiny, tmp_path, compile="max-autotune") as backend:
            # torch 2.13 keeps these settings per thread: read them on the backend's
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(backend._executor, inductor.save_config_portable)
            await loop.run_in_executor(
                backend._executor, backend._get_runtime().pipeline, FLUX_SCHNELL
            )
            after = await loop.run_in_executor(backend._executor, inductor.save_config_portable)
            return before, after

    before, after = asyncio.run(scenario())
    assert after == before
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == variable_before


def test_max_autotune_writes_no_tuning_tables_to_stderr():
    """On an H200, max-autotune's first FLUX image wrote a table for every matmul
    inductor timed straight to stderr, hundreds of lines across `apply`'s progress.
    The compile's own options turn the tables off, as torch reads them while it
    compiles (a CPU has no Triton choices to time, so the tables cannot show here)."""
    test_diffusers_backend._require_local_extra()
    import torch
    import torch._inductor.config as inductor

    from nebula_build.backends.diffusers.compiling import compile_arguments

    options = compile_arguments("max-autotune", cuda=True)["options"]
    torch.compile(lambda x: x, options=options)  # refuses an option this torch lacks
    with inductor.patch(options):
        assert inductor.autotune_num_choices_displayed == 0
        assert not inductor.max_autotune_report_choices_stats


def torch_settings() -> tuple[object, ...]:
    """What torch lets a library set for later work, as the calling thread sees it
    (torch 2.13 keeps config changes per thread)."""
    import torch
    import torch._dynamo.config as dynamo
    import torch._inductor.config as inductor

    return (
        inductor.save_config_portable(),
        dynamo.save_config_portable(),
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_grad_enabled(),
    )


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"fuse_qkv": True, "channels_last": True},
        {"compile": True},
        {"compile": "max-autotune"},
        {"compile": "regional", "offload": "model"},
        {"offload": "model", "fuse_qkv": True},  # sequential offload runs only on a GPU
        {"quantize": "fp8"},
    ],
    ids=lambda settings: ",".join(f"{k}={v}" for k, v in settings.items()) or "none",
)
def test_speed_options_leave_torchs_settings_as_they_were(
    tiny, tmp_path, dynamo_only, offload_on_the_cpu, settings
):
    """On the backend's own thread, where every later image and compile runs.
    torchao's float8 config turned on coordinate-descent tuning for every later
    compile unless asked not to (on an H200 the GPU tests compiled after the fp8
    test then spent minutes tuning each kernel); on the CPU torchao refuses float8
    itself, but set its flags first."""
    from nebula_build.plugin import LocalSetupError

    if "quantize" in settings:
        if os.environ.get("NEBULA_BUILD_REQUIRE_LOCAL"):
            import torchao  # noqa: F401  (CI installs it)
        else:
            pytest.importorskip("torchao")

    async def scenario():
        async with backend_for(tiny, tmp_path, **settings) as backend:
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(backend._executor, torch_settings)
            try:
                result: object = (await backend.generate(request(FLUX_SCHNELL))).data
            except LocalSetupError as exc:
                result = str(exc)
            after = await loop.run_in_executor(backend._executor, torch_settings)
            return result, before, after

    result, before, after = asyncio.run(scenario())
    if "quantize" in settings:  # no float8 on a CPU
        assert isinstance(result, str) and 'quantize = "fp8" failed while loading it' in result
    else:
        assert isinstance(result, bytes) and result
    assert after == before


# --- memory -------------------------------------------------------------------------------


def test_unloading_a_compiled_fused_pipeline_gives_everything_back(tiny, tmp_path, dynamo_only):
    from nebula_build.backends.diffusers import compiling

    def unload(runtime):
        held = runtime.held_bytes()
        transformer = weakref.ref(runtime.pipelines[FLUX_SCHNELL].pipe.transformer)
        graphs = compiling.graphs_compiled()
        runtime.unload(FLUX_SCHNELL)
        gc.collect()
        return held, graphs, runtime.held_bytes(), transformer, dict(runtime.budget.compiled)

    _, (plain_held, *_) = run(tiny, tmp_path, [request(FLUX_SCHNELL)], unload)
    _, after = run(tiny, tmp_path, [request(FLUX_SCHNELL)], unload, fuse_qkv=True, compile=True)
    held, graphs, held_after, transformer, budget = after
    assert held == plain_held > 0  # the unfused copies are gone
    assert graphs > 0 and held_after == 0
    assert transformer() is None  # nothing (no compiled graph) keeps the weights alive
    assert not budget  # counted afresh: dynamo's caches and counts were reset too


def test_offloaded_pipelines_are_counted_and_evicted(
    tiny, tmp_path, offload_on_the_cpu, monkeypatch
):
    from nebula_build.backends.diffusers import runtime as runtime_module

    free = [float("inf")]
    monkeypatch.setattr(runtime_module, "_host_free", lambda: free[0])

    async def scenario():
        async with backend_for(tiny, tmp_path, offload="model") as backend:
            await backend.generate(request(SDXL))
            runtime = backend._runtime
            held_one = runtime.held_bytes()
            free[0] = 0.0  # no CPU memory left for another pipeline's weights
            await backend.generate(request(FLUX_SCHNELL))
            return held_one, list(runtime.pipelines)

    held_one, loaded = asyncio.run(scenario())
    assert held_one > 0  # (on the CPU every weight is on the device)
    assert loaded == [FLUX_SCHNELL]  # SDXL made room


# --- dtype and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "capability", "expected"),
    [
        ("cuda", (7, 5), "float16"),  # T4: bf16 only emulated
        ("cuda", (7, 0), "float16"),  # V100
        ("cuda", (8, 0), "bfloat16"),  # A100
        ("cuda", (9, 0), "bfloat16"),  # H100
        ("mps", None, "float16"),
        ("cpu", None, "float32"),
    ],
)
def test_auto_dtype_is_native_bf16_or_float16(device, capability, expected):
    pytest.importorskip("torch")
    from nebula_build.backends.diffusers.devices import auto_dtype

    def asked() -> tuple[int, int]:
        assert capability is not None, "only a CUDA device is asked"
        return capability

    assert auto_dtype(device, asked) == expected


def test_a_speed_option_failing_at_load_is_one_line_and_the_pipeline_is_released(
    tiny, project, run_cli, monkeypatch, tmp_path
):
    pytest.importorskip("torch")
    from nebula_build.backends.diffusers import speedups
    from nebula_build.plugin import LocalSetupError

    made: list[weakref.ref] = []

    def broken(model: object) -> None:
        made.append(weakref.ref(model))
        raise RuntimeError("no kernel for this layer\nsecond line")

    monkeypatch.setattr(speedups, "fuse_qkv", broken)
    expected = (
        f"model '{FLUX_SCHNELL}': fuse_qkv = true failed while loading it: RuntimeError: "
        "no kernel for this layer; remove it from [backends.diffusers]"
    )

    async def scenario():  # the error as the engine keeps it, the backend still open
        async with backend_for(tiny, tmp_path, fuse_qkv=True) as backend:
            with pytest.raises(LocalSetupError) as caught:
                await backend.generate(request(FLUX_SCHNELL))
            gc.collect()
            return str(caught.value), made[-1]() is None, dict(backend._runtime.pipelines)

    message, released, loaded = asyncio.run(scenario())
    assert message == expected and released and not loaded

    settings = {"models": folders(tiny), "fuse_qkv": True}
    root = project({"images.toml": manifest({"fox": THREE_IMAGES["fox"]}, **settings)})
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert expected in next(line for line in err.splitlines() if "fuse_qkv" in line)
    assert not (root / "out/fox.png").exists()


def test_out_of_memory_with_sequential_offload_does_not_suggest_offload(
    tiny, tmp_path, offload_on_the_cpu
):
    from nebula_build.backends.diffusers import DiffusersSettings
    from nebula_build.backends.diffusers.runtime import Runtime

    settings = DiffusersSettings.model_validate({"device": "cpu", "offload": "sequential"})
    runtime = Runtime(settings, compile_cache=tmp_path, locate=None, kind_of=None)  # type: ignore[arg-type]
    message = str(runtime._out_of_memory(request(SDXL)))
    assert "set offload" not in message and "smaller size" in message


def test_the_kernel_cache_takes_back_the_triton_folder_torch_sets_inside_it(tmp_path, monkeypatch):
    """torch sets TRITON_CACHE_DIR under inductor's cache the first time it loads a
    kernel (seen on an H200 with torch 2.11): left set, every later compile in the
    process would write into this cache. One the user set stays."""
    test_diffusers_backend._require_local_extra()
    import os

    from nebula_build.backends.diffusers.compiling import kernel_cache

    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    with kernel_cache(tmp_path):
        os.environ["TRITON_CACHE_DIR"] = str(tmp_path / "triton" / "0")  # as torch does
    assert "TRITON_CACHE_DIR" not in os.environ

    monkeypatch.setenv("TRITON_CACHE_DIR", "/users/own")
    with kernel_cache(tmp_path):
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path)
    assert os.environ["TRITON_CACHE_DIR"] == "/users/own"


def test_cuda_graph_state_is_set_up_on_the_backends_own_thread():
    """torch 2.11 keeps the CUDA graph trees' state on the thread that imported them
    first; a compiled call on another thread failed an assertion (seen on an H200)."""
    test_diffusers_backend._require_local_extra()
    import threading

    import torch

    from nebula_build.backends.diffusers.compiling import cuda_graphs_usable_here

    seen: list[bool] = []

    def worker() -> None:
        seen.append(torch._C._is_key_in_tls("tree_manager_containers"))
        cuda_graphs_usable_here()
        cuda_graphs_usable_here()  # a second call keeps what the first set up
        seen.append(torch._C._is_key_in_tls("tree_manager_containers"))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False, True]
