"""Combinatorial winner determination and VCG prices against brute-force enumeration."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.core.economics._combinatorial import (
    BundleBid,
    XorBid,
    clear_combinatorial,
    welfare,
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


def tie_broken_optima(bids: list[XorBid], items: tuple[str, ...], reserve: Fraction) -> list[Choice]:
    """The documented tie-break, by brute force: among the optimal allocations, those with the
    greatest weight, bundle k (of the n bundles worth at least their reserve, in list order)
    weighing 2 ** (n - 1 - k) when n <= 40 (the lexicographic rule: then there is exactly one),
    else n - k."""
    top = best(bids, items, reserve)
    optimal = [c for c in allocations(bids) if value(bids, c, items, reserve) == top]
    eligible = [
        (i, j)
        for i, bid in enumerate(bids)
        for j, bundle in enumerate(bid.bundles)
        if bundle.amount >= reserve * len(bundle.items)
    ]
    n = len(eligible)
    weight = {ij: 2 ** (n - 1 - k) if n <= 40 else n - k for k, ij in enumerate(eligible)}

    def total(choice: Choice) -> int:
        return sum(weight[(i, j)] for i, j in enumerate(choice) if j is not None)

    heaviest = max(total(c) for c in optimal)
    return [c for c in optimal if total(c) == heaviest]


def lexicographic_first_optimum(bids: list[XorBid], items: tuple[str, ...], reserve: Fraction) -> Choice:
    """The tie-broken optimum (unique for these small instances)."""
    (choice,) = tie_broken_optima(bids, items, reserve)
    return choice


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
    assert [as_choice(case.bids, allocation)] == tie_broken_optima(case.bids, case.items, case.reserve)


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


def test_a_price_from_another_winners_re_solve_matches_brute_force() -> None:
    """x and z win (the tie-break prefers them to w, who bids as much for both items); x's re-solve
    finds w's allocation, worth the optimum and without z: z's price then needs no solve of its
    own. Many winners sharing such alternatives (bundles of equal worth) exercise the same path."""
    a, b = frozenset({"a"}), frozenset({"b"})
    bids = [
        XorBid("x", (BundleBid(a, Fraction(5)),)),
        XorBid("z", (BundleBid(b, Fraction(7)),)),
        XorBid("w", (BundleBid(a | b, Fraction(12)),)),
    ]
    outcome = clear_combinatorial(bids, ("a", "b"), Fraction(1))
    assert [(w.agent, w.price) for w in outcome.wins] == [("x", Fraction(5)), ("z", Fraction(7))]
    case = XorInstance(items=("a", "b"), bids=bids, reserve=Fraction(1))
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(case)
    twins = [XorBid(f"p{k}", (BundleBid(frozenset({f"i{k // 2}"}), Fraction(3 + k % 2)),)) for k in range(8)]
    pairs = [XorBid(f"q{k}", (BundleBid(frozenset({f"i{k}", f"i{k + 1}"}), Fraction(7)),)) for k in range(3)]
    case = XorInstance(items=tuple(f"i{k}" for k in range(4)), bids=twins + pairs, reserve=Fraction(0))
    outcome = clear_combinatorial(case.bids, case.items, case.reserve)
    assert outcome.reason == "Optimal"
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(case)


@st.composite
def crowded_single_minded(draw: st.DrawFn) -> XorInstance:
    """Up to 10 single-minded bidders on 6 items, amounts 1..6: many winners and many ties
    between the values of the allocations without each of them."""
    items = tuple(f"i{k}" for k in range(6))
    count = draw(st.integers(min_value=4, max_value=10))
    bids = [
        XorBid(
            f"a{k:02d}",
            (
                BundleBid(
                    frozenset(draw(st.lists(st.sampled_from(items), min_size=1, max_size=3, unique=True))),
                    Fraction(draw(st.integers(min_value=1, max_value=6))),
                ),
            ),
        )
        for k in range(count)
    ]
    return XorInstance(items, bids, Fraction(draw(st.sampled_from([0, 0, 1]))))


@MILP
@given(crowded_single_minded())
def test_prices_proven_several_at_a_time_match_brute_force(case: XorInstance) -> None:
    """The prices come from solves that each prove the best allocation leaving out at least one
    of the winners still open (``_without_each``): every price against brute force."""
    outcome = clear_combinatorial(case.bids, case.items, case.reserve)
    assert outcome.reason == "Optimal"
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(case)


@MILP
@given(
    crowded_single_minded(),
    st.sampled_from([(0, Fraction(1)), (10**13, Fraction(1, 1000)), (0, Fraction(10**13))]),
)
def test_prices_proven_by_gain_match_brute_force(case: XorInstance, scale: tuple[int, Fraction]) -> None:
    """With every price proven by gain (each solve: the greatest gain of an allocation without
    one open winner over that winner's best allocation found, ``_Model.gain``; a gain of at most
    0 closes every open price), every price against brute force, at small and at huge amounts."""
    from unittest import mock

    from mabeam.core.economics import _combinatorial

    scaled = _shifted(case, Fraction(scale[0]), scale[1])
    with mock.patch.object(_combinatorial, "_GAIN_FROM_WORK", 0.0):
        outcome = clear_combinatorial(scaled.bids, scaled.items, scaled.reserve)
    assert outcome.reason == "Optimal"
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(scaled)


def test_one_solve_proves_the_prices_of_winners_one_alternative_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six winners of one item each; one bidder offers as much as all of them together for all
    six items. Without any one winner the best is that bidder's bundle: one solve (the best
    allocation leaving out at least one winner) proves all six prices, each checked here by
    brute force."""
    from mabeam.core.economics import _combinatorial

    solves = []
    stage = _combinatorial._Model._stage

    def counted(self, *args):  # type: ignore[no-untyped-def]
        solves.append(args)
        return stage(self, *args)

    monkeypatch.setattr(_combinatorial._Model, "_stage", counted)
    items = tuple(f"i{k}" for k in range(6))
    bids = [XorBid(f"s{k}", (BundleBid(frozenset({item}), Fraction(5)),)) for k, item in enumerate(items)]
    bids.append(XorBid("all", (BundleBid(frozenset(items), Fraction(30)),)))
    case = XorInstance(items, bids, Fraction(0))
    outcome = clear_combinatorial(case.bids, case.items, case.reserve)
    assert [w.agent for w in outcome.wins] == [f"s{k}" for k in range(6)]
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(case) == {f"s{k}": 5 for k in range(6)}
    assert len(solves) <= 2  # the winner determination and at most one solve for all six prices


