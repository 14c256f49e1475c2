"""Weights that changed on disk while the settings stayed: `plan` notes the image
(not a change), the no-op fast path misses, `apply --replace` makes it again.

The Hugging Face caches and model folders are tiny fakes built here; the backend's
generation is replaced by a stand-in that records what the real one records (the
settings and `weights.identity` of the folder `locate` finds), so these run without
torch. The last test runs the real pipelines where the local extra is installed.
"""

from __future__ import annotations

import io
import json
import shutil
import tomllib
from pathlib import Path

import pytest

from nebula_build.backends.diffusers import DiffusersBackend, weights
from nebula_build.backends.diffusers.settings import made_with
from nebula_build.engine import noop, ondisk
from nebula_build.plugin import FLUX_SCHNELL, GenerationRequest, GenerationResult
from tests.backends import test_diffusers_backend
from tests.backends.test_diffusers_backend import manifest

OLD = "1" * 40
NEW = "2" * 40
FOX = {"fox": {"model": FLUX_SCHNELL, "prompt": "a fox", "seed": 3, "output": "out/fox.png"}}
NOTE = "made with different settings (weights hf:111111111111…, now hf:222222222222…)"
REPLACE = "`nebula-build apply --replace fox` makes it again"


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend without torch: generation returns a small PNG and the record the
    runtime writes; no snapshot or memo waits out the racy window."""

    async def generate(self: DiffusersBackend, request: GenerationRequest) -> GenerationResult:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height), (9, 9, 9)).save(buffer, "PNG")
        record = made_with(self.settings) | {"dtype": "float32"}  # type: ignore[arg-type]
        record["weights"] = weights.identity(self.locate(request.model).path)
        return GenerationResult(buffer.getvalue(), seed=request.seed, made_with=record)

    monkeypatch.setattr(DiffusersBackend, "generate", generate)
    monkeypatch.setattr(DiffusersBackend, "preflight", classmethod(lambda cls, s, r: None))
    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(ondisk, "RACY_SECONDS", 0.0)


def model_folder(path: Path, weight: bytes = b"weights") -> Path:
    """A diffusers folder as far as `plan` looks: an index, a config, a weight file."""
    (path / "transformer").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (path / "transformer" / "config.json").write_text('{"layers": 2}')
    (path / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(weight)
    return path


def hf_cache(cache: Path, *revisions: str, main: str | None = None) -> Path:
    """A Hugging Face cache holding `revisions` of FLUX.1 schnell, refs/main at `main`."""
    repo = cache / "models--black-forest-labs--FLUX.1-schnell"
    for revision in revisions:
        model_folder(repo / "snapshots" / revision)
    if main is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(main)
    return repo


def recorded(root: Path) -> dict[str, str]:
    return tomllib.loads((root / "images.lock").read_text())["images"]["fox"]["made_with"]


def plan(run_cli, *args: str) -> str:
    code, out, err = run_cli("plan", "--detailed-exitcode", *args)
    assert code == 0, err  # never a change: the key is the same
    return out


@pytest.fixture
def applied(stand_in, project, run_cli, monkeypatch, tmp_path) -> tuple[Path, Path]:
    """(project, the cache's repo folder): fox made from revision OLD, planned once."""
    repo = hf_cache(tmp_path / "hf", OLD, main=OLD)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    root = project({"images.toml": manifest(FOX)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert recorded(root)["weights"] == f"hf:{OLD}"
    assert plan(run_cli) == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1  # the fast path is on
    return root, repo


def test_a_newer_snapshot_is_noted_by_plan_and_replace_makes_the_image_again(applied, run_cli):
    root, repo = applied
    model_folder(repo / "snapshots" / NEW)  # `hf download` of a newer revision
    (repo / "refs" / "main").write_text(NEW)

    assert noop.unchanged(str(root), "images.toml", None) is None  # refs/main is watched
    for _ in range(2):  # the note keeps the fast path off
        out = plan(run_cli)
        assert "No changes: 1 image up to date." in out
        assert f"note for fox: {NOTE}: {REPLACE}" in out
    action = json.loads(plan(run_cli, "--json"))["actions"][0]
    assert action["action"] == "noop" and f"{NOTE}: {REPLACE}" in action["notes"]
    code, out, err = run_cli("status", "--detailed-exitcode")
    assert code == 0 and "up to date" in out, err

    code, out, err = run_cli("apply", "--replace", "fox")
    assert code == 0, err
    assert recorded(root)["weights"] == f"hf:{NEW}"
    assert plan(run_cli) == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1


def test_another_cache_in_the_environment_misses_the_fast_path(
    applied, run_cli, monkeypatch, tmp_path
):
    root, _ = applied
    hf_cache(tmp_path / "other", NEW, main=NEW)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "other"))
    assert noop.unchanged(str(root), "images.toml", None) is None
    assert NOTE in plan(run_cli)

    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nowhere"))  # no weights here: no note
    assert plan(run_cli) == "No changes: 1 image up to date.\n"


def test_weights_missing_at_plan_time_are_no_note_until_they_appear(
    applied, run_cli, monkeypatch, tmp_path
):
    root, repo = applied
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # a CI machine: no weights
    assert plan(run_cli) == "No changes: 1 image up to date.\n"
    assert noop.unchanged(str(root), "images.toml", None) == 1

    hf_cache(tmp_path / "empty", NEW, main=NEW)  # downloaded since: a newer revision
    assert noop.unchanged(str(root), "images.toml", None) is None
    assert NOTE in plan(run_cli)


def test_without_refs_main_the_newest_snapshot_counts(applied, run_cli):
    root, repo = applied
    (repo / "refs" / "main").unlink()
    assert plan(run_cli) == "No changes: 1 image up to date.\n"  # OLD is the only one
    assert noop.unchanged(str(root), "images.toml", None) == 1
    model_folder(repo / "snapshots" / NEW)
    assert noop.unchanged(str(root), "images.toml", None) is None
    assert NOTE in plan(run_cli)


def test_a_lock_entry_without_weights_is_not_compared(applied, run_cli):
    root, repo = applied
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace(f', weights = "hf:{OLD}"', ""))
    assert "weights" not in recorded(root)
    (repo / "refs" / "main").write_text(NEW)
    model_folder(repo / "snapshots" / NEW)
    assert plan(run_cli) == "No changes: 1 image up to date.\n"


