"""CATS-like instances: the "regions" and "arbitrary" distributions of Leyton-Brown, Pearson and
Shoham, *Towards a Universal Test Suite for Combinatorial Auction Algorithms* (EC 2000), with
CATS 2.2's default parameters (uniform private values), simplified to single-minded bids.

What is kept (CATS's parameter names in brackets):

- regions: the goods are the cells of a ``floor(sqrt(N))`` square grid (so 100 and 256 goods
  are kept as they are); each cell is joined to the cell below and to the right unless a coin
  [remove_neighbor = 0.1] removes the edge, and with probability [additional_neighbor = 0.2]
  to one of its diagonal neighbours. arbitrary: every pair of goods has a closeness
  ``d(g, h) ~ U(0, 1)``.
- Every good has a common value ``c(g) ~ U(1, max_good_value)`` [max_good_value = 100]; each
  bidder draws private values ``p(g) ~ U(-1, 1) * deviation * max_good_value`` [deviation =
  0.5], and weights ``pn(g)`` proportional to ``p(g) + deviation * max_good_value``.
- A bundle starts at a good drawn by ``pn``, then while a coin with probability
  [additional_location = 0.9] comes up, one more good is added: regions, with probability
  [jump_prob = 0.05] any good uniformly, else a good drawn with weight ``pn(h)`` times the
  number of the bundle's goods it is adjacent to; arbitrary, a good drawn with weight
  ``pn(h) * sum of d(g, h)`` over the bundle's goods.
- The bundle's price is ``sum(c(g) + p(g)) + n ** (1 + additivity)`` over its ``n`` goods
  [additivity = 0.2]; a bundle priced at 0 or less is drawn again, and of identical bundles
  only the highest price is kept (CATS removes dominated bids).

Left out: CATS's substitutable XOR bids per bidder (dummy goods), with their budget and resale
factors. Prices are written with 2 decimals.

``python bench/cats.py regions 100 500 --seed 1 > auction.txt`` writes a CATS file.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from decimal import Decimal

from mabeam.core.economics._cats import CatsInstance, from_bundles, parse_cats, render_cats

__all__ = ["KINDS", "generate"]

KINDS = ("regions", "arbitrary")
MAX_GOOD_VALUE = 100.0
DEVIATION = 0.5
ADDITIVITY = 0.2
ADDITIONAL_LOCATION = 0.9
REMOVE_NEIGHBOR = 0.1
ADDITIONAL_NEIGHBOR = 0.2
JUMP_PROB = 0.05


def _grid(goods: int, rng: random.Random) -> list[set[int]]:
    side = math.isqrt(goods)
    near: list[set[int]] = [set() for _ in range(side * side)]

    def join(a: tuple[int, int], b: tuple[int, int]) -> None:
        if all(0 <= v < side for v in (*a, *b)):
            near[a[0] * side + a[1]].add(b[0] * side + b[1])
            near[b[0] * side + b[1]].add(a[0] * side + a[1])

    for i in range(side):
        for j in range(side):
            if rng.random() > REMOVE_NEIGHBOR:
                join((i, j), (i + 1, j))
            if rng.random() > REMOVE_NEIGHBOR:
                join((i, j), (i, j + 1))
            if rng.random() < ADDITIONAL_NEIGHBOR:
                if rng.random() < 0.5:
                    join((i, j), (i + 1, j + 1))
                else:
                    join((i + 1, j), (i, j + 1))
    return near


def _draw(weights: list[float], rng: random.Random) -> int | None:
    total = sum(weights)
    if total <= 0:
        return None
    x = rng.random() * total
    for g, w in enumerate(weights):
        x -= w
        if x <= 0 and w > 0:
            return g
    return max(range(len(weights)), key=lambda g: weights[g])


def generate(kind: str, goods: int, bids: int, seed: int) -> CatsInstance:
    """A CATS-like instance of ``bids`` single-minded bids (regions: on ``floor(sqrt(goods))**2``
    goods)."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}")
    rng = random.Random(f"{kind}-{goods}-{bids}-{seed}")
    if kind == "regions":
        while True:
            near = _grid(goods, rng)
            if all(near):
                break
        goods = len(near)
    else:
        close = [[0.0] * goods for _ in range(goods)]
        for g in range(goods):
            for h in range(g + 1, goods):
                close[g][h] = close[h][g] = rng.random() or 1e-9
    common = [rng.uniform(1, MAX_GOOD_VALUE) for _ in range(goods)]
    spread = DEVIATION * MAX_GOOD_VALUE
    best: dict[frozenset[int], Decimal] = {}
    while len(best) < bids:
        private = [rng.uniform(-spread, spread) for _ in range(goods)]
        weight = [p + spread for p in private]
        first = _draw(weight, rng)
        if first is None:
            continue
        bundle = [first]
        while rng.random() <= ADDITIONAL_LOCATION and len(bundle) < goods:
            if kind == "regions" and rng.random() < JUMP_PROB:
                nxt = rng.choice([g for g in range(goods) if g not in bundle])
            else:
                inside = set(bundle)
                if kind == "regions":
                    pull = [
                        0.0 if h in inside else weight[h] * sum(g in near[h] for g in bundle)
                        for h in range(goods)
                    ]
                else:
                    pull = [
                        0.0 if h in inside else weight[h] * sum(close[g][h] for g in bundle)
                        for h in range(goods)
                    ]
                found = _draw(pull, rng)
                if found is None:
                    continue
                nxt = found
            bundle.append(nxt)
        price = sum(common[g] + private[g] for g in bundle) + len(bundle) ** (1 + ADDITIVITY)
        if price <= 0:
            continue
        amount = Decimal(f"{price:.2f}")
        key = frozenset(bundle)
        if amount > best.get(key, Decimal(-1)):
            best[key] = amount
    return from_bundles(goods, [(price, sorted(b)) for b, price in best.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS, nargs="?")
    parser.add_argument("goods", type=int, nargs="?")
    parser.add_argument("bids", type=int, nargs="?")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="generate small instances, check they read back")
    args = parser.parse_args()
    if args.quick:
        for kind in KINDS:
            instance = generate(kind, 16, 40, args.seed)
            assert parse_cats(render_cats(instance)) == instance, kind
            print(f"cats {kind}: 16 goods, {len(instance.bids)} bidders; written and read back")
        return
    if args.kind is None or args.goods is None or args.bids is None:
        parser.error("KIND GOODS BIDS are required (or --quick)")
    instance = generate(args.kind, args.goods, args.bids, args.seed)
    sys.stdout.write(render_cats(instance, f"CATS-like {args.kind}, seed {args.seed} (bench/cats.py)"))


if __name__ == "__main__":
    main()
