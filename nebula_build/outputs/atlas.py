"""Sprite atlases: members' outputs packed into one sheet, with a frame map.

The frame map is the TexturePacker "JSON hash" layout that Phaser, PixiJS and
most engines read: `frames.<name>.frame {x, y, w, h}` and `meta.size`. Its
`meta` also records the key of the member outputs the sheet was made from and
the sheet's digest, so an atlas is rebuilt only when a member changes, and a
sheet edited by hand is never overwritten without --force.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from nebula_build.core.atlaspack import pack, too_large
from nebula_build.core.plan import FileAction, FileKind, FileState
from nebula_build.core.spec import AtlasSpec
from nebula_build.errors import UserError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import MAX_BYTES
from nebula_build.outputs.engines import Placed, aseprite_json, godot_tres
from nebula_build.outputs.metadata import png_with_text, save_options, sheet_texts, xmp_records
from nebula_build.outputs.sprites import TRIM_KEY
from nebula_build.state import conflicts
from nebula_build.state.guard import Guard
from nebula_build.state.lockfile import LockEntry
from nebula_build.text import printable

#: a frame map far larger than any sheet's could be is not ours: it is not read
FRAME_MAP_LIMIT = 16 << 20

# --- planning ---------------------------------------------------------------------


def _options(atlas: AtlasSpec) -> list[Any]:
    return [atlas.padding, atlas.format, *atlas.exports_config()]


def options_key(atlas: AtlasSpec) -> str:
    """What the atlas's files depend on besides its members (recorded, to say which)."""
    return hashlib.sha256(json.dumps(_options(atlas)).encode()).hexdigest()


def members_key(atlas: AtlasSpec, lock: Mapping[str, LockEntry]) -> str | None:
    """What the sheet depends on; None while a member has no output yet. The sheet and
    its frame map place the members by size and in their order, so their order counts."""
    return _members_key(atlas, lock, atlas.members)


def _by_name_key(atlas: AtlasSpec, lock: Mapping[str, LockEntry]) -> str | None:
    """The members key as an atlas without engine exports recorded it while its frames
    were placed by size and name (up to 0.4)."""
    return None if atlas.exports else _members_key(atlas, lock, sorted(atlas.members))


def _members_key(
    atlas: AtlasSpec, lock: Mapping[str, LockEntry], members: Sequence[str]
) -> str | None:
    parts: list[Any] = _options(atlas)
    for name in members:
        entry = lock.get(name)
        if entry is None:
            return None
        parts.append([name, entry.digest])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def record_key(atlas: AtlasSpec, key: str) -> str:
    """Under which key the cache remembers the sheet built from members `key`."""
    return hashlib.sha256(f"atlas\0{key}\0{atlas.output}".encode()).hexdigest()


