"""Giving freed memory back before a run: harmless wherever it runs."""

from __future__ import annotations

import sys

from nebula_build.engine.freememory import _malloc_trim, release_freed_memory


def test_release_freed_memory_runs_anywhere() -> None:
    release_freed_memory()
    release_freed_memory()  # the C function is looked up once


def test_only_linux_looks_for_malloc_trim() -> None:
    if not sys.platform.startswith("linux"):
        assert _malloc_trim() is None
