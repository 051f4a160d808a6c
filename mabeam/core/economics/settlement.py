"""Money for auctions and markets: what a bid may cost, and how an outcome pays, checked first.

Pure: the operator reads the Accounts and the items' owners, and calls these functions.

- **Exposure** (:func:`bid_exposure`, :func:`order_exposure`): the most an answer can make its
  agent pay. A sealed bid: its amount, or for combinatorial XOR bundles the largest bundle; a
  clock auction: the clock price of the round accepted; a buy limit order: price x quantity; an
  equilibrium schedule: the largest price x quantity it would buy; a fisher order: its budget
  (it spends all of it). Escrow holds it, rounded up
  to a minor unit, while the session is open.
- **Settlement** (:func:`auction_settlement`, :func:`market_settlement`): the transfers of an
  ended session, in minor units, and a validation report. Payments are rounded *down* to a minor
  unit (nobody pays more than the mechanism's price); the party paid gets exactly what was
  paid. An auction's winner pays the seller of each item (its Variable's owner, else the house);
  a market's buyers pay the house and the house pays the sellers, so the house keeps a double
  auction's surplus. If any check fails the settlement is not valid: nothing moves, every hold
  is released, and the session fails with the report.
- **Goods** (:mod:`._goods`): a market's seller must hold what it sells; escrow holds its
  supply, and the settlement delivers the good with the money.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from ...models.account import (
    HOUSE_ACCOUNT,
    MINOR_UNITS,
    GoodsTransfer,
    Held,
    HeldGoods,
    Settlement,
    SettlementCheck,
    Transfer,
    format_money,
    format_quantity,
)
from ...models.auction import SEALED_MECHANISMS, AuctionSpec, AuctionStatus
from ...models.market import MarketResult, MarketSpec, MarketStatus, SchedulePoint
from ..ledger import Posting
from ._clock import dutch_price, english_price, exact
from ._common import BidAnswer, OrderAnswer
from ._goods import QuantityError, deliver, goods_postings, market_goods, order_supply
from .auction import open_bid
from .market import open_order
from .sealing import SealingKey

__all__ = [
    "QuantityError",
    "auction_settlement",
    "bid_exposure",
    "goods_postings",
    "hold_amount",
    "market_settlement",
    "order_exposure",
    "order_supply",
    "postings",
    "release_only",
    "schedule_exposure",
    "session_id",
]


def session_id(kind: str, name: str, uid: str) -> str:
    """A session's id in ledgers: ``<kind>/<name>:<uid>`` (a re-created session is another)."""
    return f"{kind.lower()}/{name}:{uid}"


def hold_amount(exposure: Fraction) -> int:
    """An exposure as the minor units escrow holds: rounded up, so the hold always covers it."""
    return math.ceil(exposure * MINOR_UNITS)


def _pay(amount: Fraction | Decimal) -> int:
    """A price as the minor units paid: rounded down."""
    return math.floor(Fraction(amount) * MINOR_UNITS)


# --- exposure ---------------------------------------------------------------------------------


def bid_exposure(
    spec: AuctionSpec,
    status: AuctionStatus,
    agent: str,
    answer: BidAnswer,
    *,
    sealing_key: SealingKey | None,
    session_uid: str,
) -> Fraction | None:
    """The most ``answer`` can make ``agent`` pay (None: it commits to nothing, or the engine
    will refuse it anyway)."""
    if spec.mechanism in SEALED_MECHANISMS:
        if answer.sealed is None:
            return None
        content = open_bid(spec, status, agent, answer.sealed, sealing_key, session_uid)
        if content is None:
            return None
        if content.bundles is not None:
            return max((exact(b.amount) for b in content.bundles), default=Fraction(0))
        return exact(content.amount) if content.amount is not None else None
    if not answer.accept or answer.round is None or answer.round < 1:
        return None
    if spec.mechanism == "english":
        opening = spec.start_price if spec.start_price is not None else spec.reserve_price
        return english_price(opening, spec.increment or 0, answer.round)
    start = spec.start_price if spec.start_price is not None else spec.reserve_price
    return dutch_price(start, spec.decrement or 0, answer.round)


def order_exposure(
    spec: MarketSpec,
    status: MarketStatus,
    agent: str,
    answer: OrderAnswer,
    *,
    sealing_key: SealingKey | None,
    session_uid: str,
) -> Fraction | None:
    """The most ``answer`` can make ``agent`` pay (None for a seller or an unreadable order)."""
    opened = open_order(spec, status, agent, answer, sealing_key, session_uid)
    if opened is None:
        return None
    if spec.mechanism == "fisher":
        return exact(opened.budget) if opened.budget is not None else None
    if opened.schedule is not None:
        grid = spec.price_grid.prices() if spec.price_grid is not None else []
        return schedule_exposure(opened.schedule, [exact(p) for p in grid])
    if opened.side == "buy" and opened.price is not None:
        return exact(opened.price) * opened.quantity
    return None