def plan_atlas(
    atlas: AtlasSpec,
    lock: Mapping[str, LockEntry],
    *,
    sheet: str | None,
    recorded: Mapping[str, Any] | None,
    changing: Collection[str] = (),
    renamed: Mapping[str, str] = {},
    force: bool = False,
    known_output: Callable[[str], Mapping[str, str]] = lambda key: {},
    exports: Mapping[str, str | None] | None = None,
    dropped: Collection[str] = (),
    written_before: Collection[str] = (),
    frames: str | None = None,
    merged: bool = False,
    unlike_lock: Mapping[str, str] = {},
) -> FileAction:
    """What the atlas needs, from its members in the lock, the sheet's digest on disk
    (`sheet`) and what its frame map recorded; `changing` are images the same apply
    is about to change, `renamed` those of them that are renamed images, each with the
    name it had. `known_output` gives the files a build wrote for a
    `record_key` before their renames: a sheet a killed build left is ours (with the
    exports on disk, each of which must be that build's too). `dropped`: the exports
    the last build wrote that the build removes (`derived.dropped_exports`).
    `written_before`: files of the atlas that hold what its last build wrote there as
    the lock records it, where the frame map cannot say (it moved): no conflict.
    `frames`: the digest of the file at the frame map's path, if there is one: one that
    is no frame map of nebula-build's is never written over without --force. `merged`:
    `recorded` is one side of a frame map git left conflict markers in
    (`merged_record`), which the build writes resolved. `unlike_lock`: the members
    whose file does not hold the bytes the lock records, and why (changed by hand,
    missing), which the atlas waits for: it never packs an edit nobody accepted."""
    key = members_key(atlas, lock)
    exports = exports or {}

    def act(state: FileState, reason: str, *, backup: bool = False) -> FileAction:
        return FileAction(
            FileKind.ATLAS,
            atlas.name,
            state,
            reason,
            atlas.output,
            key or "",
            backup=backup,
            new=sheet is None,
            frames=atlas.frames,
            exports=atlas.exports,
            # whatever the reason for the build, it removes them (engine/derived.py); a
            # conflict, under --force
            removes=tuple(dropped) if state in (FileState.BUILD, FileState.CONFLICT) else (),
        )

    # a member's edit nobody accepted: whatever else would build the sheet waits for it
    waiting = _waiting_for_edits(atlas, unlike_lock)

    def build(reason: str, *, backup: bool = False) -> FileAction:
        if waiting is not None:
            return act(FileState.WAITING, waiting)
        return act(FileState.BUILD, reason, backup=backup)

    edited = None
    if sheet is not None and key is not None:
        known = known_output(record_key(atlas, key))
        ours = known.get(atlas.output) == sheet and all(
            digest is None or known.get(path) == digest for path, digest in exports.items()
        )
        if ours and recorded is not None and recorded.get("key") != key:
            if recorded.get("digest") == sheet:  # the same sheet: options went and came back
                return build(_why_rebuilt(atlas, recorded, dropped))
            return build("a build was interrupted")
        if ours and recorded is None:
            return build("a build was interrupted")
    if recorded is None and sheet is not None and atlas.output not in written_before:
        edited = f"{atlas.output} exists and was not written by nebula-build"
    elif recorded is None and frames is not None and atlas.frames not in written_before:
        edited = f"{atlas.frames} exists and was not written by nebula-build"
    elif recorded is not None and sheet is not None and sheet != recorded.get("digest"):
        edited = f"{atlas.output} changed by hand"
    for path, digest in exports.items():
        if path in written_before or edited is not None or digest is None:
            continue
        if digest != (recorded or {}).get(_export(path)):
            edited = f"{path} was not written by nebula-build, or changed by hand since"
    if edited is not None:
        if not force:
            return act(FileState.CONFLICT, edited)
        return build(f"{edited}; --force overwrites it", backup=True)
    if waiting is not None:
        return act(FileState.WAITING, waiting)
    moving = [member for member in atlas.members if member in changing]
    if moving:  # built after them, from the lock as they leave it
        # a member neither recorded nor made by this apply (--target): not built yet
        if missing := [m for m in atlas.members if m not in lock and m not in changing]:
            return act(FileState.WAITING, f"waiting for {some_names(missing)}")
        if recorded is None:
            return act(FileState.BUILD, "new atlas")
        renames = _member_renames(moving, renamed, recorded.get(_MEMBERS))
        # a member joining is said as it (by `_why_rebuilt`), not also as changing
        joined = _joined(atlas, recorded.get(_MEMBERS), renames)
        changes = _moving(moving, renames, joined)
        said = [f"members change: {changes}"] if changes else []
        if (why := _why_rebuilt(atlas, recorded, dropped, renames)) != _A_MEMBER_CHANGED:
            said.append(why)  # a new export is a new file: the plan names it
        return act(FileState.BUILD, "; ".join(said) or _A_MEMBER_CHANGED)
    if key is None:
        missing = [member for member in atlas.members if member not in lock]
        return act(FileState.WAITING, f"waiting for {some_names(missing)}")
    if recorded is None:  # and no sheet: a sheet without a record is a conflict above
        return act(FileState.BUILD, "new atlas")
    if recorded.get("key") != key:
        if recorded.get("key") == _by_name_key(atlas, lock):
            return act(FileState.BUILD, _PLACED_IN_ORDER)
        return act(FileState.BUILD, _why_rebuilt(atlas, recorded, dropped))
    if sheet is None:
        return act(FileState.BUILD, "sheet missing")
    missing = [path for path, digest in exports.items() if digest is None]
    if missing:
        return act(FileState.BUILD, f"{missing[0]} missing")
    if merged:
        return act(FileState.BUILD, f"git left merge conflict markers in {atlas.frames}")
    return act(FileState.NOOP, "up to date")


def _waiting_for_edits(atlas: AtlasSpec, unlike_lock: Mapping[str, str]) -> str | None:
    """Why the atlas waits for members whose file is not what the lock records."""
    unlike = [member for member in atlas.members if member in unlike_lock]
    if not unlike:
        return None
    named = "; ".join(f"{member} {unlike_lock[member]}" for member in unlike[:3])
    more = f" and {len(unlike) - 3} more" if len(unlike) > 3 else ""
    return f"waiting for {named}{more}"


