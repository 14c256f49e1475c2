"""Bounded scheduling: however many images a plan has, only a few are in flight at once,
images that take another's output still wait for it, and cancellation still works."""

from __future__ import annotations

import asyncio
import json

import pytest

from nebula_build.engine import apply
from nebula_build.engine.apply import Applier
from nebula_build.engine.execute import execute
from nebula_build.engine.planning import plan_for
from nebula_build.engine.prepare import prepare
from nebula_build.errors import SkippedError, SupersededError
from nebula_build.plugin import FLUX_FILL, GenerationResult
from nebula_build.plugin.manager import load_registry
from nebula_build.state.lockfile import read
from tests.core.test_chains import mask
from tests.engine.test_apply import Sink, many, png, write_manifest

#: the bound these tests run under: max(8, 1 × (concurrency 2 + 8 file writers))
BOUND = 10


@pytest.fixture(autouse=True)
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apply, "_MIN_IN_FLIGHT", 8)
    monkeypatch.setattr(apply, "_IN_FLIGHT_PER_SLOT", 1)


def run(project, generate, *, on_start=None, keep_outcomes=True):
    prepared = prepare(project, load_registry(), read_inputs=True)
    lock = read(project)
    plan = plan_for(prepared, lock)
    sink = Sink()
    result = asyncio.run(
        execute(
            prepared,
            plan,
            lock,
            progress=sink,
            generate=generate,
            on_start=on_start,
            keep_outcomes=keep_outcomes,
        )
    )
    return result, sink


def test_live_tasks_stay_under_the_bound_while_many_more_images_run(tmp_path):
    project = write_manifest(tmp_path, many(150), concurrency=2)
    appliers: list[Applier] = []
    peak_tasks = peak_in_flight = 0

    async def generate(spec, request):
        nonlocal peak_tasks, peak_in_flight
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
        peak_in_flight = max(peak_in_flight, len(appliers[0]._tasks))
        await asyncio.sleep(0)
        return GenerationResult(png())

    result, sink = run(project, generate, on_start=appliers.append)
    assert appliers[0].bound == BOUND
    assert not result.failures and result.generated == 150 and result.done == 150
    assert len(sink.done) == 150 and len(read(project)) == 150
    assert 2 <= peak_in_flight <= BOUND
    # each image in flight has at most three tasks (itself, its request, its file writes)
    assert peak_tasks <= 3 * BOUND + 1


def test_a_result_without_outcomes_keeps_counts_failures_and_warnings(tmp_path):
    project = write_manifest(tmp_path, many(30))

    async def generate(spec, request):
        if spec.name == "i7":
            raise RuntimeError("boom")
        return GenerationResult(png(), warnings=("slow",) if spec.name == "i3" else ())

    result, _ = run(project, generate, keep_outcomes=False)
    assert result.outcomes == []
    assert set(result.failures) == {"i7"} and result.done == 29 and result.generated == 29
    assert result.warnings == [("i3", "slow")]
    kept, _ = run(write_manifest(tmp_path / "kept", many(30)), generate)
    # kept outcomes come in the plan's order, whatever order the images finished in
    assert [o.image for o in kept.outcomes] == [f"i{k}" for k in range(30)]


def chained(upstream_first: bool, downstream: int = 12, filler: int = 30) -> str:
    up = '[images.up]\nprompt = "a lighthouse"\noutput = "up.png"\n'
    downs = "".join(
        f'[images.d{k}]\nmodel = "{FLUX_FILL}"\nprompt = "cap {k}"\nimage = "@up"\n'
        f'mask = "mask.png"\noutput = "d{k}.png"\n'
        for k in range(downstream)
    )
    body = downs + many(filler)
    return up + body if upstream_first else body + up


@pytest.mark.parametrize("upstream_first", [True, False])
def test_images_that_take_an_output_wait_for_it_in_either_order(tmp_path, upstream_first):
    (tmp_path / "mask.png").write_bytes(mask())
    project = write_manifest(tmp_path, chained(upstream_first), concurrency=2)
    order: list[str] = []

    async def generate(spec, request):
        order.append(spec.name)
        await asyncio.sleep(0.01 if spec.name == "up" else 0)
        return GenerationResult(png())

    result, _ = run(project, generate)
    assert not result.failures and result.done == 43
    downs = [n for n, name in enumerate(order) if name.startswith("d")]
    assert len(downs) == 12 and order.index("up") < min(downs)


def test_a_failed_upstream_skips_the_images_parked_on_it(tmp_path):
    (tmp_path / "mask.png").write_bytes(mask())
    project = write_manifest(tmp_path, chained(upstream_first=False), concurrency=2)

    async def generate(spec, request):
        if spec.name == "up":
            raise RuntimeError("boom")
        return GenerationResult(png())

    result, _ = run(project, generate)
    assert set(result.failures) == {"up"} | {f"d{k}" for k in range(12)}
    assert all(isinstance(result.failures[f"d{k}"], SkippedError) for k in range(12))
    assert "takes the output of up, which failed" in str(result.failures["d0"])
    assert result.done == 30


def test_cancel_reaches_images_in_flight_and_those_not_started_yet(tmp_path):
    project = write_manifest(tmp_path, many(60), concurrency=2)
    appliers: list[Applier] = []
    generated: list[str] = []

    async def generate(spec, request):
        applier = appliers[0]
        if spec.name == "i0":
            assert "i55" in applier.running() and "i55" not in applier._tasks
            applier.cancel(["i1", "i55", "not-in-the-plan"])
        if spec.name == "i1":
            await asyncio.sleep(10)  # cancelled meanwhile
        generated.append(spec.name)
        return GenerationResult(png())

    result, sink = run(project, generate, on_start=appliers.append)
    assert set(result.failures) == {"i1", "i55"}
    assert all(isinstance(e, SupersededError) for e in result.failures.values())
    assert "i55" not in generated and "i1" not in generated
    assert result.done == 58 and sorted(sink.done) == sorted(f"i{k}" for k in range(60))
    assert set(read(project)) == {f"i{k}" for k in range(60)} - {"i1", "i55"}


def test_apply_through_the_cli_counts_every_image_with_a_small_bound(project, run_cli):
    images = "".join(
        f'\n[images.s{k}]\nprompt = "p{k}"\noutput = "out/s{k}.png"\n' for k in range(40)
    )
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n' + images
        }
    )
    code, out, _ = run_cli("apply", "-q")
    assert code == 0 and "40 done (40 generated), 0 failed" in out
    assert len(list((root / "out").glob("*.png"))) == 40
    code, out, _ = run_cli("apply", "--json", "--replace", "s3")
    data = json.loads(out)
    assert code == 0 and [r["image"] for r in data["results"]] == ["s3"]
