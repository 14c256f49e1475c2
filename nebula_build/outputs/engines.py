"""Frame data for game engines, written beside an atlas's TexturePacker JSON hash.

- Aseprite JSON, array form: `frames` is a list whose entry i is named "i" (what
  Phaser's JSON array parser names texture frames by, and what
  `anims.createFromAseprite` looks frames up by), and `meta.frameTags` holds one tag
  per value of the matrix dimension an atlas names (`tags = "pose"`), each a run of
  consecutive frames. Phaser: `this.load.aseprite(key, sheet, json)` then
  `this.anims.createFromAseprite(key)`.
- Godot 4: a `SpriteFrames` resource (`.tres`, text format 3): the sheet as an
  external `Texture2D` by its `res://` path, one `AtlasTexture` per frame (its region
  in the sheet, and for a trimmed sprite the margin that puts it back in its
  untrimmed box), one animation per tag ("default" without tags), looping unless
  the atlas's `loop` says it plays once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Placed:
    """One sprite in the sheet: where it is, and the untrimmed box it came from."""

    name: str
    x: int
    y: int
    w: int
    h: int
    #: where its pixels sit in the untrimmed image, and that image's size
    offset: tuple[int, int] = (0, 0)
    source: tuple[int, int] | None = None

    @property
    def source_size(self) -> tuple[int, int]:
        return self.source or (self.w, self.h)

    @property
    def trimmed(self) -> bool:
        return self.source_size != (self.w, self.h) or self.offset != (0, 0)

    def texturepacker(self) -> dict[str, object]:
        """The frame's entry as TexturePacker writes it (both JSON layouts share it)."""
        width, height = self.source_size
        return {
            "frame": {"x": self.x, "y": self.y, "w": self.w, "h": self.h},
            "rotated": False,
            "trimmed": self.trimmed,
            "spriteSourceSize": {
                "x": self.offset[0],
                "y": self.offset[1],
                "w": self.w,
                "h": self.h,
            },
            "sourceSize": {"w": width, "h": height},
        }


def runs(placed: Sequence[Placed], tags: Mapping[str, str]) -> list[tuple[str, list[Placed]]]:
    """The frames grouped by tag, tags in the order they first appear; without tags,
    one group "default" of every frame."""
    if not tags:
        return [("default", list(placed))]
    groups: dict[str, list[Placed]] = {}
    for frame in placed:
        groups.setdefault(tags[frame.name], []).append(frame)
    return list(groups.items())


def aseprite_json(
    placed: Sequence[Placed],
    tags: Mapping[str, str],
    *,
    image: str,
    size: tuple[int, int],
    fps: float,
    once: Collection[str] = (),
) -> bytes:
    """The Aseprite JSON (array form); `image` is the sheet relative to the JSON file."""
    duration = max(1, round(1000 / fps))
    frames: list[dict[str, object]] = []
    frame_tags = []
    for tag, group in runs(placed, tags):
        start = len(frames)
        for frame in group:
            frames.append({"filename": str(len(frames)), **frame.texturepacker()})
            frames[-1]["duration"] = duration
        if tags:
            frame_tags.append(
                {"name": tag, "from": start, "to": len(frames) - 1, "direction": "forward"}
            )
            if tag in once:  # as Aseprite writes a tag that plays once
                frame_tags[-1]["repeat"] = "1"
    names = [frame.name for _, group in runs(placed, tags) for frame in group]
    meta = {
        "app": "nebula-build",
        "version": "1",
        "image": image,
        "format": "RGBA8888",
        "size": {"w": size[0], "h": size[1]},
        "scale": "1",
        "frameTags": frame_tags,
        "layers": [],
        "slices": [],
        "nebula_build": {"names": names},  # frame i is image names[i]
    }
    return (json.dumps({"frames": frames, "meta": meta}, indent=2) + "\n").encode()


def godot_tres(
    placed: Sequence[Placed],
    tags: Mapping[str, str],
    *,
    sheet: str,
    fps: float,
    once: Collection[str] = (),
) -> bytes:
    """The Godot 4 SpriteFrames resource; `sheet` is the sheet's res:// path."""
    groups = runs(placed, tags)
    count = sum(len(group) for _, group in groups)
    lines = [
        f'[gd_resource type="SpriteFrames" load_steps={count + 2} format=3]',
        "",
        f'[ext_resource type="Texture2D" path={_string(sheet)} id="1_sheet"]',
        "",
    ]
    ids: dict[str, str] = {}
    for frame in (frame for _, group in groups for frame in group):
        ids[frame.name] = f"AtlasTexture_{len(ids)}"
        lines += [f'[sub_resource type="AtlasTexture" id="{ids[frame.name]}"]']
        lines += ['atlas = ExtResource("1_sheet")']
        lines += [f"region = Rect2({frame.x}, {frame.y}, {frame.w}, {frame.h})"]
        if frame.trimmed:
            width, height = frame.source_size
            x, y = frame.offset
            lines += [f"margin = Rect2({x}, {y}, {width - frame.w}, {height - frame.h})"]
        lines.append("")
    animations = []
    for tag, group in groups:
        textures = ", ".join(
            f'{{\n"duration": 1.0,\n"texture": SubResource("{ids[frame.name]}")\n}}'
            for frame in group
        )
        animations.append(
            f'{{\n"frames": [{textures}],\n"loop": {"false" if tag in once else "true"},\n'
            f'"name": &{_string(tag)},\n'
            f'"speed": {float(fps)!r}\n}}'
        )
    lines += ["[resource]", f"animations = [{', '.join(animations)}]", ""]
    return "\n".join(lines).encode()


#: the head of the resource `godot_tres` writes, as no editor saves one: no `uid` in
#: either tag (Godot 4 gives every resource it saves one) and the sheet's id "1_sheet"
_GODOT_HEAD = re.compile(
    rb'\[gd_resource type="SpriteFrames" load_steps=[0-9]+ format=3\]\n\n'
    rb'\[ext_resource type="Texture2D" path="(?:[^"\\\n]|\\.)*" id="1_sheet"\]\n'
)


def is_godot_export(data: bytes) -> bool:
    """Whether `data` begins as `godot_tres` writes a resource: any SpriteFrames that
    the Godot editor saved begins `[gd_resource type="SpriteFrames"` too, and is
    someone's work."""
    return _GODOT_HEAD.match(data) is not None


def _string(text: str) -> str:
    """A Godot string literal: quotes and backslashes escaped, no control characters."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else " " for c in escaped) + '"'
