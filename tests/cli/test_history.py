"""History, pins and more draws, through the CLI and the loopback Nebula API: every
image keeps its earlier generations in the lock, `history` lists them, `pick NAME @K`
brings one back for free (refused where the manifest now declares another spec,
unless --pin), and `apply --more` adds a draw without losing the others."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import tomllib

import pytest
from PIL import Image

from nebula_build.state.lockfile import MAX_HISTORY
from tests.cli.test_rows_matrix import preview
from tests.conftest import nebula_manifest
from tests.live.pagedata import card as card_of

HERO = {"prompt": "a red lighthouse", "output": "hero.png", "seed": 7}


def _lock(root):
    return tomllib.loads((root / "images.lock").read_text())["images"]


def _edit(root, old, new):
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace(old, new))


def _cached(root, key):
    return (root / ".nebula-build/cache" / key[:2] / key).read_bytes()


def test_history_lists_earlier_generations_and_pick_brings_one_back(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    red = (root / "hero.png").read_bytes()
    red_key = _lock(root)["hero"]["generation_key"]
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    blue = (root / "hero.png").read_bytes()
    entry = _lock(root)["hero"]
    assert [h["generation_key"] for h in entry["history"]] == [red_key]
    assert entry["history"][0]["params"]["prompt"] == "a red lighthouse"
    assert entry["history"][0]["digest"] == hashlib.sha256(red).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["history"][0]["made"])

    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    assert "hero (hero.png): 1 earlier generation, the last one replaced first" in out
    assert re.search(
        r"@1 +made \d{4}-\d\d-\d\d \d\d:\d\d UTC  " + hashlib.sha256(red).hexdigest()[:12], out
    )
    assert "prompt: a [-red-] {+blue+} lighthouse" in out
    data = json.loads(run_cli("history", "hero", "--json").out)
    assert [g["index"] for g in data["generations"]] == [0, 1]
    assert data["generations"][1]["changes"] == {
        "prompt": {"then": "a red lighthouse", "now": "a blue lighthouse"}
    }

    # the manifest decides the spec: an earlier one made from another is refused...
    nebula_server.reset_counters()
    code, _, err = run_cli("pick", "hero", "@1")
    assert code == 1 and err.count("\n") == 1
    assert "images.hero @1 was made from another spec (prompt differ" in err
    assert "--pin" in err and (root / "hero.png").read_bytes() == blue
    # ...unless pinned: the output comes back from the cache, byte for byte
    code, out, err = run_cli("pick", "hero", "@1", "--pin")
    assert code == 0, err
    assert "its earlier generation @1 is the output, pinned" in out
    assert (root / "hero.png").read_bytes() == red
    assert nebula_server.requests == []
    entry = _lock(root)["hero"]
    assert entry["generation_key"] == red_key and "pinned_against" in entry
    assert entry["history"][0]["params"]["prompt"] == "a blue lighthouse"
    # plan shows the pin, and it holds
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0 and "= hero  pinned to an earlier generation (prompt differs" in out
    assert "--unpin" in out
    assert run_cli("apply").code == 0 and nebula_server.requests == []
    assert (root / "hero.png").read_bytes() == red
    # --unpin: the manifest decides again, for free
    code, out, err = run_cli("pick", "hero", "--unpin")
    assert code == 0, err
    assert (root / "hero.png").read_bytes() == blue
    assert "pinned" not in run_cli("plan").out and nebula_server.requests == []


def test_an_edit_to_the_manifest_ends_a_pin(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    _edit(root, "a blue lighthouse", "a green lighthouse")
    code, out, _ = run_cli("plan")
    assert "the pin to an earlier generation is released" in out
    assert run_cli("apply").code == 0
    entry = _lock(root)["hero"]
    assert entry["params"]["prompt"] == "a green lighthouse" and "pinned_against" not in entry


def test_an_edit_that_declares_the_pinned_spec_ends_the_pin_for_good(project, run_cli):
    """The manifest is edited to the pinned generation's prompt: the output stays, the
    pin ends. Editing back brings back the manifest's image, not the pin (it had)."""
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    blue = (root / "hero.png").read_bytes()
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    _edit(root, "a blue lighthouse", "a red lighthouse")
    code, out, _ = run_cli("plan")
    assert code == 0 and out.startswith("No changes"), out
    assert "= hero  the pin to an earlier generation is released: its spec changed" in out
    assert run_cli("apply").code == 0
    assert "pinned_against" not in _lock(root)["hero"]
    _edit(root, "a red lighthouse", "a blue lighthouse")
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "hero.png").read_bytes() == blue
    assert "pinned" not in run_cli("status").out