def _columns_of(model: object, bids: list[XorBid], choice: Choice) -> frozenset[int]:
    index = {ij: k for k, ij in enumerate(model.columns)}  # type: ignore[attr-defined]
    return frozenset(index[(i, j)] for i, j in enumerate(choice) if j is not None)


@MILP
@given(xor_instances(), st.data())
def test_the_dual_certificate_bounds_every_allocation_whatever_the_multipliers(
    case: XorInstance, data: st.DataObject
) -> None:
    """The reduced-cost bound (``_Model.certificate``) holds for any multipliers >= 0, not only
    the LP solver's: checked on every feasible allocation by enumeration, for random ones and for
    GLOP's."""
    from mabeam.core.economics._combinatorial import _DUAL_SCALE, _Model

    model = _Model(case.bids, case.reserve, 60.0)
    y = data.draw(
        st.lists(st.integers(0, 40 * _DUAL_SCALE), min_size=len(model.groups), max_size=len(model.groups))
    )
    for top, reduced in (model.certificate(y), model._dual()):
        for choice in allocations(case.bids):
            if any(
                j is not None
                and case.bids[i].bundles[j].amount < case.reserve * len(case.bids[i].bundles[j].items)
                for i, j in enumerate(choice)
            ):
                continue  # below its reserve: never a column
            chosen = _columns_of(model, case.bids, choice)
            assert model.value(chosen) * _DUAL_SCALE <= top - sum(reduced[k] for k in chosen)


