"""An edit parsed and resolved chunk by chunk gives exactly what the whole path gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nebula_build.core.chunks import cut, parse_rest, parsed, reparse
from nebula_build.core.incremental import Edit, resolve_edit, taker_index
from nebula_build.core.manifest import parse
from nebula_build.core.resolve import Resolved, resolve
from nebula_build.errors import ManifestError, NebulaBuildError
from nebula_build.plugin.manager import load_registry

PATH = Path("/project/images.toml")
REGISTRY = load_registry()

HEADER = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = {width}
height = 64
{style_default}
[styles.soft]
prompt_suffix = "{suffix}"
"""


def _image(name: str, fields: dict[str, object]) -> str:
    """An image's table; a table value is written as its sub-table, after it."""
    plain = {key: value for key, value in fields.items() if not isinstance(value, dict)}
    body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in plain.items())
    for key, table in fields.items():
        if isinstance(table, dict):
            rows = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
            body += f"\n[images.{name}.{key}]\n{rows}"
    return f"\n[images.{name}]\n{body}"


def render(state: dict[str, object]) -> str:
    header = HEADER.format(
        width=state["width"],
        suffix=state["suffix"],
        style_default='style = "soft"\n' if state["styled"] else "",
    )
    images = state["images"]
    assert isinstance(images, dict)
    return header + "".join(_image(name, fields) for name, fields in images.items())


def _full(text: str) -> tuple[object, Resolved | str]:
    try:
        manifest = parse(text, PATH, "images.toml")
    except ManifestError as exc:
        return None, str(exc)
    try:
        return manifest.model, resolve(manifest, REGISTRY, _digest)
    except NebulaBuildError as exc:
        return manifest.model, str(exc)


def _digest(path: str) -> str | None:
    """The one input file there is: a chain's mask (which an image may write over)."""
    return "0" * 64 if path == "mask.png" else None


names = st.sampled_from([f"img-{n}" for n in range(8)])
prompts = st.sampled_from(["a fox", "a cat", "a {broken", "", "a boat"])
outputs = st.sampled_from(
    [f"out/{n}.png" for n in range(6)]
    + ["out/x.bmp", "../out.png", "out/1.png/2.png", "out/1.png/x/3.png", "mask.png"]
    + ["OUT/1.PNG", "Out/1.png/4.png", "Mask.png"]  # the same files, on macOS and Windows
)
edits = st.one_of(
    st.tuples(st.just("prompt"), names, prompts),
    st.tuples(st.just("output"), names, outputs),
    st.tuples(st.just("seed"), names, st.integers(-1, 5)),
    st.tuples(st.just("chain"), names, names),
    st.tuples(st.just("add"), names, outputs),
    st.tuples(st.just("remove"), names, st.none()),
    st.tuples(st.just("rename"), names, names),
    st.tuples(st.just("matrix"), names, st.none()),
    st.tuples(st.just("width"), st.none(), st.sampled_from([64, 128, 100])),
    st.tuples(st.just("suffix"), st.none(), st.sampled_from(["soft", "hard"])),
    st.tuples(st.just("styled"), st.none(), st.booleans()),
    st.tuples(st.just("typo"), names, st.none()),
)


def apply_edit(state: dict[str, object], edit: tuple[str, object, object]) -> None:
    kind, name, value = edit
    images = state["images"]
    assert isinstance(images, dict)
    if kind in ("width", "suffix", "styled"):
        state[kind] = value
    elif kind == "add":
        images.setdefault(name, {"prompt": f"new {name}", "output": value})
    elif kind == "remove":
        images.pop(name, None)
    elif kind == "rename" and name in images and value not in images:
        state["images"] = {value if n == name else n: f for n, f in images.items()}
    elif name in images:
        fields = images[name]
        if kind == "chain":
            fields.update(model="black-forest-labs/FLUX.1-Fill-dev", image=f"@{value}")
            fields["mask"] = "mask.png"
        elif kind == "matrix":
            fields["matrix"] = {"colour": ["red", "blue"]}
            fields["output"] = f"out/{name}-{{colour}}.png"
        elif kind == "typo":
            fields["promt"] = "oops"
        else:
            fields[kind] = value