def _member_renames(
    moving: list[str], renamed: Mapping[str, str], before: object
) -> dict[str, str]:
    """The members renamed from a member of the last build (as far as its frame map
    says), new name → old."""
    renames = {new: renamed[new] for new in moving if new in renamed}
    if isinstance(before, list):
        renames = {new: old for new, old in renames.items() if old in before}
    return renames


def _moving(moving: list[str], renames: Mapping[str, str], joined: Collection[str]) -> str:
    """'hero, hero-cap renamed to hero-hat': the members changing, a renamed one as its
    rename (its old name's leaving and its new name's joining say nothing more), less
    those `joined` (said as joining)."""
    changed = [name for name in moving if name not in renames and name not in joined]
    said = [some_names(changed)] if changed else []
    if renames:
        said.append(some_names([f"{old} renamed to {new}" for new, old in renames.items()]))
    return "; ".join(said)


def _why_rebuilt(
    atlas: AtlasSpec,
    recorded: Mapping[str, Any],
    dropped: Collection[str],
    renames: Mapping[str, str] = {},
) -> str:
    """Why an atlas whose members key changed is built again, as far as its record
    (from the frame map: untrusted, shown printable) tells; a record from before
    `options` were recorded says less. `renames`: members renamed (new name → old),
    said already, not as a member that left and one that joined."""
    said = _files_changed(atlas, recorded, dropped)
    if members := _members_changed(atlas, recorded.get(_MEMBERS), renames):
        said.append(members)
    return "; ".join(said) or _A_MEMBER_CHANGED


def _files_changed(
    atlas: AtlasSpec, recorded: Mapping[str, Any], dropped: Collection[str]
) -> list[str]:
    """The exports removed and added, or else whether the options changed (the exports'
    paths are among them: with one added or removed, the record cannot tell more)."""
    before = recorded_exports(recorded)
    said = []
    if gone := [path for path in before if path not in atlas.paths]:
        said.append(_exports_gone(gone, dropped))
    if added := [path for path in atlas.exports if path not in before]:
        said.append(f"new export{'s' if len(added) > 1 else ''} {_named(added)}")
    options = recorded.get("options")
    if not said and options is not None and options != options_key(atlas):
        said.append("its options changed")
    return said


_A_MEMBER_CHANGED = "a member changed"
#: why a sheet whose frames were placed by name is built again
_PLACED_IN_ORDER = "frames are placed in the order images.toml declares them now, no longer by name"
#: the members a frame map's frames name (`read_recorded`), beside its record
_MEMBERS = "members"


def _members_changed(
    atlas: AtlasSpec, before: object, renames: Mapping[str, str] = {}
) -> str | None:
    """'item[shield] left; item[axe] joined', from the members the last build's frame
    map names (untrusted: shown printable, a few by name), less those renamed."""
    if not isinstance(before, list):
        return None
    was = {name for name in before if isinstance(name, str)}
    left = sorted(was - set(atlas.members) - set(renames.values()))
    joined = _joined(atlas, before, renames)
    said = [f"{some_names(left)} left"] if left else []
    said += [f"{some_names(joined)} joined"] if joined else []
    if not said and _reordered(atlas.members, before, renames):
        said.append("its members are listed in another order (its frames are placed in it)")
    return "; ".join(said) or None


def _reordered(members: Sequence[str], before: list[Any], renames: Mapping[str, str]) -> bool:
    """Whether the members the last build and this one share (a renamed one by its old
    name) come in another order."""
    was = [name for name in before if isinstance(name, str)]  # from the frame map: untrusted
    now = [renames.get(name, name) for name in members]
    both = set(now) & set(was)
    return [n for n in was if n in both] != [n for n in now if n in both]


def _joined(atlas: AtlasSpec, before: object, renames: Mapping[str, str]) -> list[str]:
    """The members the last build's frame map does not name (none where it says
    nothing of its members), less those renamed."""
    if not isinstance(before, list):
        return []
    was = {name for name in before if isinstance(name, str)}
    return [name for name in atlas.members if name not in was and name not in renames]


def some_names(names: list[str]) -> str:
    """'a, b, c and 2 more': a few names of many, each shown printable."""
    shown = ", ".join(printable(name, 80) for name in names[:_NAMED_EXPORTS])
    more = len(names) - _NAMED_EXPORTS
    return f"{shown} and {more} more" if more > 0 else shown