@MILP
@given(xor_instances(), st.integers(min_value=0, max_value=60))
def test_fixed_columns_are_in_no_allocation_worth_more_than_the_floor(case: XorInstance, floor: int) -> None:
    from mabeam.core.economics._combinatorial import _Model

    model = _Model(case.bids, case.reserve, 60.0)
    fixed = model.fixable(floor * model.scale, frozenset())
    for choice in allocations(case.bids):
        if any(
            j is not None
            and case.bids[i].bundles[j].amount < case.reserve * len(case.bids[i].bundles[j].items)
            for i, j in enumerate(choice)
        ):
            continue
        chosen = _columns_of(model, case.bids, choice)
        if model.value(chosen) > floor * model.scale:
            assert not chosen & fixed


def test_a_column_the_lp_bound_rules_out_is_fixed_and_the_hint_never() -> None:
    """x and y (10 each) beat z (5 for both items): the LP bound is 20 and any allocation with z
    is worth at most 5, so above a floor of 5 z is left out; at a floor of 4, or when z is in
    the hint, it stays."""
    from mabeam.core.economics._combinatorial import _Model

    a, b = frozenset({"a"}), frozenset({"b"})
    bids = [
        XorBid("x", (BundleBid(a, Fraction(10)),)),
        XorBid("y", (BundleBid(b, Fraction(10)),)),
        XorBid("z", (BundleBid(a | b, Fraction(5)),)),
    ]
    model = _Model(bids, Fraction(0), 60.0)
    assert model.fixable(5, frozenset()) == {2}
    assert model.fixable(4, frozenset()) == frozenset()
    assert model.fixable(5, frozenset({2})) == frozenset()


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


def test_the_work_limit_ends_in_unsolved_and_sells_nothing() -> None:
    """Two bids on one item: the allocation the LP suggests (bob) is optimal, but with no work
    allowed nothing proves it (the only bound known is both bids together)."""
    bids = [
        XorBid("ada", (BundleBid(frozenset({"i1"}), Fraction(4)),)),
        XorBid("bob", (BundleBid(frozenset({"i1"}), Fraction(5)),)),
    ]
    outcome = clear_combinatorial(bids, ("i1",), Fraction(0), work_limit=0.0)
    assert outcome.reason == "Unsolved"
    assert outcome.wins == ()
    assert outcome.gap is not None and outcome.gap > 0


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


# --- exact amounts, huge and tiny ---------------------------------------------------------------

HUGE = Fraction(10**13)
MILLI = Fraction(1, 1000)


def _shifted(case: XorInstance, base: Fraction, unit: Fraction) -> XorInstance:
    """The same instance with every amount a turned into base * |bundle| + a * unit."""
    bids = [
        XorBid(b.agent, tuple(BundleBid(x.items, base * len(x.items) + x.amount * unit) for x in b.bundles))
        for b in case.bids
    ]
    return XorInstance(case.items, bids, base + case.reserve * unit)


@MILP
@given(
    xor_instances(max_items=4, max_bidders=4),
    st.sampled_from([(HUGE, MILLI), (Fraction(0), Fraction(1, 10**18))]),
)
def test_huge_and_tiny_amounts_clear_exactly(case: XorInstance, scale: tuple[Fraction, Fraction]) -> None:
    shifted = _shifted(case, *scale)
    outcome = clear_combinatorial(shifted.bids, shifted.items, shifted.reserve)
    assert outcome.welfare == best(shifted.bids, shifted.items, shifted.reserve)
    assert {w.agent: w.price for w in outcome.wins} == brute_force_vcg(shifted)


def test_the_issue_case_one_thousandth_apart_at_ten_trillion() -> None:
    low = XorBid("ada", (BundleBid(frozenset({"a"}), HUGE),))
    high = XorBid("bob", (BundleBid(frozenset({"a"}), HUGE + MILLI),))
    outcome = clear_combinatorial([low, high], ("a",), Fraction(0))
    assert [(w.agent, w.price) for w in outcome.wins] == [("bob", HUGE)]
    pair = XorBid("cy", (BundleBid(frozenset({"a", "b"}), 2 * HUGE + MILLI),))
    single = XorBid("dan", (BundleBid(frozenset({"b"}), HUGE),))
    outcome = clear_combinatorial([low, single, pair], ("a", "b"), Fraction(0))
    assert [(w.agent, w.price) for w in outcome.wins] == [("cy", 2 * HUGE)]


# --- medium instances against a second solver (HiGHS) ------------------------------------------


