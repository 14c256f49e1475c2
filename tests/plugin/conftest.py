"""Fixtures for plugin tests: one-module plugin distributions installed per test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import install_distribution


@pytest.fixture
def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str], None]]:
    """Installs a one-module plugin distribution named nebula-<name> for this test."""
    installed: list[str] = []

    def make(name: str, source: str) -> None:
        site = tmp_path / f"site-{name}"
        module = f"nebula_{name}"
        install_distribution(site, f"nebula-{name}", {module: source}, {name: module})
        monkeypatch.syspath_prepend(str(site))
        installed.append(module)

    yield make
    for module in installed:
        sys.modules.pop(module, None)