def start() -> dict[str, object]:
    images = {
        f"img-{n}": {"prompt": f"thing {n}", "seed": n, "output": f"out/{n}.png"} for n in range(4)
    }
    return {"width": 64, "suffix": "soft", "styled": False, "images": images}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edits, min_size=1, max_size=8))
@example([("output", "img-0", "mask.png"), ("chain", "img-1", "img-2")])
@example([("chain", "img-1", "img-2"), ("output", "img-0", "mask.png")])
@example([("output", "img-0", "out/1.png/x/3.png")])
@example([("output", "img-0", "OUT/1.PNG")])
@example([("output", "img-0", "Out/1.png/4.png")])
@example([("chain", "img-1", "img-2"), ("output", "img-0", "Mask.png")])
def test_incremental_parse_and_resolve_equal_the_whole_path(sequence):
    state = start()
    text = render(state)
    model, resolved = _full(text)
    assert isinstance(resolved, Resolved)
    last = parsed(parse(text, PATH, "images.toml"))
    last_resolved, owners, takers = resolved, None, None
    for edit in sequence:
        apply_edit(state, edit)
        text = render(state)
        model, whole = _full(text)
        again = reparse(last, text, PATH, "images.toml")
        if again is None:  # the whole path: start again from it, as prepare does
            if isinstance(whole, Resolved):
                last, last_resolved, owners, takers = (
                    parsed(parse(text, PATH, "images.toml")),
                    whole,
                    None,
                    None,
                )
            continue
        assert again.parsed.manifest.model == model
        change = Edit(again.changed, again.added, again.removed)
        rebuilt = _resolve_edit(last, last_resolved, again, owners=owners, takers=takers)
        if rebuilt is None:
            if isinstance(whole, Resolved):
                last, last_resolved, owners, takers = again.parsed, whole, None, None
            continue
        assert isinstance(whole, Resolved), whole  # a problem is never resolved alone
        assert rebuilt.resolved == whole
        assert list(rebuilt.resolved.specs) == list(whole.specs)
        assert rebuilt.owners == {p: n for n, s in whole.specs.items() for p in s.paths}
        assert rebuilt.takers == taker_index(whole.specs)
        assert set(rebuilt.resolved_again) <= {*change.changed, *change.added} | {
            n for n, s in whole.specs.items() if set(s.depends_on) & set(rebuilt.resolved_again)
        }
        last, last_resolved = again.parsed, rebuilt.resolved
        owners, takers = rebuilt.owners, rebuilt.takers


@pytest.mark.parametrize(
    ("first", "second"),
    [("out/new.png", "out/NEW.png"), ("out/caf\u00e9.png", "out/cafe\u0301.png")],
    ids=["case", "unicode-form"],
)
def test_two_new_files_that_are_one_file_on_macos_take_the_whole_path(first, second):
    """One edit that gives two images new paths that differ only in case (or in how an
    accent is encoded): each is new, so neither clashed with the files before."""
    state = start()
    text = render(state)
    _, resolved = _full(text)
    assert isinstance(resolved, Resolved)
    last = parsed(parse(text, PATH, "images.toml"))
    images = state["images"]
    assert isinstance(images, dict)
    images["img-0"]["output"], images["img-1"]["output"] = first, second
    text = render(state)
    _, whole = _full(text)
    assert isinstance(whole, str) and "are one file on macOS and Windows" in whole, whole
    again = reparse(last, text, PATH, "images.toml")
    assert again is not None
    assert _resolve_edit(last, resolved, again) is None


