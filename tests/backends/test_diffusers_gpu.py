"""The diffusers backend on a CUDA GPU, with the tiny pipelines (deselected by
default: `pytest -m gpu` on a machine with one)."""

from __future__ import annotations

import asyncio

import pytest

from nebula_build.plugin import FLUX_SCHNELL, SDXL
from tests.backends.test_diffusers_backend import backend_for, request, tiny  # noqa: F401 (fixture)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


def generate_all(tiny, root, requests, **settings):  # noqa: F811
    async def scenario():
        async with backend_for(tiny, root, device="cuda", **settings) as backend:
            results = [await backend.generate(r) for r in requests]
            return results, backend._runtime

    return asyncio.run(scenario())


def test_bfloat16_by_default_and_peak_memory_is_reported(tiny, tmp_path):  # noqa: F811
    import torch

    (result,), runtime = generate_all(tiny, tmp_path, [request(SDXL)])
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert runtime.dtype == (torch.bfloat16 if native else torch.float16)
    assert result.made_with["dtype"] == str(runtime.dtype).removeprefix("torch.")
    assert result.peak_memory and result.peak_memory > 0


def test_compile_with_cuda_graphs_pays_once_then_replays(tiny, tmp_path):  # noqa: F811
    requests = [request(FLUX_SCHNELL, seed=s) for s in (1, 2, 3)]
    results, _ = generate_all(tiny, tmp_path, requests, compile=True)
    assert {"compile_cold", "compile_warm"} & set(results[0].timings)
    assert all(not {"compile_cold", "compile_warm"} & set(r.timings) for r in results[1:])
    assert len({r.data for r in results}) == 3


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_modes_generate(tiny, tmp_path, offload):  # noqa: F811
    (result,), _ = generate_all(tiny, tmp_path, [request(SDXL)], offload=offload)
    assert result.data


def test_fp8_on_gpus_that_have_it(tiny, tmp_path):  # noqa: F811
    """And the compiler's settings stay as they were, on the backend's thread too
    (torchao's float8 config once turned on coordinate-descent tuning for every
    later compile: the compile tests after this one timed out)."""
    import torch
    import torch._inductor.config as inductor

    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 needs compute capability 8.9+")

    async def scenario():
        async with backend_for(tiny, tmp_path, device="cuda", quantize="fp8") as backend:
            loop = asyncio.get_running_loop()
            before = await loop.run_in_executor(backend._executor, inductor.save_config_portable)
            result = await backend.generate(request(FLUX_SCHNELL))
            after = await loop.run_in_executor(backend._executor, inductor.save_config_portable)
            return result, before, after

    result, before, after = asyncio.run(scenario())
    assert result.data
    assert after == before and inductor.save_config_portable() == before


def test_max_autotune_keeps_its_tuning_tables_off_stderr(tmp_path, capfd):
    """inductor once wrote a table per timed matmul to stderr (hundreds of lines
    over `apply`'s progress on the first FLUX image). One layer, compiled as the
    backend compiles a denoiser, into an empty kernel cache: it tunes one matmul."""
    import torch

    from nebula_build.backends.diffusers import compiling

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(256, 512)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(self.proj(x))

    layer = Layer().to("cuda", torch.bfloat16)
    compiling.compile_denoiser(layer, "max-autotune", cuda=True)
    try:
        with torch.inference_mode(), compiling.kernel_cache(tmp_path / "kernels"):
            layer(torch.randn(64, 256, device="cuda", dtype=torch.bfloat16))
        assert compiling.graphs_compiled() > 0
        assert "AUTOTUNE" not in capfd.readouterr().err
    finally:
        compiling.reset_compiler(cuda=True, everything=True)


def test_fused_qkv_with_sequential_offload(tiny, tmp_path):  # noqa: F811
    """Fused before the hooks move the weights to `meta`: the fused layers are real."""
    (result,), _ = generate_all(
        tiny, tmp_path, [request(SDXL)], fuse_qkv=True, offload="sequential"
    )
    assert result.data


def test_regional_compile_with_model_offload(tiny, tmp_path):  # noqa: F811
    requests = [request(FLUX_SCHNELL, seed=s) for s in (1, 2)]
    results, _ = generate_all(tiny, tmp_path, requests, compile="regional", offload="model")
    assert {"compile_cold", "compile_warm"} & set(results[0].timings)
    assert results[1].data


def test_compile_past_the_recompile_limit_runs_eagerly_with_cuda_graphs(tiny, tmp_path):  # noqa: F811
    """Real inductor and CUDA graphs, with the limit lowered to 2 in the backend's
    thread (dynamo's settings belong to the thread that reads them)."""
    import torch

    requests = [request(FLUX_SCHNELL, width=64 + 16 * n) for n in range(4)]

    def limit(value: int) -> None:
        torch._dynamo.config.recompile_limit = value

    async def scenario():
        async with backend_for(tiny, tmp_path, device="cuda", compile=True) as backend:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(backend._executor, limit, 2)
            try:
                return [await backend.generate(r) for r in requests]
            finally:
                await loop.run_in_executor(backend._executor, limit, 8)

    results = asyncio.run(scenario())
    compiled = [bool({"compile_cold", "compile_warm"} & set(r.timings)) for r in results]
    assert compiled == [True, True, False, False]
    assert [sum("recompile limit" in w for w in r.warnings) for r in results] == [0, 0, 1, 0]
    assert [r.made_with["compile"] for r in results] == ["true", "true", "false", "false"]


def test_closing_a_compiled_backend_gives_the_gpu_memory_back(tiny, tmp_path):  # noqa: F811
    import gc

    import torch

    gc.collect()
    before = torch.cuda.memory_allocated()
    requests = [request(FLUX_SCHNELL, width=w) for w in (64, 96)]
    generate_all(tiny, tmp_path, requests, compile=True, fuse_qkv=True)
    gc.collect()
    assert torch.cuda.memory_allocated() <= before + (1 << 20)
