"""What a gallery card says of a sprite: each acceptance check's result on the file
as it is on disk, measured the way `apply` measures it (`outputs/checks.py`)."""

from __future__ import annotations

from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import describe_check
from nebula_build.errors import UserError
from nebula_build.imaging import ImageError, decode
from nebula_build.outputs.checks import measure, passes, shown
from nebula_build.state.guard import Guard

#: a file far larger than any sprite's is not measured
_LIMIT = 64 << 20


def check_rows(guard: Guard, spec: AssetSpec) -> tuple[tuple[str, bool], ...]:
    """("max_kb ≤ 64: 20.6 KiB", passed) for each of the image's checks, on its output
    file; none when the file cannot be read as an image."""
    if not spec.checks:
        return ()
    try:
        data = guard.read(spec.output, what="output", limit=_LIMIT)
        image = decode(data)
    except (OSError, UserError, ImageError):
        return ()
    rows = []
    with image:
        for name, limit in spec.checks:
            value = measure(name, data, image)
            text = f"{describe_check(name, limit)}: {shown(name, value)}"
            rows.append((text, passes(name, limit, value)))
    return tuple(rows)
