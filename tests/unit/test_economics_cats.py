"""The CATS file format: reading, writing, XOR groups by dummy good, and the offline clear command."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mabeam.cli import main
from mabeam.core.economics._cats import CatsBid, CatsInstance, parse_cats, render_cats, to_auction
from mabeam.errors import InvalidSpecError

SAMPLE = """% a comment
goods 3
bids 4
dummy 1

0\t10.5\t0\t1\t#
1\t6\t0\t3\t#
2\t7\t1\t3\t#
3\t4.25\t2\t#
"""


def test_a_file_is_read_with_exact_prices_and_xor_groups() -> None:
    instance = parse_cats(SAMPLE)
    assert (instance.goods, instance.dummy, len(instance.bids)) == (3, 1, 4)
    assert instance.bids[0] == CatsBid(Decimal("10.5"), (0, 1))
    bids, items = to_auction(instance)
    assert items == ["g0", "g1", "g2"]
    assert [(b.agent, [sorted(x.items) for x in b.bundles]) for b in bids] == [
        ("b0", [["g0", "g1"]]),
        ("d0", [["g0"], ["g1"]]),  # bids 1 and 2 share dummy good 3: one bidder's XOR bids
        ("b3", [["g2"]]),
    ]
    assert bids[0].bundles[0].amount == Fraction(21, 2)


cats_instances = st.builds(
    lambda goods, bids: CatsInstance(goods, 0, tuple(CatsBid(p, tuple(sorted(g))) for p, g in bids)),
    st.just(6),
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10**13, places=3),
            st.sets(st.integers(min_value=0, max_value=5), min_size=1),
        ),
        max_size=8,
    ),
)


@settings(max_examples=100, deadline=None)
@given(cats_instances)
def test_writing_then_reading_gives_the_instance_back(instance: CatsInstance) -> None:
    assert parse_cats(render_cats(instance, "round trip")) == instance


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("bids 1\n0 1 0 #\n", "line 2"),
        ("goods 2\n0 1 0\n", "line 2"),
        ("goods 2\n0 1 5 #\n", "line 2"),
        ("goods 2\n0 -1 0 #\n", "line 2"),
        ("goods 2\n0 x 0 #\n", "line 2"),
        ("goods 2\nbids 2\n0 1 0 #\n", "bids"),
    ],
)
def test_a_bad_file_names_its_line(text: str, where: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        parse_cats(text)
    assert where in str(info.value)


def test_mabeam_clear_prints_winners_revenue_and_vcg_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "auction.txt"
    path.write_text(SAMPLE)
    assert main(["clear", str(path), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # b0 takes g0+g1 for 10.5 (d0 could pay at most 7 for either); b3 takes g2 alone
    assert doc["reason"] == "Optimal"
    assert [(w["bidder"], w["goods"], w["price"]) for w in doc["winners"]] == [
        ("b0", [0, 1], 7),
        ("b3", [2], 0),
    ]
    assert doc["revenue"] == 7 and doc["welfare"] == 14.75
    assert main(["clear", str(path)]) == 0
    text = capsys.readouterr().out
    assert "b0" in text and "revenue 7" in text


def test_no_solver_banner_reaches_stdout(tmp_path: Path) -> None:
    """Solvers write banners from native code to file descriptor 1, past sys.stdout (and capsys):
    the whole output of a real process must be the JSON document alone."""
    path = tmp_path / "auction.txt"
    path.write_text(SAMPLE)
    done = subprocess.run(
        [sys.executable, "-m", "mabeam.cli", "clear", str(path), "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["reason"] == "Optimal"
    assert "HiGHS" not in done.stdout + done.stderr and "CP-SAT" not in done.stdout + done.stderr
