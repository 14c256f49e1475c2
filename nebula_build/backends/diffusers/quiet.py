"""Progress bars and notices from the libraries under diffusers, kept off the terminal."""

from __future__ import annotations

import contextlib
import logging
import os
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


def hugging_face_quiet() -> None:
    """Progress bars and notices from diffusers and transformers would tear through
    nebula-build's own progress display; errors still surface as exceptions."""
    for variable, value in (
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ):
        os.environ.setdefault(variable, value)