#: exports a reason names one by one (a crafted frame map can name many)
_NAMED_EXPORTS = 3
_STAYS = "changed since written, not written by this machine, or another name of a file it writes"


def _exports_gone(gone: list[str], dropped: Collection[str]) -> str:
    """'2 exports removed from the manifest' (the plan names the files the build removes
    under it, `FileAction.removes`), and which of their files stay."""
    stays = [path for path in gone if path not in dropped]
    head = "export" if len(gone) == 1 else f"{len(gone)} exports"
    if not stays:
        return f"{head} removed from the manifest"
    if len(stays) == len(gone):
        files = "its file stays" if len(gone) == 1 else "their files stay"
        return f"{head} {_named(gone)} removed from the manifest; {files} ({_STAYS})"
    verb = "stays" if len(stays) == 1 else "stay"
    return f"{head} removed from the manifest; {_named(stays)} {verb} ({_STAYS})"


def _named(paths: list[str]) -> str:
    named = ", ".join(printable(path, 200) for path in paths[:_NAMED_EXPORTS])
    if len(paths) > _NAMED_EXPORTS:
        named += f" and {len(paths) - _NAMED_EXPORTS} more"
    return named


def _export(path: str) -> str:
    """Under which name the frame map's record keeps an export's digest."""
    return f"export:{path}"


def recorded_exports(recorded: Mapping[str, Any] | None) -> dict[str, str]:
    """The exports the last build wrote (path → digest), as its record says."""
    prefix = _export("")
    return {
        name[len(prefix) :]: digest
        for name, digest in (recorded or {}).items()
        if name.startswith(prefix) and isinstance(digest, str) and len(name) > len(prefix)
    }


def read_recorded(guard: Guard, atlas: AtlasSpec) -> dict[str, Any] | None:
    """What the atlas's frame map says it was made from; None if it has no such record."""
    try:
        data = guard.read(atlas.frames, what="frame map", limit=FRAME_MAP_LIMIT)
    except (OSError, UserError):
        return None
    return _record_of(data)


