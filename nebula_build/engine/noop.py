"""The no-op fast path: answer `plan` for an unchanged project without reading it.

After a plan finds nothing to do, `.nebula-build/noop` records the stat
signature (size, mtime, ctime, inode) of every file that plan depended on: the
manifest, the lock, every input, output and variant, the atlases' sheets and
frame maps, the asset manifest, the data files `rows` read and the folders of
posts (a post added or removed changes its folder's signature); and what else
decides a plan (the nebula-build version, the folders Python loads packages
from, `--backend`, which manifest). While every signature still matches,
nothing the plan reads can have changed, so the next `plan` answers "No
changes" from stats alone: no TOML, no pydantic, no lock, no image. ctime
cannot be set back by `touch` or `rsync -t`, so an edited file always shows.
As with git's index, a file changed in the seconds before the snapshot is
"racy" (its next change may keep the same timestamps): no snapshot is written
then, and the next plan takes the full path.

Anything unexpected is a miss, never an error. This module imports only `os`
and `sys`: it runs before anything else is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from stat import S_ISREG
from typing import TYPE_CHECKING

from nebula_build import __version__

if TYPE_CHECKING:
    from nebula_build.core.plan import Plan
    from nebula_build.engine.prepare import Prepared

FORMAT = "nebula-build no-op snapshot 1"
SNAPSHOT = os.path.join(".nebula-build", "noop")
#: a snapshot of 100k images is about 10 MB; anything far larger is not ours
MAX_BYTES = 256 << 20
RACY_SECONDS = 2.0


def lock_of(manifest: str) -> str:
    """The lock of a manifest, by the rule of `state.project` (not imported: too slow)."""
    return f"{manifest.removesuffix('.toml')}.lock"


def state_of(manifest: str) -> str:
    """The state folder of a manifest, by the rule of `state.project`."""
    if manifest == "images.toml":
        return ".nebula-build"
    return os.path.join(".nebula-build", "manifests", manifest.removesuffix(".toml"))


def find_root(start: str, manifest: str | None) -> tuple[str, str] | None:
    """(project root, manifest file name) the way the CLI finds them, with os.path only;
    None where the full path should decide (and explain)."""
    if not os.path.isdir(start):
        return None
    if manifest is not None:
        # Only a plain path resolves here as it does in Project.find: "x/", "./x",
        # "a/../x" and a link (the lock goes beside its target) take the full path.
        path = os.path.join(start, manifest)
        if os.path.normpath(manifest) != manifest or os.path.islink(path):
            return None
        path = os.path.realpath(path)
        return os.path.dirname(path), os.path.basename(path)
    folder = os.path.realpath(start)
    while True:
        if os.path.isfile(os.path.join(folder, "images.toml")):
            return folder, "images.toml"
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


Signature = tuple[int, int, int, int]


def _stat(path: str) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def _signature(path: str) -> str | None:
    found = _stat(path)
    return None if found is None else _text(found)


def _text(signature: tuple[int, int, int, int]) -> str:
    return "\t".join(map(str, signature))


def _context(manifest: str, backend: str | None) -> str:
    """Everything besides the project's files that decides a plan, as one line."""
    parts = [__version__, manifest, backend or ""]
    for entry in sys.path:  # a package installed or removed changes its folder
        parts += [entry, _signature(entry) or "-"]
    return "\x1f".join(parts).replace("\n", "\x1e")


def unchanged(root: str, manifest: str, backend: str | None) -> int | None:
    """The number of images, if the project is exactly as the last no-op plan saw it."""
    if os.path.islink(os.path.join(root, ".nebula-build")):
        return None  # the full path refuses it, and says why
    state = os.path.join(root, state_of(manifest))
    lines = _read(os.path.join(state, "noop"))
    if lines is None or os.path.lexists(os.path.join(state, "journal")):  # an apply runs
        return None
    if len(lines) < 5 or lines[0] != FORMAT or lines[1] != _context(manifest, backend):
        return None
    if not (lines[3].startswith(f"{manifest}\t") and lines[4].startswith(f"{lock_of(manifest)}\t")):
        return None  # every snapshot this module writes starts with these two
    for line in lines[3:]:
        path, _, recorded = line.partition("\t")
        if _signature(os.path.join(root, path)) != recorded:
            return None
    return int(lines[2]) if lines[2].isdigit() else None


