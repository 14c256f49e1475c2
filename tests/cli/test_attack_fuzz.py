"""Tests that attack (issue 11): random and mutated manifests, locks and journals,
thrown at `validate`, `plan` and `apply` through the CLI, in process.

Every example runs in a fresh project copied from one valid, applied project (the
offline `preview` backend), beside a sibling `outside/` folder with canaries that
the crafted files point at (absolute paths, `..`, a link to the folder, a link to a
file, lock entries carrying the canaries' real digests). For every example:

- `main` never raises and never prints a traceback;
- the exit code is 0, 1 or 2;
- nothing outside the project changes: `outside/` is byte-for-byte, mode and mtime
  the same, and nothing new appears beside the project.

A failing example is shrunk by hypothesis; `derandomize=True` keeps CI stable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nebula_build.cli import main
from tests.cli.test_fuzz import KEYS
from tests.manifests import PREVIEW

# --- the valid project every example starts from -------------------------------------

BASE_MANIFEST = (
    PREVIEW
    + """
[assets]
manifest = "static/images.json"

[images.hero]
prompt = "a lighthouse at dusk"
seed = 1
output = "out/hero.png"
widths = [16, 32]
alt = "a lighthouse"

[images.enemy]
prompt = "a {kind} monster"
matrix = { kind = ["slime", "bat"] }
seed = "{index} + 100"
resize = [32, 32]
output = "out/{kind}.png"

[images.logo]
prompt = "a fox logo"
seed = 7
output = "out/logo.webp"
quality = 80

[atlases.sheet]
images = ["enemy[*]", "logo"]
output = "out/sheet.png"
frames = "out/sheet.json"
padding = 1
"""
)

#: replaced, in every file an example writes, by the absolute path of `outside/`
OUT = "@@OUT@@"
CANARY_TEXT = b"precious: nothing may write, move or delete me\n"
CANARY_SHA = hashlib.sha256(CANARY_TEXT).hexdigest()
#: how long one command of one example may take before the example fails as a hang
EXAMPLE_COMMAND_LIMIT_S = 60

SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid project, applied once: outputs, lock, cache, files index."""
    root = tmp_path_factory.mktemp("attack-template") / "proj"
    root.mkdir()
    (root / "images.toml").write_text(BASE_MANIFEST, encoding="utf-8")
    code, out, err = _run(root, ["apply"])
    assert code == 0, out + err
    assert (root / "images.lock").is_file()
    return root


def _lock_doc(template: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads((template / "images.lock").read_text(encoding="utf-8"))


# --- running one example ------------------------------------------------------------


class _Hang(BaseException):
    """Raised in the main thread when one command runs past EXAMPLE_COMMAND_LIMIT_S."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang(f"a command ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(root: Path, argv: Sequence[str]) -> tuple[int, str, str]:
    """`main(argv)` with the cwd in `root`; any exception fails the example."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.chdir(root), _time_limit(EXAMPLE_COMMAND_LIMIT_S):
            code = main(list(argv), out=out, err=err)
    except BaseException as exc:  # a raise out of main is the finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        pytest.fail(
            f"`nebula-build {' '.join(argv)}` raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(exc))
            + f"\n--- stdout ---\n{out.getvalue()}\n--- stderr ---\n{err.getvalue()}",
            pytrace=False,
        )
    return code, out.getvalue(), err.getvalue()


