"""No surprise bills (issue 12): the plan shows generations per backend and model with
their estimated cost; apply prints the plan, refuses a run over --max-cost or over the
account's balance before spending anything, and on a terminal asks first."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from nebula_build.engine import prices
from nebula_build.state.project import Project
from tests.conftest import CANARY_KEY, nebula_manifest

REPO = Path(__file__).resolve().parents[2]
FLUX = "black-forest-labs/FLUX.1-schnell"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
TWO = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
PRICED = {"prices": {f'"{FLUX}"': 0.003}}  # a TOML key, quoted
#: a list cached for the loopback server: fetched where a stand-in for the API may
#: answer (`PriceList.stand_in`), as every list these tests fetch is
ON_LOOPBACK = True


@pytest.fixture(autouse=True)
def provider_agrees(request):
    """The provider's list prices FLUX as PRICED does: a configured price can only
    raise the provider's (see the tests of that), so most tests keep them equal."""
    if "nebula_server" in request.fixturenames:
        request.getfixturevalue("nebula_server").prices[FLUX] = 0.003


def preview(manifest: str) -> str:
    """The manifest on the preview backend: free."""
    return manifest.replace('backend = "nebula"', 'backend = "preview"')


def paid_project(project, images=TWO, **settings) -> Path:
    return project({"images.toml": nebula_manifest(images, **settings)})


# --- the estimate in the plan ----------------------------------------------------------


def test_configured_prices_give_the_estimate_without_asking_the_network(
    project, run_cli, nebula_server
):
    images = TWO | {"c": {"prompt": "three", "output": "c.png", "backend": "preview"}}
    paid_project(project, images, **PRICED)
    code, out, _ = run_cli("plan")
    assert code == 0
    assert out.splitlines()[-1] == (
        f"Generations: 2 on nebula (2 × {FLUX} at $0.003 per the manifest), 1 on preview "
        f"(1 × {FLUX}, free); estimated cost $0.006."
    )
    cost = json.loads(run_cli("plan", "--json").out)["cost"]
    assert (cost["total"], cost["paid_generations"], cost["currency"]) == (0.006, 2, "USD")
    assert cost["lines"][0] == {
        "backend": "nebula",
        "model": FLUX,
        "generations": 2,
        "paid": True,
        "price": 0.003,
        "subtotal": 0.006,
        "source": "configured",
        "confirmed": False,  # only the manifest says so: an estimate, not for --max-cost
    }
    assert nebula_server.requests == []  # plan never goes to the network


def test_a_free_backend_shows_no_cost(project, run_cli):
    project({"images.toml": preview(nebula_manifest(TWO))})
    out = run_cli("plan").out
    assert out.splitlines()[-1] == f"Generations: 2 on preview (2 × {FLUX}, free)."
    assert "cost" not in out.splitlines()[-1]


def test_the_price_list_is_fetched_cached_with_its_date_and_reused(project, run_cli, nebula_server):
    root = paid_project(project)
    code, out, _ = run_cli("plan")
    assert "at an unknown price" in out and "estimated cost unknown" in out  # nothing cached
    nebula_server.prices[FLUX] = 0.004
    code, out, err = run_cli("apply", "--target", "a")
    assert code == 0, err
    assert f"1 × {FLUX} at $0.004); estimated cost $0.004." in out
    assert [r.path for r in nebula_server.requests].count("/api/v1/serverless/models") == 1
    cached = prices.load(Project(root, root / "images.toml"))["nebula"]
    assert cached.prices[FLUX] == 0.004
    assert prices.now() - cached.fetched < timedelta(minutes=1)

    nebula_server.reset_counters()
    nebula_server.prices[FLUX] = 0.005  # not asked again within the day
    cost = json.loads(run_cli("plan", "--json").out)["cost"]
    assert cost["lines"][0]["price"] == 0.004
    assert cost["lines"][0]["source"] == f"price list of {cached.fetched.date()}"
    assert run_cli("apply").code == 0
    assert "/api/v1/serverless/models" not in [r.path for r in nebula_server.requests]