def schedule_exposure(schedule: Sequence[SchedulePoint], grid: Sequence[Fraction]) -> Fraction:
    """The most a demand schedule can cost on ``grid``: max over grid prices p of p x q(p).

    q is the step function the equilibrium clears with: the quantity of the last point at or
    below p, the first point's left of it. On each step q is constant, so the maximum is at the
    highest grid price of a step (just below the next point, or the top of the grid).
    """
    if not schedule or not grid:
        return Fraction(0)
    prices = [exact(p.price) for p in schedule]
    best = Fraction(0)
    for i, point in enumerate(schedule):
        quantity = Fraction(point.quantity)
        if quantity <= 0:
            continue
        # The last grid price before the next point (the top of the grid after the last one).
        below = bisect.bisect_left(grid, prices[i + 1]) - 1 if i + 1 < len(schedule) else len(grid) - 1
        if below < 0 or (i > 0 and grid[below] < prices[i]):
            continue
        best = max(best, grid[below] * quantity)
    return best


# --- settlement -------------------------------------------------------------------------------


def _check(checks: list[SettlementCheck], name: str, failures: Iterable[str], ok: str) -> None:
    problems = list(failures)
    checks.append(
        SettlementCheck(name=name, passed=not problems, message="; ".join(problems[:5]) if problems else ok)
    )


def _merge(transfers: Iterable[tuple[str, str, int, str]]) -> list[Transfer]:
    """One transfer per (payer, payee), reasons joined; none from an Account to itself."""
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    for payer, payee, amount, reason in transfers:
        if payer == payee or amount == 0:
            continue
        amounts[(payer, payee)] += amount
        reasons[(payer, payee)].append(reason)
    return [
        Transfer.model_validate(
            {
                "payer": k[0],
                "payee": k[1],
                "amount": format_money(amounts[k]),
                "reason": ", ".join(reasons[k]),
            }
        )
        for k in sorted(amounts)
    ]


def _settlement(
    sid: str,
    transfers: list[Transfer],
    holds: Mapping[str, int],
    checks: list[SettlementCheck],
    goods: Sequence[GoodsTransfer] = (),
    goods_holds: Mapping[str, int] | None = None,
    good: str = "",
) -> Settlement:
    valid = all(c.passed for c in checks)
    touched = set(holds) | {a for a, q in (goods_holds or {}).items() if q}
    if valid:
        touched |= {t.payer for t in transfers} | {t.payee for t in transfers}
        touched |= {g.sender for g in goods} | {g.receiver for g in goods}
    return Settlement(
        session=sid,
        valid=valid,
        transfers=transfers if valid else [],
        accounts=sorted(touched),
        held=_held(holds),
        goods=list(goods) if valid else [],
        held_goods=_held_goods(good, goods_holds or {}),
        checks=checks,
    )


def _held_goods(good: str, holds: Mapping[str, int]) -> list[HeldGoods]:
    return [
        HeldGoods.model_validate({"account": a, "good": good, "quantity": format_quantity(holds[a])})
        for a in sorted(holds)
        if holds[a]
    ]


def _held(holds: Mapping[str, int]) -> list[Held]:
    return [
        Held.model_validate({"account": a, "amount": format_money(holds[a])})
        for a in sorted(holds)
        if holds[a]
    ]


def release_only(
    sid: str,
    holds: Mapping[str, int],
    checks: list[SettlementCheck] | None = None,
    goods_holds: Mapping[str, int] | None = None,
    good: str = "",
) -> Settlement:
    """A settlement that moves nothing: every hold of the session (money and goods) is released."""
    return Settlement(
        session=sid,
        valid=True,
        transfers=[],
        accounts=sorted(set(holds) | {a for a, q in (goods_holds or {}).items() if q}),
        held=_held(holds),
        held_goods=_held_goods(good, goods_holds or {}),
        checks=checks or [],
    )


def _conservation(checks: list[SettlementCheck], transfers: list[Transfer]) -> None:
    per_account: dict[str, int] = defaultdict(int)
    for t in transfers:
        per_account[t.payer] -= t.amount
        per_account[t.payee] += t.amount
    total = sum(per_account.values())
    _check(
        checks,
        "MoneyConserved",
        [f"the transfers create {format_money(total)}"] if total else [],
        f"{len(transfers)} transfer(s) move {format_money(sum(t.amount for t in transfers))}; "
        "they sum to zero",
    )


