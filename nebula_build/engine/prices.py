"""The paid backends' price lists, cached in `.nebula-build/prices.json` with the time
each was fetched.

`plan` reads the cache only and never goes to the network; `apply` fetches a paid
backend's list again when it will generate with it and the list is missing, over a
day old, or over an hour old and lacks a model (`engine/cost.py` decides).
`NEBULA_BUILD_PRICES` in the environment gives prices the user vouches for.

The cache is state the tool writes for itself, so it is sealed (`state.seal`): one
that came with a checkout (prices of 0, to slip a run under --max-cost) is ignored.
What a backend answers and what the cache holds are checked alike: a mapping of
model ids to finite amounts, bounded in size.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nebula_build.core.resolve import Resolved
from nebula_build.errors import (
    AccessDeniedError,
    CredentialsError,
    NebulaBuildError,
    UserError,
    first_line,
)
from nebula_build.fsutil import atomic_write, read_regular
from nebula_build.state.project import Project
from nebula_build.state.seal import seal, unseal
from nebula_build.text import model_id_problem, printable

CACHE_FORMAT = 1
MAX_AGE = timedelta(days=1)
#: how often a list that lacks a model the plan uses is fetched again
MISSING_RETRY = timedelta(hours=1)
#: prices the environment vouches for: "model=0.003 other/model=0.01"
TRUSTED_ENV = "NEBULA_BUILD_PRICES"
#: the longest a backend may take to give its price list, whatever its own deadline
FETCH_DEADLINE = 30.0
MAX_MODELS = 10_000
MAX_MODEL_ID = 300
#: per generation; anything above is not a price
MAX_PRICE = 1_000_000.0
_LIMIT = 4 << 20

Notice = Callable[[str], None]


@dataclass(frozen=True)
class PriceList:
    """One backend's prices as its provider gave them, and when (UTC)."""

    prices: Mapping[str, float]
    fetched: datetime
    #: fetched where a stand-in for the API may answer (a dry run): its prices are its
    #: own, and serve no run that cannot reach one (`cost._usable`)
    stand_in: bool = False

    def stale(self, now: datetime) -> bool:
        return self.older_than(MAX_AGE, now)

    def older_than(self, age: timedelta, now: datetime) -> bool:
        """Fetched over `age` ago (or in the future: a clock put back)."""
        return not timedelta(0) <= now - self.fetched <= age


def checked_amount(value: Any, *, limit: float = math.inf, signed: bool = False) -> float | None:
    """A finite amount up to `limit` from outside, and of zero or more unless `signed`
    (a balance may be owed), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    amount = float(value)
    low = -limit if signed else 0
    return amount if math.isfinite(amount) and low <= amount <= limit else None


def checked_prices(raw: Any) -> dict[str, float]:
    """Model id → price from outside; entries that are not one are left out, and
    a mapping too large to be a price list is a ValueError."""
    if not isinstance(raw, Mapping):
        raise ValueError("not a mapping of model ids to prices")
    if len(raw) > MAX_MODELS:
        raise ValueError(f"more than {MAX_MODELS} prices")
    prices = {}
    for model, value in raw.items():
        price = checked_amount(value, limit=MAX_PRICE)
        if isinstance(model, str) and 0 < len(model) <= MAX_MODEL_ID and price is not None:
            prices[model] = price
    return prices


def trusted() -> dict[str, float]:
    """Model id → price from NEBULA_BUILD_PRICES ("model=0.003 other/model=0.01",
    commas or spaces between); a malformed entry is a UserError."""
    found = {}
    for entry in os.environ.get(TRUSTED_ENV, "").replace(",", " ").split():
        model, _, value = entry.rpartition("=")
        price = _number(value)
        if model_id_problem(model) is not None or price is None or price <= 0:
            raise UserError(
                f"{TRUSTED_ENV}: {printable(entry, limit=80)!r} is not MODEL=PRICE, a model "
                'id and a price above 0 in USD (such as "black-forest-labs/FLUX.1-schnell=0.003")'
            )
        found[model] = price
    return found


def _number(text: str) -> float | None:
    try:
        return checked_amount(float(text), limit=MAX_PRICE)
    except ValueError:
        return None


def now() -> datetime:
    return datetime.now(UTC)


def load(project: Project) -> dict[str, PriceList]:
    """The cached lists by backend name; anything unexpected is no list."""
    raw = read_regular(project.price_cache_path, limit=_LIMIT)
    text = unseal(raw) if raw is not None else None
    if text is None:
        return {}
    lists = {}
    try:
        data = json.loads(text)
        if data["format"] != CACHE_FORMAT:
            return {}
        for name, entry in data["backends"].items():
            fetched = datetime.fromisoformat(entry["fetched"])
            if fetched.tzinfo is not None:
                stand_in = entry.get("stand_in", False) is True
                lists[str(name)] = PriceList(checked_prices(entry["prices"]), fetched, stand_in)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}
    return lists


def save(project: Project, lists: Mapping[str, PriceList]) -> None:
    """Cache the lists (a cache only saves a request: failing to write it is fine)."""
    data = {
        "format": CACHE_FORMAT,
        "backends": {
            name: {
                "fetched": entry.fetched.isoformat(),
                "prices": dict(entry.prices),
                **({"stand_in": True} if entry.stand_in else {}),
            }
            for name, entry in sorted(lists.items())
        },
    }
    sealed = seal(json.dumps(data, sort_keys=True).encode())
    if sealed is None:
        return
    with contextlib.suppress(OSError):
        atomic_write(project.price_cache_path, sealed, durable=False)


def refuses_every_generation(exc: Exception) -> bool:
    """Whether an account page's answer (prices, balance) means that the key is not
    valid at all (a missing key, a 401), not that this page is not allowed (a 403)."""
    return isinstance(exc, CredentialsError) and not isinstance(exc, AccessDeniedError)


def key_refused(backend: str, exc: Exception) -> UserError:
    """The run stopped before generating: the account refused the credentials."""
    return UserError(f"{backend}: {first_line(exc)}; nothing was generated")


async def fetch(
    resolved: Resolved, names: Iterable[str], notice: Notice, *, when: datetime
) -> dict[str, PriceList]:
    """The price lists of these backends, fresh from their providers; a backend that
    cannot give one is a warning, never an error."""
    import asyncio  # here: `plan` never loads it

    lists = {}
    for name in sorted(names):
        plugin, settings = resolved.backends[name], resolved.settings[name]
        try:
            async with asyncio.timeout(FETCH_DEADLINE):
                raw = await plugin.price_list(settings)
            prices = checked_prices(raw)
        except TimeoutError:
            notice(f"{name}: no price list within {FETCH_DEADLINE:g}s; its prices are unknown")
            continue
        except (NebulaBuildError, ValueError) as exc:
            if refuses_every_generation(exc):
                raise key_refused(name, exc) from None
            notice(f"{name}: could not fetch its price list ({first_line(exc)})")
            continue
        if prices:
            lists[name] = PriceList(prices, when)
    return lists
