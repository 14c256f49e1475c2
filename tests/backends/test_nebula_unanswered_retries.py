"""A request that was sent and got no answer may have been done and billed by the server,
whatever broke: a timeout, a connection reset once the request was read, a connection
closed without an answer or in the middle of one. Each used to be retried up to the
manifest's `max_attempts` (20 paid requests an image at worst) but the timeout; now
all of them are sent again once, or as often as NEBULA_TIMEOUT_RETRIES allows. A
connection that never reached the server (refused, unknown host) costs nothing and
keeps `max_attempts`."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import CANARY_KEY, nebula_manifest

ONE = {"a": {"prompt": "a lighthouse", "output": "a.png"}}
#: reset once the request is read, closed without an answer, reset in the middle of one
UNANSWERED = ["drop", "hang_up", "reset"]
BILLED = "a request that was sent and not answered may have been billed, so it is sent again "


def apply_against(project, run_cli, nebula_server, fault: str):
    project({"images.toml": nebula_manifest(ONE, timeout=5, max_attempts=6)})
    nebula_server.add_faults(*[fault] * 6)
    return run_cli("apply")


@pytest.mark.parametrize("fault", UNANSWERED)
def test_a_request_left_unanswered_is_sent_twice_at_most(project, run_cli, nebula_server, fault):
    """Before: 6 requests (max_attempts), each of which the server may have billed."""
    code, out, err = apply_against(project, run_cli, nebula_server, fault)
    assert code == 1
    assert len(nebula_server.generations) == 2
    assert "a: connection to 127.0.0.1:" in err, err
    assert (
        f"(after 2 attempts; {BILLED}once at most; "
        "NEBULA_TIMEOUT_RETRIES=N in the environment allows N)"
    ) in err, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("fault", UNANSWERED)
def test_none_allowed_sends_a_request_left_unanswered_once(
    project, run_cli, nebula_server, monkeypatch, fault
):
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", "0")
    code, _, err = apply_against(project, run_cli, nebula_server, fault)
    assert code == 1
    assert len(nebula_server.generations) == 1
    assert f"{BILLED}" not in err  # one attempt: nothing was sent again
    assert "may have been billed, so it is not sent again;" in err, err


def test_a_timeout_and_a_reset_count_together(project, run_cli, nebula_server):
    project({"images.toml": nebula_manifest(ONE, timeout=1, max_attempts=6)})
    nebula_server.add_faults("slow:30", "drop", "drop")
    code, _, err = run_cli("apply")
    assert code == 1
    assert len(nebula_server.generations) == 2
    assert f"(after 2 attempts; {BILLED}once at most;" in err, err


def test_one_unanswered_request_sent_again_makes_the_image(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest(ONE, timeout=5, max_attempts=6)})
    nebula_server.add_faults("drop", "500", "429:0")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(nebula_server.generations) == 4
    assert (root / "a.png").exists()


def test_a_refused_connection_keeps_the_manifests_attempts(project, run_cli, monkeypatch):
    """Nothing reached a server, so nothing was billed: max_attempts, not the allowance."""
    with socket.socket() as closed:  # a port nothing listens on once this closes
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("NEBULA_BASE_URL", f"http://127.0.0.1:{port}/api/v1")
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", "0")
    project({"images.toml": nebula_manifest(ONE, max_attempts=4)})
    code, _, err = run_cli("apply")
    assert code == 1
    assert f"a: connection to 127.0.0.1:{port} failed: ConnectError" in err, err
    assert "(after 4 attempts)" in err, err
    assert "billed" not in err
