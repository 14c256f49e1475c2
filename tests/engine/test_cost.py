"""The cost estimate, the price cache, and paid third-party backends: what they implement
of the pricing hooks, and what they get wrong, never blocks a run it should not."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from nebula_build.engine import prices
from nebula_build.engine.cost import CostLine, Estimate, money, refuse_over
from nebula_build.errors import UserError
from nebula_build.state.project import Project
from tests.conftest import install_distribution

FLUX = "black-forest-labs/FLUX.1-schnell"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "$0.00"),
        ("0.006", "$0.006"),
        ("0.0060", "$0.006"),
        ("12.5", "$12.50"),
        ("1228.55600", "$1,228.556"),
        ("0.00000012345", "$0.00"),
        ("0.0000012345", "$0.000001"),
    ],
)
def test_money(value, shown):
    assert money(Decimal(value)) == shown


def line(model: str, n: int, price: str | None, *, paid: bool = True) -> CostLine:
    return CostLine("nebula", model, n, paid, None if price is None else Decimal(price), "x")


def test_an_estimate_adds_prices_exactly_and_knows_what_it_does_not_know():
    estimate = Estimate((line("a", 3, "0.1"), line("b", 2, "0"), line("p", 4, "0", paid=False)))
    assert estimate.total == Decimal("0.3") and estimate.paid_generations == 5
    refuse_over(estimate, Decimal("0.3"))
    with pytest.raises(UserError, match=r"estimated \$0.30 \(5 paid generations\)"):
        refuse_over(estimate, Decimal("0.29"))
    partial = Estimate((line("a", 3, "0.1"), line("b", 1, None)))
    assert partial.total is None and partial.known == Decimal("0.3")
    assert partial.backend_total("nebula") is None
    with pytest.raises(UserError, match="the price of b on nebula is unknown"):
        refuse_over(partial, Decimal(1000))
    refuse_over(partial, None)  # no cap, no refusal
    free = Estimate((line("p", 4, "0", paid=False),))
    refuse_over(free, Decimal(0))


def test_prices_from_outside_are_checked():
    raw = {FLUX: 0.003, "neg": -1, "nan": float("nan"), "inf": float("inf"), "bool": True}
    raw |= {"text": "0.1", "": 0.1, "x" * 301: 0.1, "huge": 1e300, "int": 2}
    assert prices.checked_prices(raw) == {FLUX: 0.003, "int": 2.0}
    with pytest.raises(ValueError, match="more than"):
        prices.checked_prices({str(n): 0.1 for n in range(prices.MAX_MODELS + 1)})
    with pytest.raises(ValueError, match="not a mapping"):
        prices.checked_prices([[FLUX, 0.1]])


@pytest.fixture
def state(tmp_path) -> Project:
    (tmp_path / "images.toml").write_text("version = 1\n")
    return Project(tmp_path, tmp_path / "images.toml")


def test_the_price_cache_round_trips_and_ignores_what_it_did_not_write(state):
    when = prices.now()
    prices.save(state, {"nebula": prices.PriceList({FLUX: 0.003}, when)})
    loaded = prices.load(state)["nebula"]
    assert loaded == prices.PriceList({FLUX: 0.003}, when)
    path = state.price_cache_path
    mac, _, body = path.read_bytes().partition(b"\n")
    for forged in (
        body,  # unsealed
        mac + b"\n" + body.replace(b"0.003", b"0.000"),  # tampered
        b"\0" * 10,
    ):
        path.write_bytes(forged)
        assert prices.load(state) == {}


def test_a_price_list_is_stale_after_a_day_or_when_dated_in_the_future():
    now = prices.now()
    assert not prices.PriceList({}, now - timedelta(hours=23)).stale(now)
    assert prices.PriceList({}, now - timedelta(hours=25)).stale(now)
    assert prices.PriceList({}, now + timedelta(hours=1)).stale(now)


PAID_PLUGIN = """
from pydantic import Field

