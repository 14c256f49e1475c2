"""What a plan's generations will cost, and the checks `apply` makes before paying.

Per backend and model: the generations, the price of one, the subtotal; a total
where every paid price is known. A price comes from the provider's price list
(`engine/prices.py`), from `NEBULA_BUILD_PRICES` in the environment, or from the
manifest (the backend's `prices` hook); the highest wins, and a backend that is not
paid costs nothing. The manifest may come from a pull request, so its price alone
is an estimate, never enough for `--max-cost`: it needs the provider's list or the
environment to confirm a price. `planned` never goes to the network (`plan`);
`refreshed` fetches a price list first where one is missing, stale or lacks a model
(`apply`). Amounts are Decimals made from the prices as written, so
3 × 0.1 is 0.3 and `--max-cost 0.3` lets it through. The currency is the
provider's; Nebula bills in USD credits, so amounts are shown with `$`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from nebula_build.core.plan import Plan
from nebula_build.core.resolve import Resolved
from nebula_build.engine import prices
from nebula_build.engine.prepare import Prepared
from nebula_build.engine.standins import says_stand_in
from nebula_build.errors import NebulaBuildError, UserError, first_line
from nebula_build.text import plural

#: the longest a backend may take to say the account's balance, whatever its own deadline
BALANCE_DEADLINE = 30.0
FREE = "free"
CONFIGURED = "configured"
TRUSTED = prices.TRUSTED_ENV
UNKNOWN = "unknown"
_CENT = Decimal("0.01")
_SHOWN = Decimal("0.000001")
#: far past any bill; also below what Decimal's default precision can show to the cent
_HUGE = Decimal("1000000000000")
#: the least a provider's list may price a paid image at and be believed: below it (a
#: server's 1e-300, shown as $0.00) the price is unknown, and --max-cost needs another
PRICE_FLOOR = Decimal("0.0001")
_THE_LIST = "the provider's price list"


def amount(value: float) -> Decimal:
    """A float as the decimal it was written as (0.1, not 0.1000000000000000055…)."""
    return Decimal(repr(float(value)))


def money(value: Decimal) -> str:
    """'$0.006', '$12.50', '$1,228.56': cents at least, more digits where there are."""
    if value < 0:
        shown = money(-value)
        return shown.replace("more than $", "less than -$") if "than" in shown else "-" + shown
    if not value.is_finite() or value >= _HUGE:  # a server's "1e300" is not an amount
        return "more than $" + f"{_HUGE:,f}"
    if value.as_tuple().exponent < -6:  # type: ignore[operator]
        value = value.quantize(_SHOWN)
    cents = value.quantize(_CENT)
    return "$" + (f"{cents:,.2f}" if cents == value else f"{value.normalize():,f}")


@dataclass(frozen=True, slots=True)
class CostLine:
    """The generations of one model on one backend, and what they cost."""

    backend: str
    model: str
    generations: int
    paid: bool
    #: the price of one generation; None where it is not known
    price: Decimal | None
    #: where the price comes from: "free", "configured" (the manifest), "price list of
    #: <date>", "NEBULA_BUILD_PRICES" (the environment), "unknown"
    source: str
    #: whether the provider's list or the environment vouches for a price (free ones
    #: too): a price the manifest alone gives is not enough for --max-cost
    confirmed: bool = True
    #: the provider's list's price where it is below PRICE_FLOOR, and so not believed
    doubted: float | None = None

    @property
    def subtotal(self) -> Decimal | None:
        return None if self.price is None else self.price * self.generations


@dataclass(frozen=True)
class Estimate:
    """A plan's generations per backend and model, with their cost."""

    lines: tuple[CostLine, ...] = ()

    @property
    def generations(self) -> int:
        return sum(line.generations for line in self.lines)

    @property
    def paid_generations(self) -> int:
        return sum(line.generations for line in self.lines if line.paid)

    @property
    def paid_backends(self) -> list[str]:
        return sorted({line.backend for line in self.lines if line.paid})

    @property
    def unknown(self) -> list[CostLine]:
        """The paid lines whose price is not known."""
        return [line for line in self.lines if line.price is None]

    @property
    def unconfirmed(self) -> list[CostLine]:
        """The paid lines whose price only the manifest gives."""
        return [line for line in self.lines if line.price is not None and not line.confirmed]

    @property
    def known(self) -> Decimal:
        """What the lines with a known price cost (a floor when some are unknown)."""
        return sum((line.subtotal or Decimal(0) for line in self.lines), Decimal(0))

    @property
    def total(self) -> Decimal | None:
        """The cost of the whole plan, where every price is known."""
        return None if self.unknown else self.known

    def backend_total(self, backend: str) -> Decimal | None:
        """What one backend's generations cost, where all their prices are known."""
        lines = [line for line in self.lines if line.backend == backend]
        if any(line.price is None for line in lines):
            return None
        return sum((line.subtotal or Decimal(0) for line in lines), Decimal(0))


