"""A request that timed out was sent: the server may have done the work and billed it.
The manifest, a pull request's too, sets both `timeout` and `max_attempts`, so a low
timeout with 20 attempts had paid 20 times for every image outside a capped apply.
Now a timed-out request is sent again once, or as often as NEBULA_TIMEOUT_RETRIES in
the environment allows; other failures keep the manifest's max_attempts, but those that
also leave a sent request unanswered (test_nebula_unanswered_retries.py)."""

from __future__ import annotations

import pytest

from tests.conftest import nebula_manifest

ONE = {"a": {"prompt": "a lighthouse", "output": "a.png"}}
#: a server that takes the request and does not answer while the test runs
NEVER = "slow:30"


def apply_against_a_silent_server(project, run_cli, nebula_server, *args: str):
    project({"images.toml": nebula_manifest(ONE, timeout=1, max_attempts=20)})
    nebula_server.add_faults(*[NEVER] * 20)
    return run_cli("apply", *args)


def test_a_timed_out_request_is_sent_twice_at_most(project, run_cli, nebula_server):
    """Before: 20 requests, each of which the server may have billed."""
    code, _, err = apply_against_a_silent_server(project, run_cli, nebula_server)
    assert code == 1
    assert len(nebula_server.generations) == 2
    assert (
        "a: timed out after 1s; raise [backends.nebula] timeout if generations take longer "
        "(after 2 attempts; a request that was sent and not answered may have been billed, "
        "so it is sent again once at most; NEBULA_TIMEOUT_RETRIES=N in the environment "
        "allows N)"
    ) in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("allowed", "sent", "said"), [("0", 1, "not sent again"), ("2", 3, "")])
def test_the_environment_says_how_often_a_timed_out_request_is_sent_again(
    project, run_cli, nebula_server, monkeypatch, allowed, sent, said
):
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", allowed)
    code, _, err = apply_against_a_silent_server(project, run_cli, nebula_server)
    assert code == 1
    assert len(nebula_server.generations) == sent
    assert said in err
    if allowed == "2":
        assert "(after 3 attempts; a request that was sent and not answered may have " in err
        assert "is sent again 2 times at most;" in err


def test_a_capped_apply_sends_a_timed_out_request_once_whatever_the_environment_says(
    project, run_cli, nebula_server, monkeypatch
):
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", "5")
    code, _, err = apply_against_a_silent_server(
        project, run_cli, nebula_server, "--max-generations", "1"
    )
    assert code == 1
    assert len(nebula_server.generations) == 1
    assert "a capped apply never pays twice for one image" in err


def test_other_failures_keep_the_manifests_attempts(project, run_cli, nebula_server):
    """Rate limits and server errors are retried as max_attempts says; only the
    timeouts (and a gateway's 502 or 504) are counted against the environment's allowance."""
    root = project({"images.toml": nebula_manifest(ONE, timeout=1, max_attempts=20)})
    nebula_server.add_faults("429:0", "500", NEVER, "500", "503", "429:0")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(nebula_server.generations) == 7
    assert (root / "a.png").exists()


@pytest.mark.parametrize("value", ["lots", "-1", "20", "1.5"])
def test_a_bad_value_is_one_line_before_any_request(
    project, run_cli, nebula_server, monkeypatch, value
):
    monkeypatch.setenv("NEBULA_TIMEOUT_RETRIES", value)
    code, out, err = apply_against_a_silent_server(project, run_cli, nebula_server)
    assert code == 1
    assert f"NEBULA_TIMEOUT_RETRIES is {value!r}: set it to how many times a request" in err, err
    assert "Traceback" not in out + err
    assert nebula_server.generations == []


@pytest.mark.parametrize("status", ["502", "504"])
def test_a_gateways_error_is_sent_again_once(project, run_cli, nebula_server, status):
    """A gateway's 502 or 504 says the server behind it took the request and gave no
    answer: it may have done and billed it, so the manifest's max_attempts is not trusted."""
    root = project({"images.toml": nebula_manifest(ONE, max_attempts=20, retry_backoff=0)})
    nebula_server.add_faults(*[status] * 20)
    code, _, err = run_cli("apply")
    assert code == 1
    assert len(nebula_server.generations) == 2
    assert f"HTTP {status}" in err and "may have been billed" in err
    assert not (root / "a.png").exists()