def highs_optimum(bids: list[XorBid], reserve: Fraction) -> Fraction:
    """The optimal surplus by HiGHS, an independent MILP solver (integer data: exact to 1e-6)."""
    import highspy
    import numpy as np

    columns = [
        (i, b.amount - reserve * len(b.items), b.items)
        for i, bid in enumerate(bids)
        for b in bid.bundles
        if b.amount >= reserve * len(b.items)
    ]
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    for _ in columns:
        h.addVar(0, 1)
    n = len(columns)
    idx = np.arange(n, dtype=np.int32)
    h.changeColsCost(n, idx, np.array([float(s) for _, s, _ in columns]))
    h.changeColsIntegrality(n, idx, np.array([highspy.HighsVarType.kInteger] * n))
    rows: dict[object, list[int]] = {}
    for k, (i, _, items) in enumerate(columns):
        rows.setdefault(("agent", i), []).append(k)
        for item in items:
            rows.setdefault(item, []).append(k)
    for ks in rows.values():
        h.addRow(-highspy.kHighsInf, 1, len(ks), np.array(ks, dtype=np.int32), np.ones(len(ks)))
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    h.run()
    return Fraction(round(h.getInfo().objective_function_value))


@settings(max_examples=6, deadline=None)
@given(st.sampled_from(["regions", "arbitrary"]), st.integers(min_value=1, max_value=10**6))
def test_medium_cats_instances_match_a_second_solver(kind: str, seed: int) -> None:
    from bench.cats import generate
    from mabeam.core.economics._cats import to_auction

    bids, items = to_auction(generate(kind, 36, 90, seed))
    cents = [XorBid(b.agent, tuple(BundleBid(x.items, x.amount * 100) for x in b.bundles)) for b in bids]
    allocation, total = winner_determination(cents, items, Fraction(0))
    assert total == highs_optimum(cents, Fraction(0))
    assert welfare(cents, allocation, items, Fraction(0)) == total


# --- the work limit: deterministic, and explicit when reached ---------------------------------


def test_a_reached_work_limit_is_explicit_and_the_same_every_time() -> None:
    from bench.cats import generate
    from mabeam.core.economics._cats import to_auction

    bids, items = to_auction(generate("arbitrary", 64, 300, 7))
    found = None
    for limit in (0.05, 0.2, 0.5, 1.0, 2.0):
        outcomes = [
            clear_combinatorial(bids, items, Fraction(0), work_limit=limit, on_timeout=policy)
            for policy in ("NoSale", "NoSale", "BestFound", "BestFound")
        ]
        assert outcomes[0] == outcomes[1] and outcomes[2] == outcomes[3]  # load-independent
        nosale, best_found = outcomes[0], outcomes[2]
        if nosale.reason == "Optimal":
            break
        assert nosale.reason == "Unsolved" and nosale.wins == () and nosale.gap is not None
        assert best_found.reason in ("BestFound", "Unsolved")
        if best_found.reason == "BestFound":
            found = best_found
            break
    assert found is not None and found.gap is not None and found.gap > 0
    won = [item for w in found.wins for item in w.items]
    assert len(won) == len(set(won))
    for w in found.wins:
        assert 0 <= w.price <= w.bid