def estimate(
    plan: Plan,
    resolved: Resolved,
    lists: Mapping[str, prices.PriceList],
    trusted: Mapping[str, float] | None = None,
) -> Estimate:
    """The cost of `plan`'s generations, from `lists`, the `trusted` prices (model id →
    price, from the environment) and the configured ones."""
    counts = Counter((a.spec.backend, a.spec.model) for a in plan.generations if a.spec)
    configured: dict[str, dict[str, float]] = {}
    lines = []
    for (backend, model), n in sorted(counts.items()):
        plugin = resolved.backends[backend]
        if not plugin.paid:
            lines.append(CostLine(backend, model, n, False, Decimal(0), FREE))
            continue
        if backend not in configured:
            configured[backend] = prices.checked_prices(plugin.prices(resolved.settings[backend]))
        listed = lists.get(backend)
        price = listed.prices.get(model) if listed else None
        doubted = price if price is not None and amount(price) < PRICE_FLOOR else None
        candidates = (  # on a tie, the first: a source that confirms the price
            (None if doubted is not None else price, _listed(listed)),
            ((trusted or {}).get(model), TRUSTED),
            (configured[backend].get(model), CONFIGURED),
        )
        lines.append(_priced(backend, model, n, candidates, doubted))
    return Estimate(tuple(lines))


def _listed(listed: prices.PriceList | None) -> str:
    return f"price list of {listed.fetched.date()}" if listed else ""


def _priced(
    backend: str,
    model: str,
    n: int,
    candidates: Iterable[tuple[float | None, str]],
    doubted: float | None,
) -> CostLine:
    """The line at the highest of the prices given. A manifest's price can raise the
    provider's, never lower it (a pull request must not price a paid model at 0 to
    pass --max-cost), and a paid model at 0 is not a price anyone can rely on: unknown.
    `doubted`: the provider's price, left out of `candidates` for being under the floor."""
    known = [(price, source) for price, source in candidates if price is not None and price > 0]
    if not known:
        return CostLine(backend, model, n, True, None, UNKNOWN, doubted=doubted)
    price, source = max(known, key=lambda item: item[0])
    confirmed = any(source != CONFIGURED for _, source in known)
    return CostLine(backend, model, n, True, amount(price), source, confirmed, doubted)


def _paid_generations(prepared: Prepared, plan: Plan) -> bool:
    backends = prepared.resolved.backends
    return any(a.spec is not None and backends[a.spec.backend].paid for a in plan.generations)


def planned(prepared: Prepared, plan: Plan) -> Estimate:
    """The estimate from the cached price lists, NEBULA_BUILD_PRICES and configured
    prices (no network)."""
    if not _paid_generations(prepared, plan):
        return estimate(plan, prepared.resolved, {})
    lists = _usable(prepared, plan, prices.load(prepared.project))
    return estimate(plan, prepared.resolved, lists, prices.trusted())


def _usable(
    prepared: Prepared, plan: Plan, lists: Mapping[str, prices.PriceList]
) -> dict[str, prices.PriceList]:
    """The cached lists this run may price with, each marked as fetched where a stand-in
    for the API may answer or not (`PriceList.stand_in`): a dry run's list is the
    stand-in's own, and priced with, the real run after it would trust it for a day."""
    here = _stand_ins(prepared, plan)
    return {name: listed for name, listed in lists.items() if listed.stand_in == (name in here)}


def _stand_ins(prepared: Prepared, plan: Plan) -> set[str]:
    """The backends of the plan's generations that say a stand-in for the API may
    answer them now (`Backend.made_with`)."""
    resolved = prepared.resolved
    used = {(a.spec.backend, a.spec.model) for a in plan.generations if a.spec is not None}
    return {backend for backend, model in used if says_stand_in(resolved, backend, model)}


