"""The CATS file format (Leyton-Brown, Pearson and Shoham's Combinatorial Auction Test Suite).

A CATS file is text::

    % comments start with '%'
    goods 4
    bids 3
    dummy 1

    0   12.5   0 1 #
    1   7      2 #
    2   9.25   3 4 #

``goods N`` goods are numbered 0..N-1; ``dummy D`` dummy goods follow them (N..N+D-1); each bid
line is its id, its price and the goods it wants, ended by ``#``. A dummy good makes the bids
that name it mutually exclusive: CATS writes one bidder's XOR bids as bids sharing one dummy.

Reading (:func:`parse_cats`) gives an instance for :func:`clear_combinatorial`: items ``g0``..
``g{N-1}``; the bids that share a dummy good become one XOR bidder ``d{k}`` with one bundle each
(a bid naming several dummies joins the group of its first one); a bid without a dummy is bidder
``b{id}``. Prices are read as exact decimals. Writing (:func:`render_cats`) is the inverse.

Pure: text in, values out (the CLI reads and writes the files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ...errors import InvalidSpecError
from ._combinatorial import BundleBid, XorBid

__all__ = ["CatsBid", "CatsInstance", "from_bundles", "parse_cats", "render_cats", "to_auction"]


@dataclass(frozen=True)
class CatsBid:
    """One line: the bid's price and its goods (dummy goods included, as numbers)."""

    price: Decimal
    goods: tuple[int, ...]


@dataclass(frozen=True)
class CatsInstance:
    goods: int
    dummy: int
    bids: tuple[CatsBid, ...]


def parse_cats(text: str) -> CatsInstance:
    """Read a CATS file; raises InvalidSpecError naming the line of the first problem."""
    header: dict[str, int] = {}
    bids: list[CatsBid] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("%", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] in ("goods", "bids", "dummy"):
            if len(words) != 2 or not words[1].isdigit():
                raise InvalidSpecError(f"{words[0]} takes one whole number", path=f"line {number}")
            header[words[0]] = int(words[1])
            continue
        if words[-1] != "#":
            raise InvalidSpecError("a bid line ends with '#'", path=f"line {number}")
        if "goods" not in header:
            raise InvalidSpecError("the 'goods N' line comes before the bids", path=f"line {number}")
        if len(words) < 4:
            raise InvalidSpecError("a bid line is: id price good... #", path=f"line {number}")
        try:
            price = Decimal(words[1])
            goods = tuple(int(w) for w in words[2:-1])
        except (InvalidOperation, ValueError):
            raise InvalidSpecError("a bid line is: id price good... #", path=f"line {number}") from None
        if not price.is_finite() or price < 0:
            raise InvalidSpecError(
                f"the price {words[1]} is not a non-negative number", path=f"line {number}"
            )
        limit = header["goods"] + header.get("dummy", 0)
        if any(not 0 <= g < limit for g in goods) or len(set(goods)) != len(goods):
            raise InvalidSpecError(f"goods are distinct numbers from 0 to {limit - 1}", path=f"line {number}")
        bids.append(CatsBid(price, goods))
    if "goods" not in header:
        raise InvalidSpecError("no 'goods N' line", path="line 1")
    if "bids" in header and header["bids"] != len(bids):
        raise InvalidSpecError(
            f"the header says {header['bids']} bids, the file has {len(bids)}", path="bids"
        )
    return CatsInstance(header["goods"], header.get("dummy", 0), tuple(bids))


def render_cats(instance: CatsInstance, comment: str = "") -> str:
    """The CATS text of ``instance`` (bids numbered from 0)."""
    lines = [f"% {line}" for line in comment.splitlines()]
    lines += [f"goods {instance.goods}", f"bids {len(instance.bids)}", f"dummy {instance.dummy}", ""]
    for i, bid in enumerate(instance.bids):
        lines.append(f"{i}\t{bid.price}\t" + "\t".join(str(g) for g in bid.goods) + "\t#")
    return "\n".join(lines) + "\n"


def to_auction(instance: CatsInstance) -> tuple[list[XorBid], list[str]]:
    """The XOR bids (in file order of their first bid) and the items of a CATS instance."""
    items = [f"g{g}" for g in range(instance.goods)]
    groups: dict[str, list[BundleBid]] = {}
    for i, bid in enumerate(instance.bids):
        real = frozenset(f"g{g}" for g in bid.goods if g < instance.goods)
        dummies = [g for g in bid.goods if g >= instance.goods]
        if not real:
            continue
        agent = f"d{dummies[0] - instance.goods}" if dummies else f"b{i}"
        groups.setdefault(agent, []).append(BundleBid(real, Fraction(bid.price)))
    return [XorBid(agent, tuple(bundles)) for agent, bundles in groups.items()], items


def from_bundles(goods: int, bundles: Sequence[tuple[Decimal, Sequence[int]]]) -> CatsInstance:
    """An instance of single-minded bids (no dummy goods)."""
    return CatsInstance(goods, 0, tuple(CatsBid(price, tuple(g)) for price, g in bundles))