def _snapshot(folder: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under `folder` that a write, move, chmod or delete would change."""
    seen: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                content: Any = path.read_bytes()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = None
            relative = str(path.relative_to(folder))
            seen[relative] = (stat.S_IFMT(info.st_mode), info.st_mode, info.st_mtime_ns, content)
    return seen


@contextlib.contextmanager
def _scene(template: Path, files: dict[str, bytes]) -> Iterator[Path]:
    """A fresh copy of the template project with `files` written over it, beside an
    `outside/` folder that must not change; yields the project root."""
    base = Path(tempfile.mkdtemp(prefix="nb-attack-"))
    try:
        root, outside = base / "proj", base / "outside"
        shutil.copytree(template, root, symlinks=True)
        outside.mkdir()
        (outside / "canary.txt").write_bytes(CANARY_TEXT)
        # same bytes as the project's outputs: a crafted entry with the real digest
        for name in ("hero.png", "logo.webp"):
            shutil.copy2(root / "out" / name, outside / name)
        (outside / "sub").mkdir()
        (outside / "sub" / "deep.txt").write_bytes(CANARY_TEXT)
        # links out of the project, for paths that only look inside it
        (root / "escape").symlink_to(outside, target_is_directory=True)
        (root / "out" / "canary-link.png").symlink_to(outside / "hero.png")
        (root / "out" / "canary-text.txt").symlink_to(outside / "canary.txt")
        for name, data in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.replace(OUT.encode(), str(outside).encode()))
        before = _snapshot(outside)
        yield root
        after = _snapshot(outside)
        changed = sorted(
            set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]}
        )
        assert not changed, f"outside the project, these changed: {changed}"
        assert sorted(p.name for p in base.iterdir()) == ["outside", "proj"], (
            f"something was written beside the project: {sorted(base.iterdir())}"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


COMMANDS: tuple[tuple[str, ...], ...] = (
    ("validate",),
    ("plan",),
    ("apply",),
    ("plan", "--detailed-exitcode"),
)


def _attack(template: Path, files: dict[str, bytes], commands=COMMANDS) -> None:
    with _scene(template, files) as root:
        for argv in commands:
            code, out, err = _run(root, argv)
            shown = f"`nebula-build {' '.join(argv)}` -> {code}\n{out}\n{err}"
            assert code in (0, 1, 2), shown
            assert "Traceback" not in err and "Traceback" not in out, shown
            event(f"{argv[0]} exit {code}")


# --- TOML, written by hand so that any value can be thrown -------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            parts.append("\\" + char)
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            parts.append(f"\\u{code:04x}")  # a surrogate escape is invalid TOML: also an attack
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def toml_key(key: str) -> str:
    return key if _BARE.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def toml_document(doc: dict[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: tuple[str, ...], data: dict[str, Any]) -> None:
        subtables = {k: v for k, v in data.items() if isinstance(v, dict)}
        for key, value in data.items():
            if key not in subtables:
                lines.append(f"{toml_key(key)} = {toml_value(value)}")
        for key, value in subtables.items():
            path = (*prefix, key)
            lines.append("")
            lines.append("[" + ".".join(toml_key(part) for part in path) + "]")
            table(path, value)

    table((), doc)
    return "\n".join(lines) + "\n"


# --- strategies ---------------------------------------------------------------------

#: paths that read as inside the project but go through a link out of it
LINKED_PATHS = [
    "escape/canary.txt",
    "escape/hero.png",
    "escape/logo.webp",
    "escape/new.png",
    "escape/sub/deep.txt",
    "escape/sub/x.png",
    "escape/new/x.png",
    "escape",
    "out/canary-link.png",
    "out/canary-text.txt",
    "out/canary-link.png/x.png",
]
NASTY_PATHS = [
    *LINKED_PATHS,
    "..",
    "../outside/canary.txt",
    "../outside/hero.png",
    "../outside/new.png",
    "out/../../outside/canary.txt",
    "out/../../outside/new.png",
    f"{OUT}/canary.txt",
    f"{OUT}/hero.png",
    f"{OUT}/new.png",
    f"{OUT}/sub/deep.txt",
    f"{OUT}",
    "images.toml",
    "IMAGES.TOML",
    "images.lock",
    ".nebula-build/journal",
    ".nebula-build/cache/x.png",
    ".nebula-build",
    ".git/config",
    "",
    ".",
    "/",
    "out/",
    "out//hero.png",
    "out/./hero.png",
    "out\\..\\..\\outside\\new.png",
    "~/new.png",
    "C:\\new.png",
    "\\\\server\\share\\new.png",
    "out/a.png\x00.txt",
    "out/\x1b[2Jx.png",
    "out/x\n.png",
    "out/x\x7f.png",
    "out/" + "x" * 5000 + ".png",
    "/".join(["d"] * 400) + "/x.png",
    "out/hero.png",
    "out/sheet.png",
    "static/images.json",
    "out/{kind}.png",
    "out/{kind:>999999999}.png",
    "out/{0.__class__}.png",
    "out/%s%n.png",
    "out/\ufb01.png",
    "out/e\u0301.png",
    "out/\u00e9.png",
    "out/x.gif",
    "out/x",
]
NASTY_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2,
    63,
    64,
    2048,
    2049,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    10**40,
    -(10**40),
    0.0,
    -0.0,
    0.5,
    1e308,
    -1e308,
    5e-324,
    math.inf,
    -math.inf,
    math.nan,
]
NASTY_OTHER: list[Any] = [
    True,
    False,
    dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.UTC),
    dt.datetime(1979, 5, 27, 7, 32),
    dt.date(1979, 5, 27),
    dt.time(7, 32),
    [],
    {},
    [[]],
    [1, "a", True],
    {"kind": ["a", "b"]},
    {"": 1},
    "",
    " ",
    "preview",
    "black-forest-labs/FLUX.1-Fill-dev",
    "@hero",
    "@nope",
    "@@",
    "{index}",
    "{index} + 1",
    "{index} ** 99999",
    "9" * 400,
    "x" * 100_001,
    "\x00",
    "\x1b]0;owned\x07",
    "\ud800",
    "enemy[*]",
    "enemy[",
    "*",
]
NASTY_KEYS = [
    *KEYS,  # every image key, and then the ones a manifest or lock has elsewhere
    "images",
    "frames",
    "padding",
    "manifest",
    "max_images",
    "version",
    "defaults",
    "styles",
    "assets",
    "atlases",
    "backends",
    "prompt_prefix",
    "prompt_suffix",
    "digest",
    "generation_key",
    "output_key",
    "params",
    "variants",
    "",
    "..",
    "a\x00b",
    "\u202e",
    "k" * 300,
]

#: half of the paths go through a link: only those get past the checks on the text
path_values = st.sampled_from(LINKED_PATHS) | st.sampled_from(NASTY_PATHS)
text_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24
) | st.sampled_from(NASTY_PATHS)


def _deep(kind: str, depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "array" else {"a": value}
    return value


deep_values = st.builds(_deep, st.sampled_from(["array", "table"]), st.integers(15, 400))
scalar_values = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(NASTY_OTHER),
    st.integers(),
    st.floats(),
    text_values,
)
nasty_values = st.one_of(
    scalar_values,
    deep_values,
    st.recursive(
        scalar_values,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(NASTY_KEYS) | st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=8,
    ),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a parsed document: table keys and array indexes."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


# one structural edit: (which place, what to do, a key, a value)
tree_edits = st.tuples(
    st.integers(0, 10_000),
    st.sampled_from(["replace", "replace", "delete", "add", "wrap"]),
    st.sampled_from(NASTY_KEYS) | st.text(max_size=8),
    nasty_values,
)


def apply_tree_edits(doc: Any, edits: Sequence[tuple[int, str, str, Any]]) -> Any:
    """Mutate a parsed document (a deep copy is edited): swap a value for another of any
    type, delete a key, add a key, wrap a value in an array."""
    import copy

    doc = copy.deepcopy(doc)
    for where, what, key, value in edits:
        places = _paths(doc)
        path = places[where % len(places)]
        if not path:
            if what == "add" and isinstance(doc, dict):
                doc[key] = value
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if what == "replace":
            parent[last] = value
        elif what == "delete":
            del parent[last]
        elif what == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent[last], dict):
            parent[last][key] = value
        elif isinstance(parent[last], list):
            parent[last].append(value)
        else:
            parent[last] = value
    return doc


TOKENS = [
    b"..",
    b"../",
    b"/",
    b"\\",
    OUT.encode(),
    b"../outside/canary.txt",
    b"escape/",
    b"\x00",
    b"\x01",
    b"\x1b[2J",
    b"\x7f",
    b"\r",
    b"\n",
    b"\r\n",
    b"\t",
    b"\xff",
    b"\xfe\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b'"',
    b"'",
    b'"""',
    b"'''",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b",",
    b".",
    b"#",
    b"\\u0000",
    b"\\U0010ffff",
    b"\\ud800",
    b"99999999999999999999999999999999",
    b"-9223372036854775809",
    b"1e309",
    b"-1",
    b"0x7fffffffffffffff",
    b"inf",
    b"nan",
    b"NaN",
    b"Infinity",
    b"true",
    b"null",
    b"1979-05-27T07:32:00Z",
    b"[" * 300,
    b"]" * 300,
    b"{ a = " * 50,
    b'{"a": ' * 200,
    b"[images.x]\n",
    b"[images.hero]\n",
    b'output = "../outside/new.png"\n',
    b"version = 2\n",
]