async def refreshed(
    prepared: Prepared,
    plan: Plan,
    notice: prices.Notice,
    *,
    when: datetime | None = None,
) -> Estimate:
    """The estimate, with each paid backend's price list fetched again first where it
    is missing, over a day old, or lacks a model the plan generates with (then at most
    once an hour: a model the provider does not price must not cost a request on every
    apply). Configured prices are checked against it; a list that cannot be had is a
    warning, and the prices it would give stay unknown or unconfirmed."""
    if not _paid_generations(prepared, plan):
        return estimate(plan, prepared.resolved, {})
    when = when or prices.now()
    lists, trusted = _usable(prepared, plan, prices.load(prepared.project)), prices.trusted()
    current = estimate(plan, prepared.resolved, lists, trusted)
    due = {  # configured prices too: they are checked against the provider's
        line.backend
        for line in current.lines
        if line.paid and _list_due(lists.get(line.backend), line.model, when)
    }
    if not due:
        return current
    fetched = await prices.fetch(prepared.resolved, due, notice, when=when)
    if not fetched:
        return current
    here = _stand_ins(prepared, plan)
    lists |= {name: replace(listed, stand_in=name in here) for name, listed in fetched.items()}
    prices.save(prepared.project, lists)
    return estimate(plan, prepared.resolved, lists, trusted)


def _list_due(listed: prices.PriceList | None, model: str, when: datetime) -> bool:
    """Whether a backend's price list is to be fetched again for `model`."""
    if listed is None or listed.stale(when):
        return True
    return model not in listed.prices and listed.older_than(prices.MISSING_RETRY, when)


def refuse_over(estimate: Estimate, max_cost: Decimal | None, run_name: str = "apply") -> None:
    """--max-cost: refuse, before anything is spent, a run that would cost more, or
    whose cost cannot be shown to stay under it (`run_name`: an apply, watch's round)."""
    if max_cost is None or not estimate.paid_generations:
        return
    unknown = estimate.unknown
    if unknown:
        line = unknown[0]
        raise UserError(
            f"--max-cost {money(max_cost)}: the price of {line.model} on {line.backend} is "
            f"unknown{_doubt(line, _THE_LIST)}, so this {run_name} "
            f"cannot be shown to stay under it ({_vouch(line)}); nothing was generated"
        )
    unconfirmed = estimate.unconfirmed
    if unconfirmed:
        line = unconfirmed[0]
        raise UserError(
            f"--max-cost {money(max_cost)}: the price of {line.model} on {line.backend} comes "
            "only from the manifest, which --max-cost does not trust, and the provider's "
            f"price list does not confirm it{_doubt(line, 'it')} ({_vouch(line)}); nothing was "
            "generated"
        )
    total = estimate.known
    if total > max_cost:
        raise UserError(
            f"this {run_name} would cost an estimated {money(total)} "
            f"({plural(estimate.paid_generations, 'paid generation')}), more than --max-cost "
            f"{money(max_cost)}; nothing was generated"
        )


def _doubt(line: CostLine, who: str) -> str:
    """': {who} says 1e-300, under $0.0001 an image, which --max-cost does not believe'
    where the provider's price is not believed for being under the floor; else ''."""
    if line.doubted is None:
        return ""
    floor, said = money(PRICE_FLOOR), f"{line.doubted:g}"
    return f": {who} says {said}, under {floor} an image, which --max-cost does not believe"


def _vouch(line: CostLine) -> str:
    """How to give a price --max-cost trusts."""
    return f'set {TRUSTED}="{line.model}=<price>" in the environment'


async def check_balance(prepared: Prepared, estimate: Estimate, notice: prices.Notice) -> None:
    """Refuse, before anything is spent, a run that a paid backend's account cannot
    pay for. A balance that cannot be read is a warning: the run goes on."""
    import asyncio  # here: `plan` never loads it

    resolved = prepared.resolved
    for backend in estimate.paid_backends:
        due = estimate.backend_total(backend)
        if due is None or due <= 0:
            continue
        try:
            async with asyncio.timeout(BALANCE_DEADLINE):
                said = await resolved.backends[backend].balance(resolved.settings[backend])
        except TimeoutError:
            notice(f"{backend}: no balance within {BALANCE_DEADLINE:g}s; not checked")
            continue
        except NebulaBuildError as exc:
            if prices.refuses_every_generation(exc):
                raise prices.key_refused(backend, exc) from None
            notice(f"{backend}: could not check the account's balance ({first_line(exc)})")
            continue
        if said is None:
            continue
        balance = prices.checked_amount(said, limit=math.inf, signed=True)
        if balance is None:
            notice(f"{backend}: the account's balance is not an amount; not checked")
        elif amount(balance) < due:
            raise UserError(
                f"the {backend} account's balance is {money(amount(balance))}, less than "
                f"this apply's estimated {money(due)}; nothing was generated: top up the "
                "account, or generate fewer images (--target, --max-generations)"
            )