def test_files_replaced_in_a_configured_folder_are_noted_once_read(
    stand_in, project, run_cli, monkeypatch, tmp_path
):
    folder = model_folder(tmp_path / "models" / "flux")
    root = project({"images.toml": manifest(FOX, models={FLUX_SCHNELL: str(folder)})})
    assert run_cli("apply").code == 0
    before = recorded(root)["weights"]
    assert before.startswith("files:")
    assert plan(run_cli) == "No changes: 1 image up to date.\n"

    reads = []
    fingerprint = weights.fingerprint
    monkeypatch.setattr(
        weights, "fingerprint", lambda path: reads.append(path) or fingerprint(path)
    )
    (root / ".nebula-build" / "noop").unlink()  # a full plan: the memo answers
    assert plan(run_cli) == "No changes: 1 image up to date.\n"
    assert reads == []

    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"retrained")
    assert noop.unchanged(str(root), "images.toml", None) is None
    now = weights.identity(folder)
    out = plan(run_cli)
    assert f"made with different settings (weights {before}, now {now}): {REPLACE}" in out
    assert reads == [folder, folder]  # read once, by this plan (and `now` above)
    assert f"(weights {before}, now {now})" in plan(run_cli)
    assert len(reads) == 2  # the next plan from the memo

    code, _, err = run_cli("apply", "--replace", "fox")
    assert code == 0, err
    assert recorded(root)["weights"] == now