def test_a_price_list_over_a_day_old_is_fetched_again(project, run_cli, nebula_server):
    root = paid_project(project)
    state = Project(root, root / "images.toml")
    old = prices.now() - timedelta(days=2)
    prices.save(state, {"nebula": prices.PriceList({FLUX: 0.001}, old, ON_LOOPBACK)})
    assert "at $0.001" in run_cli("plan").out  # plan uses what it has
    nebula_server.prices[FLUX] = 0.002
    code, out, _ = run_cli("apply")
    assert code == 0 and "at $0.002" in out
    assert prices.load(state)["nebula"].prices[FLUX] == 0.002


def test_a_price_cache_that_came_with_a_checkout_is_not_believed(project, run_cli, nebula_server):
    root = paid_project(project)
    forged = {
        "format": 1,
        "backends": {"nebula": {"fetched": prices.now().isoformat(), "prices": {FLUX: 0}}},
    }
    (root / ".nebula-build").mkdir()
    (root / ".nebula-build/prices.json").write_text(json.dumps(forged))
    assert "estimated cost unknown" in run_cli("plan").out
    code, _, err = run_cli("apply", "--max-cost", "0.001")
    assert code == 1 and "more than --max-cost $0.001" in err  # the server's $0.009 each
    assert nebula_server.generations == []


@pytest.mark.parametrize("fault", ["500", "malformed_json", "403"])
def test_an_unknown_price_is_a_warning_and_the_run_goes_on(fault, project, run_cli, nebula_server):
    paid_project(project)
    nebula_server.add_model_list_faults(fault)
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "note: nebula: could not fetch its price list" in err
    assert "estimated cost unknown" in out
    assert len(nebula_server.generations) == 2
    assert CANARY_KEY not in out + err


def test_a_model_missing_from_the_price_list_has_an_unknown_price(project, run_cli, nebula_server):
    images = {"a": {"prompt": "one", "output": "a.png"}, "s": {"prompt": "x", "model": SDXL}}
    images["s"]["output"] = "s.png"
    paid_project(project, images)
    del nebula_server.prices[SDXL]
    nebula_server.prices[FLUX] = 0.009
    code, out, _ = run_cli("apply")
    assert code == 0
    assert (
        f"(1 × {FLUX} at $0.009, 1 × {SDXL} at an unknown price); estimated cost at least "
        "$0.009 (1 generation at an unknown price)."
    ) in out


# --- refusals before anything is spent ---------------------------------------------------


def test_max_cost_refuses_a_run_over_it_before_any_request(project, run_cli, nebula_server):
    root = paid_project(project, **PRICED)
    code, out, err = run_cli("apply", "--max-cost", "0.005")
    assert code == 1
    assert err.splitlines() == [
        "error: this apply would cost an estimated $0.006 (2 paid generations), more "
        "than --max-cost $0.005; nothing was generated"
    ]
    # the provider's price list is read (configured prices are checked against it);
    # nothing is generated
    assert nebula_server.generations == [] and not (root / "a.png").exists()
    assert [r.path for r in nebula_server.requests] == ["/api/v1/serverless/models"]
    assert run_cli("apply", "--max-cost", "$0.006").code == 0  # at the cap is under it


@pytest.mark.parametrize(
    ("flags", "balance", "why"),
    [
        (["--max-generations", "1"], None, "more than --max-generations 1"),
        (["--max-cost", "0.005"], None, "more than --max-cost $0.005"),
        ([], "0.00500", "less than this apply's estimated $0.006"),
    ],
    ids=["max-generations", "max-cost", "balance"],
)
def test_an_apply_a_guard_refuses_prints_the_plan_it_refused(
    flags, balance, why, project, run_cli, nebula_server
):
    """A CI job's log (GitLab has no job summary) names the images the budget
    stopped, as `--locked` and an apply that goes on do, not only how many."""
    paid_project(project, **PRICED)
    if balance is not None:
        nebula_server.balance = balance
    code, out, err = run_cli("apply", "--yes", *flags)
    assert code == 1 and why in err
    assert "  + a  create  a.png" in out and "  + b  create  b.png" in out
    assert "Plan: 2 to generate, 0 to delete." in out
    assert "estimated cost $0.006" in out
    assert nebula_server.generations == []


def test_an_apply_refused_under_json_prints_no_plan_beside_the_error(
    project, run_cli, nebula_server
):
    paid_project(project, **PRICED)
    code, out, _ = run_cli("apply", "--json", "--max-generations", "1")
    assert code == 1 and "create" not in out
    assert json.loads(out)["error"]["message"].startswith("this apply would generate 2")


