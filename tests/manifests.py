"""Manifest text that several test modules start from."""

from __future__ import annotations

#: the head of a manifest of small images from the offline preview backend, before any
#: image: tests place what they check by its lines, so it stays as it is
PREVIEW = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64
"""
