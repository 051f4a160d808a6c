"""An example trading agent: bids in auctions and trades in markets from a private valuation.

Run in a Pod made by the operator. Its settings (Pod env):

- ``TRADER_VALUE``: what one unit of the resource (a GPU slot, a kWh) is worth to it; for a
  seller, its cost of one unit (default 10);
- ``TRADER_SIDE``: ``buy`` or ``sell`` in markets (default buy);
- ``TRADER_UNITS``: how many units it wants to buy or sell (default 1);
- ``TRADER_BUNDLE_BONUS``: in a combinatorial auction, how much more than the sum of its items a
  whole bundle of two or more items is worth to it (complementarity, default 0);
- ``TRADER_BUDGET``: in a Fisher market, the money it spends (default value x units);
- ``TRADER_UTILITIES``: in a Fisher market, the utility of one unit of each good, as
  ``good=value,good=value`` (default 1 for every good on sale).

Strategies: truthful where the mechanism makes truth the best strategy (second-price, english,
combinatorial VCG, McAfee double auction, a price-taking demand schedule, its true utilities in a
Fisher market, where a price-taker gains nothing by lying); in first-price and
dutch auctions it shades its value by (n-1)/n, the symmetric equilibrium for values drawn
uniformly, n being the number of bidders.

Within its means: where a session is paid from Accounts, the SDK gives the agent's balance (what
it may commit there) and the trader never offers more: a bid, a bundle or a clock price above it
is capped or declined, a buy limit order's price comes down until its units fit, a demand
schedule buys no more units at a price than it can pay for. An offer beyond the balance would
only be refused (OverBudget). Likewise a seller offers no more units than it holds of the
market's good (the SDK's ``holding``): more would be refused (NotHeld).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from decimal import Decimal

from mabeam.sdk import AgentApp, AuctionView, MarketView

app = AgentApp()
log = logging.getLogger("trader")


def value() -> float:
    return float(os.environ.get("TRADER_VALUE", "10"))


def units() -> int:
    return int(os.environ.get("TRADER_UNITS", "1"))


def side() -> str:
    return os.environ.get("TRADER_SIDE", "buy")


def shaded(auction: AuctionView) -> float:
    n = max(len(auction.participants), 1)
    return value() * (n - 1) / n if n > 1 else value()


def within(amount: float, balance: Decimal | None) -> float:
    """``amount``, capped at what the agent may commit (rounded down to a cent)."""
    if balance is None:
        return amount
    return min(amount, math.floor(float(balance) * 100) / 100)


def affordable(price: float, wanted: int, balance: Decimal | None) -> int:
    """How many of ``wanted`` units at ``price`` the agent can pay for."""
    if balance is None or price <= 0:
        return wanted
    return max(min(wanted, int(Decimal(balance) // Decimal(str(price)))), 0)


@app.on_bid
def sealed_bid(auction: AuctionView) -> float | dict[tuple[str, ...], float]:
    if auction.mechanism == "combinatorial":
        bonus = float(os.environ.get("TRADER_BUNDLE_BONUS", "0"))
        bundles: dict[tuple[str, ...], float] = {}
        for size in range(1, len(auction.items) + 1):
            for items in itertools.combinations(auction.items, size):
                bundles[items] = within(value() * size + (bonus if size > 1 else 0.0), auction.balance)
        log.info("auction %s: XOR bids on %d bundles", auction.name, len(bundles))
        return bundles
    amount = within(shaded(auction) if auction.mechanism == "first-price" else value(), auction.balance)
    log.info("auction %s: sealed bid placed", auction.name)  # the amount stays sealed
    return amount


@app.on_clock
def clock(auction: AuctionView) -> bool:
    price = float(auction.price or 0.0)
    limit = within(shaded(auction) if auction.mechanism == "dutch" else value(), auction.balance)
    stay = price <= limit
    log.info("auction %s round %s at %g: %s", auction.name, auction.round, price, "in" if stay else "out")
    return stay


def utilities(goods: tuple[str, ...]) -> dict[str, float]:
    text = os.environ.get("TRADER_UTILITIES", "")
    if not text:
        return dict.fromkeys(goods, 1.0)
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {good.strip(): float(amount) for good, amount in pairs}


@app.on_order
def order(market: MarketView) -> dict[str, object] | None:
    if market.mechanism == "fisher":
        # Spends its budget (within its means: no more than its balance where it is paid for).
        budget = within(float(os.environ.get("TRADER_BUDGET") or value() * units()), market.balance)
        log.info("market %s: a budget and utilities for %s", market.name, ", ".join(market.goods))
        if budget <= 0:
            return None  # nothing to pay with: no order
        return {"budget": budget, "utilities": utilities(market.goods)}
    price = value()
    if side() == "buy" and market.balance is not None:
        # Within its means: the limit price comes down until all its units fit the balance.
        price = within(min(price, float(market.balance) / units()), market.balance)
    quantity = units() if side() == "buy" else held_units(market)
    log.info("market %s: %s %d at %g", market.name, side(), quantity, price)
    if price <= 0 or quantity <= 0:
        return None  # nothing to pay with, or nothing to sell: no order
    return {"side": side(), "price": price, "quantity": quantity}


def held_units(market: MarketView) -> int:
    """A seller sells what it holds (where the market is paid from Accounts), at most its units."""
    if market.holding is None:
        return units()
    return max(min(units(), int(market.holding)), 0)


@app.on_price
def demand(market: MarketView, price: float) -> float:
    if side() == "buy":
        return float(affordable(float(price), units(), market.balance)) if price <= value() else 0.0
    return -float(held_units(market)) if price >= value() else 0.0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app.run()