def test_a_work_limit_reached_while_proving_by_gain_is_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit cut during the prices proven by gain: NoSale sells nothing, BestFound sells with
    a gap and prices within the bids, both the same every time."""
    from bench.cats import generate
    from mabeam.core.economics import _combinatorial
    from mabeam.core.economics._cats import to_auction

    monkeypatch.setattr(_combinatorial, "_GAIN_FROM_WORK", 0.0)
    cut: list[bool] = []
    gain = _combinatorial._Model.gain

    def spy(self, *args):  # type: ignore[no-untyped-def]
        best, proven = gain(self, *args)
        cut.append(not proven)
        return best, proven

    monkeypatch.setattr(_combinatorial._Model, "gain", spy)
    bids, items = to_auction(generate("arbitrary", 30, 80, 11))
    full = clear_combinatorial(bids, items, Fraction(0), work_limit=1000)
    assert full.reason == "Optimal" and cut and not any(cut)
    limit = full.work * 0.8
    cut.clear()
    outcomes = [
        clear_combinatorial(bids, items, Fraction(0), work_limit=limit, on_timeout=policy)
        for policy in ("NoSale", "NoSale", "BestFound", "BestFound")
    ]
    assert any(cut)  # a gain solve was cut by the limit
    assert outcomes[0] == outcomes[1] and outcomes[2] == outcomes[3]
    assert outcomes[0].reason == "Unsolved" and outcomes[0].wins == () and outcomes[0].gap
    found = outcomes[2]
    assert found.reason == "BestFound" and found.gap is not None and found.gap > 0
    assert found.welfare == full.welfare  # the winner determination was proven before the cut
    for w in found.wins:
        assert 0 <= w.price <= w.bid


def test_the_same_bids_give_the_same_solves_in_every_process() -> None:
    """The model must not depend on Python's hash order (a bundle's items are a frozenset of
    strings): two processes with different hash seeds spend the same work and clear the same."""
    import os
    import subprocess
    import sys

    code = (
        "from fractions import Fraction\n"
        "from bench.cats import generate\n"
        "from mabeam.core.economics._cats import to_auction\n"
        "from mabeam.core.economics._combinatorial import clear_combinatorial\n"
        "bids, items = to_auction(generate('arbitrary', 30, 80, 11))\n"
        "print(repr(clear_combinatorial(bids, items, Fraction(0))))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and "Optimal" in runs[0]


@pytest.mark.parametrize(
    ("kind", "goods", "count", "first_stage", "gain_from"),
    [
        ("regions", 25, 60, 3.0, 1.0),
        ("regions", 25, 60, 0.0, 1.0),
        ("regions", 25, 60, 3.0, 0.0),
        ("arbitrary", 30, 80, 3.0, 1.0),
        ("arbitrary", 30, 80, 3.0, 0.0),
        ("regions", 49, 150, 0.005, 1.0),
    ],
)
def test_vcg_prices_of_a_medium_cats_instance_match_a_second_solver(
    kind: str, goods: int, count: int, first_stage: float, gain_from: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every price against HiGHS solving the instance without the winner; with ``_FIRST_STAGE`` 0
    the winner determination and every re-solve run in the LP-heavy stage (the path of large
    "regions" instances), otherwise in the default one. With 0.005 the first stage is cut with
    an allocation found, and the second leaves out the bundles the LP certificate puts below it
    (checked to happen). ``gain_from`` 0: every price proven by gain (``_Model.gain``)."""
    from bench.cats import generate
    from mabeam.core.economics import _combinatorial
    from mabeam.core.economics._cats import to_auction

    monkeypatch.setattr(_combinatorial, "_FIRST_STAGE", first_stage)
    monkeypatch.setattr(_combinatorial, "_GAIN_FROM_WORK", gain_from)
    gains: list[int] = []
    gain = _combinatorial._Model.gain

    def counted(self, *args):  # type: ignore[no-untyped-def]
        best, proven = gain(self, *args)
        gains.append(best)
        return best, proven

    monkeypatch.setattr(_combinatorial._Model, "gain", counted)
    fixings: list[int] = []
    fixable = _combinatorial._Model.fixable

    def spy(self, floor, hint, *, strict=False):  # type: ignore[no-untyped-def]
        fixed = fixable(self, floor, hint, strict=strict)
        if strict:
            fixings.append(len(fixed))
        return fixed

    monkeypatch.setattr(_combinatorial._Model, "fixable", spy)
    bids, items = to_auction(generate(kind, goods, count, 11))
    cents = [XorBid(b.agent, tuple(BundleBid(x.items, x.amount * 100) for x in b.bundles)) for b in bids]
    outcome = clear_combinatorial(cents, items, Fraction(0))
    assert outcome.reason == "Optimal" and len(outcome.wins) > 3
    top = highs_optimum(cents, Fraction(0))
    assert outcome.welfare == top
    for win in outcome.wins:
        without = highs_optimum([b for b in cents if b.agent != win.agent], Fraction(0))
        assert win.price == without - (top - win.bid), win.agent
    if first_stage == 0.005:
        assert len(fixings) > 1 and fixings[1] > 0  # the winner determination's second stage
    assert bool(gains) == (gain_from == 0.0)