def test_max_cost_adds_prices_as_written(project, run_cli, nebula_server):
    images = {n: {"prompt": n, "output": f"{n}.png"} for n in "abc"}
    paid_project(project, images, prices={f'"{FLUX}"': 0.1})
    assert run_cli("apply", "--max-cost", "0.3").code == 0  # 3 × 0.1 is 0.3, not 0.30…04


def test_max_cost_refuses_a_run_whose_price_is_unknown(project, run_cli, nebula_server):
    paid_project(project)
    nebula_server.prices.clear()
    code, _, err = run_cli("apply", "--max-cost", "10")
    assert code == 1
    assert f"--max-cost $10.00: the price of {FLUX} on nebula is unknown" in err
    assert "nothing was generated" in err and nebula_server.generations == []


def test_max_cost_lets_free_generations_through(project, run_cli):
    project({"images.toml": preview(nebula_manifest(TWO))})
    assert run_cli("apply", "--max-cost", "0").code == 0


@pytest.mark.parametrize("amount", ["-1", "nan", "inf", "lots"])
def test_max_cost_must_be_an_amount(amount, project, run_cli):
    project({"images.toml": nebula_manifest(TWO)})
    assert run_cli("apply", "--max-cost", amount).code == 1


def test_a_balance_below_the_estimate_is_refused_before_any_generation(
    project, run_cli, nebula_server
):
    root = paid_project(project, **PRICED)
    nebula_server.balance = "0.00500"
    code, _, err = run_cli("apply")
    assert code == 1
    assert err.splitlines() == [
        "error: the nebula account's balance is $0.005, less than this apply's estimated "
        "$0.006; nothing was generated: top up the account, or generate fewer images "
        "(--target, --max-generations)"
    ]
    assert [r.path for r in nebula_server.requests] == [
        "/api/v1/serverless/models",
        "/api/v1/users/credits",
    ]
    assert not (root / "a.png").exists()
    nebula_server.balance = "0.00600"
    assert run_cli("apply").code == 0


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("500", "HTTP 500"),
        ("slow:2", "no answer within 0.5s"),
        ("malformed_json", "the answer is not JSON"),
        ("403", "NEBULA_API_KEY was rejected (HTTP 403"),  # this page, not the key
    ],
)
def test_a_balance_that_cannot_be_read_is_a_warning(fault, said, project, run_cli, nebula_server):
    paid_project(project, timeout=0.5, **PRICED)
    nebula_server.balance = "0"  # never seen: the answer fails
    nebula_server.add_credits_faults(fault)
    code, out, err = run_cli("apply")
    assert code == 0, err
    warning = next(line for line in err.splitlines() if "balance" in line)
    assert warning.startswith("note: nebula: could not check the account's balance (")
    assert said in warning
    assert len(nebula_server.generations) == 2
    assert CANARY_KEY not in out + err


def test_a_manifest_cannot_price_a_paid_model_below_the_provider(project, run_cli, nebula_server):
    """A pull request's manifest prices the model at 0 (or a fraction of a cent) to pass
    --max-cost: the provider's price is checked and the higher one counts."""
    nebula_server.prices[FLUX] = 0.009
    for price in (0, 0.000001):
        paid_project(project, prices={f'"{FLUX}"': price})
        code, out, err = run_cli("apply", "--yes", "--max-cost", "0.01")
        assert code == 1
        assert "estimated $0.018" in err
        assert nebula_server.generations == []


def test_a_price_of_zero_on_a_paid_backend_is_unknown(project, run_cli, nebula_server):
    nebula_server.prices[FLUX] = 0
    paid_project(project)
    code, _, err = run_cli("apply", "--yes", "--max-cost", "1")
    assert code == 1 and "unknown" in err
    assert nebula_server.generations == []