byte_edits = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 1 << 20),
        st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8),
    ),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 32)),
    st.tuples(
        st.just("replace"),
        st.integers(0, 1 << 20),
        st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8),
    ),
    st.tuples(st.just("duplicate-line"), st.integers(0, 1 << 20), st.just(b"")),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(b"")),
)


def apply_byte_edits(data: bytes, edits: Sequence[tuple[str, int, Any]]) -> bytes:
    for what, where, arg in edits:
        at = where % (len(data) + 1)
        if what == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (1 << arg)]) + data[at + 1 :]
        elif what == "insert":
            data = data[:at] + arg + data[at:]
        elif what == "delete":
            data = data[:at] + data[at + arg :]
        elif what == "replace":
            data = data[:at] + arg + data[at + len(arg) :]
        elif what == "duplicate-line":
            lines = data.splitlines(keepends=True)
            if lines:
                index = where % len(lines)
                lines.insert(index, lines[index])
                data = b"".join(lines)
        elif what == "truncate":
            data = data[:at]
    return data


def mutated_toml(
    doc: dict[str, Any],
) -> st.SearchStrategy[bytes]:
    """A valid document, edited structurally, written out, then (sometimes) edited as
    bytes: most byte edits break the syntax, so they are kept to a share of examples."""

    def render(tree: list[Any], raw: list[Any]) -> bytes:
        text = toml_document(apply_tree_edits(doc, tree))
        return apply_byte_edits(text.encode("utf-8", "surrogatepass"), raw)

    raw_edits = st.lists(byte_edits, min_size=1, max_size=3)
    return st.builds(
        render,
        st.lists(tree_edits, min_size=1, max_size=4),
        st.booleans().flatmap(lambda bytes_too: raw_edits if bytes_too else st.just([])),
    )


