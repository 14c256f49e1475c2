"""The no-op fast path: answer `plan` for an unchanged project without reading it.

After a plan finds nothing to do, `.nebula-build/noop` records the stat
signature (size, mtime, ctime, inode) of every file that plan depended on: the
manifest, the lock, every input, output and variant, the atlases' sheets and
frame maps, the asset manifest, the data files `rows` read and the folders of
posts (a post added or removed changes its folder's signature); outside the
project, what the plan's on-disk values read (`engine.ondisk`: a local model's
`refs/main` or folder, by absolute path, and the paths it looked for and did not
find) and the environment variables that chose them (each value's keyed digest,
never the value: a plugin may name a secret), and the files of the
plugins the manifest uses (one edited in place keeps its version); and what else
decides a plan (the nebula-build version, the folders Python loads packages
from, `--backend`, which manifest). While every signature still matches,
nothing the plan reads can have changed, so the next `plan` answers "No
changes" from stats alone: no TOML, no pydantic, no lock, no image. ctime
cannot be set back by `touch` or `rsync -t`, so an edited file always shows.
As with git's index, a file changed in the seconds before the snapshot is
"racy" (its next change may keep the same timestamps): no snapshot is written
then, and the next plan takes the full path.

The same snapshot answers `status` (its lines per image, kept as the plan saw
them) and an `apply` with nothing to do (the folders it writes to or sweeps,
checked for a symbolic link and a killed run's temp files; the project lock; the
rescued generations). It is one file read with one `read()`: its seal, a
header, one line per file (path and signature), the folders above them (still
plain folders, no link), the folders apply writes to, the status lines; the
checks split it into lines and compare each file's signature as text, building
no object per image.
A plan that consulted the cache about a generation (what no recorded file
shows) leaves no snapshot, and while a variable that changes a plan is set
(the remote cache's) every command takes the full path.

The snapshot is sealed (`state.seal`) under a key private to the user: one that
came with a checkout (committed under `.nebula-build/`) is a miss. Signatures are
no secret (an artifact or a kept runner's workspace shows them), and a snapshot
that listed only the files a pull request leaves alone would hide its every other
change.

Anything unexpected is a miss, never an error. This module imports only `os`
and `sys` (`fcntl` to probe the project lock, `state.seal` to check the seal, which
the CLI has loaded with what it needs): it runs before anything else is loaded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING

from nebula_build.engine.codeversion import code_version

if TYPE_CHECKING:
    from pathlib import Path

    from nebula_build.core.plan import Plan
    from nebula_build.engine.prepare import Prepared
    from nebula_build.state.cache import Store

FORMAT = "nebula-build no-op snapshot 8"
SNAPSHOT = os.path.join(".nebula-build", "noop")
#: a snapshot of 100k images is about 13 MB; anything far larger is not ours
MAX_BYTES = 256 << 20
RACY_SECONDS = 2.0
#: the state folders and files `Project.checked()` refuses as links (not imported: too slow)
STATE_FOLDERS = (
    "cache",
    "cache/outputs",
    "cache/written",
    "gallery",
    "backup",
    "diffusers",
    "thumbs",
)
STATE_FILES = (
    "journal",
    "lock",
    "lock-snapshot.json",
    "files.json",
    "files-journal",
    "specs.json",
    "failures.json",
    "noop",
    "prices.json",
    "made-with.json",
    "gallery/index.html",
)
#: the variables that change what a plan or an apply does: set → the full path
ENVIRONMENT = ("NEBULA_BUILD_CACHE_REMOTE", "NEBULA_BUILD_CACHE_READONLY")
#: how deep the tool writes under its state folder (`state.guard`'s limit)
STATE_DEPTH = 8
TEMP_MARKER = ".nebula-tmp-"  # `fsutil.TEMP_MARKER`


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
    parts = [code_version(), manifest, backend or ""]
    for entry in sys.path:  # a package installed or removed changes its folder
        parts += [entry, _signature(entry) or "-"]
    return "\x1f".join(parts).replace("\n", "\x1e")


#: one line of `status`: image (or file label), state, reason, output
StatusRow = tuple[str, str, str, str]


def unchanged(root: str, manifest: str, backend: str | None) -> int | None:
    """The number of images, if the project is exactly as the last no-op plan saw it
    and the rest of the snapshot still holds (a plan that cannot say so takes the full
    path, which writes a fresh snapshot for `status` and `apply`)."""
    found = _verified(root, manifest, backend)
    rest = None if found is None else _usable_folders(root, found[1])
    kept = None if rest is None else _section(rest)
    return None if found is None or kept is None or kept[0] is None else found[0]


def nothing_to_apply(root: str, manifest: str, backend: str | None) -> int | None:
    """The number of images, if an apply would find nothing to do: the project is as
    the last no-op plan saw it, and so is every folder the project writes to (no
    temp file a killed run left, no symbolic link on the way to it); no other run
    holds the project, or left it unfinished; no rescued generation waits."""
    found = _verified(root, manifest, backend)
    if found is None or _usable_folders(root, found[1]) is None:
        return None
    state = os.path.join(root, state_of(manifest))
    if not (_unlocked(os.path.join(state, "lock")) and _tidy(root) and _tidy(state)):
        return None
    return None if _rescued() else found[0]


def status(root: str, manifest: str, backend: str | None) -> tuple[list[StatusRow], str] | None:
    """`status`'s lines and summary, if the project is as the last no-op plan saw it."""
    found = _verified(root, manifest, backend)
    folders = None if found is None else _section(found[1])
    kept = None if folders is None else _section(folders[1])
    if kept is None or kept[0] is None or "\n" in kept[1]:
        return None
    table = [tuple(row.split("\t")) for row in kept[0]]
    if any(len(row) != 4 for row in table):
        return None
    return table, kept[1]  # type: ignore[return-value]


