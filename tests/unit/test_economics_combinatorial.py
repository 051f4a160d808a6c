"""Combinatorial winner determination and VCG prices against brute-force enumeration."""

from __future__ import annotations

import itertools
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics._combinatorial import (
    BundleBid,
    XorBid,
    clear_combinatorial,
    winner_determination,
)
from tests.strategies_auctions import XorInstance, xor_instances

Choice = tuple[int | None, ...]  # per bidder: the index of its winning bundle, or None


def allocations(bids: list[XorBid]) -> list[Choice]:
    """Every feasible allocation: one bundle or none per bidder, no item twice."""
    out = []
    for choice in itertools.product(*[[None, *range(len(b.bundles))] for b in bids]):
        taken: list[str] = []
        for bid, j in zip(bids, choice, strict=True):
            if j is not None:
                taken.extend(bid.bundles[j].items)
        if len(taken) == len(set(taken)):
            out.append(choice)
    return out


def value(bids: list[XorBid], choice: Choice, items: tuple[str, ...], reserve: Fraction) -> Fraction:
    total = Fraction(0)
    sold = 0
    for bid, j in zip(bids, choice, strict=True):
        if j is not None:
            total += bid.bundles[j].amount
            sold += len(bid.bundles[j].items)
    return total + reserve * (len(items) - sold)


def best(bids: list[XorBid], items: tuple[str, ...], reserve: Fraction) -> Fraction:
    return max(value(bids, c, items, reserve) for c in allocations(bids))


def as_choice(bids: list[XorBid], allocation: dict[int, int]) -> Choice:
    return tuple(allocation.get(i) for i in range(len(bids)))


def lexicographic_first_optimum(bids: list[XorBid], items: tuple[str, ...], reserve: Fraction) -> Choice:
    """The documented tie-break, by brute force: among the optimal allocations, the one whose
    indicator vector over (bidder, bundle) in list order is lexicographically greatest."""
    top = best(bids, items, reserve)
    optimal = [c for c in allocations(bids) if value(bids, c, items, reserve) == top]

    def indicator(choice: Choice) -> tuple[int, ...]:
        return tuple(
            int(j == k) for bid, j in zip(bids, choice, strict=True) for k in range(len(bid.bundles))
        )

    return max(optimal, key=indicator)


MILP = settings(max_examples=60, deadline=None)


@MILP
@given(xor_instances())
def test_the_milp_welfare_equals_brute_force_and_the_allocation_is_feasible(case: XorInstance) -> None:
    allocation, welfare = winner_determination(case.bids, case.items, case.reserve)
    assert welfare == best(case.bids, case.items, case.reserve)
    won_items = [item for i, j in allocation.items() for item in case.bids[i].bundles[j].items]
    assert len(won_items) == len(set(won_items))  # disjoint
    assert set(allocation) <= set(range(len(case.bids)))  # at most one bundle per bidder (a dict)
    assert value(case.bids, as_choice(case.bids, allocation), case.items, case.reserve) == welfare


@MILP
@given(xor_instances())
def test_ties_between_optimal_allocations_are_broken_as_documented(case: XorInstance) -> None:
    allocation, _ = winner_determination(case.bids, case.items, case.reserve)
    assert as_choice(case.bids, allocation) == lexicographic_first_optimum(
        case.bids, case.items, case.reserve
    )


def test_a_tie_goes_to_the_earlier_bidder_whatever_the_solver_prefers() -> None:
    items = ("i1", "i2")
    one = XorBid("zed", (BundleBid(frozenset({"i1", "i2"}), Fraction(10)),))
    two = XorBid("amy", (BundleBid(frozenset({"i1"}), Fraction(5)),))
    three = XorBid("bo", (BundleBid(frozenset({"i2"}), Fraction(5)),))
    first, _ = winner_determination([one, two, three], items, Fraction(0))
    assert first == {0: 0}
    second, _ = winner_determination([two, three, one], items, Fraction(0))
    assert second == {0: 0, 1: 0}


def test_a_bundle_worth_exactly_its_reserve_sells() -> None:
    bids = [XorBid("ada", (BundleBid(frozenset({"i1", "i2"}), Fraction(6)),))]
    outcome = clear_combinatorial(bids, ("i1", "i2", "i3"), Fraction(3))
    assert outcome.reason == "Optimal"
    assert [(w.agent, w.items, w.price) for w in outcome.wins] == [("ada", ("i1", "i2"), Fraction(6))]


def brute_force_vcg(case: XorInstance) -> dict[str, Fraction]:
    choice = lexicographic_first_optimum(case.bids, case.items, case.reserve)
    top = value(case.bids, choice, case.items, case.reserve)
    prices = {}
    for i, j in enumerate(choice):
        if j is None:
            continue
        others = [b if k != i else XorBid(b.agent, ()) for k, b in enumerate(case.bids)]
        without = best(others, case.items, case.reserve)
        prices[case.bids[i].agent] = without - (top - case.bids[i].bundles[j].amount)
    return prices


