from __future__ import annotations

import io
import json
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from nebula_build.cli import main
from tests.fake_backend import FAKE_BACKEND_SOURCE

REPO = Path(__file__).resolve().parents[1]

# A loaded machine (CI's, or ours with two cores) makes drawing examples slow; that
# says nothing about the code under test, so it fails no property test.
settings.register_profile(
    "loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# CI draws the same examples every run (`HYPOTHESIS_PROFILE=ci` in .ci/run): a landing
# must not turn red on a new draw; runs elsewhere keep drawing new ones, to find bugs.
settings.register_profile("ci", settings.get_profile("loaded-machine"), derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "loaded-machine"))


def _ignored_here(signum: int, frame: object) -> None:
    """What the test run does with a signal whoever started it ignored: nothing."""


@pytest.fixture(autouse=True, scope="session")
def commands_start_as_from_a_terminal() -> None:
    """Commands the tests start (watch, apply) begin with SIGINT and SIGHUP as from a
    shell in a terminal, whatever the test run was started with: run in the background
    by a shell without job control it ignores SIGINT, under `nohup` SIGHUP, and a
    command inherits an ignored signal (and rightly keeps it), so one a test stops with
    Ctrl-C or a closed terminal would run on. A signal caught here is reset to its
    default in a command it starts; the run itself still ignores it."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, _ignored_here)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in ("NEBULA_API_KEY", "NEBULA_BASE_URL", "NEBULA_BUILD_DEBUG", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    # the user's cache (the seal key, rescued generations) is the test's own
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("user-cache")))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __iter__(self):  # allows `code, out, err = run_cli(...)`
        return iter((self.code, self.out, self.err))


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    def run(*args: str, cwd: Path | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        out, err = io.StringIO(), io.StringIO()
        code = main(list(args), out=out, err=err)
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a file tree under a fresh folder and chdir into it."""

    def make(files: dict[str, str | bytes]) -> Path:
        root = tmp_path / "proj"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content).lstrip(), encoding="utf-8")
        root.mkdir(exist_ok=True)
        monkeypatch.chdir(root)
        return root

    return make


def install_distribution(
    site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]
) -> None:
    """A minimal installed distribution: modules plus a dist-info with entry points."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source, encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[nebula_build]\n{lines}")


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installs the `fake` backend plugin (for this process and for subprocesses)."""
    site = tmp_path / "site"
    install_distribution(
        site, "nebula-build-fake", {"nebula_fake": FAKE_BACKEND_SOURCE}, {"fake": "nebula_fake"}
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(REPO)]))
    yield site
    sys.modules.pop("nebula_fake", None)


def generation_log(path: Path) -> list[str]:
    """Images the fake backend generated, in order."""
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [event["image"] for event in events if "image" in event]


def backend_opens(path: Path) -> int:
    """How many times the fake backend was opened."""
    if not path.exists():
        return 0
    return sum("opened" in json.loads(line) for line in path.read_text().splitlines())


def toml_value(value: object) -> str:
    """A TOML value, inline tables included (test manifests are written by hand here)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def fake_manifest(
    log: Path,
    images: dict[str, dict[str, object]],
    *,
    delay: float = 0.0,
    fail: tuple[str, ...] = (),
    concurrency: int = 4,
) -> str:
    """An images.toml on the fake backend, written out for readability."""
    lines = [
        "version = 1",
        "",
        "[defaults]",
        'backend = "fake"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        "width = 64",
        "height = 64",
        "",
        "[backends.fake]",
        f"log = {json.dumps(str(log))}",
        f"delay = {delay}",
        f"fail = {json.dumps(list(fail))}",
        f"concurrency = {concurrency}",
    ]
    for name, fields in images.items():
        lines += ["", f"[images.{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def image_info(path: Path) -> tuple[str, tuple[int, int]]:
    """(format, size) of an image file, closing it."""
    from PIL import Image

    with Image.open(path) as image:
        return str(image.format), image.size


CANARY_KEY = "ak_canary_7f3e9b1d_must_never_leak"


@pytest.fixture
def nebula_server(monkeypatch: pytest.MonkeyPatch):
    """The loopback Nebula API, with NEBULA_BASE_URL and a canary NEBULA_API_KEY set.
    It answers as the real API does (its images are no placeholders): the paid path's
    tests see what a real run does with what it made (`marks_placeholders`)."""
    from nebula_build.testing import NebulaTestServer

    with NebulaTestServer(api_key=CANARY_KEY, marks_placeholders=False) as server:
        monkeypatch.setenv("NEBULA_BASE_URL", server.base_url)
        monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
        yield server


def nebula_manifest(images: dict[str, dict[str, object]], **settings: object) -> str:
    """An images.toml on the nebula backend; fast retries unless told otherwise."""
    options = {"retry_backoff": 0.01, "concurrency": 4, **settings}
    lines = [
        "version = 1",
        "",
        "[defaults]",
        'backend = "nebula"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        "width = 64",
        "height = 64",
        "",
        "[backends.nebula]",
    ]
    lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    for name, fields in images.items():
        lines += ["", f"[images.{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"
