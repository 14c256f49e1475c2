"""The remote cache, through the CLI, against a real S3 API on loopback (moto's server)
and the loopback Nebula API: a second checkout restores instead of paying, bad remote
objects are refused, and a remote that fails never fails a build."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import nebula_manifest

pytest.importorskip("moto")

IMAGES = {
    "hero": {"prompt": "a lighthouse at dusk", "output": "img/hero.png", "seed": 1},
    "logo": {"prompt": "a red fox", "output": "img/logo.webp", "seed": 2},
    "tile": {"prompt": "moss", "output": "img/tile.png", "seed": 3},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on loopback, for the whole test run."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(10)


@pytest.fixture
def remote(s3_endpoint, monkeypatch):
    """A fresh bucket, named by NEBULA_BUILD_CACHE_REMOTE, with S3's standard variables."""
    bucket = f"cache-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{s3_endpoint}/{bucket}").raise_for_status()
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    url = f"s3://{bucket}/team/site"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", url)
    monkeypatch.delenv("NEBULA_BUILD_CACHE_READONLY", raising=False)
    return url


def _objects(url: str) -> list[str]:
    import obstore
    from obstore.store import from_url

    store = from_url(url)
    return sorted(meta["path"] for chunk in obstore.list(store) for meta in chunk)


def _checkout(tmp_path: Path, name: str, source: Path | None = None) -> Path:
    """A clone of the project as git would give it: the manifest and the lock only."""
    root = tmp_path / name
    root.mkdir()
    if source is None:
        (root / "images.toml").write_text(nebula_manifest(IMAGES))
    else:
        for file in ("images.toml", "images.lock"):
            shutil.copy(source / file, root / file)
    return root


def _outputs(root: Path) -> dict[str, bytes]:
    return {spec["output"]: (root / spec["output"]).read_bytes() for spec in IMAGES.values()}


def test_a_second_checkout_restores_from_the_remote_without_paying(
    tmp_path, run_cli, nebula_server, remote
):
    first = _checkout(tmp_path, "first")
    code, _, err = run_cli("apply", cwd=first)
    assert code == 0, err
    assert len(nebula_server.generations) == 3
    assert sum(path.startswith("v1/ac/") for path in _objects(remote)) == 3

    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, out, err = run_cli("plan", cwd=second)
    assert code == 0, err
    assert out.count("(from the remote cache)") == 3
    assert "3 to restore (3 from remote cache)" in out
    started = time.perf_counter()
    code, out, err = run_cli("apply", cwd=second)
    elapsed = time.perf_counter() - started
    assert code == 0, err
    assert nebula_server.requests == []  # not one request: nothing paid, no key needed
    assert _outputs(second) == _outputs(first)
    assert (out + err).count("(from remote cache)") == 3
    assert "0 generated" in out
    assert elapsed < 30

    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=second)
    assert code == 0, out


