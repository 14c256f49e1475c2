"""Fixtures for plugin tests: one-module plugin distributions installed per test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, install_distribution


@pytest.fixture
def sites() -> list[Path]:
    """The folders of the plugins installed for this test."""
    return []


@pytest.fixture
def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sites: list[Path]
) -> Iterator[Callable[[str, str], None]]:
    """Installs a one-module plugin distribution named nebula-<name> for this test."""
    installed: list[str] = []

    def make(name: str, source: str) -> None:
        site = tmp_path / f"site-{name}"
        module = f"nebula_{name}"
        install_distribution(site, f"nebula-{name}", {module: source}, {name: module})
        monkeypatch.syspath_prepend(str(site))
        installed.append(module)
        sites.append(site)

    yield make
    for module in installed:
        sys.modules.pop(module, None)


@pytest.fixture
def cli_process(sites: list[Path]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs `python -m nebula_build ARGS` in the current folder, in a process of its own
    that finds the plugins installed for this test; `environment` adds variables."""

    def run(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nebula_build", *args],
            env=process_environment(sites, **environment),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


@dataclass(frozen=True)
class Interrupted:
    """How a command ended after a signal: its exit code, output, and how long it took
    to end once signalled."""

    code: int
    out: str
    err: str
    took: float


@pytest.fixture
def interrupted(sites: list[Path]) -> Callable[..., Interrupted]:
    """Runs `python -m nebula_build ARGS` in the current folder (finding the plugins
    installed for this test), sends it `signum` once `when` exists (a file the plugin
    makes as it starts its work), and waits at most `within` seconds for it to end."""

    def run(
        *args: str,
        when: Path,
        signum: int = signal.SIGINT,
        within: float = 30,
        **environment: str,
    ) -> Interrupted:
        process = subprocess.Popen(
            [sys.executable, "-m", "nebula_build", *args],
            env=process_environment(sites, **environment),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while not when.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            process.send_signal(signum)
            signalled = time.monotonic()
            out, err = process.communicate(timeout=within)
            return Interrupted(process.returncode, out, err, time.monotonic() - signalled)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()

    return run


def process_environment(sites: list[Path], **environment: str) -> dict[str, str]:
    """This process's environment, with `environment` added, for a process that finds
    nebula-build and the plugins installed in `sites`."""
    path = os.pathsep.join([*map(str, sites), str(REPO)])
    return {**os.environ, "PYTHONPATH": path, **environment}


def plugin_source(name: str, methods: str = "", *, preamble: str = "") -> str:
    """The module of a one-backend plugin: a backend named `name` that lists nebula's
    models and answers each request with a black PNG of the size asked for (`png`),
    but where `methods` (its class body, as written under the class) say otherwise.
    `preamble` is module code above the class: a helper, a value the test replaces."""
    body = textwrap.indent(textwrap.dedent(methods).strip("\n"), "    ")
    return f'''
import asyncio, io, os, sys, threading
from PIL import Image
from nebula_build.plugin import (
    Backend, CredentialsError, GenerationResult, ModelSupport, OnDisk, RequestRejectedError,
    hookimpl, nebula_models,
)

def png(request, width=None, height=None):
    buffer = io.BytesIO()
    Image.new("RGB", (width or request.width, height or request.height)).save(buffer, "PNG")
    return buffer.getvalue()
{textwrap.dedent(preamble)}

class Plugin(Backend):
    name = "{name}"

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        return GenerationResult(png(request))

{body}

@hookimpl
def nebula_build_register_backends():
    return [Plugin]
'''