@pytest.mark.parametrize("price", [1e-300, 0.00009])
def test_a_listed_price_under_a_hundredth_of_a_cent_is_unknown_to_max_cost(
    price, project, run_cli, nebula_server, monkeypatch
):
    """A server prices the model at 1e-300 (shown as $0.00) to slip any run under
    --max-cost: under the floor, the list's price is not believed; the environment's is."""
    nebula_server.prices[FLUX] = price
    paid_project(project)
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: --max-cost $0.01: the price of {FLUX} on nebula is unknown: the provider's "
        f"price list says {price:g}, under $0.0001 an image, which --max-cost does not "
        "believe, so this apply cannot be shown to stay under it "
        f'(set NEBULA_BUILD_PRICES="{FLUX}=<price>" in the environment); nothing was generated'
    )
    assert f"2 × {FLUX} at an unknown price" in run_cli("plan").out  # not $0.00
    paid_project(project, prices={f'"{FLUX}"': 0.001})  # the manifest alone: still not enough
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1 and "comes only from the manifest" in err
    assert f"does not confirm it: it says {price:g}, under $0.0001 an image" in err
    assert nebula_server.generations == []
    monkeypatch.setenv("NEBULA_BUILD_PRICES", f"{FLUX}=0.003")
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 0, err
    assert len(nebula_server.generations) == 2


def test_a_listed_price_at_the_floor_is_believed(project, run_cli, nebula_server):
    nebula_server.prices[FLUX] = 0.0001
    paid_project(project)
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 0, err
    assert len(nebula_server.generations) == 2


# --- a price --max-cost trusts -----------------------------------------------------------


def _unconfirmed(how: str, nebula_server) -> None:
    """Leave the provider's list unable to confirm FLUX's price."""
    if how == "the list fails":
        nebula_server.add_model_list_faults("500")
    else:
        del nebula_server.prices[FLUX]


@pytest.mark.parametrize("how", ["the list fails", "the list lacks it"])
def test_max_cost_does_not_trust_a_price_only_the_manifest_gives(
    how, project, run_cli, nebula_server
):
    """A pull request prices the model at a fraction of a cent where the provider's list
    cannot say otherwise: under --max-cost that price is not enough, nothing is paid."""
    paid_project(project, prices={f'"{FLUX}"': 0.000001})
    _unconfirmed(how, nebula_server)
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: --max-cost $0.01: the price of {FLUX} on nebula comes only from the "
        "manifest, which --max-cost does not trust, and the provider's price list does not "
        f'confirm it (set NEBULA_BUILD_PRICES="{FLUX}=<price>" in the environment); '
        "nothing was generated"
    )
    assert nebula_server.generations == []


@pytest.mark.parametrize("how", ["the list fails", "the list lacks it"])
def test_max_cost_trusts_a_price_from_the_environment(
    how, project, run_cli, nebula_server, monkeypatch
):
    paid_project(project, prices={f'"{FLUX}"': 0.000001})
    _unconfirmed(how, nebula_server)
    monkeypatch.setenv("NEBULA_BUILD_PRICES", f"{FLUX}=0.009, {SDXL}=0.02")
    code, out, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1 and "estimated $0.018" in err  # the environment's price counts
    assert nebula_server.generations == []
    code, out, err = run_cli("apply", "--yes", "--max-cost", "0.02")
    assert code == 0, err
    assert f"2 × {FLUX} at $0.009 per NEBULA_BUILD_PRICES" in out
    assert len(nebula_server.generations) == 2


def test_an_environment_price_cannot_lower_the_providers(
    project, run_cli, nebula_server, monkeypatch
):
    nebula_server.prices[FLUX] = 0.009
    paid_project(project)
    monkeypatch.setenv("NEBULA_BUILD_PRICES", f"{FLUX}=0.001")
    code, _, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1 and "estimated $0.018" in err
    assert nebula_server.generations == []


@pytest.mark.parametrize("value", [FLUX, f"{FLUX}=0", f"{FLUX}=lots", "x`y=0.1", f"{FLUX}=inf"])
def test_a_malformed_environment_price_is_one_line(value, project, run_cli, monkeypatch):
    paid_project(project)
    monkeypatch.setenv("NEBULA_BUILD_PRICES", value)
    code, out, err = run_cli("plan")
    assert code == 1
    assert err.startswith("error: NEBULA_BUILD_PRICES: ") and len(err.splitlines()) == 1
    assert "is not MODEL=PRICE" in err


def test_plan_shows_a_manifest_price_as_an_estimate_and_says_so(project, run_cli):
    paid_project(project, prices={f'"{FLUX}"': 0.004})
    out = run_cli("plan").out
    assert f"(2 × {FLUX} at $0.004 per the manifest); estimated cost $0.008." in out


