"""Hypothesis strategies for the auction mechanisms (one module, as tests/strategies.py does).

Numbers are drawn from small grids (halves, integers) so that the references in the tests can be
computed exactly and ties happen often enough to exercise the tie-breaks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass
from fractions import Fraction

from hypothesis import strategies as st

from mabeam.core.economics._combinatorial import BundleBid, XorBid
from mabeam.core.economics._sealed import SealedBid
from mabeam.core.economics.sealing import SealingKey, seal
from mabeam.models._sealed import SealedEnvelope
from mabeam.models.auction import BidContent, Bundle

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AGENT_POOL = ("ada", "bob", "cy", "dee", "eve", "fay")
ITEM_POOL = ("i1", "i2", "i3", "i4", "i5")

#: The operator's key in the tests of the engine, and the Auction's uid there.
KEY = SealingKey(hashlib.sha256(b"the operator's sealing key").digest())
UID = "6f1c2a9e-0000-4000-8000-auction"
_draws = itertools.count()


def content_of(
    amount: float | None = None, bundles: list[tuple[list[str], float]] | None = None
) -> BidContent:
    return BidContent(
        amount=amount,
        bundles=[Bundle(items=items, amount=a) for items, a in bundles] if bundles is not None else None,
    )


def seal_as(
    agent: str, content: BidContent, *, uid: str = UID, key: SealingKey = KEY, kind: str = "Bid"
) -> SealedEnvelope:
    """What the SDK writes for ``agent``: ``content`` sealed to ``key`` (fresh, distinct randomness
    per call, as os.urandom gives, but reproducible)."""
    seed = hashlib.sha256(f"{next(_draws)}/{agent}".encode()).digest()
    return seal(
        key.info,
        kind,
        uid,
        agent,
        content.model_dump(mode="json", exclude_none=True),
        ephemeral=seed,
        nonce=hashlib.sha256(seed).digest()[:12],
    )


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


halves = st.integers(min_value=0, max_value=40).map(lambda n: n / 2)
"""0, 0.5, ..., 20: amounts, values and reserves."""
seconds = st.integers(min_value=0, max_value=5)


@st.composite
def sealed_bids(draw: st.DrawFn, min_size: int = 0, max_size: int = 5) -> list[SealedBid]:
    """Opened single-item bids from distinct agents, with receive times (ties likely)."""
    agents = draw(st.lists(st.sampled_from(AGENT_POOL), min_size=min_size, max_size=max_size, unique=True))
    return [SealedBid(agent, draw(halves), at(draw(seconds))) for agent in agents]


@st.composite
def bundle_bids(draw: st.DrawFn, items: tuple[str, ...], max_bundles: int = 3) -> tuple[BundleBid, ...]:
    count = draw(st.integers(min_value=0, max_value=max_bundles))
    out = []
    for _ in range(count):
        chosen = draw(st.lists(st.sampled_from(items), min_size=1, max_size=len(items), unique=True))
        out.append(BundleBid(frozenset(chosen), Fraction(draw(st.integers(min_value=0, max_value=20)))))
    return tuple(out)


@dataclass
class XorInstance:
    items: tuple[str, ...]
    bids: list[XorBid]
    reserve: Fraction


@st.composite
def xor_instances(draw: st.DrawFn, max_items: int = 5, max_bidders: int = 5) -> XorInstance:
    """<= max_items items, <= max_bidders bidders, <= 3 bundles each, integer amounts 0..20."""
    n_items = draw(st.integers(min_value=1, max_value=max_items))
    items = ITEM_POOL[:n_items]
    agents = draw(st.lists(st.sampled_from(AGENT_POOL), min_size=1, max_size=max_bidders, unique=True))
    bids = [XorBid(agent, draw(bundle_bids(items))) for agent in agents]
    reserve = Fraction(draw(st.sampled_from([0, 0, 1, 2, 3, 5])), draw(st.sampled_from([1, 2])))
    return XorInstance(items, bids, reserve)


clock_values = st.dictionaries(
    st.sampled_from(AGENT_POOL), st.integers(min_value=0, max_value=60), min_size=1, max_size=5
)
"""Private values of the bidders in a clock auction (integers, so clock prices are exact)."""