def test_the_job_summary_counts_the_remote_caches_hits(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    second = _checkout(tmp_path, "second", source=first)
    assert run_cli("apply", cwd=second).code == 0
    assert "- **From the remote cache:** 3." in summary.read_text()


def test_plan_json_says_which_images_the_remote_supplies(tmp_path, run_cli, nebula_server, remote):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    second = _checkout(tmp_path, "second", source=first)
    code, out, _ = run_cli("plan", "--json", cwd=second)
    assert code == 0
    actions = json.loads(out)["actions"]
    assert {a["image"]: a["from_remote_cache"] for a in actions} == dict.fromkeys(IMAGES, True)
    assert {a["action"] for a in actions} == {"restore"}  # the locked generations
    assert not any(a["generates"] for a in actions)


def test_a_new_image_the_remote_holds_is_a_create_from_it(tmp_path, run_cli, nebula_server, remote):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    second = _checkout(tmp_path, "second", source=first)
    (second / "images.lock").unlink()  # a branch that added the images: no lock entry yet
    code, out, _ = run_cli("plan", cwd=second)
    assert out.count("new image (from the remote cache, no generation)") == 3
    assert "0 to generate, 3 from remote cache," in out
    nebula_server.reset_counters()
    assert run_cli("apply", cwd=second).code == 0
    assert nebula_server.requests == []


def test_a_corrupted_remote_object_is_refused_and_regenerated(
    tmp_path, run_cli, nebula_server, remote
):
    import obstore
    from obstore.store import from_url

    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    store = from_url(remote)
    hero_key = tomllib.loads((first / "images.lock").read_text())["images"]["hero"][
        "generation_key"
    ]
    record = json.loads(bytes(obstore.get(store, f"v1/ac/{hero_key[:2]}/{hero_key}.json").bytes()))
    cas = f"v1/cas/{record['sha256'][:2]}/{record['sha256']}"
    flipped = bytearray(bytes(obstore.get(store, cas).bytes()))
    flipped[len(flipped) // 2] ^= 0xFF
    obstore.put(store, cas, bytes(flipped))  # an attacker or a bad disk: same size, other bytes

    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert "refused" in out + err and "do not match" in out + err
    assert [r.body["prompt"] for r in nebula_server.generations] == ["a lighthouse at dusk"]
    assert _outputs(second)["img/logo.webp"] == _outputs(first)["img/logo.webp"]


def test_a_record_for_another_key_is_never_trusted(tmp_path, run_cli, nebula_server, remote):
    import obstore
    from obstore.store import from_url

    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    store = from_url(remote)
    lock = tomllib.loads((first / "images.lock").read_text())["images"]
    hero, logo = lock["hero"]["generation_key"], lock["logo"]["generation_key"]
    logo_record = bytes(obstore.get(store, f"v1/ac/{logo[:2]}/{logo}.json").bytes())
    obstore.put(store, f"v1/ac/{hero[:2]}/{hero}.json", logo_record)  # hero → logo's bytes

    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert "names another key" in out + err
    assert len(nebula_server.generations) == 1
    assert (second / "img/hero.png").read_bytes() == (first / "img/hero.png").read_bytes()


def test_an_unreachable_remote_is_a_warning_and_the_build_goes_on(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    root = _checkout(tmp_path, "first")
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert (out + err).count("going on without the remote cache") == 1  # said once
    assert "kept in the local cache only" not in out + err  # not once per image
    assert len(nebula_server.generations) == 3


def test_under_github_actions_an_unreachable_remote_shows_on_the_run_and_in_the_summary(
    tmp_path, run_cli, remote, monkeypatch
):
    """A pull request's plan whose cache role is misconfigured counts as generations what
    the remote holds: the reviewer must see why, not only the job log."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=_checkout(tmp_path, "pr"))
    assert code == 2, err
    (notice,) = [line for line in out.splitlines() if line.startswith("::notice")]
    assert notice.startswith(f"::notice::remote cache {remote}")
    assert notice.endswith("going on without the remote cache")
    text = summary.read_text()
    assert "\n**Notes:**\n\n- remote cache s3://" in text
    assert "going on without the remote cache" in text


def test_a_no_op_plan_and_offline_plans_never_touch_the_remote(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    root = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=root).code == 0
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # dead now
    code, out, err = run_cli("plan", cwd=root)
    assert (code, err) == (0, "")
    assert "No changes" in out
    (root / "img/hero.png").unlink()
    (root / ".nebula-build/cache").rename(root / "elsewhere")
    code, out, err = run_cli("plan", "--offline", cwd=root)
    assert code == 0
    assert "remote" not in err
    assert "from the remote cache" not in out


def test_a_read_only_remote_is_read_but_never_written(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.setenv("NEBULA_BUILD_CACHE_READONLY", "1")
    root = _checkout(tmp_path, "first")
    code, _, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert _objects(remote) == []
    code, out, err = run_cli("cache", "push", cwd=root)
    assert code == 1
    assert "read-only" in err


def test_cache_push_pull_and_status_move_the_whole_project(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.setenv("NEBULA_BUILD_CACHE_READONLY", "1")
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    monkeypatch.delenv("NEBULA_BUILD_CACHE_READONLY")

    code, out, _ = run_cli("cache", "status", cwd=first)
    assert code == 0
    assert "3 in the local cache, 0 in the remote cache" in out
    assert "3 only here" in out
    code, out, err = run_cli("cache", "push", cwd=first)
    assert code == 0, err
    assert "pushed 3, 0 already there, 0 failed" in out
    code, out, _ = run_cli("cache", "push", "--json", cwd=first)
    assert json.loads(out)["pushed"] == 0
    assert json.loads(out)["present"] == 3

    second = _checkout(tmp_path, "second", source=first)
    code, out, _ = run_cli("cache", "status", "--json", cwd=second)
    assert json.loads(out) == {
        "remote": remote,
        "writable": True,
        "images": 3,
        "generations": 3,
        "in_local": 0,
        "in_remote": 3,
        "only_local": 0,
        "only_remote": 3,
        "in_neither": 0,
        "earlier_only_local": 0,
    }
    code, out, err = run_cli("cache", "pull", cwd=second)
    assert code == 0, err
    assert "pulled 3" in out
    nebula_server.reset_counters()
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")  # now only the local cache
    code, out, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert nebula_server.requests == []
    assert _outputs(second) == _outputs(first)


def test_cache_commands_without_a_remote_say_how_to_name_one(
    project, run_cli, monkeypatch, nebula_server
):
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE", raising=False)
    project({"images.toml": nebula_manifest(IMAGES)})
    for verb in ("push", "pull"):
        code, _, err = run_cli("cache", verb)
        assert code == 1 and err.count("\n") == 1
        assert "[cache] remote" in err and "NEBULA_BUILD_CACHE_REMOTE" in err
    code, out, _ = run_cli("cache", "status")  # what there is here, and how to share it
    assert code == 0
    assert out.startswith("no remote cache: set [cache] remote (e.g. s3://bucket/prefix) or ")
    assert f"{len(IMAGES)} images, {len(IMAGES)} generations: 0 in the local cache\n" in out, out
    assert run_cli("apply").code == 0
    assert f"generations: {len(IMAGES)} in the local cache\n" in run_cli("cache", "status").out
    data = json.loads(run_cli("cache", "status", "--json").out)
    assert data["remote"] is None and data["in_local"] == len(IMAGES)


def test_a_file_remote_without_its_third_slash_says_how_to_write_it(project, run_cli, monkeypatch):
    """`file://relative/x` said the storage library's words: 'Generic URL error: Unable
    to recognise URL'."""
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "file://shared/cache")
    project({"images.toml": nebula_manifest(IMAGES)})
    code, out, err = run_cli("cache", "status")
    assert (code, out) == (1, "")
    assert err == (
        "error: NEBULA_BUILD_CACHE_REMOTE: takes a folder's absolute path after three slashes "
        "(file:///srv/cache): file://shared/… names a host 'shared'\n"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///tmp/shared", "only be named by NEBULA_BUILD_CACHE_REMOTE"),
        ("ftp://host/x", "must start with one of"),
        ("s3://key:secret@bucket/x", "must not carry credentials"),
    ],
)
def test_the_manifest_may_name_only_an_object_store(project, run_cli, monkeypatch, url, message):
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE", raising=False)
    text = nebula_manifest(IMAGES) + f'\n[cache]\nremote = "{url}"\n'
    project({"images.toml": text})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.toml" in err and "cache.remote" in err and message in err
    assert "secret" not in err or "must not carry credentials" in err


def test_a_shared_folder_from_the_environment_works_between_checkouts(
    tmp_path, run_cli, nebula_server, monkeypatch
):
    shared = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", shared.as_uri())
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, _, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert nebula_server.requests == []
    assert _outputs(second) == _outputs(first)


def test_an_output_change_in_a_checkout_with_its_files_is_restored_not_paid_for(
    tmp_path, run_cli, nebula_server, monkeypatch
):
    """A game keeps its sprites in git: a fresh runner has the files and the lock but no
    cache. An output option changed there needs the original, which the plan counts
    and the remote supplies; it is never a generation the plan did not announce."""
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", (tmp_path / "shared").as_uri())
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    second = _checkout(tmp_path, "second", source=first)
    shutil.copytree(first / "img", second / "img")
    changed = {**IMAGES, "logo": {**IMAGES["logo"], "quality": 50}}
    (second / "images.toml").write_text(nebula_manifest(changed))
    nebula_server.reset_counters()
    code, out, err = run_cli("plan", cwd=second)
    assert code == 0, err
    assert (
        "logo  restore  img/logo.webp\n      output options changed (from the remote cache)" in out
    )
    assert "Plan: 0 to generate" in out and "not cached" not in out
    code, out, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert nebula_server.requests == [] and "0 generated" in out

    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")
    third = _checkout(tmp_path, "third", source=first)
    shutil.copytree(first / "img", third / "img")
    (third / "images.toml").write_text(nebula_manifest(changed))
    code, out, _ = run_cli("plan", cwd=third)
    assert "logo  regenerate  img/logo.webp" in out
    assert "output options changed (its original is not cached)" in out
    assert "Plan: 1 to generate" in out


def test_the_manifests_remote_is_used_and_the_environment_wins(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")
    first = _checkout(tmp_path, "first")
    with (first / "images.toml").open("a") as manifest:
        manifest.write(f'\n[cache]\nremote = "{remote}"\n')
    assert run_cli("apply", cwd=first).code == 0
    assert _objects(remote) == []  # the manifest alone names a remote to read, not to write
    code, _, err = run_cli("cache", "push", cwd=first)
    assert code == 1
    assert "read-only here: the manifest names it" in err
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", remote)
    code, out, _ = run_cli("cache", "push", cwd=first)
    assert "pushed 3" in out
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")

    second = _checkout(tmp_path, "second", source=first)
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "")  # set but empty: no remote
    code, out, err = run_cli("plan", cwd=second)
    assert "from the remote cache" not in out
    assert "NEBULA_BUILD_CACHE_REMOTE is set but empty" in err
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")
    code, out, _ = run_cli("plan", cwd=second)
    assert out.count("(from the remote cache)") == 3


def test_concurrent_pushes_of_one_key_never_clobber_each_other(remote):
    from nebula_build.engine.remotecache import new_record
    from nebula_build.fsutil import sha256_bytes
    from nebula_build.state.remote import Remote

    key = "ab" * 32
    draws = [f"draw {n}".encode() * 100 for n in range(8)]
    results: list[str] = []

    def push(data: bytes) -> None:
        record = new_record(
            key, backend="nebula", model="m", data=data, digest=sha256_bytes(data), seed=None
        )
        results.append(Remote(remote, writable=True).push(record, data))

    threads = [threading.Thread(target=push, args=(data,)) for data in draws]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("uploaded") == 1
    assert sorted(results) == ["other"] * 7 + ["uploaded"]
    fetched = Remote(remote, writable=False).fetch(key)
    assert fetched is not None
    record, data = fetched
    assert data in draws and record.sha256 == sha256_bytes(data)
    again = new_record(key, backend="nebula", model="m", data=data, digest=record.sha256, seed=None)
    assert Remote(remote, writable=True).push(again, data) == "present"


@pytest.mark.parametrize(
    ("count", "one_listing"), [(5, 4000), (200, 4000), (200, 0)], ids=["heads", "list", "ranges"]
)
def test_lookup_finds_exactly_the_recorded_keys(remote, monkeypatch, count, one_listing):
    """Few keys are looked up one HEAD each, many by listing a small remote in one go
    or a large one in ranges side by side: the same answer."""
    import hashlib

    from nebula_build.engine.remotecache import new_record
    from nebula_build.state import remote as remote_module
    from nebula_build.state.remote import Remote

    monkeypatch.setattr(remote_module, "_ONE_LISTING", one_listing)
    keys = [hashlib.sha256(f"key {n}".encode()).hexdigest() for n in range(count * 2)]
    writer = Remote(remote, writable=True)
    data = b"bytes"
    for key in keys[::2]:
        record = new_record(key, backend="b", model="m", data=data, digest="0" * 64, seed=None)
        writer.push(record, data)
    asked = [*keys, "not a key", "AB" * 32]
    assert Remote(remote, writable=False).lookup(asked) == set(keys[::2])


def test_lookup_in_a_shared_folder_finds_exactly_the_recorded_keys(tmp_path):
    import hashlib

    from nebula_build.engine.remotecache import new_record
    from nebula_build.state.remote import Remote

    url = (tmp_path / "shared").as_uri()
    keys = [hashlib.sha256(f"key {n}".encode()).hexdigest() for n in range(300)]
    writer = Remote(url, writable=True)
    for key in keys[::3]:
        record = new_record(key, backend="b", model="m", data=b"x", digest="0" * 64, seed=None)
        writer.push(record, b"x")
    assert Remote(url, writable=False).lookup(keys) == set(keys[::3])


def _break_remote_bytes(url: str) -> None:
    """Delete every original the remote holds, leaving the records."""
    import obstore
    from obstore.store import from_url

    store = from_url(url)
    for path in _objects(url):
        if path.startswith("v1/cas/"):
            obstore.delete(store, path)


@pytest.mark.parametrize("cap", [["--locked"], ["--max-generations", "0"]])
def test_a_capped_apply_never_pays_for_a_restore_the_remote_failed(
    tmp_path, run_cli, nebula_server, remote, cap
):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    _break_remote_bytes(remote)
    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply", *cap, cwd=second)
    assert code == 1
    assert nebula_server.generations == []
    assert "not generated: the remote cache no longer has it" in out + err
    assert "--locked, --max-generations" in out + err


def test_the_manifest_alone_cannot_lift_a_cap_with_a_hostile_remote(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    """A pull request's manifest names a bucket holding records for its keys and no
    bytes: the plan counts no generations, and the apply must still pay for none."""
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    _break_remote_bytes(remote)
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE")
    second = _checkout(tmp_path, "second", source=first)
    with (second / "images.toml").open("a") as manifest:
        manifest.write(f'\n[cache]\nremote = "{remote}"\n')
    (second / "images.lock").unlink()
    nebula_server.reset_counters()
    code, _, _ = run_cli("apply", "--max-generations", "0", cwd=second)
    assert code == 1
    assert nebula_server.generations == []


def test_push_offers_only_entries_this_account_wrote_and_verified(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    """A pull request commits cache files for main's keys: push leaves them alone."""
    monkeypatch.setenv("NEBULA_BUILD_CACHE_READONLY", "1")
    honest = _checkout(tmp_path, "honest")
    assert run_cli("apply", cwd=honest).code == 0
    monkeypatch.delenv("NEBULA_BUILD_CACHE_READONLY")
    hostile = _checkout(tmp_path, "hostile", source=honest)
    shutil.copytree(honest / ".nebula-build/cache", hostile / ".nebula-build/cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-account"))
    code, out, err = run_cli("cache", "push", cwd=hostile)
    assert code == 0, err
    assert "pushed 0, 0 already there, 3 left alone" in out
    assert "not written by nebula-build on this account" in err
    assert _objects(remote) == []


def test_push_refuses_a_sealed_entry_that_is_not_an_image(tmp_path, run_cli, remote):
    from nebula_build.state.cache import Store

    root = _checkout(tmp_path, "first")
    code, out, _ = run_cli("plan", "--json", "--offline", cwd=root)
    key = json.loads(out)["actions"][0]["generation_key"]
    Store(root / ".nebula-build/cache").put(key, b"not an image at all")
    code, out, err = run_cli("cache", "push", cwd=root)
    assert code == 1
    assert "not a sound image" in err
    assert _objects(remote) == []


def test_push_repairs_a_record_whose_bytes_are_gone(tmp_path, run_cli, nebula_server, remote):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    _break_remote_bytes(remote)
    code, out, err = run_cli("cache", "push", cwd=first)
    assert code == 0, err
    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    assert run_cli("apply", cwd=second).code == 0
    assert nebula_server.requests == []


def test_a_hanging_remote_is_given_up_on_and_secrets_stay_out_of_messages(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://minio:hunter2pw@127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-access-key-value")
    root = _checkout(tmp_path, "first")
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert "hunter2pw" not in out + err and "s3cr3t-access-key-value" not in out + err
    assert "remote cache" in err


def test_a_remote_stops_being_asked_after_repeated_failures(monkeypatch):
    from nebula_build.state.remote import Remote, RemoteError

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    dead = Remote("s3://bucket/x", writable=False)
    for _ in range(3):
        with pytest.raises(RemoteError, match=r"remote cache s3://bucket/x: downloading: "):
            dead.record("ab" * 32)
    asked: list[Remote] = []  # the store is opened for a request: none may be sent now
    monkeypatch.setattr(Remote, "store", property(asked.append))
    with pytest.raises(RemoteError, match="gave up after repeated failures"):
        dead.record("ab" * 32)
    assert asked == []


def test_an_endless_listing_is_cut_short(remote, monkeypatch):
    import hashlib

    from nebula_build.engine.remotecache import new_record
    from nebula_build.state import remote as remote_module
    from nebula_build.state.remote import Remote, RemoteError

    writer = Remote(remote, writable=True)
    keys = [hashlib.sha256(f"{n}".encode()).hexdigest() for n in range(100)]
    for key in keys[:10]:
        writer.push(
            new_record(key, backend="b", model="m", data=b"x", digest="0" * 64, seed=None), b"x"
        )
    monkeypatch.setattr(remote_module, "_LIST_LIMIT", 5)
    with pytest.raises(RemoteError, match="over 5 records"):
        Remote(remote, writable=False).lookup(keys)


def test_a_checkouts_legacy_cache_entry_never_becomes_ours(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    """Entries without metadata (as 0.1 wrote them) are verified by decoding when
    restored, and recorded again: still not this account's, so never pushed."""
    monkeypatch.setenv("NEBULA_BUILD_CACHE_READONLY", "1")
    honest = _checkout(tmp_path, "honest")
    assert run_cli("apply", cwd=honest).code == 0
    hostile = _checkout(tmp_path, "hostile", source=honest)
    shutil.copytree(honest / ".nebula-build/cache", hostile / ".nebula-build/cache")
    for meta in (hostile / ".nebula-build/cache").glob("??/*.json"):
        meta.unlink()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-account"))
    code, out, _ = run_cli("plan", cwd=hostile)
    # files that came with the checkout are not counted as paid for: the plan (and the
    # question before a paid run) counts them as generations...
    assert "3 to generate, 0 to delete" in out
    nebula_server.reset_counters()
    code, _, err = run_cli("apply", cwd=hostile)
    assert code == 0, err
    assert nebula_server.generations == []  # ...and apply still restores what is sound
    monkeypatch.delenv("NEBULA_BUILD_CACHE_READONLY")
    code, out, _ = run_cli("cache", "push", cwd=hostile)
    assert "pushed 0, 0 already there, 3 left alone" in out
    assert _objects(remote) == []


def test_watch_once_uses_the_remote_and_offline_leaves_it_alone(
    tmp_path, run_cli, nebula_server, remote
):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    offline = _checkout(tmp_path, "offline", source=first)
    nebula_server.reset_counters()
    assert run_cli("watch", "--once", "--offline", cwd=offline).code == 0
    assert len(nebula_server.generations) == 3
    online = _checkout(tmp_path, "online", source=first)
    nebula_server.reset_counters()
    assert run_cli("watch", "--once", cwd=online).code == 0
    assert nebula_server.requests == []
    assert _outputs(online) == _outputs(first)


def test_a_plain_http_endpoint_without_allow_http_says_what_to_set(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    root = _checkout(tmp_path, "first")
    code, out, err = run_cli("cache", "status", cwd=root)
    assert code == 1
    assert "needs AWS_ALLOW_HTTP=true" in err


def test_a_generation_kept_from_a_hand_edit_is_still_shared(
    tmp_path, run_cli, nebula_server, remote, monkeypatch
):
    """hero's file appears by hand while its generation is written: the file is kept,
    and what was paid for goes to the remote cache as the others do."""
    from nebula_build.engine import apply

    first = _checkout(tmp_path, "first")
    render = apply.render_checked

    def editing(data, encoding, **kwargs):
        rendered = render(data, encoding, **kwargs)
        hero = first / "img/hero.png"
        if not hero.exists():
            hero.parent.mkdir(parents=True, exist_ok=True)
            hero.write_bytes(b"made by hand meanwhile")
        return rendered

    monkeypatch.setattr(apply, "render_checked", editing)
    code, _, err = run_cli("apply", cwd=first)
    assert code == 1 and "img/hero.png: changed by hand during the apply" in err, err
    assert (first / "img/hero.png").read_bytes() == b"made by hand meanwhile"
    assert len(nebula_server.generations) == 3
    assert sum(path.startswith("v1/ac/") for path in _objects(remote)) == 3