def test_a_price_list_that_lacks_a_model_is_fetched_again_at_most_hourly(
    project, run_cli, nebula_server
):
    images = {"s": {"prompt": "x", "model": SDXL, "output": "s.png"}}
    root = paid_project(project, images)
    state = Project(root, root / "images.toml")
    listed = "/api/v1/serverless/models"
    nebula_server.prices[SDXL] = 0.02
    # a list from two hours ago, before the provider priced SDXL: fetched again
    prices.save(
        state,
        {"nebula": prices.PriceList({FLUX: 0.003}, prices.now() - timedelta(hours=2), ON_LOOPBACK)},
    )
    code, out, err = run_cli("apply", "--max-cost", "1")
    assert code == 0, err
    assert f"1 × {SDXL} at $0.02" in out
    assert [r.path for r in nebula_server.requests].count(listed) == 1
    # a list of ten minutes ago that lacks it: not asked again on every apply
    (root / "images.toml").write_text(nebula_manifest({"t": images["s"] | {"prompt": "y"}}))
    prices.save(
        state,
        {
            "nebula": prices.PriceList(
                {FLUX: 0.003}, prices.now() - timedelta(minutes=10), ON_LOOPBACK
            )
        },
    )
    nebula_server.reset_counters()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert f"1 × {SDXL} at an unknown price" in out
    assert listed not in [r.path for r in nebula_server.requests]


# --- what apply shows ------------------------------------------------------------------


def test_apply_prints_the_plan_before_acting(project, run_cli, nebula_server):
    paid_project(project, **PRICED)
    out = run_cli("apply").out
    assert (
        out.index("+ a  create  a.png")
        < out.index("estimated cost $0.006")
        < out.index("Apply finished")
    )


def test_apply_lists_a_big_plan_in_short(project, run_cli):
    images = {f"i{n:03}": {"prompt": f"p{n}", "output": f"i{n:03}.png"} for n in range(60)}
    text = preview(nebula_manifest(images))
    root = project({"images.toml": text})
    out = run_cli("apply", "--quiet").out
    assert "create" not in out and out.startswith("Plan: 60 to generate")
    (root / "images.toml").write_text(text.replace('prompt = "p', 'prompt = "q'))
    assert "i059" in run_cli("plan").out  # plan lists every image
    out = run_cli("apply").out
    assert "~ i049  regenerate" in out and "i050" not in out
    assert "… and 10 more images (`nebula-build plan` lists them)" in out


def test_apply_json_and_the_job_summary_carry_the_estimate(
    project, run_cli, nebula_server, tmp_path, monkeypatch
):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    paid_project(project, **PRICED)
    result = json.loads(run_cli("apply", "--json").out)
    assert result["cost"]["total"] == 0.006 and result["generated"] == 2
    text = summary.read_text()
    assert f"- **Generations:** 2 × <code>{FLUX}</code> on nebula at \\$<!-- -->0.003." in text
    assert "- **Estimated cost:** \\$<!-- -->0.006." in text  # `$…$` is math on GitHub


# --- asking first, on a terminal ----------------------------------------------------------


def _spawn(root: Path, *args: str) -> tuple[int, int]:
    """`nebula-build -C root ARGS` on a new terminal (its controlling one): (pid, fd)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "nebula_build", "-C", str(root), *args]
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing but exec
        os.execve(sys.executable, argv, env)
    return pid, fd


def _talk(pid: int, fd: int, answer: bytes | None) -> tuple[int, str]:
    """Read what the command writes; when it asks, send `answer` (None: it must not ask).
    Returns its exit code and everything it wrote."""
    output, answered, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the terminal's other end is closed
                    break
                if not chunk:
                    break
                output += chunk
            if b"[y/N] " in output and not answered:
                assert answer is not None, f"asked when it must not: {output.decode()}"
                os.write(fd, answer)
                answered = True
        else:
            pytest.fail(f"no end within 60 s: {output.decode()}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode().replace("\r\n", "\n")


def test_on_a_terminal_no_means_nothing_is_generated(project, nebula_server):
    root = paid_project(project, **PRICED)
    code, text = _talk(*_spawn(root, "apply"), b"n\n")
    assert code == 1
    assert "estimated cost $0.006." in text  # the plan came first
    assert "Generate 2 images on nebula (estimated $0.006)? [y/N] " in text
    assert "error: apply cancelled: nothing was generated" in text
    assert nebula_server.generations == [] and not (root / "a.png").exists()


def test_on_a_terminal_the_question_counts_images_and_the_generations_they_share(
    project, nebula_server
):
    """Two images of one spec are one paid generation: the question says both, as the
    plan's summary line does, not "2 images" for the two generations of three images."""
    same = {"prompt": "one", "seed": 1}
    images = {
        "a": {**same, "output": "a.png"},
        "b": {**same, "output": "b.png"},
        "c": {"prompt": "two", "seed": 2, "output": "c.png"},
        "d": {"prompt": "free", "output": "d.png", "backend": "preview"},
    }
    root = paid_project(project, images, **PRICED)
    code, text = _talk(*_spawn(root, "apply"), b"n\n")
    assert code == 1
    assert "Plan: 4 to generate in 3 generations, 0 to delete." in text
    assert "Generate 3 images in 2 generations on nebula (estimated $0.006)? [y/N] " in text
    assert nebula_server.generations == []


