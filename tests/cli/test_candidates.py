"""Candidates, through the CLI and the loopback Nebula API: `candidates = N` makes N
draws, `pick` switches the output between them for free, the lock keeps the choice."""

from __future__ import annotations

import json
import shutil
import tomllib

from nebula_build.plugin import FLUX_FILL
from tests.cli.test_rows_matrix import preview
from tests.conftest import fake_manifest, generation_log, nebula_manifest
from tests.core.test_chains import mask

HERO = {"prompt": "a lighthouse", "output": "hero.png", "seed": 7, "candidates": 3}


def _lock(root):
    return tomllib.loads((root / "images.lock").read_text())["images"]


def test_three_candidates_cost_three_requests_with_derived_seeds(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    code, out, _ = run_cli("plan")
    assert "2 candidate draws to make" in out
    assert "* hero#1  draw" in out and "* hero#2  draw" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    seeds = sorted(r.body["seed"] for r in nebula_server.generations)
    assert len(seeds) == 3 and 7 in seeds  # draw 0 is the image as declared
    assert "draw" not in _lock(root)["hero"]["params"]  # the first draw is the output
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0, out
    # reproducible: the same seeds again in another checkout
    nebula_server.reset_counters()
    shutil.rmtree(root / ".nebula-build")
    (root / "images.lock").unlink()
    (root / "hero.png").unlink()
    assert run_cli("apply").code == 0
    assert sorted(r.body["seed"] for r in nebula_server.generations) == seeds


def test_pick_costs_nothing_and_writes_the_draw(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    first = (root / "hero.png").read_bytes()
    nebula_server.reset_counters()
    code, out, err = run_cli("pick", "hero", "2")
    assert code == 0, err
    assert "hero: draw 2 (3 candidates) is the output (hero.png)" in out
    assert nebula_server.requests == []
    picked = (root / "hero.png").read_bytes()
    assert picked != first
    assert _lock(root)["hero"]["params"]["draw"] == 2
    assert run_cli("plan", "--detailed-exitcode").code == 0  # the pick holds
    assert run_cli("pick", "hero", "--next").code == 0  # 2 → 0, wrapping
    assert (root / "hero.png").read_bytes() == first
    assert run_cli("pick", "hero", "--prev").code == 0  # 0 → 2
    assert (root / "hero.png").read_bytes() == picked
    assert nebula_server.requests == []


def test_a_pick_survives_a_new_format_and_a_new_prompt_makes_a_new_set(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "1").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace('"hero.png"', '"hero.webp"'))
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert nebula_server.requests == [] and _lock(root)["hero"]["params"]["draw"] == 1
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    code, out, _ = run_cli("plan")
    assert "draw 1 was picked before this change: draw 0 of the new draws is the output" in out
    assert "Generations: 3 on nebula" in out
    assert run_cli("apply").code == 0
    assert len(nebula_server.generations) == 3
    assert "draw" not in _lock(root)["hero"]["params"]


def test_caps_count_every_draw(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({"hero": HERO})})
    code, _, err = run_cli("apply", "--max-generations", "2")
    assert code == 1
    assert "would generate 1 image and 2 candidate draws, more than --max-generations 2" in err
    assert nebula_server.generations == []
    code, _, err = run_cli("apply", "--locked")
    assert code == 2 and "--locked: 1 image and 2 candidate draws would need generating" in err


def test_a_second_checkout_with_the_shared_cache_reproduces_the_pick(
    tmp_path, run_cli, nebula_server, monkeypatch
):
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    first = tmp_path / "first"
    first.mkdir()
    (first / "images.toml").write_text(nebula_manifest({"hero": HERO}))
    assert run_cli("apply", cwd=first).code == 0
    assert run_cli("pick", "hero", "2", cwd=first).code == 0
    second = tmp_path / "second"
    second.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(first / name, second / name)
    nebula_server.reset_counters()
    code, _, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert nebula_server.requests == []
    assert (second / "hero.png").read_bytes() == (first / "hero.png").read_bytes()