@MILP
@given(xor_instances())
def test_vcg_prices_match_brute_force_and_are_individually_rational(case: XorInstance) -> None:
    outcome = clear_combinatorial(case.bids, case.items, case.reserve)
    expected = brute_force_vcg(case)
    assert {w.agent: w.price for w in outcome.wins} == expected
    for win in outcome.wins:
        assert win.price <= win.bid
        assert win.price >= case.reserve * len(win.items)
    if not any(b.bundles for b in case.bids):
        assert outcome.reason == "NoBids"
    elif not outcome.wins:
        assert outcome.reason == "BelowReserve"
    else:
        assert outcome.reason == "Optimal"
        assert [w.agent for w in outcome.wins] == sorted(w.agent for w in outcome.wins)


def _utility(case: XorInstance, truth: XorBid, report: XorBid) -> Fraction:
    bids = [report if b.agent == truth.agent else b for b in case.bids]
    outcome = clear_combinatorial(bids, case.items, case.reserve)
    for win in outcome.wins:
        if win.agent == truth.agent:
            true_value = max(
                (b.amount for b in truth.bundles if b.items == frozenset(win.items)), default=Fraction(0)
            )
            return true_value - win.price
    return Fraction(0)


@settings(max_examples=25, deadline=None)
@given(xor_instances(max_items=4, max_bidders=4), st.data())
def test_vcg_is_truthful_no_misreport_raises_utility(case: XorInstance, data: st.DataObject) -> None:
    truth = case.bids[0]
    honest = _utility(case, truth, truth)
    reports = [
        XorBid(truth.agent, tuple(BundleBid(b.items, b.amount * factor) for b in truth.bundles))
        for factor in (Fraction(0), Fraction(1, 2), Fraction(3, 2), Fraction(3))
    ]
    if truth.bundles:
        kept = data.draw(st.lists(st.booleans(), min_size=len(truth.bundles), max_size=len(truth.bundles)))
        reports.append(XorBid(truth.agent, tuple(b for b, k in zip(truth.bundles, kept, strict=True) if k)))
        shaded = data.draw(
            st.lists(
                st.integers(min_value=0, max_value=25),
                min_size=len(truth.bundles),
                max_size=len(truth.bundles),
            )
        )
        reports.append(
            XorBid(
                truth.agent,
                tuple(BundleBid(b.items, Fraction(a)) for b, a in zip(truth.bundles, shaded, strict=True)),
            )
        )
    for report in reports:
        assert _utility(case, truth, report) <= honest, report


def test_the_time_limit_ends_in_unsolved_and_sells_nothing() -> None:
    bids = [XorBid("ada", (BundleBid(frozenset({"i1"}), Fraction(4)),))]
    outcome = clear_combinatorial(bids, ("i1",), Fraction(0), time_limit=0.0)
    assert outcome.reason == "Unsolved"
    assert outcome.wins == ()


# Found by bench/economics.py (seed 20261125, 8 x 3 x 6, instance 19): when HiGHS was given the
# chosen allocation as a warm start for a winner's VCG sub-problem, it reported the right
# objective with the start's columns, and b00 paid the reserve (2) instead of its VCG price (28).
REGRESSION_19 = [
    ("b00", [(["i00"], 30), (["i01", "i02"], 36), (["i03", "i05"], 40)]),
    ("b01", [(["i02", "i04", "i05"], 70), (["i04"], 14), (["i02", "i04"], 15)]),
    ("b02", [(["i03", "i05"], 31), (["i02", "i05"], 28), (["i00", "i02", "i03"], 19)]),
    ("b03", [(["i02", "i03"], 19), (["i05"], 12), (["i01", "i04"], 41)]),
    ("b04", [(["i01", "i03", "i05"], 34), (["i05"], 2), (["i01", "i02", "i04"], 25)]),
    ("b05", [(["i01", "i02", "i04"], 39), (["i01", "i03", "i04"], 34), (["i01", "i03"], 50)]),
    ("b06", [(["i02", "i04"], 37), (["i01", "i02", "i03"], 37), (["i01", "i03"], 17)]),
    ("b07", [(["i02"], 7), (["i00"], 28), (["i02", "i04"], 26)]),
]


def test_vcg_prices_of_a_larger_instance_match_brute_force() -> None:
    bids = [
        XorBid(agent, tuple(BundleBid(frozenset(items), Fraction(amount)) for items, amount in offers))
        for agent, offers in REGRESSION_19
    ]
    case = XorInstance(items=tuple(f"i{k:02d}" for k in range(6)), bids=bids, reserve=Fraction(2))
    outcome = clear_combinatorial(case.bids, case.items, case.reserve)
    prices = {w.agent: w.price for w in outcome.wins}
    assert prices == brute_force_vcg(case)
    assert prices["b00"] == 28