@pytest.mark.parametrize("answer", [b"y\n", b"YES\n"])
def test_on_a_terminal_yes_generates(answer, project, nebula_server):
    root = paid_project(project, **PRICED)
    code, text = _talk(*_spawn(root, "apply"), answer)
    assert code == 0, text
    assert "[y/N] " in text and "Apply finished" in text
    assert len(nebula_server.generations) == 2 and (root / "a.png").exists()


def test_on_a_terminal_with_stderr_redirected_it_still_asks(project, nebula_server, tmp_path):
    """`apply 2>log` on a terminal: the question goes to the terminal itself."""
    root = paid_project(project, **PRICED)
    log = tmp_path / "err.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = f"exec {sys.executable} -m nebula_build -C {root} apply 2>{log}"
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/bin/sh", ["/bin/sh", "-c", command], env)
    code, text = _talk(pid, fd, b"n\n")
    assert code == 1
    assert "Generate 2 images on nebula (estimated $0.006)? [y/N] " in text
    assert "nothing was generated" in log.read_text()
    assert nebula_server.generations == []


def test_on_a_terminal_end_of_input_is_no(project, nebula_server):
    root = paid_project(project, **PRICED)
    code, text = _talk(*_spawn(root, "apply"), b"\x04")  # Ctrl-D
    assert code == 1 and "nothing was generated" in text
    assert nebula_server.generations == []


def test_on_a_terminal_ctrl_c_at_the_question_stops_at_once(project, nebula_server):
    root = paid_project(project, **PRICED)
    started = time.monotonic()
    code, text = _talk(*_spawn(root, "apply"), b"\x03")
    assert code == 130 and "interrupted" in text
    assert time.monotonic() - started < 30
    assert nebula_server.generations == []


@pytest.mark.parametrize("flag", ["-y", "--yes"])
def test_yes_skips_the_question(flag, project, nebula_server):
    root = paid_project(project, **PRICED)
    code, text = _talk(*_spawn(root, "apply", flag), None)
    assert code == 0, text
    assert len(nebula_server.generations) == 2


def test_locked_never_asks(project, nebula_server):
    root = paid_project(project, **PRICED)
    code, text = _talk(*_spawn(root, "apply", "--locked"), None)
    assert code == 2 and "--locked" in text
    assert nebula_server.generations == []


def test_free_generations_are_not_asked_about(project):
    root = project({"images.toml": preview(nebula_manifest(TWO))})
    code, text = _talk(*_spawn(root, "apply"), None)
    assert code == 0, text


def test_never_asks_when_stdin_is_not_a_terminal(project, nebula_server):
    import subprocess

    root = paid_project(project, **PRICED)
    main_fd, other_fd = pty.openpty()  # stdout and stderr are a terminal, stdin is not
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "-C", str(root), "apply"],
        stdin=subprocess.DEVNULL,
        stdout=other_fd,
        stderr=other_fd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(other_fd)
    code, text = _talk(process.pid, main_fd, None)
    process.returncode = code  # reaped by _talk
    assert code == 0, text
    assert len(nebula_server.generations) == 2


# --- a capped run never pays twice for one image ---------------------------------------