def test_pick_says_what_is_wrong_in_one_line(project, run_cli, nebula_server):
    project(
        {"images.toml": nebula_manifest({"hero": HERO, "logo": {"prompt": "x", "output": "l.png"}})}
    )
    for argv, message in [
        (["pick", "nope", "1"], "images.toml: unknown image: nope (known: hero, logo)"),
        (["pick", "logo", "1"], "images.logo has one draw"),
        (["pick", "hero", "5"], "images.hero has draws 0 to 2 (got 5)"),
        (["pick", "hero", "1"], "draw 1 of hero is not in the cache here"),
        (["pick", "hero"], "give the draw's INDEX, --next or --prev"),
    ]:
        code, _, err = run_cli(*argv)
        assert code == 1, argv
        assert message in err and err.count("\n") == 1, err
        if "images." in message:  # "pick: images.hero has draws …" named no manifest
            assert err.startswith("error: images.toml: "), err
    assert nebula_server.requests == []


def test_gc_keeps_every_candidate(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    code, out, _ = run_cli("gc")
    assert "removed 0 cache entries" in out
    assert "kept 2 candidate draws not picked" in out
    data = json.loads(run_cli("gc", "--json").out)
    assert data["candidates"]["draws"] == 2 and data["candidates"]["bytes"] > 0
    nebula_server.reset_counters()
    assert run_cli("pick", "hero", "1").code == 0
    assert nebula_server.requests == []


def test_the_gallery_shows_the_image_once(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    shutil.rmtree(root / ".nebula-build/cache")  # the draws are pending again
    code, out, _ = run_cli("gallery")
    assert code == 0
    assert "(1 image)" in out
    page = (root / ".nebula-build/gallery/index.html").read_text()
    assert "hero#1" not in page


def test_a_pick_reaches_the_images_that_take_its_output(project, run_cli, fake_site, tmp_path):
    """cap is inpainted from hero's output: picking another hero makes a new cap, keyed
    by the picked draw (never the cache entry of a cap made from another draw)."""
    log = tmp_path / "log"
    images = {
        "hero": HERO,
        "cap": {
            "model": FLUX_FILL,
            "prompt": "a red cap",
            "image": "@hero",
            "mask": "mask.png",
            "output": "cap.png",
            "seed": 1,
        },
    }
    root = project({"images.toml": fake_manifest(log, images), "mask.png": mask()})
    assert run_cli("apply").code == 0
    made = len(generation_log(log))
    code, _, err = run_cli("pick", "hero", "1")
    assert code == 0
    assert "cap takes its output: `nebula-build apply` remakes it" in err
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 2 and "cap" in out
    assert run_cli("apply").code == 0
    assert len(generation_log(log)) == made + 1  # cap, from the picked hero
    lock = _lock(root)
    assert lock["cap"]["params"]["image"] == f"@hero:{lock['hero']['output_key']}"
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_checkout_without_the_cache_pays_for_no_draw(project, run_cli, nebula_server, tmp_path):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    shutil.rmtree(root / ".nebula-build")  # a fresh clone: manifest, lock and output
    nebula_server.reset_counters()
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert run_cli("apply", "--locked").code == 0
    assert nebula_server.requests == []


def test_raising_candidates_adds_draws_and_keeps_the_others(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("candidates = 3", "candidates = 4"))
    nebula_server.reset_counters()
    code, out, _ = run_cli("plan")
    assert "* hero#3  draw" in out and "hero#1" not in out
    assert run_cli("apply").code == 0
    assert len(nebula_server.generations) == 1
    entry = _lock(root)["hero"]
    assert len(entry["draws"]) == 4 and entry["params"]["draw"] == 2
    assert run_cli("plan", "--detailed-exitcode").code == 0
    # the draws made stay pickable: a lower count only makes smaller sets from now on
    manifest.write_text(manifest.read_text().replace("candidates = 4", "candidates = 2"))
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert run_cli("pick", "hero", "3").code == 0
    assert len(nebula_server.generations) == 1


def test_a_move_or_a_new_format_pays_for_no_draw(project, run_cli, nebula_server):
    """A checkout with the lock and the outputs, no cache: an edit that keeps the
    generation moves or re-encodes the output and makes no draw."""
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    shutil.rmtree(root / ".nebula-build")
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace('"hero.png"', '"art/hero.png"'))
    code, out, _ = run_cli("plan")
    assert "draw" not in out and "Generations" not in out, out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0 and nebula_server.requests == []


def test_more_records_a_draw_the_cache_had_already(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    before = (root / "images.lock").read_text()
    assert run_cli("apply", "--more", "hero").code == 0
    (root / "images.lock").write_text(before)  # the lock of a branch without the draw
    nebula_server.reset_counters()
    # only the lock changes: the plan says so, and is a change pending
    code, out, _ = run_cli("plan", "--more", "hero", "--detailed-exitcode")
    assert code == 2, out
    assert out.startswith("No changes to the images: 1 image up to date."), out
    assert "Lock: apply writes the lock with 1 draw the cache holds (hero)." in out
    data = json.loads(run_cli("plan", "--more", "hero", "--json").out)
    assert data["lock_changes"]["draws_recorded"] == ["hero"]
    code, out, err = run_cli("apply", "--more", "hero")
    assert code == 0, err
    assert "Lock: written with 1 draw the cache holds (hero)." in out
    assert nebula_server.requests == [] and len(_lock(root)["hero"]["draws"]) == 4
    assert run_cli("pick", "hero", "3").code == 0


def test_more_stops_at_the_most_draws_an_image_may_have(
    project, run_cli, nebula_server, monkeypatch
):
    monkeypatch.setattr("nebula_build.engine.candidates.MAX_CANDIDATES", 4)
    project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply", "--more", "hero").code == 0
    code, _, err = run_cli("apply", "--more", "hero")
    assert code == 1 and "--more: images.hero has 4 draws, the most an image may have" in err


POSES = {
    "prompt": "a knight, {pose} pose",
    "matrix": {"pose": ["idle", "walk"]},
    "output": "hero/{pose}.png",
}


def test_more_takes_a_declaration_or_a_pattern_as_replace_does(project, run_cli):
    root = project({"images.toml": preview({"hero": POSES})})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("plan", "--more", "hero")  # had been "unknown image: hero"
    assert code == 0, err
    assert "* hero[idle]#1  draw" in out and "* hero[walk]#1  draw" in out
    code, _, err = run_cli("apply", "--more", "hero[*]")
    assert code == 0, err
    assert [len(_lock(root)[name]["draws"]) for name in ("hero[idle]", "hero[walk]")] == [2, 2]
    assert run_cli("pick", "hero[walk]", "1").code == 0
    code, _, err = run_cli("apply", "--more", "heroo")
    assert code == 1 and err.count("\n") == 1, err
    assert "--more: unknown image: heroo (known: hero[idle], hero[walk])" in err


def test_pick_and_history_say_which_images_a_declaration_names(project, run_cli):
    project({"images.toml": preview({"hero": POSES | {"candidates": 2}})})
    assert run_cli("apply").code == 0
    named = "no image named 'hero': it declares 2 images (hero[idle], hero[walk]); name one"
    for argv, message in [
        (["history", "hero"], f"{named}, as in 'hero[idle]'"),
        (["pick", "hero", "1"], f"{named}, as in 'hero[idle]'"),
        (["pick", "hero[*]", "--next"], "it matches 2 images (hero[idle], hero[walk])"),
        (
            ["history", "hero[idel]"],
            "unknown image: hero[idel] (known: hero[idle], hero[walk]); did you mean 'hero[idle]'?",
        ),
        (["pick", "nope", "1"], "unknown image: nope (known: hero[idle], hero[walk])"),
    ]:
        code, _, err = run_cli(*argv)
        assert code == 1, argv
        assert message in err and err.count("\n") == 1, err
    assert run_cli("pick", "hero[walk]", "1").code == 0


def test_pick_says_which_atlas_it_rebuilt(project, run_cli):
    sheet = '\n[atlases.hero]\nimages = ["hero"]\noutput = "sheet.png"\n'
    root = project({"images.toml": preview({"hero": POSES | {"candidates": 2}}) + sheet})
    assert run_cli("apply").code == 0
    before = (root / "sheet.png").read_bytes()
    code, out, err = run_cli("pick", "hero[walk]", "1")
    assert code == 0, err
    assert out.splitlines() == [
        "hero[walk]: draw 1 (2 candidates) is the output (hero/walk.png)",
        "rebuilt atlas hero (sheet.png)",
    ]
    assert (root / "sheet.png").read_bytes() != before


def test_cache_push_shares_every_draw_and_the_pick(tmp_path, run_cli, nebula_server, monkeypatch):
    first = tmp_path / "first"
    first.mkdir()
    (first / "images.toml").write_text(nebula_manifest({"hero": HERO}))
    assert run_cli("apply", cwd=first).code == 0
    assert run_cli("pick", "hero", "1", cwd=first).code == 0
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    code, out, err = run_cli("cache", "push", cwd=first)
    assert code == 0 and "3" in out, out + err
    second = tmp_path / "second"
    second.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(first / name, second / name)
    nebula_server.reset_counters()
    assert run_cli("apply", cwd=second).code == 0
    assert nebula_server.requests == []
    assert (second / "hero.png").read_bytes() == (first / "hero.png").read_bytes()
    assert run_cli("pick", "hero", "2", cwd=second).code == 0


def test_cache_status_counts_the_earlier_generations_push_shares(
    tmp_path, run_cli, nebula_server, monkeypatch
):
    root = tmp_path / "first"
    root.mkdir()
    (root / "images.toml").write_text(nebula_manifest({"hero": HERO}))
    assert run_cli("apply", cwd=root).code == 0  # made before the team shared a cache
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    assert run_cli("apply", cwd=root).code == 0  # uploads the windmill's draws
    code, out, _ = run_cli("cache", "status", cwd=root)
    # it had said nothing was only here, and push then uploaded the lighthouse
    assert "  1 earlier generation only here: `nebula-build cache push` shares it" in out, out
    data = json.loads(run_cli("cache", "status", "--json", cwd=root).out)
    assert (data["only_local"], data["earlier_only_local"]) == (0, 1)
    code, out, _ = run_cli("cache", "push", cwd=root)
    assert "pushed 1," in out
    assert "earlier generation" not in run_cli("cache", "status", cwd=root).out


def test_a_checkout_without_cache_or_outputs_pays_for_the_pick_alone(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    picked = (root / "hero.png").read_bytes()
    shutil.rmtree(root / ".nebula-build")
    (root / "hero.png").unlink()
    code, out, _ = run_cli("plan")
    assert "draw" not in out.replace("draw 2", "") and "Generations: 1 on nebula" in out, out
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert len(nebula_server.generations) == 1 and (root / "hero.png").read_bytes() == picked
    # --more there: one generation, and the set's record grows by it
    assert run_cli("apply", "--more", "hero").code == 0
    assert len(nebula_server.generations) == 2 and len(_lock(root)["hero"]["draws"]) == 4


def test_a_pick_is_not_an_edit_and_an_undone_edit_brings_the_pick_back(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    two = (root / "hero.png").read_bytes()
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    code, out, _ = run_cli("plan")
    assert "prompt changed" in out and "seed" not in out and "~ draw" not in out, out
    assert run_cli("apply").code == 0
    history = run_cli("history", "hero").out
    assert "draw 2" in history and "seed" not in history, history
    manifest.write_text(manifest.read_text().replace("a windmill", "a lighthouse"))
    nebula_server.reset_counters()
    assert run_cli("apply").code == 0
    assert nebula_server.requests == [] and (root / "hero.png").read_bytes() == two
    assert _lock(root)["hero"]["params"]["draw"] == 2
    # pinned to the windmill, the lighthouse's draw 2 is @1: a draw of the set declared
    # now, so a plain pick, which ends the pin
    assert run_cli("pick", "hero", "@1", "--pin").code == 0
    assert (root / "hero.png").read_bytes() != two
    code, out, err = run_cli("pick", "hero", "@1")
    assert code == 0, err
    assert "draw 2 (3 candidates) is the output" in out and (root / "hero.png").read_bytes() == two
    assert "pinned_against" not in _lock(root)["hero"]


def test_pick_takes_one_way_of_naming_the_draw(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    code, _, err = run_cli("pick", "hero", "1", "--next")
    assert code == 1 and "give INDEX, @K, --next or --prev, not two of them" in err


def test_pick_while_watch_runs_says_to_stop_it_or_pick_in_its_page(project, run_cli):
    from nebula_build.state.projectlock import ProjectLock

    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    with ProjectLock(root / ".nebula-build/lock", command="watch"):
        code, out, err = run_cli("pick", "hero", "1")
        # waiting for a watch never ends: "wait for it" was no advice
        assert (code, out) == (1, "") and err.count("\n") == 1
        assert "nebula-build watch is running in this project (pid " in err
        assert "stop it first (Ctrl-C where it runs), or click the draw in its page" in err
        assert "wait for it" not in err
        code, _, err = run_cli("apply", "--lock-timeout", "0.1")
        assert (
            code == 1 and "applies each save itself: stop it first (Ctrl-C where it runs)\n" in err
        )
    assert run_cli("pick", "hero", "1").code == 0


def test_a_new_set_says_the_pick_among_more_draws_waits_for_an_undo(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("pick", "hero", "3").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    code, out, _ = run_cli("plan")
    # the prompt made a new set: the pick is not "beyond candidates = 3"
    assert "beyond candidates" not in out
    assert (
        "note: draw 3 was picked before this change: draw 0 of the new draws is the output "
        "until you pick another; undoing the change brings draw 3 back"
    ) in out


def test_an_undone_edit_keeps_the_draws_more_made_whichever_was_picked(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    assert run_cli("pick", "hero", "4").code == 0
    four = (root / "hero.png").read_bytes()
    assert run_cli("pick", "hero", "1").code == 0  # a draw the manifest asks for
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    assert run_cli("apply").code == 0
    manifest.write_text(manifest.read_text().replace("a windmill", "a lighthouse"))
    assert run_cli("apply").code == 0
    assert "hero  up to date: draw 1 (5 candidates)" in run_cli("status").out
    assert run_cli("gc").code == 0  # the two paid draws --more made stay in the cache
    nebula_server.reset_counters()
    code, out, err = run_cli("pick", "hero", "4")
    # they had been forgotten: "has draws 0 to 2", and gc removed them
    assert code == 0, err
    assert "draw 4 (5 candidates) is the output" in out
    assert (root / "hero.png").read_bytes() == four and nebula_server.requests == []


def test_status_says_which_draw_is_the_output(project, run_cli, monkeypatch):
    from nebula_build.engine import noop

    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # no waiting for the racy window
    root = project(
        {
            "images.toml": preview(
                {"hero": HERO, "icon": {"prompt": "a crane", "output": "icon.png"}}
            )
        }
    )
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    code, out, _ = run_cli("status")
    assert code == 0 and "hero  up to date: draw 2 (3 candidates)  hero.png" in out
    assert "icon  up to date  icon.png" in out  # one draw: nothing to say
    assert run_cli("plan").code == 0  # status from here on reads the no-op snapshot
    assert (root / noop.SNAPSHOT).exists()
    assert "hero  up to date: draw 2 (3 candidates)  hero.png" in run_cli("status").out


def test_a_teammates_status_says_the_shared_cache_has_the_picked_draw(
    project, run_cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    mate = tmp_path / "mate"  # a clone: the manifest and the lock, no outputs, no cache
    mate.mkdir()
    for file in ("images.toml", "images.lock"):
        shutil.copy(root / file, mate / file)
    code, out, err = run_cli("status", cwd=mate)
    # had been "pending regenerate: output file missing and not cached"
    assert code == 0, err
    assert "hero  pending restore: output file missing (from the remote cache)  hero.png" in out
    offline = run_cli("status", "--offline", cwd=mate).out  # as plan --offline: not asked
    assert (
        "hero  pending regenerate: output file missing and not cached (the lock records it: "
        "was the file committed?)  hero.png"
    ) in offline
    assert run_cli("apply", "--locked", cwd=mate).code == 0
    assert (mate / "hero.png").read_bytes() == (root / "hero.png").read_bytes()
    assert "hero  up to date: draw 2 (3 candidates)  hero.png" in run_cli("status", cwd=mate).out


def test_a_teammate_without_the_draws_is_told_to_fetch_them_not_to_apply(
    project, run_cli, tmp_path, monkeypatch
):
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    mate = tmp_path / "mate"  # a clone: the manifest, the lock and the outputs
    mate.mkdir()
    for file in ("images.toml", "images.lock", "hero.png"):
        shutil.copy(root / file, mate / file)
    assert run_cli("apply", cwd=mate).out == "No changes: 1 image up to date.\n"
    code, _, err = run_cli("pick", "hero", "1", cwd=mate)
    # had been "`nebula-build apply` makes the candidates ...": apply changes nothing here
    assert code == 1 and err.count("\n") == 1
    assert "draw 1 of hero is not in the cache here: it was made in another checkout" in err
    assert "NEBULA_BUILD_CACHE_REMOTE" in err and "`nebula-build cache pull` fetches it" in err
    assert "apply" not in err
    shared = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", shared.as_uri())
    code, _, err = run_cli("pick", "hero", "1", cwd=mate)
    assert code == 1 and f"nor in the remote cache {shared.as_uri()}" in err
    assert "`nebula-build cache push` in the checkout that made it shares it" in err
    assert run_cli("cache", "push", cwd=root).code == 0
    code, out, err = run_cli("pick", "hero", "1", cwd=mate)
    assert code == 0, err


def test_plan_status_and_pick_number_the_draws_as_pick_takes_them(project, run_cli):
    root = project({"images.toml": preview({"hero": HERO | {"candidates": 4}})})
    code, out, _ = run_cli("plan")
    # had been "candidate 3 of 4" for the last of draws 0 to 3: read as the third
    assert "candidate 3 of 4" not in out
    assert "* hero#3  draw\n      draw 3 (4 candidates)" in out
    assert run_cli("apply").code == 0
    assert run_cli("apply", "--more", "hero").code == 0
    code, out, err = run_cli("pick", "hero", "4")
    assert code == 0 and "hero: draw 4 (5 candidates) is the output (hero.png)" in out, err
    assert "hero  up to date: draw 4 (5 candidates)  hero.png" in run_cli("status").out
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    out = run_cli("status").out
    assert "hero#3  pending draw: draw 3 (4 candidates)" in out


def test_status_json_says_which_draw_is_the_output(project, run_cli):
    project(
        {"images.toml": preview({"hero": HERO, "icon": {"prompt": "a crane", "output": "i.png"}})}
    )
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    code, out, err = run_cli("status", "--json")
    assert code == 0, err
    actions = {a["image"]: a for a in json.loads(out)["actions"]}
    # the text said "draw 2 (3 candidates)", the JSON nothing of it
    assert (actions["hero"]["draw"], actions["hero"]["candidates"]) == (2, 3)
    assert "draw" not in actions["icon"] and "candidates" not in actions["icon"]


def _asset_manifest_images(root):
    return json.loads((root / "static/images.json").read_text())["images"]


def test_a_picked_draw_and_the_image_made_from_it_stay_in_the_asset_manifest(project, run_cli):
    chained = {
        "prompt": "a crown",
        "model": FLUX_FILL,
        "image": "@hero",
        "mask": "mask.png",
        "output": "hero-crowned.png",
    }
    manifest = preview({"hero": HERO, "crowned": chained})
    root = project({"images.toml": manifest + '\n[assets]\nmanifest = "static/images.json"\n'})
    (root / "mask.png").write_bytes(mask())
    assert run_cli("apply").code == 0
    assert sorted(_asset_manifest_images(root)) == ["crowned", "hero"]
    code, out, err = run_cli("pick", "hero", "2")
    assert code == 0, err
    assert run_cli("apply").code == 0  # the crowned image is made again from draw 2
    listed = _asset_manifest_images(root)
    assert sorted(listed) == ["crowned", "hero"]  # had dropped both: the site lost them
    assert listed["hero"]["files"][0]["bytes"] == (root / "hero.png").stat().st_size
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0, out


DROPPED = (
    "note: hero: draw 2 was picked before this change: draw 0 of the new draws is the output "
    "until you pick another; undoing the change brings draw 2 back"
)


def test_watch_says_a_pick_an_edit_replaced_as_plan_does(project, run_cli):
    """Before: `plan` noted it under the image, and a watch round said nothing of it."""
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace("a lighthouse", "a windmill"))
    code, out, err = run_cli("watch", "--once")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1] == f"round 1: {DROPPED}", out
    assert lines[-2].startswith("round 1: 3 done (3 generated)"), out
    code, out, err = run_cli("watch", "--once")  # the lock records draw 0 now: said once
    assert code == 0, err
    assert "was picked" not in out


def test_pick_over_a_hand_edit_says_an_option_pick_has(project, run_cli):
    """pick said "re-run with --force", and `pick --force` was an unknown argument."""
    root = project({"images.toml": preview({"hero": HERO})})
    assert run_cli("apply").code == 0
    (root / "hero.png").write_bytes(b"retouched")
    code, _, err = run_cli("pick", "hero", "1")
    assert code == 1 and "output file changed by hand; not overwritten: re-run with --force" in err
    code, out, err = run_cli("pick", "hero", "1", "--force")
    assert code == 0, err
    assert "hero: draw 1 (3 candidates) is the output (hero.png)" in out
    assert "1 replaced file backed up in .nebula-build/backup/" in out
    (copy,) = (root / ".nebula-build/backup").glob("*/hero.png")
    assert copy.read_bytes() == b"retouched"
