"""The apply engine with an injected generate step: concurrency, keep-going, inputs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from nebula_build.engine.execute import execute
from nebula_build.engine.planning import plan_for
from nebula_build.engine.prepare import prepare
from nebula_build.errors import CredentialsError
from nebula_build.plugin import GenerationRequest, GenerationResult
from nebula_build.plugin.manager import load_registry
from nebula_build.state.cache import Store
from nebula_build.state.lockfile import read
from nebula_build.state.project import Project


class Sink:
    def __init__(self) -> None:
        self.done: list[str] = []

    def started(self, action) -> None:
        pass

    def step(self, image, done, total) -> None:
        pass

    def activity(self, image, text) -> None:
        pass

    def finished(self, outcome) -> None:
        self.done.append(outcome.image)


def png(size=(64, 64), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def write_manifest(root: Path, images: str, concurrency: int = 3) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n'
        f"[backends.preview]\nconcurrency = {concurrency}\n" + images
    )
    return Project(root, root / "images.toml")


def run(project: Project, generate, parallelism=None):
    prepared = prepare(project, load_registry(), read_inputs=True)
    lock = read(project)
    plan = plan_for(prepared, lock)
    sink = Sink()
    result = asyncio.run(
        execute(prepared, plan, lock, progress=sink, generate=generate, parallelism=parallelism)
    )
    return result, sink


def many(n: int) -> str:
    return "".join(f'[images.i{k}]\nprompt = "p{k}"\noutput = "i{k}.png"\n' for k in range(n))


@pytest.mark.parametrize(
    ("concurrency", "parallelism", "bound"), [(3, None, 3), (3, 5, 5), (1, None, 1)]
)
def test_in_flight_generations_reach_the_bound_and_never_exceed_it(
    tmp_path, concurrency, parallelism, bound
):
    project = write_manifest(tmp_path, many(12), concurrency)
    in_flight = peak = 0

    async def generate(spec, request: GenerationRequest) -> GenerationResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return GenerationResult(png())

    result, _ = run(project, generate, parallelism)
    assert not result.failures and result.generated == 12
    assert peak == bound


def test_a_request_starts_only_once_the_original_paid_before_it_is_cached(tmp_path, monkeypatch):
    """A crash loses at most the generations in flight: a backend slot stays taken until
    the original it paid for is in the cache, not given back while it waits for a writer."""
    project = write_manifest(tmp_path, many(4), concurrency=1)
    paid: list[str] = []
    cached: list[str] = []
    uncached_at_start: list[set[str]] = []
    real_put = Store.put

    def slow_put(self, key, data, **options):
        time.sleep(0.05)  # a loaded disk: the writers are behind the backend
        digest = real_put(self, key, data, **options)
        cached.append(key)
        return digest

    async def generate(spec, request):
        uncached_at_start.append(set(paid) - set(cached))
        paid.append(spec.generation_key)
        return GenerationResult(png())

    monkeypatch.setattr(Store, "put", slow_put)
    result, _ = run(project, generate)
    assert not result.failures and result.generated == 4
    assert uncached_at_start == [set()] * 4


def test_one_failure_never_stops_the_others(tmp_path):
    project = write_manifest(tmp_path, many(6))

    async def generate(spec, request):
        if spec.name == "i2":
            raise RuntimeError("boom")
        return GenerationResult(png())

    result, sink = run(project, generate)
    assert set(result.failures) == {"i2"}
    assert sorted(sink.done) == [f"i{k}" for k in range(6)]
    assert set(read(project)) == {"i0", "i1", "i3", "i4", "i5"}
    assert not (tmp_path / "i2.png").exists()


def test_rejected_credentials_stop_new_requests(tmp_path):
    project = write_manifest(tmp_path, many(8), concurrency=1)
    calls = 0

    async def generate(spec, request):
        nonlocal calls
        calls += 1
        raise CredentialsError("NEBULA_API_KEY was rejected", backend="preview")

    result, _ = run(project, generate)
    assert calls == 1
    assert len(result.failures) == 8
    messages = sorted(str(e) for e in result.failures.values())
    assert sum("NEBULA_API_KEY was rejected" in m for m in messages) == 1
    assert (
        sum(m.startswith("not attempted: preview stopped sending requests") for m in messages) == 7
    )


def test_input_bytes_hashed_are_the_bytes_handed_to_the_backend(tmp_path):
    (tmp_path / "in.png").write_bytes(png(color=(1, 2, 3)))
    (tmp_path / "m.png").write_bytes(png(color=(255, 255, 255)))
    original = (tmp_path / "in.png").read_bytes()
    fill = (
        'model = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "cap"\nimage = "in.png"\n'
        'mask = "m.png"\n'
    )
    project = write_manifest(
        tmp_path,
        f'[images.a]\n{fill}output = "a.png"\n[images.b]\n{fill}num_steps = 9\noutput = "b.png"\n',
        concurrency=1,
    )
    seen: dict[str, bytes] = {}

    async def generate(spec, request):
        seen[spec.name] = request.image
        # an editor saves the input while the run is going
        (tmp_path / "in.png").write_bytes(png(color=(9, 9, 9)))
        return GenerationResult(png())

    result, _ = run(project, generate)
    assert not result.failures
    assert seen == {"a": original, "b": original}
    lock = read(project)
    digest = hashlib.sha256(original).hexdigest()
    assert lock["a"].params["image"] == lock["b"].params["image"] == digest
    # the next plan sees the edit and regenerates both
    prepared = prepare(project, load_registry())
    assert {a.kind.value for a in plan_for(prepared, lock).changes} == {"regenerate"}


def test_backend_bytes_of_another_size_are_delivered_at_the_declared_size(tmp_path):
    project = write_manifest(tmp_path, many(1))

    async def generate(spec, request):
        return GenerationResult(png(size=(100, 80)))

    result, _ = run(project, generate)
    assert not result.failures
    with Image.open(tmp_path / "i0.png") as image:
        assert image.size == (64, 64)


def test_an_output_step_that_fails_after_a_generation_keeps_the_original(tmp_path, monkeypatch):
    project = write_manifest(tmp_path, many(1))
    calls = 0

    async def generate(spec, request):
        nonlocal calls
        calls += 1
        return GenerationResult(png())

    def broken(*args, **kwargs):
        raise RuntimeError("an output step broke")

    monkeypatch.setattr("nebula_build.engine.apply.render_checked", broken)
    result, _ = run(project, generate)
    assert set(result.failures) == {"i0"} and calls == 1
    monkeypatch.undo()
    result, _ = run(project, generate)
    assert not result.failures and calls == 1  # re-processed from the cache: not paid again
    assert (tmp_path / "i0.png").exists()