@pytest.mark.parametrize("fault", ["500", "reset", "slow:2"])
def test_a_capped_apply_never_sends_a_paid_request_twice(fault, project, run_cli, nebula_server):
    """A failure after the request reached the server may have been billed: under a cap
    it is not tried again (the manifest's max_attempts is up to 20)."""
    paid_project(project, {"a": {"prompt": "one", "output": "a.png"}}, timeout=1, max_attempts=20)
    nebula_server.add_faults(*[fault] * 5)
    code, out, err = run_cli("apply", "--yes", "--max-cost", "0.01")
    assert code == 1
    assert len(nebula_server.generations) == 1
    assert "never pays twice for one image" in out + err


def test_a_capped_apply_still_waits_out_a_rate_limit(project, run_cli, nebula_server):
    paid_project(project, {"a": {"prompt": "one", "output": "a.png"}}, max_attempts=5)
    nebula_server.add_faults("429:0", "429:0")
    code, _, err = run_cli("apply", "--yes", "--max-generations", "1")
    assert code == 0, err
    assert len(nebula_server.generations) == 3


def test_an_uncapped_apply_retries_a_server_error(project, run_cli, nebula_server):
    paid_project(project, {"a": {"prompt": "one", "output": "a.png"}}, max_attempts=5)
    nebula_server.add_faults("500", "500")
    code, _, err = run_cli("apply", "--yes")
    assert code == 0, err
    assert len(nebula_server.generations) == 3


def test_images_sharing_a_spec_are_one_generation_in_the_count_and_the_estimate(
    project, run_cli, nebula_server
):
    twins = {"a": {"prompt": "same", "output": "a.png"}, "b": {"prompt": "same", "output": "b.png"}}
    paid_project(project, twins, **PRICED)
    code, out, err = run_cli("apply", "--yes", "--max-generations", "1", "--max-cost", "0.003")
    assert code == 0, err
    assert "Generations: 1 on nebula" in out
    assert len(nebula_server.generations) == 1


@pytest.mark.parametrize("asked", ["price list", "balance"])
def test_a_key_the_account_rejects_stops_the_run_before_any_generation(
    asked, project, run_cli, nebula_server
):
    """The price list or the balance, asked before generating, is refused the key: one
    line, nothing sent to be generated (it had been a note, then a failure per image)."""
    if asked == "price list":
        paid_project(project)
        nebula_server.add_model_list_faults("echo:401")
    else:
        paid_project(project, **PRICED)
        nebula_server.add_credits_faults("echo:401")
    code, out, err = run_cli("apply")
    assert code == 1
    assert err.startswith("error: nebula: ") and err.count("\n") == 1, err
    assert "NEBULA_API_KEY was rejected (HTTP 401" in err and "Bearer [redacted]" in err
    assert err.endswith("; nothing was generated\n")
    assert nebula_server.generations == []
    assert CANARY_KEY not in out + err


def test_on_a_terminal_a_failed_restore_pays_for_nothing_the_plan_did_not_count(
    project, run_cli, nebula_server, tmp_path, monkeypatch
):
    """A pull request's remote cache listed every key and held no image: its plan said
    "0 to generate", so nothing was asked, and apply generated each on the paid backend
    ("generated the image instead")."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", shared.as_uri())
    first = paid_project(project, **PRICED)
    assert run_cli("apply", "--yes", cwd=first).code == 0
    for path in shared.rglob("*"):
        if path.is_file() and path.suffix != ".json":
            path.write_bytes(b"not the image")
    second = tmp_path / "second"
    second.mkdir()
    for name in ("images.toml", "images.lock"):
        shutil.copy(first / name, second / name)
    nebula_server.reset_counters()
    code, text = _talk(*_spawn(second, "apply"), None)
    assert code == 1
    assert "Plan: 0 to generate, 0 to delete, 2 to restore (2 from remote cache)." in text
    assert (
        "  a: not generated: the remote cache's entry was refused (its bytes do not match "
        "the digest of its record), and generating it on nebula would cost what the plan "
        "you saw did not; `NEBULA_BUILD_CACHE_REMOTE= nebula-build apply` plans without "
        "the remote cache\n"
    ) in text
    assert nebula_server.generations == []
    # as its error says: planned without the remote, they are generations, asked for
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "")
    code, text = _talk(*_spawn(second, "apply"), b"n\n")
    assert "Generate 2 images on nebula (estimated $0.006)? [y/N] " in text
    assert nebula_server.generations == []
