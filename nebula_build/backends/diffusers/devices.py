"""The configured device, the dtype `auto` picks for it, and the bytes a model holds."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch

from nebula_build.plugin import LocalSetupError

#: compute capability from which bfloat16 runs in hardware (Ampere); older GPUs
#: (T4, V100) report bf16 as supported but emulate it, far slower than float16
NATIVE_BF16 = (8, 0)


def pick_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise LocalSetupError(
                'device = "mps" needs an Apple silicon Mac with a torch build that has MPS',
                backend="diffusers",
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise LocalSetupError(
            f"no CUDA GPU is visible to torch {torch.__version__} ({build}); the diffusers "
            "backend runs on a GPU: install a CUDA build of torch, or set "
            '[backends.diffusers] device = "cpu" to run (slowly) on the CPU',
            backend="diffusers",
        )
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise LocalSetupError(
            f"[backends.diffusers] device = {name!r}, but torch sees "
            f"{torch.cuda.device_count()} {'GPU' if torch.cuda.device_count() == 1 else 'GPUs'}",
            backend="diffusers",
        )
    return device


def auto_dtype(device_type: str, capability: Callable[[], tuple[int, int]]) -> str:
    """What dtype = "auto" means on a device: bfloat16 where a CUDA GPU runs it
    natively, else float16 (and on mps); float32 on the CPU. `capability` is asked
    only for a CUDA device, and must be that device's own."""
    if device_type == "cuda":
        return "bfloat16" if capability() >= NATIVE_BF16 else "float16"
    if device_type == "mps":
        return "float16"
    return "float32"


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        setting = auto_dtype(device.type, lambda: torch.cuda.get_device_capability(device))
    dtype: torch.dtype = getattr(torch, setting)
    return dtype


def tensors(module: torch.nn.Module) -> Iterable[torch.Tensor]:
    return itertools.chain(module.parameters(), module.buffers())


def resident_bytes(modules: Iterable[torch.nn.Module], device: torch.device) -> int:
    """Bytes of the modules' weights that are on `device` now (a weight shared by
    several modules counted once); offloaded ones are elsewhere, or on `meta`."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in tensors(module):
            if tensor.device.type == device.type and (
                device.index is None or tensor.device.index in (None, device.index)
            ):
                seen.setdefault(id(tensor), tensor.numel() * tensor.element_size())
    return sum(seen.values())


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in tensors(module))