def auction_settlement(
    sid: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    sellers: Mapping[str, str],
    holds: Mapping[str, int],
) -> Settlement:
    """The payments of an ended auction and their checks.

    ``sellers`` maps each item to the Account paid for it (its Variable's owner, else the
    house); ``holds`` each bidder's escrow for this auction (minor units). A winner's price is
    split evenly over the sellers of its items (the remainder to the first item, by name).
    """
    if status.phase != "Awarded" or status.result is None:
        return release_only(sid, holds)
    allocations = status.result.allocations
    checks: list[SettlementCheck] = []
    items = set(spec.items)
    seen: dict[str, str] = {}
    infeasible: list[str] = []
    participants = {p.name for p in status.participants}
    for a in allocations:
        if a.agent not in participants:
            infeasible.append(f"{a.agent} is not a bidder")
        for item in a.items:
            if item not in items:
                infeasible.append(f"{item} is not for sale here")
            elif item in seen:
                infeasible.append(f"{item} is allocated to {seen[item]} and {a.agent}")
            seen[item] = a.agent
    _check(
        checks,
        "AllocationFeasible",
        infeasible,
        f"{len(seen)} item(s) to {len(allocations)} winner(s), each once",
    )
    _check(
        checks,
        "IndividuallyRational",
        [
            f"{a.agent} pays {a.price} above its bid {a.bid}"
            for a in allocations
            if a.bid is not None and a.price > a.bid
        ],
        "every winner pays at most its bid",
    )
    reserve = exact(spec.reserve_price)
    _check(
        checks,
        "ReserveMet",
        [
            f"{a.agent} pays {a.price} below the reserve of its {len(a.items)} item(s)"
            for a in allocations
            if exact(a.price) < reserve * len(a.items)
        ],
        f"every price is at least the reserve ({spec.reserve_price} per item)",
    )
    _check(
        checks,
        "EscrowCovers",
        [
            f"{a.agent} pays {format_money(_pay(a.price))} "
            f"but escrow holds {format_money(holds.get(a.agent, 0))}"
            for a in allocations
            if _pay(a.price) > holds.get(a.agent, 0)
        ],
        "escrow holds every winner's payment",
    )
    raw: list[tuple[str, str, int, str]] = []
    for a in allocations:
        paid = _pay(a.price)
        names = sorted(a.items)
        share, rest = divmod(paid, len(names)) if names else (0, paid)
        for i, item in enumerate(names):
            raw.append((a.agent, sellers.get(item, HOUSE_ACCOUNT), share + (rest if i == 0 else 0), item))
    transfers = _merge(raw)
    _check(
        checks,
        "RevenuePaid",
        []
        if sum(_pay(a.price) for a in allocations) == sum(r[2] for r in raw)
        else ["the payments do not add up to the prices"],
        f"the winners pay {format_money(sum(_pay(a.price) for a in allocations))} "
        "(prices rounded down to a cent)",
    )
    _conservation(checks, transfers)
    return _settlement(sid, transfers, holds, checks)


def market_settlement(
    sid: str,
    spec: MarketSpec,
    status: MarketStatus,
    holds: Mapping[str, int],
    goods_holds: Mapping[str, int] | None = None,
) -> Settlement:
    """The payments and deliveries of an ended market and their checks: buyers pay the house,
    the house pays the sellers (what it keeps is a double auction's surplus; an equilibrium
    keeps nothing but the rounding of fractional trades, under one minor unit per trade); the
    sellers deliver the good to the house, the house to the buyers. ``goods_holds``: what escrow
    holds of ``spec.good`` for each seller (thousandths)."""
    goods_holds = goods_holds or {}
    if status.phase != "Cleared" or status.result is None:
        return release_only(sid, holds, goods_holds=goods_holds, good=spec.good)
    if spec.mechanism == "fisher":
        return _fisher_settlement(sid, spec, status, status.result, holds)
    result = status.result
    orders = {o.agent: o for o in status.orders}
    checks: list[SettlementCheck] = []
    buys = [t for t in result.trades if t.side == "buy"]
    sells = [t for t in result.trades if t.side == "sell"]
    paid = {t.agent: _pay(t.total) for t in buys}
    collected = sum(paid.values())
    # Sellers get their totals rounded down; never more, together, than the buyers paid.
    received = {t.agent: _pay(t.total) for t in sells}
    excess = sum(received.values()) - collected
    for t in sorted(sells, key=lambda t: (-received[t.agent], t.agent)):
        if excess <= 0:
            break
        cut = min(excess, received[t.agent])
        received[t.agent] -= cut
        excess -= cut
    infeasible: list[str] = []
    bought: Fraction = sum((Fraction(t.total) / Fraction(t.price) for t in buys if t.price), Fraction(0))
    sold: Fraction = sum((Fraction(t.total) / Fraction(t.price) for t in sells if t.price), Fraction(0))
    if spec.mechanism == "equilibrium":
        if result.price is None or any(t.price != result.price for t in result.trades):
            infeasible.append("not every trade is at the clearing price")
        if abs(bought - sold) > Fraction(len(result.trades), 10**15):
            infeasible.append(f"bought {float(bought)} but sold {float(sold)}")
    elif abs(bought - sold) > 0:
        infeasible.append(f"bought {float(bought)} units but sold {float(sold)}")
    _check(
        checks,
        "AllocationFeasible",
        infeasible,
        f"{len(buys)} buyer(s) and {len(sells)} seller(s) trade {result.volume:g}",
    )
    irr: list[str] = []
    for t in result.trades:
        order = orders.get(t.agent)
        if order is None:
            irr.append(f"{t.agent} trades without a counted order")
        elif order.price is not None:  # a limit order
            if t.side == "buy" and t.price > order.price:
                irr.append(f"{t.agent} pays {t.price} per unit above its limit {order.price}")
            if t.side == "sell" and t.price < order.price:
                irr.append(f"{t.agent} gets {t.price} per unit below its limit {order.price}")
    _check(checks, "IndividuallyRational", irr, "every trader trades within its order")
    _check(
        checks,
        "EscrowCovers",
        [
            f"{a} pays {format_money(p)} but escrow holds {format_money(holds.get(a, 0))}"
            for a, p in sorted(paid.items())
            if p > holds.get(a, 0)
        ],
        "escrow holds every buyer's payment",
    )
    house = collected - sum(received.values())
    _check(
        checks,
        "BudgetBalanced",
        [f"the house would pay {format_money(-house)}"] if house < 0 else [],
        f"buyers pay {format_money(collected)}, sellers get {format_money(sum(received.values()))}, "
        f"the house keeps {format_money(house)}",
    )
    raw = [(a, HOUSE_ACCOUNT, p, f"bought {spec.good}") for a, p in paid.items()]
    raw += [(HOUSE_ACCOUNT, a, r, f"sold {spec.good}") for a, r in received.items()]
    transfers = _merge(raw)
    _conservation(checks, transfers)
    deliveries = deliver(spec.good, market_goods(spec, status, result), goods_holds, checks)
    return _settlement(sid, transfers, holds, checks, deliveries, goods_holds, spec.good)