def _resolve_edit(last, resolved, again, **known):
    """`resolve_edit` of what `reparse` found changed since `last` (resolved as
    `resolved`); `known`: the owners and takers of the edit before."""
    change = Edit(again.changed, again.added, again.removed)
    return resolve_edit(
        resolved,
        last.manifest.model.images,
        again.parsed.manifest,
        change,
        registry=REGISTRY,
        digest_of=_digest,
        **known,
    )


def _manifest(count: int) -> str:
    state = start()
    state["images"] = {
        f"img-{n}": {"prompt": f"thing {n}", "output": f"out/{n}.png"} for n in range(count)
    }
    return render(state)


def test_one_prompt_edit_resolves_one_image_among_many(monkeypatch):
    from nebula_build.core import resolve as resolve_module

    text = _manifest(3000)
    manifest = parse(text, PATH, "images.toml")
    whole = resolve(manifest, REGISTRY, lambda path: None)
    edited = text.replace('prompt = "thing 1500"', 'prompt = "thing 1500, at dusk"')
    again = reparse(parsed(manifest), edited, PATH, "images.toml")
    assert again is not None and again.changed == {"img-1500"}
    calls: list[str] = []
    original = resolve_module._Resolver.resolve

    def counting(self, name, decl):
        calls.append(name)
        return original(self, name, decl)

    monkeypatch.setattr(resolve_module._Resolver, "resolve", counting)
    change = Edit(again.changed, again.added, again.removed)
    rebuilt = resolve_edit(
        whole,
        manifest.model.images,
        again.parsed.manifest,
        change,
        registry=REGISTRY,
        digest_of=lambda p: None,
    )
    assert rebuilt is not None and calls == ["img-1500"]
    assert rebuilt.resolved.specs["img-1500"].prompt == "thing 1500, at dusk"
    unchanged = [n for n in whole.specs if n != "img-1500"]
    assert all(rebuilt.resolved.specs[n] is whole.specs[n] for n in unchanged)
    monkeypatch.undo()
    assert rebuilt.resolved == resolve(parse(edited, PATH, "images.toml"), REGISTRY, lambda p: None)


@pytest.mark.parametrize(
    "text",
    [
        'version = 1\n[images.a]\nprompt = """two\n[images.b]\nlines"""\noutput = "a.png"\n',
        'version = 1\n[[images.a.checks]]\nx = 1\n[images.b]\nprompt = "b"\n',
        'version = 1\nimages.a.prompt = "dotted"\n[images.b]\nprompt = "b"\n',
        'version = 1\n[images]\n[images.b]\nprompt = "b"\n',
        "version = 1\n[images.a]\nx = [\n  [1],\n]\n",
        'version = 1\n  [images.a]\nprompt = "indented"\n',
        'version = 1\n[images."a"]\nprompt = "quoted"\n',
        'version = 1\n[images.a]\nprompt = "a"\n[defaults]\n[images.a.checks]\nx = 1\n',
    ],
)
def test_a_text_that_cannot_be_cut_safely_is_parsed_whole(text):
    found = cut(text)
    assert found is None or parse_rest(found.rest) is None


def test_an_edit_outside_the_image_tables_or_a_broken_chunk_takes_the_whole_path():
    text = _manifest(3)
    last = parsed(parse(text, PATH, "images.toml"))
    assert last.cut is not None
    assert reparse(last, text.replace("width = 64", "width = 128"), PATH, "x") is None
    broken = text.replace('prompt = "thing 1"', 'prompt = "thing 1')
    assert reparse(last, broken, PATH, "images.toml") is None
    with pytest.raises(ManifestError, match="invalid TOML"):
        parse(broken, PATH, "images.toml")
    assert reparse(last, text.replace('prompt = "thing 1"', "promt = 1"), PATH, "x") is None
    # an integer Python does not read (watch's round reparses an edited chunk)
    huge = text.replace('prompt = "thing 1"', f'prompt = "thing 1"\nseed = {"1" * 5000}')
    assert reparse(last, huge, PATH, "images.toml") is None
    with pytest.raises(ManifestError, match="an integer may be at most 300 digits long"):
        parse(huge, PATH, "images.toml")