NASTY_PATTERNS = [
    "../{stem}-{width}{ext}",
    "../../outside/{stem}-{width}{ext}",
    f"{OUT}/{{stem}}-{{width}}{{ext}}",
    "escape/{stem}-{width}{ext}",
    "{stem}{ext}",
    "{stem}",
    "canary-link{ext}",
    "../images.toml",
    "../../images.lock",
    "../.nebula-build/{stem}{ext}",
    "{stem}-{width}/../../../outside/x{ext}",
    "{width}",
    "{stem}-{width:>9999}{ext}",
]
#: where the base manifest names a file it writes: (path into the document, what goes there)
PATH_FIELDS: list[tuple[tuple[str, ...], list[str]]] = [
    (("images", "hero", "output"), NASTY_PATHS),
    (("images", "enemy", "output"), [*NASTY_PATHS, "escape/{kind}.png", "../{kind}.png"]),
    (("images", "logo", "output"), NASTY_PATHS),
    (("images", "hero", "variant_pattern"), NASTY_PATTERNS),
    (("images", "logo", "widths"), [[16], [16, 32]]),
    (("images", "logo", "variant_pattern"), NASTY_PATTERNS),
    (("atlases", "sheet", "output"), NASTY_PATHS),
    (("atlases", "sheet", "frames"), NASTY_PATHS),
    (("assets", "manifest"), NASTY_PATHS),
    (("images", "ghost", "output"), NASTY_PATHS),
]


def aimed_manifest() -> st.SearchStrategy[bytes]:
    """A valid manifest whose written files are aimed outside, at links, at the tool's
    own files and at each other: the structure stays valid, so these reach `apply`."""
    choice = st.integers(0, len(PATH_FIELDS) - 1).flatmap(
        lambda i: st.tuples(
            st.just(PATH_FIELDS[i][0]),
            st.sampled_from(PATH_FIELDS[i][1])
            | (path_values if PATH_FIELDS[i][1] is NASTY_PATHS else st.nothing()),
        )
    )

    def render(edits: list[tuple[tuple[str, ...], Any]]) -> bytes:
        doc = _base_doc()
        for path, value in edits:
            table = doc
            for part in path[:-1]:
                table = table.setdefault(part, {"prompt": "a ghost"})
            table[path[-1]] = value
        return toml_document(doc).encode("utf-8", "surrogatepass")

    return st.builds(render, st.lists(choice, min_size=1, max_size=3))


# --- lock and journal attacks -------------------------------------------------------

DIGESTS = st.sampled_from([CANARY_SHA, "0" * 64, "ab" * 32, "AB" * 32, "g" * 64, "", "ab" * 33])


