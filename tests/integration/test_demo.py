"""`make demo` runs mabeam.local.demo on examples/: it must reach every outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from mabeam.local import demo

EXAMPLES = Path(__file__).parents[2] / "examples"


async def test_demo_reaches_every_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await demo.main(EXAMPLES, timeout=240, workdir=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("alice", "bob", "carol"):
        assert f"agent/{name}" in out
    assert out.count("Ready") >= 3
    assert "Done in" in out
    # The operator's metrics endpoint was scraped over HTTP at the end of the demo.
    agents = sum(1 for d in demo.load_manifests(EXAMPLES) if d["kind"] == "Agent")
    assert f'mabeam_agents{{namespace="default",phase="Ready"}} {agents}.0' in out
    check_economics(out)
    assert 'mabeam_payments_total{mechanism="second-price"} 1.0' in out


def check_economics(out: str) -> None:
    """The demo's economics, as worked out in docs/economics.md (the emulator and e2e expect the
    same): each trader bids within what its budget has left (the sessions run in waves)."""
    for line in (
        "gpu-0 to dave at 24 (SecondPrice)",
        "gpu-1 to dave at 26 (ClockWinner)",
        "NoTrade     (TradeReduction)",
        "price=12 volume=2 (Equilibrium)",
        "cpu=2.6 gpu=2.6 (Equilibrium)",
    ):
        assert line in out, line
    # The pair's two slots are alike: one goes to each buyer (which one depends on who bid first).
    pair = next(line for line in out.splitlines() if "auction/gpu-pair" in line and "Awarded" in line)
    assert "to dave at 26" in pair and "to erin at 10" in pair, pair
    assert "variable/power-price" in out and "value=12 " in out
    # The Fisher market's prices, one Variable per good: dave's last 2 and erin's 24 bought them.
    assert "variable/cpu-price" in out and "variable/gpu-price" in out and "value=2.6 " in out
    # Budgets spread the GPUs: dave's money ran out before the fourth.
    assert out.count("owner=dave") == 3 and out.count("owner=erin") == 1
    # The balances before (the budgets) and after, which add up to the same 150.
    before, after = out.split("Accounts after the sessions:")
    assert "account/dave                     balance=90.00" in before
    for account, balance in (("dave", "0.00"), ("erin", "14.00"), ("frank", "24.00"), ("grace", "0.00"),
                             ("mabeam-house", "112.00")):  # fmt: skip
        assert f"{'account/' + account:<32} balance={balance} escrow=0.00" in after, account
    # The sellers hold what they sell: frank delivered his 2 power-kw (one to dave, one to erin);
    # the slot exchange traded nothing, so the slot-hours stay where they were granted.
    account_lines = {line.split()[0]: line for line in after.splitlines() if "account/" in line}
    for account, goods in (("dave", "power-kw=1"), ("erin", "power-kw=1"),
                           ("frank", "gpu-slot-hours=2,power-kw=0"), ("grace", "gpu-slot-hours=1,power-kw=1"),
                           ("mabeam-house", "power-kw=0")):  # fmt: skip
        assert account_lines[f"account/{account}"].endswith(f" goods={goods}"), account_lines
