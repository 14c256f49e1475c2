"""torch.compile for the denoiser: set up without process-wide flags, kept within
dynamo's recompile limit, and undone when a pipeline unloads.

A compiled denoiser compiles once per image size (CUDA graphs want static
shapes). Dynamo allows `recompile_limit` graphs per function and, with
`fullgraph=True`, fails the call past it; a long watch session sees many sizes.
So each denoiser class compiles for at most that many sizes, and any further
size runs eagerly, with one warning. If dynamo refuses anyway (another pipeline
of the same class used up the limit), the image is run again eagerly.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

#: The torch.compile backend. Tests set "eager" (dynamo's tracing and its limits
#: without inductor's code generation, which takes minutes on a small CPU).
COMPILER_BACKEND = "inductor"

#: inductor options of compile = "max-autotune" beyond the mode's own: passed to
#: this one compile, never set on torch._inductor.config (that would leak into
#: every later compile in the process)
_TUNED = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_check_all_directions": True,
    "epilogue_fusion": False,
}

#: inductor writes a table of every matmul it times under max-autotune straight to
#: stderr, hundreds of lines across the progress display while a first image
#: compiles; these turn that off for this compile (an option the running torch
#: lacks is left out: torch.compile refuses options it does not know)
_QUIET_AUTOTUNE = {
    "autotune_num_choices_displayed": 0,
    "max_autotune_report_choices_stats": False,
}


def compile_arguments(mode: str | bool, cuda: bool) -> dict[str, Any]:
    """The keyword arguments of torch.compile for a `compile` setting."""
    arguments: dict[str, Any] = {"fullgraph": True, "dynamic": False}
    if COMPILER_BACKEND != "inductor":
        return {**arguments, "backend": COMPILER_BACKEND}
    if mode == "max-autotune":
        import torch._inductor

        options = dict(torch._inductor.list_mode_options("max-autotune"))
        options["triton.cudagraphs"] = cuda
        known = set(torch._inductor.list_options())
        quiet = {key: value for key, value in _QUIET_AUTOTUNE.items() if key in known}
        return {**arguments, "options": {**options, **_TUNED, **quiet}}
    if mode is True and cuda:  # CUDA graphs: the shapes of one image size are static
        return {**arguments, "mode": "reduce-overhead"}
    return arguments


def compile_denoiser(denoiser: Any, mode: str | bool, cuda: bool) -> None:
    _hide_lru_cache_notice()
    arguments = compile_arguments(mode, cuda)
    if mode == "regional":
        arguments.pop("mode", None)
        arguments.pop("options", None)
        denoiser.compile_repeated_blocks(**arguments)
    else:
        denoiser.compile(**arguments)


def _hide_lru_cache_notice() -> None:
    """dynamo warns, in seven lines with a source excerpt, each time it traces a call
    to a function behind `functools.lru_cache`. SDXL's upsamplers make one (a torch
    version check) in bfloat16, the GPU's default, so every SDXL compile printed it
    twice across `apply`'s output. dynamo traces the function itself, which is right
    for a version check. Hidden for the process (a filter held only while compiling
    would race `warnings.catch_warnings` in other threads); adding it again is a no-op."""
    import warnings

    warnings.filterwarnings(
        "ignore",
        message="Dynamo detected a call to a `functools.lru_cache`-wrapped function",
        category=UserWarning,
        module=r"torch\._dynamo\.",
    )


def uncompile(denoiser: Any) -> None:
    """Drop the compiled wrappers `module.compile()` put on the denoiser and its
    blocks, so nothing refers to their graphs any more."""
    for module in denoiser.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None


def reset_compiler(cuda: bool, *, everything: bool) -> None:
    """Free what torch keeps for compiled code: all of it when no compiled pipeline
    is left (dynamo's caches, recompile counts, CUDA graph pools), else the CUDA
    graph pools only (the others re-record theirs on their next image)."""
    if cuda:
        cuda_graphs_usable_here()
    if everything:
        torch.compiler.reset()
    elif cuda:
        from torch._inductor import cudagraph_trees

        cudagraph_trees.reset_cudagraph_trees()


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process so far."""
    return int(counters["stats"]["unique_graphs"])


def kernel_cache_misses() -> int:
    return int(counters["inductor"]["fxgraph_cache_miss"])


def recompile_limit() -> int:
    return int(torch._dynamo.config.recompile_limit)


def is_recompile_limit(exc: BaseException) -> bool:
    from torch._dynamo.exc import FailOnRecompileLimitHit

    return isinstance(exc, FailOnRecompileLimitHit)


@contextlib.contextmanager
def eagerly() -> Iterator[None]:
    """Compiled modules run their original code inside this block."""
    with torch.compiler.set_stance("force_eager"):
        yield


#: where inductor and Triton put compiled kernels; torch sets the second itself, under
#: the first, the first time it loads a kernel, and would keep it for the whole process
_KERNEL_CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@contextlib.contextmanager
def kernel_cache(path: Path) -> Iterator[None]:
    """Inductor and Triton keep compiled kernels under `path` while this block runs
    (the next process skips the cold compile); both variables are restored after,
    so later compiles in the process do not write into this cache."""
    before = {name: os.environ.get(name) for name in _KERNEL_CACHE_VARIABLES}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cuda_graphs_usable_here() -> None:
    """Give the calling thread the state torch's CUDA graph trees keep per thread.

    In torch 2.11 that state exists only on the thread that first imported
    `torch._inductor.cudagraph_trees`, and a compiled call with CUDA graphs on any
    other thread fails an assertion (2.13 sets it up itself). The backend runs on a worker
    thread of its own, so a second backend in one process (watch after its
    settings change, a test run) would fail on its first image."""
    from torch._inductor import cudagraph_trees as trees

    key = "tree_manager_containers"
    if hasattr(trees.local, key) or torch._C._is_key_in_tls(key):
        return
    trees.local.tree_manager_containers = {}
    trees.local.tree_manager_locks = collections.defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls(key, trees.local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", trees.local.tree_manager_locks)


@dataclass
class SizeBudget:
    """The image sizes each denoiser class has compiled for, in this process."""

    compiled: dict[type, set[tuple[int, int]]] = field(default_factory=dict)
    warned: set[type] = field(default_factory=set)

    def allows(self, denoiser: Any, size: tuple[int, int]) -> bool:
        sizes = self.compiled.setdefault(type(denoiser), set())
        return size in sizes or len(sizes) < recompile_limit()

    def record(self, denoiser: Any, size: tuple[int, int]) -> None:
        self.compiled.setdefault(type(denoiser), set()).add(size)

    def exhaust(self, denoiser: Any) -> None:
        """Dynamo refused a new size: no more compiles for this class."""
        sizes = self.compiled.setdefault(type(denoiser), set())
        while len(sizes) < recompile_limit():
            sizes.add((-len(sizes), 0))

    def first_refusal(self, denoiser: Any) -> bool:
        """True once per class: the moment to warn."""
        if type(denoiser) in self.warned:
            return False
        self.warned.add(type(denoiser))
        return True

    def clear(self) -> None:
        self.compiled.clear()
        self.warned.clear()