def _fisher_settlement(
    sid: str, spec: MarketSpec, status: MarketStatus, result: MarketResult, holds: Mapping[str, int]
) -> Settlement:
    """A Fisher market's payments: each buyer pays the house its allocations' payments (whole
    cents, adding up to its budget); the goods are the house's, so it keeps them all."""
    budgets = {o.agent: o.budget for o in status.orders if o.budget is not None}
    paid: dict[str, int] = defaultdict(int)
    bought: dict[str, Fraction] = defaultdict(Fraction)
    for a in result.allocations:
        paid[a.agent] += _pay(a.payment)
        bought[a.good] += Fraction(a.quantity)
    checks: list[SettlementCheck] = []
    supplies = {g.name: Fraction(g.supply) for g in spec.goods or ()}
    infeasible = [f"{good} is not on sale" for good in bought if good not in supplies]
    infeasible += [
        f"{float(q):g} of {good} allocated, beyond its supply {float(supplies[good]):g}"
        for good, q in sorted(bought.items())
        if good in supplies and q > supplies[good]
    ]
    report = result.equilibrium
    infeasible += [f"{c.name} not met" for c in (report.checks if report else []) if not c.passed]
    _check(checks, "AllocationFeasible", infeasible, f"{len(bought)} good(s) allocated within their supply")
    over = [
        f"{agent} pays {format_money(p)} beyond its budget"
        for agent, p in sorted(paid.items())
        if agent not in budgets or p > _pay(budgets[agent])
    ]
    _check(checks, "IndividuallyRational", over, "every buyer pays at most its budget")
    _check(
        checks,
        "EscrowCovers",
        [
            f"{a} pays {format_money(p)} but escrow holds {format_money(holds.get(a, 0))}"
            for a, p in sorted(paid.items())
            if p > holds.get(a, 0)
        ],
        "escrow holds every buyer's payment",
    )
    collected = sum(paid.values())
    _check(checks, "BudgetBalanced", [], f"buyers pay {format_money(collected)}, the house sells the goods")
    goods = ", ".join(g.name for g in spec.goods or ())
    transfers = _merge((a, HOUSE_ACCOUNT, p, f"bought {goods}") for a, p in paid.items())
    _conservation(checks, transfers)
    return _settlement(sid, transfers, holds, checks)


def postings(settlement: Settlement) -> dict[str, list[Posting]]:
    """Each Account's lines of ``settlement`` (an Account with only a hold gets none: its hold
    is released)."""
    out: dict[str, list[Posting]] = {name: [] for name in settlement.accounts}
    for t in settlement.transfers:
        out.setdefault(t.payer, []).append(Posting(t.payee, -t.amount, "Payment"))
        out.setdefault(t.payee, []).append(Posting(t.payer, t.amount, "Receipt"))
    return out