def crafted_entries(template: Path) -> st.SearchStrategy[dict[str, Any]]:
    """A lock entry aimed at the outside folder, with the real digest of what it names."""
    doc = _lock_doc(template)
    valid = list(doc["images"].values())
    real = {
        "hero.png": _sha(template / "out/hero.png"),
        "logo.webp": _sha(template / "out/logo.webp"),
    }

    def digest_for(path: str) -> str:
        for name, digest in real.items():
            if path.endswith((name, "canary-link.png")):
                return digest
        return CANARY_SHA

    def build(
        base: int, output: str, variant: str | None, keep_keys: bool, digest: str | None
    ) -> dict[str, Any]:
        entry = dict(valid[base % len(valid)])
        entry["output"] = output
        entry["digest"] = digest or digest_for(output)
        if variant is not None:
            entry["variants"] = {variant: digest_for(variant)}
        if not keep_keys:
            entry["generation_key"] = entry["output_key"] = "cd" * 32
        return entry

    return st.builds(
        build,
        st.integers(0, 100),
        path_values,
        st.none() | path_values,
        st.booleans(),
        st.none() | DIGESTS,
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crafted_locks(template: Path) -> st.SearchStrategy[dict[str, Any]]:
    """The valid lock with one to three entries aimed outside (new names: the plan
    deletes them; the manifest's names: it moves or replaces them)."""
    doc = _lock_doc(template)
    names = [*doc["images"], "ghost", "ghost2", "gh\x00st", "ghost\u202e", "x" * 300]

    def craft(pairs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        crafted = json.loads(json.dumps(doc))
        for name, entry in pairs:
            crafted["images"][name] = entry
        return crafted

    pairs = st.tuples(st.sampled_from(names), crafted_entries(template))
    return st.builds(craft, st.lists(pairs, min_size=1, max_size=3))


def _toml_bytes(doc: dict[str, Any]) -> bytes:
    return toml_document(doc).encode("utf-8", "surrogatepass")


def lock_attacks(template: Path) -> st.SearchStrategy[bytes]:
    """Anything a pull request could put in images.lock."""
    return st.one_of(
        crafted_locks(template).map(_toml_bytes),
        crafted_locks(template).flatmap(mutated_toml),
        mutated_toml(_lock_doc(template)),
        st.binary(max_size=200),
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(NASTY_NUMBERS)
    | text_values,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(NASTY_KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def journal_lines(template: Path, *, crafted_only: bool = False) -> st.SearchStrategy[bytes]:
    """One line of a journal: a valid or crafted operation, an edited one, or junk."""
    doc = _lock_doc(template)
    names = list(doc["images"])
    entries = st.sampled_from([doc["images"][n] for n in names])
    any_name = st.sampled_from([*names, "ghost", "", "\x00", "x" * 5000]) | st.text(max_size=8)

    def line(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"

    valid_set = st.builds(lambda n, e: {"op": "set", "image": n, "entry": e}, any_name, entries)
    crafted_set = st.builds(
        lambda n, e: {"op": "set", "image": n, "entry": e}, any_name, crafted_entries(template)
    )
    edited_set = st.builds(
        apply_tree_edits,
        valid_set,
        st.lists(
            st.tuples(
                st.integers(0, 10_000),
                st.sampled_from(["replace", "delete", "add", "wrap"]),
                st.sampled_from(NASTY_KEYS),
                json_values,
            ),
            min_size=1,
            max_size=3,
        ),
    )
    delete = st.builds(lambda n: {"op": "delete", "image": n}, any_name)
    if crafted_only:
        return (crafted_set | crafted_set | valid_set | delete).map(line)
    odd_op = st.builds(
        lambda op, n, e: {"op": op, "image": n, "entry": e},
        json_values,
        json_values | any_name,
        json_values,
    )
    return st.one_of(
        (valid_set | crafted_set | edited_set | delete | odd_op).map(line),
        st.builds(apply_byte_edits, valid_set.map(line), st.lists(byte_edits, max_size=3)),
        st.sampled_from(
            [
                b"[" * 100_000 + b"\n",
                b'{"op": "set", "image": "hero", "entry": ' + b"[" * 5000 + b"\n",
                b'{"op": "set", "image": "hero", "entry": {"params": {"x": NaN}}}\n',
                b'{"op": "set", "image": "hero", "entry": 1e99999}\n',
                b'{"op": "delete", "image": "hero"}',
                b"\xff\xfe\x00\n",
                b"\n\n\n",
                b"null\n",
                b'{"op": "set", "image": "hero"}\n',
                b'{"op": "set", "image": "hero", "entry": null}\n',
                b'{"op": "set", "image": 1, "entry": {}}\n',
                b'{"op": "set", "op": "delete", "image": "hero"}\n',
            ]
        ),
        st.binary(max_size=64),
    )


# --- the properties -----------------------------------------------------------------


def _base_doc() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(BASE_MANIFEST)


@settings(max_examples=50, **SETTINGS)
@given(manifest=aimed_manifest())
def test_a_manifest_aiming_its_files_outside_never_writes_there(template, manifest):
    _attack(template, {"images.toml": manifest})


@pytest.mark.slow
@settings(max_examples=80, **SETTINGS)
@given(data=st.data())
def test_a_mutated_manifest_gets_an_answer_never_a_traceback(template, data):
    manifest = data.draw(mutated_toml(_base_doc()), label="images.toml")
    _attack(template, {"images.toml": manifest})


MANIFEST_SECTIONS = ["defaults", "images", "atlases", "assets", "styles", "backends"]
IMAGE_TABLES = st.dictionaries(
    st.sampled_from(["hero", "a", "preview", "sheet", "pixel"]) | st.text(max_size=4),
    st.dictionaries(st.sampled_from(NASTY_KEYS), nasty_values, max_size=6),
    max_size=3,
)


@pytest.mark.slow
@settings(max_examples=40, **SETTINGS)
@given(
    top=st.dictionaries(
        st.sampled_from([*MANIFEST_SECTIONS, "version", "max_images"]) | st.text(max_size=6),
        st.one_of(
            nasty_values,
            IMAGE_TABLES,
            st.dictionaries(st.sampled_from(NASTY_KEYS), nasty_values, max_size=6),
        ),
        max_size=6,
    ),
    version=st.sampled_from([1, 1, 1, 0, 2, "1", None]),
)
def test_a_random_manifest_gets_an_answer_never_a_traceback(template, top, version):
    doc = dict(top)
    if version is not None:
        doc["version"] = version
    _attack(template, {"images.toml": _toml_bytes(doc)})


@settings(max_examples=50, **SETTINGS)
@given(data=st.data())
def test_a_crafted_lock_never_touches_a_file_outside_the_project(template, data):
    lock = data.draw(crafted_locks(template).map(_toml_bytes), label="images.lock")
    _attack(template, {"images.lock": lock}, commands=COMMANDS[1:])


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_a_mutated_lock_gets_an_answer_never_a_traceback(template, data):
    lock = data.draw(lock_attacks(template), label="images.lock")
    _attack(template, {"images.lock": lock}, commands=COMMANDS[1:])


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_a_crafted_journal_never_touches_a_file_outside_the_project(template, data):
    lines = st.lists(journal_lines(template, crafted_only=True), min_size=1, max_size=4)
    journal = b"".join(data.draw(lines, label="journal"))
    _attack(template, {".nebula-build/journal": journal}, commands=COMMANDS[1:])


@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_a_mutated_journal_gets_an_answer_never_a_traceback(template, data):
    lines = data.draw(st.lists(journal_lines(template), min_size=1, max_size=4), label="journal")
    _attack(template, {".nebula-build/journal": b"".join(lines)}, commands=COMMANDS[1:])


@pytest.mark.slow
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_all_three_attacked_at_once(template, data):
    manifest = aimed_manifest() | mutated_toml(_base_doc())
    files = {
        "images.toml": data.draw(manifest, label="images.toml"),
        "images.lock": data.draw(lock_attacks(template), label="images.lock"),
        ".nebula-build/journal": b"".join(
            data.draw(st.lists(journal_lines(template), max_size=3), label="journal")
        ),
    }
    _attack(template, files)


@settings(max_examples=30, **SETTINGS)
@given(
    manifest=st.binary(max_size=300),
    lock=st.none() | st.binary(max_size=300),
    journal=st.none() | st.binary(max_size=300),
)
def test_random_bytes_everywhere(template, manifest, lock, journal):
    files = {"images.toml": manifest}
    if lock is not None:
        files["images.lock"] = lock
    if journal is not None:
        files[".nebula-build/journal"] = journal
    _attack(template, files)