def _read(path: str) -> list[str] | None:
    """The snapshot's lines; only a regular file of a sane size is read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        stat = os.fstat(descriptor)
        if not S_ISREG(stat.st_mode) or stat.st_size > MAX_BYTES:
            return None
        data = os.read(descriptor, MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    return data.decode("utf-8", "surrogateescape").split("\n")


def observe(root: str, paths: Iterable[str]) -> dict[str, Signature]:
    """The signatures of files about to be read, taken before reading them: a change
    made while a plan reads them shows in the next plan, whatever the clocks say."""
    found = {}
    for path in paths:
        signature = _stat(os.path.join(root, path))
        if signature is not None:
            found[path] = signature
    return found


def snapshot(
    root: str,
    manifest: str,
    backend: str | None,
    *,
    paths: list[str],
    images: int,
    now: float,
    seen: Mapping[str, Signature],
) -> str | None:
    """The snapshot's text for a no-op plan that began at `now` and read `paths`
    (relative to `root`), or None where one cannot be trusted: a file missing, racy
    (changed after `now - RACY_SECONDS`), or with a name that does not fit on a line.
    `seen` are signatures the plan already took (size, mtime, ctime, inode): those
    files are not stat-ed again."""
    lines = [FORMAT, _context(manifest, backend), str(images)]
    newest = now - RACY_SECONDS
    for path in dict.fromkeys(paths):
        if "\t" in path or "\n" in path:
            return None
        signature = seen.get(path)
        if signature is None:
            try:
                stat = os.stat(os.path.join(root, path))
            except OSError:
                return None
            signature = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        if max(signature[1], signature[2]) / 1e9 > newest:
            return None
        lines.append(f"{path}\t{_text(signature)}")
    return "\n".join(lines)


def read_first(prepared: Prepared) -> list[str]:
    """The files a plan reads as a whole rather than by digest (frame maps, the asset
    manifest): `observe` them before planning."""
    paths = [atlas.frames for atlas in prepared.resolved.atlases.values()]
    if prepared.resolved.asset_manifest is not None:
        paths.append(prepared.resolved.asset_manifest)
    return paths


def record(
    prepared: Prepared,
    plan: Plan,
    backend: str | None,
    *,
    started: float,
    observed: Mapping[str, Signature],
) -> None:
    """Remember a plan that found nothing to do, for the next one (or forget the last
    snapshot, where this project cannot have one). `started` is when the plan began
    reading, `observed` the signatures `observe` took before the plan read those
    files; the file index has the others, as they were when hashed."""
    import contextlib

    from nebula_build.fsutil import atomic_write

    project = prepared.project
    root = str(project.root)
    manifest = os.path.relpath(project.manifest_path, root)
    lock = os.path.relpath(project.lock_path, root)
    paths = [manifest, lock]
    for spec in prepared.specs.values():
        paths += spec.paths
        paths += [path for path in (spec.image, spec.mask, spec.palette_file) if path]
    for atlas in prepared.resolved.atlases.values():
        paths += atlas.paths
    if prepared.resolved.asset_manifest is not None:
        paths.append(prepared.resolved.asset_manifest)
    paths += prepared.resolved.data_files
    paths += [folder or "." for folder, _, _ in prepared.resolved.data_globs]
    text = None
    # a pin is shown by every plan, so a plan with one is never skipped
    pinned = any(a.spec is not None and a.spec.pin is not None for a in plan.actions)
    # nor is one noting an image made with other settings: the note would go unsaid
    from nebula_build.core.plan import SETTINGS_NOTE

    pinned = pinned or any(SETTINGS_NOTE in note for a in plan.actions for note in a.notes)
    if not any(p.startswith("..") for p in paths) and not plan.has_changes and not pinned:
        text = snapshot(
            root,
            manifest,
            backend,
            paths=paths,
            images=len(plan.actions),
            now=started,
            seen={**prepared.files.seen(), **prepared.data_seen, **observed},
        )
    target = project.state_dir / "noop"
    with contextlib.suppress(OSError):  # the snapshot only saves time
        if text is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write(target, text.encode("utf-8", "surrogateescape"), durable=False)
