"""`make demo` runs mabeam.local.demo on examples/: it must reach every outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from mabeam.local import demo

EXAMPLES = Path(__file__).parents[2] / "examples"


async def test_demo_reaches_every_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = await demo.main(EXAMPLES, timeout=60, workdir=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("alice", "bob", "carol"):
        assert f"agent/{name}" in out
    assert out.count("Ready") >= 3
    assert "Done in" in out
    # The operator's metrics endpoint was scraped over HTTP at the end of the demo.
    agents = sum(1 for d in demo.load_manifests(EXAMPLES) if d["kind"] == "Agent")
    assert f'mabeam_agents{{namespace="default",phase="Ready"}} {agents}.0' in out
    # The economics examples end as worked out in docs/economics.md, from the traders' answers.
    for line in (
        "gpu-0 to dave at 24 (SecondPrice)",
        "gpu-1 to dave at 26 (ClockWinner)",
        "gpu-2+gpu-3 to dave at 50 (Optimal)",
        "price=24 volume=2 (TradeReduction)",
        "price=16 volume=3 (Equilibrium)",
        "cpu=6 gpu=18 (Equilibrium)",
    ):
        assert line in out, line
    assert "variable/power-price" in out and "value=16 " in out
    # The Fisher market's prices, one Variable per good, from dave's and erin's budgets and utilities.
    assert "variable/cpu-price" in out and "value=6 " in out
    assert "variable/gpu-price" in out and "value=18 " in out
    assert out.count("owner=dave") == 4