def test_a_memo_that_came_with_a_checkout_is_ignored(
    stand_in, project, run_cli, monkeypatch, tmp_path
):
    folder = model_folder(tmp_path / "models" / "flux")
    root = project({"images.toml": manifest(FOX, models={FLUX_SCHNELL: str(folder)})})
    assert run_cli("apply").code == 0
    assert plan(run_cli) == "No changes: 1 image up to date.\n"
    memo = root / ".nebula-build" / "made-with.json"
    sealed = memo.read_bytes()
    data = json.loads(sealed.partition(b"\n")[2])
    assert len(data["values"]) == 1
    forged = {"format": 1, "values": dict.fromkeys(data["values"], "files:0000000000000000")}
    memo.write_text("0" * 64 + "\n" + json.dumps(forged))  # not sealed on this account
    (root / ".nebula-build" / "noop").unlink()
    assert plan(run_cli) == "No changes: 1 image up to date.\n"


def test_a_folder_too_large_for_a_model_is_not_walked(
    stand_in, project, run_cli, monkeypatch, tmp_path
):
    folder = model_folder(tmp_path / "models" / "flux")
    root = project({"images.toml": manifest(FOX, models={FLUX_SCHNELL: str(folder)})})
    assert run_cli("apply").code == 0
    for index in range(5):
        (folder / f"extra-{index}.bin").write_bytes(b"x")
    monkeypatch.setattr(weights, "MAX_FOLDER_ENTRIES", 4)
    assert plan(run_cli) == "No changes: 1 image up to date.\n"  # unknown: no note
    # nothing says a change below it leaves the identity alone: no fast path
    assert noop.unchanged(str(root), "images.toml", None) is None


@pytest.mark.parametrize(
    "configured",
    ["models/fl\\u0000ux", "~no-such-user-here/flux", "models/deep"],
    ids=["NUL", "unknown-user", "deep-config"],
)
def test_a_hostile_model_folder_is_no_note_and_no_traceback(
    stand_in, project, run_cli, tmp_path, configured
):
    folder = model_folder(tmp_path / "models" / "flux")
    root = project({"images.toml": manifest(FOX, models={FLUX_SCHNELL: str(folder)})})
    assert run_cli("apply").code == 0
    deep = model_folder(root / "models" / "deep")
    (deep / "transformer" / "config.json").write_text("[" * 200_000)
    text = (root / "images.toml").read_text().replace(str(folder), configured)
    (root / "images.toml").write_text(text)
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "Traceback" not in err
    # another folder (its config read by its sampled bytes) is other weights
    assert ("made with different settings" in out) == (configured == "models/deep")


def test_a_link_to_a_proc_file_is_not_read(tmp_path):
    """/proc says 0 bytes for files whose reads may block or differ on every read."""
    linked = model_folder(tmp_path / "linked")
    weight = linked / "transformer" / "diffusion_pytorch_model.safetensors"
    weight.unlink()
    weight.symlink_to("/proc/self/stat")
    empty = model_folder(tmp_path / "empty", weight=b"")
    assert weights.fingerprint(linked) == weights.fingerprint(empty)


def test_a_config_linked_to_a_proc_file_is_not_read_by_plan(stand_in, project, run_cli):
    """A JSON config is read for its settings, but one that says 0 bytes is not read at
    all: a link to /proc/kmsg would block `plan` (as root), /proc/self/mem fails."""
    root = project({"images.toml": manifest(FOX, models={FLUX_SCHNELL: "m"})})
    model_folder(root / "m")
    assert run_cli("apply").code == 0
    config = root / "m" / "transformer" / "config.json"
    config.unlink()
    config.symlink_to("/proc/self/mem")  # any read at its start is an error
    assert "made with different settings (weights files:" in plan(run_cli)


tiny = test_diffusers_backend.tiny


def test_the_real_pipeline_records_the_new_revision_on_replace(
    tiny, project, run_cli, monkeypatch, tmp_path
):
    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)
    repo = tmp_path / "hf" / "models--black-forest-labs--FLUX.1-schnell"
    for revision in (OLD, NEW):
        shutil.copytree(tiny[FLUX_SCHNELL], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(OLD)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    root = project({"images.toml": manifest(FOX)})
    assert run_cli("apply").code == 0
    (repo / "refs" / "main").write_text(NEW)
    assert NOTE in plan(run_cli)
    code, _, err = run_cli("apply", "--replace", "fox")
    assert code == 0, err
    assert recorded(root)["weights"] == f"hf:{NEW}"
