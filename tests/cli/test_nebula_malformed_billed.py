"""A 200 whose image cannot be read (not the documented JSON, bad base64, bytes that are
no image, corrupt compression) was taken by the server, which may have billed it: it is
not sent again in that run, and its one line says so and how to try again. What the
server did not do (a rate limit, a server error) is still retried."""

from __future__ import annotations

import pytest

from tests.conftest import nebula_manifest

IMAGES = {
    "ok": {"prompt": "fine", "output": "ok.png"},
    "hit": {"prompt": "unlucky", "output": "hit.png"},
}
BILLED = (
    " (the request may have been billed, so it is not sent again: "
    "run apply again to try it once more)"
)


def _asked(nebula_server, prompt: str) -> int:
    return [r.body.get("prompt") for r in nebula_server.generations].count(prompt)


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("malformed_json", "hit: malformed response: not JSON"),
        ("bad_base64", f"hit: malformed response: bad base64 in b64_json{BILLED}"),
        (
            "not_image",
            f"hit: malformed response: an HTML page, not a PNG, JPEG or WebP image{BILLED}",
        ),
        ("truncated_image", "hit: malformed response: "),
        ("bad_gzip", "hit: malformed response: corrupt gzip data"),
        (
            "huge_success:65",
            f"hit: the answer is over 64 MiB, more than any image: not read further{BILLED}",
        ),
    ],
)
def test_a_malformed_answer_is_not_sent_again_and_says_it_may_be_billed(
    fault, said, project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest(IMAGES, max_attempts=5)})
    nebula_server.add_faults(fault, prompt="unlucky")
    code, out, err = run_cli("apply", "--yes")
    assert code == 1 and "Traceback" not in out + err
    assert _asked(nebula_server, "unlucky") == 1
    (line,) = [line for line in err.splitlines() if line.startswith("  hit: ")]
    assert line.strip().startswith(said) and line.endswith(BILLED), line
    assert (root / "ok.png").is_file() and not (root / "hit.png").exists()
    code, _, err = run_cli("apply", "--yes")  # what the line says to do
    assert code == 0, err
    assert _asked(nebula_server, "unlucky") == 2 and (root / "hit.png").is_file()


@pytest.mark.parametrize("fault", ["429:0", "503", "retry_after:0", "drop"])
def test_what_the_server_did_not_answer_with_an_image_is_still_retried(
    fault, project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_manifest(IMAGES)})
    nebula_server.add_faults(fault, prompt="unlucky")
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert _asked(nebula_server, "unlucky") == 2 and (root / "hit.png").is_file()
