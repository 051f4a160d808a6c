"""A coordination, auctions and markets decided on a real API server from the example agents'
own answers (the demo's manifests), each outcome applied once, each answer written by its agent."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import VARIABLE
from mabeam.local import demo
from tests.e2e._helpers import E2E, REPO, eventually
from tests.integration.test_demo import check_economics

EXAMPLES = REPO / "examples"


async def test_the_demo_reaches_the_same_outcomes_as_on_the_emulator(
    e2e: E2E, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = demo.load_manifests(EXAMPLES)
    ok = await demo.play(kube, docs, time.monotonic() + 240)
    out = capsys.readouterr().out
    assert ok, out
    # The same outcomes and balances tests/integration/test_demo.py expects from the emulator.
    check_economics(out)

    # The demo prints the Variables once they have values; ownership lands right after the
    # award, so ask the API rather than count what was printed.
    async def owners() -> bool:
        gpus = [await kube.get(VARIABLE, f"gpu-{i}", "default") for i in range(4)]
        names = [((g or {}).get("status") or {}).get("owner", {}).get("name") for g in gpus]
        return sorted(names) == ["dave", "dave", "dave", "erin"]

    await eventually(owners, what="gpu-0..3 owned by dave (three) and erin (one)")

    # Every outcome landed once: each session appears at most once in each Variable's history.
    for variable in await kube.list(VARIABLE, "default"):
        sessions = [h.get("session") for h in (variable.get("status") or {}).get("history") or []]
        counted = Counter(s for s in sessions if s)
        assert all(n == 1 for n in counted.values()), (variable["metadata"]["name"], sessions)

    # Every answer was created by its own agent's ServiceAccount, as the API server authenticated it.
    if e2e.plane is None:
        return
    answers = [
        e
        for e in e2e.audit_events()
        if e.get("verb") == "create"
        and (e.get("objectRef") or {}).get("resource") in ("votes", "bids", "orders")
        and (e.get("objectRef") or {}).get("namespace") == "default"
        and 200 <= (e.get("responseStatus") or {}).get("code", 0) < 300
    ]
    assert answers, "no answer was created"
    for event in answers:
        user = event["user"]["username"]
        assert user.startswith("system:serviceaccount:default:mabeam-agent-"), user
        # answers are named <session>-<agent>
        agent = user.removeprefix("system:serviceaccount:default:mabeam-agent-")
        assert event["objectRef"]["name"].endswith("-" + agent), (user, event["objectRef"]["name"])
