"""Goods in markets: what a seller offers, and what a cleared market delivers (pure).

A market's seller must own what it sells: :func:`order_supply` is the most a sell order can
make its seller deliver (escrow holds it on the seller's holding of the market's good), and
:func:`deliver` turns a cleared market's trades into deliveries of whole thousandths of a unit
(:data:`mabeam.models.account.GOODS_UNITS`), with their checks. Used by
:mod:`.settlement`, which settles them together with the money.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from ...models.account import (
    GOODS_UNITS,
    HOUSE_ACCOUNT,
    GoodsTransfer,
    Settlement,
    SettlementCheck,
    format_quantity,
    parse_quantity,
)
from ...models.market import MarketResult, MarketSpec, MarketStatus
from ..ledger import GoodsPosting
from ._common import OrderAnswer
from .market import open_order
from .sealing import SealingKey

__all__ = ["QuantityError", "deliver", "goods_postings", "market_goods", "order_supply"]


class QuantityError(ValueError):
    """An order quantity that is not a whole number of thousandths (goods cannot count it)."""


def _thousandths(value: float | int, where: str) -> int:
    try:
        return parse_quantity(value, signed=True)
    except ValueError as exc:
        raise QuantityError(f"{where}: {exc}") from None


def order_supply(
    spec: MarketSpec,
    status: MarketStatus,
    agent: str,
    answer: OrderAnswer,
    *,
    sealing_key: SealingKey | None,
    session_uid: str,
) -> int | None:
    """The most ``answer`` can make ``agent`` deliver of ``spec.good``, in thousandths (None: it
    sells nothing, or the engine refuses it anyway). A sell limit order: its quantity; a
    schedule: its largest sale (the net demand at the top of the grid, where it sells most).
    QuantityError if a quantity of the order is finer than a thousandth."""
    if spec.mechanism == "fisher":
        return None
    opened = open_order(spec, status, agent, answer, sealing_key, session_uid)
    if opened is None:
        return None
    if opened.schedule is not None:
        quantities = [
            _thousandths(p.quantity, f"schedule[{j}].quantity") for j, p in enumerate(opened.schedule)
        ]
        return max(0, -min(quantities, default=0)) or None
    if opened.side == "sell":
        return opened.quantity * GOODS_UNITS
    return None


def _apportion(weights: Mapping[str, int], total: int) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` in whole numbers: floors, then one more to
    the largest remainders (ties by name), so that the parts add up to ``total`` exactly."""
    whole = sum(weights.values())
    if whole <= 0:
        return dict.fromkeys(weights, 0)
    parts = {a: w * total // whole for a, w in weights.items()}
    left = total - sum(parts.values())
    by_remainder = sorted(weights, key=lambda a: (-(weights[a] * total % whole), a))
    for a in by_remainder[:left]:
        parts[a] += 1
    return parts


def market_goods(
    spec: MarketSpec, status: MarketStatus, result: MarketResult
) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """What each seller delivers and each buyer receives (thousandths), and any disagreement
    with the recorded trades. A double auction's trades are whole units. An equilibrium's are
    recomputed from the orders at the clearing price, exactly: the short side trades its net
    demand, the long side shares the volume in proportion, apportioned by largest remainders."""
    sold: dict[str, int] = {}
    bought: dict[str, int] = {}
    problems: list[str] = []
    if spec.mechanism == "equilibrium" and result.price is not None:
        demand: dict[str, int] = {}
        for order in status.orders:
            if not order.schedule:
                continue
            at = [p for p in order.schedule if p.price <= result.price]
            point = at[-1] if at else order.schedule[0]
            try:
                demand[order.agent] = parse_quantity(point.quantity, signed=True)
            except ValueError as exc:
                problems.append(f"{order.agent}: {exc}")
        buyers = {a: q for a, q in demand.items() if q > 0}
        sellers = {a: -q for a, q in demand.items() if q < 0}
        volume = min(sum(buyers.values()), sum(sellers.values()))
        bought = _apportion(buyers, volume)
        sold = _apportion(sellers, volume)
    else:
        for t in result.trades:
            units = Fraction(t.quantity)
            if units.denominator != 1:
                problems.append(f"{t.agent} trades {t.quantity:g}, not a whole number of units")
            (bought if t.side == "buy" else sold)[t.agent] = int(units * GOODS_UNITS)
    recorded: dict[tuple[str, str], Fraction] = {
        (t.agent, t.side): Fraction(t.quantity) for t in result.trades
    }
    mine = {(a, "buy"): q for a, q in bought.items() if q} | {(a, "sell"): q for a, q in sold.items() if q}
    for key in sorted(recorded.keys() | mine.keys()):
        exact_q = Fraction(mine.get(key, 0), GOODS_UNITS)
        if abs(recorded.get(key, Fraction(0)) - exact_q) > Fraction(1, GOODS_UNITS):
            problems.append(
                f"{key[0]} {'buys' if key[1] == 'buy' else 'sells'} {float(recorded.get(key, 0)):g} "
                f"in the outcome, {format_quantity(mine.get(key, 0))} by its order"
            )
    return sold, bought, problems


def deliver(
    good: str,
    computed: tuple[dict[str, int], dict[str, int], list[str]],
    goods_holds: Mapping[str, int],
    checks: list[SettlementCheck],
) -> list[GoodsTransfer]:
    """The deliveries of a market's ``good`` (sellers to the house, the house to buyers) from
    what :func:`_market_goods` computed, and their checks, appended to ``checks``: each trade
    delivered exactly (``GoodsDelivered``), within the seller's goods escrow (``GoodsHeld``),
    and as much delivered as received (``GoodsConserved``)."""
    delivered, taken, problems = computed
    deliveries = [
        GoodsTransfer.model_validate(
            {"sender": a, "receiver": HOUSE_ACCOUNT, "good": good, "quantity": format_quantity(q)}
        )
        for a, q in sorted(delivered.items())
        if q
    ] + [
        GoodsTransfer.model_validate(
            {"sender": HOUSE_ACCOUNT, "receiver": a, "good": good, "quantity": format_quantity(q)}
        )
        for a, q in sorted(taken.items())
        if q
    ]
    _check(
        checks,
        "GoodsDelivered",
        problems,
        f"each trade's quantity of {good} is delivered exactly (in thousandths)",
    )
    _check(
        checks,
        "GoodsHeld",
        [
            f"{a} delivers {format_quantity(q)} of {good} but escrow holds "
            f"{format_quantity(goods_holds.get(a, 0))}"
            for a, q in sorted(delivered.items())
            if q > goods_holds.get(a, 0)
        ],
        "escrow holds every seller's delivery (a seller owns what it sells)",
    )
    out, into = sum(delivered.values()), sum(taken.values())
    _check(
        checks,
        "GoodsConserved",
        [f"sellers deliver {format_quantity(out)} but buyers receive {format_quantity(into)}"]
        if out != into
        else [],
        f"sellers deliver {format_quantity(out)} of {good}, buyers receive as much",
    )
    return deliveries


def goods_postings(settlement: Settlement) -> dict[str, list[GoodsPosting]]:
    """Each Account's goods lines of ``settlement`` (every Account of it gets an entry, maybe
    empty: its goods escrow is released)."""
    out: dict[str, list[GoodsPosting]] = {name: [] for name in settlement.accounts}
    for g in settlement.goods:
        out.setdefault(g.sender, []).append(GoodsPosting(g.good, g.receiver, -g.quantity, "Sale"))
        out.setdefault(g.receiver, []).append(GoodsPosting(g.good, g.sender, g.quantity, "Purchase"))
    return out


def _check(checks: list[SettlementCheck], name: str, failures: list[str], ok: str) -> None:
    checks.append(
        SettlementCheck(name=name, passed=not failures, message="; ".join(failures[:5]) if failures else ok)
    )
