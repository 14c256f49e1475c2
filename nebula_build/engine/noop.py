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

The same snapshot answers `status` (its lines per image, kept as the plan saw
them) and an `apply` with nothing to do (the folders it writes to, checked for a
symbolic link and a killed run's temp files). It is one file read with one
`read()`: a header, one line per file (path and signature), the folders, the
status lines; the checks split it into lines and compare each file's signature
as text, building no object per image.

Anything unexpected is a miss, never an error. This module imports only `os`
and `sys`: it runs before anything else is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from stat import S_ISREG
from typing import TYPE_CHECKING

from nebula_build import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from nebula_build.core.plan import Plan
    from nebula_build.engine.prepare import Prepared

FORMAT = "nebula-build no-op snapshot 2"
SNAPSHOT = os.path.join(".nebula-build", "noop")
#: a snapshot of 100k images is about 13 MB; anything far larger is not ours
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


#: one line of `status`: image (or file label), state, reason, output
StatusRow = tuple[str, str, str, str]


def unchanged(root: str, manifest: str, backend: str | None) -> int | None:
    """The number of images, if the project is exactly as the last no-op plan saw it."""
    found = _verified(root, manifest, backend)
    return None if found is None else found[0]


def nothing_to_apply(root: str, manifest: str, backend: str | None) -> int | None:
    """The number of images, if an apply would find nothing to do: the project is as
    the last no-op plan saw it, and so is every folder the project writes to (no
    temp file a killed run left, no symbolic link on the way to it)."""
    found = _verified(root, manifest, backend)
    if found is None:
        return None
    images, tail = found
    lines = tail.split("\n", 1)
    if not lines[0].isdigit() or len(lines) < 2:
        return None
    folders = lines[1].split("\n", int(lines[0]))[: int(lines[0])]
    if not _signatures_match(root, folders):
        return None
    real_root = os.path.realpath(root)
    for line in folders:
        folder = line.partition("\t")[0]
        if os.path.realpath(os.path.join(root, folder)) != os.path.normpath(
            os.path.join(real_root, folder)
        ):
            return None  # a link: apply checks where it leads
    return images


def status(root: str, manifest: str, backend: str | None) -> tuple[list[StatusRow], str] | None:
    """`status`'s lines and summary, if the project is as the last no-op plan saw it."""
    found = _verified(root, manifest, backend)
    if found is None:
        return None
    folders, _, rest = found[1].partition("\n")
    skip = int(folders) if folders.isdigit() else 0
    lines = rest.split("\n", skip + 1)
    if len(lines) < skip + 2 or not lines[skip].isdigit():
        return None
    count = int(lines[skip])
    rows = lines[skip + 1].split("\n")
    if len(rows) != count + 1:
        return None
    table = [tuple(row.split("\t")) for row in rows[:count]]
    if any(len(row) != 4 for row in table):
        return None
    return table, rows[count]  # type: ignore[return-value]


def _verified(root: str, manifest: str, backend: str | None) -> tuple[int, str] | None:
    """(images, the rest of the snapshot) if every file the last no-op plan read is
    as it was."""
    if os.path.islink(os.path.join(root, ".nebula-build")):
        return None  # the full path refuses it, and says why
    state = os.path.join(root, state_of(manifest))
    text = _read(os.path.join(state, "noop"))
    if text is None or os.path.lexists(os.path.join(state, "journal")):  # an apply runs
        return None
    head = text.split("\n", 4)
    if len(head) < 5 or head[0] != FORMAT or head[1] != _context(manifest, backend):
        return None
    if not (head[2].isdigit() and head[3].isdigit()):
        return None
    count = int(head[3])
    lines = head[4].split("\n", count)
    if len(lines) != count + 1 or count < 2:
        return None
    files = lines[:count]
    if not (files[0].startswith(f"{manifest}\t") and files[1].startswith(f"{lock_of(manifest)}\t")):
        return None  # every snapshot this module writes starts with these two
    if not _signatures_match(root, files):
        return None
    return int(head[2]), lines[count]


def _signatures_match(root: str, lines: Sequence[str]) -> bool:
    """Whether each "path\tsignature" line still holds; the hot loop of a no-op plan."""
    prefix = os.path.join(root, "")
    stat = os.stat
    for line in lines:
        path, _, recorded = line.partition("\t")
        try:
            found = stat(prefix + path)
        except OSError:
            return False
        if recorded != f"{found.st_size}\t{found.st_mtime_ns}\t{found.st_ctime_ns}\t{found.st_ino}":
            return False
    return True


def _read(path: str) -> str | None:
    """The snapshot's text; only a regular file of a sane size is read."""
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
    return data.decode("utf-8", "surrogateescape")


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
    folders: Iterable[str] = (),
    status: tuple[Sequence[StatusRow], str] | None = None,
) -> str | None:
    """The snapshot's text for a no-op plan that began at `now` and read `paths`
    (relative to `root`), or None where one cannot be trusted: a file missing, racy
    (changed after `now - RACY_SECONDS`), or with a name that does not fit on a line.
    `seen` are signatures the plan already took (size, mtime, ctime, inode): those
    files are not stat-ed again. `folders` are those the project writes to (for
    `apply`), `status` the lines and summary `status` shows (each part is left out,
    and its command takes the full path, where it cannot be trusted)."""
    newest = now - RACY_SECONDS
    files = []
    for path in dict.fromkeys(paths):
        if not _fits(path):
            return None
        signature = seen.get(path) or _stat(os.path.join(root, path))
        if signature is None or max(signature[1], signature[2]) / 1e9 > newest:
            return None
        files.append(f"{path}\t{_text(signature)}")
    lines = [FORMAT, _context(manifest, backend), str(images), str(len(files)), *files]
    tidy = _tidy_folders(root, folders, newest)
    lines += ["-"] if tidy is None else [str(len(tidy)), *tidy]
    if status is None or not all(_fits(part) for row in status[0] for part in row):
        lines.append("-")
    else:
        lines += [str(len(status[0])), *("\t".join(row) for row in status[0]), status[1]]
    return "\n".join(lines)


