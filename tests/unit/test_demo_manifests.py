"""The demo applies examples/ in dependency order."""

from __future__ import annotations

from pathlib import Path

from mabeam.local import demo

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_examples_are_ordered_agents_first() -> None:
    kinds = [d["kind"] for d in demo.load_manifests(EXAMPLES)]
    assert kinds.count("Agent") >= 3
    order = ["Agent", "Variable", "Account", "Coordination", "Vote", "Auction", "Market"]
    assert kinds == sorted(kinds, key=order.index)
    assert {"Auction", "Market", "Account"} <= set(kinds)
