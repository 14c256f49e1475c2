"""Notices libraries log while diffusers' pipelines import, kept off the terminal."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

#: With torchao installed (for quantize = "fp8"), diffusers imports it with its
#: pipelines: torchao logs each CUDA extension a CPU torch cannot load, and torch
#: 2.13 logs that torchao registers two enums the old way. Lines on every run, fp8
#: or not, that the user can do nothing about.
IMPORT_NOISE_LOGGERS = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def import_notices_hidden() -> Iterator[None]:
    """Only errors from these loggers while the block runs; their levels after it
    are what they were (they belong to the process)."""
    loggers = [logging.getLogger(name) for name in IMPORT_NOISE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