def _fits(text: str) -> bool:
    return "\t" not in text and "\n" not in text


def _tidy_folders(root: str, folders: Iterable[str], newest: float) -> list[str] | None:
    """Each folder's line, if none holds a killed run's temp file (which apply would
    delete) or changed after `newest`; a temp file made later changes its signature."""
    from nebula_build.fsutil import TEMP_MARKER

    lines = []
    for folder in sorted(set(folders)):
        path = os.path.join(root, folder)
        signature = _stat(path)  # before looking inside
        if not _fits(folder) or signature is None:
            return None
        if max(signature[1], signature[2]) / 1e9 > newest:
            return None
        try:
            with os.scandir(path) as entries:
                if any(TEMP_MARKER in entry.name for entry in entries):
                    return None
        except OSError:
            return None
        lines.append(f"{folder}\t{_text(signature)}")
    return lines


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
    status: tuple[Sequence[StatusRow], str] | None = None,
) -> None:
    """Remember a plan that found nothing to do, for the next one (or forget the last
    snapshot, where this project cannot have one). `started` is when the plan began
    reading, `observed` the signatures `observe` took before the plan read those
    files; the file index has the others, as they were when hashed. `status`: the
    lines and summary `status` would show for this plan."""
    import contextlib

    from nebula_build.fsutil import atomic_write

    project = prepared.project
    root = str(project.root)
    manifest = os.path.relpath(project.manifest_path, root)
    lock = os.path.relpath(project.lock_path, root)
    written = [path for spec in prepared.specs.values() for path in spec.paths]
    for atlas in prepared.resolved.atlases.values():
        written += atlas.paths
    if prepared.resolved.asset_manifest is not None:
        written.append(prepared.resolved.asset_manifest)
    paths = [manifest, lock, *written]
    for spec in prepared.specs.values():
        paths += [path for path in (spec.image, spec.mask, spec.palette_file) if path]
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
            folders={path.rpartition("/")[0] or "." for path in written},
            status=status,
        )
    if text is None:
        forget(project.state_dir)
        return
    with contextlib.suppress(OSError):  # the snapshot only saves time
        atomic_write(
            project.state_dir / "noop", text.encode("utf-8", "surrogateescape"), durable=False
        )


def forget(state_dir: Path) -> None:
    """Remove the snapshot: the next plan takes the full path."""
    import contextlib

    with contextlib.suppress(OSError):
        (state_dir / "noop").unlink(missing_ok=True)