def _count(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _section(text: str) -> tuple[list[str] | None, str] | None:
    """(the lines of the section `text` starts with, the text after it): a count and
    as many lines, or "-" for a section left out (lines None); None where malformed."""
    head, _, rest = text.partition("\n")
    if head == "-":
        return None, rest
    count = _count(head)
    if count is None:
        return None
    lines = rest.split("\n", count) if count else [rest]
    if len(lines) < count:
        return None
    return lines[:count], lines[count] if len(lines) > count else ""


def _usable_folders(root: str, text: str) -> str | None:
    """The text after the folders section, if each folder apply writes to is as the
    plan saw it and reached without a symbolic link."""
    found = _section(text)
    if found is None or found[0] is None or not _signatures_match(root, found[0]):
        return None
    real_root = os.path.realpath(root)
    for line in found[0]:
        folder = line.partition("\t")[0]
        if os.path.realpath(os.path.join(root, folder)) != os.path.normpath(
            os.path.join(real_root, folder)
        ):
            return None  # a link: apply checks where it leads
    return found[1]


def _verified(root: str, manifest: str, backend: str | None) -> tuple[int, str] | None:
    """(images, the rest of the snapshot) if every file the last no-op plan read is
    as it was, and reached the same way."""
    if any(name in os.environ for name in ENVIRONMENT):
        return None  # the full path checks them (and may say something)
    state = os.path.join(root, state_of(manifest))
    if not _plain_state(root, manifest):
        return None  # the full path refuses it, and says why
    text = _read(os.path.join(state, "noop"))
    if text is None or os.path.lexists(os.path.join(state, "journal")):  # an apply runs
        return None
    head = text.split("\n", 3)
    if len(head) < 4 or head[0] != FORMAT or head[1] != _context(manifest, backend):
        return None
    images = _count(head[2])
    found = _section(head[3])
    files = None if found is None else found[0]
    if images is None or found is None or files is None or len(files) < 2:
        return None
    rest = found[1]
    first, second = files[:2]
    if not (first.startswith(f"{manifest}\t") and second.startswith(f"{lock_of(manifest)}\t")):
        return None  # every snapshot this module writes starts with these two
    # each section's rest is a copy of the snapshot's tail (the status rows: 5 MB at
    # 100,000 images), so only the last one is kept
    sections: list[list[str]] = []
    for _ in ("parents", "outside", "environment"):
        found = _section(rest)
        if found is None or found[0] is None:
            return None
        sections.append(found[0])
        rest = found[1]
    parents, outside, environment = sections
    if not (_signatures_match(root, files) and _plain_folders(root, parents)):
        return None
    if not (_environment_matches(environment) and _outside_matches(outside)):
        return None
    return images, rest


def _plain_state(root: str, manifest: str) -> bool:
    """What `Project.checked()` asks of the state folders and files: plain, no link."""
    state = state_of(manifest)
    parts = state.split(os.sep)
    folders = [os.sep.join(parts[: index + 1]) for index in range(len(parts))]
    folders += [os.path.join(state, name) for name in STATE_FOLDERS]
    if manifest == "images.toml":
        folders.append(os.path.join(state, "manifests"))
    files = [lock_of(manifest), *(os.path.join(state, name) for name in STATE_FILES)]
    return _plain(root, folders, is_folder=True) and _plain(root, files, is_folder=False)


def _plain_folders(root: str, folders: Iterable[str]) -> bool:
    """Whether each folder is a folder, not a link (nor missing)."""
    prefix = os.path.join(root, "")
    for folder in folders:
        try:
            if not S_ISDIR(os.lstat(prefix + folder).st_mode):
                return False
        except OSError:
            return False
    return True


def _plain(root: str, paths: Iterable[str], *, is_folder: bool) -> bool:
    """Whether each path that exists is a plain folder (or file), not a link."""
    for path in paths:
        try:
            mode = os.lstat(os.path.join(root, path)).st_mode
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if not (S_ISDIR(mode) if is_folder else S_ISREG(mode)):
            return False
    return True


def _unlocked(path: str) -> bool:
    """Whether no other run holds the project lock, nor left it behind when killed
    (its pid stays in the file): apply's full path says so, or takes it over."""
    import fcntl

    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        info = os.fstat(descriptor)
        if not S_ISREG(info.st_mode) or info.st_size:
            return False
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(descriptor)  # releases the probe's lock
    return True


def _tidy(folder: str) -> bool:
    """Whether `folder` holds no temp file a killed run left (apply deletes them)."""
    try:
        with os.scandir(folder) as entries:
            return not any(e.name.startswith(".") and TEMP_MARKER in e.name for e in entries)
    except OSError:
        return False


def _rescued() -> bool:
    """Whether generations rescued from a full disk wait in the user's cache: apply's
    full path moves those its images need into the project's cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    try:
        with os.scandir(os.path.join(base, "nebula-build", "rescue")) as entries:
            return any(True for _ in entries)
    except FileNotFoundError:
        return False
    except OSError:
        return True


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


def _outside_matches(lines: Sequence[str]) -> bool:
    """Whether each "absolute path\tsignature" line still holds, "-" for a path that
    was missing and must still be."""
    for line in lines:
        path, _, recorded = line.partition("\t")
        found = _signature(path) if os.path.isabs(path) else None
        if (found or "-") != recorded:
            return False
    return True


def _environment_matches(lines: Sequence[str]) -> bool:
    """Whether each "NAME\t=tag" line (or "NAME\t-", unset) still holds."""
    for line in lines:
        name, _, recorded = line.partition("\t")
        if recorded != _variable(os.environ.get(name)):
            return False
    return True


def _variable(value: str | None) -> str:
    """A variable's value as the snapshot records it: "-" where it is unset, else "="
    and its seal's tag, never the value (a plugin may name one that holds a secret);
    "=" alone where no key can be kept."""
    from nebula_build.state.seal import tag

    if value is None:
        return "-"
    return "=" + (tag(value.encode("utf-8", "surrogateescape")) or "")


def _read(path: str) -> str | None:
    """The snapshot's text, if this account sealed it; only a regular file of a sane
    size is read."""
    from nebula_build.state.seal import sealed_from

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
    start = sealed_from(data)
    return None if start is None else str(memoryview(data)[start:], "utf-8", "surrogateescape")


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
    read_folders: Iterable[str] = (),
    status: tuple[Sequence[StatusRow], str] | None = None,
    outside: Mapping[str, Signature | None] = {},
    environment: Mapping[str, str | None] = {},
) -> str | None:
    """The snapshot's text for a no-op plan that began at `now` and read `paths`
    (relative to `root`), or None where one cannot be trusted: a file missing, racy
    (changed after `now - RACY_SECONDS`), or with a name that does not fit on a line.
    `seen` are signatures the plan already took (size, mtime, ctime, inode): those
    files are not stat-ed again. `read_folders` are folders read as a whole (the
    posts'): they and the folders above each path must stay plain folders, never a
    link. `folders` are those apply writes to or tidies, `status` the lines and
    summary `status` shows (each part is left out, and its command takes the full
    path, where it cannot be trusted). `outside` are absolute paths the plan looked
    at (a local model's weights) with their signatures, None for one missing, and
    `environment` the variables that decided where it looked."""
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
    parents = _ancestors(paths, read_folders)
    if not all(_fits(folder) for folder in parents):
        return None
    lines += [str(len(parents)), *parents]
    watched = _outside_lines(outside, newest)
    variables = [f"{name}\t{_variable(value)}" for name, value in environment.items()]
    if watched is None or not all(_fits(name) for name in environment):
        return None
    if any(line.endswith("\t=") for line in variables):
        return None  # no key to tag a value with (nothing is sealed then either)
    lines += [str(len(watched)), *watched, str(len(variables)), *variables]
    tidy = _tidy_folders(root, folders, newest)
    lines += ["-"] if tidy is None else [str(len(tidy)), *tidy]
    if status is None or not all(_fits(part) for row in status[0] for part in row):
        lines.append("-")
    else:
        lines += [str(len(status[0])), *("\t".join(row) for row in status[0]), status[1]]
    return "\n".join(lines)


def _outside_lines(outside: Mapping[str, Signature | None], newest: float) -> list[str] | None:
    """A line per absolute path, or None where one cannot be trusted (racy, odd)."""
    lines = []
    for path, signature in sorted(outside.items()):
        if not (_fits(path) and os.path.isabs(path)):
            return None
        if signature is not None and max(signature[1], signature[2]) / 1e9 > newest:
            return None
        lines.append(f"{path}\t{'-' if signature is None else _text(signature)}")
    return lines


def _ancestors(paths: Iterable[str], folders: Iterable[str]) -> list[str]:
    """`folders` and every folder above each of `paths`, inside the project."""
    found: set[str] = set()
    for folder in {path.rpartition("/")[0] for path in paths} | {*folders} - {"."}:
        above = folder
        while above and above not in found:
            found.add(above)
            above = above.rpartition("/")[0]
    return sorted(found)


def state_folders(root: str, manifest: str) -> list[str]:
    """The folders under the state folder (not it: apply looks inside it each time),
    as apply's sweep for temp files walks them; another manifest's are its own."""
    state = state_of(manifest)
    skip = "manifests" if manifest == "images.toml" else None
    found: list[str] = []
    pending = [(state, 0)]
    while pending:
        current, depth = pending.pop()
        try:
            with os.scandir(os.path.join(root, current)) as entries:
                below = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in below:
            if depth < STATE_DEPTH and name != skip:
                found.append(os.path.join(current, name))
                pending.append((found[-1], depth + 1))
    return found


def _fits(text: str) -> bool:
    return "\t" not in text and "\n" not in text


def _tidy_folders(root: str, folders: Iterable[str], newest: float) -> list[str] | None:
    """Each folder's line, if none holds a killed run's temp file (which apply would
    delete) or changed after `newest`; a temp file made later changes its signature."""
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


#: what a plan may ask the cache about a generation: each answer can change without
#: any file the snapshot records changing (a draw's entry moved away, say). Not asked:
#: `output_files`, which a plan with nothing to do asks for an atlas, and whose answer
#: matters only where the frame map (a recorded file) names other members.
_STORE_QUESTIONS = ("has", "has_ours", "digest", "get")


def consulted(store: Store) -> list[str]:
    """Note from now on each key `store` is asked about, into the list returned: a
    plan that consulted the cache leaves no snapshot."""
    asked: list[str] = []

    def noting(question: Callable[..., object]) -> Callable[..., object]:
        def noted(key: str, *args: object, **kwargs: object) -> object:
            asked.append(key)
            return question(key, *args, **kwargs)

        return noted

    for name in _STORE_QUESTIONS:
        setattr(store, name, noting(getattr(store, name)))
    return asked


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
    from nebula_build.state.seal import seal

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
    # every folder the patterns of posts walked, as walked by this plan: a post added,
    # removed or renamed in any of them (a new subfolder too) changes one's signature
    walked = [*prepared.data_folders, *(f or "." for f, _, _ in prepared.resolved.data_globs)]
    paths += walked
    text = None
    # a pin is shown by every plan, so a plan with one is never skipped
    pinned = any(a.spec is not None and a.spec.pin is not None for a in plan.actions)
    # nor is one noting an image made with other settings: the note would go unsaid;
    # nor one keeping a stand-in's placeholder, which a run elsewhere makes again
    from nebula_build.core.plan import PIN_RELEASED, PLACEHOLDER_NOTE, SETTINGS_NOTE

    pinned = pinned or any(
        SETTINGS_NOTE in note or note == PIN_RELEASED or note.startswith(PLACEHOLDER_NOTE)
        for a in plan.actions
        for note in a.notes
    )
    # a value outside the project that could not be read: no telling when it changes
    known = prepared.outside.complete
    if known and not any(p.startswith("..") for p in paths) and not plan.has_changes and not pinned:
        text = snapshot(
            root,
            manifest,
            backend,
            paths=paths,
            images=len(plan.actions),
            now=started,
            seen={**prepared.files.seen(), **prepared.data_seen, **observed},
            folders={path.rpartition("/")[0] or "." for path in written}
            | set(state_folders(root, manifest)),
            read_folders=walked,
            status=status,
            outside={**prepared.outside.signatures, **_plugin_code(prepared)},
            environment=prepared.outside.environment,
        )
    sealed = None if text is None else seal(text.encode("utf-8", "surrogateescape"))
    if sealed is None:  # nothing to remember, or no key to seal it with
        forget(project.state_dir)
        return
    with contextlib.suppress(OSError):  # the snapshot only saves time
        atomic_write(project.state_dir / "noop", sealed, durable=False)


def _plugin_code(prepared: Prepared) -> dict[str, Signature | None]:
    """The files of the plugins the manifest uses, by absolute path: one edited in
    place (its version kept) may declare its models otherwise."""
    code = {path for plugin in prepared.resolved.backends.values() for path in plugin.code}
    return {path: _stat(path) for path in code}


def forget(state_dir: Path) -> None:
    """Remove the snapshot: the next plan takes the full path."""
    import contextlib

    with contextlib.suppress(OSError):
        (state_dir / "noop").unlink(missing_ok=True)
