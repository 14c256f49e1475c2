"""What knowing a local model's weights costs `plan` (docs/local-gpu.md, provenance).

Builds a project of one diffusers image whose lock records the weights of a model
folder (`--folder`, or a fake SDXL-like one: 25 files, ten weight files of
`--mb` MB of random bytes), then times whole `nebula-build plan` processes,
interleaved, min / median / max of `--runs`:

- no-op: the fast path (the snapshot watches the folder's files);
- memo: a full plan (snapshot removed) whose fingerprint comes from the memo;
- read: a full plan without the memo: the fingerprint reads sampled bytes;
- cold: the same with the folder's pages dropped from the page cache first.

and, inside one process, the parts: listing the folder and taking each path's
stat signature (what a memo hit costs), and the fingerprint from the page cache
and from disk. The image is "generated" by a stand-in (no torch): only the plan is
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
LAYOUT = {
    "text_encoder": ["model.safetensors", "model.fp16.safetensors"],
    "text_encoder_2": ["model.safetensors", "model.fp16.safetensors"],
    "unet": ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
    "vae": ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
    "vae_1_0": ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"],
}


def fake_sdxl(folder: Path, megabytes: int) -> None:
    """A folder laid out as SDXL base's diffusers download (files of random bytes)."""
    folder.mkdir(parents=True)
    index = {"_class_name": "StableDiffusionXLPipeline"}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text('{"steps": 1000}')
    for name in ("tokenizer", "tokenizer_2"):
        (folder / name).mkdir()
        (folder / name / "merges.txt").write_bytes(os.urandom(524_619))
        (folder / name / "vocab.json").write_bytes(os.urandom(1_059_962))
        for config in ("special_tokens_map.json", "tokenizer_config.json"):
            (folder / name / config).write_text(json.dumps({"name": config}))
    for name, files in LAYOUT.items():
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps({"component": name}))
        for file in files:
            with (folder / name / file).open("wb") as handle:
                for _ in range(megabytes):
                    handle.write(os.urandom(1 << 20))


def applied(root: Path, folder: Path) -> None:
    """The project, applied once through a stand-in for the pipeline."""
    from nebula_build.backends.diffusers import DiffusersBackend, weights
    from nebula_build.cli import main
    from nebula_build.plugin import GenerationRequest, GenerationResult

    async def generate(self: DiffusersBackend, request: GenerationRequest) -> GenerationResult:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
        record = {"weights": weights.identity(self.locate(request.model).path)}
        return GenerationResult(buffer.getvalue(), seed=request.seed, made_with=record)

    DiffusersBackend.generate = generate  # type: ignore[method-assign]
    DiffusersBackend.preflight = classmethod(lambda cls, s, r: None)  # type: ignore[assignment]
    root.mkdir()
    (root / "images.toml").write_text(
        "version = 1\n"
        '[defaults]\nbackend = "diffusers"\nwidth = 64\nheight = 64\n'
        f'[backends.diffusers]\ndevice = "cpu"\nmodels = {{ "{SDXL}" = "{folder}" }}\n'
        f'[images.logo]\nmodel = "{SDXL}"\n'
        'prompt = "a fox"\nseed = 1\noutput = "logo.png"\n'
    )
    assert main(["-C", str(root), "apply", "-q"]) == 0


def evict(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(descriptor)


def timed(root: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nebula_build", "-C", str(root), "plan"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No changes: 1 image up to date." in done.stdout, done.stdout
    return (time.perf_counter() - started) * 1000


def in_process(folder: Path, runs: int) -> dict[str, list[float]]:
    """Milliseconds of the identity's parts, without the process around them."""
    from nebula_build.backends.diffusers import weights

    def listing() -> None:
        for path in weights.on_disk("m", str(folder), folder).paths:
            os.stat(path)

    names = ("list+stat", "fingerprint warm", "fingerprint cold")
    figures: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(runs):
        for name, step, before in (
            ("list+stat", listing, lambda: None),
            ("fingerprint warm", lambda: weights.fingerprint(folder), lambda: None),
            ("fingerprint cold", lambda: weights.fingerprint(folder), lambda: evict(folder)),
        ):
            before()
            started = time.perf_counter()
            step()
            figures[name].append((time.perf_counter() - started) * 1000)
    return figures


def show(name: str, times: list[float]) -> None:
    low, mid, high = min(times), statistics.median(times), max(times)
    print(f"{name:17} {low:.2f} / {mid:.2f} / {high:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a model folder (default: a fake SDXL)")
    parser.add_argument("--mb", type=int, default=64, help="MB per fake weight file")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch) / "sdxl"
        if args.folder is None:
            fake_sdxl(folder, args.mb)
        root = Path(scratch) / "project"
        asyncio.set_event_loop_policy(None)
        applied(root, folder)
        state = root / ".nebula-build"
        time.sleep(2.1)  # past the racy window: the memo and the snapshot are kept
        assert timed(root) and (state / "noop").exists() and (state / "made-with.json").exists()
        cases = {
            "no-op": lambda: None,
            "memo": (state / "noop").unlink,
            "read": lambda: [(state / name).unlink() for name in ("noop", "made-with.json")],
            "cold": lambda: [
                *((state / name).unlink() for name in ("noop", "made-with.json")),
                evict(folder),
            ],
        }
        figures: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.runs):
            order = list(cases)[round_ % 4 :] + list(cases)[: round_ % 4]
            for name in order:
                timed(root)  # leaves the snapshot and the memo
                time.sleep(2.1)
                cases[name]()
                figures[name].append(timed(root))
        for name, times in {**figures, **in_process(folder, args.runs)}.items():
            show(name, times)


if __name__ == "__main__":
    main()
