"""A remote cache's URL is named by scheme, host and path, never by what may carry a
credential: a user name and password, a query (a signed URL's `?X-Amz-Signature=…`,
`?sig=…`) or a token in its path. They reached the CI log, the job summary and --json
as written ("remote cache s3://b/ghp_…/cache?sig=…: …")."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.manifests import PREVIEW

pytest.importorskip("obstore")

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2  # a token in the path, as a proxy's prefix
SIGNATURE = "Zk9x2Qm7Lp4Rt8Wv1Ys6"
HERO = '[images.hero]\nprompt = "a calm sea"\noutput = "hero.png"\n'


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secret_free(root: Path, *texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, SIGNATURE):
            assert secret not in text, text
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (TOKEN, SIGNATURE):
                assert secret.encode() not in data, path


def test_a_shared_folder_is_named_without_its_token_or_query(
    project, run_cli, tmp_path, monkeypatch
):
    root = project({"images.toml": PREVIEW + HERO})
    summary = tmp_path / "summary.md"
    url = f"file://{tmp_path}/shared/{TOKEN}/cache?sig={SIGNATURE}"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", url)
    monkeypatch.delenv("NEBULA_BUILD_CACHE_READONLY", raising=False)
    shown = f"file://{tmp_path}/shared/…/cache"
    said: list[str] = []
    code, out, err = run_cli("apply")
    assert code == 0, err
    said += [out, err]
    code, out, err = run_cli("cache", "status")
    assert code == 0, err
    assert f"remote cache: {shown} (read-write)" in out
    said += [out, err]
    code, out, err = run_cli("cache", "status", "--json")
    assert code == 0 and json.loads(out)["remote"] == shown, err
    said += [out, err]
    code, out, err = run_cli("cache", "push")
    assert code == 0 and out.startswith(f"{shown}: pushed 0, 1 already there"), out + err
    said += [out, err]
    monkeypatch.setenv("NEBULA_BUILD_CACHE_READONLY", "1")
    code, out, err = run_cli("cache", "push")
    assert code == 1 and f"error: remote cache {shown} is read-only here" in err, err
    said += [out, err]
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (root / "hero.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0, err
    said += [out, err, summary.read_text()]
    _secret_free(root, *said)


def test_a_store_that_fails_is_named_without_its_token_or_query(
    project, run_cli, tmp_path, monkeypatch
):
    """The store's own error quotes the object's address, the token of the path in it:
    "Error performing HEAD http://127.0.0.1:9/bucket/ghp_…/cache/v1/ac/…"."""
    root = project({"images.toml": PREVIEW + HERO})
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "NEBULA_BUILD_CACHE_REMOTE": f"s3://bucket/{TOKEN}/cache?X-Amz-Signature={SIGNATURE}",
    }.items():
        monkeypatch.setenv(name, value)
    said: list[str] = []
    for argv in (("plan",), ("apply",), ("cache", "status"), ("cache", "push", "--json")):
        code, out, err = run_cli(*argv)
        said += [out, err]
    assert "note: remote cache s3://bucket/…/cache: looking up a key: " in said[1], said[1]
    assert "error: remote cache s3://bucket/…/cache: " in said[5], said[5]
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")  # the notes go to the job summary too
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (root / "images.toml").write_text(PREVIEW + HERO.replace("calm", "rough"))
    code, out, err = run_cli("apply")
    assert code == 0 and "::notice" in out and "s3://bucket/…/cache" in summary.read_text()
    _secret_free(root, *said, out, err, summary.read_text())


def test_a_remote_the_manifest_names_is_said_without_its_token(project, run_cli, monkeypatch):
    """Read-only (the manifest alone names it): the hint to set the variable names no
    token either; the manifest itself holds it, so only what is said is checked."""
    remote = f'[cache]\nremote = "s3://bucket/{TOKEN}/cache?sig={SIGNATURE}"\n\n'
    project({"images.toml": PREVIEW + remote + HERO})
    monkeypatch.delenv("NEBULA_BUILD_CACHE_REMOTE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    code, out, err = run_cli("cache", "push")
    assert (code, out) == (1, ""), out
    assert err == (
        "error: remote cache s3://bucket/…/cache is read-only here: the manifest names it; "
        "set NEBULA_BUILD_CACHE_REMOTE to the manifest's [cache] remote where uploads "
        "should happen\n"
    )