def test_a_pin_an_edit_ended_is_a_pending_change_to_the_lock(project, run_cli):
    """Only the lock changes (apply writes it without the pin): `plan
    --detailed-exitcode` exits 2 and says so in one line, as `--json` and `status` do."""
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    _edit(root, "a blue lighthouse", "a red lighthouse")
    code, out, err = run_cli("plan", "--detailed-exitcode")
    assert code == 2, err
    assert out.startswith("No changes to the images: 1 image up to date."), out
    assert "Lock: apply writes the lock without 1 pin (hero)." in out
    code, out, _ = run_cli("plan", "--json", "--detailed-exitcode")
    assert code == 2
    assert json.loads(out)["lock_changes"] == {
        "pins_released": ["hero"],
        "draws_recorded": [],
        "message": "apply writes the lock without 1 pin (hero)",
    }
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 2 and out.endswith("Lock: apply writes the lock without 1 pin (hero).\n"), out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "Lock: written without 1 pin (hero)." in out
    assert "pinned_against" not in _lock(root)["hero"]
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0 and out.startswith("No changes: 1 image up to date."), out
    assert json.loads(run_cli("plan", "--json").out)["lock_changes"] is None


def test_apply_of_one_target_leaves_another_images_ended_pin_to_its_own_plan(project, run_cli):
    """`apply --target logo` plans logo alone: hero's lock entry, which that plan does
    not show, is not rewritten either."""
    logo = {**HERO, "output": "logo.png", "prompt": "a green leaf"}
    root = project({"images.toml": preview({"hero": HERO, "logo": logo})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    _edit(root, "a blue lighthouse", "a red lighthouse")
    code, out, err = run_cli("apply", "--target", "logo")
    assert code == 0, err
    assert "hero" not in out
    assert "pinned_against" in _lock(root)["hero"]
    assert run_cli("apply").code == 0
    assert "pinned_against" not in _lock(root)["hero"]


def test_reverting_the_manifest_brings_an_earlier_generation_back_without_a_pin(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    red = (root / "hero.png").read_bytes()
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    _edit(root, "a blue lighthouse", "a red lighthouse")
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert nebula_server.requests == [] and (root / "hero.png").read_bytes() == red
    # the red one left the history (it is the output); the blue one joined it
    history = _lock(root)["hero"]["history"]
    assert [h["params"]["prompt"] for h in history] == ["a blue lighthouse"]
    assert "pinned_against" not in _lock(root)["hero"]


def test_history_is_bounded_and_gc_keeps_what_it_lists(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    for step in range(MAX_HISTORY + 2):
        _edit(root, f"seed = {7 + step}", f"seed = {8 + step}")
        assert run_cli("apply").code == 0
    history = _lock(root)["hero"]["history"]
    assert len(history) == MAX_HISTORY
    assert history[0]["params"]["seed"] == 7 + MAX_HISTORY + 1  # newest first
    code, out, _ = run_cli("gc")
    assert code == 0 and "removed 2 cache entries" in out  # the two beyond the bound
    assert f"kept {MAX_HISTORY} generations `pick @K` brings back" in out
    data = json.loads(run_cli("gc", "--json").out)
    assert data["history"]["generations"] == MAX_HISTORY and data["history"]["bytes"] > 0
    nebula_server.reset_counters()
    assert run_cli("pick", "hero", f"@{MAX_HISTORY}", "--pin").code == 0
    assert nebula_server.requests == []


def test_apply_more_adds_one_draw_and_keeps_the_others(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    first = (root / "hero.png").read_bytes()
    nebula_server.reset_counters()
    code, out, _ = run_cli("plan", "--more", "hero")
    assert "* hero#2  draw" in out and "Generations: 1 on nebula" in out
    code, _, err = run_cli("apply", "--more", "hero")
    assert code == 0, err
    assert len(nebula_server.generations) == 1
    assert (root / "hero.png").read_bytes() == first  # the output is still the pick
    draws = _lock(root)["hero"]["draws"]
    assert len(draws) == 3
    for draw in draws:  # each draw's key and the digest of its original, as cached
        assert hashlib.sha256(_cached(root, draw["key"])).hexdigest() == draw["digest"]
    assert run_cli("plan", "--detailed-exitcode").code == 0  # the third stays, unasked
    assert run_cli("pick", "hero", "2").code == 0
    assert len(nebula_server.generations) == 1
    assert (root / "hero.png").read_bytes() != first
    # one drawn image more works on an image without candidates too
    assert run_cli("apply", "--more", "hero", "--more", "hero").code == 0
    assert len(_lock(root)["hero"]["draws"]) == 4
    code, _, err = run_cli("apply", "--more", "nope")
    assert code == 1 and "--more: unknown image: nope" in err and err.count("\n") == 1


def test_picking_between_draws_keeps_them_out_of_the_history(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "1").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    assert "history" not in _lock(root)["hero"]
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    history = _lock(root)["hero"]["history"]
    assert len(history) == 1 and history[0]["params"]["draw"] == 2
    assert len(_lock(root)["hero"]["draws"]) == 3
    # the earlier pick differs from today's spec by its prompt only: its draw number
    # and derived seed are the same draw's of today's set
    code, _, err = run_cli("pick", "hero", "@1")
    assert code == 1
    assert "@1 was made from another spec (prompt differs from images.toml)" in err
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    out = run_cli("plan").out
    assert "pinned to an earlier generation (prompt differs from the manifest)" in out


@pytest.mark.parametrize(
    ("forged", "message"),
    [
        ('made = "yesterday"', "`made` must be a UTC time"),
        ('generation_key = "x"', "history: `generation_key` must be a sha256 digest"),
        ('params = "x"', "history: `params` must be a table of plain values"),
    ],
)
def test_a_forged_history_is_one_clear_line(project, run_cli, nebula_server, forged, message):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    field = forged.partition(" = ")[0]
    text = re.sub(
        rf"(\[\[images\.hero\.history\]\][^\[]*?)\n{field} = [^\n]*",
        rf"\1\n{forged}",
        lock.read_text(),
    )
    assert forged in text
    lock.write_text(text)
    for argv in (["plan"], ["history", "hero"], ["pick", "hero", "@1", "--pin"]):
        code, _, err = run_cli(*argv)
        assert code == 1 and message in err and err.count("\n") == 1, err


def test_pick_earlier_says_what_is_wrong_in_one_line(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    for argv, message in [
        (["pick", "hero", "@1"], "images.toml: pick: images.hero has no earlier generation yet"),
        (["pick", "hero", "@x"], "is neither a draw INDEX"),
        (["pick", "hero", "1", "--pin"], "--pin is for an earlier generation"),
        (["pick", "hero", "--unpin"], "images.toml: pick: images.hero is not pinned"),
        (["history", "nope"], "images.toml: unknown image: nope (known: hero)"),
    ]:
        code, _, err = run_cli(*argv)
        assert code == 1, argv
        assert message in err and err.count("\n") == 1, err


def test_a_pin_never_pays_for_the_generation_it_names(project, run_cli, nebula_server):
    """A lock from a pull request chooses a pin's parameters, not the manifest: with
    no cache holding that generation, the manifest's spec is made, never the pin's."""
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    shutil.rmtree(root / ".nebula-build")  # a checkout: the lock, no cache, no output
    (root / "hero.png").unlink()
    code, out, _ = run_cli("plan")
    assert "its pinned earlier generation is in no cache here: the pin is released" in out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert [r.body["prompt"] for r in nebula_server.generations] == ["a blue lighthouse"]
    assert "pinned_against" not in _lock(root)["hero"]


def test_the_gallery_says_an_image_is_pinned(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    page = root / ".nebula-build/gallery/index.html"
    assert "pinned" not in card_of(page.read_text(), "hero")["status_text"]
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    assert run_cli("gallery").code == 0
    assert "pinned to an earlier generation (pick --unpin hero)" in page.read_text()
    assert "hero  up to date (pinned)" in run_cli("status").out


def test_a_lock_claiming_many_draws_makes_a_checkout_pay_for_none_of_them(
    project, run_cli, nebula_server
):
    """The lock records the draws made, which stay pickable, but never decides what
    is paid for: only the draws the manifest asks for are ever generated."""
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    fake = "".join(
        f'  {{ key = "{hashlib.sha256(b"k%d" % i).hexdigest()}", '
        f'digest = "{hashlib.sha256(b"d%d" % i).hexdigest()}" }},\n'
        for i in range(62)
    )
    lock.write_text(lock.read_text().replace("\n]\n", "\n" + fake + "]\n", 1))
    assert len(_lock(root)["hero"]["draws"]) == 64
    shutil.rmtree(root / ".nebula-build")  # a checkout: no cache
    (root / "hero.png").unlink()
    code, out, _ = run_cli("plan")
    assert "Generations: 2 on nebula" in out, out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert len(nebula_server.generations) == 2


def _pinned_to_red(project, run_cli, **fields):
    """hero made red, then blue, then pinned back to red."""
    root = project({"images.toml": nebula_manifest({"hero": HERO | fields})})
    assert run_cli("apply").code == 0
    red = (root / "hero.png").read_bytes()
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    return root, red


def test_a_pin_whose_remote_entry_fails_its_check_is_never_generated(
    project, run_cli, nebula_server, tmp_path, monkeypatch
):
    """plan counts the pinned generation as a restore from the remote; when the remote's
    bytes then fail their check, apply fails the image rather than pay for parameters
    the lock chose."""
    root, _ = _pinned_to_red(project, run_cli)
    red_key = _lock(root)["hero"]["generation_key"]
    remote = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", remote.as_uri())
    assert run_cli("cache", "push").code == 0
    record = json.loads((remote / "v1/ac" / red_key[:2] / f"{red_key}.json").read_text())
    (remote / "v1/cas" / record["sha256"][:2] / record["sha256"]).write_bytes(b"garbage")
    shutil.rmtree(root / ".nebula-build")
    (root / "hero.png").unlink()
    code, out, _ = run_cli("plan")
    assert "(from the remote cache)" in out and "0 to generate" in out, out
    nebula_server.reset_counters()
    code, _, err = run_cli("apply")
    assert code == 1 and "a pinned earlier generation is never made again" in err
    assert nebula_server.generations == []


def test_a_pin_holds_in_a_checkout_with_its_output_but_no_cache(project, run_cli, nebula_server):
    root, red = _pinned_to_red(project, run_cli)
    shutil.rmtree(root / ".nebula-build")  # the lock and the committed output
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0 and "= hero  pinned" in out, out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0 and nebula_server.requests == []
    assert (root / "hero.png").read_bytes() == red and "pinned_against" in _lock(root)["hero"]


def test_unpin_comes_back_to_the_picked_draw_with_every_draw(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    two = (root / "hero.png").read_bytes()
    draws = _lock(root)["hero"]["draws"]
    history = [
        h for h in _lock(root)["hero"]["history"] if h["params"]["prompt"].startswith("a red")
    ]
    assert run_cli("pick", "hero", f"@{len(_lock(root)['hero']['history'])}", "--pin").code == 0
    assert _lock(root)["hero"]["draws"] == draws and history
    code, _, err = run_cli("apply", "--more", "hero")
    assert code == 1 and "images.hero is pinned to an earlier generation" in err
    code, _, err = run_cli("apply", "--replace", "hero")
    assert code == 1 and "--replace: images.hero is pinned" in err
    nebula_server.reset_counters()
    assert run_cli("pick", "hero", "--unpin").code == 0
    assert (root / "hero.png").read_bytes() == two
    assert _lock(root)["hero"]["params"]["draw"] == 2 and _lock(root)["hero"]["draws"] == draws
    assert nebula_server.requests == []


def test_a_longer_text_than_a_manifest_may_hold_is_refused_in_the_lock(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace('"a red lighthouse"', '"' + "x" * 10_001 + '"'))
    code, _, err = run_cli("history", "hero")
    assert code == 1 and "history: `params` must be a table of plain values" in err


PREVIEW_DRAWS = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 96

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
candidates = 3
output = "hero.png"
"""


def _pinned_draw_two(project, run_cli):
    """Draw 2 of the dusk set picked, the prompt changed to dawn, then dusk's draw 2
    pinned back: the newcomer's walkthrough."""
    root = project({"images.toml": PREVIEW_DRAWS})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    _edit(root, "dusk", "dawn")
    assert run_cli("apply").code == 0
    return root


def test_history_says_how_to_read_it_and_bring_one_back(project, run_cli):
    _pinned_draw_two(project, run_cli)
    code, out, _ = run_cli("history", "hero")
    assert code == 0
    assert out.splitlines()[-3:] == [
        "       prompt: a lighthouse at [-dusk-] {+dawn+}",
        "       [-…-] is in that generation, {+…+} in the current output",
        "bring one back: nebula-build pick hero @K (one made from what images.toml declares "
        "now), or nebula-build pick --pin hero @K (one made from something else: kept until "
        "images.toml changes)",
    ]


def test_history_of_a_first_generation_says_there_is_none_earlier_yet(project, run_cli):
    project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    # it had said "0 earlier generations, the last one replaced first"
    assert out.splitlines()[0] == (
        "hero (hero.png): no earlier generation yet (an apply that replaces the output "
        "keeps the one it replaced here)"
    )
    assert len(out.splitlines()) == 2 and out.splitlines()[1].startswith("  now  made ")


def test_the_gallery_shows_the_pinned_output_before_the_draws_of_the_set(project, run_cli):
    root = _pinned_draw_two(project, run_cli)
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    assert run_cli("gallery").code == 0
    hero = card_of((root / ".nebula-build/gallery/index.html").read_text(), "hero")
    assert hero["prompt"] == "a lighthouse at dusk"  # the pinned spec, with its own seed
    pinned, *draws = hero["draws"]
    assert pinned["index"] == -1 and pinned["picked"]
    assert (
        pinned["href"] == "../../hero.png" and pinned["command"] == "nebula-build pick --unpin hero"
    )
    assert pinned["key"] == _lock(root)["hero"]["generation_key"]
    assert [d["index"] for d in draws] == [0, 1, 2] and not any(d["picked"] for d in draws)


@pytest.mark.parametrize("named", ["hero", "hero[*]", "hero[*,b]"])
def test_replace_by_a_pattern_does_not_release_a_pin(project, run_cli, nebula_server, named):
    images = {
        "hero": {
            "prompt": "a red {kind} {v}",
            "matrix": {"kind": ["lighthouse", "boat"], "v": ["a", "b"]},
            "output": "{kind}-{v}.png",
            "seed": 7,
        }
    }
    root = project({"images.toml": nebula_manifest(images)})
    assert run_cli("apply").code == 0
    _edit(root, "a red", "a blue")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero[boat,b]", "@1", "--pin").code == 0
    code, _, err = run_cli("plan", "--replace", named)
    assert code == 1
    assert "--replace: images.hero[boat,b] is pinned to an earlier generation" in err
    assert "pinned_against" in _lock(root)["hero[boat,b]"]


def _run_shown(run_cli, command):
    """Run a command a message shows, as the shell would split it."""
    return run_cli(*shlex.split(command.replace("@K", "@1"))[1:])


def test_commands_shown_for_a_name_that_begins_with_a_dash_run_as_shown(
    project, run_cli, nebula_server
):
    dash = {**HERO, "output": "dash.png"}
    root = project({"images.toml": nebula_manifest({"-dash": dash})})
    assert run_cli("apply").code == 0
    # `--more -dash` would take the name for an option: `--more=-dash`
    code, _, err = run_cli("pick", "--", "-dash", "1")
    assert code == 1 and "`nebula-build apply --more=-dash`" in err, err
    assert _run_shown(run_cli, "nebula-build apply --more=-dash").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    code, _, err = run_cli("pick", "--", "-dash", "@9")
    assert code == 1 and "`nebula-build history -- -dash` lists them" in err, err
    code, out, err = _run_shown(run_cli, "nebula-build history -- -dash")
    assert code == 0, err
    assert "bring one back: nebula-build pick -- -dash @K (" in out
    assert "or nebula-build pick --pin -- -dash @K (" in out
    code, out, err = _run_shown(run_cli, "nebula-build pick --pin -- -dash @K")
    assert code == 0 and "pinned" in out, err
    code, out, err = run_cli("plan")
    assert "`nebula-build pick --unpin -- -dash` ends the pin" in out, out
    code, out, err = _run_shown(run_cli, "nebula-build pick --unpin -- -dash")
    assert code == 0, err
    assert "pinned_against" not in _lock(root)["-dash"]


def test_undoing_an_edit_brings_back_a_pick_among_more_draws(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    picked = (root / "hero.png").read_bytes()
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    _edit(root, "a blue lighthouse", "a red lighthouse")
    nebula_server.reset_counters()
    code, _, err = run_cli("apply")
    assert code == 0, err
    # draw 2, the one --more made, had been lost: draw 0 came back, draw 2 unpickable
    assert nebula_server.requests == [] and (root / "hero.png").read_bytes() == picked
    assert _lock(root)["hero"]["params"]["draw"] == 2
    assert len(_lock(root)["hero"]["draws"]) == 3
    assert run_cli("pick", "hero", "0").code == 0
    code, out, err = run_cli("pick", "hero", "2")
    assert code == 0, err
    assert "hero: draw 2 (3 candidates) is the output" in out
    assert nebula_server.requests == [] and (root / "hero.png").read_bytes() == picked


def test_gc_keeps_every_draw_of_a_set_the_history_lists(project, run_cli, nebula_server):
    """A set replaced by an edit is listed in the history ("draw 2"): gc keeps all of
    its draws, so undoing the edit brings back the set and its pick without paying."""
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    code, out, err = run_cli("gc")
    assert code == 0, err
    assert "removed 0 cache entries" in out
    assert "kept 3 generations `pick @K` brings back" in out
    _edit(root, "a blue lighthouse", "a red lighthouse")
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    for draw in ("0", "1", "2"):
        assert run_cli("pick", "hero", draw).code == 0
    assert nebula_server.requests == []


@pytest.mark.parametrize("pick", ["0", "2"])
def test_gc_keeps_every_draw_of_a_set_an_older_lock_lists_in_the_history(
    project, run_cli, nebula_server, pick
):
    """A lock written before the history recorded its sets' draw keys (`draw_keys`)
    lists a set by its pick and count only: gc keeps the draws that set had made, so
    undoing the edit still costs no generation."""
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("pick", "hero", pick).code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    older = re.sub(r"(?m)^draw_keys = \[[^\]]*\]\n", "", lock.read_text())
    assert older != lock.read_text() and "draw_keys" not in older
    lock.write_text(older)
    code, out, err = run_cli("gc")
    assert code == 0, err
    assert "removed 0 cache entries" in out
    _edit(root, "a blue lighthouse", "a red lighthouse")
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    for draw in ("0", "1", "2"):
        assert run_cli("pick", "hero", draw).code == 0
    assert nebula_server.requests == []


def test_apply_says_an_image_brought_back_from_the_cache_cost_no_generation(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue one")
    assert run_cli("apply").code == 0
    _edit(root, "a blue one", "a red lighthouse")
    code, _, err = run_cli("apply")
    assert code == 0, err
    # had been "regenerated hero hero.png (from cache)": read as a generation paid for
    assert "updated hero hero.png (from cache, no generation)" in err
    assert "regenerated" not in err


def test_cache_push_shares_the_history_a_teammate_brings_back(
    project, run_cli, nebula_server, tmp_path, monkeypatch
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    red = (root / "hero.png").read_bytes()
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    code, out, err = run_cli("cache", "push")
    assert code == 0, err
    assert "pushed 2, 0 already there, 0 failed" in out  # had been 1: the output only
    mate = tmp_path / "mate"  # a clone: the manifest and the lock
    mate.mkdir()
    for file in ("images.toml", "images.lock"):
        shutil.copy(root / file, mate / file)
    nebula_server.reset_counters()
    code, out, err = run_cli("pick", "hero", "@1", "--pin", cwd=mate)
    assert code == 0, err  # had been "hero @1 is not in the cache here"
    assert nebula_server.requests == [] and (mate / "hero.png").read_bytes() == red


def test_history_says_which_draw_is_the_output(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    # had been "now  made … 9f6e76a96eab": draw 0 went unsaid
    assert re.search(r"  now  made .* UTC  [0-9a-f]{12}  draw 0 \(3 candidates\)\n", out), out
    assert run_cli("pick", "hero", "2").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    out = run_cli("history", "hero").out
    assert re.search(r"  now  .*  draw 0 \(3 candidates\)\n", out), out
    assert re.search(r"  @1   .*  draw 2\n", out), out  # the draw it was of its own set
    data = json.loads(run_cli("history", "hero", "--json").out)
    assert [g["draw"] for g in data["generations"]] == [0, 2]


def test_a_generation_brought_back_leaves_the_others_their_number(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    for old, new in (("red", "blue"), ("blue", "green"), ("green", "white")):
        _edit(root, f"a {old} lighthouse", f"a {new} lighthouse")
        assert run_cli("apply").code == 0

    def numbered():
        data = json.loads(run_cli("history", "hero", "--json").out)
        return {g["index"]: g["generation_key"] for g in data["generations"]}

    before = numbered()  # now: white; @1 green, @2 blue, @3 red
    code, out, err = run_cli("pick", "--pin", "hero", "@2")
    assert code == 0, err
    after = numbered()
    # had been @1 white, @2 green: green, named @1 a moment ago, had become @2
    assert after == {0: before[2], 1: before[1], 2: before[0], 3: before[3]}
    code, out, err = run_cli("pick", "hero", "@2")  # the same @2 goes back
    assert code == 0, err
    assert numbered() == before
    assert "pinned_against" not in _lock(root)["hero"]


def test_history_shows_no_seed_edit_between_draws_of_one_declared_seed(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "1").code == 0
    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    # draw 2 of one set against draw 1 of the next, both of seed 7: had shown
    # "seed: 1383123169 → 3469464724", an edit nobody made
    assert "seed" not in out
    assert "prompt: a [-red-] {+blue+} lighthouse" in out
    data = json.loads(run_cli("history", "hero", "--json").out)
    assert list(data["generations"][1]["changes"]) == ["prompt"]


def test_unpin_comes_back_to_the_draw_picked_last_after_numbers_kept(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    for old, new in (("red", "blue"), ("blue", "green")):
        _edit(root, f"a {old} lighthouse", f"a {new} lighthouse")
        assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "1").code == 0  # green: draw 1; @1 blue, @2 red
    assert run_cli("pick", "--pin", "hero", "@1").code == 0  # draw 1 takes @1
    assert run_cli("pick", "hero", "2").code == 0  # the pin ends: green's draw 2
    # red is @3, after green's draw 1: draw 2 must not be put after it in its place
    assert run_cli("pick", "--pin", "hero", "@3").code == 0
    code, out, err = run_cli("pick", "--unpin", "hero")
    assert code == 0, err
    assert _lock(root)["hero"]["params"]["draw"] == 2


def test_history_shows_an_unset_value_and_an_input_as_plan_does(project, run_cli):
    root = project(
        {
            "images.toml": preview(
                {
                    "hero": {
                        "prompt": "a lighthouse",
                        "width": 64,
                        "height": 64,
                        "output": "hero.png",
                    },
                    "hat": {
                        "width": 64,
                        "height": 64,
                        "model": "black-forest-labs/FLUX.1-Fill-dev",
                        "prompt": "a hat",
                        "image": "@hero",
                        "mask": "mask.png",
                        "output": "hat.png",
                    },
                }
            )
        }
    )
    Image.new("L", (64, 64), 255).save(root / "mask.png")
    assert run_cli("apply").code == 0
    _edit(root, 'prompt = "a lighthouse"', 'prompt = "a lighthouse"\nseed = 42')
    assert run_cli("apply").code == 0
    code, out, err = run_cli("history", "hero")
    assert code == 0, err
    # had said "seed: None → 42", Python's word for it, where plan says (unset)
    assert "       seed: (unset) -> 42" in out.splitlines()
    code, out, err = run_cli("history", "hat")
    assert code == 0, err
    # had diffed the two inputs' 64-digit keys as words
    changed = [line for line in out.splitlines() if line.startswith("       image: ")]
    assert len(changed) == 1
    assert re.fullmatch(
        r"       image: @hero \(output [0-9a-f]{12}…\) -> @hero \(output [0-9a-f]{12}…\)",
        changed[0],
    ), changed[0]


def test_a_pin_and_its_end_keep_every_draw_of_the_pinned_set(project, run_cli, nebula_server):
    """A draw of an earlier set pinned, then unpinned: the history recorded it again
    as a generation of no set, so gc removed the set's other draws and undoing the
    edit paid for them again (the newcomer's walkthrough)."""
    root = project({"images.toml": nebula_manifest({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "--pin", "hero", "@1").code == 0
    code, out, err = run_cli("gc")
    assert (code, err) == (0, "") and "removed 0 cache entries" in out, out  # while pinned
    assert run_cli("pick", "--unpin", "hero").code == 0
    red = _lock(root)["hero"]["history"][0]
    assert (red["params"]["prompt"], red["params"]["draw"], red["draws"]) == (
        "a red lighthouse",
        2,
        3,
    )
    code, out, err = run_cli("gc")
    assert (code, err) == (0, "") and "removed 0 cache entries" in out, out
    _edit(root, "a blue lighthouse", "a red lighthouse")
    nebula_server.reset_counters()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert _lock(root)["hero"]["params"]["draw"] == 2
    for draw in ("0", "1", "2"):
        assert run_cli("pick", "hero", draw).code == 0
    assert nebula_server.requests == []


def test_a_lock_whose_pinned_set_repeats_a_draw_is_one_clear_line(project, run_cli):
    """A pull request's lock listing one draw 64 times in `pinned_draws` was carried
    into the history as a set of 64 draws (an attacker's review)."""
    root = project({"images.toml": preview({"hero": HERO | {"candidates": 3}})})
    assert run_cli("apply").code == 0
    _edit(root, "a red lighthouse", "a blue lighthouse")
    assert run_cli("apply").code == 0
    assert run_cli("pick", "--pin", "hero", "@1").code == 0
    lock = root / "images.lock"
    text = lock.read_text()
    keys = re.search(r"(?m)^pinned_draws = \[(.*)\]$", text)
    assert keys is not None
    one = keys[1].split(", ")[0]
    lock.write_text(text.replace(keys[0], f"pinned_draws = [{', '.join([one] * 64)}]"))
    code, out, err = run_cli("pick", "--unpin", "hero")
    assert (code, out) == (1, "")
    assert "`pinned_draws` must be a list of at most 64 distinct sha256 keys" in err, err
    assert err.count("\n") == 1
