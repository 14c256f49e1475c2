"""Stopping a generation nobody waits for any more (a newer edit, Ctrl-C)."""


class Interrupted(Exception):
    """Raised from a denoising step, or before one starts, once the backend has set the
    image's cancel event: the worker thread stops at the next step."""