from nebula_build.plugin import Backend, BackendSettings, GenerationResult, hookimpl
from nebula_build.plugin import nebula_models


class MeterSettings(BackendSettings):
    balance: str = Field("none", description="what balance() does")


class MeterBackend(Backend):
    name = "meter"
    settings_model = MeterSettings
    paid = True

    @classmethod
    def models(cls, settings):
        return nebula_models()

    @classmethod
    async def price_list(cls, settings):
        return {"black-forest-labs/FLUX.1-schnell": 0.5}

    @classmethod
    async def balance(cls, settings):
        said = settings.balance
        if said == "crash":
            raise ValueError("the meter broke")
        if said == "none":
            return None
        return float(said) if said[0].isdigit() or said == "nan" else said

    async def generate(self, request):
        import io
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (request.width, request.height)).save(buffer, "PNG")
        return GenerationResult(buffer.getvalue())


class BareBackend(MeterBackend):
    # paid, and none of the pricing hooks: its prices are unknown
    name = "bare"
    settings_model = BackendSettings
    price_list = Backend.price_list
    balance = Backend.balance


@hookimpl
def nebula_build_register_backends():
    return [MeterBackend, BareBackend]
"""


@pytest.fixture
def paid_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_distribution(
        site, "nebula-build-meter", {"nebula_meter": PAID_PLUGIN}, {"m": "nebula_meter"}
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "nebula_meter", raising=False)
    yield
    sys.modules.pop("nebula_meter", None)


def plugin_manifest(backend: str, balance: str | None = None) -> str:
    lines = [
        "version = 1",
        "[defaults]",
        f'backend = "{backend}"',
        f'model = "{FLUX}"',
        "width = 64",
        "height = 64",
    ]
    if balance is not None:
        lines += [f"[backends.{backend}]", f'balance = "{balance}"']
    for name in ("a", "b"):
        lines += [f"[images.{name}]", f'prompt = "{name}"', f'output = "{name}.png"']
    return "\n".join(lines) + "\n"


def test_a_paid_plugin_without_pricing_hooks_still_runs(paid_plugin, project, run_cli):
    project({"images.toml": plugin_manifest("bare")})
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "Generations: 2 on bare (2 × " in out and "estimated cost unknown" in out
    assert "note:" not in err  # having no price list is not a failure
    project({"images.toml": plugin_manifest("bare").replace('"a"', '"c"')})
    code, _, err = run_cli("apply", "--max-cost", "100")
    assert code == 1 and "the price of" in err and "is unknown" in err


@pytest.mark.parametrize(
    ("balance", "code", "said"),
    [
        ("none", 0, None),
        ("2", 0, None),
        ("crash", 0, "note: meter: could not check the account's balance (backend 'meter'"),
        ("nan", 0, "note: meter: the account's balance is not an amount; not checked"),
        ("lots", 0, "note: meter: the account's balance is not an amount; not checked"),
        ("0.99", 1, "error: the meter account's balance is $0.99, less than this apply's"),
    ],
)
def test_a_paid_plugins_balance(balance, code, said, paid_plugin, project, run_cli):
    root = project({"images.toml": plugin_manifest("meter", balance)})
    result = run_cli("apply")
    assert result.code == code, result.err
    assert "estimated cost $1.00" in result.out or code == 1
    if said is None:
        assert "balance" not in result.err
    else:
        assert said in result.err
    assert (root / "a.png").exists() == (code == 0)
    cached = json.loads(root.joinpath(".nebula-build/prices.json").read_bytes().partition(b"\n")[2])
    assert cached["backends"]["meter"]["prices"] == {FLUX: 0.5}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("-3", "-$3.00"),
        ("1e300", "more than $1,000,000,000,000"),
        ("-5e28", "less than -$1,000,000,000,000"),
    ],
)
def test_money_never_crashes_on_a_servers_odd_amount(value, shown):
    from decimal import Decimal

    from nebula_build.engine.cost import money

    assert money(Decimal(value)) == shown