def _record_of(data: bytes | str) -> dict[str, Any] | None:
    try:
        written = json.loads(data)
        meta = written["meta"]["nebula_build"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(meta, dict):
        return None
    frames = written.get("frames")
    return {**meta, _MEMBERS: list(frames)} if isinstance(frames, dict) else meta


def merged_record(
    guard: Guard, atlas: AtlasSpec, sheet: str | None
) -> tuple[dict[str, Any], list[str]] | None:
    """Where `git merge` of two branches that each rebuilt the atlas left conflict
    markers in its frame map: the record of the side whose sheet is on disk (git keeps
    one side of a binary file), and the atlas's files holding markers whose every side
    is what one of the two builds wrote (the frame map, an export), which the build
    writes over as its own. None where the frame map holds no such merge, or the sheet
    is neither side's."""
    try:
        split = _sides(guard.read(atlas.frames, what="frame map", limit=FRAME_MAP_LIMIT))
    except (OSError, UserError):
        return None
    if split is None:
        return None
    records = [_record_of(side) for side in split]
    chosen = next((r for r in records if r is not None and r.get("digest") == sheet), None)
    if chosen is None or None in records:
        return None
    merged = [atlas.frames]
    for path in atlas.exports:
        written = {
            d for r in records if r is not None and isinstance(d := r.get(_export(path)), str)
        }
        try:  # merged cleanly: one side's, or with markers: each side one build's
            data = guard.read(path, what="atlas file", limit=FRAME_MAP_LIMIT)
        except (OSError, UserError):
            continue
        sides = _sides(data)
        if sha256_bytes(data) in written or (
            sides is not None and all(sha256_bytes(side.encode()) in written for side in sides)
        ):
            merged.append(path)
    return chosen, merged


def _sides(data: bytes) -> tuple[str, str] | None:
    """The two sides of a text file of the atlas that git left conflict markers in."""
    try:
        return conflicts.side_texts(data.decode())
    except UnicodeDecodeError:
        return None


def sheet_path_from_frames(atlas: AtlasSpec) -> str:
    """The sheet as `meta.image` names it: relative to the frame map's folder, which is
    where Phaser and PixiJS look for it."""
    return posixpath.relpath(atlas.output, posixpath.dirname(atlas.frames) or ".")


# --- packing and writing -------------------------------------------------------------


def render(
    guard: Guard, atlas: AtlasSpec, lock: Mapping[str, LockEntry], key: str
) -> tuple[bytes, bytes, dict[str, bytes]]:
    """Pack the members' current outputs: the sheet's bytes, the frame map's, and each
    engine export's by path. One member's file is in memory at a time: each is read
    for its size, then again for its pixels (a member is up to date by its digest,
    whatever else its file holds: eight links to one file of 200 MiB took 2 GB)."""
    from PIL import Image

    read: dict[str, str] = {}  # each member's digest as the first pass read it

    def member(name: str) -> Image.Image:
        data = guard.read(lock[name].output, what=f"atlas member {name}", limit=MAX_BYTES)
        digest = sha256_bytes(data)
        if read.setdefault(name, digest) != digest:
            raise UserError(f"atlas member {name}: {lock[name].output} changed meanwhile")
        if digest != lock[name].digest:  # an edit nobody accepted is never packed
            raise UserError(
                f"atlas member {name}: {lock[name].output} is not the image the lock "
                "records (changed by hand since the plan)"
            )
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:  # a header may claim any size
            raise UserError(f"atlas member {name}: {exc}") from None

    sizes: dict[str, tuple[int, int]] = {}
    boxes: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
    for name in atlas.members:  # sizes from the headers: no pixel is decoded yet
        with member(name) as opened:
            sizes[name] = opened.size
            box = trim_box(_trim_text(opened.info), opened.size)
            if box is not None:
                boxes[name] = box
    positions, size = pack(sizes, atlas.padding)
    problem = too_large(size)  # before the sheet's pixels are allocated
    if problem is not None:
        raise UserError(problem)
    sheet = Image.new("RGBA", size, (0, 0, 0, 0))
    for name in atlas.members:  # one member's pixels in memory at a time
        with member(name) as opened:
            sheet.paste(opened.convert("RGBA"), positions[name])
    buffer = io.BytesIO()
    texts = sheet_texts(atlas.name, atlas.output)  # what vouches for it in a fresh checkout
    if atlas.format == "png":
        sheet.save(buffer, "PNG")
        data = png_with_text(buffer.getvalue(), texts)
    else:
        sheet.save(buffer, "WEBP", lossless=True, **save_options(texts))
        data = buffer.getvalue()
    placed = [
        Placed(name, *positions[name], *sizes[name], *boxes.get(name, ((0, 0), None)))
        for name in atlas.members
    ]
    frames = {frame.name: frame.texturepacker() for frame in placed}
    exports = _exports(atlas, placed, size)
    record = {"key": key, "digest": sha256_bytes(data), "options": options_key(atlas)}
    record |= {_export(path): sha256_bytes(blob) for path, blob in exports.items()}
    meta = {
        "app": "nebula-build",
        "image": sheet_path_from_frames(atlas),
        "format": "RGBA8888",
        "size": {"w": size[0], "h": size[1]},
        "scale": "1",
        "nebula_build": record,
    }
    text = json.dumps({"frames": frames, "meta": meta}, indent=2) + "\n"
    return data, text.encode(), exports


def _exports(atlas: AtlasSpec, placed: list[Placed], size: tuple[int, int]) -> dict[str, bytes]:
    tags = dict(atlas.tags)
    files = {}
    if atlas.aseprite is not None:
        image = posixpath.relpath(atlas.output, posixpath.dirname(atlas.aseprite) or ".")
        files[atlas.aseprite] = aseprite_json(
            placed, tags, image=image, size=size, fps=atlas.fps, once=atlas.once
        )
    if atlas.godot is not None:
        assert atlas.godot_sheet is not None
        files[atlas.godot] = godot_tres(
            placed, tags, sheet=atlas.godot_sheet, fps=atlas.fps, once=atlas.once
        )
    return files


def _trim_text(info: Mapping[Any, Any]) -> object:
    """A member's trim box as written: a PNG text chunk, or XMP in WebP, JPEG, AVIF."""
    if TRIM_KEY in info:
        return info[TRIM_KEY]
    return xmp_records(info["xmp"]).get(TRIM_KEY) if info.get("xmp") else None


def trim_box(text: object, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((x, y), (width, height)) of a trimmed member's pixels in its untrimmed image, from
    the text `outputs/sprites.py` wrote in it; None for anything else (a member file is
    read from the project: a box that does not fit its pixels is not believed)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    parts = text.split(",")
    # ASCII digits only: str.isdigit accepts "²", which int() refuses
    if len(parts) != 4 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    x, y, width, height = map(int, parts)
    if x + size[0] > width or y + size[1] > height or width > 65536 or height > 65536:
        return None
    return (x, y), (width, height)
